package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"testing"
)

func le16s(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

func le32s(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, x)
	}
	return b
}

// mono makes attributes of a 1-row monochrome image of n pixels.
func mono(n, ba, bs, hb, pr int) *Attributes {
	return &Attributes{Rows: 1, Columns: n, SamplesPerPixel: 1, BitsAllocated: ba, BitsStored: bs, HighBit: hb,
		PixelRepresentation: pr, Photometric: "MONOCHROME2", RescaleSlope: 1, NumberOfFrames: 1}
}

func grayOf(t *testing.T) func(image.Image, error) []uint8 {
	return func(img image.Image, err error) []uint8 { t.Helper(); return grayPix(t, img, err) }
}

func rgbaOf(t *testing.T) func(image.Image, error) [][4]uint8 {
	return func(img image.Image, err error) [][4]uint8 { t.Helper(); return rgbaPix(t, img, err) }
}

func grayPix(t *testing.T, img image.Image, err error) []uint8 {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	g, ok := img.(*image.Gray)
	if !ok {
		t.Fatalf("got %T, want *image.Gray", img)
	}
	return g.Pix
}

func rgbaPix(t *testing.T, img image.Image, err error) [][4]uint8 {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := img.(*image.RGBA)
	if !ok {
		t.Fatalf("got %T, want *image.RGBA", img)
	}
	out := make([][4]uint8, len(m.Pix)/4)
	for i := range out {
		copy(out[i][:], m.Pix[4*i:])
	}
	return out
}

// A LINEAR_EXACT window of center 0, width 2^bs shows stored values one to one:
// out = round((v/2^bs + 0.5) * 255).
func TestStoredValueExtraction(t *testing.T) {
	exact := func(bs int) *Window {
		return &Window{Center: 0, Width: float64(int(1) << bs), Function: "LINEAR_EXACT"}
	}
	ref := func(v, bs int) uint8 {
		w := float64(int(1) << bs)
		if float64(v) <= -w/2 {
			return 0
		}
		return uint8(math.Floor((float64(v)/w+0.5)*255 + 0.5))
	}
	tests := []struct {
		name            string
		ba, bs, hb, pr  int
		frame           []byte
		values          []int // the stored values frame holds
		unsignedDisplay bool  // window center 2^(bs-1) instead of 0
	}{
		{"16/12/11 signed, garbage above", 16, 12, 11, 1, le16s(0x0FFF, 0x0800, 0x07FF, 0xF005), []int{-1, -2048, 2047, 5}, false},
		{"16/12/15 signed, bits at the top", 16, 12, 15, 1, le16s(0xFFF0, 0x8000, 0x7FF0, 0x005F), []int{-1, -2048, 2047, 5}, false},
		{"16/16/15 signed", 16, 16, 15, 1, le16s(0xFFFF, 0x8000, 0x7FFF, 0x0005), []int{-1, -32768, 32767, 5}, false},
		{"8/8/7 signed", 8, 8, 7, 1, []byte{0xFF, 0x80, 0x7F, 0x05}, []int{-1, -128, 127, 5}, false},
		{"8/6/6 signed, garbage", 8, 6, 6, 1, []byte{0x7E | 0x01, 0x40, 0x3E, 0x0A | 0x81}, []int{-1, -32, 31, 5}, false},
		{"32/32/31 signed", 32, 32, 31, 1, le32s(0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 5), []int{-1, math.MinInt32, math.MaxInt32, 5}, false},
		{"32/16/15 signed, garbage", 32, 16, 15, 1, le32s(0xABCDFFFF, 0x12348000, 0x00007FFF, 0xFFFF0005), []int{-1, -32768, 32767, 5}, false},
		{"16/12/11 unsigned, garbage", 16, 12, 11, 0, le16s(0xFFFF, 0x0800, 0x07FF, 0xF005), []int{4095, 2048, 2047, 5}, true},
		{"8/8/7 unsigned", 8, 8, 7, 0, []byte{0xFF, 0x80, 0x7F, 0x05}, []int{255, 128, 127, 5}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mono(len(tc.values), tc.ba, tc.bs, tc.hb, tc.pr)
			w := exact(tc.bs)
			if tc.unsignedDisplay {
				w.Center = float64(int(1) << (tc.bs - 1))
			}
			got := grayOf(t)(Render(tc.frame, a, Options{Window: w}))
			for i, v := range tc.values {
				want := ref(v-int(w.Center), tc.bs)
				if got[i] != want {
					t.Errorf("pixel %d (stored %d): %d, want %d", i, v, got[i], want)
				}
			}
		})
	}
}

func TestVOIFunctions(t *testing.T) {
	tests := []struct {
		name string
		w    Window
		in   []float64
		want []uint8
	}{
		// LINEAR c=40 w=400: 0 up to -160, 255 above 239, else ((x-39.5)/399+0.5)*255.
		{"LINEAR", Window{40, 400, "LINEAR"}, []float64{-1000, -160, -159, 40, 239, 239.5}, []uint8{0, 0, 1, 128, 255, 255}},
		{"LINEAR default", Window{40, 400, ""}, []float64{-159, 40}, []uint8{1, 128}},
		// Width 1: a threshold at c-0.5.
		{"LINEAR width 1", Window{10, 1, "LINEAR"}, []float64{9, 9.5, 9.6, 10}, []uint8{0, 0, 255, 255}},
		// LINEAR_EXACT c=40 w=400: 0 up to -160, 255 above 240, else ((x-40)/400+0.5)*255.
		{"LINEAR_EXACT", Window{40, 400, "LINEAR_EXACT"}, []float64{-160, -159, 40, 240, 240.1}, []uint8{0, 1, 128, 255, 255}},
		// SIGMOID c=40 w=400: 255/(1+exp(-4(x-40)/400)).
		{"SIGMOID", Window{40, 400, "sigmoid"}, []float64{-160, 40, 240, 10000}, []uint8{30, 128, 225, 255}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := voi{kind: voiWindow, win: tc.w}.fn(0, 0)
			for i, x := range tc.in {
				if got := toByte(f(x), false); got != tc.want[i] {
					t.Errorf("%v: %d, want %d (%.4f)", x, got, tc.want[i], f(x))
				}
				if got := toByte(f(x), true); got != 255-tc.want[i] {
					t.Errorf("%v inverted: %d, want %d", x, got, 255-tc.want[i])
				}
			}
		})
	}
	// VOI LUT: first mapped 10, 8-bit entries 0, 100, 255; 4-bit entries are stretched.
	l := &LUT{FirstMapped: 10, Bits: 8, Data: []uint16{0, 100, 255}}
	f := voi{kind: voiLUT, lut: l}.fn(0, 0)
	for x, want := range map[float64]uint8{-5: 0, 10: 0, 11: 100, 11.4: 100, 12: 255, 1e9: 255} {
		if got := toByte(f(x), false); got != want {
			t.Errorf("VOI LUT %v: %d, want %d", x, got, want)
		}
	}
	f = voi{kind: voiLUT, lut: &LUT{Bits: 4, Data: []uint16{0, 15, 5}}}.fn(0, 0)
	if got := []uint8{toByte(f(0), false), toByte(f(1), false), toByte(f(2), false)}; !bytes.Equal(got, []uint8{0, 255, 85}) {
		t.Errorf("4-bit VOI LUT: %v", got)
	}
	// Min-max: lo..hi onto 0..255.
	f = voi{kind: voiMinMax}.fn(100, 300)
	if got := []uint8{toByte(f(100), false), toByte(f(200), false), toByte(f(300), false)}; !bytes.Equal(got, []uint8{0, 128, 255}) {
		t.Errorf("min-max: %v", got)
	}
	if got := toByte(voi{kind: voiMinMax}.fn(7, 7)(7), false); got != 0 {
		t.Errorf("min-max of a flat image: %d", got)
	}
}

func TestModality(t *testing.T) {
	m := modalityOf(&Attributes{RescaleSlope: 2, RescaleIntercept: -10})
	if got := m.apply(5); got != 0 {
		t.Errorf("rescale: %v", got)
	}
	if got := modalityOf(&Attributes{}).apply(5); got != 5 {
		t.Errorf("slope 0 counts as 1: %v", got)
	}
	m = modalityOf(&Attributes{RescaleSlope: 3, ModalityLUT: &LUT{FirstMapped: -2, Bits: 16, Data: []uint16{10, 20, 30}}})
	for v, want := range map[float64]float64{-5: 10, -2: 10, -1: 20, 0: 30, 7: 30} {
		if got := m.apply(v); got != want {
			t.Errorf("modality LUT %v: %v, want %v", v, got, want)
		}
	}
}

func TestRenderPipeline(t *testing.T) {
	// CT: signed stored values, intercept -1024 → HU -1024, 0, 40, 240, 1000; window 40/400:
	// 0 up to -160, 255 above 239, else ((x-39.5)/399+0.5)*255.
	a := mono(5, 16, 16, 15, 1)
	a.RescaleIntercept = -1024
	a.Windows = []Window{{40, 400, "LINEAR"}, {300, 1500, "LINEAR"}}
	frame := le16s(0, 1024, 1064, 1264, 2024)
	if got := grayOf(t)(Render(frame, a, Options{})); !bytes.Equal(got, []uint8{0, 102, 128, 255, 255}) {
		t.Errorf("first window: %v", got)
	}
	// An override wins: 300/1500 → ((x-299.5)/1499+0.5)*255 between -450 and 1049.
	if got := grayOf(t)(Render(frame, a, Options{Window: &a.Windows[1]})); !bytes.Equal(got, []uint8{0, 77, 83, 117, 247}) {
		t.Errorf("override: %v", got)
	}
	// MONOCHROME1 inverts; INVERSE on MONOCHROME2 inverts; IDENTITY on MONOCHROME1 does not.
	for _, tc := range []struct {
		pi, shape string
		inv       bool
	}{{"MONOCHROME1", "", true}, {"MONOCHROME1", "INVERSE", true}, {"MONOCHROME1", "IDENTITY", false},
		{"MONOCHROME2", "", false}, {"MONOCHROME2", "inverse", true}, {"MONOCHROME2", "IDENTITY", false}} {
		b := *a
		b.Photometric, b.PresentationLUTShape = tc.pi, tc.shape
		got := grayOf(t)(Render(frame, &b, Options{}))
		want := []uint8{0, 102, 128, 255, 255}
		if tc.inv {
			for i := range want {
				want[i] = 255 - want[i]
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s %q: %v, want %v", tc.pi, tc.shape, got, want)
		}
	}
	// No window and no VOI LUT: min-max of the modality values present in the frame.
	b := *a
	b.Columns, b.Windows = 4, nil
	if got := grayOf(t)(Render(le16s(100, 200, 300, 200), &b, Options{})); !bytes.Equal(got, []uint8{0, 128, 255, 128}) {
		t.Errorf("min-max: %v", got)
	}
	// An invalid data set window is skipped (here for the VOI LUT).
	b.Windows = []Window{{40, 0, "LINEAR"}}
	b.VOILUT = &LUT{FirstMapped: -1024, Bits: 8, Data: []uint16{0, 10, 20}}
	if got := grayOf(t)(Render(le16s(0, 1, 2, 3), &b, Options{})); !bytes.Equal(got, []uint8{0, 10, 20, 20}) {
		t.Errorf("VOI LUT: %v", got)
	}
	// Modality LUT, then min-max over its output.
	c := mono(4, 8, 8, 7, 0)
	c.ModalityLUT = &LUT{FirstMapped: 1, Bits: 16, Data: []uint16{1000, 3000, 2000}}
	if got := grayOf(t)(Render([]byte{0, 1, 2, 3}, c, Options{})); !bytes.Equal(got, []uint8{0, 0, 255, 128}) {
		t.Errorf("modality LUT min-max: %v", got)
	}
	// 32 bits stored: pixel by pixel.
	d := mono(3, 32, 32, 31, 1)
	if got := grayOf(t)(Render(le32s(uint32(0xFFFE7960), 0, 100000), d, Options{})); !bytes.Equal(got, []uint8{0, 128, 255}) {
		t.Errorf("32-bit min-max: %v", got)
	}
	d.RescaleSlope, d.RescaleIntercept = 0.001, 0
	if got := grayOf(t)(Render(le32s(uint32(0xFFFE7960), 0, 100000), d, Options{Window: &Window{0, 101, "LINEAR"}})); !bytes.Equal(got, []uint8{0, 129, 255}) {
		t.Errorf("32-bit window: %v", got)
	}
}

func TestRenderPerFrame(t *testing.T) {
	a := mono(2, 16, 16, 15, 0)
	a.Windows = []Window{{100, 101, "LINEAR"}}
	a.PerFrame = []FrameValues{{}, {HasRescale: true, RescaleSlope: 1, RescaleIntercept: 50, Windows: []Window{{200, 101, "LINEAR"}}}}
	frame := le16s(50, 150)
	// Frame 1: window 100/101: ((x-99.5)/100+0.5)*255 between 49.5 and 149.5.
	if got := grayOf(t)(Render(frame, a, Options{Frame: 1})); !bytes.Equal(got, []uint8{1, 255}) {
		t.Errorf("frame 1: %v", got)
	}
	// Frame 2: values 100, 200 under window 200/101: ((x-199.5)/100+0.5)*255.
	if got := grayOf(t)(Render(frame, a, Options{Frame: 2})); !bytes.Equal(got, []uint8{0, 129}) {
		t.Errorf("frame 2: %v", got)
	}
	if a.ForFrame(1) != a || a.ForFrame(3) != a {
		t.Error("ForFrame copies without need")
	}
}

func TestRenderColor(t *testing.T) {
	color := func(pi string, planar, n int) *Attributes {
		return &Attributes{Rows: 1, Columns: n, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, HighBit: 7,
			Photometric: pi, PlanarConfiguration: planar}
	}
	tests := []struct {
		name  string
		a     *Attributes
		frame []byte
		want  [][4]uint8
	}{
		{"RGB planar 0", color("RGB", 0, 2), []byte{1, 3, 5, 2, 4, 6}, [][4]uint8{{1, 3, 5, 255}, {2, 4, 6, 255}}},
		{"RGB planar 1", color("RGB", 1, 2), []byte{1, 2, 3, 4, 5, 6}, [][4]uint8{{1, 3, 5, 255}, {2, 4, 6, 255}}},
		// Y=76 Cb=85 Cr=255: R = 76+1.402*127 = 254.05, G = 76+0.344136*43-0.714136*127 = 0.10,
		// B = 76-1.772*43 = -0.20.
		{"YBR_FULL", color("YBR_FULL", 0, 2), []byte{128, 128, 128, 76, 85, 255}, [][4]uint8{{128, 128, 128, 255}, {254, 0, 0, 255}}},
		{"YBR_FULL planar 1", color("YBR_FULL", 1, 2), []byte{128, 76, 128, 85, 128, 255}, [][4]uint8{{128, 128, 128, 255}, {254, 0, 0, 255}}},
		{"YBR_FULL_422", color("YBR_FULL_422", 0, 4), []byte{10, 200, 128, 128, 76, 76, 85, 255},
			[][4]uint8{{10, 10, 10, 255}, {200, 200, 200, 255}, {254, 0, 0, 255}, {254, 0, 0, 255}}},
		// Partial range: Y 16 is black, 235 white.
		{"YBR_PARTIAL_422", color("YBR_PARTIAL_422", 0, 2), []byte{16, 235, 128, 128}, [][4]uint8{{0, 0, 0, 255}, {255, 255, 255, 255}}},
		// A 4:2:2 frame that a decoder already upsampled.
		{"YBR_FULL_422 upsampled", color("YBR_FULL_422", 0, 2), []byte{128, 128, 128, 76, 85, 255}, [][4]uint8{{128, 128, 128, 255}, {254, 0, 0, 255}}},
		{"RGB 16/12", &Attributes{Rows: 1, Columns: 1, SamplesPerPixel: 3, BitsAllocated: 16, BitsStored: 12, HighBit: 11, Photometric: "RGB"},
			le16s(0xFFFF, 0x0800, 0x000F), [][4]uint8{{255, 128, 0, 255}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rgbaOf(t)(Render(tc.frame, tc.a, Options{}))
			if len(got) != len(tc.want) {
				t.Fatalf("%d pixels", len(got))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("pixel %d: %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestRenderPalette(t *testing.T) {
	a := &Attributes{Rows: 1, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, HighBit: 7, Photometric: "PALETTE COLOR",
		RedPalette:   &LUT{FirstMapped: 1, Bits: 16, Data: []uint16{0x0000, 0xFFFF}},
		GreenPalette: &LUT{FirstMapped: 1, Bits: 16, Data: []uint16{0x8000, 0x1234}},
		BluePalette:  &LUT{FirstMapped: 0, Bits: 8, Data: []uint16{7, 8, 9}},
	}
	got := rgbaOf(t)(Render([]byte{0, 1, 2}, a, Options{}))
	want := [][4]uint8{{0, 0x80, 7, 255}, {0, 0x80, 8, 255}, {0xFF, 0x12, 9, 255}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("pixel %d: %v, want %v", i, got[i], want[i])
		}
	}
	// 16-bit indexes, signed, first mapped -1.
	b := &Attributes{Rows: 1, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15, PixelRepresentation: 1,
		Photometric: "PALETTE COLOR"}
	b.RedPalette = &LUT{FirstMapped: -1, Bits: 16, Data: []uint16{0x0100, 0x0200, 0x0300}}
	b.GreenPalette, b.BluePalette = b.RedPalette, b.RedPalette
	got = rgbaOf(t)(Render(le16s(0xFFFF, 0, 0x7FFF), b, Options{}))
	for i, w := range []uint8{1, 2, 3} {
		if got[i] != [4]uint8{w, w, w, 255} {
			t.Errorf("signed pixel %d: %v", i, got[i])
		}
	}
}

func TestRenderErrors(t *testing.T) {
	ok := mono(2, 16, 16, 15, 0)
	tests := []struct {
		name  string
		a     *Attributes
		frame []byte
		o     Options
		want  error
	}{
		{"nil attributes", nil, nil, Options{}, ErrUnsupported},
		{"1-bit RGB", &Attributes{Rows: 1, Columns: 1, SamplesPerPixel: 3, BitsAllocated: 1, Photometric: "RGB"}, []byte{0}, Options{}, ErrUnsupported},
		{"1-bit short", mono(9, 1, 1, 0, 0), []byte{0}, Options{}, ErrShortFrame},
		{"12 allocated", mono(2, 12, 12, 11, 0), []byte{0, 0, 0}, Options{}, ErrUnsupported},
		{"no rows", &Attributes{Columns: 2, BitsAllocated: 8}, []byte{0, 0}, Options{}, ErrUnsupported},
		{"short frame", ok, []byte{0, 0, 0}, Options{}, ErrShortFrame},
		{"width 0.5 LINEAR", ok, le16s(1, 2), Options{Window: &Window{1, 0.5, "LINEAR"}}, ErrInvalidWindow},
		{"width 0 SIGMOID", ok, le16s(1, 2), Options{Window: &Window{1, 0, "SIGMOID"}}, ErrInvalidWindow},
		{"NaN center", ok, le16s(1, 2), Options{Window: &Window{math.NaN(), 10, ""}}, ErrInvalidWindow},
		{"photometric", &Attributes{Rows: 1, Columns: 1, SamplesPerPixel: 3, BitsAllocated: 8, Photometric: "HSV"}, []byte{0, 0, 0}, Options{}, ErrUnsupported},
		{"palette without LUTs", &Attributes{Rows: 1, Columns: 1, SamplesPerPixel: 1, BitsAllocated: 8, Photometric: "PALETTE COLOR"}, []byte{0}, Options{}, ErrUnsupported},
		{"MONOCHROME2 with 3 samples", &Attributes{Rows: 1, Columns: 1, SamplesPerPixel: 3, BitsAllocated: 8, Photometric: "MONOCHROME2"}, []byte{0, 0, 0}, Options{}, ErrUnsupported},
		{"RGB 32 bits stored", &Attributes{Rows: 1, Columns: 1, SamplesPerPixel: 3, BitsAllocated: 32, Photometric: "RGB"}, make([]byte, 12), Options{}, ErrUnsupported},
		{"RGB short", &Attributes{Rows: 2, Columns: 1, SamplesPerPixel: 3, BitsAllocated: 8, Photometric: "RGB"}, make([]byte, 5), Options{}, ErrShortFrame},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.frame, tc.a, tc.o)
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// A large frame takes the parallel path; it must equal the pixel-by-pixel reference.
func TestRenderParallelMatchesReference(t *testing.T) {
	const w, h = 700, 400
	vals := monoValues(h, w, -3000, 3000, 42)
	frame := pack(vals, 16, 13, 12, true, 43)
	a := mono(w, 16, 13, 12, 1)
	a.Rows = h
	a.RescaleSlope, a.RescaleIntercept = 0.75, 20
	for _, o := range []Options{{}, {Window: &Window{100, 1234, "SIGMOID"}}} {
		got := grayOf(t)(Render(frame, a, o))
		v, _ := chooseVOI(a, o)
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, s := range vals {
			x := float64(s)*0.75 + 20
			lo, hi = min(lo, x), max(hi, x)
		}
		f := v.fn(lo, hi)
		for i, s := range vals {
			if want := toByte(f(float64(s)*0.75+20), false); got[i] != want {
				t.Fatalf("%+v pixel %d: %d, want %d", o.Window, i, got[i], want)
			}
		}
	}
}

func TestResizeSize(t *testing.T) {
	tests := []struct{ sw, sh, w, h, dw, dh int }{
		{2140, 1760, 1024, 1024, 1024, 842},
		{1760, 2140, 1024, 1024, 842, 1024},
		{100, 50, 300, 300, 300, 150},
		{100, 50, 0, 25, 50, 25},
		{100, 50, 40, 0, 40, 20},
		{1000, 1, 10, 10, 10, 1},
		{512, 512, 128, 128, 128, 128},
	}
	for _, tc := range tests {
		img := image.NewGray(image.Rect(0, 0, tc.sw, tc.sh))
		got := Resize(img, tc.w, tc.h).Bounds()
		if got.Dx() != tc.dw || got.Dy() != tc.dh {
			t.Errorf("%dx%d into %dx%d: %dx%d, want %dx%d", tc.sw, tc.sh, tc.w, tc.h, got.Dx(), got.Dy(), tc.dw, tc.dh)
		}
	}
	img := image.NewGray(image.Rect(0, 0, 10, 10))
	if Resize(img, 10, 20) != image.Image(img) || Resize(img, 0, 0) != image.Image(img) {
		t.Error("unchanged size should return the image itself")
	}
}

func TestResizeValues(t *testing.T) {
	// A flat image stays flat; a ramp stays a monotonic ramp spanning nearly the same range.
	flat := image.NewGray(image.Rect(0, 0, 301, 157))
	for i := range flat.Pix {
		flat.Pix[i] = 77
	}
	for _, sz := range [][2]int{{64, 64}, {1000, 1000}, {150, 0}} {
		out := Resize(flat, sz[0], sz[1]).(*image.Gray)
		for i, v := range out.Pix {
			if v != 77 {
				t.Fatalf("flat %v: pixel %d = %d", sz, i, v)
			}
		}
	}
	ramp := image.NewGray(image.Rect(0, 0, 256, 8))
	for y := range 8 {
		for x := range 256 {
			ramp.Pix[y*256+x] = uint8(x)
		}
	}
	out := Resize(ramp, 64, 64).(*image.Gray)
	if out.Bounds().Dx() != 64 || out.Bounds().Dy() != 2 {
		t.Fatalf("ramp size %v", out.Bounds())
	}
	for x := 1; x < 64; x++ {
		if out.Pix[x] <= out.Pix[x-1] {
			t.Fatalf("ramp not increasing at %d: %v", x, out.Pix[:64])
		}
	}
	if out.Pix[0] > 3 || out.Pix[63] < 252 || out.Pix[64] != out.Pix[0] {
		t.Errorf("ramp ends %d..%d", out.Pix[0], out.Pix[63])
	}
	// A checkerboard shrunk by 4 averages to mid grey (no aliasing).
	cb := image.NewGray(image.Rect(0, 0, 400, 400))
	for y := range 400 {
		for x := range 400 {
			cb.Pix[y*400+x] = uint8(255 * ((x + y) % 2))
		}
	}
	for i, v := range Resize(cb, 100, 100).(*image.Gray).Pix {
		if v < 120 || v > 135 {
			t.Fatalf("checkerboard pixel %d = %d", i, v)
		}
	}
	// Color: RGBA in, RGBA out, channels kept apart; other image types become RGBA.
	rgba := image.NewRGBA(image.Rect(0, 0, 90, 60))
	for i := 0; i < len(rgba.Pix); i += 4 {
		copy(rgba.Pix[i:], []uint8{200, 100, 10, 255})
	}
	for _, src := range []image.Image{rgba, &image.NRGBA{Pix: rgba.Pix, Stride: rgba.Stride, Rect: rgba.Rect}} {
		r := Resize(src, 30, 30)
		if r.Bounds().Dx() != 30 || r.Bounds().Dy() != 20 {
			t.Errorf("%T: %v", src, r.Bounds())
		}
		if c := color.RGBAModel.Convert(r.At(7, 7)).(color.RGBA); c != (color.RGBA{200, 100, 10, 255}) {
			t.Errorf("%T: color %v", src, c)
		}
	}
	g16 := image.NewGray16(image.Rect(0, 0, 40, 40))
	if r, ok := Resize(g16, 20, 20).(*image.RGBA); !ok || r.Bounds().Dx() != 20 {
		t.Errorf("Gray16 resized to %T", r)
	}
	// A sub-image (non-zero origin) resizes its own pixels.
	sub := image.NewGray(image.Rect(0, 0, 20, 20))
	for y := range 20 {
		for x := range 20 {
			if x >= 10 {
				sub.Pix[y*20+x] = 200
			}
		}
	}
	half := sub.SubImage(image.Rect(10, 0, 20, 20)).(*image.Gray)
	for _, v := range Resize(half, 5, 5).(*image.Gray).Pix {
		if v != 200 {
			t.Fatalf("sub-image: %d", v)
		}
	}
}

func TestEncode(t *testing.T) {
	g := image.NewGray(image.Rect(0, 0, 33, 17))
	for i := range g.Pix {
		g.Pix[i] = uint8(i * 7)
	}
	c := image.NewRGBA(image.Rect(0, 0, 33, 17))
	for i := range c.Pix {
		c.Pix[i] = uint8(i * 13)
		if i%4 == 3 {
			c.Pix[i] = 255
		}
	}
	for _, img := range []image.Image{g, c} {
		var buf bytes.Buffer
		if err := Encode(&buf, img, "image/png", 0); err != nil {
			t.Fatal(err)
		}
		back, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for y := range 17 {
			for x := range 33 {
				if color.RGBAModel.Convert(back.At(x, y)) != color.RGBAModel.Convert(img.At(x, y)) {
					t.Fatalf("%T PNG pixel %d,%d", img, x, y)
				}
			}
		}
		for _, q := range []int{0, 1, 100, 500} {
			buf.Reset()
			if err := Encode(&buf, img, "image/jpeg; q=0.9", q); err != nil {
				t.Fatal(err)
			}
			if back, err := jpeg.Decode(&buf); err != nil || back.Bounds() != img.Bounds() {
				t.Fatalf("JPEG q %d: %v %v", q, err, back.Bounds())
			}
		}
		buf.Reset()
		if err := Encode(&buf, img, "image/gif", 0); err != nil {
			t.Fatal(err)
		}
		back, err = gif.Decode(&buf)
		if err != nil || back.Bounds() != img.Bounds() {
			t.Fatalf("GIF: %v", err)
		}
		if img == g {
			for i := range g.Pix {
				if y := color.GrayModel.Convert(back.At(i%33, i/33)).(color.Gray).Y; y != g.Pix[i] {
					t.Fatalf("gray GIF pixel %d: %d, want %d", i, y, g.Pix[i])
				}
			}
		}
	}
	if err := Encode(&bytes.Buffer{}, g, "image/jp2", 0); !errors.Is(err, ErrMediaType) {
		t.Errorf("image/jp2: %v", err)
	}
	// Default quality is 90: the same bytes as asking for 90.
	var q0, q90 bytes.Buffer
	Encode(&q0, c, "image/jpeg", 0)
	Encode(&q90, c, "image/jpeg", 90)
	if !bytes.Equal(q0.Bytes(), q90.Bytes()) {
		t.Error("quality 0 is not 90")
	}
}
