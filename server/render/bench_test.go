package render

import (
	"bytes"
	"io"
	"testing"
)

// benchCR is a 2140x1760 16-bit MONOCHROME1 frame (the size of a chest radiograph) with a window.
func benchCR() ([]byte, *Attributes) {
	const rows, cols = 2140, 1760
	a := &Attributes{Rows: rows, Columns: cols, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15,
		Photometric: "MONOCHROME1", RescaleSlope: 1, NumberOfFrames: 1, Windows: []Window{{Center: 30000, Width: 40000}}}
	return pack(monoValues(rows, cols, 0, 65535, 99), 16, 16, 15, false, 0), a
}

func reportMS(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/op")
}

func BenchmarkRender(b *testing.B) {
	frame, a := benchCR()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(frame, a, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	reportMS(b)
}

func BenchmarkRenderResizeJPEG(b *testing.B) {
	frame, a := benchCR()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		img, err := Render(frame, a, Options{})
		if err != nil {
			b.Fatal(err)
		}
		img = Resize(img, 1024, 1024)
		cw := &countWriter{}
		if err := Encode(cw, img, "image/jpeg", 90); err != nil {
			b.Fatal(err)
		}
		n = cw.n
	}
	b.ReportMetric(float64(n), "jpeg-bytes")
	reportMS(b)
}

func BenchmarkRenderCTPNG(b *testing.B) {
	a := &Attributes{Rows: 512, Columns: 512, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15,
		PixelRepresentation: 1, Photometric: "MONOCHROME2", RescaleSlope: 1, RescaleIntercept: -1024, NumberOfFrames: 1,
		Windows: []Window{{Center: 40, Width: 400}}}
	frame := pack(monoValues(512, 512, -1000, 3000, 98), 16, 16, 15, false, 0)
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		img, err := Render(frame, a, Options{})
		if err != nil {
			b.Fatal(err)
		}
		buf.Reset()
		if err := Encode(&buf, img, "image/png", 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "png-bytes")
	reportMS(b)
}

func BenchmarkResize(b *testing.B) {
	frame, a := benchCR()
	img, err := Render(frame, a, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Resize(img, 1024, 1024)
	}
	reportMS(b)
}

type countWriter struct{ n int }

func (c *countWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
