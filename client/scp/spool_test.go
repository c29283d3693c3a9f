package scp

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const testSegSize = 1 << 20

func openTestSpool(t *testing.T, dir string) *spool {
	t.Helper()
	for _, d := range []string{incomingDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sp, backlog, err := openSpool(dir, slog.New(slog.DiscardHandler), testSegSize, osDisk{})
	if err != nil {
		t.Fatal(err)
	}
	// What the last run left is written out, as the Server's writer does first.
	newWriter(sp, backlog, slog.New(slog.DiscardHandler), nil, func() {}, time.Millisecond, time.Millisecond).close()
	return sp
}

// crash drops the spool as a killed process would: files closed, nothing recycled or freed.
func crash(sp *spool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.closeFiles()
}

func payload(i, n int) []byte {
	return bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, n/3)
}

func readIncoming(t *testing.T, dir, uid string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, incomingDir, uid+".dcm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSpoolReplay: instances acknowledged (appended) but never written out, because the
// process died, are written out at the next start; a later record of the same UID wins; a
// torn record and everything after it are not replayed; a second start replays nothing.
func TestSpoolReplay(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir)
	var recs []record
	for i := range 5 {
		rec, err := sp.append(fmt.Sprintf("1.2.3.%d", i), payload(i, 30000))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	// The same UID again, newer content.
	if _, err := sp.append("1.2.3.1", payload(99, 3000)); err != nil {
		t.Fatal(err)
	}
	// Then a record whose data does not check out (torn by the crash), then a good one.
	seg := recs[0].seg
	sp.mu.Lock()
	tornAt := seg.end
	sp.mu.Unlock()
	if _, err := sp.append("1.2.3.7", payload(7, 3000)); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.append("1.2.3.8", payload(8, 3000)); err != nil {
		t.Fatal(err)
	}
	if _, err := seg.f.WriteAt([]byte{0xff}, tornAt+recHeaderSize+20); err != nil {
		t.Fatal(err)
	}
	crash(sp)

	sp = openTestSpool(t, dir)
	for i := range 5 {
		want := payload(i, 30000)
		if i == 1 {
			want = payload(99, 3000)
		}
		if got := readIncoming(t, dir, fmt.Sprintf("1.2.3.%d", i)); !bytes.Equal(got, want) {
			t.Errorf("instance %d replayed with %d bytes, want %d", i, len(got), len(want))
		}
	}
	for _, uid := range []string{"1.2.3.7", "1.2.3.8"} {
		if _, err := os.Stat(filepath.Join(dir, incomingDir, uid+".dcm")); err == nil {
			t.Errorf("%s replayed from behind a torn record", uid)
		}
	}

	// Replayed segments are free now: removing the files and starting again brings nothing back.
	sp.close()
	for i := range 5 {
		os.Remove(filepath.Join(dir, incomingDir, fmt.Sprintf("1.2.3.%d.dcm", i)))
	}
	sp = openTestSpool(t, dir)
	defer sp.close()
	if names := listDir(t, filepath.Join(dir, incomingDir)); len(names) != 0 {
		t.Errorf("second start replayed %v", names)
	}
}

// TestSpoolReplayAcrossSegments: a resent image whose two copies a crash left in two segments
// is written out newest last, whatever the segments' file names: segments are reused, so a
// later activation can live in a file whose name sorts first.
func TestSpoolReplayAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir)
	older, newer := payload(1, 600<<10), payload(2, 600<<10)
	first, err := sp.append("1.2.6.1", older)
	if err != nil {
		t.Fatal(err)
	}
	second, err := sp.append("1.2.6.1", newer) // does not fit: the next segment
	if err != nil {
		t.Fatal(err)
	}
	if first.seg == second.seg {
		t.Fatal("both copies in one segment: the test needs two")
	}
	a, b := first.seg.path, second.seg.path
	crash(sp)
	// Swap the two files' names, as reuse may leave them.
	tmp := a + ".swap"
	for _, mv := range [][2]string{{a, tmp}, {b, a}, {tmp, b}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	sp = openTestSpool(t, dir)
	defer sp.close()
	if got := readIncoming(t, dir, "1.2.6.1"); !bytes.Equal(got, newer) {
		t.Errorf("the first copy was written out last (%d bytes of pattern %d)", len(got), got[0])
	}
}

// TestSpoolRecycle: segments are reused once what was written out from them is durable, so
// the spool does not grow with the data; a clean close replays nothing at the next start.
func TestSpoolRecycle(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir)
	const n, size = 200, 100 << 10 // 20 MB through 1 MB segments
	for i := range n {
		uid := fmt.Sprintf("1.2.4.%d", i)
		data := payload(i, size)
		rec, err := sp.append(uid, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.writeOut(rec, data); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(dir, spoolDir, "seg-*"))
	if len(segs) > 8 {
		t.Errorf("%d segments for %d MB through 1 MB segments: not reused", len(segs), n*size>>20)
	}
	sp.close()
	for i := range n {
		os.Remove(filepath.Join(dir, incomingDir, fmt.Sprintf("1.2.4.%d.dcm", i)))
	}
	sp = openTestSpool(t, dir)
	defer sp.close()
	if names := listDir(t, filepath.Join(dir, incomingDir)); len(names) != 0 {
		t.Errorf("start after a clean close replayed %d instances", len(names))
	}
}

// TestSpoolCrashAfterWriteOut: a crash after instances were written out but before their
// segment was recycled writes them out again, whole.
func TestSpoolCrashAfterWriteOut(t *testing.T) {
	dir := t.TempDir()
	sp := openTestSpool(t, dir)
	data := payload(1, 50000)
	rec, err := sp.append("1.2.5.1", data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.writeOut(rec, data); err != nil {
		t.Fatal(err)
	}
	// The file as a crash may leave it: renamed into place but its data never written.
	if err := os.Truncate(filepath.Join(dir, incomingDir, "1.2.5.1.dcm"), 0); err != nil {
		t.Fatal(err)
	}
	crash(sp)
	sp = openTestSpool(t, dir)
	defer sp.close()
	if got := readIncoming(t, dir, "1.2.5.1"); !bytes.Equal(got, data) {
		t.Errorf("replayed %d bytes, want %d", len(got), len(data))
	}
}

// FuzzScanSegment: a segment of any content is scanned without panic, and only records of its
// generation that check out are returned.
func FuzzScanSegment(f *testing.F) {
	dir := f.TempDir()
	sp, _, err := openSpool(dir, slog.New(slog.DiscardHandler), 64<<10, osDisk{})
	if err != nil {
		f.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, incomingDir), 0o755)
	os.MkdirAll(filepath.Join(dir, tmpDir), 0o755)
	if _, err := sp.append("1.2.3", []byte("hello")); err != nil {
		f.Fatal(err)
	}
	if _, err := sp.append("1.2.4", []byte("world")); err != nil {
		f.Fatal(err)
	}
	seed := make([]byte, 64<<10)
	sp.cur.f.ReadAt(seed, 0)
	gen, _ := readSegHeader(bytes.NewReader(seed))
	crash(sp)
	f.Add(seed[:segHeaderSize+200], gen)
	f.Add(seed[:segHeaderSize+30], gen)
	f.Add([]byte("SPSG"), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, gen uint64) {
		r := bytes.NewReader(b)
		readSegHeader(r)
		err := scanSegment(r, int64(len(b)), gen, func(_ int64, name string, data []byte) error {
			if !validUID(name) {
				t.Errorf("record with name %q", name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
