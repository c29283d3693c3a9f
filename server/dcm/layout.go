package dcm

import (
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// pixelValueTags are the "US or SS" attributes that hold pixel values and so follow Pixel
// Representation (PS3.5 Annex A; LUT descriptors stay US, as DCMTK writes them).
var pixelValueTags = map[uint32]bool{
	0x00280104: true, 0x00280105: true, 0x00280106: true, 0x00280107: true, 0x00280108: true,
	0x00280109: true, 0x00280110: true, 0x00280111: true, 0x00280120: true, 0x00280121: true,
	0x00409211: true, 0x00409216: true, 0x00603004: true, 0x00603006: true,
}

func usOrSS(t tag.Tag) bool { return pixelValueTags[uint32(t.Group)<<16|uint32(t.Element)] }

// implicitVR is the VR an implicit-VR data set gives a tag: the dictionary's first, UN when unknown.
func implicitVR(t tag.Tag) string {
	if t == tag.PixelData || t == tag.OverlayData {
		return "OW"
	}
	if t.Element == 0x0000 {
		return "UL" // group length
	}
	if t.Group%2 == 1 && t.Element >= 0x0010 && t.Element <= 0x00FF {
		return "LO" // private creator (PS3.5 7.8.1)
	}
	info, err := tag.Find(t)
	if err != nil || len(info.VRs) == 0 {
		return "UN"
	}
	return info.VRs[0]
}

// The layout walker is hand-written because github.com/suyashkumar/dicom does not report
// where in the file an element's value lies, and serving frames and bulk data by byte range
// (without re-parsing a 300 MB file per request) needs exactly that. It only walks element
// headers and skips values; value decoding is left to the library.

// Span is a byte range of a stored file.
type Span struct {
	Offset int64 `json:"o"`
	Length int64 `json:"n"`
}

// Layout is where things are in a Part 10 file.
type Layout struct {
	// DatasetOffset is where the data set starts (after the File Meta Information).
	DatasetOffset int64
	// Deflated means offsets past DatasetOffset are in the inflated stream (PS3.5 A.5).
	Deflated bool
	// Charset is the value of the top-level Specific Character Set, if present.
	Charset *Span
	// Bulk holds the value spans of binary elements (OB, OW, OF, OD, OL, OV, SV, UV, UN) at
	// any depth, keyed by BulkPath.
	Bulk map[string]Span
	// Pixel is the top-level Pixel Data, if present.
	Pixel *PixelLayout
	// Patches are byte changes applied to the view handed to the library, for encodings it
	// misreads (PS3.5 VRs it does not know the length format of, UN sequences); see libraryView.
	Patches []Patch
	// TrueVR gives the VR of elements whose VR the library was shown patched, by BulkPath.
	TrueVR map[string]string
	// BulkVR gives the VR of binary elements of big endian files (for byte-swapping on output).
	BulkVR map[string]string
	// ExtendedOffsets and ExtendedLengths are the top-level Extended Offset Table and its lengths
	// (7FE0,0001)/(7FE0,0002), PS3.5 A.4.
	ExtendedOffsets *Span
	ExtendedLengths *Span
}

// Patch replaces len(Data) bytes at Offset in the library's view of a file.
type Patch struct {
	Offset int64
	Data   []byte
}

// PixelLayout is where the top-level Pixel Data value and its fragments are.
type PixelLayout struct {
	Encapsulated bool
	// VR is OB or OW as encoded (implicit VR: OW for native data).
	VR string
	// Element spans the whole element, header included.
	Element Span
	// Value is the whole value (native) or everything after the header (encapsulated).
	Value Span
	// BasicOffsetTable is the value of the first item of encapsulated pixel data.
	BasicOffsetTable Span
	// Fragments are the values of the fragment items; Items are where each item starts.
	Fragments  []Span
	ItemStarts []int64
}

// ErrMalformed is wrapped by every structural error in a file.
var ErrMalformed = errors.New("malformed DICOM")

// ErrMetaMismatch: the File Meta Information names another SOP Instance than the data set.
var ErrMetaMismatch = fmt.Errorf("%w: the meta information and the data set name different SOP Instances", ErrMalformed)

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// BulkPath names an element by its position: "7FE00010" at top level,
// "00880200.0.7FE00010" for an element in item 0 of a sequence.
func BulkPath(parent string, group, element uint16) string {
	t := fmt.Sprintf("%04X%04X", group, element)
	if parent == "" {
		return t
	}
	return parent + "." + t
}

func itemPath(seqPath string, item int) string { return seqPath + "." + strconv.Itoa(item) }

// Limits that keep a hostile file from exhausting the server: sequence nesting (stack),
// element count (the library keeps every element in memory; the largest enhanced multi-frame
// objects seen have a few hundred thousand), and the inflated size of a deflated data set
// (a deflate stream can expand ~1000 times).
const (
	maxDepth        = 32
	maxElements     = 2_000_000
	maxInflatedSize = 512 << 20
)

// reader is a position-tracking reader over a file with a read-ahead window.
type reader struct {
	src    io.ReaderAt
	size   int64
	base   int64 // offset of buf[0]
	buf    []byte
	pos    int64
	stream io.Reader // deflated: sequential source (src is nil)
}

func (r *reader) fill(n int) ([]byte, error) {
	if r.stream != nil {
		// Deflated data sets are walked sequentially; keep at most what is asked for.
		if r.pos < r.base || r.pos > r.base+int64(len(r.buf)) {
			return nil, malformed("deflated stream read out of order")
		}
		r.buf = r.buf[r.pos-r.base:]
		r.base = r.pos
		for len(r.buf) < n {
			chunk := make([]byte, max(n-len(r.buf), 4096))
			m, err := r.stream.Read(chunk)
			r.buf = append(r.buf, chunk[:m]...)
			if err != nil {
				if len(r.buf) >= n {
					break
				}
				if errors.Is(err, ErrMalformed) {
					return nil, err
				}
				return nil, malformed("truncated at offset %d", r.pos)
			}
		}
		return r.buf[:n], nil
	}
	if r.pos < r.base || r.pos+int64(n) > r.base+int64(len(r.buf)) {
		if r.pos+int64(n) > r.size {
			return nil, malformed("truncated at offset %d (need %d bytes, file is %d)", r.pos, n, r.size)
		}
		want := max(n, 64<<10)
		if int64(want) > r.size-r.pos {
			want = int(r.size - r.pos)
		}
		if cap(r.buf) < want {
			r.buf = make([]byte, want)
		}
		r.buf = r.buf[:want]
		if _, err := r.src.ReadAt(r.buf, r.pos); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading at %d: %w", r.pos, err)
		}
		r.base = r.pos
	}
	off := r.pos - r.base
	return r.buf[off : off+int64(n)], nil
}

func (r *reader) read(n int) ([]byte, error) {
	b, err := r.fill(n)
	if err == nil {
		r.pos += int64(n)
	}
	return b, err
}

func (r *reader) skip(n int64) error {
	if r.stream != nil {
		for n > 0 {
			step := min(n, 1<<20)
			if _, err := r.read(int(step)); err != nil {
				return err
			}
			n -= step
		}
		return nil
	}
	if n < 0 || r.pos+n > r.size {
		return malformed("value of %d bytes at offset %d runs past the end of the file (%d bytes)", n, r.pos, r.size)
	}
	r.pos += n
	return nil
}

func (r *reader) atEnd() bool {
	if r.stream != nil {
		_, err := r.fill(1)
		return err != nil
	}
	return r.pos >= r.size
}

type walker struct {
	elements int
	origBO   binary.ByteOrder // the file's byte order (bo changes inside UN sequences)
	// signedPixels is set once a Pixel Representation of 1 was seen (implicit VR only).
	signedPixels bool
	r            *reader
	bo           binary.ByteOrder
	implicit     bool
	layout       *Layout
}

const undefinedLength = 0xFFFFFFFF

type header struct {
	group, element uint16
	vr             string
	length         uint32
	vrPos          int64 // where the explicit VR is, for patching; 0 when implicit
}

// Tags the walker needs by number; elsewhere tags are named through the library.
const (
	groupItem          = 0xFFFE
	elemItem           = 0xE000
	elemItemDelim      = 0xE00D
	elemSequenceDelim  = 0xE0DD
	groupPixel         = 0x7FE0
	elemPixelData      = 0x0010
	elemExtendedOffset = 0x0001
	elemExtendedLength = 0x0002
)

func (w *walker) header() (header, error) {
	b, err := w.r.read(8)
	if err != nil {
		return header{}, err
	}
	h := header{group: w.bo.Uint16(b[0:]), element: w.bo.Uint16(b[2:])}
	if h.group == groupItem || w.implicit {
		// Items and delimiters are always implicit (PS3.5 7.5).
		h.length = w.bo.Uint32(b[4:])
		if h.group != groupItem {
			h.vr = implicitVR(tag.Tag{Group: h.group, Element: h.element})
			if h.vr == "US" && w.signedPixels && usOrSS(tag.Tag{Group: h.group, Element: h.element}) {
				h.vr = "SS" // "US or SS" attributes follow Pixel Representation (PS3.5 Annex A)
			}
		}
		return h, nil
	}
	h.vr = string(b[4:6])
	h.vrPos = w.r.pos - 4
	if longVR(h.vr) {
		l, err := w.r.read(4)
		if err != nil {
			return header{}, err
		}
		h.length = w.bo.Uint32(l)
		return h, nil
	}
	if !validVR(h.vr) {
		return header{}, malformed("invalid VR %q for (%04X,%04X) at offset %d", h.vr, h.group, h.element, w.r.pos-8)
	}
	h.length = uint32(w.bo.Uint16(b[6:]))
	return h, nil
}

// walk reads elements until end of input (limit < 0), until limit bytes are consumed, or until
// an Item Delimitation Item (delimited=true).
func (w *walker) walk(path string, depth int, limit int64, delimited bool) error {
	if depth > maxDepth {
		return malformed("sequences nested deeper than %d", maxDepth)
	}
	end := int64(-1)
	if limit >= 0 {
		end = w.r.pos + limit
	}
	for {
		if end >= 0 && w.r.pos >= end {
			if w.r.pos > end {
				return malformed("element overruns its item at offset %d", w.r.pos)
			}
			return nil
		}
		if end < 0 && !delimited && w.r.atEnd() {
			return nil
		}
		start := w.r.pos
		h, err := w.header()
		if err != nil {
			return err
		}
		if h.group == groupItem {
			if h.element == elemItemDelim && delimited {
				return nil
			}
			return malformed("unexpected item tag (FFFE,%04X) at offset %d", h.element, start)
		}
		if w.elements++; w.elements > maxElements {
			return malformed("more than %d elements", maxElements)
		}
		if err := w.element(path, depth, h, start); err != nil {
			return err
		}
	}
}

func (w *walker) element(path string, depth int, h header, start int64) error {
	p := BulkPath(path, h.group, h.element)
	top := path == ""
	switch {
	case top && h.group == groupPixel && h.element == elemPixelData:
		return w.pixelData(h, start)
	case h.vr == "SQ" || (h.length == undefinedLength && (h.vr == "UN" || h.vr == "")):
		return w.sequence(p, depth, h)
	case h.length == undefinedLength:
		return malformed("undefined length on (%04X,%04X) with VR %s", h.group, h.element, h.vr)
	}
	span := Span{w.r.pos, int64(h.length)}
	if h.vrPos > 0 && (h.vr == "OV" || h.vr == "SV" || h.vr == "UV") {
		// suyashkumar/dicom v1.1.0 reads these with a 16-bit length; shown as UN (the same
		// header layout) it reads the bytes, and TrueVR restores the VR in our output.
		w.layout.Patches = append(w.layout.Patches, Patch{h.vrPos, []byte("UN")})
		w.layout.TrueVR[p] = h.vr
	}
	if w.origBO == binary.BigEndian && binaryVR(h.vr) {
		w.layout.BulkVR[p] = h.vr
	}
	if top && h.group == 0x0008 && h.element == 0x0005 {
		w.layout.Charset = &span
	}
	if top && h.group == groupPixel && h.element == elemExtendedOffset {
		w.layout.ExtendedOffsets = &span
	}
	if top && h.group == groupPixel && h.element == elemExtendedLength {
		w.layout.ExtendedLengths = &span
	}
	if binaryVR(h.vr) {
		w.layout.Bulk[p] = span
	}
	return w.r.skip(int64(h.length))
}

func (w *walker) sequence(path string, depth int, h header) error {
	if h.vr == "UN" && !w.implicit {
		// A UN of undefined length is a sequence whose items are implicit VR little endian
		// (PS3.5 6.2.2). The library would read them as explicit, so it is shown a UN of
		// defined length over the same bytes, and our output carries the value as bulk data.
		start := w.r.pos
		w.implicit, w.bo = true, binary.LittleEndian
		err := w.sequenceItems(path, depth, h)
		w.implicit, w.bo = false, w.origBO
		if err != nil {
			return err
		}
		if h.length == undefinedLength && h.vrPos > 0 {
			l := make([]byte, 4)
			binary.LittleEndian.PutUint32(l, uint32(w.r.pos-start))
			if w.origBO == binary.BigEndian {
				binary.BigEndian.PutUint32(l, uint32(w.r.pos-start))
			}
			w.layout.Patches = append(w.layout.Patches, Patch{h.vrPos + 4, l})
			w.layout.Bulk[path] = Span{start, w.r.pos - start}
			w.layout.TrueVR[path] = "SQ" // see jsonEncoder.attribute
		}
		return nil
	}
	return w.sequenceItems(path, depth, h)
}

func (w *walker) sequenceItems(path string, depth int, h header) error {
	end := int64(-1)
	if h.length != undefinedLength {
		end = w.r.pos + int64(h.length)
	}
	for i := 0; ; i++ {
		if end >= 0 && w.r.pos >= end {
			if w.r.pos > end {
				return malformed("sequence item overruns sequence at offset %d", w.r.pos)
			}
			return nil
		}
		start := w.r.pos
		ih, err := w.itemHeader()
		if err != nil {
			return err
		}
		switch {
		case ih.element == elemSequenceDelim && end < 0:
			return nil
		case ih.element != elemItem:
			return malformed("expected an item in sequence at offset %d", start)
		}
		ip := itemPath(path, i)
		if ih.length == undefinedLength {
			err = w.walk(ip, depth+1, -1, true)
		} else {
			err = w.walk(ip, depth+1, int64(ih.length), false)
		}
		if err != nil {
			return err
		}
	}
}

func (w *walker) itemHeader() (header, error) {
	b, err := w.r.read(8)
	if err != nil {
		return header{}, err
	}
	h := header{group: w.bo.Uint16(b[0:]), element: w.bo.Uint16(b[2:]), length: w.bo.Uint32(b[4:])}
	if h.group != groupItem {
		return header{}, malformed("expected an item tag, found (%04X,%04X) at offset %d", h.group, h.element, w.r.pos-8)
	}
	return h, nil
}

func (w *walker) pixelData(h header, start int64) error {
	if h.length != undefinedLength {
		span := Span{w.r.pos, int64(h.length)}
		vr := h.vr
		if vr != "OB" {
			vr = "OW"
		}
		w.layout.Pixel = &PixelLayout{VR: vr, Value: span, Element: Span{start, span.Offset + span.Length - start}}
		w.layout.Bulk[BulkPath("", h.group, h.element)] = span
		return w.r.skip(int64(h.length))
	}
	px := &PixelLayout{Encapsulated: true, VR: "OB"}
	px.Value.Offset = w.r.pos
	for i := 0; ; i++ {
		start := w.r.pos
		ih, err := w.itemHeader()
		if err != nil {
			return err
		}
		if ih.element == elemSequenceDelim {
			break
		}
		if ih.element != elemItem || ih.length == undefinedLength {
			return malformed("bad item in encapsulated pixel data at offset %d", start)
		}
		span := Span{w.r.pos, int64(ih.length)}
		if i == 0 {
			px.BasicOffsetTable = span
		} else {
			px.Fragments = append(px.Fragments, span)
			px.ItemStarts = append(px.ItemStarts, start)
		}
		if err := w.r.skip(int64(ih.length)); err != nil {
			return err
		}
	}
	px.Value.Length = w.r.pos - px.Value.Offset
	px.Element = Span{start, w.r.pos - start}
	w.layout.Pixel = px
	w.layout.Bulk[BulkPath("", h.group, h.element)] = px.Value
	return nil
}

// scanLayout walks the data set of a Part 10 file whose meta information ends at datasetOffset.
func scanLayout(src io.ReaderAt, size, datasetOffset int64, ts transferSyntax) (*Layout, error) {
	l := &Layout{DatasetOffset: datasetOffset, Bulk: map[string]Span{}, TrueVR: map[string]string{}, BulkVR: map[string]string{}}
	r := &reader{src: src, size: size, pos: datasetOffset}
	if ts.deflated {
		l.Deflated = true
		// Offsets in a deflated data set count inflated bytes from the data set start.
		inflated := flate.NewReader(io.NewSectionReader(src, datasetOffset, size-datasetOffset))
		r = &reader{stream: &capReader{r: inflated, left: maxInflatedSize}, pos: datasetOffset, base: datasetOffset}
	}
	w := &walker{r: r, bo: ts.byteOrder, origBO: ts.byteOrder, implicit: ts.implicit, layout: l}
	if err := w.walk("", 0, -1, false); err != nil {
		return nil, err
	}
	return l, nil
}

func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

func binaryVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN", "SV", "UV":
		return true
	}
	return false
}

func validVR(vr string) bool {
	switch vr {
	case "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL",
		"SS", "ST", "TM", "UI", "UL", "US":
		return true
	}
	return false
}

// capReader fails once more than left bytes were read (deflate bombs).
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, malformed("deflated data set inflates to more than %d bytes", maxInflatedSize)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
