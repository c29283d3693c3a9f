package scp

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/sanping/sanping/internal/durable"
)

// The spool is a small write-ahead log, written by hand: an embedded database (SQLite, bbolt)
// would put a journal commit (several fsyncs and a metadata update) in front of every
// instance, and the point here is one fdatasync of blocks already allocated, shared by every
// association waiting at that moment.
//
// Why: an instance must be durable before the modality hears success. A file per instance
// (create, write, fsync, rename, fsync of the directory) costs two journal commits of the
// file system each time. Instead, instances up to memLimit (4 MiB) are received into memory and
// appended to a segment: a file of segmentSize bytes written full of zeros once and reused, so
// that writing a record overwrites blocks already allocated and one fdatasync(2) makes it
// durable without any journal commit. Associations running at once share that fdatasync
// (group commit). After the success response the instance is also written, without fsync, as
// Dir/incoming/<SOP Instance UID>.dcm, the file the forwarder reads. A segment that is full is
// reused only once everything written out from it is durable (syncfs(2), or an fsync per file
// where there is no syncfs), and is then marked free. At start, the records of segments not
// marked free, which a crash may have left not yet written out, are written out again.
//
// A write-out that fails (a full disk) leaves the record in its segment, which is not reused
// until the writer, trying again, has written it out (writer.go). A segment is only prepared
// while the disk keeps room for it and for what waits to be written out; without a free
// segment the spool refuses instances (errDiskFull), and the modality keeps them.
//
// Layout of a segment: a 4 KiB header ("SPSG", version, generation, CRC-32C), then records
// from segHeaderSize on, one after the other. A record: "SPR1", the generation of its segment,
// the lengths of the name and of the data, a CRC-32C of the header fields, name and data, then
// the name (the SOP Instance UID) and the data (the whole Part 10 file). Generations are
// random, so a record left from an earlier use of the segment never passes for a current one;
// the scan of a segment stops at the first record that does not check out.
const (
	segmentSize   = 64 << 20
	segHeaderSize = 4096
	recHeaderSize = 24
	// memLimit: larger instances get a file of their own. Measured with storescu on loopback:
	// for 64 KB and 512 KB instances the spool is faster (one fdatasync without a journal
	// commit); from about 1 MB on the copies it costs (into memory, into the segment, out to
	// Dir/incoming) outweigh the commits a file of its own costs (bench/README.md).
	memLimit      = 768 << 10
	spareSegments = 2 // kept ready, zero-filled
	spoolDir      = "spool"
	segMagic      = "SPSG"
	recMagic      = "SPR1"
	segVersion    = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	path string
	f    *os.File

	// Guarded by spool.mu.
	gen     uint64   // 0: free
	end     int64    // offset after the last record written
	pending int      // records written and not yet written out to Dir/incoming
	full    bool     // no more records go here
	keep    bool     // a record is in doubt (not durable, or unreadable): replay at the next start
	files   []string // written out since activation (where there is no syncfs)

	syncMu sync.Mutex
	synced int64 // records up to here are durable; guarded by syncMu
}

// record is an instance acknowledged from the spool and not yet written out.
type record struct {
	seg  *segment // nil: not in the spool
	off  int64    // of the record's header in seg
	name string   // the SOP Instance UID
	size int      // of the data (the Part 10 file)
}

// errDiskFull: the disk has no room for a spool segment beside what waits to be written out.
var errDiskFull = errors.New("disk full")

// spool is the Server's write-ahead log in Dir/spool.
type spool struct {
	dir     string // the Server's Dir
	log     *slog.Logger
	segSize int64
	disk    disk
	changed func() // the state file has news (never nil)

	mu       sync.Mutex
	cur      *segment
	free     []*segment
	all      []*segment
	nextName int
	// activations counts segment activations; a segment's generation carries it in its high
	// 32 bits, so that the records a crash left behind are written out in the order they
	// arrived, across segments (a resent, corrected image must win over its first copy).
	activations uint64
	prepping    bool
	closed      bool
	// Records acknowledged and not yet written out, and their bytes.
	waiting      int
	waitingBytes int64
	noRoom       error // why the last activation of a segment failed; nil since one worked

	toRecycle []*segment    // full segments with everything written out
	wake      chan struct{} // the recycler has work (or the spool closed)
	done      chan struct{} // the recycler has stopped
}

// openSpool finds what a crash (or a full disk) left to write out, and returns those records in
// order, then keeps up to spareSegments segments ready as the disk allows.
func openSpool(dir string, log *slog.Logger, segSize int64, d disk) (*spool, []record, error) {
	sp := &spool{dir: dir, log: log, segSize: segSize, disk: d, changed: func() {},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	sd := filepath.Join(dir, spoolDir)
	if err := os.MkdirAll(sd, 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating the spool: %w", err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(sd, "*.tmp")); len(tmps) > 0 {
		for _, p := range tmps {
			os.Remove(p) // a segment whose preparation was cut short
		}
	}
	names, err := filepath.Glob(filepath.Join(sd, "seg-*"))
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(names)
	var backlogSegs []*segment
	backlogRecs := map[*segment][]record{}
	for _, p := range names {
		var n int
		if _, err := fmt.Sscanf(filepath.Base(p), "seg-%06d", &n); err == nil && n >= sp.nextName {
			sp.nextName = n + 1
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			sp.closeFiles()
			return nil, nil, fmt.Errorf("opening spool segment: %w", err)
		}
		seg := &segment{path: p, f: f}
		if fi, err := f.Stat(); err != nil || fi.Size() != segSize {
			f.Close()
			os.Remove(p) // not one of ours, or cut short
			continue
		}
		sp.all = append(sp.all, seg)
		gen, ok := readSegHeader(f)
		if !ok || gen == 0 {
			sp.free = append(sp.free, seg)
			continue
		}
		seg.gen = gen
		sp.activations = max(sp.activations, gen>>32)
		recs := sp.backlog(seg)
		if len(recs) > 0 {
			backlogSegs = append(backlogSegs, seg)
			backlogRecs[seg] = recs
			continue
		}
		if err := markFree(seg); err != nil {
			sp.log.Error("scp spool: a segment left out of use", "err", err)
			continue
		}
		seg.gen = 0
		sp.free = append(sp.free, seg)
	}
	// Oldest activation first; within a segment, records are in the order they were appended.
	slices.SortStableFunc(backlogSegs, func(a, b *segment) int { return cmp.Compare(a.gen, b.gen) })
	var backlog []record
	for _, seg := range backlogSegs {
		backlog = append(backlog, backlogRecs[seg]...)
	}
	if len(backlog) > 0 {
		sp.log.Info("scp spool: instances to write out from the last run", "instances", len(backlog), "bytes", sp.waitingBytes)
	}
	for len(sp.free) < spareSegments {
		seg, err := sp.prepare()
		if err != nil {
			// Not fatal: the free segments left still receive, and the backlog goes out as
			// space allows; without any, instances are refused until space returns.
			sp.log.Warn("scp spool: no spare segment", "err", err)
			sp.noRoom = err
			break
		}
		sp.all = append(sp.all, seg)
		sp.free = append(sp.free, seg)
	}
	go sp.recycler()
	return sp, backlog, nil
}

// backlog returns the records of a segment not marked free, which may not have reached
// Dir/incoming, and keeps the segment until they have.
func (sp *spool) backlog(seg *segment) []record {
	var recs []record
	seg.end = segHeaderSize
	scanSegment(seg.f, sp.segSize, seg.gen, func(off int64, name string, data []byte) error {
		recs = append(recs, record{seg: seg, off: off, name: name, size: len(data)})
		sp.waitingBytes += int64(len(data))
		seg.end = off + recHeaderSize + int64(len(name)+len(data))
		return nil
	})
	seg.pending, seg.full = len(recs), true
	sp.waiting += len(recs)
	return recs
}

// prepare creates a zero-filled segment under its final name, if the disk has room for it
// beside what waits to be written out: a new segment must not take the space the backlog needs.
func (sp *spool) prepare() (*segment, error) {
	sp.mu.Lock()
	need := sp.segSize + sp.waitingBytes
	sp.mu.Unlock()
	if free, _, err := sp.disk.space(sp.dir); err == nil && free < need {
		return nil, fmt.Errorf("preparing a spool segment: %w (%d bytes free, %d needed)", errDiskFull, free, need)
	}
	sp.mu.Lock()
	name := fmt.Sprintf("seg-%06d", sp.nextName)
	sp.nextName++
	sp.mu.Unlock()
	sd := filepath.Join(sp.dir, spoolDir)
	tmp := filepath.Join(sd, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("preparing a spool segment: %w", err)
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < sp.segSize && err == nil; off += int64(len(zero)) {
		_, err = sp.disk.write(f, zero[:min(int64(len(zero)), sp.segSize-off)])
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = sp.disk.rename(tmp, filepath.Join(sd, name))
	}
	if err == nil {
		err = durable.SyncDir(sd)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("preparing a spool segment: %w", err)
	}
	return &segment{path: filepath.Join(sd, name), f: f}, nil
}

// append makes a record of the instance durable in the spool. It returns the record, whose
// segment must hear of its writing out (writeOut).
func (sp *spool) append(name string, data []byte) (record, error) {
	size := int64(recHeaderSize + len(name) + len(data))
	if size > sp.segSize-segHeaderSize {
		return record{}, fmt.Errorf("instance of %d bytes too large for the spool", len(data))
	}
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return record{}, errors.New("spool closed")
	}
	for sp.cur == nil || sp.cur.end+size > sp.segSize {
		if err := sp.rotate(); err != nil {
			sp.mu.Unlock()
			return record{}, err
		}
		if sp.closed {
			sp.mu.Unlock()
			return record{}, errors.New("spool closed")
		}
	}
	seg := sp.cur
	off := seg.end
	hdr := make([]byte, recHeaderSize, recHeaderSize+len(name))
	copy(hdr, recMagic)
	binary.LittleEndian.PutUint64(hdr[4:], seg.gen)
	binary.LittleEndian.PutUint16(hdr[12:], uint16(len(name)))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(len(data)))
	hdr = append(hdr, name...)
	crc := crc32.Update(crc32.Checksum(hdr[:20], castagnoli), castagnoli, hdr[recHeaderSize:])
	binary.LittleEndian.PutUint32(hdr[20:], crc32.Update(crc, castagnoli, data))
	_, err := seg.f.WriteAt(hdr, off)
	if err == nil {
		_, err = seg.f.WriteAt(data, off+int64(len(hdr)))
	}
	if err != nil {
		// Nothing may follow a record that does not check out: the scan would stop there.
		sp.retire(seg)
		sp.mu.Unlock()
		return record{}, fmt.Errorf("writing to the spool: %w", err)
	}
	seg.end += size
	seg.pending++
	sp.mu.Unlock()
	rec := record{seg: seg, off: off, name: name, size: len(data)}

	seg.syncMu.Lock()
	defer seg.syncMu.Unlock()
	if seg.synced < off+size { // else another association's fdatasync covered this record
		sp.mu.Lock()
		target := seg.end
		sp.mu.Unlock()
		if err := durable.DataSync(seg.f); err != nil {
			sp.mu.Lock()
			seg.keep = true
			sp.retire(seg)
			seg.pending--
			sp.mu.Unlock()
			return record{}, fmt.Errorf("syncing the spool: %w", err)
		}
		seg.synced = target
	}
	sp.mu.Lock()
	sp.waiting++
	sp.waitingBytes += int64(len(data))
	sp.mu.Unlock()
	return rec, nil
}

// rotate retires the current segment and activates a free one. If none is ready it prepares
// one, letting go of mu meanwhile, and returns: the caller looks again at sp.cur, which
// another association may have set. Called with mu held.
func (sp *spool) rotate() error {
	if sp.cur != nil {
		sp.retire(sp.cur)
	}
	if len(sp.free) == 0 {
		sp.mu.Unlock()
		seg, err := sp.prepare()
		sp.mu.Lock()
		if err != nil {
			if sp.noRoom == nil {
				sp.changed()
			}
			sp.noRoom = err
			return err
		}
		sp.all = append(sp.all, seg)
		sp.free = append(sp.free, seg)
		return nil
	}
	seg := sp.free[0]
	sp.free = sp.free[1:]
	// The generation: the activation count (high 32 bits: the order of segments for a replay)
	// and random bits (no record of the segment's previous use can pass for one of this use).
	var b [4]byte
	rand.Read(b[:])
	sp.activations++
	seg.gen = sp.activations<<32 | uint64(binary.LittleEndian.Uint32(b[:]))
	hdr := make([]byte, 20)
	copy(hdr, segMagic)
	binary.LittleEndian.PutUint32(hdr[4:], segVersion)
	binary.LittleEndian.PutUint64(hdr[8:], seg.gen)
	binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(hdr[:16], castagnoli))
	// The header becomes durable with the segment's first record: same file, one fdatasync.
	if _, err := seg.f.WriteAt(hdr, 0); err != nil {
		seg.gen = 0
		sp.free = append(sp.free, seg)
		return fmt.Errorf("activating a spool segment: %w", err)
	}
	seg.end, seg.pending, seg.full, seg.keep, seg.files = segHeaderSize, 0, false, false, nil
	seg.syncMu.Lock()
	seg.synced = 0
	seg.syncMu.Unlock()
	sp.cur = seg
	if sp.noRoom != nil {
		sp.noRoom = nil
		sp.changed()
	}
	if len(sp.free) < spareSegments-1 && !sp.prepping {
		sp.prepping = true
		go sp.prepareSpare()
	}
	return nil
}

func (sp *spool) prepareSpare() {
	seg, err := sp.prepare()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.prepping = false
	if errors.Is(err, errDiskFull) {
		sp.log.Warn("scp spool: no spare segment", "err", err)
		return
	}
	if err != nil {
		sp.log.Error("scp spool", "err", err)
		return
	}
	sp.all = append(sp.all, seg)
	if sp.closed {
		seg.f.Close()
		return
	}
	sp.free = append(sp.free, seg)
}

// retire ends appends to seg. Called with mu held.
func (sp *spool) retire(seg *segment) {
	seg.full = true
	if sp.cur == seg {
		sp.cur = nil
	}
	if seg.pending == 0 && !seg.keep {
		sp.queueRecycle(seg)
	}
}

// queueRecycle hands seg to the recycler. Called with mu held.
func (sp *spool) queueRecycle(seg *segment) {
	sp.toRecycle = append(sp.toRecycle, seg)
	if sp.closed {
		return // close has woken the recycler for the last time
	}
	select {
	case sp.wake <- struct{}{}:
	default:
	}
}

// written notes that rec was written out to path, or given up ("": the segment is kept for
// the next start). Called with mu held.
func (sp *spool) written(rec record, path string) {
	seg := rec.seg
	seg.pending--
	sp.waiting--
	sp.waitingBytes -= int64(rec.size)
	if path == "" {
		seg.keep = true
	} else {
		seg.files = append(seg.files, path)
	}
	if seg.full && seg.pending == 0 && !seg.keep {
		sp.queueRecycle(seg)
	}
}

// writeOut writes rec's instance (data) to Dir/incoming after its record is durable, and tells
// its segment. If that fails the record stays in the segment, for another try.
func (sp *spool) writeOut(rec record, data []byte) (string, error) {
	p, err := writeIncoming(sp.disk, sp.dir, rec.name, data)
	if err != nil {
		return "", err
	}
	sp.mu.Lock()
	sp.written(rec, p)
	sp.mu.Unlock()
	return p, nil
}

// giveUp lets go of a record that cannot be read back; its segment is kept, and the next start
// tries it again.
func (sp *spool) giveUp(rec record) {
	sp.mu.Lock()
	sp.written(rec, "")
	sp.mu.Unlock()
}

// errBadRecord: a record read back from its segment no longer checks out.
var errBadRecord = errors.New("spool record does not check out")

// read reads rec back from its segment into buf and returns it whole: header, name, then the
// data (the last rec.size bytes).
func (sp *spool) read(rec record, buf []byte) ([]byte, error) {
	n := recHeaderSize + len(rec.name) + rec.size
	buf = slices.Grow(buf[:0], n)[:n]
	if _, err := rec.seg.f.ReadAt(buf, rec.off); err != nil {
		return buf, fmt.Errorf("reading the spool: %w", err)
	}
	h, name := buf[:recHeaderSize], buf[recHeaderSize:recHeaderSize+len(rec.name)]
	crc := crc32.Update(crc32.Checksum(h[:20], castagnoli), castagnoli, buf[recHeaderSize:])
	if string(h[:4]) != recMagic || binary.LittleEndian.Uint64(h[4:]) != rec.seg.gen ||
		string(name) != rec.name || crc != binary.LittleEndian.Uint32(h[20:]) {
		return buf, fmt.Errorf("%w: %s at %d in %s", errBadRecord, rec.name, rec.off, rec.seg.path)
	}
	return buf, nil
}

// usage returns what waits to be written out, and why instances are refused (nil if they are
// not). A refusal lasts until a segment is free again or the disk has room for a new one.
func (sp *spool) usage() (waiting int, waitingBytes int64, noRoom error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.noRoom != nil && sp.cur == nil && len(sp.free) == 0 {
		if free, _, err := sp.disk.space(sp.dir); err == nil && free >= sp.segSize+sp.waitingBytes {
			sp.noRoom = nil
		}
	} else {
		sp.noRoom = nil
	}
	return sp.waiting, sp.waitingBytes, sp.noRoom
}

// recycler makes what was written out from full segments durable and marks them free.
func (sp *spool) recycler() {
	defer close(sp.done)
	for {
		_, ok := <-sp.wake
		sp.mu.Lock()
		segs := sp.toRecycle
		sp.toRecycle = nil
		sp.mu.Unlock()
		for _, seg := range segs {
			sp.recycleOne(seg)
		}
		if !ok {
			return
		}
	}
}

func (sp *spool) recycleOne(seg *segment) {
	err := syncWritten(sp.dir, seg.files)
	if err == nil {
		err = markFree(seg)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if err != nil {
		sp.log.Error("scp spool: a segment stays for replay at the next start", "segment", seg.path, "err", err)
		return
	}
	seg.gen, seg.files = 0, nil
	sp.free = append(sp.free, seg)
	if sp.noRoom != nil {
		sp.noRoom = nil
		sp.changed()
	}
}

// close retires the current segment, waits for the recycler and closes the files. Records of
// segments not recycled (not yet written out) are written out at the next start.
func (sp *spool) close() {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return
	}
	sp.closed = true
	if sp.cur != nil {
		sp.retire(sp.cur)
	}
	sp.mu.Unlock()
	close(sp.wake)
	<-sp.done
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.closeFiles()
}

func (sp *spool) closeFiles() {
	for _, seg := range sp.all {
		seg.f.Close()
	}
}

// markFree overwrites seg's header so that a restart replays nothing from it.
func markFree(seg *segment) error {
	if _, err := seg.f.WriteAt(make([]byte, 20), 0); err != nil {
		return fmt.Errorf("freeing spool segment %s: %w", seg.path, err)
	}
	if err := durable.DataSync(seg.f); err != nil {
		return fmt.Errorf("freeing spool segment %s: %w", seg.path, err)
	}
	return nil
}

// readSegHeader returns the generation of a segment (0: free) and whether its header checks out.
func readSegHeader(r io.ReaderAt) (uint64, bool) {
	var h [20]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return 0, false
	}
	if string(h[:4]) != segMagic || binary.LittleEndian.Uint32(h[4:]) != segVersion ||
		binary.LittleEndian.Uint32(h[16:]) != crc32.Checksum(h[:16], castagnoli) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(h[8:]), true
}

// scanSegment calls fn for each record of generation gen (at offset off) from the start of the
// segment, up to the first that does not check out (never written, torn, or left from an
// earlier use).
func scanSegment(r io.ReaderAt, size int64, gen uint64, fn func(off int64, name string, data []byte) error) error {
	off := int64(segHeaderSize)
	var h [recHeaderSize]byte
	for off+recHeaderSize <= size {
		if _, err := r.ReadAt(h[:], off); err != nil {
			return nil
		}
		nameLen := int64(binary.LittleEndian.Uint16(h[12:]))
		dataLen := int64(binary.LittleEndian.Uint32(h[16:]))
		if string(h[:4]) != recMagic || binary.LittleEndian.Uint64(h[4:]) != gen ||
			nameLen == 0 || nameLen > 64 || off+recHeaderSize+nameLen+dataLen > size {
			return nil
		}
		body := make([]byte, nameLen+dataLen)
		if _, err := r.ReadAt(body, off+recHeaderSize); err != nil {
			return nil
		}
		crc := crc32.Update(crc32.Checksum(h[:20], castagnoli), castagnoli, body)
		name := string(body[:nameLen])
		if crc != binary.LittleEndian.Uint32(h[20:]) || !validUID(name) {
			return nil
		}
		if err := fn(off, name, body[nameLen:]); err != nil {
			return err
		}
		off += recHeaderSize + nameLen + dataLen
	}
	return nil
}

// writeIncoming writes Dir/incoming/<name>.dcm whole (a temporary file renamed), without
// fsync: the spool holds the instance until the file is synced.
func writeIncoming(d disk, dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Join(dir, tmpDir), "wo-*"+partSuffix)
	if err != nil {
		return "", err
	}
	_, err = d.write(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	final := filepath.Join(dir, incomingDir, name+".dcm")
	if err == nil {
		err = d.rename(f.Name(), final)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return final, nil
}

// syncWritten makes files written out by writeIncoming durable: one syncfs(2) where there is
// one, else an fsync per file still there (the forwarder may have moved it on) and of the
// directory.
func syncWritten(dir string, files []string) error {
	if len(files) == 0 {
		return nil
	}
	if ok, err := durable.SyncFS(dir); ok {
		return err
	}
	for _, p := range files {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return durable.SyncDir(filepath.Join(dir, incomingDir))
}
