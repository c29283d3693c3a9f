package render

// Comparisons with DCMTK's dcmj2pnm: Part 10 files built here (and the suyashkumar/dicom test
// files) go through dcmj2pnm with the options that match this package's defaults (+Wi 1, +Wm,
// +Ww c w, +Wl 1) and through dcm2json + AttributesFromJSON + Render; every pixel must agree
// within 2 grey levels.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// maxDiff is the largest per-pixel difference from dcmj2pnm that the tests accept.
const maxDiff = 2

// rng is a small deterministic generator (xorshift64*).
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s ^= r.s >> 12
	r.s ^= r.s << 25
	r.s ^= r.s >> 27
	return r.s * 2685821657736338717
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// monoValues makes rows*cols stored values in [lo, hi]: a diagonal ramp with noise, some
// uniformly random pixels and both extremes, so windows cut through every kind of value.
func monoValues(rows, cols, lo, hi int, seed uint64) []int {
	r := &rng{s: seed | 1}
	v := make([]int, rows*cols)
	span := hi - lo
	for y := range rows {
		for x := range cols {
			i := y*cols + x
			base := lo + span*(x+y)/(rows+cols-2)
			n := base + r.intn(span/20+1) - span/40
			switch {
			case i%17 == 0:
				n = lo + r.intn(span+1)
			case i%101 == 0:
				n = lo
			case i%103 == 0:
				n = hi
			}
			v[i] = min(max(n, lo), hi)
		}
	}
	return v
}

// pack stores values as ba-bit little endian words with bs bits stored at high bit hb; when
// garbage is set the bits outside the stored ones are random (they must be ignored).
func pack(vals []int, ba, bs, hb int, garbage bool, seed uint64) []byte {
	r := &rng{s: seed | 1}
	mask := uint32(uint64(1)<<bs - 1)
	shift := uint(hb + 1 - bs)
	out := make([]byte, 0, len(vals)*ba/8)
	for _, v := range vals {
		w := (uint32(int32(v)) & mask) << shift
		if garbage {
			w |= uint32(r.next()) &^ (mask << shift)
		}
		switch ba {
		case 8:
			out = append(out, byte(w))
		case 16:
			out = binary.LittleEndian.AppendUint16(out, uint16(w))
		case 32:
			out = binary.LittleEndian.AppendUint32(out, w)
		}
	}
	return out
}

func ds(tag uint32, vals ...float64) dicomtest.E {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = strconv.FormatFloat(v, 'f', -1, 64)
	}
	return dicomtest.Str(tag, "DS", s...)
}

func tg(g, e uint16) uint32 { return dicomtest.TagOf(g, e) }

// pixelModule describes the Image Pixel module of a generated file.
type pixelModule struct {
	rows, cols, spp, ba, bs, hb, pr, planar, frames int
	pi                                              string
}

func (p pixelModule) elems() []dicomtest.E {
	e := []dicomtest.E{
		dicomtest.US(tg(0x0028, 0x0002), uint16(max(p.spp, 1))),
		dicomtest.Str(tg(0x0028, 0x0004), "CS", p.pi),
		dicomtest.US(tg(0x0028, 0x0010), uint16(p.rows)),
		dicomtest.US(tg(0x0028, 0x0011), uint16(p.cols)),
		dicomtest.US(tg(0x0028, 0x0100), uint16(p.ba)),
		dicomtest.US(tg(0x0028, 0x0101), uint16(p.bs)),
		dicomtest.US(tg(0x0028, 0x0102), uint16(p.hb)),
		dicomtest.US(tg(0x0028, 0x0103), uint16(p.pr)),
	}
	if p.spp == 3 {
		e = append(e, dicomtest.US(tg(0x0028, 0x0006), uint16(p.planar)))
	}
	if p.frames > 1 {
		e = append(e, dicomtest.Str(tg(0x0028, 0x0008), "IS", strconv.Itoa(p.frames)))
	}
	return e
}

// part10 writes an explicit VR little endian file with the pixel module, extra elements and
// native pixel data.
func part10(p pixelModule, pixels []byte, extra ...dicomtest.E) []byte {
	u := dicomtest.UIDs{Study: "1.2.826.0.1.3680043.10.543.7.1", Series: "1.2.826.0.1.3680043.10.543.7.2",
		SOP: "1.2.826.0.1.3680043.10.543.7.3"}
	elems := dicomtest.BaseElems(u, dicomtest.SOPClassSC)
	elems = append(elems, dicomtest.Str(tg(0x0008, 0x0060), "CS", "OT"))
	elems = append(elems, p.elems()...)
	elems = append(elems, extra...)
	vr := "OW"
	if p.ba == 8 {
		vr = "OB"
	}
	elems = append(elems, dicomtest.RawE(tg(0x7FE0, 0x0010), vr, pixels))
	return dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes()
}

// readPNM parses a binary PGM (P5) or PPM (P6) with maxval 255.
func readPNM(b []byte) (w, h, ch int, pix []byte, err error) {
	var fields []int
	var magic string
	i := 0
	for len(fields) < 3 {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
			i++
		}
		if i < len(b) && b[i] == '#' {
			for i < len(b) && b[i] != '\n' {
				i++
			}
			continue
		}
		j := i
		for j < len(b) && b[j] != ' ' && b[j] != '\n' && b[j] != '\r' && b[j] != '\t' {
			j++
		}
		if j == i {
			return 0, 0, 0, nil, fmt.Errorf("truncated PNM header")
		}
		tok := string(b[i:j])
		i = j
		if magic == "" {
			magic = tok
			continue
		}
		n, err := strconv.Atoi(tok)
		if err != nil {
			return 0, 0, 0, nil, fmt.Errorf("PNM header: %v", err)
		}
		fields = append(fields, n)
	}
	i++ // the single whitespace after maxval
	switch magic {
	case "P5":
		ch = 1
	case "P6":
		ch = 3
	default:
		return 0, 0, 0, nil, fmt.Errorf("PNM magic %q", magic)
	}
	w, h = fields[0], fields[1]
	if fields[2] != 255 {
		return 0, 0, 0, nil, fmt.Errorf("PNM maxval %d", fields[2])
	}
	if len(b)-i < w*h*ch {
		return 0, 0, 0, nil, fmt.Errorf("PNM data: %d bytes, want %d", len(b)-i, w*h*ch)
	}
	return w, h, ch, b[i : i+w*h*ch], nil
}

// dcmj2pnm renders file with DCMTK and returns its 8-bit PGM/PPM.
func dcmj2pnm(t *testing.T, file string, args ...string) (w, h, ch int, pix []byte) {
	t.Helper()
	out := file + ".pnm"
	cmd := exec.Command("dcmj2pnm", append(append([]string{"+op"}, args...), file, out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dcmj2pnm %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	w, h, ch, pix, err = readPNM(b)
	if err != nil {
		t.Fatalf("dcmj2pnm output: %v", err)
	}
	return w, h, ch, pix
}

// dcm2json returns DCMTK's DICOM JSON of file.
func dcm2json(t *testing.T, file string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("dcm2json", file)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("dcm2json: %v\n%s", err, errb.Bytes())
	}
	return out.Bytes()
}

// diffStats compares img with DCMTK's w x h x ch pixels.
func diffStats(t *testing.T, img image.Image, w, h, ch int, want []byte) (maxd int, mean float64) {
	t.Helper()
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		t.Fatalf("size %dx%d, DCMTK %dx%d", b.Dx(), b.Dy(), w, h)
	}
	var got []byte
	switch m := img.(type) {
	case *image.Gray:
		if ch != 1 {
			t.Fatalf("gray image, DCMTK has %d channels", ch)
		}
		got = m.Pix
	case *image.RGBA:
		if ch != 3 {
			t.Fatalf("color image, DCMTK has %d channels", ch)
		}
		got = make([]byte, 0, w*h*3)
		for i := 0; i < len(m.Pix); i += 4 {
			if m.Pix[i+3] != 255 {
				t.Fatalf("pixel %d not opaque", i/4)
			}
			got = append(got, m.Pix[i:i+3]...)
		}
	default:
		t.Fatalf("image type %T", img)
	}
	var sum int
	worst := -1
	for i := range want {
		d := int(got[i]) - int(want[i])
		if d < 0 {
			d = -d
		}
		sum += d
		if d > maxd {
			maxd, worst = d, i
		}
	}
	if maxd > maxDiff {
		t.Errorf("sample %d (pixel %d,%d): %d, DCMTK %d", worst, (worst/ch)%w, (worst/ch)/w, got[worst], want[worst])
	}
	return maxd, float64(sum) / float64(len(want))
}

type dcmtkCase struct {
	name   string
	pm     pixelModule
	pixels []byte // all frames
	extra  []dicomtest.E
	args   []string // dcmj2pnm options
	frame  int      // 1-based; 0 means 1
	opts   Options
	check  func(t *testing.T, a *Attributes) // optional check of AttributesFromJSON's result
}

// compareWithDCMTK runs one case through both pipelines.
func compareWithDCMTK(t *testing.T, c dcmtkCase) (maxd int, mean float64) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "in.dcm")
	if err := os.WriteFile(file, part10(c.pm, c.pixels, c.extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	frame := max(c.frame, 1)
	args := c.args
	if c.frame > 1 {
		args = append(append([]string(nil), args...), "+F", strconv.Itoa(c.frame))
	}
	w, h, ch, want := dcmj2pnm(t, file, args...)
	a, err := AttributesFromJSON(dcm2json(t, file), nil)
	if err != nil {
		t.Fatalf("AttributesFromJSON: %v", err)
	}
	if c.check != nil {
		c.check(t, a)
	}
	frames := max(c.pm.frames, 1)
	size := len(c.pixels) / frames
	img, err := Render(c.pixels[(frame-1)*size:frame*size], a, c.opts)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return diffStats(t, img, w, h, ch, want)
}

// ybrFromRGB converts 8-bit RGB to YCbCr with the forward equations of PS3.3 C.7.6.3.1.2.
func ybrFromRGB(r, g, b int) (y, cb, cr int) {
	fr, fg, fb := float64(r), float64(g), float64(b)
	c := func(v float64) int { return min(max(int(math.Round(v)), 0), 255) }
	return c(.2990*fr + .5870*fg + .1140*fb), c(-.1687*fr - .3313*fg + .5*fb + 128), c(.5*fr - .4187*fg - .0813*fb + 128)
}

// rgbImage makes an 8-bit color test pattern (gradients, noise and pure colors).
func rgbImage(rows, cols int, seed uint64) [][3]int {
	r := &rng{s: seed | 1}
	px := make([][3]int, rows*cols)
	for y := range rows {
		for x := range cols {
			i := y*cols + x
			p := [3]int{255 * x / (cols - 1), 255 * y / (rows - 1), (x*y + r.intn(64)) % 256}
			switch {
			case i%13 == 0:
				p = [3]int{r.intn(256), r.intn(256), r.intn(256)}
			case i%29 == 0:
				p = [3]int{255 * (i / 29 % 2), 255 * (i / 58 % 2), 255 * (i / 116 % 2)}
			}
			px[i] = p
		}
	}
	return px
}

func interleave(px [][3]int, planar bool) []byte {
	n := len(px)
	out := make([]byte, 3*n)
	for i, p := range px {
		for c := range 3 {
			if planar {
				out[c*n+i] = byte(p[c])
			} else {
				out[3*i+c] = byte(p[c])
			}
		}
	}
	return out
}

func lutWords(n int, f func(i int) int) []uint16 {
	d := make([]uint16, n)
	for i := range d {
		d[i] = uint16(f(i))
	}
	return d
}

func ssE(tag uint32, v ...int) dicomtest.E {
	u := make([]uint16, len(v))
	for i, x := range v {
		u[i] = uint16(int16(x))
	}
	return dicomtest.E{Tag: tag, VR: "SS", U16: u}
}

func owE(tag uint32, d []uint16) dicomtest.E { return dicomtest.E{Tag: tag, VR: "OW", U16: d} }

func dcmtkCases() []dcmtkCase {
	var cs []dcmtkCase
	win := func(c, w []float64) []dicomtest.E {
		return []dicomtest.E{ds(tg(0x0028, 0x1050), c...), ds(tg(0x0028, 0x1051), w...)}
	}
	rescale := func(slope, intercept float64) []dicomtest.E {
		return []dicomtest.E{ds(tg(0x0028, 0x1052), intercept), ds(tg(0x0028, 0x1053), slope)}
	}
	cat := func(parts ...[]dicomtest.E) []dicomtest.E {
		var out []dicomtest.E
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	// CT: 16-bit signed, rescale -1024, two windows.
	ct := pixelModule{rows: 256, cols: 240, ba: 16, bs: 16, hb: 15, pr: 1, pi: "MONOCHROME2"}
	ctPix := pack(monoValues(256, 240, -2000, 3000, 1), 16, 16, 15, false, 0)
	ctExtra := cat(rescale(1, -1024), win([]float64{40, -600}, []float64{400, 1500}))
	cs = append(cs,
		dcmtkCase{name: "CT signed rescale window 1", pm: ct, pixels: ctPix, extra: ctExtra, args: []string{"+Wi", "1"},
			check: func(t *testing.T, a *Attributes) {
				if len(a.Windows) != 2 || a.Windows[1] != (Window{-600, 1500, "LINEAR"}) || a.RescaleIntercept != -1024 || a.RescaleSlope != 1 {
					t.Errorf("attributes %+v", a)
				}
			}},
		dcmtkCase{name: "CT second window as override", pm: ct, pixels: ctPix, extra: ctExtra, args: []string{"+Wi", "2"},
			opts: Options{Window: &Window{Center: -600, Width: 1500}}},
		dcmtkCase{name: "CT set window", pm: ct, pixels: ctPix, extra: ctExtra, args: []string{"+Ww", "300", "1500"},
			opts: Options{Window: &Window{Center: 300, Width: 1500, Function: "LINEAR"}}},
		dcmtkCase{name: "CT narrow window", pm: ct, pixels: ctPix, extra: ctExtra, args: []string{"+Ww", "35.5", "3"},
			opts: Options{Window: &Window{Center: 35.5, Width: 3}}},
	)

	// MR: 16 allocated, 12 stored, unsigned, garbage above the high bit, no window: min-max;
	// two frames, the second rendered.
	mrVals := append(monoValues(200, 180, 0, 4095, 2), monoValues(200, 180, 300, 2900, 3)...)
	mr := pixelModule{rows: 200, cols: 180, ba: 16, bs: 12, hb: 11, pr: 0, pi: "MONOCHROME2", frames: 2}
	cs = append(cs,
		dcmtkCase{name: "MR 12-bit min-max frame 1", pm: mr, pixels: pack(mrVals, 16, 12, 11, true, 4), args: []string{"+Wm"}},
		dcmtkCase{name: "MR 12-bit min-max frame 2", pm: mr, pixels: pack(mrVals, 16, 12, 11, true, 4), args: []string{"+Wm"}, frame: 2},
	)

	// CR MONOCHROME1, 15 bits stored, with a window; and the Presentation LUT Shape variants.
	cr := pixelModule{rows: 300, cols: 240, ba: 16, bs: 15, hb: 14, pr: 0, pi: "MONOCHROME1"}
	crPix := pack(monoValues(300, 240, 0, 32767, 5), 16, 15, 14, true, 6)
	cs = append(cs,
		dcmtkCase{name: "CR MONOCHROME1 window", pm: cr, pixels: crPix, extra: win([]float64{16000}, []float64{20000}), args: []string{"+Wi", "1"}},
		dcmtkCase{name: "CR MONOCHROME1 min-max", pm: cr, pixels: crPix, args: []string{"+Wm"}},
		dcmtkCase{name: "MONOCHROME1 shape IDENTITY", pm: cr, pixels: crPix,
			extra: cat(win([]float64{16000}, []float64{20000}), []dicomtest.E{dicomtest.Str(tg(0x2050, 0x0020), "CS", "IDENTITY")}), args: []string{"+Wi", "1"}},
		dcmtkCase{name: "MONOCHROME1 shape INVERSE", pm: cr, pixels: crPix,
			extra: cat(win([]float64{16000}, []float64{20000}), []dicomtest.E{dicomtest.Str(tg(0x2050, 0x0020), "CS", "INVERSE")}), args: []string{"+Wi", "1"}},
	)
	mono2inv := cr
	mono2inv.pi = "MONOCHROME2"
	cs = append(cs, dcmtkCase{name: "MONOCHROME2 shape INVERSE", pm: mono2inv, pixels: crPix,
		extra: cat(win([]float64{12000}, []float64{9000}), []dicomtest.E{dicomtest.Str(tg(0x2050, 0x0020), "CS", "INVERSE")}), args: []string{"+Wi", "1"}})

	// 8-bit MONOCHROME2.
	m8 := pixelModule{rows: 128, cols: 160, ba: 8, bs: 8, hb: 7, pr: 0, pi: "MONOCHROME2"}
	m8Pix := pack(monoValues(128, 160, 20, 230, 7), 8, 8, 7, false, 0)
	cs = append(cs,
		dcmtkCase{name: "8-bit min-max", pm: m8, pixels: m8Pix, args: []string{"+Wm"}},
		dcmtkCase{name: "8-bit window", pm: m8, pixels: m8Pix, extra: win([]float64{128}, []float64{100}), args: []string{"+Wi", "1"}},
	)
	m8s := pixelModule{rows: 128, cols: 160, ba: 8, bs: 7, hb: 6, pr: 1, pi: "MONOCHROME2"}
	cs = append(cs, dcmtkCase{name: "8-bit 7 stored signed min-max", pm: m8s,
		pixels: pack(monoValues(128, 160, -64, 63, 8), 8, 7, 6, true, 9), args: []string{"+Wm"}})

	// SIGMOID from the data set.
	sg := pixelModule{rows: 200, cols: 200, ba: 16, bs: 16, hb: 15, pr: 1, pi: "MONOCHROME2"}
	sgPix := pack(monoValues(200, 200, -1500, 2500, 10), 16, 16, 15, false, 0)
	cs = append(cs, dcmtkCase{name: "SIGMOID", pm: sg, pixels: sgPix,
		extra: cat(rescale(1, -1024), win([]float64{50}, []float64{350}), []dicomtest.E{dicomtest.Str(tg(0x0028, 0x1056), "CS", "SIGMOID")}),
		args:  []string{"+Wi", "1"},
		check: func(t *testing.T, a *Attributes) {
			if len(a.Windows) != 1 || a.Windows[0].Function != "SIGMOID" {
				t.Errorf("windows %+v", a.Windows)
			}
		}})
	cs = append(cs, dcmtkCase{name: "SIGMOID override", pm: sg, pixels: sgPix, extra: rescale(1, -1024),
		args: []string{"+Ww", "-200", "900", "+Wfs"}, opts: Options{Window: &Window{Center: -200, Width: 900, Function: "SIGMOID"}}})

	// Signed 12 of 16 bits, fractional rescale, min-max and a window.
	s12 := pixelModule{rows: 160, cols: 200, ba: 16, bs: 12, hb: 11, pr: 1, pi: "MONOCHROME2"}
	s12Pix := pack(monoValues(160, 200, -2048, 2047, 11), 16, 12, 11, true, 12)
	cs = append(cs,
		dcmtkCase{name: "signed 12-bit rescale 2/100 min-max", pm: s12, pixels: s12Pix, extra: rescale(2, 100), args: []string{"+Wm"}},
		dcmtkCase{name: "signed 12-bit rescale 2/100 window", pm: s12, pixels: s12Pix, extra: cat(rescale(2, 100), win([]float64{500}, []float64{3000})), args: []string{"+Wi", "1"}},
	)
	// High bit not at Bits Stored - 1: the stored bits are the top 12 of 16.
	hb := pixelModule{rows: 100, cols: 120, ba: 16, bs: 12, hb: 15, pr: 0, pi: "MONOCHROME2"}
	cs = append(cs, dcmtkCase{name: "12 bits stored at high bit 15", pm: hb,
		pixels: pack(monoValues(100, 120, 0, 4095, 13), 16, 12, 15, true, 14), args: []string{"+Wm"}})

	// Modality LUT Sequence (12-bit input, 16-bit output curve).
	mlut := lutWords(4096, func(i int) int { return int(65535 * math.Pow(float64(i)/4095, 0.6)) })
	mlutSeq := dicomtest.Seq(tg(0x0028, 0x3000), false, dicomtest.Item{Elems: []dicomtest.E{
		dicomtest.US(tg(0x0028, 0x3002), 4096, 0, 16),
		dicomtest.Str(tg(0x0028, 0x3004), "LO", "OD"),
		dicomtest.E{Tag: tg(0x0028, 0x3006), VR: "US", U16: mlut},
	}})
	m12 := pixelModule{rows: 128, cols: 128, ba: 16, bs: 12, hb: 11, pr: 0, pi: "MONOCHROME2"}
	m12Pix := pack(monoValues(128, 128, 0, 4095, 15), 16, 12, 11, false, 0)
	cs = append(cs,
		dcmtkCase{name: "Modality LUT min-max", pm: m12, pixels: m12Pix, extra: []dicomtest.E{mlutSeq}, args: []string{"+Wm"}},
		dcmtkCase{name: "Modality LUT window", pm: m12, pixels: m12Pix, extra: cat([]dicomtest.E{mlutSeq}, win([]float64{30000}, []float64{40000})), args: []string{"+Wi", "1"}},
	)

	// VOI LUT Sequence: on unsigned 12-bit data (entries of 8 and 16 bits) and on signed CT
	// values with a negative first mapped value.
	voiSeq := func(desc dicomtest.E, data dicomtest.E) dicomtest.E {
		return dicomtest.Seq(tg(0x0028, 0x3010), false, dicomtest.Item{Elems: []dicomtest.E{desc, data}})
	}
	cs = append(cs,
		dcmtkCase{name: "VOI LUT 16-bit entries", pm: m12, pixels: m12Pix, args: []string{"+Wl", "1"},
			extra: []dicomtest.E{voiSeq(dicomtest.US(tg(0x0028, 0x3002), 3000, 500, 16),
				owE(tg(0x0028, 0x3006), lutWords(3000, func(i int) int { return int(65535 * math.Sqrt(float64(i)/2999)) })))}},
		dcmtkCase{name: "VOI LUT 12-bit entries", pm: m12, pixels: m12Pix, args: []string{"+Wl", "1"},
			extra: []dicomtest.E{voiSeq(dicomtest.US(tg(0x0028, 0x3002), 4096, 0, 12),
				dicomtest.E{Tag: tg(0x0028, 0x3006), VR: "US", U16: lutWords(4096, func(i int) int { return 4095 - i })})}},
		dcmtkCase{name: "VOI LUT signed first mapped", pm: ct, pixels: ctPix, args: []string{"+Wl", "1"},
			extra: cat(rescale(1, -1024), []dicomtest.E{voiSeq(ssE(tg(0x0028, 0x3002), 2048, -1024, 8),
				owE(tg(0x0028, 0x3006), lutWords(2048, func(i int) int { return i * 255 / 2047 })))})},
	)

	// Color.
	px := rgbImage(96, 130, 16)
	rgb := pixelModule{rows: 96, cols: 130, spp: 3, ba: 8, bs: 8, hb: 7, pi: "RGB"}
	rgbP := rgb
	rgbP.planar = 1
	cs = append(cs,
		dcmtkCase{name: "RGB planar 0", pm: rgb, pixels: interleave(px, false)},
		dcmtkCase{name: "RGB planar 1", pm: rgbP, pixels: interleave(px, true)},
	)
	// 16-bit RGB, 12 stored.
	rgb16 := pixelModule{rows: 96, cols: 130, spp: 3, ba: 16, bs: 12, hb: 11, pi: "RGB"}
	var v12 []int
	for _, p := range px {
		for c := range 3 {
			v12 = append(v12, p[c]*4095/255)
		}
	}
	cs = append(cs, dcmtkCase{name: "RGB 16-bit 12 stored", pm: rgb16, pixels: pack(v12, 16, 12, 11, true, 17)})

	ybr := make([][3]int, len(px))
	for i, p := range px {
		y, cb, cr := ybrFromRGB(p[0], p[1], p[2])
		if i%31 == 0 { // out-of-gamut values, to exercise clamping
			y, cb, cr = i%256, (i*7)%256, (i*13)%256
		}
		ybr[i] = [3]int{y, cb, cr}
	}
	yb := rgb
	yb.pi = "YBR_FULL"
	ybP := yb
	ybP.planar = 1
	cs = append(cs,
		dcmtkCase{name: "YBR_FULL planar 0", pm: yb, pixels: interleave(ybr, false)},
		dcmtkCase{name: "YBR_FULL planar 1", pm: ybP, pixels: interleave(ybr, true)},
	)
	// YBR_FULL_422: Y1 Y2 Cb Cr, chroma averaged over each pair.
	var y422 []byte
	for i := 0; i < len(ybr); i += 2 {
		a, b := ybr[i], ybr[i+1]
		y422 = append(y422, byte(a[0]), byte(b[0]), byte((a[1]+b[1]+1)/2), byte((a[2]+b[2]+1)/2))
	}
	y4 := yb
	y4.pi = "YBR_FULL_422"
	cs = append(cs, dcmtkCase{name: "YBR_FULL_422", pm: y4, pixels: y422})

	// PALETTE COLOR: 8-bit indexes with 16-bit entries, 8-bit entries (one to a word), and
	// 16-bit indexes (12 stored) through a table that starts at 100.
	pal := pixelModule{rows: 100, cols: 140, spp: 1, ba: 8, bs: 8, hb: 7, pi: "PALETTE COLOR"}
	palPix := pack(monoValues(100, 140, 0, 255, 18), 8, 8, 7, false, 0)
	palette := func(desc func(tag uint32) dicomtest.E, n int, f [3]func(int) int) []dicomtest.E {
		var e []dicomtest.E
		for c := range 3 {
			e = append(e, desc(tg(0x0028, uint16(0x1101+c))), owE(tg(0x0028, uint16(0x1201+c)), lutWords(n, f[c])))
		}
		return e
	}
	jet := [3]func(int) int{
		func(i int) int { return min(65535, max(0, (i-64)*65535/96)) },
		func(i int) int { return int(65535 * math.Abs(math.Sin(float64(i)/40))) },
		func(i int) int { return (255 - i) * 257 },
	}
	cs = append(cs, dcmtkCase{name: "PALETTE 8-bit 16-bit entries", pm: pal, pixels: palPix,
		extra: palette(func(tag uint32) dicomtest.E { return dicomtest.US(tag, 256, 0, 16) }, 256, jet),
		check: func(t *testing.T, a *Attributes) {
			if a.RedPalette == nil || len(a.RedPalette.Data) != 256 || a.RedPalette.Bits != 16 || a.BluePalette.Data[0] != 255*257 {
				t.Errorf("red palette %+v", a.RedPalette)
			}
		}})
	cs = append(cs, dcmtkCase{name: "PALETTE 8-bit 8-bit entries", pm: pal, pixels: palPix,
		extra: palette(func(tag uint32) dicomtest.E { return dicomtest.US(tag, 256, 0, 8) }, 256, [3]func(int) int{
			func(i int) int { return i }, func(i int) int { return (i * 3) % 256 }, func(i int) int { return 255 - i }})})
	pal16 := pixelModule{rows: 100, cols: 140, spp: 1, ba: 16, bs: 12, hb: 11, pi: "PALETTE COLOR"}
	cs = append(cs, dcmtkCase{name: "PALETTE 12-bit first mapped 100", pm: pal16,
		pixels: pack(monoValues(100, 140, 0, 4095, 19), 16, 12, 11, false, 0),
		extra: palette(func(tag uint32) dicomtest.E { return dicomtest.US(tag, 3000, 100, 16) }, 3000, [3]func(int) int{
			func(i int) int { return i * 65535 / 2999 },
			func(i int) int { return int(65535 * math.Abs(math.Cos(float64(i)/300))) },
			func(i int) int { return (2999 - i) * 65535 / 2999 }})})
	return cs
}

func TestDCMTKCompare(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmj2pnm", "dcm2json")
	for _, c := range dcmtkCases() {
		t.Run(c.name, func(t *testing.T) {
			maxd, mean := compareWithDCMTK(t, c)
			t.Logf("%-40s max diff %d, mean diff %.4f", c.name, maxd, mean)
		})
	}
}

// TestDCMTKCompareSuyashkumar renders the uncompressed test files of github.com/suyashkumar/dicom
// (made explicit VR little endian by dcmconv, pixel data extracted by dcmdump +W).
func TestDCMTKCompareSuyashkumar(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmj2pnm", "dcm2json", "dcmconv", "dcmdump")
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/suyashkumar/dicom").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Skipf("github.com/suyashkumar/dicom not available: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(string(bytes.TrimSpace(out)), "testdata", "*.dcm"))
	if len(files) == 0 {
		t.Skip("no suyashkumar/dicom test files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir()
			le := filepath.Join(dir, "le.dcm")
			if b, err := exec.Command("dcmconv", "+te", f, le).CombinedOutput(); err != nil {
				t.Skipf("dcmconv +te (compressed?): %v %s", err, b)
			}
			rawDir := filepath.Join(dir, "raw")
			os.Mkdir(rawDir, 0o755)
			if b, err := exec.Command("dcmdump", "-q", "+W", rawDir, le).CombinedOutput(); err != nil {
				t.Fatalf("dcmdump +W: %v %s", err, b)
			}
			raws, _ := filepath.Glob(filepath.Join(rawDir, "*.raw"))
			if len(raws) == 0 {
				t.Skip("no pixel data")
			}
			// The top-level Pixel Data is the largest (icons come first and are smaller).
			sort.Slice(raws, func(i, j int) bool { return fileSize(raws[i]) > fileSize(raws[j]) })
			pixels, err := os.ReadFile(raws[0])
			if err != nil {
				t.Fatal(err)
			}
			js := dcm2json(t, le)
			a, err := AttributesFromJSON(js, nil)
			if err != nil {
				t.Fatal(err)
			}
			top, err := decodeObject(js)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"+Wm"}
			var opts Options
			switch {
			case len(a.PerFrame) > 0 || (len(a.Windows) > 0 && top[tagWindowCenter] == nil):
				// DCMTK 3.6 applies the functional groups' rescale but not their windows.
				w := a.ForFrame(1).Windows[0]
				args = []string{"+Ww", strconv.FormatFloat(w.Center, 'f', -1, 64), strconv.FormatFloat(w.Width, 'f', -1, 64)}
			case len(a.Windows) > 0:
				args = []string{"+Wi", "1"}
			}
			w, h, ch, want := dcmj2pnm(t, le, args...)
			frameSize := a.Rows * a.Columns * a.SamplesPerPixel * a.BitsAllocated / 8
			if len(pixels) < frameSize {
				t.Fatalf("pixel data %d bytes, frame %d", len(pixels), frameSize)
			}
			img, err := Render(pixels[:frameSize], a, opts)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			maxd, mean := diffStats(t, img, w, h, ch, want)
			t.Logf("%s %dx%d %s %d/%d bits, dcmj2pnm %s: max diff %d, mean diff %.4f", filepath.Base(f), a.Columns, a.Rows,
				a.Photometric, a.BitsStored, a.BitsAllocated, strings.Join(args, " "), maxd, mean)
		})
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
