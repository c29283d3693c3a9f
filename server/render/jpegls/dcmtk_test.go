package jpegls

// Comparisons with DCMTK 3.6's dcmcjpls and dcmdjpls (CharLS inside): its streams decoded
// here, ours decoded there, and the bytes of both encoders side by side.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

func needDCMTK(tb testing.TB) {
	tb.Helper()
	testtool.Need(tb, testtool.DCMTK, "dcmcjpls", "dcmdjpls")
}

// dcmtkEncode compresses im with dcmcjpls and returns the JPEG-LS stream and the compressed
// file's path.
func dcmtkEncode(tb testing.TB, dir string, im *testImage, args []string) ([]byte, string) {
	tb.Helper()
	in := filepath.Join(dir, im.name+".dcm")
	if _, err := os.Stat(in); err != nil {
		if err := writePart10(in, im); err != nil {
			tb.Fatal(err)
		}
	}
	out := filepath.Join(dir, im.name+"_"+strings.ReplaceAll(strings.Join(args, ""), "+", "_")+".dcm")
	dicomtest.Run(tb, "dcmcjpls", append(append([]string{}, args...), in, out)...)
	pd, err := readPixelData(out)
	if err != nil {
		tb.Fatal(err)
	}
	if pd.fragments == nil {
		tb.Fatalf("dcmcjpls %v wrote native pixel data", args)
	}
	return pd.stream(), out
}

// dcmtkDecode decompresses a file with dcmdjpls and returns its native pixel data, the
// padding to even length left out.
func dcmtkDecode(tb testing.TB, path string, f Frame) []byte {
	tb.Helper()
	out := strings.TrimSuffix(path, ".dcm") + "_dec.dcm"
	dicomtest.Run(tb, "dcmdjpls", path, out)
	pd, err := readPixelData(out)
	if err != nil {
		tb.Fatal(err)
	}
	if pd.native == nil {
		tb.Fatal("dcmdjpls wrote encapsulated pixel data")
	}
	n := f.Width * f.Height * f.Components * (1 + (f.BitsPerSample-1)/8)
	if len(pd.native) != n+n%2 {
		tb.Fatalf("dcmdjpls wrote %d bytes of pixel data, want %d", len(pd.native), n)
	}
	return pd.native[:n]
}

func dcmtkImages() []*testImage {
	return []*testImage{
		{name: "gray8", width: 203, height: 97, spp: 1, bitsAllocated: 8, bits: 8},
		{name: "gray12", width: 200, height: 120, spp: 1, bitsAllocated: 16, bits: 12},
		{name: "gray16", width: 160, height: 99, spp: 1, bitsAllocated: 16, bits: 16},
		{name: "rgb8", width: 97, height: 64, spp: 3, bitsAllocated: 8, bits: 8},
	}
}

// TestDCMTKDecode compresses synthetic images with dcmcjpls in every interleave mode and
// checks Decode against the original samples.
func TestDCMTKDecode(t *testing.T) {
	needDCMTK(t)
	dir := t.TempDir()
	for i, im := range dcmtkImages() {
		im.pix = synth(im.width, im.height, im.spp, im.bits, uint64(i+1))
		for _, args := range [][]string{{}, {"+il"}, {"+is"}, {"+in"}} {
			t.Run(im.name+strings.Join(args, ""), func(t *testing.T) {
				stream, _ := dcmtkEncode(t, dir, im, args)
				f, pix, err := Decode(stream)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d bytes, %+v, head % x", len(stream), f, stream[:min(40, len(stream))])
				if m := firstMismatch(pix, im.pix, im.frame()); m != "" {
					t.Fatal(m)
				}
				// Our encoder, given the same parameters (DCMTK codes 12-bit samples with
				// precision 16), writes the same bytes.
				ours, err := AppendEncode(nil, im.pix, f, Options{})
				if err != nil {
					t.Fatal(err)
				}
				if theirs := normalize(t, stream); !bytes.Equal(ours, theirs) {
					t.Errorf("ours (%d bytes) differ from dcmcjpls's (%d bytes without default LSE and EOI padding) at byte %d",
						len(ours), len(theirs), firstDiff(ours, theirs))
				}
			})
		}
	}
}

// normalize drops from a stream what DCMTK writes and our encoder leaves out: an LSE segment
// that repeats the default parameters (dcmcjpls writes one above 8 bits) and the fill byte
// that makes an odd stream even (its "extended EOI" padding).
func normalize(tb testing.TB, stream []byte) []byte {
	tb.Helper()
	d := &decoder{data: stream}
	if err := d.header(); err != nil {
		tb.Fatal(err)
	}
	out := bytes.Clone(stream)
	if i := bytes.Index(out, []byte{0xFF, mLSE}); i > 0 && i < bytes.Index(out, []byte{0xFF, mSOS}) {
		l := int(out[i+2])<<8 | int(out[i+3])
		lse := &decoder{}
		if err := lse.parseLSE(out[i+4 : i+2+l]); err != nil {
			tb.Fatal(err)
		}
		def, err := preset{}.defaults(d.f.BitsPerSample, 0)
		if err != nil {
			tb.Fatal(err)
		}
		if lse.ps == def {
			out = append(out[:i], out[i+2+l:]...)
		}
	}
	if n := len(out); n >= 3 && out[n-3] == 0xFF && out[n-2] == 0xFF && out[n-1] == mEOI {
		out = append(out[:n-3], 0xFF, mEOI)
	}
	return out
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestDCMTKDecodesOurs: our streams (every interleave mode, 8 to 16 bits, odd sizes, flat
// and noisy images, near-lossless, preset thresholds) in a Part 10 file decode with dcmdjpls
// to exactly what our decoder gives: the original samples when lossless. DCMTK 3.6's CharLS
// cannot check the rest: it refuses precisions below 8 ("unsupported compression parameters")
// and restart markers, and ignores an LSE's MAXVAL; TestRoundTripOptions covers them.
func TestDCMTKDecodesOurs(t *testing.T) {
	needDCMTK(t)
	dir := t.TempDir()
	type tc struct {
		w, h, spp, bits int
		ilv             Interleave
		near            int
		opts            Options
		flat            bool
	}
	var cases []tc
	for _, bits := range []int{8, 9, 10, 12, 15, 16} {
		cases = append(cases, tc{w: 61, h: 37, spp: 1, bits: bits})
	}
	cases = append(cases,
		tc{w: 1, h: 1, spp: 1, bits: 8}, tc{w: 3, h: 200, spp: 1, bits: 16}, tc{w: 300, h: 2, spp: 1, bits: 12},
		tc{w: 64, h: 64, spp: 1, bits: 16, flat: true}, tc{w: 500, h: 9, spp: 1, bits: 8, flat: true},
		tc{w: 61, h: 37, spp: 1, bits: 8, near: 1}, tc{w: 61, h: 37, spp: 1, bits: 12, near: 3},
		tc{w: 61, h: 37, spp: 1, bits: 12, opts: Options{T1: 10, T2: 40, T3: 300, Reset: 32}},
	)
	for ilv := InterleaveNone; ilv <= InterleaveSample; ilv++ {
		cases = append(cases, tc{w: 45, h: 31, spp: 3, bits: 8, ilv: ilv}, tc{w: 45, h: 31, spp: 3, bits: 8, ilv: ilv, near: 2},
			tc{w: 33, h: 30, spp: 3, bits: 8, ilv: ilv, flat: true})
	}
	for i, c := range cases {
		name := fmt.Sprintf("%dx%dx%d_%dbit_%s_near%d_%v_flat%v", c.w, c.h, c.spp, c.bits, c.ilv, c.near, c.opts != Options{}, c.flat)
		t.Run(name, func(t *testing.T) {
			ba := 8
			if c.bits > 8 {
				ba = 16
			}
			im := &testImage{name: fmt.Sprint("ours", i), width: c.w, height: c.h, spp: c.spp, bitsAllocated: ba, bits: c.bits, near: c.near > 0}
			pix := synth(c.w, c.h, c.spp, c.bits, uint64(i))
			if c.flat {
				pix = flatImage(c.w, c.h, c.spp, c.bits)
			}
			f := Frame{Width: c.w, Height: c.h, Components: c.spp, BitsPerSample: c.bits, Interleave: c.ilv, Near: c.near}
			stream, err := AppendEncode(nil, pix, f, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			_, ours, err := Decode(stream)
			if err != nil {
				t.Fatal(err)
			}
			if c.near == 0 {
				if m := firstMismatch(ours, pix, f); m != "" {
					t.Fatalf("round trip: %s", m)
				}
			}
			im.jls = stream
			path := filepath.Join(dir, im.name+".dcm")
			if err := writePart10(path, im); err != nil {
				t.Fatal(err)
			}
			if m := firstMismatch(dcmtkDecode(t, path, f), ours, f); m != "" {
				t.Fatalf("dcmdjpls: %s", m)
			}
		})
	}
}

// flatImage is mostly flat (run mode over whole lines), with a few steps.
func flatImage(w, h, spp, bits int) []byte {
	bps := 1
	if bits > 8 {
		bps = 2
	}
	pix := make([]byte, w*h*spp*bps)
	for y := range h {
		for x := range w {
			for c := range spp {
				v := (1<<bits - 1) / 3
				if y > h/2 && x > w/3 {
					v = (1<<bits - 1) / (2 + c)
				}
				i := (y*w+x)*spp + c
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

// TestDCMTKNearLossless: dcmcjpls's near-lossless streams (+en, several NEAR) decode to
// dcmdjpls's pixels, within NEAR of the original.
func TestDCMTKNearLossless(t *testing.T) {
	needDCMTK(t)
	dir := t.TempDir()
	for i, im := range dcmtkImages() {
		im.pix = synth(im.width, im.height, im.spp, im.bits, uint64(i+11))
		for _, md := range []int{1, 2, 5} {
			for _, ilv := range []string{"+il", "+is", "+in"} {
				args := []string{"+en", "+md", fmt.Sprint(md), ilv}
				t.Run(im.name+strings.Join(args, ""), func(t *testing.T) {
					stream, path := dcmtkEncode(t, dir, im, args)
					f, pix, err := Decode(stream)
					if err != nil {
						t.Fatal(err)
					}
					if f.Near != md {
						t.Errorf("NEAR %d, want %d", f.Near, md)
					}
					if m := firstMismatch(pix, dcmtkDecode(t, path, f), im.frame()); m != "" {
						t.Fatalf("vs dcmdjpls: %s", m)
					}
					bps := 1 + (im.bits-1)/8
					for k := 0; k < len(pix); k += bps {
						a, b := int(pix[k]), int(im.pix[k])
						if bps == 2 {
							a, b = int(binary.LittleEndian.Uint16(pix[k:])), int(binary.LittleEndian.Uint16(im.pix[k:]))
						}
						if a-b > md || b-a > md {
							t.Fatalf("sample %d: %d, original %d, NEAR %d", k/bps, a, b, md)
						}
					}
				})
			}
		}
	}
}

// TestDCMTKPresets: dcmcjpls with its threshold and reset options writes an LSE segment,
// which Decode follows.
func TestDCMTKPresets(t *testing.T) {
	needDCMTK(t)
	dir := t.TempDir()
	for i, im := range dcmtkImages() {
		im.pix = synth(im.width, im.height, im.spp, im.bits, uint64(i+21))
		args := []string{"+t1", "4", "+t2", "9", "+t3", "30", "+rs", "40"}
		t.Run(im.name, func(t *testing.T) {
			stream, _ := dcmtkEncode(t, dir, im, args)
			if !bytes.Contains(stream[:40], []byte{0xFF, mLSE}) {
				t.Fatal("no LSE segment")
			}
			f, pix, err := Decode(stream)
			if err != nil {
				t.Fatal(err)
			}
			if m := firstMismatch(pix, im.pix, im.frame()); m != "" {
				t.Fatal(m)
			}
			ours, err := AppendEncode(nil, im.pix, f, Options{T1: 4, T2: 9, T3: 30, Reset: 40})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, normalize(t, stream)) {
				t.Errorf("ours (%d bytes) differ from dcmcjpls's (%d) at byte %d", len(ours), len(stream), firstDiff(ours, normalize(t, stream)))
			}
		})
	}
}

// TestDCMTKSizes compares our stream sizes with dcmcjpls's on the benchmark images (a CT
// slice, a radiograph): the same bytes at the same precision; for 12-bit samples in 16-bit
// words dcmcjpls codes with precision 16, and ours (precision 12) must not be larger.
func TestDCMTKSizes(t *testing.T) {
	needDCMTK(t)
	if testing.Short() {
		t.Skip("large images")
	}
	dir := t.TempDir()
	for _, bc := range benchCases {
		t.Run(bc.name, func(t *testing.T) {
			im := &testImage{name: bc.name, width: bc.f.Width, height: bc.f.Height, spp: 1, bitsAllocated: 16, bits: bc.f.BitsPerSample, pix: bc.pix()}
			theirs, _ := dcmtkEncode(t, dir, im, nil)
			ours, err := AppendEncode(nil, im.pix, bc.f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: ours %d bytes, dcmcjpls %d (%+.2f%%), %.2f bits/sample", bc.name, len(ours), len(theirs),
				100*(float64(len(ours))/float64(len(theirs))-1), float64(8*len(ours))/float64(bc.f.Width*bc.f.Height))
			if len(ours) > len(theirs) {
				t.Errorf("ours are larger")
			}
			if bc.f.BitsPerSample == 16 && !bytes.Equal(ours, normalize(t, theirs)) {
				t.Errorf("ours differ from dcmcjpls's at byte %d", firstDiff(ours, normalize(t, theirs)))
			}
		})
	}
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode from small dcmcjpls-compressed
// images when JPEGLS_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("JPEGLS_WRITE_SEEDS") != "1" {
		t.Skip("set JPEGLS_WRITE_SEEDS=1 to regenerate the seed corpus")
	}
	needDCMTK(t)
	dir := t.TempDir()
	seedDir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := []struct {
		im   testImage
		args []string
	}{
		{testImage{name: "gray8", width: 16, height: 12, spp: 1, bitsAllocated: 8, bits: 8}, nil},
		{testImage{name: "gray12", width: 16, height: 12, spp: 1, bitsAllocated: 16, bits: 12}, []string{"+t1", "4", "+t2", "9", "+t3", "30"}},
		{testImage{name: "gray16", width: 16, height: 12, spp: 1, bitsAllocated: 16, bits: 16}, []string{"+en", "+md", "3"}},
		{testImage{name: "rgb8", width: 12, height: 8, spp: 3, bitsAllocated: 8, bits: 8}, []string{"+il"}},
		{testImage{name: "rgb8", width: 12, height: 8, spp: 3, bitsAllocated: 8, bits: 8}, []string{"+is"}},
		{testImage{name: "rgb8", width: 12, height: 8, spp: 3, bitsAllocated: 8, bits: 8}, []string{"+in"}},
	}
	for i, s := range seeds {
		im := s.im
		im.pix = synth(im.width, im.height, im.spp, im.bits, uint64(i+100))
		stream, _ := dcmtkEncode(t, dir, &im, s.args)
		name := "dcmtk_" + im.name + strings.ReplaceAll(strings.Join(s.args, ""), "+", "_")
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", stream)
		if err := os.WriteFile(filepath.Join(seedDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
