package jpegbase

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// benchStream compresses a 512x512 monochrome image of bs bits with dcmcjpeg (args) and
// returns the JPEG stream.
func benchStream(b *testing.B, bs int, args ...string) []byte {
	testtool.Need(b, testtool.DCMTK, "dcmcjpeg")
	const rows, cols = 512, 512
	dir := b.TempDir()
	in, comp := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "comp.dcm")
	var file []byte
	if bs == 8 {
		file = part10(rows, cols, 1, pattern(rows, cols, 1, 1))
	} else {
		file = wordsPart10(rows, cols, bs, false, words(rows, cols, bs, false, 1))
	}
	if err := os.WriteFile(in, file, 0o644); err != nil {
		b.Fatal(err)
	}
	dicomtest.Run(b, "dcmcjpeg", append(args, in, comp)...)
	f, err := os.ReadFile(comp)
	if err != nil {
		b.Fatal(err)
	}
	return encapsulatedFrame(b, f)
}

func benchDecode(b *testing.B, stream []byte) {
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(stream); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeExtended12 decodes a 512x512 12-bit CT-sized frame (SOF1, quality 90).
func BenchmarkDecodeExtended12(b *testing.B) { benchDecode(b, benchStream(b, 12, "+ee")) }

// BenchmarkDecodeBaseline8 is the same image size at 8 bits (SOF0), for comparison.
func BenchmarkDecodeBaseline8(b *testing.B) { benchDecode(b, benchStream(b, 8, "+eb")) }
