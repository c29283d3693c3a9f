package jpegls

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// synth makes a w x h image with nc interleaved components of the given bit depth as native
// samples: gradients, noise of every amplitude, full-range noise, flat areas (run mode),
// stripes and hard edges, so that regular mode, runs and run interruptions of both types
// occur, and escape codes at high bit depths.
func synth(w, h, nc, bits int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	maxv := 1<<bits - 1
	bps := 1
	if bits > 8 {
		bps = 2
	}
	pix := make([]byte, w*h*nc*bps)
	for y := range h {
		for x := range w {
			region := x*8/w + 8*(y*4/h)
			for c := range nc {
				g := ((x*maxv/w+y*maxv/h)/2 + c*maxv/7) % (maxv + 1)
				var v int
				switch region % 8 {
				case 0:
					v = g
				case 1:
					v = g + rng.IntN(9) - 4
				case 2:
					a := 1 << (y % bits)
					v = g + rng.IntN(2*a+1) - a
				case 3:
					v = rng.IntN(maxv + 1)
				case 4:
					v = maxv / 3
				case 5:
					if x/2%2 == 0 {
						v = 0
					} else {
						v = maxv
					}
				case 6:
					if rng.IntN(50) == 0 {
						v = maxv / 5
					} else {
						v = maxv / 2
					}
				case 7:
					v = (x*977 + y*331 + c*101) & maxv
				}
				v = min(max(v, 0), maxv)
				i := (y*w+x)*nc + c
				if bps == 1 {
					pix[i] = byte(v)
				} else {
					binary.LittleEndian.PutUint16(pix[2*i:], uint16(v))
				}
			}
		}
	}
	return pix
}

func firstMismatch(got, want []byte, f Frame) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	bps := 1
	if f.BitsPerSample > 8 {
		bps = 2
	}
	for i := range got {
		if got[i] != want[i] {
			s := i / bps
			p := s / f.Components
			return fmt.Sprintf("sample %d (x=%d y=%d c=%d): byte %d got %d, want %d", s, p%f.Width, p/f.Width, s%f.Components, i, got[i], want[i])
		}
	}
	return ""
}

func TestRoundTrip(t *testing.T) {
	type tc struct {
		w, h, nc, bits int
		ilv            Interleave
	}
	var cases []tc
	for _, bits := range []int{2, 3, 5, 7, 8, 9, 10, 12, 13, 15, 16} {
		for _, sz := range [][2]int{{1, 1}, {1, 7}, {7, 1}, {2, 2}, {33, 17}, {129, 40}} {
			cases = append(cases, tc{sz[0], sz[1], 1, bits, InterleaveNone})
		}
	}
	for _, bits := range []int{2, 8, 12, 16} {
		for _, nc := range []int{2, 3, 4} {
			for ilv := InterleaveNone; ilv <= InterleaveSample; ilv++ {
				cases = append(cases, tc{1, 1, nc, bits, ilv}, tc{5, 3, nc, bits, ilv}, tc{67, 41, nc, bits, ilv})
			}
		}
	}
	for i, c := range cases {
		f := Frame{Width: c.w, Height: c.h, Components: c.nc, BitsPerSample: c.bits, Interleave: c.ilv}
		t.Run(fmt.Sprintf("%dx%dx%d_%dbit_%s", c.w, c.h, c.nc, c.bits, c.ilv), func(t *testing.T) {
			src := synth(c.w, c.h, c.nc, c.bits, uint64(i))
			var buf bytes.Buffer
			if err := Encode(&buf, src, f, Options{}); err != nil {
				t.Fatal(err)
			}
			g, pix, err := Decode(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			want := f
			if c.nc == 1 {
				want.Interleave = InterleaveNone
			}
			if g != want {
				t.Fatalf("frame %+v, want %+v", g, want)
			}
			if m := firstMismatch(pix, src, f); m != "" {
				t.Fatal(m)
			}
		})
	}
}

// TestRoundTripOptions: preset parameters (written in an LSE segment), MAXVAL below 2^P-1,
// near-lossless coding and restart intervals, which DCMTK cannot check.
func TestRoundTripOptions(t *testing.T) {
	type tc struct {
		w, h, nc, bits int
		ilv            Interleave
		near           int
		opts           Options
	}
	cases := []tc{
		{w: 50, h: 40, nc: 1, bits: 12, opts: Options{MaxVal: 3000}},
		{w: 50, h: 40, nc: 1, bits: 8, opts: Options{MaxVal: 100, T1: 2, T2: 5, T3: 9, Reset: 10}},
		{w: 50, h: 40, nc: 1, bits: 16, opts: Options{Reset: 255}},
		{w: 50, h: 40, nc: 3, bits: 8, ilv: InterleaveSample, opts: Options{MaxVal: 200}},
		{w: 50, h: 40, nc: 1, bits: 16, opts: Options{restart: 1}},
		{w: 50, h: 40, nc: 1, bits: 12, opts: Options{restart: 7}},
		{w: 50, h: 40, nc: 3, bits: 8, ilv: InterleaveNone, opts: Options{restart: 3}},
		{w: 50, h: 40, nc: 3, bits: 8, ilv: InterleaveLine, opts: Options{restart: 9}},
		{w: 50, h: 40, nc: 3, bits: 8, ilv: InterleaveSample, opts: Options{restart: 16}},
		{w: 50, h: 40, nc: 1, bits: 12, opts: Options{restart: 13}, near: 2},
	}
	for _, bits := range []int{2, 5, 8, 12, 16} {
		for near := 1; near <= 3 && near <= (1<<bits-1)/2; near++ {
			cases = append(cases, tc{w: 61, h: 35, nc: 1, bits: bits, near: near})
			cases = append(cases, tc{w: 33, h: 20, nc: 3, bits: bits, near: near, ilv: Interleave(near % 3)})
		}
	}
	for i, c := range cases {
		f := Frame{Width: c.w, Height: c.h, Components: c.nc, BitsPerSample: c.bits, Interleave: c.ilv, Near: c.near}
		t.Run(fmt.Sprintf("%dx%dx%d_%dbit_%s_near%d_%+v", c.w, c.h, c.nc, c.bits, c.ilv, c.near, c.opts), func(t *testing.T) {
			src := synth(c.w, c.h, c.nc, c.bits, uint64(i+100))
			bps := 1 + (c.bits-1)/8
			if c.opts.MaxVal > 0 {
				for k := 0; k < len(src); k += bps {
					if bps == 1 {
						src[k] = min(src[k], byte(c.opts.MaxVal))
					} else {
						binary.LittleEndian.PutUint16(src[k:], min(binary.LittleEndian.Uint16(src[k:]), uint16(c.opts.MaxVal)))
					}
				}
			}
			stream, err := AppendEncode(nil, src, f, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.opts.restart > 0 && !bytes.Contains(stream, []byte{0xFF, mRST0}) && c.h > c.opts.restart {
				t.Fatal("no RST0 marker")
			}
			g, pix, err := Decode(stream)
			if err != nil {
				t.Fatal(err)
			}
			if g.Near != c.near {
				t.Errorf("NEAR %d", g.Near)
			}
			if c.near == 0 {
				if m := firstMismatch(pix, src, f); m != "" {
					t.Fatal(m)
				}
				return
			}
			for k := 0; k < len(pix); k += bps {
				a, b := int(pix[k]), int(src[k])
				if bps == 2 {
					a, b = int(binary.LittleEndian.Uint16(pix[k:])), int(binary.LittleEndian.Uint16(src[k:]))
				}
				if a-b > c.near || b-a > c.near {
					t.Fatalf("sample %d: %d, original %d", k/bps, a, b)
				}
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		f    Frame
		src  []byte
		opts Options
	}{
		{"zero width", Frame{Width: 0, Height: 1, Components: 1, BitsPerSample: 8}, nil, Options{}},
		{"precision 1", Frame{Width: 1, Height: 1, Components: 1, BitsPerSample: 1}, []byte{0}, Options{}},
		{"precision 17", Frame{Width: 1, Height: 1, Components: 1, BitsPerSample: 17}, []byte{0, 0}, Options{}},
		{"5 components", Frame{Width: 1, Height: 1, Components: 5, BitsPerSample: 8}, make([]byte, 5), Options{}},
		{"short input", Frame{Width: 2, Height: 2, Components: 1, BitsPerSample: 8}, make([]byte, 3), Options{}},
		{"sample above precision", Frame{Width: 2, Height: 1, Components: 1, BitsPerSample: 12}, []byte{0, 0, 0, 0x10}, Options{}},
		{"sample above MAXVAL", Frame{Width: 2, Height: 1, Components: 1, BitsPerSample: 8}, []byte{0, 201}, Options{MaxVal: 200}},
		{"bad thresholds", Frame{Width: 1, Height: 1, Components: 1, BitsPerSample: 8}, []byte{0}, Options{T1: 9, T2: 5}},
		{"NEAR too large", Frame{Width: 1, Height: 1, Components: 1, BitsPerSample: 8, Near: 200}, []byte{0}, Options{}},
	} {
		if _, err := AppendEncode(nil, c.src, c.f, c.opts); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// header builds a stream from marker segments (code, payload) after SOI.
func header(segs ...any) []byte {
	b := []byte{0xFF, mSOI}
	for i := 0; i+1 < len(segs); i += 2 {
		b = appendSegment(b, segs[i].(byte), segs[i+1].([]byte))
	}
	return b
}

func sof(p, w, h, nc int) []byte {
	b := []byte{byte(p), byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(nc)}
	for i := range nc {
		b = append(b, byte(i+1), 0x11, 0)
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	good, err := AppendEncode(nil, synth(40, 30, 3, 8, 5), Frame{Width: 40, Height: 30, Components: 3, BitsPerSample: 8, Interleave: InterleaveLine}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sos1 := []byte{1, 1, 0, 0, 0, 0}
	for _, c := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"no SOI", []byte{0xFF, 0xD9}, ErrCorrupt},
		{"baseline JPEG", header(byte(0xC0), sof(8, 8, 8, 1)), ErrUnsupported},
		{"lossless JPEG", header(byte(0xC3), sof(8, 8, 8, 1)), ErrUnsupported},
		{"width 0", header(mSOF55, sof(8, 0, 8, 1)), ErrCorrupt},
		{"height 0 (DNL)", header(mSOF55, sof(8, 8, 0, 1)), ErrUnsupported},
		{"precision 1", header(mSOF55, sof(1, 8, 8, 1)), ErrCorrupt},
		{"precision 17", header(mSOF55, sof(17, 8, 8, 1)), ErrCorrupt},
		{"5 components", header(mSOF55, sof(8, 8, 8, 5)), ErrUnsupported},
		{"huge frame in a few bytes", header(mSOF55, sof(16, 65535, 65535, 1), mSOS, sos1), ErrUnsupported},
		{"large frame in a few bytes", header(mSOF55, sof(16, 60000, 1000, 1), mSOS, sos1), ErrCorrupt},
		{"subsampled", header(mSOF55, []byte{8, 0, 8, 0, 8, 1, 1, 0x21, 0}), ErrUnsupported},
		{"mapping table", header(mSOF55, sof(8, 8, 8, 1), mLSE, []byte{2, 1, 1, 0}), ErrUnsupported},
		{"oversize dimensions", header(mSOF55, sof(8, 8, 8, 1), mLSE, []byte{4, 2, 0, 0, 0, 0}), ErrUnsupported},
		{"bad thresholds", header(mSOF55, sof(8, 8, 8, 1), mLSE, []byte{1, 0, 255, 0, 9, 0, 5, 0, 21, 0, 64}, mSOS, sos1), ErrCorrupt},
		{"MAXVAL above precision", header(mSOF55, sof(8, 8, 8, 1), mLSE, []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, mSOS, sos1), ErrCorrupt},
		{"HP color transform", header(mSOF55, sof(8, 8, 8, 3), mAPP8, []byte("mrfx\x01")), ErrUnsupported},
		{"point transform", header(mSOF55, sof(8, 8, 8, 1), mSOS, []byte{1, 1, 0, 0, 0, 1}), ErrUnsupported},
		{"NEAR too large", header(mSOF55, sof(8, 8, 8, 1), mSOS, []byte{1, 1, 0, 200, 0, 0}), ErrCorrupt},
		{"unknown component", header(mSOF55, sof(8, 8, 8, 1), mSOS, []byte{1, 7, 0, 0, 0, 0}), ErrCorrupt},
		{"ILV 0 with 3 components", header(mSOF55, sof(8, 8, 8, 3), mSOS, []byte{3, 1, 0, 2, 0, 3, 0, 0, 0, 0}), ErrCorrupt},
		{"ILV 3", header(mSOF55, sof(8, 8, 8, 1), mSOS, []byte{1, 1, 0, 0, 3, 0}), ErrCorrupt},
		{"scan before frame", header(mSOS, sos1), ErrCorrupt},
		{"no scan", append(header(mSOF55, sof(8, 8, 8, 1)), 0xFF, mEOI), ErrCorrupt},
		{"truncated", good[:len(good)/2], ErrCorrupt},
		{"no EOI", good[:len(good)-2], ErrCorrupt},
		{"missing restart marker", header(mSOF55, sof(8, 8, 8, 1), mDRI, []byte{0, 2}, mSOS, sos1), ErrCorrupt},
	} {
		_, _, err := Decode(c.data)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func fuzzSeeds() [][]byte {
	var out [][]byte
	add := func(w, h, nc, bits int, ilv Interleave, near int, opts Options) {
		b, err := AppendEncode(nil, synth(w, h, nc, bits, 9), Frame{Width: w, Height: h, Components: nc, BitsPerSample: bits, Interleave: ilv, Near: near}, opts)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	add(16, 8, 1, 8, InterleaveNone, 0, Options{})
	add(9, 7, 1, 16, InterleaveNone, 0, Options{restart: 3})
	add(8, 6, 1, 12, InterleaveNone, 2, Options{T1: 5, T2: 9, T3: 30, Reset: 20})
	add(8, 6, 3, 8, InterleaveNone, 0, Options{})
	add(8, 6, 3, 8, InterleaveLine, 1, Options{})
	add(8, 6, 3, 8, InterleaveSample, 0, Options{T3: 40})
	add(30, 4, 1, 2, InterleaveNone, 0, Options{})
	return out
}

// FuzzDecode: no panic, errors wrap ErrCorrupt or ErrUnsupported, DecodeConfig agrees, and the
// output has the size the frame says.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, cfgErr := DecodeConfig(data)
		fr, pix, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		if cfgErr != nil {
			t.Fatalf("Decode succeeded, DecodeConfig failed: %v", cfgErr)
		}
		if cfg.Width != fr.Width || cfg.Height != fr.Height || cfg.Components != fr.Components || cfg.BitsPerSample != fr.BitsPerSample {
			t.Fatalf("DecodeConfig %+v, Decode %+v", cfg, fr)
		}
		if n := fr.Width * fr.Height * fr.Components * (1 + (fr.BitsPerSample-1)/8); len(pix) != n {
			t.Fatalf("%d bytes for %+v", len(pix), fr)
		}
	})
}

// TestMangled: corrupted seeds never panic (a quick stand-in for running the fuzzer).
func TestMangled(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range fuzzSeeds() {
		for range 300 {
			b := bytes.Clone(s)
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
			if _, _, err := Decode(b); err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatal(err)
			}
			b = b[:rng.IntN(len(b))]
			Decode(b)
		}
	}
}

// TestHostileHeaderAllocation: a header promising 65535 x 4000 samples with a little data
// fails without allocating for the whole frame.
func TestHostileHeaderAllocation(t *testing.T) {
	data := header(mSOF55, sof(16, 65535, 4000, 1), mSOS, []byte{1, 1, 0, 0, 0, 0})
	data = append(data, make([]byte, 4096)...)
	data = append(data, bytes.Repeat([]byte{0x55}, 4096)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := Decode(data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("%d MB allocated for %d bytes of input", n>>20, len(data))
	}
}
