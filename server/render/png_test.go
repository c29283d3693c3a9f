package render

import (
	"bytes"
	"hash/adler32"
	"image"
	"image/png"
	"math/rand/v2"
	"testing"
)

// TestEncodePNGRoundTrip: the parallel PNG writer's output decodes with image/png to the exact
// pixels, for grey and colour, small (one band) and large (many bands) images.
func TestEncodePNGRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range [][2]int{{1, 1}, {3, 7}, {640, 480}, {2140, 1760}} {
		w, h := size[0], size[1]
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i := range g.Pix {
			g.Pix[i] = byte(i/w + i%w/3 + rng.IntN(4))
		}
		c := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := range c.Pix {
			c.Pix[i] = byte(rng.IntN(256))
			if i%4 == 3 {
				c.Pix[i] = 255
			}
		}
		for _, img := range []image.Image{g, c} {
			var buf bytes.Buffer
			if err := encodePNG(&buf, img); err != nil {
				t.Fatal(err)
			}
			back, err := png.Decode(&buf)
			if err != nil {
				t.Fatalf("%dx%d %T: image/png cannot read it: %v", w, h, img, err)
			}
			if back.Bounds() != img.Bounds() {
				t.Fatalf("bounds %v", back.Bounds())
			}
			for y := range h {
				for x := range w {
					r1, g1, b1, _ := back.At(x, y).RGBA()
					r2, g2, b2, _ := img.At(x, y).RGBA()
					if r1>>8 != r2>>8 || g1>>8 != g2>>8 || b1>>8 != b2>>8 {
						t.Fatalf("%dx%d %T: pixel (%d,%d) differs", w, h, img, x, y)
					}
				}
			}
		}
	}
}

func TestAdler32Combine(t *testing.T) {
	a, b := []byte("Sanping renders radiographs"), bytes.Repeat([]byte{0xFF, 1, 2}, 70000)
	want := adler32.Checksum(append(append([]byte{}, a...), b...))
	if got := adler32Combine(adler32.Checksum(a), adler32.Checksum(b), len(b)); got != want {
		t.Fatalf("combined %08x, want %08x", got, want)
	}
}

func BenchmarkEncodePNGRadiograph(b *testing.B) {
	g := image.NewGray(image.Rect(0, 0, 2140, 1760))
	for i := range g.Pix {
		g.Pix[i] = byte(i/2140/8 + i%2140/16 + i%5)
	}
	b.SetBytes(int64(len(g.Pix)))
	for b.Loop() {
		encodePNG(&bytes.Buffer{}, g)
	}
}

func BenchmarkStdlibPNGRadiograph(b *testing.B) {
	g := image.NewGray(image.Rect(0, 0, 2140, 1760))
	for i := range g.Pix {
		g.Pix[i] = byte(i/2140/8 + i%2140/16 + i%5)
	}
	b.SetBytes(int64(len(g.Pix)))
	for b.Loop() {
		pngEncoder.Encode(&bytes.Buffer{}, g)
	}
}
