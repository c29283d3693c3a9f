package scp

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// fullDisk is a disk that fills: a write larger than its free bytes fails with ENOSPC, and so
// does a rename while nothing is free. Only the test gives space back; removals do not.
type fullDisk struct {
	mu      sync.Mutex
	free    int64
	refused int            // writes and renames that failed
	renamed map[string]int // renames into Dir/incoming, by file name
}

func newFullDisk(free int64) *fullDisk { return &fullDisk{free: free, renamed: map[string]int{}} }

func (d *fullDisk) write(f *os.File, p []byte) (int, error) {
	d.mu.Lock()
	if int64(len(p)) > d.free {
		d.refused++
		d.mu.Unlock()
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	d.free -= int64(len(p))
	d.mu.Unlock()
	return f.Write(p)
}

func (d *fullDisk) rename(oldpath, newpath string) error {
	d.mu.Lock()
	if d.free == 0 {
		d.refused++
		d.mu.Unlock()
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.ENOSPC}
	}
	if filepath.Base(filepath.Dir(newpath)) == incomingDir {
		d.renamed[filepath.Base(newpath)]++
	}
	d.mu.Unlock()
	return os.Rename(oldpath, newpath)
}

func (d *fullDisk) space(string) (int64, int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.free, 500 << 30, nil
}

func (d *fullDisk) setFree(n int64) {
	d.mu.Lock()
	d.free = n
	d.mu.Unlock()
}

func (d *fullDisk) refusals() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refused
}

// checkWrittenOnce fails unless each instance is in Dir/incoming with its data set, renamed
// there exactly once.
func checkWrittenOnce(t *testing.T, d *fullDisk, dir string, want map[string][]byte) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, data := range want {
		b, err := os.ReadFile(filepath.Join(dir, incomingDir, uid+".dcm"))
		if err != nil {
			t.Errorf("%s: %v", uid, err)
			continue
		}
		if !bytes.HasSuffix(b, data) {
			t.Errorf("%s: %d bytes in incoming, not the %d sent", uid, len(b), len(data))
		}
		if n := d.renamed[uid+".dcm"]; n != 1 {
			t.Errorf("%s written out %d times", uid, n)
		}
	}
	if names := listDir(t, filepath.Join(dir, incomingDir)); len(names) != len(want) {
		t.Errorf("incoming holds %d files, want %d", len(names), len(want))
	}
}

// storeOne sends one C-STORE of a size-byte data set and returns the response's Status and
// Error Comment.
func storeOne(c *rawConn, id uint16, uid string, data []byte) (uint16, string) {
	c.write(appendPData(nil, 3, true, storeRQ(id, sopClassSC, uid), 0))
	c.write(appendPData(nil, 3, false, data, 16384))
	return c.responseComment()
}

// TestDiskFullWhileRunning: the disk fills while the SCP runs. Instances are still
// acknowledged (the spool has room), their write-out to Dir/incoming fails and is tried again;
// once space returns every one arrives, exactly once, without a restart.
func TestDiskFullWhileRunning(t *testing.T) {
	d := newFullDisk(1 << 40)
	ts := startServer(t, Config{disk: d, segSize: testSegSize, retryMin: time.Millisecond, retryMax: 5 * time.Millisecond})
	c := dialAssociate(t, ts, "RAW", storePCs)
	defer c.Close()
	d.setFree(0)
	want := map[string][]byte{}
	for i := range 5 {
		uid := fmt.Sprintf("1.2.6.%d", i)
		want[uid] = testDataSet(sopClassSC, uid, 40000)
		if st, comment := storeOne(c, uint16(i+1), uid, want[uid]); st != statusSuccess {
			t.Fatalf("C-STORE with the spool's room: status 0x%04x %q", st, comment)
		}
	}
	// Tried again, not given up: more refusals than instances.
	waitFor(t, "write-outs tried again", func() bool { return d.refusals() > 2*len(want) })
	if names := listDir(t, filepath.Join(ts.dir, incomingDir)); len(names) != 0 {
		t.Fatalf("incoming holds %v on a full disk", names)
	}

	d.setFree(1 << 40)
	waitFor(t, "the backlog written out", func() bool { return ts.storedCount() == len(want) })
	checkWrittenOnce(t, d, ts.dir, want)
}

// TestStartWithBacklogAndLittleSpace: the spool holds instances not yet written out and the
// disk has room for less than all of them. The SCP starts all the same, writes out what fits,
// receives into the spool's free segment, and answers A700 with a reason once the spool has
// no room; when space returns, everything arrives exactly once and receiving goes on.
func TestStartWithBacklogAndLittleSpace(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir)
	want := map[string][]byte{}
	var first string
	for i := range 5 {
		uid := fmt.Sprintf("1.2.7.%d", i)
		want[uid] = payload(i, 100000)
		if _, err := sp.append(uid, want[uid]); err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = uid
		}
	}
	crash(sp) // the backlog: one segment of records, one free segment

	d := newFullDisk(150000) // room for one of the five
	ts := &testServer{dir: dir, done: make(chan error, 1)}
	s, err := Listen(Config{AETitle: testAE, Addr: "127.0.0.1:0", Dir: dir, disk: d, segSize: testSegSize,
		retryMin: time.Millisecond, retryMax: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		OnStored: func(st Stored) { ts.mu.Lock(); ts.stored = append(ts.stored, st); ts.mu.Unlock() }})
	if err != nil {
		t.Fatalf("start with a backlog and little space: %v", err)
	}
	ts.serve(t, s)
	waitFor(t, "the first instance of the backlog written out", func() bool {
		_, err := os.Stat(filepath.Join(dir, incomingDir, first+".dcm"))
		return err == nil
	})

	c := dialAssociate(t, ts, "RAW", storePCs)
	defer c.Close()
	received := 0
	for i := range 30 {
		uid := fmt.Sprintf("1.2.8.%d", i)
		data := testDataSet(sopClassSC, uid, 100000)
		st, comment := storeOne(c, uint16(i+1), uid, data)
		if st == statusSuccess {
			want[uid] = data
			received++
			continue
		}
		if st&0xFF00 != statusOutOfResources || !strings.Contains(comment, "disk") {
			t.Fatalf("C-STORE with the spool full: status 0x%04x %q, want A7xx about the disk", st, comment)
		}
		break
	}
	if received == 0 || received == 30 {
		t.Fatalf("%d instances received into the spool's free segment of %d bytes", received, testSegSize)
	}

	d.setFree(1 << 40)
	waitFor(t, "backlog and new instances written out", func() bool { return ts.storedCount() == received })
	waitFor(t, "the backlog written out", func() bool {
		return len(listDir(t, filepath.Join(dir, incomingDir))) == len(want)
	})
	checkWrittenOnce(t, d, dir, want)
	uid := "1.2.8.99"
	data := testDataSet(sopClassSC, uid, 100000)
	if st, comment := storeOne(c, 99, uid, data); st != statusSuccess {
		t.Fatalf("C-STORE once space returned: status 0x%04x %q", st, comment)
	}
}

// TestWriteOutBackoff: on a full disk the writer tries again and again, waiting a minute at
// most and not spinning, keeps the records in their segment (not reused) and no buffer in
// memory; once space returns everything is written out, in order and once, and the segment is
// reused. The clock is synctest's.
func TestWriteOutBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		for _, d := range []string{incomingDir, tmpDir} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		d := newFullDisk(1 << 40)
		log := slog.New(slog.DiscardHandler)
		sp, _, err := openSpool(dir, log, testSegSize, d)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.close()
		var mu sync.Mutex
		var stored []string
		w := newWriter(sp, nil, log, func(st Stored) {
			mu.Lock()
			stored = append(stored, st.SOPInstance)
			mu.Unlock()
		}, func() {}, time.Second, time.Minute)
		defer w.close()

		d.setFree(0)
		want := map[string][]byte{}
		var order []string
		var first *segment
		for i := range 5 { // 300 KB each: three fill the first 1 MiB segment
			uid := fmt.Sprintf("1.2.9.%d", i)
			want[uid] = payload(i, 300000)
			rec, err := sp.append(uid, want[uid])
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = rec.seg
			}
			w.put(&instanceFile{buf: slices.Clone(want[uid]), rec: rec, stored: Stored{SOPInstance: uid}})
			order = append(order, uid)
		}
		synctest.Wait()
		w.mu.Lock()
		failing, held := w.failing, w.queued
		w.mu.Unlock()
		if failing == nil || held != 0 {
			t.Fatalf("writer on a full disk: failure %v, %d bytes held in memory", failing, held)
		}
		if w.flush("1.2.9.3") || !w.flush("1.2.9.77") {
			t.Error("flush while failing: a file of its own may land before a queued copy of its UID")
		}

		time.Sleep(time.Hour)
		synctest.Wait()
		// Each wait is at most a minute (at least 60 tries an hour) and drawn from the whole
		// window (about 120, never thousands).
		if n := d.refusals(); n < 60 || n > 1000 {
			t.Errorf("%d tries in an hour on a full disk", n)
		}
		if names := listDir(t, filepath.Join(dir, incomingDir)); len(names) != 0 {
			t.Fatalf("incoming holds %v on a full disk", names)
		}
		sp.mu.Lock()
		freed := slices.Contains(sp.free, first)
		sp.mu.Unlock()
		if gen, ok := readSegHeader(first.f); !ok || gen == 0 || freed {
			t.Fatal("a full segment with records not written out was freed")
		}
		if n, _, _ := sp.usage(); n != len(want) {
			t.Errorf("%d instances waiting, want %d", n, len(want))
		}

		d.setFree(1 << 40)
		time.Sleep(time.Minute)
		synctest.Wait()
		if w.failure() != nil {
			t.Errorf("still failing once space returned: %v", w.failure())
		}
		mu.Lock()
		if !slices.Equal(stored, order) {
			t.Errorf("written out %v, want %v", stored, order)
		}
		mu.Unlock()
		checkWrittenOnce(t, d, dir, want)
		sp.mu.Lock()
		reused := slices.Contains(sp.free, first)
		sp.mu.Unlock()
		if gen, _ := readSegHeader(first.f); gen != 0 || !reused {
			t.Error("the full segment is not free once written out")
		}
	})
}
