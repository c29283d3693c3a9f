package dcm

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Frame is one frame's bytes in the stored file: one span for native pixel data, the
// fragments' values (item headers excluded) for encapsulated pixel data.
type Frame []Span

// Size is the frame's length in bytes.
func (f Frame) Size() int64 {
	var n int64
	for _, s := range f {
		n += s.Length
	}
	return n
}

// Frames works out frame boundaries. The library treats each encapsulated fragment as a frame
// and ignores the offset tables, so this is ours: the Extended Offset Table, then the Basic
// Offset Table, then one fragment per frame when counts agree, then codec start markers
// (PS3.5 A.4).
func (in *Instance) Frames(src io.ReaderAt) ([]Frame, error) {
	px := in.Layout.Pixel
	if px == nil {
		return nil, nil
	}
	n, ok := in.Int(tag.NumberOfFrames)
	if !ok || n < 1 {
		n = 1
	}
	if !px.Encapsulated {
		return in.nativeFrames(n)
	}
	frags := px.Fragments
	if len(frags) == 0 {
		return nil, nil
	}
	if in.Layout.ExtendedOffsets != nil {
		raw, err := in.readSpan(src, *in.Layout.ExtendedOffsets)
		if err != nil {
			return nil, err
		}
		offsets := make([]int64, 0, len(raw)/8)
		for i := 0; i+8 <= len(raw); i += 8 {
			offsets = append(offsets, int64(binary.LittleEndian.Uint64(raw[i:])))
		}
		if f, err := groupByOffsets(px, offsets); err == nil {
			return f, nil
		}
	}
	if px.BasicOffsetTable.Length >= 4 {
		raw, err := in.readSpan(src, px.BasicOffsetTable)
		if err != nil {
			return nil, err
		}
		offsets := make([]int64, 0, len(raw)/4)
		for i := 0; i+4 <= len(raw); i += 4 {
			offsets = append(offsets, int64(binary.LittleEndian.Uint32(raw[i:])))
		}
		if f, err := groupByOffsets(px, offsets); err == nil {
			return f, nil
		}
	}
	if n == 1 {
		return []Frame{frags}, nil
	}
	if len(frags) == n {
		out := make([]Frame, n)
		for i, s := range frags {
			out[i] = Frame{s}
		}
		return out, nil
	}
	// More fragments than frames and no usable offset table: a new frame starts at a fragment
	// that begins with a JPEG SOI or a JPEG 2000 codestream/JP2 signature.
	var out []Frame
	head := make([]byte, 12)
	for _, s := range frags {
		m, _ := io.ReadFull(SpanReader(src, in.Layout, Span{s.Offset, min(s.Length, 12)}), head)
		if startsFrame(head[:m]) || len(out) == 0 {
			out = append(out, Frame{s})
		} else {
			out[len(out)-1] = append(out[len(out)-1], s)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("%w: cannot find frame boundaries: %d fragments, %d frames, no offset table", ErrMalformed, len(frags), n)
	}
	return out, nil
}

func startsFrame(b []byte) bool {
	switch {
	case len(b) >= 2 && b[0] == 0xFF && b[1] == 0xD8: // JPEG, JPEG-LS SOI
		return true
	case len(b) >= 4 && b[0] == 0xFF && b[1] == 0x4F && b[2] == 0xFF && b[3] == 0x51: // J2K SOC+SIZ
		return true
	case len(b) >= 12 && string(b[4:8]) == "jP  ": // JP2 signature box
		return true
	}
	return false
}

// groupByOffsets groups fragments by item offsets measured from the first fragment's item tag.
func groupByOffsets(px *PixelLayout, offsets []int64) ([]Frame, error) {
	if len(offsets) == 0 || offsets[0] != 0 {
		return nil, fmt.Errorf("offset table does not start at 0")
	}
	base := px.ItemStarts[0]
	out := make([]Frame, 0, len(offsets))
	fi := 0
	for k, off := range offsets {
		if k > 0 && off <= offsets[k-1] {
			return nil, fmt.Errorf("offset table not increasing")
		}
		next := int64(-1)
		if k+1 < len(offsets) {
			next = offsets[k+1]
		}
		if fi >= len(px.Fragments) || px.ItemStarts[fi]-base != off {
			return nil, fmt.Errorf("offset %d is not at a fragment", off)
		}
		var f Frame
		for fi < len(px.Fragments) && (next < 0 || px.ItemStarts[fi]-base < next) {
			f = append(f, px.Fragments[fi])
			fi++
		}
		out = append(out, f)
	}
	return out, nil
}

func (in *Instance) nativeFrames(n int) ([]Frame, error) {
	px := in.Layout.Pixel
	rows, _ := in.Int(tag.Rows)
	cols, _ := in.Int(tag.Columns)
	bits, _ := in.Int(tag.BitsAllocated)
	spp, ok := in.Int(tag.SamplesPerPixel)
	if !ok {
		spp = 1
	}
	if rows <= 0 || cols <= 0 || bits <= 0 || spp <= 0 || rows > 0xFFFF || cols > 0xFFFF || bits > 64 || spp > 4 {
		return nil, fmt.Errorf("%w: pixel data without usable Rows, Columns, Bits Allocated", ErrMalformed)
	}
	bitsPerFrame := int64(rows) * int64(cols) * int64(spp) * int64(bits)
	if bitsPerFrame%8 != 0 && n > 1 {
		// 1-bit frames follow one another bit by bit (PS3.5 8.1.1 and Annex D), so frame i
		// starts at bit i*bitsPerFrame, not on a byte boundary: its span is the bytes holding
		// any of its bits, and render skips the first (i*bitsPerFrame)%8 bits of the first.
		if int64(n) > px.Value.Length*8/bitsPerFrame {
			return nil, fmt.Errorf("%w: pixel data holds %d bytes, too few for %d frames of %d bits", ErrMalformed, px.Value.Length, n, bitsPerFrame)
		}
		out := make([]Frame, n)
		for i := range out {
			start, end := int64(i)*bitsPerFrame/8, (int64(i+1)*bitsPerFrame+7)/8
			out[i] = Frame{{px.Value.Offset + start, end - start}}
		}
		return out, nil
	}
	size := (bitsPerFrame + 7) / 8
	if in.String(tag.PhotometricInterpretation) == "YBR_FULL_422" && spp == 3 {
		size = int64(rows) * int64(cols) * 2 * int64(bits) / 8 // PS3.3 C.7.6.3.1.2
	}
	// Compared by division: NumberOfFrames x frame size from a hostile file can overflow.
	if size <= 0 || int64(n) > px.Value.Length/size {
		return nil, fmt.Errorf("%w: pixel data holds %d bytes, too few for %d frames of %d bytes", ErrMalformed, px.Value.Length, n, size)
	}
	out := make([]Frame, n)
	for i := range out {
		out[i] = Frame{{px.Value.Offset + int64(i)*size, size}}
	}
	return out, nil
}
