// Package rle decodes the DICOM RLE Lossless transfer syntax
// (1.2.840.10008.1.2.5), DICOM PS3.5 Annex G.
//
// An RLE frame is one encapsulated fragment: a 64-byte header (the number of
// segments followed by 15 little-endian uint32 segment offsets) and then the
// segments. Each segment is one byte plane of one sample, PackBits encoded
// (PS3.5 G.3.1). Segments are ordered per sample, most significant byte plane
// first: a 16-bit sample has two segments (high bytes, then low bytes), 8-bit
// RGB has three (R, G, B), 16-bit RGB six, and a 32-bit sample has four.
//
// The decoder writes every segment straight into the native (little-endian,
// Planar Configuration 0) output with a stride; it uses no intermediate
// buffers.
package rle

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by every error caused by malformed RLE data or by
// invalid geometry arguments.
var ErrCorrupt = errors.New("corrupt RLE data")

const (
	headerSize  = 64
	maxSegments = 15
	// maxFrameSize caps the decoded frame size (and therefore any allocation).
	maxFrameSize = 1 << 31
)

// frameSize returns the native size in bytes of a decoded frame,
// rows*cols*samples*(bitsAllocated/8), validating the geometry.
func frameSize(rows, cols, samples, bitsAllocated int) (int, error) {
	if rows <= 0 || cols <= 0 {
		return 0, fmt.Errorf("%w: invalid frame size %dx%d", ErrCorrupt, cols, rows)
	}
	if samples != 1 && samples != 3 {
		return 0, fmt.Errorf("%w: unsupported samples per pixel %d", ErrCorrupt, samples)
	}
	if bitsAllocated != 8 && bitsAllocated != 16 && bitsAllocated != 32 {
		return 0, fmt.Errorf("%w: unsupported bits allocated %d", ErrCorrupt, bitsAllocated)
	}
	// Overflow-safe: each factor is checked against the cap before multiplying,
	// and the cap (2^31) times a factor <= 2^31 fits in uint64.
	size := uint64(rows)
	for _, f := range [...]uint64{uint64(cols), uint64(samples), uint64(bitsAllocated / 8)} {
		if size > maxFrameSize || f > maxFrameSize {
			return 0, fmt.Errorf("%w: frame %dx%dx%dx%d bits too large", ErrCorrupt, cols, rows, samples, bitsAllocated)
		}
		size *= f
	}
	if size > maxFrameSize || uint64(int(size)) != size {
		return 0, fmt.Errorf("%w: frame %dx%dx%dx%d bits too large", ErrCorrupt, cols, rows, samples, bitsAllocated)
	}
	return int(size), nil
}

// Decode decodes one RLE frame into native pixel data: little-endian, samples
// interleaved pixel by pixel (Planar Configuration 0),
// rows*cols*samples*(bitsAllocated/8) bytes. bitsAllocated is 8, 16 or 32;
// samples is 1 or 3.
func Decode(frame []byte, rows, cols, samples, bitsAllocated int) ([]byte, error) {
	size, err := frameSize(rows, cols, samples, bitsAllocated)
	if err != nil {
		return nil, err
	}
	// Validate the header before allocating so that garbage input does not
	// cost a large allocation.
	if err := checkHeader(frame, samples*(bitsAllocated/8), rows*cols, nil); err != nil {
		return nil, err
	}
	dst := make([]byte, size)
	if err := DecodeInto(dst, frame, rows, cols, samples, bitsAllocated); err != nil {
		return nil, err
	}
	return dst, nil
}

// DecodeInto is Decode writing into dst (len(dst) must be the frame size); it
// allocates nothing (except for the error value on failure). On error the
// contents of dst are unspecified.
func DecodeInto(dst, frame []byte, rows, cols, samples, bitsAllocated int) error {
	size, err := frameSize(rows, cols, samples, bitsAllocated)
	if err != nil {
		return err
	}
	if len(dst) != size {
		return fmt.Errorf("%w: destination is %d bytes, frame needs %d", ErrCorrupt, len(dst), size)
	}
	bps := bitsAllocated / 8 // bytes per sample
	nseg := samples * bps
	var offsets [maxSegments + 1]int
	npix := rows * cols
	if err := checkHeader(frame, nseg, npix, &offsets); err != nil {
		return err
	}
	stride := samples * bps
	for i := 0; i < nseg; i++ {
		s, k := i/bps, i%bps // sample, byte plane (0 = most significant)
		base := s*bps + (bps - 1 - k)
		seg := frame[offsets[i]:offsets[i+1]]
		var short int
		if stride == 1 {
			short = decodeSegment1(dst, seg)
		} else {
			short = decodeSegmentStride(dst[base:], seg, stride, npix)
		}
		if short != 0 {
			return fmt.Errorf("%w: segment %d (sample %d, byte plane %d) decodes to %d bytes, want %d",
				ErrCorrupt, i+1, s, k, npix-short, npix)
		}
	}
	return nil
}

// maxExpansion bounds the PackBits expansion: a 2-byte replicate run yields at
// most 128 bytes.
const maxExpansion = 64

// checkHeader validates the RLE header for a frame that must contain nseg
// segments of npix decoded bytes each. If offsets is not nil, it receives the
// nseg segment offsets followed by the end of the last segment (len(frame)).
func checkHeader(frame []byte, nseg, npix int, offsets *[maxSegments + 1]int) error {
	if len(frame) < headerSize {
		return fmt.Errorf("%w: frame is %d bytes, shorter than the %d-byte header", ErrCorrupt, len(frame), headerSize)
	}
	n := binary.LittleEndian.Uint32(frame)
	if uint64(n) != uint64(nseg) {
		return fmt.Errorf("%w: header has %d segments, want %d", ErrCorrupt, n, nseg)
	}
	prev := uint64(headerSize - 1)
	flen := uint64(len(frame))
	for i := 0; i < nseg; i++ {
		off := uint64(binary.LittleEndian.Uint32(frame[4+4*i:]))
		switch {
		case off < headerSize:
			return fmt.Errorf("%w: segment %d offset %d is inside the header", ErrCorrupt, i+1, off)
		case off <= prev:
			return fmt.Errorf("%w: segment %d offset %d not increasing (previous %d)", ErrCorrupt, i+1, off, prev)
		case off >= flen:
			return fmt.Errorf("%w: segment %d offset %d beyond end of %d-byte frame", ErrCorrupt, i+1, off, flen)
		}
		if i > 0 {
			if err := checkSegmentSize(i-1, off-prev, npix); err != nil {
				return err
			}
		}
		if offsets != nil {
			offsets[i] = int(off)
		}
		prev = off
	}
	if err := checkSegmentSize(nseg-1, flen-prev, npix); err != nil {
		return err
	}
	if offsets != nil {
		offsets[nseg] = len(frame)
	}
	return nil
}

// checkSegmentSize rejects a segment (index i) of n bytes that cannot
// possibly decode to npix bytes. It lets Decode fail before allocating the
// output for a huge frame.
func checkSegmentSize(i int, n uint64, npix int) error {
	if n*maxExpansion < uint64(npix) {
		return fmt.Errorf("%w: segment %d is %d bytes, too short to decode to %d bytes", ErrCorrupt, i+1, n, npix)
	}
	return nil
}

// decodeSegment1 decodes one PackBits segment into dst (stride 1) and returns
// how many bytes of dst are left unfilled (0 on success). Output beyond
// len(dst) is discarded.
func decodeSegment1(dst, src []byte) int {
	o := 0
	for i := 0; i < len(src) && o < len(dst); {
		c := int(int8(src[i]))
		i++
		if c >= 0 {
			// Literal run of c+1 bytes.
			n := c + 1
			lit := src[i:min(i+n, len(src))]
			i += n
			o += copy(dst[o:], lit)
			if len(lit) < n {
				break // segment ended inside the literal
			}
		} else if c != -128 {
			// Replicate run: next byte 1-c times.
			if i >= len(src) {
				break
			}
			b := src[i]
			i++
			run := dst[o:min(o+1-c, len(dst))]
			for j := range run {
				run[j] = b
			}
			o += len(run)
		}
	}
	return len(dst) - o
}

// decodeSegmentStride decodes one PackBits segment into dst[0], dst[stride],
// ..., dst[(npix-1)*stride] and returns how many of those npix bytes are
// left unfilled (0 on success). Output beyond npix bytes is discarded.
// The caller guarantees (npix-1)*stride < len(dst).
func decodeSegmentStride(dst, src []byte, stride, npix int) int {
	left := npix // bytes still to write
	o := 0       // next output index in dst
	for i := 0; i < len(src) && left > 0; {
		c := int(int8(src[i]))
		i++
		if c >= 0 {
			// Literal run of c+1 bytes, cut to what is needed and to what
			// the segment holds.
			n := min(c+1, left, len(src)-i)
			o = scatter(dst, o, src[i:i+n], stride)
			left -= n
			i += c + 1
		} else if c != -128 {
			if i >= len(src) {
				break
			}
			n := min(1-c, left)
			o = fill(dst, o, src[i], n, stride)
			left -= n
			i++
		}
	}
	return left
}

// scatter writes lit to dst[o], dst[o+stride], ... and returns the next
// output index. Strides 2 and 3 (16-bit gray, 8-bit RGB) are unrolled.
func scatter(dst []byte, o int, lit []byte, stride int) int {
	switch stride {
	case 2:
		for len(lit) >= 8 {
			d, l := dst[o:o+15], lit[:8]
			d[0], d[2], d[4], d[6] = l[0], l[1], l[2], l[3]
			d[8], d[10], d[12], d[14] = l[4], l[5], l[6], l[7]
			o += 16
			lit = lit[8:]
		}
	case 3:
		for len(lit) >= 8 {
			d, l := dst[o:o+22], lit[:8]
			d[0], d[3], d[6], d[9] = l[0], l[1], l[2], l[3]
			d[12], d[15], d[18], d[21] = l[4], l[5], l[6], l[7]
			o += 24
			lit = lit[8:]
		}
	}
	for _, b := range lit {
		dst[o] = b
		o += stride
	}
	return o
}

// fill writes b to n bytes dst[o], dst[o+stride], ... and returns the next
// output index.
func fill(dst []byte, o int, b byte, n, stride int) int {
	switch stride {
	case 2:
		for ; n >= 8; n -= 8 {
			d := dst[o : o+15]
			d[0], d[2], d[4], d[6] = b, b, b, b
			d[8], d[10], d[12], d[14] = b, b, b, b
			o += 16
		}
	case 3:
		for ; n >= 8; n -= 8 {
			d := dst[o : o+22]
			d[0], d[3], d[6], d[9] = b, b, b, b
			d[12], d[15], d[18], d[21] = b, b, b, b
			o += 24
		}
	}
	if n > 0 {
		d := dst[o : o+(n-1)*stride+1]
		for j := 0; j < len(d); j += stride {
			d[j] = b
		}
		o += n * stride
	}
	return o
}
