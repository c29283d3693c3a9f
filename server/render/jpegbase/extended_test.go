package jpegbase

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// words makes rows*cols values of bs bits (two's complement when signed) as 16-bit little
// endian words: a ramp, hard edges at both extremes and noise.
func words(rows, cols, bs int, signed bool, seed uint64) []byte {
	r := &rng{s: seed | 1}
	lo, hi := 0, 1<<bs-1
	if signed {
		lo, hi = -(1 << (bs - 1)), 1<<(bs-1)-1
	}
	out := make([]byte, 0, 2*rows*cols)
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			v := lo + (hi-lo)*(x+y)/max(rows+cols-2, 1)
			switch {
			case y > rows/2 && (x/5+y/3)%2 == 0:
				v = hi
			case y > rows/2 && x%11 == 0:
				v = lo
			case (x*7+y)%5 == 0:
				v = lo + int(r.next()%uint64(hi-lo+1))
			}
			out = binary.LittleEndian.AppendUint16(out, uint16(v)&uint16(1<<bs-1))
		}
	}
	return out
}

// wordsPart10 builds an explicit VR little endian file with 16-bit allocated monochrome pixels.
func wordsPart10(rows, cols, bs int, signed bool, px []byte) []byte {
	pr := uint16(0)
	if signed {
		pr = 1
	}
	u := dicomtest.UIDs{Study: "1.2.826.0.1.3680043.10.543.9.1", Series: "1.2.826.0.1.3680043.10.543.9.2",
		SOP: "1.2.826.0.1.3680043.10.543.9.3"}
	el := dicomtest.BaseElems(u, dicomtest.SOPClassSC)
	el = append(el,
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0002), 1),
		dicomtest.Str(dicomtest.TagOf(0x0028, 0x0004), "CS", "MONOCHROME2"),
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0010), uint16(rows)),
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0011), uint16(cols)),
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0100), 16),
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0101), uint16(bs)),
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0102), uint16(bs-1)),
		dicomtest.US(dicomtest.TagOf(0x0028, 0x0103), pr),
		dicomtest.RawE(dicomtest.TagOf(0x7FE0, 0x0010), "OW", px))
	return dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: el}.Bytes()
}

// sofOf returns the frame header's marker and precision.
func sofOf(t *testing.T, stream []byte) (marker, precision byte) {
	t.Helper()
	for _, m := range []byte{0xC0, 0xC1} {
		if i := bytes.Index(stream, []byte{0xFF, m}); i >= 0 {
			return m, stream[i+4]
		}
	}
	t.Fatal("no SOF0/SOF1")
	return 0, 0
}

// check12AgainstDCMTK decodes the 12-bit JPEG stream inside comp and requires its samples to
// equal the words dcmdjpeg writes.
func check12AgainstDCMTK(t *testing.T, dir, comp string, rows, cols, spp int) {
	t.Helper()
	f, err := os.ReadFile(comp)
	if err != nil {
		t.Fatal(err)
	}
	stream := encapsulatedFrame(t, f)
	if m, p := sofOf(t, stream); m != 0xC1 || p != 12 {
		t.Fatalf("dcmcjpeg wrote SOF%d with %d bits, want SOF1 with 12", m-0xC0, p)
	}
	img, err := Decode(stream)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	m, ok := img.(*Image12)
	if !ok {
		t.Fatalf("Decode returned %T, want *Image12", img)
	}
	if m.Width != cols || m.Height != rows || m.Components != spp {
		t.Fatalf("decoded %dx%dx%d, want %dx%dx%d", m.Width, m.Height, m.Components, cols, rows, spp)
	}
	plain := filepath.Join(dir, "plain.dcm")
	dicomtest.Run(t, "dcmdjpeg", comp, plain)
	pf, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	want := nativePixels(t, pf)
	md, at := 0, -1
	for i, v := range m.Pix {
		w := int(binary.LittleEndian.Uint16(want[2*i:]))
		d := max(int(v)-w, w-int(v))
		if d > md {
			md, at = d, i
		}
	}
	if md != 0 {
		t.Errorf("dcmdjpeg: max difference %d at sample %d (%d, dcmdjpeg %d)", md, at, m.Pix[at], binary.LittleEndian.Uint16(want[2*at:]))
	}
}

var extendedSizes = [][2]int{{64, 80}, {61, 97}, {1, 1}, {9, 3}, {17, 33}, {33, 130}}

// TestExtended12AgainstDCMTK: dcmcjpeg +ee compresses 10-, 12- and 16-bit monochrome (signed
// and unsigned) to 12-bit extended sequential JPEG; the decoded samples must equal dcmdjpeg's.
func TestExtended12AgainstDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg")
	type mode struct {
		name   string
		bs     int
		signed bool
		flags  []string
	}
	modes := []mode{
		{"u12", 12, false, nil},
		{"s12", 12, true, nil},
		{"u16", 16, false, nil},
		{"s16", 16, true, nil},
		{"u10", 10, false, nil},
		{"u12q30", 12, false, []string{"+q", "30"}},
		{"u12q100", 12, false, []string{"+q", "100"}},
		{"s16q100", 16, true, []string{"+q", "100"}},
	}
	for _, m := range modes {
		for si, sz := range extendedSizes {
			rows, cols := sz[0], sz[1]
			t.Run(fmt.Sprintf("%s/%dx%d", m.name, cols, rows), func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "in.dcm")
				comp := filepath.Join(dir, "comp.dcm")
				if err := os.WriteFile(in, wordsPart10(rows, cols, m.bs, m.signed, words(rows, cols, m.bs, m.signed, uint64(si+3))), 0o644); err != nil {
					t.Fatal(err)
				}
				dicomtest.Run(t, "dcmcjpeg", append(append([]string{"+ee"}, m.flags...), in, comp)...)
				check12AgainstDCMTK(t, dir, comp, rows, cols, 1)
			})
		}
	}
}

// TestExtended12ColorAgainstDCMTK: 8-bit RGB forced to 12 bits per sample (+bt), YCbCr with
// each subsampling dcmcjpeg offers, converted back to RGB as dcmdjpeg does.
func TestExtended12ColorAgainstDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg")
	modes := []struct {
		name  string
		flags []string
	}{{"422", nil}, {"444", []string{"+s4"}}, {"422full", []string{"+n2"}}, {"411full", []string{"+n1"}}, {"rgb", []string{"+cr"}}}
	for _, m := range modes {
		for si, sz := range extendedSizes {
			rows, cols := sz[0], sz[1]
			t.Run(fmt.Sprintf("%s/%dx%d", m.name, cols, rows), func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "in.dcm")
				comp := filepath.Join(dir, "comp.dcm")
				if err := os.WriteFile(in, part10(rows, cols, 3, pattern(rows, cols, 3, uint64(si+5))), 0o644); err != nil {
					t.Fatal(err)
				}
				dicomtest.Run(t, "dcmcjpeg", append(append([]string{"+ee", "+bt"}, m.flags...), in, comp)...)
				check12AgainstDCMTK(t, dir, comp, rows, cols, 3)
			})
		}
	}
}

// TestExtended8AgainstDCMTK: extended sequential with 8-bit samples (SOF1), from 8-bit input
// and from 12-bit input forced to 8 bits (+be).
func TestExtended8AgainstDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg", "dcmj2pnm")
	for si, sz := range extendedSizes {
		rows, cols := sz[0], sz[1]
		for _, spp := range []int{1, 3} {
			t.Run(fmt.Sprintf("spp%d/%dx%d", spp, cols, rows), func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "in.dcm")
				comp := filepath.Join(dir, "comp.dcm")
				if err := os.WriteFile(in, part10(rows, cols, spp, pattern(rows, cols, spp, uint64(si+9))), 0o644); err != nil {
					t.Fatal(err)
				}
				dicomtest.Run(t, "dcmcjpeg", "+ee", in, comp)
				f, err := os.ReadFile(comp)
				if err != nil {
					t.Fatal(err)
				}
				if m, p := sofOf(t, encapsulatedFrame(t, f)); m != 0xC1 || p != 8 {
					t.Fatalf("dcmcjpeg wrote SOF%d with %d bits, want SOF1 with 8", m-0xC0, p)
				}
				checkAgainstDCMTK(t, dir, comp, rows, cols, spp)
			})
		}
		t.Run(fmt.Sprintf("from12/%dx%d", cols, rows), func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.dcm")
			comp := filepath.Join(dir, "comp.dcm")
			if err := os.WriteFile(in, wordsPart10(rows, cols, 12, false, words(rows, cols, 12, false, uint64(si+11))), 0o644); err != nil {
				t.Fatal(err)
			}
			dicomtest.Run(t, "dcmcjpeg", "+ee", "+be", in, comp)
			f, err := os.ReadFile(comp)
			if err != nil {
				t.Fatal(err)
			}
			stream := encapsulatedFrame(t, f)
			if m, p := sofOf(t, stream); m != 0xC1 || p != 8 {
				t.Fatalf("dcmcjpeg wrote SOF%d with %d bits, want SOF1 with 8", m-0xC0, p)
			}
			img, err := Decode(stream)
			if err != nil {
				t.Fatal(err)
			}
			plain := filepath.Join(dir, "plain.dcm")
			dicomtest.Run(t, "dcmdjpeg", comp, plain)
			pf, err := os.ReadFile(plain)
			if err != nil {
				t.Fatal(err)
			}
			got, want := samples(img), nativePixels(t, pf)
			if len(want) == 2*len(got) { // 16-bit words holding 8-bit samples
				w8 := make([]byte, len(got))
				for i := range w8 {
					w8[i] = want[2*i]
				}
				want = w8
			}
			if d, at := maxDiff(got, want[:len(got)]); d != 0 {
				t.Errorf("dcmdjpeg: max difference %d at sample %d", d, at)
			}
		})
	}
}

// TestRestart12 checks restarts and DC categories up to 14 at 12 bits against DCMTK
// (img2dcm + dcmdjpeg).
func TestRestart12(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "img2dcm", "dcmdjpeg")
	for _, tc := range []struct {
		w, h     int
		sampling [][2]int
		ri       int
	}{
		{45, 35, [][2]int{{1, 1}}, 3},
		{37, 21, [][2]int{{1, 1}}, 0},
		{45, 35, [][2]int{{2, 2}, {1, 1}, {1, 1}}, 1},
		{45, 19, [][2]int{{2, 1}, {1, 1}, {1, 1}}, 2},
	} {
		t.Run(fmt.Sprintf("%dx%d/%v/ri%d", tc.w, tc.h, tc.sampling, tc.ri), func(t *testing.T) {
			data := dcOnlyJPEGPrecision(tc.w, tc.h, tc.sampling, tc.ri, uint64(tc.w+tc.ri), 12)
			dir := t.TempDir()
			jp := filepath.Join(dir, "in.jpg")
			comp := filepath.Join(dir, "comp.dcm")
			if err := os.WriteFile(jp, data, 0o644); err != nil {
				t.Fatal(err)
			}
			dicomtest.Run(t, "img2dcm", jp, comp)
			check12AgainstDCMTK(t, dir, comp, tc.h, tc.w, len(tc.sampling))
		})
	}
}

// TestTruncatedAgainstDCMTK cuts streams short inside the scan (ending them with EOI):
// libjpeg reads zeros for the missing bits, and the decoder's table lookahead must not run
// out of data earlier than libjpeg's does.
func TestTruncatedAgainstDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "img2dcm", "dcmdjpeg", "dcmj2pnm")
	const rows, cols = 40, 56
	type source struct {
		name      string
		file      []byte
		args      []string
		spp       int
		twelveBit bool
	}
	for _, s := range []source{
		{"mono8", part10(rows, cols, 1, pattern(rows, cols, 1, 31)), []string{"+eb"}, 1, false},
		{"ybr8", part10(rows, cols, 3, pattern(rows, cols, 3, 32)), []string{"+eb"}, 3, false},
		{"mono12", wordsPart10(rows, cols, 12, false, words(rows, cols, 12, false, 33)), []string{"+ee"}, 1, true},
		{"ybr12", part10(rows, cols, 3, pattern(rows, cols, 3, 34)), []string{"+ee", "+bt"}, 3, true},
	} {
		dir := t.TempDir()
		in, comp := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "comp.dcm")
		if err := os.WriteFile(in, s.file, 0o644); err != nil {
			t.Fatal(err)
		}
		dicomtest.Run(t, "dcmcjpeg", append(s.args, in, comp)...)
		f, err := os.ReadFile(comp)
		if err != nil {
			t.Fatal(err)
		}
		stream := encapsulatedFrame(t, f)
		sos := bytes.Index(stream, []byte{0xFF, 0xDA})
		// At sos+24, +33 and +38 the 8-bit grey stream's last MCU ends within the last byte:
		// a lookahead that padded with zeros would end the data one MCU early.
		for _, cut := range []int{sos + 24, sos + 33, sos + 38, (sos + len(stream)) / 2, len(stream) - 9} {
			t.Run(fmt.Sprintf("%s/%d", s.name, cut-sos), func(t *testing.T) {
				dir := t.TempDir()
				jp, tc := filepath.Join(dir, "cut.jpg"), filepath.Join(dir, "cut.dcm")
				data := append(bytes.Clone(stream[:cut]), 0xFF, 0xD9)
				if err := os.WriteFile(jp, data, 0o644); err != nil {
					t.Fatal(err)
				}
				dicomtest.Run(t, "img2dcm", jp, tc)
				if s.twelveBit {
					check12AgainstDCMTK(t, dir, tc, rows, cols, s.spp)
				} else {
					checkAgainstDCMTK(t, dir, tc, rows, cols, s.spp)
				}
			})
		}
	}
}
