package jpegls

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
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
