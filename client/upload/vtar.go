package upload

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sanping/sanping/protocol"
)

// A bundle's tar is never written to disk. It is laid out from what the journal records of
// each member (size, modification time, SHA-256) and read straight from the files as it is
// sent, a coded member from the bundle's cache (coding.go): the same files give the same bytes
// at the same offsets, which is what resuming a tus upload needs, and the station's disk
// writes nothing but the journal and the coded members. A file that changes before its bytes
// are sent is noticed by its size or time (the bundle is laid out again and sent as a new
// upload), or, changed within the same second to the same size, by the server, which checks
// each member's SHA-256.

// errFileChanged: a file of the bundle is not what the journal recorded.
var errFileChanged = errors.New("a file changed since it was bundled")

// member is one file of a bundle as bundled.
type member struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	// SHA256 is the hex SHA-256 of the instance the server is to store: the file's, or with
	// Coding jpegls its transcoding's; "" for a file left out (unreadable).
	SHA256 string `json:"sha256"`
	// Coding says how the member's bytes are coded (coding.go); "" for the file as it is. A
	// coded member's bytes are Sent bytes of SHA-256 SentSHA256 in the bundle's cache.
	Coding     string `json:"coding,omitempty"`
	Sent       int64  `json:"sent,omitempty"`
	SentSHA256 string `json:"sentSha256,omitempty"`
}

// timeUnit is the precision of the modification times recorded.
const timeUnit = time.Second

// tarBytes is the length of the member's data in the tar.
func (m member) tarBytes() int64 {
	if m.Coding != "" {
		return m.Sent
	}
	return m.Size
}

// prepare hashes the bundle's files, codes them into the cache when c is not nil, and records
// them in b.Members; files that cannot be read are returned as failed and left out of the tar.
func prepare(b *bundle, c *coder) (failed []FileOutcome) {
	b.Members = make([]member, len(b.Files))
	buf := make([]byte, 1<<20)
	for i, p := range b.Files {
		m, err := hashFile(p, buf)
		if err != nil {
			failed = append(failed, FileOutcome{Path: p, Outcome: OutcomeFailed, Reason: ReasonUnreadable, Error: "reading: " + err.Error()})
			continue
		}
		if c != nil {
			m = c.member(b, i, m)
		}
		b.Members[i] = m
	}
	return failed
}

// member codes file i of b into the cache, m being the file as hashed; m itself when the file
// goes as it is (a coding that fails sends the file as it is: the link pays, nothing is lost).
func (c *coder) member(b *bundle, i int, m member) member {
	f, err := os.Open(b.Files[i])
	if err != nil {
		return m
	}
	defer f.Close()
	dst := c.path(b, i)
	coding, n, sum, err := c.code(f, m.Size, dst)
	if err != nil || coding == "" {
		return m
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != m.Size || !fi.ModTime().Truncate(timeUnit).Equal(m.ModTime) {
		os.Remove(dst)
		return m // changed while coded: the file's own bytes, which vtar checks as it sends
	}
	m.Coding, m.Sent, m.SentSHA256 = coding, n, sum
	if coding == codingJPEGLS {
		m.SHA256 = sum // the server stores the transcoding
	}
	return m
}

func hashFile(path string, buf []byte) (member, error) {
	f, err := os.Open(path)
	if err != nil {
		return member{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return member{}, err
	}
	if !fi.Mode().IsRegular() {
		return member{}, errors.New("not a regular file")
	}
	h := sha256.New()
	// Hidden behind a plain io.Reader, f would hand the copy its own 32 KiB buffer (WriteTo).
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf)
	if err != nil {
		return member{}, err
	}
	if n != fi.Size() {
		return member{}, errFileChanged
	}
	return member{Size: fi.Size(), ModTime: fi.ModTime().Truncate(timeUnit), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// piece is a stretch of the tar: fixed bytes (headers, padding, the end), or a file's data.
type piece struct {
	off  int64
	n    int64
	data []byte // nil for a file's data
	file int    // index in the bundle's files, for file data
}

// vtar reads a bundle's tar from its files (io.ReaderAt). Files are opened when first read
// and checked against the journal's size and time; Close closes them.
type vtar struct {
	files  []string
	cached []string // a coded member's cache file, else ""
	member []member
	pieces []piece
	size   int64

	mu      sync.Mutex
	open    map[int]*os.File
	changed atomic.Bool // a file is not as bundled: lay the bundle out again
}

// layout lays out the tar of b from b.Members, coded members read from c's cache.
func layout(b *bundle, c *coder) (*vtar, error) {
	t := &vtar{files: b.Files, cached: make([]string, len(b.Files)), member: b.Members, open: map[int]*os.File{}}
	var hb bytes.Buffer
	add := func(p piece) {
		p.off = t.size
		t.pieces = append(t.pieces, p)
		t.size += p.n
	}
	for i, p := range b.Files {
		m := b.Members[i]
		if m.SHA256 == "" {
			continue // left out
		}
		hb.Reset()
		// A fresh writer per header: only its header bytes are kept, the data comes from the file.
		tw := tar.NewWriter(&hb)
		h := &tar.Header{Name: memberName(i, p), Mode: 0o644, Size: m.tarBytes(), ModTime: m.ModTime, Typeflag: tar.TypeReg,
			Format: tar.FormatPAX, PAXRecords: map[string]string{protocol.TarSHA256: m.SHA256}}
		switch m.Coding {
		case "":
		case codingJPEGLS: // a Part 10 file like any other
			t.cached[i] = c.path(b, i)
		case codingZstd:
			t.cached[i] = c.path(b, i)
			h.PAXRecords[protocol.TarCoding] = codingZstd
			h.PAXRecords[protocol.TarSize] = strconv.FormatInt(m.Size, 10)
		default:
			return nil, fmt.Errorf("laying out the tar: member %d has unknown coding %q", i, m.Coding)
		}
		if m.Coding != "" && c == nil {
			return nil, fmt.Errorf("laying out the tar: member %d is coded and there is no cache", i)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("laying out the tar: %w", err)
		}
		add(piece{n: int64(hb.Len()), data: bytes.Clone(hb.Bytes())})
		n := m.tarBytes()
		add(piece{n: n, file: i})
		if pad := (512 - n%512) % 512; pad > 0 {
			add(piece{n: pad, data: make([]byte, pad)})
		}
	}
	if len(t.pieces) == 0 {
		return t, nil
	}
	add(piece{n: 1024, data: make([]byte, 1024)}) // the two zero blocks that end an archive
	return t, nil
}

// ReadAt reads the tar. A file whose size or time is not as bundled gives errFileChanged.
func (t *vtar) ReadAt(p []byte, off int64) (int, error) {
	if off >= t.size {
		return 0, io.EOF
	}
	i := sort.Search(len(t.pieces), func(i int) bool { return t.pieces[i].off+t.pieces[i].n > off })
	n := 0
	for n < len(p) && i < len(t.pieces) {
		pc := t.pieces[i]
		at := off + int64(n) - pc.off
		want := min(int64(len(p)-n), pc.n-at)
		if pc.data != nil {
			copy(p[n:n+int(want)], pc.data[at:])
		} else {
			f, err := t.file(pc.file)
			if err != nil {
				return n, err
			}
			k, err := f.ReadAt(p[n:n+int(want)], at)
			if k < int(want) {
				if err == nil || errors.Is(err, io.EOF) {
					err = errFileChanged
					t.changed.Store(true)
				}
				return n + k, fmt.Errorf("%s: %w", t.files[pc.file], err)
			}
		}
		n += int(want)
		i++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (t *vtar) file(i int) (*os.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f := t.open[i]; f != nil {
		return f, nil
	}
	if t.cached[i] != "" {
		// The coded bytes; the file itself must be as bundled too (a modality's resend).
		f, err := os.Open(t.cached[i])
		var fi os.FileInfo
		if err == nil {
			fi, err = f.Stat()
		}
		if err != nil || fi.Size() != t.member[i].Sent || !t.unchangedFile(i) {
			if f != nil {
				f.Close()
			}
			t.changed.Store(true)
			return nil, fmt.Errorf("%s: %w", t.files[i], errFileChanged)
		}
		t.open[i] = f
		return f, nil
	}
	f, err := os.Open(t.files[i])
	if err != nil {
		t.changed.Store(true)
		return nil, fmt.Errorf("%s: %w: %w", t.files[i], errFileChanged, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != t.member[i].Size || !fi.ModTime().Truncate(timeUnit).Equal(t.member[i].ModTime) {
		f.Close()
		t.changed.Store(true)
		return nil, fmt.Errorf("%s: %w", t.files[i], errFileChanged)
	}
	t.open[i] = f
	return f, nil
}

// unchanged reports whether every file is still as bundled (size and time).
func (t *vtar) unchanged() bool {
	for i, m := range t.member {
		if m.SHA256 != "" && !t.unchangedFile(i) {
			return false
		}
	}
	return true
}

// unchangedFile reports whether file i is still as bundled (size and time).
func (t *vtar) unchangedFile(i int) bool {
	m := t.member[i]
	fi, err := os.Stat(t.files[i])
	return err == nil && fi.Size() == m.Size && fi.ModTime().Truncate(timeUnit).Equal(m.ModTime)
}

// Close closes the files opened.
func (t *vtar) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, f := range t.open {
		f.Close()
		delete(t.open, i)
	}
	return nil
}
