package rle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// ---------------------------------------------------------------------------
// Test encoder (PS3.5 G.3.1 PackBits, G.4 segment layout)

type encOpts struct {
	minRep  int  // shortest run encoded as a replicate run (default 3; 2 is also valid)
	maxRun  int  // longest literal or replicate run (default and maximum 128)
	noops   bool // insert a -128 no-op code before every run
	extra   int  // append a replicate run producing this many surplus bytes per segment
	pad     bool // pad odd-length segments to even length with padByte
	padByte byte
}

// packBits appends the PackBits encoding of src to dst.
func packBits(dst, src []byte, o encOpts) []byte {
	minRep, maxRun := o.minRep, o.maxRun
	if minRep < 2 {
		minRep = 3
	}
	if maxRun <= 0 || maxRun > 128 {
		maxRun = 128
	}
	runAt := func(i int) int {
		r := 1
		for i+r < len(src) && r < maxRun && src[i+r] == src[i] {
			r++
		}
		return r
	}
	for i := 0; i < len(src); {
		if o.noops {
			dst = append(dst, 0x80)
		}
		if r := runAt(i); r >= minRep {
			dst = append(dst, byte(int8(1-r)), src[i])
			i += r
			continue
		}
		j := i + 1
		for j < len(src) && j-i < maxRun && runAt(j) < minRep {
			j++
		}
		dst = append(dst, byte(j-i-1))
		dst = append(dst, src[i:j]...)
		i = j
	}
	return dst
}

// encodeFrame RLE-encodes a native (little-endian, interleaved) frame.
func encodeFrame(native []byte, samples, bits int, o encOpts) []byte {
	bps := bits / 8
	stride := samples * bps
	npix := len(native) / stride
	nseg := samples * bps
	frame := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(frame, uint32(nseg))
	plane := make([]byte, npix)
	for i := 0; i < nseg; i++ {
		s, k := i/bps, i%bps
		off := s*bps + (bps - 1 - k)
		for p := range plane {
			plane[p] = native[p*stride+off]
		}
		binary.LittleEndian.PutUint32(frame[4+4*i:], uint32(len(frame)))
		start := len(frame)
		frame = packBits(frame, plane, o)
		for e := o.extra; e > 0; {
			n := min(e, 128)
			frame = append(frame, byte(int8(1-n)), 0xEE)
			e -= n
		}
		if o.pad && (len(frame)-start)%2 == 1 {
			frame = append(frame, o.padByte)
		}
	}
	return frame
}

// ---------------------------------------------------------------------------
// Test images

// makeImage returns a native frame filled according to pattern.
func makeImage(pattern string, rows, cols, samples, bits int, seed uint64) []byte {
	bps := bits / 8
	n := rows * cols * samples * bps
	buf := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	switch pattern {
	case "random":
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
	case "flat":
		for i := range buf {
			buf[i] = 0x5A
		}
	case "ramp":
		for i := range buf {
			buf[i] = byte(i / (samples * bps) / 3)
		}
	case "mixed":
		// Alternating flat stretches (some longer than 128) and noise, with
		// independent structure per byte so that every plane differs.
		for i := 0; i < len(buf); {
			l := 1 + r.IntN(400)
			if r.IntN(2) == 0 {
				v := byte(r.Uint32())
				for j := i; j < min(i+l, len(buf)); j++ {
					buf[j] = v
				}
			} else {
				for j := i; j < min(i+l, len(buf)); j++ {
					buf[j] = byte(r.Uint32())
				}
			}
			i += l
		}
		// Make the planes share runs too (runs in pixel space, not bytes).
		for p := 0; p+1 < rows*cols; p += 1 + r.IntN(3) {
			if r.IntN(4) == 0 {
				for l := r.IntN(300); l > 0 && p+1 < rows*cols; l-- {
					copy(buf[(p+1)*samples*bps:(p+2)*samples*bps], buf[p*samples*bps:(p+1)*samples*bps])
					p++
				}
			}
		}
	default:
		panic("unknown pattern " + pattern)
	}
	return buf
}

// ctImage returns a CT-like 16-bit signed frame: padding outside the field of
// view, noisy air, a noisy soft-tissue body and some bone.
func ctImage(rows, cols int) []byte {
	buf := make([]byte, rows*cols*2)
	r := rand.New(rand.NewPCG(1, 2))
	cy, cx := float64(rows)/2, float64(cols)/2
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			dy, dx := (float64(y)-cy)/cy, (float64(x)-cx)/cx
			d := math.Hypot(dx, dy)
			var v int
			switch {
			case d > 0.98:
				v = -2000 // outside the reconstruction circle
			case math.Hypot(dx/0.8, dy/0.6) > 1:
				v = -1000 + r.IntN(21) - 10 // air
			case math.Hypot((dx-0.3)/0.12, dy/0.2) < 1:
				v = 700 + int(200*math.Sin(dx*20)) + r.IntN(61) - 30 // bone
			default:
				v = 40 + int(30*math.Cos(dy*7)) + r.IntN(41) - 20 // soft tissue
			}
			binary.LittleEndian.PutUint16(buf[(y*cols+x)*2:], uint16(int16(v)))
		}
	}
	return buf
}

// photoImage returns a photo/screenshot-like 8-bit RGB frame: flat UI blocks
// at the top, a noisy gradient below.
func photoImage(rows, cols int) []byte {
	buf := make([]byte, rows*cols*3)
	r := rand.New(rand.NewPCG(3, 4))
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			p := buf[(y*cols+x)*3:]
			if y < rows/3 {
				c := byte((x/80 + y/40) * 37)
				p[0], p[1], p[2] = c, c^0x55, 255-c
				continue
			}
			n := r.IntN(7) - 3
			p[0] = byte(min(255, max(0, x*255/cols+n)))
			p[1] = byte(min(255, max(0, y*255/rows+n)))
			p[2] = byte(min(255, max(0, 128+(x-y)/8+n)))
		}
	}
	return buf
}

// grayPlane returns the green plane of an interleaved RGB frame.
func grayPlane(rgb []byte) []byte {
	g := make([]byte, len(rgb)/3)
	for i := range g {
		g[i] = rgb[3*i+1]
	}
	return g
}

// ---------------------------------------------------------------------------
// Round trips

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name                      string
		rows, cols, samples, bits int
		pattern                   string
		opts                      encOpts
	}{
		{"gray8 1x1", 1, 1, 1, 8, "random", encOpts{}},
		{"gray8 odd random", 5, 7, 1, 8, "random", encOpts{}},
		{"gray8 flat long runs", 3, 300, 1, 8, "flat", encOpts{}},
		{"gray8 mixed", 37, 101, 1, 8, "mixed", encOpts{}},
		{"gray8 ramp", 10, 999, 1, 8, "ramp", encOpts{}},
		{"gray8 padded zero", 9, 13, 1, 8, "mixed", encOpts{pad: true}},
		{"gray8 padded 0x80", 9, 13, 1, 8, "mixed", encOpts{pad: true, padByte: 0x80}},
		{"gray8 padded 0x7f", 9, 13, 1, 8, "random", encOpts{pad: true, padByte: 0x7F}},
		{"gray8 extra byte", 9, 13, 1, 8, "mixed", encOpts{extra: 1}},
		{"gray8 extra many", 9, 13, 1, 8, "mixed", encOpts{extra: 300, pad: true}},
		{"gray8 noops", 9, 13, 1, 8, "mixed", encOpts{noops: true}},
		{"gray8 literal only", 9, 13, 1, 8, "flat", encOpts{maxRun: 1}},
		{"gray8 short runs", 9, 130, 1, 8, "mixed", encOpts{minRep: 2, maxRun: 5}},
		{"gray16 1x1", 1, 1, 1, 16, "random", encOpts{}},
		{"gray16 odd random", 3, 513, 1, 16, "random", encOpts{}},
		{"gray16 flat", 2, 700, 1, 16, "flat", encOpts{}},
		{"gray16 mixed padded", 31, 77, 1, 16, "mixed", encOpts{pad: true}},
		{"gray16 extra noops", 31, 77, 1, 16, "mixed", encOpts{extra: 1, noops: true}},
		{"gray16 literal only", 4, 33, 1, 16, "mixed", encOpts{maxRun: 1}},
		{"gray16 ramp", 8, 1000, 1, 16, "ramp", encOpts{minRep: 2}},
		{"gray32 odd", 7, 9, 1, 32, "random", encOpts{}},
		{"gray32 mixed padded", 17, 61, 1, 32, "mixed", encOpts{pad: true}},
		{"gray32 flat extra", 3, 257, 1, 32, "flat", encOpts{extra: 1}},
		{"rgb8 1x1", 1, 1, 3, 8, "random", encOpts{}},
		{"rgb8 odd random", 5, 11, 3, 8, "random", encOpts{}},
		{"rgb8 mixed padded", 23, 45, 3, 8, "mixed", encOpts{pad: true}},
		{"rgb8 flat noops extra", 2, 333, 3, 8, "flat", encOpts{noops: true, extra: 1}},
		{"rgb16 odd mixed", 13, 19, 3, 16, "mixed", encOpts{pad: true}},
		{"rgb16 random", 4, 5, 3, 16, "random", encOpts{maxRun: 7}},
		{"rgb32 mixed", 9, 15, 3, 32, "mixed", encOpts{extra: 2}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			native := makeImage(tc.pattern, tc.rows, tc.cols, tc.samples, tc.bits, uint64(i))
			frame := encodeFrame(native, tc.samples, tc.bits, tc.opts)
			got, err := Decode(frame, tc.rows, tc.cols, tc.samples, tc.bits)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got, native) {
				t.Fatalf("Decode mismatch at byte %d", firstDiff(got, native))
			}
			dst := make([]byte, len(native))
			for j := range dst {
				dst[j] = 0xCC // DecodeInto must overwrite everything
			}
			if err := DecodeInto(dst, frame, tc.rows, tc.cols, tc.samples, tc.bits); err != nil {
				t.Fatalf("DecodeInto: %v", err)
			}
			if !bytes.Equal(dst, native) {
				t.Fatalf("DecodeInto mismatch at byte %d", firstDiff(dst, native))
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestKnownVectors decodes hand-written segments.
func TestKnownVectors(t *testing.T) {
	tests := []struct {
		name                      string
		rows, cols, samples, bits int
		segments                  [][]byte
		want                      []byte
	}{
		{
			// The Apple PackBits example (TN1023).
			name: "packbits example", rows: 1, cols: 24, samples: 1, bits: 8,
			segments: [][]byte{{0xFE, 0xAA, 0x02, 0x80, 0x00, 0x2A, 0xFD, 0xAA, 0x03, 0x80, 0x00, 0x2A, 0x22, 0xF7, 0xAA}},
			want: []byte{0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0xAA, 0xAA, 0xAA, 0xAA, 0x80, 0x00, 0x2A, 0x22,
				0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA, 0xAA},
		},
		{
			name: "16-bit plane order", rows: 1, cols: 3, samples: 1, bits: 16,
			segments: [][]byte{{0x02, 0x01, 0x02, 0x03}, {0xFE, 0xF0, 0x00}},
			want:     []byte{0xF0, 0x01, 0xF0, 0x02, 0xF0, 0x03},
		},
		{
			name: "rgb interleave", rows: 2, cols: 1, samples: 3, bits: 8,
			segments: [][]byte{{0xFF, 0x10}, {0x01, 0x20, 0x21}, {0x80, 0xFF, 0x30, 0x00}},
			want:     []byte{0x10, 0x20, 0x30, 0x10, 0x21, 0x30},
		},
		{
			name: "32-bit plane order", rows: 1, cols: 2, samples: 1, bits: 32,
			segments: [][]byte{{0x01, 1, 2}, {0x01, 3, 4}, {0x01, 5, 6}, {0x01, 7, 8}},
			want:     []byte{7, 5, 3, 1, 8, 6, 4, 2},
		},
		{
			name: "maximum runs", rows: 1, cols: 256, samples: 1, bits: 8,
			segments: [][]byte{append([]byte{0x7F}, append(bytes.Repeat([]byte{9}, 128), 0x81, 7)...)},
			want:     append(bytes.Repeat([]byte{9}, 128), bytes.Repeat([]byte{7}, 128)...),
		},
		{
			name: "replicate longer than needed", rows: 1, cols: 3, samples: 1, bits: 16,
			segments: [][]byte{{0x81, 0x01}, {0x81, 0x02, 0x00}},
			want:     []byte{2, 1, 2, 1, 2, 1},
		},
		{
			name: "literal longer than needed", rows: 1, cols: 2, samples: 3, bits: 8,
			segments: [][]byte{{0x02, 1, 2, 3}, {0x03, 4, 5, 6, 7}, {0x01, 8, 9}},
			want:     []byte{1, 4, 8, 2, 5, 9},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := buildFrame(tc.segments)
			got, err := Decode(frame, tc.rows, tc.cols, tc.samples, tc.bits)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got % x\nwant % x", got, tc.want)
			}
		})
	}
}

// buildFrame assembles a frame from raw segments.
func buildFrame(segments [][]byte) []byte {
	frame := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(frame, uint32(len(segments)))
	for i, s := range segments {
		binary.LittleEndian.PutUint32(frame[4+4*i:], uint32(len(frame)))
		frame = append(frame, s...)
	}
	return frame
}

func TestErrors(t *testing.T) {
	// A valid 16-bit 2x2 frame: segment 1 at 64, segment 2 at 70.
	good := buildFrame([][]byte{{0x03, 1, 2, 3, 4, 0x00}, {0xFD, 9}})
	if _, err := Decode(good, 2, 2, 1, 16); err != nil {
		t.Fatalf("valid frame: %v", err)
	}
	mod := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	put := func(off int, v uint32) []byte {
		return mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b })
	}
	tests := []struct {
		name                      string
		frame                     []byte
		rows, cols, samples, bits int
		want                      string
	}{
		{"empty", nil, 2, 2, 1, 16, "shorter than"},
		{"short header", good[:63], 2, 2, 1, 16, "shorter than"},
		{"header only", good[:64], 2, 2, 1, 16, "beyond end"},
		{"segment count too small", put(0, 1), 2, 2, 1, 16, "header has 1 segments, want 2"},
		{"segment count too large", put(0, 3), 2, 2, 1, 16, "header has 3 segments, want 2"},
		{"segment count zero", put(0, 0), 2, 2, 1, 16, "header has 0 segments"},
		{"segment count huge", put(0, 0xFFFFFFFF), 2, 2, 1, 16, "header has 4294967295 segments"},
		{"wrong samples", good, 2, 2, 3, 16, "want 6"},
		{"wrong bits", good, 2, 2, 1, 8, "want 1"},
		{"first offset zero", put(4, 0), 2, 2, 1, 16, "inside the header"},
		{"first offset in header", put(4, 63), 2, 2, 1, 16, "inside the header"},
		{"offsets equal", put(8, 64), 2, 2, 1, 16, "not increasing"},
		{"offsets decreasing", mod(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[4:], 70)
			binary.LittleEndian.PutUint32(b[8:], 64)
			return b
		}), 2, 2, 1, 16, "not increasing"},
		{"offset at end", put(8, uint32(len(good))), 2, 2, 1, 16, "beyond end"},
		{"offset beyond end", put(8, 0xFFFFFFF0), 2, 2, 1, 16, "beyond end"},
		{"truncated frame", good[:len(good)-1], 2, 2, 1, 16, "segment 2 (sample 0, byte plane 1) decodes to 0 bytes, want 4"},
		{"segment 1 short", put(8, 67), 2, 2, 1, 16, "segment 1 (sample 0, byte plane 0) decodes to 2 bytes, want 4"},
		{"replicate too short", mod(func(b []byte) []byte { b[70] = 0xFE; return b }), 2, 2, 1, 16, "decodes to 3 bytes, want 4"},
		{"segment of no-ops", buildFrame([][]byte{{0x80, 0x80}, {0xFD, 1}}), 2, 2, 1, 16, "segment 1 (sample 0, byte plane 0) decodes to 0 bytes"},
		{"literal truncated", buildFrame([][]byte{{0xFD, 1}, {0x03, 1, 2}}), 2, 2, 1, 16, "segment 2 (sample 0, byte plane 1) decodes to 2 bytes, want 4"},
		{"literal truncated 8-bit", buildFrame([][]byte{{0x03, 1, 2}}), 2, 2, 1, 8, "decodes to 2 bytes, want 4"},
		{"replicate missing value 8-bit", buildFrame([][]byte{{0x01, 1, 2, 0xFE}}), 2, 2, 1, 8, "decodes to 2 bytes, want 4"},
		{"replicate missing value 16-bit", buildFrame([][]byte{{0xFD, 1}, {0x01, 1, 2, 0xFE}}), 2, 2, 1, 16, "decodes to 2 bytes, want 4"},
		{"zero rows", good, 0, 2, 1, 16, "invalid frame size"},
		{"negative cols", good, 2, -2, 1, 16, "invalid frame size"},
		{"samples 2", good, 2, 2, 2, 16, "samples per pixel 2"},
		{"samples 4", good, 2, 2, 4, 8, "samples per pixel 4"},
		{"bits 12", good, 2, 2, 1, 12, "bits allocated 12"},
		{"bits 0", good, 2, 2, 1, 0, "bits allocated 0"},
		{"overflow", good, 1 << 40, 1 << 40, 3, 32, "too large"},
		{"max int", good, math.MaxInt, math.MaxInt, 3, 32, "too large"},
		{"above cap", good, 1 << 16, 1 << 16, 1, 8, "too large"},
		{"above cap rgb16", good, 1 << 15, 1 << 14, 3, 16, "too large"},
		{"segment too small for frame", good, 64, 64, 1, 16, "segment 1 is 6 bytes, too short to decode to 4096 bytes"},
		{"last segment too small for frame", buildFrame([][]byte{bytes.Repeat([]byte{0x81, 0}, 8), {0x81, 0}}), 16, 16, 1, 16, "segment 2 is 2 bytes, too short"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Decode(tc.frame, tc.rows, tc.cols, tc.samples, tc.bits)
			if err == nil {
				t.Fatalf("Decode succeeded (%d bytes), want error containing %q", len(out), tc.want)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v does not wrap ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if out != nil {
				t.Errorf("Decode returned %d bytes with an error", len(out))
			}
			if size, err := frameSize(tc.rows, tc.cols, tc.samples, tc.bits); err == nil {
				dst := make([]byte, size)
				if err := DecodeInto(dst, tc.frame, tc.rows, tc.cols, tc.samples, tc.bits); err == nil || !errors.Is(err, ErrCorrupt) {
					t.Errorf("DecodeInto: got %v", err)
				}
			}
		})
	}
}

func TestDecodeIntoDstSize(t *testing.T) {
	frame := buildFrame([][]byte{{0x03, 1, 2, 3, 4}})
	for _, n := range []int{0, 3, 5} {
		err := DecodeInto(make([]byte, n), frame, 2, 2, 1, 8)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "destination is") {
			t.Errorf("len(dst)=%d: got %v", n, err)
		}
	}
	if err := DecodeInto(make([]byte, 4), frame, 2, 2, 1, 8); err != nil {
		t.Errorf("len(dst)=4: %v", err)
	}
}

func TestFrameSize(t *testing.T) {
	tests := []struct {
		rows, cols, samples, bits int
		want                      int
		ok                        bool
	}{
		{1, 1, 1, 8, 1, true},
		{512, 512, 1, 16, 512 * 512 * 2, true},
		{480, 640, 3, 8, 640 * 480 * 3, true},
		{3, 5, 3, 32, 3 * 5 * 3 * 4, true},
		{1 << 15, 1 << 16, 1, 8, 1 << 31, true}, // exactly at the cap
		{1 << 15, 1 << 15, 1, 16, 1 << 31, true},
		{1<<15 + 1, 1 << 16, 1, 8, 0, false},
		{1 << 31, 2, 1, 8, 0, false},
		{1 << 62, 1 << 62, 1, 8, 0, false},
		{math.MaxInt, 1, 1, 8, 0, false},
		{1, math.MaxInt, 3, 32, 0, false},
	}
	for _, tc := range tests {
		got, err := frameSize(tc.rows, tc.cols, tc.samples, tc.bits)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("frameSize(%d, %d, %d, %d) = %d, %v; want %d, ok=%v", tc.rows, tc.cols, tc.samples, tc.bits, got, err, tc.want, tc.ok)
		}
	}
}

// TestNoAllocOnGarbage checks that a huge (trusted) geometry with a garbage
// frame fails before allocating the 2 GiB output.
func TestNoAllocOnGarbage(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, frame := range [][]byte{nil, make([]byte, 64), buildFrame([][]byte{{0x80}})} {
		if _, err := Decode(frame, 1<<15, 1<<16, 1, 8); err == nil {
			t.Fatal("Decode succeeded")
		}
	}
	runtime.ReadMemStats(&after)
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("Decode of garbage allocated %d bytes", d)
	}
}

func TestDecodeIntoAllocs(t *testing.T) {
	native := ctImage(64, 64)
	frame := encodeFrame(native, 1, 16, encOpts{pad: true})
	rgb := photoImage(32, 48)
	rgbFrame := encodeFrame(rgb, 3, 8, encOpts{pad: true})
	dst := make([]byte, len(native))
	dstRGB := make([]byte, len(rgb))
	allocs := testing.AllocsPerRun(20, func() {
		if err := DecodeInto(dst, frame, 64, 64, 1, 16); err != nil {
			t.Fatal(err)
		}
		if err := DecodeInto(dstRGB, rgbFrame, 32, 48, 3, 8); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("DecodeInto allocated %v times per run", allocs)
	}
	if !bytes.Equal(dst, native) || !bytes.Equal(dstRGB, rgb) {
		t.Error("mismatch")
	}
}

// ---------------------------------------------------------------------------
// Fuzzing

func fuzzGeometry(samplesSel, bitsSel uint8) (samples, bits int) {
	samples = []int{1, 3}[samplesSel%2]
	bits = []int{8, 16, 32}[bitsSel%3]
	return
}

func FuzzDecode(f *testing.F) {
	for i, g := range []struct{ rows, cols, s, b uint8 }{
		{4, 4, 0, 0}, {3, 7, 0, 1}, {5, 5, 1, 0}, {2, 9, 1, 1}, {3, 3, 0, 2}, {1, 200, 1, 2}, {16, 16, 0, 1},
	} {
		samples, bits := fuzzGeometry(g.s, g.b)
		for j, pat := range []string{"random", "mixed", "flat"} {
			native := makeImage(pat, int(g.rows), int(g.cols), samples, bits, uint64(i*3+j))
			frame := encodeFrame(native, samples, bits, encOpts{pad: j == 1, extra: j % 2, noops: j == 2})
			f.Add(frame, g.rows, g.cols, g.s, g.b)
		}
	}
	f.Add([]byte{}, uint8(1), uint8(1), uint8(0), uint8(0))
	f.Add(make([]byte, 64), uint8(0), uint8(1), uint8(0), uint8(0))
	f.Add(buildFrame([][]byte{{0x80, 0x7F, 1}}), uint8(2), uint8(2), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols, samplesSel, bitsSel uint8) {
		samples, bits := fuzzGeometry(samplesSel, bitsSel)
		want := int(rows) * int(cols) * samples * bits / 8
		out, err := Decode(frame, int(rows), int(cols), samples, bits)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if out != nil {
				t.Fatalf("non-nil output with error")
			}
			return
		}
		if len(out) != want {
			t.Fatalf("output is %d bytes, want %d", len(out), want)
		}
		// DecodeInto must agree with Decode.
		dst := make([]byte, want)
		if err := DecodeInto(dst, frame, int(rows), int(cols), samples, bits); err != nil {
			t.Fatalf("DecodeInto failed where Decode succeeded: %v", err)
		}
		if !bytes.Equal(dst, out) {
			t.Fatalf("DecodeInto differs from Decode")
		}
		// Re-encoding the output must round trip.
		again, err := Decode(encodeFrame(out, samples, bits, encOpts{}), int(rows), int(cols), samples, bits)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("re-encode round trip failed: %v", err)
		}
	})
}

// ---------------------------------------------------------------------------
// Benchmarks

func BenchmarkDecode(b *testing.B) {
	benches := []struct {
		name                      string
		rows, cols, samples, bits int
		native                    []byte
	}{
		{"CT512x512x16", 512, 512, 1, 16, ctImage(512, 512)},
		{"RGB640x480x8", 480, 640, 3, 8, photoImage(480, 640)},
		{"Gray640x480x8", 480, 640, 1, 8, grayPlane(photoImage(480, 640))},
		{"CT2000x2000x16", 2000, 2000, 1, 16, ctImage(2000, 2000)},
	}
	for _, bc := range benches {
		frame := encodeFrame(bc.native, bc.samples, bc.bits, encOpts{pad: true})
		dst := make([]byte, len(bc.native))
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.native)))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeInto(dst, frame, bc.rows, bc.cols, bc.samples, bc.bits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(bc.native))/float64(len(frame)), "ratio")
		})
		if !bytes.Equal(dst, bc.native) {
			b.Fatalf("%s: mismatch", bc.name)
		}
	}
}

// ---------------------------------------------------------------------------
// DCMTK comparison

// Part 10 writer (explicit VR little endian).

type dcmWriter struct{ buf []byte }

func (w *dcmWriter) elem(group, elem uint16, vr string, val []byte) {
	if len(val)%2 == 1 {
		pad := byte(0)
		if vr != "UI" && vr != "OB" {
			pad = ' '
		}
		val = append(val[:len(val):len(val)], pad)
	}
	w.buf = binary.LittleEndian.AppendUint16(w.buf, group)
	w.buf = binary.LittleEndian.AppendUint16(w.buf, elem)
	w.buf = append(w.buf, vr...)
	switch vr {
	case "OB", "OW", "OL", "SQ", "UN", "UT":
		w.buf = append(w.buf, 0, 0)
		w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(val)))
	default:
		w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(len(val)))
	}
	w.buf = append(w.buf, val...)
}

func (w *dcmWriter) str(group, elem uint16, vr, s string) { w.elem(group, elem, vr, []byte(s)) }
func (w *dcmWriter) us(group, elem uint16, v int) {
	w.elem(group, elem, "US", binary.LittleEndian.AppendUint16(nil, uint16(v)))
}

type image struct {
	rows, cols, samples, bits, frames int
	planar                            int    // planar configuration of pixel
	pixel                             []byte // native pixel data as stored
}

const uidRoot = "1.2.826.0.1.3680043.9.7777."

func writeDICOM(t testing.TB, path string, im image) {
	t.Helper()
	const sopClass = "1.2.840.10008.5.1.4.1.1.7" // Secondary Capture
	sopInst := uidRoot + "1.1"
	var meta dcmWriter
	meta.elem(0x0002, 0x0001, "OB", []byte{0, 1})
	meta.str(0x0002, 0x0002, "UI", sopClass)
	meta.str(0x0002, 0x0003, "UI", sopInst)
	meta.str(0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1")
	meta.str(0x0002, 0x0012, "UI", uidRoot+"99")
	var ds dcmWriter
	ds.buf = append(ds.buf, make([]byte, 128)...)
	ds.buf = append(ds.buf, "DICM"...)
	ds.elem(0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta.buf))))
	ds.buf = append(ds.buf, meta.buf...)
	ds.str(0x0008, 0x0016, "UI", sopClass)
	ds.str(0x0008, 0x0018, "UI", sopInst)
	ds.str(0x0008, 0x0060, "CS", "OT")
	ds.str(0x0020, 0x000D, "UI", uidRoot+"2")
	ds.str(0x0020, 0x000E, "UI", uidRoot+"3")
	ds.us(0x0028, 0x0002, im.samples)
	if im.samples == 3 {
		ds.str(0x0028, 0x0004, "CS", "RGB")
		ds.us(0x0028, 0x0006, im.planar)
	} else {
		ds.str(0x0028, 0x0004, "CS", "MONOCHROME2")
	}
	if im.frames > 1 {
		ds.str(0x0028, 0x0008, "IS", fmt.Sprint(im.frames))
	}
	ds.us(0x0028, 0x0010, im.rows)
	ds.us(0x0028, 0x0011, im.cols)
	ds.us(0x0028, 0x0100, im.bits)
	ds.us(0x0028, 0x0101, im.bits)
	ds.us(0x0028, 0x0102, im.bits-1)
	ds.us(0x0028, 0x0103, 0)
	vr := "OW"
	if im.bits == 8 {
		vr = "OB"
	}
	ds.elem(0x7FE0, 0x0010, vr, im.pixel)
	if err := os.WriteFile(path, ds.buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Part 10 reader (explicit VR little endian data sets only).

type dcmFile struct {
	ts                                string
	rows, cols, samples, bits, planar int
	photometric                       string
	pixel                             []byte   // native pixel data
	fragments                         [][]byte // encapsulated fragments (Basic Offset Table skipped)
}

type dcmReader struct {
	d   []byte
	pos int
}

func (r *dcmReader) u16() uint16 {
	v := binary.LittleEndian.Uint16(r.d[r.pos:])
	r.pos += 2
	return v
}

func (r *dcmReader) u32() uint32 {
	v := binary.LittleEndian.Uint32(r.d[r.pos:])
	r.pos += 4
	return v
}

func (r *dcmReader) take(n uint32) ([]byte, error) {
	if uint64(n) > uint64(len(r.d)-r.pos) {
		return nil, fmt.Errorf("value of %d bytes at %d overruns file", n, r.pos)
	}
	v := r.d[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return v, nil
}

const undefinedLength = 0xFFFFFFFF

// element reads one explicit VR element header. Item tags have no VR.
func (r *dcmReader) element() (tag uint32, vr string, length uint32, err error) {
	if len(r.d)-r.pos < 8 {
		return 0, "", 0, fmt.Errorf("truncated element at %d", r.pos)
	}
	tag = uint32(r.u16())<<16 | uint32(r.u16())
	if tag>>16 == 0xFFFE {
		return tag, "", r.u32(), nil
	}
	vr = string(r.d[r.pos : r.pos+2])
	r.pos += 2
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		if len(r.d)-r.pos < 6 {
			return 0, "", 0, fmt.Errorf("truncated element at %d", r.pos)
		}
		r.pos += 2
		length = r.u32()
	default:
		length = uint32(r.u16())
	}
	return tag, vr, length, nil
}

// skipUndefined skips the items of an undefined-length sequence up to and
// including its delimiter.
func (r *dcmReader) skipUndefined() error {
	for {
		tag, _, length, err := r.element()
		if err != nil {
			return err
		}
		switch tag {
		case 0xFFFEE0DD: // sequence delimiter
			return nil
		case 0xFFFEE000: // item
			if length != undefinedLength {
				if _, err := r.take(length); err != nil {
					return err
				}
				continue
			}
			if err := r.elementsUntil(0xFFFEE00D); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected tag %08X in sequence", tag)
		}
	}
}

// elementsUntil skips data elements until the given delimiter tag.
func (r *dcmReader) elementsUntil(delim uint32) error {
	for {
		tag, vr, length, err := r.element()
		if err != nil {
			return err
		}
		if tag == delim {
			return nil
		}
		if length == undefinedLength {
			if vr != "SQ" && vr != "UN" {
				return fmt.Errorf("undefined length on %s element %08X", vr, tag)
			}
			if err := r.skipUndefined(); err != nil {
				return err
			}
			continue
		}
		if _, err := r.take(length); err != nil {
			return err
		}
	}
}

func readDICOM(t testing.TB, path string) *dcmFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseDICOM(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

func parseDICOM(data []byte) (*dcmFile, error) {
	if len(data) < 132 || string(data[128:132]) != "DICM" {
		return nil, errors.New("not a DICOM Part 10 file")
	}
	r := &dcmReader{d: data, pos: 132}
	f := &dcmFile{}
	for r.pos < len(r.d) {
		tag, vr, length, err := r.element()
		if err != nil {
			return nil, err
		}
		if tag>>16 != 0x0002 && f.ts != "1.2.840.10008.1.2.1" && f.ts != "1.2.840.10008.1.2.5" {
			return nil, fmt.Errorf("unsupported transfer syntax %q", f.ts)
		}
		if length == undefinedLength {
			if tag == 0x7FE00010 {
				if err := r.fragments(f); err != nil {
					return nil, err
				}
				continue
			}
			if vr != "SQ" && vr != "UN" {
				return nil, fmt.Errorf("undefined length on %s element %08X", vr, tag)
			}
			if err := r.skipUndefined(); err != nil {
				return nil, err
			}
			continue
		}
		val, err := r.take(length)
		if err != nil {
			return nil, err
		}
		us := func() int {
			if len(val) < 2 {
				return -1
			}
			return int(binary.LittleEndian.Uint16(val))
		}
		switch tag {
		case 0x00020010:
			f.ts = strings.TrimRight(string(val), "\x00 ")
		case 0x00280002:
			f.samples = us()
		case 0x00280004:
			f.photometric = strings.TrimSpace(string(val))
		case 0x00280006:
			f.planar = us()
		case 0x00280010:
			f.rows = us()
		case 0x00280011:
			f.cols = us()
		case 0x00280100:
			f.bits = us()
		case 0x7FE00010:
			f.pixel = val
		}
	}
	return f, nil
}

// fragments reads encapsulated pixel data items after the (7FE0,0010) header.
func (r *dcmReader) fragments(f *dcmFile) error {
	first := true
	for {
		tag, _, length, err := r.element()
		if err != nil {
			return err
		}
		switch tag {
		case 0xFFFEE0DD:
			return nil
		case 0xFFFEE000:
			v, err := r.take(length)
			if err != nil {
				return err
			}
			if !first { // the first item is the Basic Offset Table
				f.fragments = append(f.fragments, v)
			}
			first = false
		default:
			return fmt.Errorf("unexpected tag %08X in encapsulated pixel data", tag)
		}
	}
}

// interleave converts planar (Planar Configuration 1) frames to interleaved.
func interleave(planar []byte, npix, bps, frames int) []byte {
	out := make([]byte, len(planar))
	fsz := npix * 3 * bps
	for fr := 0; fr < frames; fr++ {
		in, o := planar[fr*fsz:], out[fr*fsz:]
		for s := 0; s < 3; s++ {
			for p := 0; p < npix; p++ {
				copy(o[(p*3+s)*bps:(p*3+s+1)*bps], in[(s*npix+p)*bps:(s*npix+p+1)*bps])
			}
		}
	}
	return out
}

func deinterleave(inter []byte, npix, bps, frames int) []byte {
	out := make([]byte, len(inter))
	fsz := npix * 3 * bps
	for fr := 0; fr < frames; fr++ {
		in, o := inter[fr*fsz:], out[fr*fsz:]
		for s := 0; s < 3; s++ {
			for p := 0; p < npix; p++ {
				copy(o[(s*npix+p)*bps:(s*npix+p+1)*bps], in[(p*3+s)*bps:(p*3+s+1)*bps])
			}
		}
	}
	return out
}

// compareWithDCMTK compresses the image with dcmcrle, decodes the resulting
// fragments with Decode and compares them with the original pixels and with
// dcmdrle's decompression of the same file.
func compareWithDCMTK(t *testing.T, dir string, in string, want []byte, rows, cols, samples, bits, frames int) {
	t.Helper()
	rleFile := filepath.Join(dir, "rle.dcm")
	decFile := filepath.Join(dir, "drle.dcm")
	dicomtest.Run(t, "dcmcrle", in, rleFile)
	dicomtest.Run(t, "dcmdrle", rleFile, decFile)

	rf := readDICOM(t, rleFile)
	if rf.ts != "1.2.840.10008.1.2.5" {
		t.Fatalf("dcmcrle wrote transfer syntax %q", rf.ts)
	}
	if len(rf.fragments) != frames {
		t.Fatalf("dcmcrle wrote %d fragments, want %d", len(rf.fragments), frames)
	}
	fsz := rows * cols * samples * bits / 8
	var got []byte
	for i, frag := range rf.fragments {
		out, err := Decode(frag, rows, cols, samples, bits)
		if err != nil {
			t.Fatalf("frame %d: Decode: %v", i, err)
		}
		if !bytes.Equal(out, want[i*fsz:(i+1)*fsz]) {
			t.Fatalf("frame %d: Decode differs from the original at byte %d", i, firstDiff(out, want[i*fsz:(i+1)*fsz]))
		}
		got = append(got, out...)
	}

	df := readDICOM(t, decFile)
	if df.ts != "1.2.840.10008.1.2.1" {
		t.Fatalf("dcmdrle wrote transfer syntax %q", df.ts)
	}
	if df.rows != rows || df.cols != cols || df.samples != samples || df.bits != bits {
		t.Fatalf("dcmdrle geometry %dx%d s=%d b=%d", df.cols, df.rows, df.samples, df.bits)
	}
	ref := df.pixel
	if len(ref) < len(got) {
		t.Fatalf("dcmdrle pixel data is %d bytes, want %d", len(ref), len(got))
	}
	ref = ref[:len(got)] // drop the even-length padding byte
	if samples == 3 && df.planar == 1 {
		ref = interleave(ref, rows*cols, bits/8, frames)
	}
	if !bytes.Equal(got, ref) {
		t.Fatalf("Decode differs from dcmdrle (planar %d) at byte %d", df.planar, firstDiff(got, ref))
	}
	t.Logf("%d frame(s) of %d bytes, RLE %d bytes, dcmdrle planar configuration %d", frames, fsz, len(rf.fragments[0]), df.planar)
}

func TestDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcrle", "dcmdrle")
	tests := []struct {
		name                      string
		rows, cols, samples, bits int
		frames, planar            int
		pattern                   string
	}{
		{"gray16 ct", 128, 128, 1, 16, 1, 0, "ct"},
		{"gray16 odd mixed", 61, 97, 1, 16, 1, 0, "mixed"},
		{"gray16 random", 32, 33, 1, 16, 1, 0, "random"},
		{"gray16 multiframe", 40, 51, 1, 16, 3, 0, "mixed"},
		{"gray8 odd mixed", 31, 45, 1, 8, 1, 0, "mixed"},
		{"gray8 flat", 20, 700, 1, 8, 1, 0, "flat"},
		{"gray32 mixed", 17, 23, 1, 32, 1, 0, "mixed"},
		{"rgb8 photo planar0", 60, 81, 3, 8, 1, 0, "photo"},
		{"rgb8 mixed planar1", 33, 47, 3, 8, 1, 1, "mixed"},
		{"rgb8 multiframe planar0", 21, 35, 3, 8, 2, 0, "mixed"},
		{"rgb16 mixed planar0", 19, 29, 3, 16, 1, 0, "mixed"},
		{"rgb16 random planar1", 9, 11, 3, 16, 1, 1, "random"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var inter []byte // interleaved original, all frames
			for fr := 0; fr < tc.frames; fr++ {
				switch tc.pattern {
				case "ct":
					inter = append(inter, ctImage(tc.rows, tc.cols)...)
				case "photo":
					inter = append(inter, photoImage(tc.rows, tc.cols)...)
				default:
					inter = append(inter, makeImage(tc.pattern, tc.rows, tc.cols, tc.samples, tc.bits, uint64(100+i*10+fr))...)
				}
			}
			stored := inter
			if tc.planar == 1 {
				stored = deinterleave(inter, tc.rows*tc.cols, tc.bits/8, tc.frames)
			}
			in := filepath.Join(dir, "in.dcm")
			writeDICOM(t, in, image{rows: tc.rows, cols: tc.cols, samples: tc.samples, bits: tc.bits,
				frames: tc.frames, planar: tc.planar, pixel: stored})
			compareWithDCMTK(t, dir, in, inter, tc.rows, tc.cols, tc.samples, tc.bits, tc.frames)
		})
	}
}

// writeBMP writes an interleaved RGB image as a 24-bit bottom-up BMP.
func writeBMP(t testing.TB, path string, rgb []byte, rows, cols int) {
	t.Helper()
	rowSize := (cols*3 + 3) &^ 3
	var b []byte
	le32 := func(v int) { b = binary.LittleEndian.AppendUint32(b, uint32(v)) }
	le16 := func(v int) { b = binary.LittleEndian.AppendUint16(b, uint16(v)) }
	b = append(b, 'B', 'M')
	le32(54 + rowSize*rows)
	le32(0)
	le32(54)
	le32(40) // BITMAPINFOHEADER
	le32(cols)
	le32(rows)
	le16(1)
	le16(24)
	le32(0) // BI_RGB
	le32(rowSize * rows)
	le32(2835)
	le32(2835)
	le32(0)
	le32(0)
	for y := rows - 1; y >= 0; y-- {
		for x := 0; x < cols; x++ {
			p := rgb[(y*cols+x)*3:]
			b = append(b, p[2], p[1], p[0])
		}
		b = append(b, make([]byte, rowSize-cols*3)...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDCMTKFromBMP goes through img2dcm with a BMP written by the test.
func TestDCMTKFromBMP(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "img2dcm", "dcmcrle", "dcmdrle")
	for _, g := range []struct{ rows, cols int }{{50, 75}, {37, 101}} {
		t.Run(fmt.Sprintf("%dx%d", g.cols, g.rows), func(t *testing.T) {
			dir := t.TempDir()
			rgb := photoImage(g.rows, g.cols)
			bmp := filepath.Join(dir, "in.bmp")
			writeBMP(t, bmp, rgb, g.rows, g.cols)
			in := filepath.Join(dir, "in.dcm")
			dicomtest.Run(t, "img2dcm", "-i", "BMP", bmp, in)
			f := readDICOM(t, in)
			if f.rows != g.rows || f.cols != g.cols || f.samples != 3 || f.bits != 8 || f.photometric != "RGB" {
				t.Fatalf("img2dcm wrote %dx%d s=%d b=%d %s", f.cols, f.rows, f.samples, f.bits, f.photometric)
			}
			px := f.pixel[:len(rgb)]
			if f.planar == 1 {
				px = interleave(px, g.rows*g.cols, 1, 1)
			}
			if !bytes.Equal(px, rgb) {
				t.Fatalf("img2dcm pixel data differs from the BMP at byte %d", firstDiff(px, rgb))
			}
			compareWithDCMTK(t, dir, in, rgb, g.rows, g.cols, 3, 8, 1)
		})
	}
}

// TestDCMTKLarge compares Decode's speed with dcmdrle's on 2000x2000 16-bit
// CT-like frames (a 1-frame and a 10-frame file). It only runs when
// RLE_DCMTK_LARGE is set; if it names a directory, the DICOM files are kept
// there (large1*.dcm, large10*.dcm).
func TestDCMTKLarge(t *testing.T) {
	dir := os.Getenv("RLE_DCMTK_LARGE")
	if dir == "" {
		t.Skip("set RLE_DCMTK_LARGE=1 (or a directory to keep the files) to run")
	}
	testtool.Need(t, testtool.DCMTK, "dcmcrle", "dcmdrle")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		dir = t.TempDir()
	}
	const rows, cols = 2000, 2000
	frame := ctImage(rows, cols)
	for _, frames := range []int{1, 10} {
		native := bytes.Repeat(frame, frames)
		base := filepath.Join(dir, fmt.Sprintf("large%d", frames))
		in, rleFile, dec := base+".dcm", base+"_rle.dcm", base+"_drle.dcm"
		writeDICOM(t, in, image{rows: rows, cols: cols, samples: 1, bits: 16, frames: frames, pixel: native})
		dicomtest.Run(t, "dcmcrle", in, rleFile)

		best := time.Duration(math.MaxInt64)
		for range 5 {
			start := time.Now()
			dicomtest.Run(t, "dcmdrle", rleFile, dec)
			best = min(best, time.Since(start))
		}
		t.Logf("dcmdrle: %d frame(s) of %dx%d 16-bit (%.1f MB) in %v: %.0f MB/s (whole process, incl. file I/O)",
			frames, cols, rows, float64(len(native))/1e6, best, float64(len(native))/best.Seconds()/1e6)

		rf := readDICOM(t, rleFile)
		dst := make([]byte, rows*cols*2)
		best = time.Duration(math.MaxInt64)
		for range 5 {
			start := time.Now()
			for _, frag := range rf.fragments {
				if err := DecodeInto(dst, frag, rows, cols, 1, 16); err != nil {
					t.Fatal(err)
				}
			}
			best = min(best, time.Since(start))
			if !bytes.Equal(dst, frame) {
				t.Fatal("mismatch")
			}
		}
		t.Logf("Decode:  same %d frame(s) in %v: %.0f MB/s", frames, best, float64(len(native))/best.Seconds()/1e6)
	}
}
