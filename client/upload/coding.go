package upload

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/dcm"
)

// Every byte on a 1-3 Mbit/s link counts, and no pixel may change. So a member of a bundle is
// sent as one of (member.Coding):
//   - codingJPEGLS: an image with native pixel data, rewritten as JPEG-LS lossless (.80) by
//     dcm.TranscodeJPEGLS with the same SOP Instance UID (PS3.5 8.2.3: a lossless transcoding
//     is the same instance). The member is an ordinary Part 10 file; the server stores it as
//     it is, and its SHA-256 record is the transcoding's.
//   - codingZstd: anything else not compressed (SR, PDF, presentation states, native pixel data
//     JPEG-LS does not take): the file zstd-compressed, with PAX records naming the coding and
//     the file's own size and SHA-256; the server decodes it before the store takes it.
//   - "": the file as it is (compressed images, -compress=false, or when coding saves nothing).
//
// A coded member's bytes are written at prepare time to a per-bundle cache under the journal
// directory (cache/<bundle>/<member>) and the tar is read from there: the same bytes at the same
// offsets after a restart, as resuming needs. The journal records the cached bytes' size and
// SHA-256; a cache that is gone is coded again from the file (both coders are deterministic)
// and must hash the same, else the bundle is laid out again as a new upload.
//
// Coding each member whole, rather than the whole tar, keeps the server's ingest as it is: a
// tar member is still one instance, streamed into the store as it arrives, its bytes after a
// cut still at the offsets tus resumes from, and one bad member still fails alone.
const (
	codingJPEGLS = "jpegls"
	codingZstd   = protocol.CodingZstd
)

// coder codes members into a bundle's cache; nil sends every file as it is.
type coder struct {
	dir string // the journal's cache directory; bundle b's members are in dir/b.ID
}

func (c *coder) bundleDir(b *bundle) string { return filepath.Join(c.dir, b.ID) }

// path is where member i of b is cached.
func (c *coder) path(b *bundle, i int) string {
	return filepath.Join(c.bundleDir(b), strconv.Itoa(i))
}

// forget removes b's cache.
func (c *coder) forget(b *bundle) {
	if c != nil {
		os.RemoveAll(c.bundleDir(b))
	}
}

// code writes the coded form of f (size bytes) to dst and returns its coding, size and
// SHA-256; coding "" (nothing written) when the file goes as it is.
func (c *coder) code(f *os.File, size int64, dst string) (coding string, n int64, sum string, err error) {
	meta, _, err := dcm.ReadMeta(f, size)
	if err != nil {
		return "", 0, "", nil // the server says what is wrong with it
	}
	switch meta.TransferSyntaxUID {
	case dcm.ImplicitVRLittleEndian, dcm.ExplicitVRLittleEndian, dcm.ExplicitVRBigEndian, dcm.DeflatedExplicitVRLE:
	default:
		return "", 0, "", nil // compressed pixel data goes as it is
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", 0, "", err
	}
	coding = codingJPEGLS
	n, sum, err = writeCoded(dst, func(w io.Writer) error { return transcodeJPEGLS(w, f, size, meta.TransferSyntaxUID, dst) })
	if err != nil {
		coding = codingZstd
		n, sum, err = writeCoded(dst, func(w io.Writer) error { return zstdFile(w, f) })
	}
	if err != nil {
		return "", 0, "", err
	}
	// A tar block or less saved is not worth a coding (noise, an already compressed PDF).
	if n+512 >= size {
		os.Remove(dst)
		return "", 0, "", nil
	}
	return coding, n, sum, nil
}

// writeCoded writes what code writes to dst (through a temporary file and a rename, so that a
// cache file that exists is whole) and returns its size and SHA-256.
func writeCoded(dst string, code func(io.Writer) error) (int64, string, error) {
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	err = code(cw)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, "", err
	}
	return cw.n, hex.EncodeToString(h.Sum(nil)), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errNotCoded: the file has no pixel data JPEG-LS can take without changing a value.
var errNotCoded = errors.New("not JPEG-LS")

// transcodeJPEGLS writes src as JPEG-LS lossless. Implicit and explicit VR little endian go
// straight to dcm.TranscodeJPEGLS; big endian and deflated are first rewritten as explicit VR
// little endian (dcm.TranscodeToExplicitLE) beside dst.
func transcodeJPEGLS(w io.Writer, src *os.File, size int64, ts, dst string) error {
	var in io.ReaderAt = src
	if ts == dcm.ExplicitVRBigEndian || ts == dcm.DeflatedExplicitVRLE {
		le, err := os.CreateTemp(filepath.Dir(dst), "le-*")
		if err != nil {
			return err
		}
		defer os.Remove(le.Name())
		defer le.Close()
		if err := dcm.TranscodeToExplicitLE(le, src, size); err != nil {
			return errNotCoded
		}
		if size, err = le.Seek(0, io.SeekCurrent); err != nil {
			return err
		}
		in = le
	}
	inst, err := dcm.Parse(in, size)
	if err != nil || inst.Layout.Pixel == nil || inst.Layout.Pixel.Encapsulated {
		return errNotCoded
	}
	if ok, err := valuesWithinBitsStored(inst, in); err != nil || !ok {
		return errNotCoded
	}
	if err := dcm.TranscodeJPEGLS(w, in, size); err != nil {
		return fmt.Errorf("%w: %v", errNotCoded, err)
	}
	return nil
}

// valuesWithinBitsStored reports whether the bits of each sample above High Bit are zero, or
// for signed samples (Pixel Representation 1) copies of the sign bit. JPEG-LS codes Bits Stored
// bits (dcm.TranscodeJPEGLS drops the rest), so anything else there (an overlay in the unused
// bits, retired but found in old files) would be lost: such an image goes zstd-compressed.
func valuesWithinBitsStored(in *dcm.Instance, src io.ReaderAt) (bool, error) {
	ba, _ := in.Int(tag.BitsAllocated)
	bs, _ := in.Int(tag.BitsStored)
	signed, _ := in.Int(tag.PixelRepresentation)
	if bs >= ba || (ba != 8 && ba != 16) || bs < 1 {
		return true, nil // nothing above, or TranscodeJPEGLS refuses it anyway
	}
	v := in.Layout.Pixel.Value
	r := io.NewSectionReader(src, v.Offset, v.Length)
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(r, buf)
		n -= n % 2
		if ba == 8 {
			for _, b := range buf[:n] {
				if !fits(uint16(b), 8, bs, signed == 1) {
					return false, nil
				}
			}
		} else {
			for i := 0; i < n; i += 2 {
				if !fits(binary.LittleEndian.Uint16(buf[i:]), 16, bs, signed == 1) {
					return false, nil
				}
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// fits tells whether the bits of v (width bits) above the low bs are zero or, signed, all
// equal to bit bs-1.
func fits(v uint16, width, bs int, signed bool) bool {
	high := v >> (bs - 1) // the sign bit and above
	if high>>1 == 0 {
		return true
	}
	return signed && high == uint16(1)<<(width-bs+1)-1
}

// zstdFile writes f zstd-compressed. One goroutine and a fixed level: the same file gives the
// same bytes, which a cache coded again after a restart must.
func zstdFile(w io.Writer, f *os.File) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(4<<20)) // the server decodes windows up to 8 MiB
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		zw.Close()
		return err
	}
	return zw.Close()
}

// restore makes sure the cache holds b's coded members as the journal records them, coding
// again those that are gone. false: the file or its coding is not what was bundled, and the
// bundle must be laid out again.
func (c *coder) restore(b *bundle) (bool, error) {
	buf := make([]byte, 1<<20)
	for i, m := range b.Members {
		if m.Coding == "" || m.SHA256 == "" {
			continue
		}
		dst := c.path(b, i)
		if got, err := hashPath(dst, buf); err == nil && got.Size == m.Sent && got.SHA256 == m.SentSHA256 {
			continue
		}
		f, err := os.Open(b.Files[i])
		if err != nil {
			return false, nil
		}
		fi, err := f.Stat()
		if err != nil || fi.Size() != m.Size || !fi.ModTime().Truncate(timeUnit).Equal(m.ModTime) {
			f.Close()
			return false, nil
		}
		coding, n, sum, err := c.code(f, m.Size, dst)
		f.Close()
		if err != nil {
			return false, err
		}
		if coding != m.Coding || n != m.Sent || sum != m.SentSHA256 {
			return false, nil
		}
	}
	return true, nil
}

// hashPath is the size and SHA-256 of a file.
func hashPath(path string, buf []byte) (member, error) {
	f, err := os.Open(path)
	if err != nil {
		return member{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf)
	if err != nil {
		return member{}, err
	}
	return member{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
