package jpegbase

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s ^= r.s >> 12
	r.s ^= r.s << 25
	r.s ^= r.s >> 27
	return r.s * 2685821657736338717
}

// pattern makes rows*cols*spp interleaved 8-bit samples: gradients, hard-edged bars and
// blocks, and noise.
func pattern(rows, cols, spp int, seed uint64) []byte {
	r := &rng{s: seed | 1}
	px := make([]byte, rows*cols*spp)
	for y := 0; y < rows; y++ {
		for x := 0; x < cols; x++ {
			var c [3]int
			switch {
			case y < rows/3:
				c = [3]int{255 * x / cols, 255 * y / rows, 255 - 255*x/cols}
			case y < 2*rows/3:
				bars := [][3]int{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0}, {0, 255, 255}, {255, 0, 255}, {255, 255, 255}, {0, 0, 0}}
				c = bars[(x*len(bars)/cols+(x/3+y/5)%2)%len(bars)]
			default:
				c = [3]int{int(r.next() % 256), int(r.next() % 256), int(r.next() % 256)}
				if (x/7+y/5)%2 == 0 {
					c[1] = c[0]
				}
			}
			for s := 0; s < spp; s++ {
				px[(y*cols+x)*spp+s] = byte(c[s])
			}
		}
	}
	return px
}

type elem struct {
	group, elem uint16
	vr          string
	val         []byte
}

func us(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
func str(s string) []byte {
	b := []byte(s)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func appendElem(b []byte, e elem) []byte {
	v := e.val
	if len(v)%2 == 1 {
		v = append(v[:len(v):len(v)], 0)
	}
	b = binary.LittleEndian.AppendUint16(b, e.group)
	b = binary.LittleEndian.AppendUint16(b, e.elem)
	b = append(b, e.vr...)
	switch e.vr {
	case "OB", "OW", "SQ", "UN", "UT":
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	default:
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	}
	return append(b, v...)
}

// part10 builds a minimal explicit VR little endian file holding 8-bit pixels.
func part10(rows, cols, spp int, px []byte) []byte {
	const sop = "1.2.840.10008.5.1.4.1.1.7"
	const inst = "1.2.826.0.1.3680043.2.1143.1.1"
	var meta []byte
	meta = appendElem(meta, elem{2, 1, "OB", []byte{0, 1}})
	meta = appendElem(meta, elem{2, 2, "UI", str(sop)})
	meta = appendElem(meta, elem{2, 3, "UI", str(inst)})
	meta = appendElem(meta, elem{2, 0x10, "UI", str("1.2.840.10008.1.2.1")})
	b := make([]byte, 128)
	b = append(b, "DICM"...)
	b = appendElem(b, elem{2, 0, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta)))})
	b = append(b, meta...)
	photo := "MONOCHROME2"
	if spp == 3 {
		photo = "RGB"
	}
	b = appendElem(b, elem{8, 0x16, "UI", str(sop)})
	b = appendElem(b, elem{8, 0x18, "UI", str(inst)})
	b = appendElem(b, elem{0x20, 0x0D, "UI", str("1.2.826.0.1.3680043.2.1143.1.2")})
	b = appendElem(b, elem{0x20, 0x0E, "UI", str("1.2.826.0.1.3680043.2.1143.1.3")})
	b = appendElem(b, elem{0x28, 2, "US", us(spp)})
	b = appendElem(b, elem{0x28, 4, "CS", str(photo)})
	if spp == 3 {
		b = appendElem(b, elem{0x28, 6, "US", us(0)})
	}
	b = appendElem(b, elem{0x28, 0x10, "US", us(rows)})
	b = appendElem(b, elem{0x28, 0x11, "US", us(cols)})
	b = appendElem(b, elem{0x28, 0x100, "US", us(8)})
	b = appendElem(b, elem{0x28, 0x101, "US", us(8)})
	b = appendElem(b, elem{0x28, 0x102, "US", us(7)})
	b = appendElem(b, elem{0x28, 0x103, "US", us(0)})
	return appendElem(b, elem{0x7FE0, 0x10, "OB", px})
}

var pixelTag = []byte{0xE0, 0x7F, 0x10, 0x00}

// encapsulatedFrame returns the fragments after the Basic Offset Table, concatenated.
func encapsulatedFrame(t testing.TB, f []byte) []byte {
	t.Helper()
	i := bytes.LastIndex(f, append(append([]byte{}, pixelTag...), 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF))
	if i < 0 {
		t.Fatal("no encapsulated pixel data")
	}
	p := i + 12
	var out []byte
	for item := 0; p+8 <= len(f); item++ {
		g, e := binary.LittleEndian.Uint16(f[p:]), binary.LittleEndian.Uint16(f[p+2:])
		n := int(binary.LittleEndian.Uint32(f[p+4:]))
		p += 8
		if g != 0xFFFE || e != 0xE000 {
			break
		}
		if item > 0 {
			out = append(out, f[p:p+n]...)
		}
		p += n
	}
	return out
}

// nativePixels returns the native (OB or OW) Pixel Data value.
func nativePixels(t *testing.T, f []byte) []byte {
	t.Helper()
	for _, vr := range []string{"OB", "OW"} {
		i := bytes.LastIndex(f, append(append([]byte{}, pixelTag...), vr...))
		if i >= 0 {
			n := int(binary.LittleEndian.Uint32(f[i+8:]))
			return f[i+12 : i+12+n]
		}
	}
	t.Fatal("no native pixel data")
	return nil
}

// pnm parses a binary PGM/PPM.
func pnm(t *testing.T, b []byte) (w, h int, px []byte) {
	t.Helper()
	var fields []string
	p := 2
	for len(fields) < 3 {
		for p < len(b) && (b[p] == ' ' || b[p] == '\n' || b[p] == '\r' || b[p] == '\t') {
			p++
		}
		if b[p] == '#' {
			for b[p] != '\n' {
				p++
			}
			continue
		}
		s := p
		for b[p] > ' ' {
			p++
		}
		fields = append(fields, string(b[s:p]))
	}
	w, _ = strconv.Atoi(fields[0])
	h, _ = strconv.Atoi(fields[1])
	return w, h, b[p+1:]
}

// samples flattens img to interleaved samples (RGB or grey).
func samples(img image.Image) []byte {
	switch m := img.(type) {
	case *image.Gray:
		return m.Pix
	case *image.RGBA:
		out := make([]byte, 0, len(m.Pix)/4*3)
		for i := 0; i < len(m.Pix); i += 4 {
			out = append(out, m.Pix[i:i+3]...)
		}
		return out
	}
	panic("unexpected image type")
}

func maxDiff(a, b []byte) (int, int) {
	if len(a) != len(b) {
		return 256, -1
	}
	md, at := 0, -1
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		if d > md {
			md, at = d, i
		}
	}
	return md, at
}

// checkAgainstDCMTK decodes the JPEG stream inside comp (a compressed Part 10 file) and
// requires an exact match with dcmdjpeg's and dcmj2pnm's output.
func checkAgainstDCMTK(t *testing.T, dir, comp string, rows, cols, spp int) {
	t.Helper()
	f, err := os.ReadFile(comp)
	if err != nil {
		t.Fatal(err)
	}
	stream := encapsulatedFrame(t, f)
	img, err := Decode(stream)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != cols || b.Dy() != rows {
		t.Fatalf("size %v, want %dx%d", b, cols, rows)
	}
	got := samples(img)
	if w, h, n, err := Config(stream); err != nil || w != cols || h != rows || n != spp {
		t.Errorf("Config = %d %d %d %v", w, h, n, err)
	}
	sof := bytes.Index(stream, []byte{0xFF, 0xC0})
	if sof < 0 {
		sof = bytes.Index(stream, []byte{0xFF, 0xC1})
	}
	var sampling []string
	if sof >= 0 {
		nc := int(stream[sof+9])
		for i := 0; i < nc; i++ {
			s := stream[sof+11+3*i]
			sampling = append(sampling, fmt.Sprintf("%dx%d", s>>4, s&15))
		}
	}

	plain := filepath.Join(dir, "plain.dcm")
	dicomtest.Run(t, "dcmdjpeg", comp, plain)
	pf, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	want := nativePixels(t, pf)[:rows*cols*spp]
	if d, at := maxDiff(got, want); d != 0 {
		t.Errorf("dcmdjpeg: max difference %d at sample %d (sampling %v)", d, at, sampling)
	} else {
		t.Logf("exact match with dcmdjpeg, %dx%d, sampling %v", cols, rows, sampling)
	}

	// For reference: how far Go's image/jpeg is from DCMTK on the same stream.
	if gimg, err := jpeg.Decode(bytes.NewReader(stream)); err == nil {
		var gs []byte
		b := gimg.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if spp == 1 {
					gs = append(gs, color.GrayModel.Convert(gimg.At(x, y)).(color.Gray).Y)
				} else {
					c := color.RGBAModel.Convert(gimg.At(x, y)).(color.RGBA)
					gs = append(gs, c.R, c.G, c.B)
				}
			}
		}
		d, _ := maxDiff(gs, want)
		t.Logf("image/jpeg max difference from dcmdjpeg: %d", d)
	}

	ppm := filepath.Join(dir, "out.pnm")
	dicomtest.Run(t, "dcmj2pnm", comp, ppm)
	pb, err := os.ReadFile(ppm)
	if err != nil {
		t.Fatal(err)
	}
	w, h, px := pnm(t, pb)
	if w != cols || h != rows {
		t.Fatalf("dcmj2pnm size %dx%d", w, h)
	}
	if d, at := maxDiff(got, px[:rows*cols*spp]); d != 0 {
		t.Errorf("dcmj2pnm: max difference %d at sample %d", d, at)
	}
}

func TestAgainstDcmcjpeg(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg", "dcmj2pnm")
	sizes := [][2]int{{64, 80}, {61, 97}, {1, 1}, {9, 3}, {17, 33}, {33, 130}}
	type mode struct {
		name  string
		spp   int
		flags []string
	}
	modes := []mode{
		{"422", 3, nil},
		{"444", 3, []string{"+s4"}},
		{"422full", 3, []string{"+n2"}},
		{"411full", 3, []string{"+n1"}},
		{"411", 3, []string{"+np"}},
		{"q50", 3, []string{"+q", "50"}},
		{"q100std", 3, []string{"+q", "100", "-ho"}},
		{"mono", 1, nil},
		{"monoq30", 1, []string{"+q", "30"}},
	}
	for _, m := range modes {
		for si, sz := range sizes {
			rows, cols := sz[0], sz[1]
			t.Run(fmt.Sprintf("%s/%dx%d", m.name, cols, rows), func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "in.dcm")
				comp := filepath.Join(dir, "comp.dcm")
				if err := os.WriteFile(in, part10(rows, cols, m.spp, pattern(rows, cols, m.spp, uint64(si+1))), 0o644); err != nil {
					t.Fatal(err)
				}
				args := append([]string{"+eb", "+un"}, m.flags...)
				dicomtest.Run(t, "dcmcjpeg", append(args, in, comp)...)
				checkAgainstDCMTK(t, dir, comp, rows, cols, m.spp)
			})
		}
	}
}

// TestGoEncoded wraps JPEGs from image/jpeg (4:2:0 colour, grey) with img2dcm.
func TestGoEncoded(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "img2dcm", "dcmdjpeg", "dcmj2pnm")
	for i, sz := range [][2]int{{64, 80}, {61, 97}, {1, 1}, {3, 5}, {40, 17}} {
		rows, cols := sz[0], sz[1]
		for _, grey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dx%d/grey=%v", cols, rows, grey), func(t *testing.T) {
				px := pattern(rows, cols, 3, uint64(i+7))
				var img image.Image
				if grey {
					g := image.NewGray(image.Rect(0, 0, cols, rows))
					for j := range g.Pix {
						g.Pix[j] = px[3*j]
					}
					img = g
				} else {
					c := image.NewRGBA(image.Rect(0, 0, cols, rows))
					for j := 0; j < rows*cols; j++ {
						c.SetRGBA(j%cols, j/cols, color.RGBA{px[3*j], px[3*j+1], px[3*j+2], 255})
					}
					img = c
				}
				var buf bytes.Buffer
				if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				jp := filepath.Join(dir, "in.jpg")
				comp := filepath.Join(dir, "comp.dcm")
				if err := os.WriteFile(jp, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				dicomtest.Run(t, "img2dcm", jp, comp)
				spp := 3
				if grey {
					spp = 1
				}
				checkAgainstDCMTK(t, dir, comp, rows, cols, spp)
			})
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"soi only", []byte{0xFF, 0xD8}, ErrCorrupt},
		{"progressive", []byte{0xFF, 0xD8, 0xFF, 0xC2, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0}, ErrUnsupported},
		{"16-bit", []byte{0xFF, 0xD8, 0xFF, 0xC1, 0, 11, 16, 0, 1, 0, 1, 1, 1, 0x11, 0}, ErrUnsupported},
		{"12-bit truncated", []byte{0xFF, 0xD8, 0xFF, 0xC1, 0, 11, 12, 0, 1, 0, 1, 1, 1, 0x11, 0}, ErrCorrupt},
		{"arithmetic", []byte{0xFF, 0xD8, 0xFF, 0xC9, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0}, ErrUnsupported},
		{"huge", []byte{0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0}, ErrUnsupported},
	} {
		if _, err := Decode(tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, gray := range []bool{false, true} {
		var img image.Image = image.NewRGBA(image.Rect(0, 0, 19, 11))
		if gray {
			img = image.NewGray(image.Rect(0, 0, 19, 11))
		}
		var buf bytes.Buffer
		_ = jpeg.Encode(&buf, img, nil)
		f.Add(buf.Bytes())
	}
	// Extended sequential (SOF1): 12-bit streams from dcmcjpeg +ee, and DC-only ones with
	// restarts at 8 and 12 bits.
	for _, name := range []string{"extended12.jpg", "extended12-ybr422.jpg"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, precision := range []int{8, 12} {
		f.Add(dcOnlyJPEGPrecision(21, 13, [][2]int{{1, 1}}, 2, 3, precision))
		f.Add(dcOnlyJPEGPrecision(21, 13, [][2]int{{2, 2}, {1, 1}, {1, 1}}, 1, 4, precision))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if w, h, _, err := Config(data); err == nil && w*h > 1<<20 {
			return
		}
		img, err := Decode(data)
		if err == nil && img == nil {
			t.Fatal("nil image without error")
		}
	})
}

// bitWriter writes entropy-coded bits with 0xFF stuffing.
type bitWriter struct {
	out   []byte
	acc   uint32
	nbits int
}

func (w *bitWriter) put(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.acc = w.acc<<1 | (v>>uint(i))&1
		w.nbits++
		if w.nbits == 8 {
			w.out = append(w.out, byte(w.acc))
			if byte(w.acc) == 0xFF {
				w.out = append(w.out, 0)
			}
			w.acc, w.nbits = 0, 0
		}
	}
}

func (w *bitWriter) flush() {
	if w.nbits > 0 {
		w.put(0xFF, 8-w.nbits)
	}
}

// dcOnlyJPEG writes a baseline JPEG whose blocks carry only DC terms (random levels),
// with restart interval ri, so that restart handling is exercised: DC table with
// categories 0..11 as 4-bit codes, AC table holding only EOB (code "0").
func dcOnlyJPEG(w, h int, sampling [][2]int, ri int, seed uint64) []byte {
	return dcOnlyJPEGPrecision(w, h, sampling, ri, seed, 8)
}

// dcOnlyJPEGPrecision is dcOnlyJPEG with a sample precision: 8 (SOF0) or 12 (SOF1).
func dcOnlyJPEGPrecision(w, h int, sampling [][2]int, ri int, seed uint64, precision int) []byte {
	r := &rng{s: seed | 1}
	sof, levels := byte(0xC0), 2001
	if precision == 12 {
		sof, levels = 0xC1, 16001
	}
	b := []byte{0xFF, 0xD8}
	// DQT 0: DC quantizer 1, AC quantizers 2..64 (unused).
	b = append(b, 0xFF, 0xDB, 0, 67, 0)
	for i := 0; i < 64; i++ {
		b = append(b, byte(1+i))
	}
	maxH, maxV := 1, 1
	for _, s := range sampling {
		maxH, maxV = max(maxH, s[0]), max(maxV, s[1])
	}
	nc := len(sampling)
	b = append(b, 0xFF, sof, 0, byte(8+3*nc), byte(precision), byte(h>>8), byte(h), byte(w>>8), byte(w), byte(nc))
	for i, s := range sampling {
		b = append(b, byte(i+1), byte(s[0]<<4|s[1]), 0)
	}
	// DHT DC 0: 15 symbols (categories 0..14) of length 4; AC 0: EOB of length 1.
	b = append(b, 0xFF, 0xC4, 0, 2+17+15, 0x00, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	for s := 0; s < 15; s++ {
		b = append(b, byte(s))
	}
	b = append(b, 0xFF, 0xC4, 0, 2+17+1, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00)
	if ri > 0 {
		b = append(b, 0xFF, 0xDD, 0, 4, byte(ri>>8), byte(ri))
	}
	b = append(b, 0xFF, 0xDA, 0, byte(6+2*nc), byte(nc))
	for i := range sampling {
		b = append(b, byte(i+1), 0x00)
	}
	b = append(b, 0, 63, 0)
	mcux, mcuy := ceilDiv(w, 8*maxH), ceilDiv(h, 8*maxV)
	if nc == 1 {
		mcux, mcuy = ceilDiv(w, 8), ceilDiv(h, 8)
		sampling = [][2]int{{1, 1}}
	}
	bw := &bitWriter{}
	pred := make([]int, nc)
	n := 0
	for m := 0; m < mcux*mcuy; m++ {
		if ri > 0 && m > 0 && m%ri == 0 {
			bw.flush()
			bw.out = append(bw.out, 0xFF, byte(0xD0+n%8))
			n++
			clear(pred)
		}
		for ci, s := range sampling {
			for k := 0; k < s[0]*s[1]; k++ {
				level := int(r.next()%uint64(levels)) - levels/2 // DC coefficient, quant 1
				diff := level - pred[ci]
				pred[ci] = level
				cat, mag := 0, diff
				if diff < 0 {
					mag = -diff
				}
				for mag>>uint(cat) != 0 {
					cat++
				}
				bw.put(uint32(cat), 4)
				if cat > 0 {
					v := diff
					if diff < 0 {
						v = diff + (1 << uint(cat)) - 1
					}
					bw.put(uint32(v), cat)
				}
				bw.put(0, 1) // EOB
			}
		}
	}
	bw.flush()
	b = append(b, bw.out...)
	return append(b, 0xFF, 0xD9)
}

// TestRestart checks DRI/RSTn handling against DCMTK (img2dcm + dcmdjpeg).
func TestRestart(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "img2dcm", "dcmdjpeg", "dcmj2pnm")
	for _, tc := range []struct {
		w, h     int
		sampling [][2]int
		ri       int
	}{
		{37, 21, [][2]int{{1, 1}}, 2},
		{37, 21, [][2]int{{1, 1}}, 1},
		{45, 19, [][2]int{{2, 1}, {1, 1}, {1, 1}}, 3},
		{45, 35, [][2]int{{2, 2}, {1, 1}, {1, 1}}, 1},
		{45, 35, [][2]int{{1, 1}, {1, 1}, {1, 1}}, 5},
	} {
		t.Run(fmt.Sprintf("%dx%d/%v/ri%d", tc.w, tc.h, tc.sampling, tc.ri), func(t *testing.T) {
			data := dcOnlyJPEG(tc.w, tc.h, tc.sampling, tc.ri, uint64(tc.w*tc.ri))
			if _, err := Decode(data); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			dir := t.TempDir()
			jp := filepath.Join(dir, "in.jpg")
			comp := filepath.Join(dir, "comp.dcm")
			if err := os.WriteFile(jp, data, 0o644); err != nil {
				t.Fatal(err)
			}
			dicomtest.Run(t, "img2dcm", jp, comp)
			checkAgainstDCMTK(t, dir, comp, tc.h, tc.w, len(tc.sampling))
		})
	}
}
