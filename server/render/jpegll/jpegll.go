// Package jpegll decodes lossless JPEG (ITU-T T.81 Annex H, "process 14",
// SOF3 with Huffman coding) as used by the DICOM transfer syntaxes
// 1.2.840.10008.1.2.4.57 (JPEG Lossless, Non-Hierarchical, Process 14) and
// 1.2.840.10008.1.2.4.70 (Process 14, Selection Value 1).
//
// Hand-written with the standard library only: Go's image/jpeg decodes the DCT processes
// only, this one must be bit-exact (tested against DCMTK's dcmdjpeg at 2-16 bits), and a cgo
// codec (libjpeg-turbo, IJG's 12/16-bit builds) would end the server's pure-Go static build
// for the county's one machine and Windows. Process 14 is small: Huffman decoding and seven
// predictors.
//
// Supported: precision 2..16 bits, 1 to 4 components with 1x1 sampling,
// interleaved and non-interleaved scans, all seven predictors (selection
// values 1..7), point transform, several Huffman tables and their
// redefinition between scans, restart intervals (DRI/RSTn) of whole lines,
// byte stuffing and fill bytes; APPn, COM and DQT segments are skipped.
//
// Not supported (ErrUnsupported): DCT processes (SOF0/1/2...), arithmetic
// coding, hierarchical frames, JPEG-LS, heights defined by DNL, sampling
// factors other than 1x1 with more than one component, restart intervals
// that are not a whole number of lines (libjpeg, and so DCMTK, rejects them
// too), frames of more than 1<<28 samples.
//
// Decoding follows libjpeg's lossless extension as DCMTK's dcmdjpeg uses it:
// predictions and reconstruction are computed modulo 2^16, and a difference
// category SSSS=16 means the difference 32768 with no additional bits.
// Decoded samples are finally shifted left by the point transform and are
// always smaller than 1<<Precision.
package jpegll

import (
	"errors"
	"fmt"
)

// Image is a decoded frame: samples interleaved pixel by pixel, one uint16 per sample.
type Image struct {
	Width, Height, Components, Precision int
	Pix                                  []uint16 // len = Width*Height*Components
}

// ErrUnsupported is wrapped by errors for valid JPEG data this package does
// not decode: non-lossless processes (SOF0/1/2...), arithmetic coding,
// hierarchical mode, sampling factors other than 1x1, more than 4 components,
// frames larger than 1<<28 samples.
var ErrUnsupported = errors.New("unsupported JPEG")

// ErrCorrupt is wrapped by errors for malformed or truncated data.
var ErrCorrupt = errors.New("corrupt JPEG")

// maxSamples caps Width*Height*Components.
const maxSamples = 1 << 28

// JPEG markers (second byte after 0xFF).
const (
	mSOF0  = 0xC0
	mSOF3  = 0xC3
	mDHT   = 0xC4
	mJPG   = 0xC8
	mDAC   = 0xCC
	mSOF15 = 0xCF
	mRST0  = 0xD0
	mRST7  = 0xD7
	mSOI   = 0xD8
	mEOI   = 0xD9
	mSOS   = 0xDA
	mDQT   = 0xDB
	mDNL   = 0xDC
	mDRI   = 0xDD
	mDHP   = 0xDE
	mEXP   = 0xDF
	mSOF55 = 0xF7 // JPEG-LS frame
	mLSE   = 0xF8 // JPEG-LS extension
	mTEM   = 0x01
)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

type component struct {
	id   byte
	done bool
}

type frame struct {
	width, height, precision int
	comps                    []component
}

// decoder holds the state while walking the marker segments.
type decoder struct {
	data     []byte
	frame    *frame
	tables   [4]*huffTable // lossless (class 0) Huffman tables
	restart  int           // restart interval in MCUs, 0 = none
	pix      []uint16
	compsBuf [4]component
	frameBuf frame
}

// nextMarker returns the position of the next marker at or after pos: a 0xFF
// followed by a byte other than 0x00 (stuffing) and 0xFF (fill). Bytes that
// are not part of a marker are skipped, as libjpeg does (with a warning).
// It returns the marker code and the index of its 0xFF byte (the last fill
// byte, if any).
func nextMarker(data []byte, pos int) (code byte, at int, ok bool) {
	for i := pos; i+1 < len(data); i++ {
		if data[i] != 0xFF {
			continue
		}
		c := data[i+1]
		if c != 0x00 && c != 0xFF {
			return c, i, true
		}
		if c == 0x00 {
			i++ // skip the stuffed zero
		}
	}
	return 0, 0, false
}

// segment returns the payload of the marker segment whose 0xFF is at 'at'
// and the position just after it.
func segment(data []byte, at int) (payload []byte, next int, err error) {
	if at+4 > len(data) {
		return nil, 0, corrupt("truncated marker segment")
	}
	l := int(data[at+2])<<8 | int(data[at+3])
	if l < 2 || at+2+l > len(data) {
		return nil, 0, corrupt("bad length %d of marker segment FF%02X", l, data[at+1])
	}
	return data[at+4 : at+2+l], at + 2 + l, nil
}

// checkSOI verifies that data starts with SOI.
func checkSOI(data []byte) error {
	if len(data) < 2 || data[0] != 0xFF || data[1] != mSOI {
		return corrupt("missing SOI marker")
	}
	return nil
}

// classify rejects markers of processes this package does not decode.
func classify(code byte) error {
	switch {
	case code == mSOF3:
		return nil
	case code >= mSOF0 && code <= 0xC2:
		return unsupported("DCT-based frame (SOF%d), not lossless", code-mSOF0)
	case code == 0xC5 || code == 0xC6 || code == 0xC7 || code == mDHP || code == mEXP:
		return unsupported("hierarchical JPEG (marker FF%02X)", code)
	case code == mJPG:
		return unsupported("reserved JPEG extension marker FFC8")
	case code >= 0xC9 && code <= mSOF15 && code != mDAC:
		return unsupported("arithmetic coding (SOF%d)", code-mSOF0)
	case code == mSOF55 || code == mLSE:
		return unsupported("JPEG-LS (marker FF%02X)", code)
	}
	return nil
}

func (d *decoder) parseSOF(p []byte) error {
	if len(p) < 6 {
		return corrupt("short SOF3 segment")
	}
	f := &d.frameBuf
	f.precision = int(p[0])
	f.height = int(p[1])<<8 | int(p[2])
	f.width = int(p[3])<<8 | int(p[4])
	nf := int(p[5])
	if f.precision < 2 || f.precision > 16 {
		return corrupt("precision %d outside 2..16", f.precision)
	}
	if nf == 0 {
		return corrupt("frame without components")
	}
	if len(p) != 6+3*nf {
		return corrupt("SOF3 length %d does not match %d components", len(p)+2, nf)
	}
	if nf > 4 {
		return unsupported("%d components (at most 4)", nf)
	}
	if f.width == 0 {
		return corrupt("zero width")
	}
	if f.height == 0 {
		return unsupported("height defined by DNL")
	}
	f.comps = d.compsBuf[:nf]
	for i := range nf {
		c := p[6+3*i:]
		h, v := c[1]>>4, c[1]&15
		if h == 0 || v == 0 || h > 4 || v > 4 {
			return corrupt("sampling factors %dx%d", h, v)
		}
		// With one component the sampling factors do not change the sample
		// order (T.81 A.2.2), so only multi-component frames need 1x1.
		if nf > 1 && (h != 1 || v != 1) {
			return unsupported("sampling factors %dx%d (only 1x1)", h, v)
		}
		for j := range i {
			if f.comps[j].id == c[0] {
				return corrupt("duplicate component id %d", c[0])
			}
		}
		f.comps[i] = component{id: c[0]}
	}
	if f.width*f.height*nf > maxSamples {
		return unsupported("frame of %dx%dx%d samples is too large", f.width, f.height, nf)
	}
	d.frame = f
	return nil
}

// readHeader walks the markers up to and including the frame header.
// It returns the position after SOF3.
func (d *decoder) readHeader() (int, error) {
	data := d.data
	if err := checkSOI(data); err != nil {
		return 0, err
	}
	pos := 2
	for {
		code, at, ok := nextMarker(data, pos)
		if !ok {
			return 0, corrupt("no frame header")
		}
		if err := classify(code); err != nil {
			return 0, err
		}
		switch code {
		case mSOI, mEOI, mSOS:
			return 0, corrupt("marker FF%02X before the frame header", code)
		case mTEM:
			pos = at + 2
			continue
		}
		if code >= mRST0 && code <= mRST7 {
			pos = at + 2
			continue
		}
		p, next, err := segment(data, at)
		if err != nil {
			return 0, err
		}
		switch code {
		case mSOF3:
			return next, d.parseSOF(p)
		case mDHT:
			if err := d.parseDHT(p); err != nil {
				return 0, err
			}
		case mDRI:
			if err := d.parseDRI(p); err != nil {
				return 0, err
			}
		}
		pos = next
	}
}

// DecodeConfig reads only the frame header.
func DecodeConfig(data []byte) (width, height, components, precision int, err error) {
	d := decoder{data: data}
	if _, err := d.readHeader(); err != nil {
		return 0, 0, 0, 0, err
	}
	f := d.frame
	return f.width, f.height, len(f.comps), f.precision, nil
}

// Decode decodes one lossless JPEG frame (from SOI to EOI).
func Decode(data []byte) (*Image, error) {
	d := decoder{data: data}
	pos, err := d.readHeader()
	if err != nil {
		return nil, err
	}
	f := d.frame
	n := f.width * f.height * len(f.comps)
	// Every sample costs at least one bit of entropy-coded data, so a
	// stream shorter than that cannot be valid: reject it before
	// allocating the frame.
	if (len(data)-pos)*8 < n {
		return nil, corrupt("%d bytes cannot hold %d samples", len(data)-pos, n)
	}
	d.pix = make([]uint16, n)
	for {
		code, at, ok := nextMarker(data, pos)
		if !ok {
			break // missing EOI: accepted if every component was decoded
		}
		if err := classify(code); err != nil {
			return nil, err
		}
		if code == mEOI {
			break
		}
		switch code {
		case mSOI:
			return nil, corrupt("unexpected SOI")
		case mSOF3:
			return nil, unsupported("more than one frame")
		case mTEM:
			pos = at + 2
			continue
		}
		if code >= mRST0 && code <= mRST7 {
			pos = at + 2 // stray restart marker: ignored like libjpeg
			continue
		}
		p, next, err := segment(data, at)
		if err != nil {
			return nil, err
		}
		switch code {
		case mDHT:
			err = d.parseDHT(p)
		case mDRI:
			err = d.parseDRI(p)
		case mSOS:
			next, err = d.decodeScan(p, next)
		}
		if err != nil {
			return nil, err
		}
		pos = next
	}
	for i, c := range f.comps {
		if !c.done {
			return nil, corrupt("no scan for component %d (id %d)", i, c.id)
		}
	}
	return &Image{
		Width:      f.width,
		Height:     f.height,
		Components: len(f.comps),
		Precision:  f.precision,
		Pix:        d.pix,
	}, nil
}

func (d *decoder) parseDRI(p []byte) error {
	if len(p) != 2 {
		return corrupt("DRI length %d", len(p)+2)
	}
	d.restart = int(p[0])<<8 | int(p[1])
	return nil
}

// parseDHT reads one or more Huffman tables. Class 1 (AC) tables are
// meaningless in lossless mode: validated and ignored.
func (d *decoder) parseDHT(p []byte) error {
	for len(p) > 0 {
		if len(p) < 17 {
			return corrupt("short DHT segment")
		}
		tc, th := p[0]>>4, p[0]&15
		if tc > 1 || th > 3 {
			return corrupt("bad Huffman table class %d / id %d", tc, th)
		}
		var counts [17]int
		total := 0
		for l := 1; l <= 16; l++ {
			counts[l] = int(p[l])
			total += counts[l]
		}
		if total > 256 || len(p) < 17+total {
			return corrupt("bad Huffman table size %d", total)
		}
		vals := p[17 : 17+total]
		p = p[17+total:]
		if tc == 1 {
			continue
		}
		t := d.tables[th]
		if t == nil {
			t = new(huffTable)
			d.tables[th] = t
		}
		if err := t.build(&counts, vals); err != nil {
			return err
		}
	}
	return nil
}

// decodeScan parses a scan header and decodes the entropy-coded data that
// starts at pos. It returns the position where marker parsing resumes.
func (d *decoder) decodeScan(p []byte, pos int) (int, error) {
	f := d.frame
	if len(p) < 1 {
		return 0, corrupt("short SOS segment")
	}
	ns := int(p[0])
	if ns < 1 || ns > len(f.comps) || len(p) != 4+2*ns {
		return 0, corrupt("bad SOS segment (%d components, length %d)", ns, len(p)+2)
	}
	s := scan{
		pix:    d.pix,
		width:  f.width,
		height: f.height,
		stride: len(f.comps),
		ns:     ns,
	}
	seen := 0
	for i := range ns {
		cs, tbl := p[1+2*i], p[2+2*i]>>4
		ci := -1
		for j, c := range f.comps {
			if c.id == cs {
				ci = j
				break
			}
		}
		if ci < 0 || seen&(1<<ci) != 0 {
			return 0, corrupt("bad scan component id %d", cs)
		}
		seen |= 1 << ci
		if tbl > 3 || d.tables[tbl] == nil {
			return 0, corrupt("scan uses undefined Huffman table %d", tbl)
		}
		t := d.tables[tbl]
		if !t.lossless {
			return 0, corrupt("Huffman table %d has symbols above 16", tbl)
		}
		s.comps[i] = ci
		s.tables[i] = t
	}
	ss, al := int(p[1+2*ns]), int(p[3+2*ns]&15)
	// Se (p[2+2*ns]) and Ah (p[3+2*ns]>>4) have no meaning here; libjpeg
	// does not check them either.
	if ss < 1 || ss > 7 {
		return 0, corrupt("predictor selection value %d", ss)
	}
	if al >= f.precision {
		return 0, corrupt("point transform %d with precision %d", al, f.precision)
	}
	if d.restart%f.width != 0 {
		// libjpeg (so DCMTK) rejects these too; where such an interval
		// would start in mid-line, prediction is not clearly defined.
		return 0, unsupported("restart interval %d is not a multiple of the line length %d", d.restart, f.width)
	}
	s.predictor = ss
	s.pt = al
	s.precision = f.precision
	s.restart = d.restart
	s.br = bitReader{data: d.data, pos: pos}
	if err := s.decode(); err != nil {
		return 0, err
	}
	for i := range ns {
		f.comps[s.comps[i]].done = true
	}
	s.finish()
	return s.br.pos, nil
}
