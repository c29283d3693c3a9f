// Package jpegbase decodes baseline and extended sequential (Huffman) JPEG, ITU-T T.81
// processes 1, 2 and 4 (DICOM 1.2.840.10008.1.2.4.50 and .51), exactly as libjpeg 6b (the IJG
// library embedded in DCMTK's dcmjpeg, built once for 8-bit and once for 12-bit samples) does
// with its default decompression settings: the JDCT_ISLOW integer IDCT (jidctint.c), fancy
// upsampling (jdsample.c) and the fixed-point YCbCr->RGB conversion of jdcolor.c. It is
// hand-written because image/jpeg rounds its inverse DCT and upsamples chroma differently,
// which put color ultrasound up to 3 levels (170 at sharp chroma edges) away from what DCMTK
// shows, and has no 12-bit samples (which older CR and CT modalities send).
//
// Scope: SOF0/SOF1 with 8- or 12-bit precision, one interleaved scan holding every
// component, 1 (grey) or 3 (YCbCr or RGB, decided as libjpeg and DCMTK do) components, any
// sampling factors whose ratios are integers, DRI/RSTn restarts, 8- and 16-bit DQT. Data that
// ends early (or runs into a marker) is handled as libjpeg does: the missing bits read as zeros
// and later MCUs decode as zero blocks.
package jpegbase

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"sync"
)

// ErrUnsupported is wrapped by errors for valid JPEG features this package does not handle
// (progressive, arithmetic, lossless, precisions other than 8 and 12, multi-scan).
var ErrUnsupported = errors.New("unsupported JPEG")

// ErrCorrupt is wrapped by errors for malformed data.
var ErrCorrupt = errors.New("corrupt JPEG")

// maxPixels caps width*height.
const maxPixels = 1 << 28

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

func unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, a...))
}

// Marker codes.
const (
	mSOF0 = 0xC0
	mSOF1 = 0xC1
	mDHT  = 0xC4
	mDAC  = 0xCC
	mRST0 = 0xD0
	mSOI  = 0xD8
	mEOI  = 0xD9
	mSOS  = 0xDA
	mDQT  = 0xDB
	mDNL  = 0xDC
	mDRI  = 0xDD
	mAPP0 = 0xE0
	mCOM  = 0xFE
)

type component struct {
	id     byte
	h, v   int // sampling factors
	tq     int // quantization table selector
	td, ta int // Huffman table selectors (from SOS)

	bw, bh  int      // blocks across/down in the padded plane
	dw, dh  int      // downsampled_width/height
	plane   []uint8  // bw*8 x bh*8 samples, 8-bit precision
	plane16 []uint16 // the same for 12-bit precision
	stride  int
	dcPred  int32
}

type decoder struct {
	data []byte
	pos  int

	width, height int
	precision     int // 8 or 12
	comps         []component
	maxH, maxV    int
	frameSeen     bool

	quant    [4][64]uint16 // natural order
	quantSet [4]bool
	dc, ac   [4]*huffTable
	restart  int

	// What libjpeg reads of the colour space (jdmarker.c): a JFIF APP0 marker, an Adobe
	// APP14 marker and its transform flag.
	sawJFIF, sawAdobe bool
	adobeTransform    byte
	color             Color

	// bit reader
	bitBuf        uint64
	bitsLeft      int
	unreadMarker  byte
	insufficient  bool
	nextRestartNo int
}

// Config returns the dimensions and component count from the frame header without
// decoding the scan.
func Config(data []byte) (width, height, components int, err error) {
	d := &decoder{data: data}
	if err := d.readHeaders(false); err != nil {
		return 0, 0, 0, err
	}
	return d.width, d.height, len(d.comps), nil
}

// Color says what three components hold, and so whether they are converted from YCbCr.
type Color int

const (
	// ColorGuess decides as libjpeg does (jdapimin.c default_decompress_parms): a JFIF
	// marker means YCbCr; an Adobe marker's transform flag 0 means RGB, else YCbCr; without
	// either, component IDs 'R', 'G', 'B' mean RGB, anything else YCbCr.
	ColorGuess Color = iota
	// ColorYCbCr: converted to RGB (DICOM Photometric Interpretation YBR_FULL, YBR_FULL_422).
	ColorYCbCr
	// ColorRGB: taken as RGB, unconverted (Photometric Interpretation RGB: what DCMTK's
	// decoder does by default, "convert if YCbCr photometric interpretation").
	ColorRGB
)

// Image12 is a decoded 12-bit frame: samples 0..4095, interleaved pixel by pixel (grey, or
// RGB after any YCbCr conversion). It is an image.Image whose At scales to 16 bits.
type Image12 struct {
	Width, Height, Components int
	Pix                       []uint16 // len Width*Height*Components
}

func (m *Image12) ColorModel() color.Model {
	if m.Components == 1 {
		return color.Gray16Model
	}
	return color.RGBA64Model
}

func (m *Image12) Bounds() image.Rectangle { return image.Rect(0, 0, m.Width, m.Height) }

func (m *Image12) At(x, y int) color.Color {
	if x < 0 || y < 0 || x >= m.Width || y >= m.Height {
		return color.Gray16{}
	}
	i := (y*m.Width + x) * m.Components
	to16 := func(v uint16) uint16 { return v<<4 | v>>8 }
	if m.Components == 1 {
		return color.Gray16{Y: to16(m.Pix[i])}
	}
	return color.RGBA64{R: to16(m.Pix[i]), G: to16(m.Pix[i+1]), B: to16(m.Pix[i+2]), A: 0xFFFF}
}

// Decode returns the image as libjpeg would: for 8-bit precision *image.Gray for 1 component,
// *image.RGBA for 3; for 12-bit precision *Image12.
func Decode(data []byte) (image.Image, error) {
	return DecodeColor(data, ColorGuess)
}

// DecodeColor is Decode with the colour space of three components given (or guessed).
func DecodeColor(data []byte, color Color) (image.Image, error) {
	d := &decoder{data: data, color: color}
	if err := d.readHeaders(true); err != nil {
		return nil, err
	}
	if err := d.decodeScan(); err != nil {
		return nil, err
	}
	return d.output()
}

func (d *decoder) u16(p int) int { return int(d.data[p])<<8 | int(d.data[p+1]) }

// nextMarker skips to the next marker (as jdmarker.c next_marker does, tolerating garbage
// and fill bytes) and returns its code.
func (d *decoder) nextMarker() (byte, error) {
	for {
		for d.pos < len(d.data) && d.data[d.pos] != 0xFF {
			d.pos++
		}
		for d.pos < len(d.data) && d.data[d.pos] == 0xFF {
			d.pos++
		}
		if d.pos >= len(d.data) {
			return 0, corrupt("unexpected end of data")
		}
		c := d.data[d.pos]
		d.pos++
		if c != 0 {
			return c, nil
		}
	}
}

// segment returns the payload of a marker segment with a length field.
func (d *decoder) segment() ([]byte, error) {
	if d.pos+2 > len(d.data) {
		return nil, corrupt("truncated marker length")
	}
	n := d.u16(d.pos)
	if n < 2 || d.pos+n > len(d.data) {
		return nil, corrupt("bad marker length %d", n)
	}
	seg := d.data[d.pos+2 : d.pos+n]
	d.pos += n
	return seg, nil
}

// readHeaders parses markers up to and including the first SOS (or only up to SOF when
// full is false).
func (d *decoder) readHeaders(full bool) error {
	if len(d.data) < 2 || d.data[0] != 0xFF || d.data[1] != mSOI {
		return corrupt("missing SOI")
	}
	d.pos = 2
	for {
		m, err := d.nextMarker()
		if err != nil {
			return err
		}
		switch {
		case m == mSOI || (m >= mRST0 && m <= mRST0+7) || m == 0x01:
			// standalone markers: nothing to read
		case m == mEOI:
			return corrupt("no image before EOI")
		case m == mSOF0 || m == mSOF1:
			seg, err := d.segment()
			if err != nil {
				return err
			}
			if err := d.parseSOF(seg); err != nil {
				return err
			}
			if !full {
				return nil
			}
		case m >= 0xC2 && m <= 0xCF && m != mDHT && m != mDAC && m != 0xC8:
			return unsupported("SOF%d (only baseline/extended sequential Huffman)", m-0xC0)
		case m == mDAC:
			return unsupported("arithmetic coding")
		case m == mDHT:
			seg, err := d.segment()
			if err != nil {
				return err
			}
			if err := d.parseDHT(seg); err != nil {
				return err
			}
		case m == mDQT:
			seg, err := d.segment()
			if err != nil {
				return err
			}
			if err := d.parseDQT(seg); err != nil {
				return err
			}
		case m == mDRI:
			seg, err := d.segment()
			if err != nil {
				return err
			}
			if len(seg) != 2 {
				return corrupt("bad DRI length")
			}
			d.restart = int(seg[0])<<8 | int(seg[1])
		case m == mSOS:
			if !d.frameSeen {
				return corrupt("SOS before SOF")
			}
			seg, err := d.segment()
			if err != nil {
				return err
			}
			return d.parseSOS(seg)
		case m == mDNL:
			return unsupported("DNL marker")
		case m == 0xE0 || m == 0xEE: // APP0 (JFIF), APP14 (Adobe)
			seg, err := d.segment()
			if err != nil {
				return err
			}
			switch {
			case m == 0xE0 && len(seg) >= 5 && string(seg[:5]) == "JFIF\x00":
				d.sawJFIF = true
			case m == 0xEE && len(seg) >= 12 && string(seg[:5]) == "Adobe":
				d.sawAdobe, d.adobeTransform = true, seg[11]
			}
		default:
			// APPn, COM, JPG, other segments with a length: skip.
			if _, err := d.segment(); err != nil {
				return err
			}
		}
	}
}

func (d *decoder) parseSOF(seg []byte) error {
	if d.frameSeen {
		return corrupt("duplicate SOF")
	}
	if len(seg) < 6 {
		return corrupt("short SOF")
	}
	if seg[0] != 8 && seg[0] != 12 {
		return unsupported("%d-bit precision", seg[0])
	}
	d.precision = int(seg[0])
	d.height = int(seg[1])<<8 | int(seg[2])
	d.width = int(seg[3])<<8 | int(seg[4])
	nc := int(seg[5])
	if d.width == 0 || d.height == 0 {
		return corrupt("empty image %dx%d", d.width, d.height)
	}
	if d.width*d.height > maxPixels {
		return unsupported("image too large: %dx%d", d.width, d.height)
	}
	if nc != 1 && nc != 3 {
		return unsupported("%d components", nc)
	}
	if len(seg) != 6+3*nc {
		return corrupt("bad SOF length")
	}
	d.comps = make([]component, nc)
	d.maxH, d.maxV = 1, 1
	for i := range d.comps {
		c := &d.comps[i]
		c.id = seg[6+3*i]
		c.h = int(seg[7+3*i] >> 4)
		c.v = int(seg[7+3*i] & 15)
		c.tq = int(seg[8+3*i])
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 {
			return corrupt("bad sampling factors %dx%d", c.h, c.v)
		}
		if c.tq > 3 {
			return corrupt("bad quantization table selector %d", c.tq)
		}
		for j := 0; j < i; j++ {
			if d.comps[j].id == c.id {
				return corrupt("duplicate component id %d", c.id)
			}
		}
		d.maxH = max(d.maxH, c.h)
		d.maxV = max(d.maxV, c.v)
	}
	d.frameSeen = true
	return nil
}

func (d *decoder) parseDQT(seg []byte) error {
	for len(seg) > 0 {
		pq, tq := int(seg[0]>>4), int(seg[0]&15)
		if tq > 3 || pq > 1 {
			return corrupt("bad DQT table %d/%d", pq, tq)
		}
		seg = seg[1:]
		n := 64 * (pq + 1)
		if len(seg) < n {
			return corrupt("short DQT")
		}
		for i := 0; i < 64; i++ {
			var q uint16
			if pq == 0 {
				q = uint16(seg[i])
			} else {
				q = uint16(seg[2*i])<<8 | uint16(seg[2*i+1])
			}
			d.quant[tq][naturalOrder[i]] = q
		}
		d.quantSet[tq] = true
		seg = seg[n:]
	}
	return nil
}

func (d *decoder) parseDHT(seg []byte) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return corrupt("short DHT")
		}
		tc, th := int(seg[0]>>4), int(seg[0]&15)
		if tc > 1 || th > 3 {
			return corrupt("bad DHT table %d/%d", tc, th)
		}
		var counts [17]int
		total := 0
		for l := 1; l <= 16; l++ {
			counts[l] = int(seg[l])
			total += counts[l]
		}
		if total > 256 || len(seg) < 17+total {
			return corrupt("bad DHT counts")
		}
		t, err := buildHuff(counts, seg[17:17+total], tc == 0)
		if err != nil {
			return err
		}
		if tc == 0 {
			d.dc[th] = t
		} else {
			d.ac[th] = t
		}
		seg = seg[17+total:]
	}
	return nil
}

func (d *decoder) parseSOS(seg []byte) error {
	if len(seg) < 1 {
		return corrupt("short SOS")
	}
	ns := int(seg[0])
	if len(seg) != 4+2*ns {
		return corrupt("bad SOS length")
	}
	if ns != len(d.comps) {
		return unsupported("multi-scan (scan has %d of %d components)", ns, len(d.comps))
	}
	seen := make([]bool, len(d.comps))
	for i := 0; i < ns; i++ {
		id := seg[1+2*i]
		idx := -1
		for j := range d.comps {
			if d.comps[j].id == id {
				idx = j
			}
		}
		if idx < 0 || seen[idx] {
			return corrupt("bad scan component id %d", id)
		}
		if idx != i {
			// libjpeg decodes in scan order; components out of frame order are legal
			// but unusual.
			return unsupported("scan component order differs from frame order")
		}
		seen[idx] = true
		c := &d.comps[idx]
		c.td, c.ta = int(seg[2+2*i]>>4), int(seg[2+2*i]&15)
		if c.td > 3 || c.ta > 3 || d.dc[c.td] == nil || d.ac[c.ta] == nil {
			return corrupt("missing Huffman table")
		}
		if !d.quantSet[c.tq] {
			return corrupt("missing quantization table %d", c.tq)
		}
	}
	ss, se, ah, al := seg[1+2*ns], seg[2+2*ns], seg[3+2*ns]>>4, seg[3+2*ns]&15
	if ss != 0 || se != 63 || ah != 0 || al != 0 {
		return corrupt("bad sequential scan parameters")
	}
	return nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func (d *decoder) decodeScan() error {
	nc := len(d.comps)
	var mcuX, mcuY int
	if nc == 1 {
		// Non-interleaved: one block per MCU, covering the component's own extent.
		c := &d.comps[0]
		c.dw = ceilDiv(d.width*c.h, d.maxH)
		c.dh = ceilDiv(d.height*c.v, d.maxV)
		mcuX, mcuY = ceilDiv(c.dw, 8), ceilDiv(c.dh, 8)
		c.bw, c.bh = mcuX, mcuY
	} else {
		mcuX = ceilDiv(d.width, 8*d.maxH)
		mcuY = ceilDiv(d.height, 8*d.maxV)
		blocks := 0
		for i := range d.comps {
			c := &d.comps[i]
			c.dw = ceilDiv(d.width*c.h, d.maxH)
			c.dh = ceilDiv(d.height*c.v, d.maxV)
			c.bw, c.bh = mcuX*c.h, mcuY*c.v
			blocks += c.h * c.v
		}
		if blocks > 10 {
			return corrupt("too many blocks in MCU")
		}
	}
	for i := range d.comps {
		c := &d.comps[i]
		c.stride = c.bw * 8
		if d.precision == 12 {
			c.plane16 = make([]uint16, c.stride*c.bh*8)
		} else {
			c.plane = make([]uint8, c.stride*c.bh*8)
		}
		c.dcPred = 0
	}
	d.nextRestartNo = 0
	restartsToGo := d.restart
	var blk [64]int16
	for my := 0; my < mcuY; my++ {
		for mx := 0; mx < mcuX; mx++ {
			if d.restart != 0 {
				if restartsToGo == 0 {
					if err := d.processRestart(); err != nil {
						return err
					}
					restartsToGo = d.restart
				}
				restartsToGo--
			}
			// libjpeg skips a whole MCU (leaving zero blocks) once data has run out.
			skip := d.insufficient
			for ci := range d.comps {
				c := &d.comps[ci]
				bh, bv := c.h, c.v
				if nc == 1 {
					bh, bv = 1, 1
				}
				for by := 0; by < bv; by++ {
					for bx := 0; bx < bh; bx++ {
						blk = [64]int16{}
						if !skip {
							if err := d.decodeBlock(c, &blk); err != nil {
								return err
							}
						}
						x := (mx*bh + bx) * 8
						y := (my*bv + by) * 8
						if d.precision == 12 {
							idctIslow(idct12, &blk, &d.quant[c.tq], c.plane16[y*c.stride+x:], c.stride)
						} else {
							idctIslow(idct8, &blk, &d.quant[c.tq], c.plane[y*c.stride+x:], c.stride)
						}
					}
				}
			}
		}
	}
	return nil
}

func (d *decoder) processRestart() error {
	d.bitBuf, d.bitsLeft = 0, 0
	if d.unreadMarker == 0 {
		m, err := d.nextMarker()
		if err != nil {
			return err
		}
		d.unreadMarker = m
	}
	if d.unreadMarker != byte(mRST0+d.nextRestartNo) {
		return corrupt("expected RST%d, found marker 0x%02X", d.nextRestartNo, d.unreadMarker)
	}
	d.unreadMarker = 0
	d.nextRestartNo = (d.nextRestartNo + 1) & 7
	for i := range d.comps {
		d.comps[i].dcPred = 0
	}
	d.insufficient = false
	return nil
}

// output upsamples and colour-converts the component planes.
func (d *decoder) output() (image.Image, error) {
	if d.precision == 12 {
		return d.output12()
	}
	w, h := d.width, d.height
	if len(d.comps) == 1 {
		c := &d.comps[0]
		img := image.NewGray(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			copy(img.Pix[y*img.Stride:y*img.Stride+w], c.plane[y*c.stride:])
		}
		return img, nil
	}
	var full [3][]uint8
	for i := range d.comps {
		p, err := upsample(d, &d.comps[i], d.comps[i].plane)
		if err != nil {
			return nil, err
		}
		full[i] = p
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	yp, cbp, crp := full[0], full[1], full[2]
	if !d.ycbcr() {
		for y := 0; y < h; y++ {
			row := img.Pix[y*img.Stride:]
			for x := 0; x < w; x++ {
				i := y*w + x
				row[4*x+0], row[4*x+1], row[4*x+2], row[4*x+3] = yp[i], cbp[i], crp[i], 255
			}
		}
		return img, nil
	}
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			i := y*w + x
			yy := int(yp[i])
			cb, cr := cbp[i], crp[i]
			row[4*x+0] = clamp255(yy + crRTab[cr])
			row[4*x+1] = clamp255(yy + int((cbGTab[cb]+crGTab[cr])>>scaleBits))
			row[4*x+2] = clamp255(yy + cbBTab[cb])
			row[4*x+3] = 255
		}
	}
	return img, nil
}

// ycbcr reports whether three components are YCbCr, to be converted to RGB.
func (d *decoder) ycbcr() bool {
	switch {
	case d.color == ColorRGB:
		return false
	case d.color == ColorYCbCr:
		return true
	case d.sawJFIF:
		return true
	case d.sawAdobe:
		return d.adobeTransform != 0
	}
	return !(d.comps[0].id == 'R' && d.comps[1].id == 'G' && d.comps[2].id == 'B')
}

func clamp255(v int) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// output12 is output for 12-bit precision.
func (d *decoder) output12() (image.Image, error) {
	w, h := d.width, d.height
	nc := len(d.comps)
	img := &Image12{Width: w, Height: h, Components: nc, Pix: make([]uint16, w*h*nc)}
	if nc == 1 {
		c := &d.comps[0]
		for y := 0; y < h; y++ {
			copy(img.Pix[y*w:(y+1)*w], c.plane16[y*c.stride:])
		}
		return img, nil
	}
	var full [3][]uint16
	for i := range d.comps {
		p, err := upsample(d, &d.comps[i], d.comps[i].plane16)
		if err != nil {
			return nil, err
		}
		full[i] = p
	}
	yp, cbp, crp := full[0], full[1], full[2]
	if !d.ycbcr() {
		for i := 0; i < w*h; i++ {
			img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2] = yp[i], cbp[i], crp[i]
		}
		return img, nil
	}
	t := ycc12()
	clamp := func(v int) uint16 { return uint16(min(max(v, 0), 4095)) }
	for i := 0; i < w*h; i++ {
		yy := int(yp[i])
		cb, cr := cbp[i]&4095, crp[i]&4095
		img.Pix[3*i] = clamp(yy + t.crR[cr])
		img.Pix[3*i+1] = clamp(yy + int((t.cbG[cb]+t.crG[cr])>>scaleBits))
		img.Pix[3*i+2] = clamp(yy + t.cbB[cb])
	}
	return img, nil
}

// upsample returns a width*height plane for c (whose samples are plane), using jdsample.c's
// rules: full size copy, h2v1/h2v2 fancy (triangle) upsampling when the downsampled width
// exceeds 2, and plain replication otherwise.
func upsample[T sample](d *decoder, c *component, plane []T) ([]T, error) {
	w, h := d.width, d.height
	out := make([]T, w*h)
	if d.maxH%c.h != 0 || d.maxV%c.v != 0 {
		return nil, unsupported("fractional sampling ratio %dx%d of %dx%d", c.h, c.v, d.maxH, d.maxV)
	}
	rx, ry := d.maxH/c.h, d.maxV/c.v
	switch {
	case rx == 1 && ry == 1:
		for y := 0; y < h; y++ {
			copy(out[y*w:(y+1)*w], plane[y*c.stride:])
		}
	case rx == 2 && ry == 1 && c.dw > 2:
		tmp := make([]T, 2*c.dw)
		for y := 0; y < h; y++ {
			h2v1Fancy(plane[y*c.stride:y*c.stride+c.dw], tmp)
			copy(out[y*w:(y+1)*w], tmp)
		}
	case rx == 2 && ry == 2 && c.dw > 2:
		tmp := make([]T, 2*c.dw)
		for y := 0; y < h; y++ {
			in := y / 2
			near := plane[in*c.stride : in*c.stride+c.dw]
			fr := in - 1
			if y&1 == 1 {
				fr = in + 1
			}
			fr = max(0, min(fr, c.dh-1))
			far := plane[fr*c.stride : fr*c.stride+c.dw]
			h2v2Fancy(near, far, tmp)
			copy(out[y*w:(y+1)*w], tmp)
		}
	default:
		for y := 0; y < h; y++ {
			src := plane[(y/ry)*c.stride:]
			dst := out[y*w : (y+1)*w]
			for x := range dst {
				dst[x] = src[x/rx]
			}
		}
	}
	return out, nil
}

// h2v1Fancy is jdsample.c h2v1_fancy_upsample for one row (len(in) > 2).
func h2v1Fancy[T sample](in, out []T) {
	n := len(in)
	v := int(in[0])
	out[0] = T(v)
	out[1] = T((v*3 + int(in[1]) + 2) >> 2)
	o := 2
	for i := 1; i < n-1; i++ {
		v = int(in[i]) * 3
		out[o] = T((v + int(in[i-1]) + 1) >> 2)
		out[o+1] = T((v + int(in[i+1]) + 2) >> 2)
		o += 2
	}
	v = int(in[n-1])
	out[o] = T((v*3 + int(in[n-2]) + 1) >> 2)
	out[o+1] = T(v)
}

// h2v2Fancy is one output row of jdsample.c h2v2_fancy_upsample: near is the input row,
// far the next-nearest row (above for even output rows, below for odd ones).
func h2v2Fancy[T sample](near, far, out []T) {
	n := len(near)
	this := int(near[0])*3 + int(far[0])
	next := int(near[1])*3 + int(far[1])
	out[0] = T((this*4 + 8) >> 4)
	out[1] = T((this*3 + next + 7) >> 4)
	last := this
	this = next
	o := 2
	for i := 2; i < n; i++ {
		next = int(near[i])*3 + int(far[i])
		out[o] = T((this*3 + last + 8) >> 4)
		out[o+1] = T((this*3 + next + 7) >> 4)
		o += 2
		last = this
		this = next
	}
	out[o] = T((this*3 + last + 8) >> 4)
	out[o+1] = T((this*4 + 7) >> 4)
}

// jdcolor.c tables (for 8-bit samples; ycc12 for 12-bit ones).
const scaleBits = 16

var (
	crRTab, cbBTab [256]int
	crGTab, cbGTab [256]int64
)

func init() {
	fix := func(x float64) int64 { return int64(x*(1<<scaleBits) + 0.5) }
	const oneHalf = int64(1) << (scaleBits - 1)
	for i := 0; i < 256; i++ {
		x := int64(i - 128)
		crRTab[i] = int((fix(1.40200)*x + oneHalf) >> scaleBits)
		cbBTab[i] = int((fix(1.77200)*x + oneHalf) >> scaleBits)
		crGTab[i] = -fix(0.71414) * x
		cbGTab[i] = -fix(0.34414)*x + oneHalf
	}
}

// ycc12Tables are jdcolor.c's tables built for 12-bit samples (CENTERJSAMPLE 2048).
type ycc12Tables struct {
	crR, cbB [4096]int
	crG, cbG [4096]int64
}

var ycc12 = sync.OnceValue(func() *ycc12Tables {
	t := &ycc12Tables{}
	fix := func(x float64) int64 { return int64(x*(1<<scaleBits) + 0.5) }
	const oneHalf = int64(1) << (scaleBits - 1)
	for i := 0; i < 4096; i++ {
		x := int64(i - 2048)
		t.crR[i] = int((fix(1.40200)*x + oneHalf) >> scaleBits)
		t.cbB[i] = int((fix(1.77200)*x + oneHalf) >> scaleBits)
		t.crG[i] = -fix(0.71414) * x
		t.cbG[i] = -fix(0.34414)*x + oneHalf
	}
	return t
})
