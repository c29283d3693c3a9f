// Package render turns a native (uncompressed) DICOM frame into a displayable 8-bit image the
// way DICOM's pixel pipelines do (PS3.4 N.2, PS3.3 C.11 and C.7.6.3): stored value extraction,
// Modality LUT or rescale, VOI window or VOI LUT, polarity and Presentation LUT Shape for
// grayscale; RGB, YBR and palette color for color. It also resizes and encodes the result.
//
// The output matches DCMTK's dcmj2pnm (with +Wi 1, +Wm or +Ww c w) to within one or two grey
// levels: dcmj2pnm truncates where this package rounds, and uses 127.5 rather than 128 as the
// chroma offset of YCbCr.
package render

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"math"
	"strings"
)

// ErrUnsupported is returned (wrapped with the reason) for images this package cannot render.
var ErrUnsupported = errors.New("cannot render this image")

// ErrInvalidWindow is returned when Options.Window cannot be applied (width below 1 for
// LINEAR, not above 0 for LINEAR_EXACT and SIGMOID, or not a finite number).
var ErrInvalidWindow = errors.New("invalid VOI window")

// ErrShortFrame is returned when a frame has fewer bytes than its attributes need.
var ErrShortFrame = errors.New("frame shorter than its image attributes need")

// Attributes are the data set attributes the pipeline uses.
type Attributes struct {
	Rows, Columns, SamplesPerPixel, BitsAllocated, BitsStored, HighBit int

	// PixelRepresentation is 0 for unsigned, 1 for signed (two's complement) stored values.
	PixelRepresentation int
	// Photometric is MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, YBR_PARTIAL_422
	// or PALETTE COLOR.
	Photometric         string
	PlanarConfiguration int
	NumberOfFrames      int
	// RescaleSlope and RescaleIntercept are 1 and 0 when absent (a slope of 0 counts as 1).
	RescaleSlope, RescaleIntercept float64
	// ModalityLUT is the first item of the Modality LUT Sequence (0028,3000).
	ModalityLUT *LUT
	// Windows are all values of (0028,1050) Window Center and (0028,1051) Window Width, with
	// (0028,1056) VOI LUT Function.
	Windows []Window
	// VOILUT is the first item of the VOI LUT Sequence (0028,3010).
	VOILUT *LUT
	// PresentationLUTShape is (2050,0020): IDENTITY, INVERSE or empty.
	PresentationLUTShape string
	// RedPalette, GreenPalette and BluePalette are the palette color lookup tables.
	RedPalette, GreenPalette, BluePalette *LUT

	// PerFrame holds, for frame i+1, what the Per-Frame Functional Groups Sequence (5200,9230)
	// of an enhanced multi-frame object sets (Pixel Value Transformation, Frame VOI LUT).
	// Render applies the entry of Options.Frame (frame 1 when Options.Frame is 0); see ForFrame.
	// What the Shared Functional Groups Sequence sets is already in the fields above.
	PerFrame []FrameValues
}

// FrameValues are the per-frame pipeline attributes of an enhanced multi-frame object.
type FrameValues struct {
	HasRescale                     bool
	RescaleSlope, RescaleIntercept float64
	Windows                        []Window // nil: none for this frame
}

// Window is a VOI window: (0028,1050) Window Center, (0028,1051) Window Width and
// (0028,1056) VOI LUT Function.
type Window struct {
	Center, Width float64
	Function      string // LINEAR (default), LINEAR_EXACT, SIGMOID
}

// LUT is a lookup table from its LUT Descriptor (number of entries, first mapped value, bits
// per entry) and its LUT Data. Input values below FirstMapped map to Data[0], values beyond the
// table to its last entry.
type LUT struct {
	FirstMapped int
	Bits        int
	Data        []uint16
}

// Options control rendering.
type Options struct {
	// Window overrides the data set's VOI (the DICOMweb window=center,width,function parameter).
	Window *Window
	// Frame (from 1) is the frame being rendered. Render does not select frame bytes (callers
	// pass the frame); it uses Frame to pick per-frame functional group values and, for 1-bit
	// data, to find the frame's first bit in the first byte passed: (Frame-1)*Rows*Columns
	// modulo 8, as frames lie in 1-bit Pixel Data and as dcm.Frames spans them.
	Frame int
}

// ForFrame returns the attributes that apply to frame n (from 1): those of a with what the
// per-frame functional groups set for that frame put over them. It returns a itself when
// nothing differs.
func (a *Attributes) ForFrame(n int) *Attributes {
	if n < 1 || n > len(a.PerFrame) {
		return a
	}
	fv := a.PerFrame[n-1]
	if !fv.HasRescale && fv.Windows == nil {
		return a
	}
	c := *a
	if fv.HasRescale {
		c.RescaleSlope, c.RescaleIntercept = fv.RescaleSlope, fv.RescaleIntercept
	}
	if fv.Windows != nil {
		c.Windows = fv.Windows
	}
	return &c
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// geom is the validated pixel layout of a frame.
type geom struct {
	rows, cols, n   int
	spp, ba, bs, hb int
	shift           uint
	mask            uint32
	signed          bool
	planar          int
}

func newGeom(a *Attributes) (*geom, error) {
	g := &geom{rows: a.Rows, cols: a.Columns, spp: a.SamplesPerPixel, ba: a.BitsAllocated,
		bs: a.BitsStored, hb: a.HighBit, signed: a.PixelRepresentation == 1, planar: a.PlanarConfiguration}
	if g.rows <= 0 || g.cols <= 0 {
		return nil, unsupported("no Rows or Columns")
	}
	if g.rows > 65535 || g.cols > 65535 {
		return nil, unsupported("%dx%d pixels", g.cols, g.rows)
	}
	if g.spp == 0 {
		g.spp = 1
	}
	switch g.ba {
	case 8, 16, 32:
	case 1:
		if g.spp != 1 {
			return nil, unsupported("1-bit pixel data with %d samples per pixel", g.spp)
		}
	default:
		return nil, unsupported("Bits Allocated %d", g.ba)
	}
	if g.bs <= 0 || g.bs > g.ba {
		g.bs = g.ba
	}
	if g.hb < g.bs-1 || g.hb >= g.ba {
		g.hb = g.bs - 1
	}
	g.shift = uint(g.hb + 1 - g.bs)
	g.mask = uint32(uint64(1)<<g.bs - 1)
	g.n = g.rows * g.cols
	return g, nil
}

// unpackBits returns n one-bit samples, one byte each, starting off bits into packed (least
// significant bit first within each byte, PS3.5 D.1).
func unpackBits(packed []byte, off, n int) ([]byte, error) {
	if err := checkLen(packed, (off+n+7)/8); err != nil {
		return nil, err
	}
	out := make([]byte, n)
	for i := range out {
		b := off + i
		out[i] = packed[b>>3] >> (b & 7) & 1
	}
	return out, nil
}

// value is the stored value of the masked, shifted sample bits raw.
func (g *geom) value(raw uint32) int64 {
	if g.signed && raw&(1<<(g.bs-1)) != 0 {
		return int64(raw) - int64(1)<<g.bs
	}
	return int64(raw)
}

func checkLen(frame []byte, want int) error {
	if len(frame) < want {
		return fmt.Errorf("%w: %d bytes, %d needed", ErrShortFrame, len(frame), want)
	}
	return nil
}

// Render turns one native frame (little endian, as stored for the frame, Planar Configuration as
// in a) into an 8-bit image: *image.Gray for monochrome, *image.RGBA (opaque) for color.
func Render(frame []byte, a *Attributes, o Options) (image.Image, error) {
	if a == nil {
		return nil, unsupported("no image attributes")
	}
	if len(a.PerFrame) > 0 {
		a = a.ForFrame(max(o.Frame, 1))
	}
	g, err := newGeom(a)
	if err != nil {
		return nil, err
	}
	if g.ba == 1 {
		// Frames of 1-bit data follow one another bit by bit (PS3.5 8.1.1, Annex D): frame n
		// starts (n-1)*rows*columns bits in, in the byte its first bit is in (dcm.Frames).
		off := int((int64(max(o.Frame, 1)-1) * int64(g.n)) % 8)
		if frame, err = unpackBits(frame, off, g.n); err != nil {
			return nil, err
		}
		g.ba = 8
	}
	pi := strings.ToUpper(strings.TrimSpace(a.Photometric))
	if pi == "" {
		if g.spp == 3 {
			pi = "RGB"
		} else {
			pi = "MONOCHROME2"
		}
	}
	switch pi {
	case "MONOCHROME1", "MONOCHROME2":
		if g.spp != 1 {
			return nil, unsupported("%s with %d samples per pixel", pi, g.spp)
		}
		return renderGray(frame, a, g, pi, o)
	case "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422":
		if g.spp != 3 {
			return nil, unsupported("%s with %d samples per pixel", pi, g.spp)
		}
		return renderColor(frame, g, pi)
	case "PALETTE COLOR":
		if g.spp != 1 {
			return nil, unsupported("%s with %d samples per pixel", pi, g.spp)
		}
		return renderPalette(frame, a, g)
	}
	return nil, unsupported("Photometric Interpretation %q", a.Photometric)
}

// ---- grayscale pipeline ----

// modality is the Modality LUT stage (PS3.3 C.11.1).
type modality struct {
	lut              *LUT
	slope, intercept float64
}

func modalityOf(a *Attributes) modality {
	if a.ModalityLUT != nil && len(a.ModalityLUT.Data) > 0 {
		return modality{lut: a.ModalityLUT}
	}
	s := a.RescaleSlope
	if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		s = 1
	}
	i := a.RescaleIntercept
	if math.IsNaN(i) || math.IsInf(i, 0) {
		i = 0
	}
	return modality{slope: s, intercept: i}
}

func (m modality) apply(v float64) float64 {
	if m.lut != nil {
		return float64(m.lut.Data[lutIndex(v, m.lut)])
	}
	return v*m.slope + m.intercept
}

// lutIndex is the entry of l that input x maps to (rounded to an integer, clamped to the table).
func lutIndex(x float64, l *LUT) int {
	i := math.Floor(x+0.5) - float64(l.FirstMapped)
	switch {
	case !(i > 0): // also NaN
		return 0
	case i >= float64(len(l.Data)-1):
		return len(l.Data) - 1
	}
	return int(i)
}

// lutBits is the bit depth of a LUT's entries: the descriptor's, or from the largest entry
// when the descriptor's is out of range (as DCMTK does).
func lutBits(l *LUT) int {
	if l.Bits >= 1 && l.Bits <= 16 {
		return l.Bits
	}
	var mx uint16
	for _, v := range l.Data {
		mx = max(mx, v)
	}
	b := 8
	for b < 16 && int(mx) >= 1<<b {
		b++
	}
	return b
}

type voiKind int

const (
	voiWindow voiKind = iota
	voiLUT
	voiMinMax
)

// voi is the chosen VOI LUT stage (PS3.3 C.11.2).
type voi struct {
	kind voiKind
	win  Window
	lut  *LUT
}

func windowFunction(f string) string {
	switch f = strings.ToUpper(strings.TrimSpace(f)); f {
	case "LINEAR_EXACT", "SIGMOID":
		return f
	}
	return "LINEAR"
}

func validWindow(w Window) bool {
	if math.IsNaN(w.Center) || math.IsInf(w.Center, 0) || math.IsNaN(w.Width) || math.IsInf(w.Width, 0) {
		return false
	}
	if windowFunction(w.Function) == "LINEAR" {
		return w.Width >= 1
	}
	return w.Width > 0
}

// chooseVOI picks, in order, Options.Window, the data set's first window, its first VOI LUT,
// and else a window over the range of values present in the frame.
func chooseVOI(a *Attributes, o Options) (voi, error) {
	if o.Window != nil {
		if !validWindow(*o.Window) {
			return voi{}, fmt.Errorf("%w: center %v width %v %s", ErrInvalidWindow, o.Window.Center, o.Window.Width, o.Window.Function)
		}
		return voi{kind: voiWindow, win: *o.Window}, nil
	}
	if len(a.Windows) > 0 && validWindow(a.Windows[0]) {
		return voi{kind: voiWindow, win: a.Windows[0]}, nil
	}
	if a.VOILUT != nil && len(a.VOILUT.Data) > 0 {
		return voi{kind: voiLUT, lut: a.VOILUT}, nil
	}
	return voi{kind: voiMinMax}, nil
}

// fn returns the VOI transformation to 0..255 (not yet rounded); lo and hi are the smallest
// and largest modality values in the frame (used by the min-max window).
func (v voi) fn(lo, hi float64) func(float64) float64 {
	switch v.kind {
	case voiLUT:
		l := v.lut
		bits := lutBits(l)
		mask := uint16(uint32(1)<<bits - 1)
		scale := 255 / float64(mask)
		return func(x float64) float64 { return float64(l.Data[lutIndex(x, l)]&mask) * scale }
	case voiMinMax:
		// DCMTK's min-max window is center (min+max+1)/2, width max-min+1 under LINEAR, which
		// maps min to 0 and max to 255 linearly; this is the same map, also for non-integers.
		if !(hi > lo) {
			return func(float64) float64 { return 0 }
		}
		d := hi - lo
		return func(x float64) float64 { return (x - lo) / d * 255 }
	}
	c, w := v.win.Center, v.win.Width
	switch windowFunction(v.win.Function) {
	case "LINEAR_EXACT": // PS3.3 C.11.2.1.3.2
		return func(x float64) float64 {
			switch {
			case x <= c-w/2:
				return 0
			case x > c+w/2:
				return 255
			}
			return ((x-c)/w + 0.5) * 255
		}
	case "SIGMOID": // PS3.3 C.11.2.1.3.1
		return func(x float64) float64 { return 255 / (1 + math.Exp(-4*(x-c)/w)) }
	}
	// LINEAR, PS3.3 C.11.2.1.2.1
	lower, upper := c-0.5-(w-1)/2, c-0.5+(w-1)/2
	return func(x float64) float64 {
		switch {
		case x <= lower:
			return 0
		case x > upper:
			return 255
		}
		return ((x-(c-0.5))/(w-1) + 0.5) * 255
	}
}

func toByte(y float64, invert bool) uint8 {
	r := math.Floor(y + 0.5)
	var b uint8
	switch {
	case !(r > 0): // also NaN
		b = 0
	case r >= 255:
		b = 255
	default:
		b = uint8(r)
	}
	if invert {
		return 255 - b
	}
	return b
}

// inverted tells whether the grayscale output is inverted: a Presentation LUT Shape of INVERSE,
// or MONOCHROME1 without a Presentation LUT Shape (with IDENTITY, a MONOCHROME1 image is shown
// as its P-values: PS3.3 C.8.11.1.1.1 pairs INVERSE with MONOCHROME1; DCMTK does the same).
func inverted(a *Attributes, pi string) bool {
	switch strings.ToUpper(strings.TrimSpace(a.PresentationLUTShape)) {
	case "INVERSE":
		return true
	case "IDENTITY":
		return false
	}
	return pi == "MONOCHROME1"
}

func renderGray(frame []byte, a *Attributes, g *geom, pi string, o Options) (image.Image, error) {
	if err := checkLen(frame, g.n*g.ba/8); err != nil {
		return nil, err
	}
	mod := modalityOf(a)
	v, err := chooseVOI(a, o)
	if err != nil {
		return nil, err
	}
	invert := inverted(a, pi)
	img := image.NewGray(image.Rect(0, 0, g.cols, g.rows))
	if g.bs > 16 {
		renderGrayWide(frame, g, mod, v, invert, img.Pix)
		return img, nil
	}
	// One output grey per possible stored bit pattern: the per-pixel work is a table lookup.
	small := make([]uint8, 1<<g.bs)
	var lo, hi float64
	switch {
	case v.kind == voiMinMax && g.bs == 1:
		// A 1-bit image (a segmentation, a bitmap) is a mask: 0 black and 1 white, even in a
		// frame holding only one of them.
		x0, x1 := mod.apply(float64(g.value(0))), mod.apply(float64(g.value(1)))
		lo, hi = min(x0, x1), max(x0, x1)
	case v.kind == voiMinMax:
		lo, hi = math.Inf(1), math.Inf(-1)
		for raw, ok := range presence(frame, g) {
			if ok {
				x := mod.apply(float64(g.value(uint32(raw))))
				lo, hi = min(lo, x), max(hi, x)
			}
		}
	}
	f := v.fn(lo, hi)
	for raw := range small {
		small[raw] = toByte(f(mod.apply(float64(g.value(uint32(raw))))), invert)
	}
	dst := img.Pix
	switch g.ba {
	case 8:
		var lut [256]uint8
		for b := range lut {
			lut[b] = small[(uint32(b)>>g.shift)&g.mask]
		}
		split(g.n, parts(g.n), 1, func(_, i0, i1 int) {
			d := dst[i0:i1]
			s := frame[i0:i1]
			for j, b := range s {
				d[j] = lut[b]
			}
		})
	case 16:
		lut := new([65536]uint8)
		for w := range lut {
			lut[w] = small[(uint32(w)>>g.shift)&g.mask]
		}
		split(g.n, parts(g.n), 1, func(_, i0, i1 int) {
			d := dst[i0:i1]
			s := frame[2*i0 : 2*i1]
			for j := range d {
				d[j] = lut[uint16(s[2*j])|uint16(s[2*j+1])<<8]
			}
		})
	case 32:
		split(g.n, parts(g.n), 1, func(_, i0, i1 int) {
			for i := i0; i < i1; i++ {
				dst[i] = small[(binary.LittleEndian.Uint32(frame[4*i:])>>g.shift)&g.mask]
			}
		})
	}
	return img, nil
}

// presence reports which stored bit patterns (index: masked, shifted sample) occur in frame.
func presence(frame []byte, g *geom) []bool {
	np := parts(g.n)
	width := 1 << g.ba
	if g.ba == 32 {
		width = 1 << g.bs
	}
	local := make([][]bool, np)
	split(g.n, np, 1, func(k, i0, i1 int) {
		seen := make([]bool, width)
		switch g.ba {
		case 8:
			for _, b := range frame[i0:i1] {
				seen[b] = true
			}
		case 16:
			s := frame[2*i0 : 2*i1]
			for j := 0; j+1 < len(s); j += 2 {
				seen[uint16(s[j])|uint16(s[j+1])<<8] = true
			}
		case 32:
			for i := i0; i < i1; i++ {
				seen[(binary.LittleEndian.Uint32(frame[4*i:])>>g.shift)&g.mask] = true
			}
		}
		local[k] = seen
	})
	out := make([]bool, 1<<g.bs)
	for _, seen := range local {
		for w, ok := range seen {
			if ok {
				if g.ba == 32 {
					out[w] = true
				} else {
					out[(uint32(w)>>g.shift)&g.mask] = true
				}
			}
		}
	}
	return out
}

// renderGrayWide handles more than 16 stored bits, pixel by pixel.
func renderGrayWide(frame []byte, g *geom, mod modality, v voi, invert bool, dst []uint8) {
	val := func(i int) float64 {
		return mod.apply(float64(g.value((binary.LittleEndian.Uint32(frame[4*i:]) >> g.shift) & g.mask)))
	}
	var lo, hi float64
	if v.kind == voiMinMax {
		np := parts(g.n)
		los, his := make([]float64, np), make([]float64, np)
		for k := range los {
			los[k], his[k] = math.Inf(1), math.Inf(-1)
		}
		split(g.n, np, 1, func(k, i0, i1 int) {
			l, h := math.Inf(1), math.Inf(-1)
			for i := i0; i < i1; i++ {
				x := val(i)
				l, h = min(l, x), max(h, x)
			}
			los[k], his[k] = l, h
		})
		lo, hi = math.Inf(1), math.Inf(-1)
		for k := range los {
			lo, hi = min(lo, los[k]), max(hi, his[k])
		}
	}
	f := v.fn(lo, hi)
	split(g.n, parts(g.n), 1, func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			dst[i] = toByte(f(val(i)), invert)
		}
	})
}

// ---- color ----

// to8 maps a stored sample (masked and shifted, 0..2^bs-1) to 8 bits as DCMTK does: a right
// shift for more than 8 bits, a linear stretch for fewer.
func to8Table(bs int) []uint8 {
	t := make([]uint8, 1<<bs)
	for v := range t {
		switch {
		case bs > 8:
			t[v] = uint8(v >> (bs - 8))
		case bs == 8:
			t[v] = uint8(v)
		default:
			t[v] = uint8((v*255 + (1<<bs-1)/2) / (1<<bs - 1))
		}
	}
	return t
}

// rawSamples returns the first count samples of frame as masked, shifted stored values: the
// frame itself when that is already so (8 bits stored in 8 allocated), else a copy.
func rawSamples(frame []byte, g *geom, count int) (any, error) {
	if err := checkLen(frame, count*g.ba/8); err != nil {
		return nil, err
	}
	if g.bs > 16 {
		return nil, unsupported("color with %d bits stored", g.bs)
	}
	if g.ba == 8 && g.bs == 8 {
		return frame[:count], nil
	}
	if g.ba == 8 {
		out := make([]uint8, count)
		for i, b := range frame[:count] {
			out[i] = uint8((uint32(b) >> g.shift) & g.mask)
		}
		return out, nil
	}
	out := make([]uint16, count)
	split(count, parts(count), 1, func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			var w uint32
			if g.ba == 16 {
				w = uint32(binary.LittleEndian.Uint16(frame[2*i:]))
			} else {
				w = binary.LittleEndian.Uint32(frame[4*i:])
			}
			out[i] = uint16((w >> g.shift) & g.mask)
		}
	})
	return out, nil
}

func renderColor(frame []byte, g *geom, pi string) (image.Image, error) {
	img := image.NewRGBA(image.Rect(0, 0, g.cols, g.rows))
	count := 3 * g.n
	pairs := pi == "YBR_FULL_422" || pi == "YBR_PARTIAL_422"
	if pairs {
		count = 4 * ((g.n + 1) / 2) // Y1 Y2 Cb Cr for each two pixels (PS3.3 C.7.6.3.1.2)
		// A decoder may already have upsampled the chroma: three full samples per pixel.
		if len(frame)*8 >= 3*g.n*g.ba {
			pairs, count = false, 3*g.n
			if pi == "YBR_FULL_422" {
				pi = "YBR_FULL"
			} else {
				pi = "YBR_PARTIAL"
			}
		}
	}
	layout := layoutInterleaved
	switch {
	case pairs:
		layout = layoutPairs
	case g.planar == 1:
		layout = layoutPlanar
	}
	raw, err := rawSamples(frame, g, count)
	if err != nil {
		return nil, err
	}
	to8 := to8Table(g.bs)
	var t *ybrTables
	if pi != "RGB" {
		t = newYBRTables(g.bs, strings.HasPrefix(pi, "YBR_PARTIAL"))
	}
	switch s := raw.(type) {
	case []uint8:
		colorPix(s, g.n, layout, to8, t, img.Pix)
	case []uint16:
		colorPix(s, g.n, layout, to8, t, img.Pix)
	}
	return img, nil
}

const (
	layoutInterleaved = iota // R1 G1 B1 R2 G2 B2 ...
	layoutPlanar             // R1 R2 ... G1 G2 ... B1 B2 ...
	layoutPairs              // Y1 Y2 Cb Cr ... (4:2:2)
)

// ybrTables convert YCbCr to RGB in 12-bit fixed point (PS3.3 C.7.6.3.1.2 inverted).
type ybrTables struct {
	y, crR, cbG, crG, cbB []int32
	maxv                  int32
}

func newYBRTables(bs int, partial bool) *ybrTables {
	n := 1 << bs
	t := &ybrTables{y: make([]int32, n), crR: make([]int32, n), cbG: make([]int32, n),
		crG: make([]int32, n), cbB: make([]int32, n), maxv: int32(n - 1)}
	unit := float64(n) / 256 // 1 in 8-bit terms
	center := float64(n / 2)
	fx := func(v float64) int32 { return int32(math.Round(v * 4096)) }
	// Full range: R = Y + 1.402 Cr', G = Y - 0.344136 Cb' - 0.714136 Cr', B = Y + 1.772 Cb'.
	ky, kr, kgb, kgr, kb := 1.0, 1.402, 0.344136, 0.714136, 1.772
	yoff := 0.0
	if partial { // Y in 16..235, Cb/Cr in 16..240
		ky, kr, kgb, kgr, kb = 255.0/219, 1.402*255/224, 0.344136*255/224, 0.714136*255/224, 1.772*255/224
		yoff = 16 * unit
	}
	for v := range n {
		c := float64(v) - center
		t.y[v] = fx(ky * (float64(v) - yoff))
		t.crR[v] = fx(kr * c)
		t.cbG[v] = fx(-kgb * c)
		t.crG[v] = fx(-kgr * c)
		t.cbB[v] = fx(kb * c)
	}
	return t
}

func (t *ybrTables) clamp(v int32) int32 {
	v = (v + 2048) >> 12
	if v < 0 {
		return 0
	}
	if v > t.maxv {
		return t.maxv
	}
	return v
}

// colorPix writes RGB or YCbCr samples (stored values) as opaque RGBA pixels to dst; t is nil for RGB.
func colorPix[S uint8 | uint16](src []S, n, layout int, to8 []uint8, t *ybrTables, dst []uint8) {
	align := 1
	if layout == layoutPairs {
		align = 2
	}
	split(n, parts(n), align, func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			var a, b, c S
			switch layout {
			case layoutInterleaved:
				a, b, c = src[3*i], src[3*i+1], src[3*i+2]
			case layoutPlanar:
				a, b, c = src[i], src[n+i], src[2*n+i]
			default:
				g := 4 * (i / 2)
				a, b, c = src[g+i%2], src[g+2], src[g+3]
			}
			d := dst[4*i : 4*i+4 : 4*i+4]
			if t == nil {
				d[0], d[1], d[2] = to8[a], to8[b], to8[c]
			} else {
				y := t.y[a]
				d[0] = to8[t.clamp(y+t.crR[c])]
				d[1] = to8[t.clamp(y+t.cbG[b]+t.crG[c])]
				d[2] = to8[t.clamp(y+t.cbB[b])]
			}
			d[3] = 255
		}
	})
}

// ---- palette color ----

func paletteTable(l *LUT, g *geom, ch int, table []uint32) {
	bits := lutBits(l)
	mask := uint16(uint32(1)<<bits - 1)
	for raw := range table {
		e := l.Data[lutIndex(float64(g.value(uint32(raw))), l)] & mask
		var v uint32
		switch {
		case bits > 8:
			v = uint32(e >> (bits - 8))
		case bits == 8:
			v = uint32(e)
		default:
			v = (uint32(e)*255 + uint32(mask)/2) / uint32(mask)
		}
		table[raw] |= v << (8 * ch)
	}
}

func renderPalette(frame []byte, a *Attributes, g *geom) (image.Image, error) {
	luts := []*LUT{a.RedPalette, a.GreenPalette, a.BluePalette}
	for _, l := range luts {
		if l == nil || len(l.Data) == 0 {
			return nil, unsupported("PALETTE COLOR without palette color lookup table data (segmented palettes are not supported)")
		}
	}
	raw, err := rawSamples(frame, g, g.n)
	if err != nil {
		return nil, err
	}
	// One RGBA value (little endian R, G, B, A) per possible stored value.
	table := make([]uint32, 1<<g.bs)
	for i := range table {
		table[i] = 0xFF << 24
	}
	for ch, l := range luts {
		paletteTable(l, g, ch, table)
	}
	img := image.NewRGBA(image.Rect(0, 0, g.cols, g.rows))
	switch s := raw.(type) {
	case []uint8:
		palettePix(s, table, img.Pix)
	case []uint16:
		palettePix(s, table, img.Pix)
	}
	return img, nil
}

func palettePix[S uint8 | uint16](src []S, table []uint32, dst []uint8) {
	split(len(src), parts(len(src)), 1, func(_, i0, i1 int) {
		for i := i0; i < i1; i++ {
			binary.LittleEndian.PutUint32(dst[4*i:], table[src[i]])
		}
	})
}
