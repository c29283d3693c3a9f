package jpegls

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// measure runs f b.N times and reports, besides the wall-clock figures, megabytes of input
// per second of the thread's CPU time.
func measure(b *testing.B, n int, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(int64(n))
	b.ResetTimer()
	start, iters := threadCPU(), 0
	for b.Loop() {
		f()
		iters++
	}
	if cpu := threadCPU() - start; cpu > 0 {
		b.ReportMetric(float64(n)*float64(iters)/1e6/cpu.Seconds(), "MB/cpu-s")
	}
}

// ctSlice is a CT-like 512 x 512 slice, 16-bit words of 12-bit values (air at 0 around a body
// of soft tissue with bone, noise everywhere), as a scanner sends it.
func ctSlice(w, h int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	pix := make([]byte, 2*w*h)
	for y := range h {
		for x := range w {
			dx, dy := float64(x-w/2), float64(y-h/2)
			r := math.Hypot(dx/1.1, dy)
			v := 24 + rng.NormFloat64()*6 // air
			switch {
			case r < float64(h)/10 || (r > float64(h)*0.36 && r < float64(h)*0.39):
				v = 1900 + 80*math.Sin(dx/5) + rng.NormFloat64()*25 // bone
			case r < float64(h)*0.42:
				v = 1064 + 30*math.Sin(dx/23)*math.Cos(dy/17) + rng.NormFloat64()*12 // soft tissue
			}
			binary.LittleEndian.PutUint16(pix[2*(y*w+x):], uint16(min(max(v, 0), 4095)))
		}
	}
	return pix
}

// radiograph is a CR/DR-like frame: a collimated field with smooth anatomy-like structure,
// edges and a few bits of noise, in a flat dark border.
func radiograph(w, h, bits int) []byte {
	rng := rand.New(rand.NewPCG(42, 43))
	maxv := float64(int(1)<<bits - 1)
	pix := make([]byte, 2*w*h)
	for y := range h {
		for x := range w {
			var v float64
			if x > w/20 && x < w-w/20 && y > h/25 && y < h-h/25 {
				fx, fy := float64(x)/float64(w), float64(y)/float64(h)
				v = 0.45 + 0.2*math.Sin(fx*9)*math.Cos(fy*7) + 0.1*math.Sin(fx*40+fy*13)
				if (x/180+y/160)%5 == 0 {
					v += 0.15 // bone-like plateaus
				}
				v = v*maxv + rng.NormFloat64()*maxv/800
			}
			binary.LittleEndian.PutUint16(pix[2*(y*w+x):], uint16(min(max(v, 0), maxv)))
		}
	}
	return pix
}

type benchCase struct {
	name string
	f    Frame
	pix  func() []byte
}

var benchCases = []benchCase{
	{"CT512_12bit", Frame{Width: 512, Height: 512, Components: 1, BitsPerSample: 12}, func() []byte { return ctSlice(512, 512) }},
	{"CT512_16bit", Frame{Width: 512, Height: 512, Components: 1, BitsPerSample: 16}, func() []byte { return ctSlice(512, 512) }},
	{"CR2500x2048_12bit", Frame{Width: 2500, Height: 2048, Components: 1, BitsPerSample: 12}, func() []byte { return radiograph(2500, 2048, 12) }},
	{"CR2500x2048_16bit", Frame{Width: 2500, Height: 2048, Components: 1, BitsPerSample: 16}, func() []byte { return radiograph(2500, 2048, 16) }},
}

func BenchmarkEncode(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			pix := bc.pix()
			out, err := AppendEncode(nil, pix, bc.f, Options{})
			if err != nil {
				b.Fatal(err)
			}
			measure(b, len(pix), func() {
				if out, err = AppendEncode(out[:0], pix, bc.f, Options{}); err != nil {
					b.Fatal(err)
				}
			})
			b.ReportMetric(float64(len(out))*8/float64(len(pix)/2), "bits/sample")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			pix := bc.pix()
			stream, err := AppendEncode(nil, pix, bc.f, Options{})
			if err != nil {
				b.Fatal(err)
			}
			measure(b, len(pix), func() {
				if _, _, err := Decode(stream); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
