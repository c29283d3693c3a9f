package recording

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// IVF is read here rather than with pion's ivfreader: ivfreader v4.2 multiplies a frame's pts
// by rate/scale instead of scale/rate, which happens to invert pion's own ivfwriter (below) but
// misreads every other IVF file. The format is a 32-byte file header and a 12-byte header per
// frame (size, 64-bit pts), little-endian.

const maxIVFFrame = 16 << 20 // larger than any VP8/VP9 frame a camera sends

var errNotIVF = errors.New("recording: not an IVF file")

// ivfHeader is an IVF file header. A frame's time is pts * scale / rate seconds.
type ivfHeader struct {
	fourcc        string
	width, height int
	rate, scale   uint32
}

// pionLegacy reports a file from pion's ivfwriter without WithDirectPTS (the SFU before it
// wrote a 90 kHz time base): the header says 1/30 s but its pts are milliseconds / 30, so a
// frame's time is pts * 30 ms.
func (h ivfHeader) pionLegacy() bool { return h.rate == 30 && h.scale == 1 }

func (h ivfHeader) time(pts uint64) time.Duration {
	if h.pionLegacy() {
		return time.Duration(pts) * 30 * time.Millisecond
	}
	return time.Duration(float64(pts) * float64(h.scale) / float64(h.rate) * float64(time.Second))
}

type ivfReader struct {
	r io.Reader
	h ivfHeader
}

func newIVFReader(r io.Reader) (*ivfReader, error) {
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("%w: header: %w", errNotIVF, err)
	}
	if string(b[:4]) != "DKIF" {
		return nil, errNotIVF
	}
	h := ivfHeader{fourcc: string(b[8:12]), width: int(binary.LittleEndian.Uint16(b[12:14])),
		height: int(binary.LittleEndian.Uint16(b[14:16])),
		rate:   binary.LittleEndian.Uint32(b[16:20]), scale: binary.LittleEndian.Uint32(b[20:24])}
	if h.rate == 0 || h.scale == 0 {
		return nil, fmt.Errorf("%w: zero time base", errNotIVF)
	}
	if n := int64(binary.LittleEndian.Uint16(b[6:8])); n > int64(len(b)) {
		if _, err := io.CopyN(io.Discard, r, n-int64(len(b))); err != nil {
			return nil, fmt.Errorf("%w: header: %w", errNotIVF, err)
		}
	}
	return &ivfReader{r: r, h: h}, nil
}

// next returns the next frame and its time from the file's start; io.EOF after the last. A
// frame cut short (a file still being written, or a crash) ends the file the same way.
func (v *ivfReader) next() ([]byte, time.Duration, error) {
	var b [12]byte
	if _, err := io.ReadFull(v.r, b[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return nil, 0, err
	}
	size := binary.LittleEndian.Uint32(b[:4])
	if size == 0 || size > maxIVFFrame {
		return nil, 0, fmt.Errorf("recording: IVF frame of %d bytes", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(v.r, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return nil, 0, err
	}
	return data, v.h.time(binary.LittleEndian.Uint64(b[4:12])), nil
}

// vp8Size reads a VP8 keyframe's dimensions (RFC 6386 9.1: a 3-byte frame tag, the start code
// 9d 01 2a, then 14-bit width and height). pion's ivfwriter writes 640x480 into every header
// whatever the camera sends, and the WebM's PixelWidth/PixelHeight set the picture's shape.
func vp8Size(frame []byte) (w, h int, ok bool) {
	if len(frame) < 10 || frame[0]&1 != 0 || frame[3] != 0x9d || frame[4] != 0x01 || frame[5] != 0x2a {
		return 0, 0, false
	}
	w = int(binary.LittleEndian.Uint16(frame[6:8]) & 0x3fff)
	h = int(binary.LittleEndian.Uint16(frame[8:10]) & 0x3fff)
	return w, h, w > 0 && h > 0
}

// keyframe reports whether a VP8 or VP9 frame is a keyframe. VP8: bit 0 of the frame tag is 0
// (RFC 6386 9.1). VP9: the uncompressed header's frame_type is 0 (VP9 bitstream 6.2: frame
// marker, profile bits, a reserved bit in profile 3, show_existing_frame, frame_type).
func keyframe(fourcc string, frame []byte) bool {
	if len(frame) == 0 {
		return false
	}
	b := frame[0]
	if fourcc != "VP90" {
		return b&1 == 0
	}
	profile := (b>>5)&1 | (b>>4)&1<<1
	pos := 4 // bits read from the top: marker (2), profile (2)
	if profile == 3 {
		pos++
	}
	bit := func(i int) byte { return (b >> (7 - i)) & 1 }
	return bit(pos) == 0 && bit(pos+1) == 0
}
