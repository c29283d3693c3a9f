package scp

import (
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
	keep    bool     // a record could not be written out: replay it at the next start
	files   []string // written out since activation (where there is no syncfs)

	syncMu sync.Mutex
	synced int64 // records up to here are durable; guarded by syncMu
}

// spool is the Server's write-ahead log in Dir/spool.
type spool struct {
	dir     string // the Server's Dir
	log     *slog.Logger
	segSize int64

	mu       sync.Mutex
	cur      *segment
	free     []*segment
	all      []*segment
	nextName int
	prepping bool
	closed   bool

	toRecycle []*segment    // full segments with everything written out
	wake      chan struct{} // the recycler has work (or the spool closed)
	done      chan struct{} // the recycler has stopped
}

// openSpool replays what a crash may have left, then keeps spareSegments segments ready.
func openSpool(dir string, log *slog.Logger, segSize int64) (*spool, error) {
	sp := &spool{dir: dir, log: log, segSize: segSize, wake: make(chan struct{}, 1), done: make(chan struct{})}
	sd := filepath.Join(dir, spoolDir)
	if err := os.MkdirAll(sd, 0o755); err != nil {
		return nil, fmt.Errorf("creating the spool: %w", err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(sd, "*.tmp")); len(tmps) > 0 {
		for _, p := range tmps {
			os.Remove(p) // a segment whose preparation was cut short
		}
	}
	names, err := filepath.Glob(filepath.Join(sd, "seg-*"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var replay []*segment
	for _, p := range names {
		var n int
		if _, err := fmt.Sscanf(filepath.Base(p), "seg-%06d", &n); err == nil && n >= sp.nextName {
			sp.nextName = n + 1
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			sp.closeFiles()
			return nil, fmt.Errorf("opening spool segment: %w", err)
		}
		seg := &segment{path: p, f: f}
		if fi, err := f.Stat(); err != nil || fi.Size() != segSize {
			f.Close()
			os.Remove(p) // not one of ours, or cut short
			continue
		}
		sp.all = append(sp.all, seg)
		if gen, ok := readSegHeader(f); ok && gen != 0 {
			seg.gen = gen
			replay = append(replay, seg)
		}
	}
	if err := sp.replay(replay); err != nil {
		sp.closeFiles()
		return nil, err
	}
	for _, seg := range sp.all {
		seg.gen = 0
		sp.free = append(sp.free, seg)
	}
	for len(sp.free) < spareSegments {
		seg, err := sp.prepare()
		if err != nil {
			sp.closeFiles()
			return nil, err
		}
		sp.all = append(sp.all, seg)
		sp.free = append(sp.free, seg)
	}
	go sp.recycler()
	return sp, nil
}

// replay writes out the records of segments not marked free, makes them durable, then marks
// the segments free.
func (sp *spool) replay(segs []*segment) error {
	if len(segs) == 0 {
		return nil
	}
	var written []string
	n := 0
	for _, seg := range segs {
		err := scanSegment(seg.f, sp.segSize, seg.gen, func(name string, data []byte) error {
			p, err := writeIncoming(sp.dir, name, data)
			if err != nil {
				return fmt.Errorf("writing out %s from the spool: %w", name, err)
			}
			written = append(written, p)
			n++
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := syncWritten(sp.dir, written); err != nil {
		return fmt.Errorf("syncing instances written out from the spool: %w", err)
	}
	for _, seg := range segs {
		if err := markFree(seg); err != nil {
			return err
		}
	}
	sp.log.Info("scp spool replayed", "instances", n, "segments", len(segs))
	return nil
}

// prepare creates a zero-filled segment under its final name.
func (sp *spool) prepare() (*segment, error) {
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
		_, err = f.Write(zero[:min(int64(len(zero)), sp.segSize-off)])
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(sd, name))
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

// append makes a record of the instance durable in the spool. It returns the segment, which
// must hear of the instance's writing out (written).
func (sp *spool) append(name string, data []byte) (*segment, error) {
	size := int64(recHeaderSize + len(name) + len(data))
	if size > sp.segSize-segHeaderSize {
		return nil, fmt.Errorf("instance of %d bytes too large for the spool", len(data))
	}
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil, errors.New("spool closed")
	}
	for sp.cur == nil || sp.cur.end+size > sp.segSize {
		if err := sp.rotate(); err != nil {
			sp.mu.Unlock()
			return nil, err
		}
		if sp.closed {
			sp.mu.Unlock()
			return nil, errors.New("spool closed")
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
		return nil, fmt.Errorf("writing to the spool: %w", err)
	}
	seg.end += size
	seg.pending++
	sp.mu.Unlock()

	seg.syncMu.Lock()
	defer seg.syncMu.Unlock()
	if seg.synced >= off+size {
		return seg, nil // another association's fdatasync covered this record
	}
	sp.mu.Lock()
	target := seg.end
	sp.mu.Unlock()
	if err := durable.DataSync(seg.f); err != nil {
		sp.mu.Lock()
		seg.keep = true
		sp.retire(seg)
		sp.written(seg, "")
		sp.mu.Unlock()
		return nil, fmt.Errorf("syncing the spool: %w", err)
	}
	seg.synced = target
	return seg, nil
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
			return err
		}
		sp.all = append(sp.all, seg)
		sp.free = append(sp.free, seg)
		return nil
	}
	seg := sp.free[0]
	sp.free = sp.free[1:]
	var b [8]byte
	for seg.gen == 0 {
		rand.Read(b[:])
		seg.gen = binary.LittleEndian.Uint64(b[:])
	}
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

// written notes that one record of seg was written out to path ("" if that failed). Called
// with mu held.
func (sp *spool) written(seg *segment, path string) {
	seg.pending--
	if path == "" {
		seg.keep = true
	} else {
		seg.files = append(seg.files, path)
	}
	if seg.full && seg.pending == 0 && !seg.keep {
		sp.queueRecycle(seg)
	}
}

// writeOut writes the instance to Dir/incoming after its record is durable, and tells seg.
func (sp *spool) writeOut(seg *segment, name string, data []byte) (string, error) {
	p, err := writeIncoming(sp.dir, name, data)
	sp.mu.Lock()
	if err != nil {
		sp.written(seg, "")
	} else {
		sp.written(seg, p)
	}
	sp.mu.Unlock()
	return p, err
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
}

// close retires the current segment, waits for the recycler and closes the files. Records of
// segments not recycled (a write-out failed) are replayed at the next start.
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

// scanSegment calls fn for each record of generation gen from the start of the segment, up to
// the first that does not check out (never written, torn, or left from an earlier use).
func scanSegment(r io.ReaderAt, size int64, gen uint64, fn func(name string, data []byte) error) error {
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
		if err := fn(name, body[nameLen:]); err != nil {
			return err
		}
		off += recHeaderSize + nameLen + dataLen
	}
	return nil
}

// writeIncoming writes Dir/incoming/<name>.dcm whole (a temporary file renamed), without
// fsync: the spool holds the instance until the file is synced.
func writeIncoming(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Join(dir, tmpDir), "wo-*"+partSuffix)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	final := filepath.Join(dir, incomingDir, name+".dcm")
	if err == nil {
		err = os.Rename(f.Name(), final)
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
