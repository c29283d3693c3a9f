package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
)

// encapsulatedFrames returns the fragments of file's encapsulated Pixel Data after the Basic
// Offset Table (one per frame, as dcmcjpeg writes them).
func encapsulatedFrames(t *testing.T, f []byte) [][]byte {
	t.Helper()
	i := bytes.LastIndex(f, []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF})
	if i < 0 {
		t.Fatal("no encapsulated pixel data")
	}
	var out [][]byte
	for p, item := i+12, 0; p+8 <= len(f); item++ {
		g, e := binary.LittleEndian.Uint16(f[p:]), binary.LittleEndian.Uint16(f[p+2:])
		n := int(binary.LittleEndian.Uint32(f[p+4:]))
		p += 8
		if g != 0xFFFE || e != 0xE000 {
			break
		}
		if item > 0 {
			out = append(out, f[p:p+n])
		}
		p += n
	}
	return out
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, b)
	}
}

// TestExtended12Bit: 12-bit extended sequential JPEG (1.2.840.10008.1.2.4.51) from dcmcjpeg
// +ee, also relabelled signed (Pixel Representation 1, as CT and CR modalities send it: the
// two's complement bits compressed as they are). DecodeFrame must give dcmdjpeg's words, and
// the rendering must match dcmj2pnm's.
func TestExtended12Bit(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg", "dcmodify", "dcmj2pnm", "dcm2json")
	const rows, cols = 130, 97
	for _, c := range []struct {
		name   string
		signed bool
		vals   []int
		extra  []string // dcmodify -i arguments
		args   []string // dcmj2pnm
		opts   Options
	}{
		{name: "unsigned min-max", vals: monoValues(rows, cols, 0, 4095, 21), args: []string{"+Wm"}},
		{name: "signed CT window", signed: true, vals: monoValues(rows, cols, -2048, 2047, 22),
			extra: []string{"(0028,1052)=-1024", "(0028,1053)=1", "(0028,1050)=40", "(0028,1051)=400"},
			args:  []string{"+Wi", "1"}},
		{name: "signed CT set window", signed: true, vals: monoValues(rows, cols, -2048, 2047, 23),
			extra: []string{"(0028,1052)=-1024", "(0028,1053)=1", "(0028,1050)=40", "(0028,1051)=400"},
			args:  []string{"+Ww", "-1500", "2000"}, opts: Options{Window: &Window{Center: -1500, Width: 2000}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.dcm")
			comp := filepath.Join(dir, "comp.dcm")
			plain := filepath.Join(dir, "plain.dcm")
			pm := pixelModule{rows: rows, cols: cols, ba: 16, bs: 12, hb: 11, pi: "MONOCHROME2"}
			// Stored unsigned so that dcmcjpeg compresses the 12 bits as they are.
			if err := os.WriteFile(in, part10(pm, pack(c.vals, 16, 12, 11, false, 0)), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "dcmcjpeg", "+ee", in, comp)
			mods := c.extra
			if c.signed {
				mods = append([]string{"(0028,0103)=1"}, mods...)
			}
			for _, m := range mods {
				run(t, "dcmodify", "-nb", "-i", m, comp)
			}
			run(t, "dcmdjpeg", comp, plain)
			f, err := os.ReadFile(comp)
			if err != nil {
				t.Fatal(err)
			}
			frames := encapsulatedFrames(t, f)
			if len(frames) != 1 {
				t.Fatalf("%d fragments", len(frames))
			}
			// dcm2json does not write compressed pixel data inline; the attributes are the same.
			a, err := AttributesFromJSON(dcm2json(t, plain), nil)
			if err != nil {
				t.Fatal(err)
			}
			native, na, err := DecodeFrame(frames[0], tsJPEGExtended, "OB", a)
			if err != nil {
				t.Fatalf("DecodeFrame: %v", err)
			}
			pf, err := os.ReadFile(plain)
			if err != nil {
				t.Fatal(err)
			}
			want := nativeOW(t, pf)
			if !bytes.Equal(native, want) {
				t.Errorf("DecodeFrame differs from dcmdjpeg (%d bytes, %d)", len(native), len(want))
			}
			if na.BitsAllocated != 16 || na.BitsStored != 12 || na.PixelRepresentation != a.PixelRepresentation {
				t.Errorf("native attributes %d/%d/%d", na.BitsAllocated, na.BitsStored, na.PixelRepresentation)
			}
			img, err := Render(native, na, c.opts)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			w, h, ch, px := dcmj2pnm(t, comp, c.args...)
			maxd, mean := diffStats(t, img, w, h, ch, px)
			t.Logf("max diff from dcmj2pnm %s: %d, mean %.4f", fmt.Sprint(c.args), maxd, mean)
		})
	}
}

// nativeOW returns the value of a native Pixel Data element written as OW.
func nativeOW(t *testing.T, f []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(f, []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'W'})
	if i < 0 {
		t.Fatal("no OW pixel data")
	}
	n := int(binary.LittleEndian.Uint32(f[i+8:]))
	return f[i+12 : i+12+n]
}

// TestExtended12BitColor: 8-bit RGB compressed as 12-bit YCbCr 4:2:2 (dcmcjpeg +ee +bt) decodes
// to dcmdjpeg's RGB words and renders as dcmj2pnm shows it.
func TestExtended12BitColor(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg", "dcmj2pnm", "dcm2json")
	const rows, cols = 50, 66
	dir := t.TempDir()
	in, comp, plain := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "comp.dcm"), filepath.Join(dir, "plain.dcm")
	pm := pixelModule{rows: rows, cols: cols, spp: 3, ba: 8, bs: 8, hb: 7, pi: "RGB"}
	if err := os.WriteFile(in, part10(pm, interleave(rgbImage(rows, cols, 24), false)), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "dcmcjpeg", "+ee", "+bt", in, comp)
	run(t, "dcmdjpeg", comp, plain)
	f, err := os.ReadFile(comp)
	if err != nil {
		t.Fatal(err)
	}
	a, err := AttributesFromJSON(dcm2json(t, plain), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Photometric = "YBR_FULL_422" // as the compressed file says; dcmdjpeg's copy says RGB
	native, na, err := DecodeFrame(encapsulatedFrames(t, f)[0], tsJPEGExtended, "OB", a)
	if err != nil {
		t.Fatalf("DecodeFrame: %v", err)
	}
	pf, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if want := nativeOW(t, pf); !bytes.Equal(native, want) {
		t.Errorf("DecodeFrame differs from dcmdjpeg (%d bytes, %d)", len(native), len(want))
	}
	img, err := Render(native, na, Options{})
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	w, h, ch, px := dcmj2pnm(t, comp)
	maxd, mean := diffStats(t, img, w, h, ch, px)
	t.Logf("max diff from dcmj2pnm: %d, mean %.4f", maxd, mean)
}
