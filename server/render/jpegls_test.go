package render

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
)

// TestJPEGLS: stored instances compressed by dcmcjpls (lossless and near-lossless, grey and
// RGB, every interleave mode) decode to dcmdjpls's pixel data and render as dcmj2pnm shows
// them.
func TestJPEGLS(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpls", "dcmdjpls", "dcmodify", "dcmj2pnm", "dcm2json")
	const rows, cols = 70, 93
	ct := []string{"(0028,1052)=-1024", "(0028,1053)=1", "(0028,1050)=40", "(0028,1051)=400"}
	for _, c := range []struct {
		name   string
		pm     pixelModule
		pixels []byte
		extra  []string // dcmodify -i arguments, after compression
		args   []string // dcmcjpls
		show   []string // dcmj2pnm
		ts     string
	}{
		{name: "CT 12-bit signed", pm: pixelModule{rows: rows, cols: cols, ba: 16, bs: 12, hb: 11, pi: "MONOCHROME2"},
			pixels: pack(monoValues(rows, cols, 0, 4095, 31), 16, 12, 11, false, 0),
			extra:  append([]string{"(0028,0103)=1"}, ct...), show: []string{"+Wi", "1"}, ts: tsJPEGLS},
		{name: "CR 16-bit", pm: pixelModule{rows: rows, cols: cols, ba: 16, bs: 16, hb: 15, pi: "MONOCHROME1"},
			pixels: pack(monoValues(rows, cols, 0, 65535, 32), 16, 16, 15, false, 0), ts: tsJPEGLS},
		{name: "grey 8-bit near-lossless", pm: pixelModule{rows: rows, cols: cols, ba: 8, bs: 8, hb: 7, pi: "MONOCHROME2"},
			pixels: pack(monoValues(rows, cols, 0, 255, 33), 8, 8, 7, false, 0), args: []string{"+en", "+md", "3"}, ts: tsJPEGLSNear},
		{name: "RGB line", pm: pixelModule{rows: rows, cols: cols, spp: 3, ba: 8, bs: 8, hb: 7, pi: "RGB"},
			pixels: interleave(rgbImage(rows, cols, 34), false), ts: tsJPEGLS},
		{name: "RGB sample", pm: pixelModule{rows: rows, cols: cols, spp: 3, ba: 8, bs: 8, hb: 7, pi: "RGB"},
			pixels: interleave(rgbImage(rows, cols, 35), false), args: []string{"+is"}, ts: tsJPEGLS},
		{name: "RGB none", pm: pixelModule{rows: rows, cols: cols, spp: 3, ba: 8, bs: 8, hb: 7, pi: "RGB"},
			pixels: interleave(rgbImage(rows, cols, 36), false), args: []string{"+in"}, ts: tsJPEGLS},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !Renders(c.ts) {
				t.Fatalf("Renders(%s) = false", c.ts)
			}
			dir := t.TempDir()
			in, comp, plain := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "comp.dcm"), filepath.Join(dir, "plain.dcm")
			if err := os.WriteFile(in, part10(c.pm, c.pixels), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "dcmcjpls", append(append([]string{}, c.args...), in, comp)...)
			for _, m := range c.extra {
				run(t, "dcmodify", "-nb", "-i", m, comp)
			}
			run(t, "dcmdjpls", comp, plain)
			f, err := os.ReadFile(comp)
			if err != nil {
				t.Fatal(err)
			}
			a, err := AttributesFromJSON(dcm2json(t, plain), nil)
			if err != nil {
				t.Fatal(err)
			}
			frames := encapsulatedFrames(t, f)
			if len(frames) != 1 {
				t.Fatalf("%d fragments", len(frames))
			}
			native, na, err := DecodeFrame(frames[0], c.ts, "OB", a)
			if err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			pf, err := os.ReadFile(plain)
			if err != nil {
				t.Fatal(err)
			}
			if want := nativeOW(t, pf); !bytes.Equal(native, want) {
				t.Errorf("DecodeFrame differs from dcmdjpls (%d bytes, %d)", len(native), len(want))
			}
			if na.BitsAllocated != c.pm.ba || na.PlanarConfiguration != 0 {
				t.Errorf("native attributes: Bits Allocated %d, Planar Configuration %d", na.BitsAllocated, na.PlanarConfiguration)
			}
			img, err := Render(native, na, Options{})
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			// dcmj2pnm reads no JPEG-LS; its rendering of dcmdjpls's output, whose pixel data
			// is DecodeFrame's, stands for it.
			w, h, ch, px := dcmj2pnm(t, plain, c.show...)
			maxd, mean := diffStats(t, img, w, h, ch, px)
			t.Logf("max diff from dcmj2pnm: %d, mean %.4f", maxd, mean)
		})
	}
}
