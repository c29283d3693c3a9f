package jpegls

// Comparisons with DCMTK 3.6's dcmcjpls and dcmdjpls (CharLS inside): its streams decoded
// here, ours decoded there, and the bytes of both encoders side by side.

import (
	"bytes"
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

// dcmtkEncode compresses im with dcmcjpls and returns the JPEG-LS stream, the compressed
// file's path and its transfer syntax.
func dcmtkEncode(tb testing.TB, dir string, im *testImage, args []string) ([]byte, string, string) {
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
		tb.Fatalf("dcmcjpls %v wrote native pixel data (%s)", args, pd.transferSyntax)
	}
	return pd.stream(), out, pd.transferSyntax
}

// dcmtkDecode decompresses a file with dcmdjpls and returns its native pixel data.
func dcmtkDecode(tb testing.TB, path string) []byte {
	tb.Helper()
	out := strings.TrimSuffix(path, ".dcm") + "_dec.dcm"
	dicomtest.Run(tb, "dcmdjpls", path, out)
	pd, err := readPixelData(out)
	if err != nil {
		tb.Fatal(err)
	}
	if pd.native == nil {
		tb.Fatalf("dcmdjpls wrote %s", pd.transferSyntax)
	}
	return pd.native
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
				stream, _, ts := dcmtkEncode(t, dir, im, args)
				if ts != tsJPEGLSLossless {
					t.Errorf("transfer syntax %s", ts)
				}
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
