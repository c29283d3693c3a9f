package dicomweb

import (
	"net/http"
	"testing"
)

func TestNegotiateCoding(t *testing.T) {
	for _, c := range []struct{ header, want string }{
		{"", ""},
		{"identity", ""},
		{"gzip", "gzip"},
		{"gzip, deflate, br, zstd", "zstd"},
		{"zstd;q=0, gzip", "gzip"},
		{"zstd;q=0.5, gzip;q=1", "zstd"}, // both acceptable: the better coding
		{"gzip;q=0", ""},
		{"*", "zstd"},
		{"*;q=0, gzip", "gzip"},
		{"x-gzip", "gzip"},
		{"ZSTD", "zstd"},
		{"zstd;q=nonsense", ""},
		{"zstd;q=2", ""},
		{" , ;q=1, br", ""},
	} {
		if got := negotiateCoding(c.header); got != c.want {
			t.Errorf("Accept-Encoding %q: %q, want %q", c.header, got, c.want)
		}
	}
}

// FuzzNegotiateCoding: any Accept-Encoding header gives one of the three answers.
func FuzzNegotiateCoding(f *testing.F) {
	for _, s := range []string{"gzip, deflate, br, zstd", "zstd;q=0, gzip", "*;q=0.1", ";;;,,,q=", "gzip;q=1;q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		switch got := negotiateCoding(header); got {
		case "", codingZstd, codingGzip:
		default:
			t.Fatalf("%q -> %q", header, got)
		}
	})
}

// BenchmarkCoding codes a 512x512 16-bit CT-like frame as the frames route does: MB/s is of
// the frame (input), and the coded size is reported per coding.
func BenchmarkCoding(b *testing.B) {
	frame := make([]byte, 512*512*2)
	seed := uint32(1)
	for y := range 512 {
		for x := range 512 {
			dx, dy := x-256, y-256
			v := 0
			if dx*dx+dy*dy < 230*230 {
				seed = seed*1664525 + 1013904223
				v = 1064 + (dx+dy)/4 + int(seed>>27)
			}
			frame[2*(y*512+x)], frame[2*(y*512+x)+1] = byte(v), byte(v>>8)
		}
	}
	code := func(coding string, out *countingWriter) {
		w := &encodingWriter{ResponseWriter: &discardResponse{h: http.Header{}, w: out}, coding: coding, native: true}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(frame)
		w.close()
	}
	for _, coding := range []string{codingZstd, codingGzip} {
		b.Run(coding, func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			var n countingWriter
			for b.Loop() {
				n = 0
				code(coding, &n)
			}
			b.ReportMetric(float64(n)/float64(len(frame)), "ratio")
		})
	}
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// discardResponse is a ResponseWriter that counts what it is sent.
type discardResponse struct {
	h http.Header
	w *countingWriter
}

func (d *discardResponse) Header() http.Header         { return d.h }
func (d *discardResponse) WriteHeader(int)             {}
func (d *discardResponse) Write(p []byte) (int, error) { return d.w.Write(p) }
