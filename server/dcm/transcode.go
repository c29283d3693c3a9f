package dcm

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/suyashkumar/dicom/pkg/tag"
)

// Transcoding to explicit VR little endian is hand-written: the library would have to load the
// whole file (pixel data included) and its writer does not keep values it reads as raw strings
// (OF, OD, SV, UV) intact. This streams element by element.

// CanTranscodeToExplicitLE reports whether a stored syntax can be rewritten as explicit VR
// little endian without an image codec. PS3.18 8.7.3 does not allow implicit VR little endian
// and explicit VR big endian on the web, and makes explicit VR little endian the default.
func CanTranscodeToExplicitLE(tsUID string) bool {
	switch tsUID {
	case ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLE:
		return true
	}
	return false
}

// TranscodeToExplicitLE writes a Part 10 file stored in implicit VR little endian, explicit VR
// big endian or deflated explicit VR little endian to w as explicit VR little endian.
// Sequences and items are written with undefined length and group lengths are dropped, so no
// length needs recomputing.
func TranscodeToExplicitLE(w io.Writer, src io.ReaderAt, size int64) error {
	return transcode(w, src, size, nil, nil)
}

// NativePixels is the decoded pixel data that replaces an instance's encapsulated Pixel Data in
// TranscodeDecoded. The decoder lives with the caller (server/render): this package only
// rewrites the data set around it.
type NativePixels struct {
	// Frames is the number of frames; FrameLength the bytes of one decoded frame.
	Frames      int
	FrameLength int64
	// BitsAllocated of the decoded pixels: Pixel Data is OW above 8, OB otherwise (PS3.5 8.2).
	BitsAllocated int
	// Frame returns decoded frame i (from 0): FrameLength bytes, little endian, interleaved.
	Frame func(i int) ([]byte, error)
	// Attributes replace top-level attributes of the same tag, or are added: what the decoding
	// changed (Photometric Interpretation, Planar Configuration, Lossy Image Compression...).
	Attributes []Attribute
}

// Attribute is one top-level data element value, encoded explicit VR little endian and padded
// to even length.
type Attribute struct {
	Tag   tag.Tag
	VR    string
	Value []byte
}

// CSAttribute is a code string (CS) attribute.
func CSAttribute(t tag.Tag, v string) Attribute {
	b := []byte(v)
	if len(b)%2 == 1 {
		b = append(b, ' ')
	}
	return Attribute{Tag: t, VR: "CS", Value: b}
}

// USAttribute is an unsigned short (US) attribute.
func USAttribute(t tag.Tag, v uint16) Attribute {
	return Attribute{Tag: t, VR: "US", Value: binary.LittleEndian.AppendUint16(nil, v)}
}

// ErrTooLargeForNative: the decoded pixel data would not fit a 32-bit value length; PS3.18
// 8.7.8 note 1 answers such a request with 406.
var ErrTooLargeForNative = errors.New("decoded pixel data is longer than a native Pixel Data value can be")

// TranscodeDecoded writes a Part 10 file with encapsulated (compressed) pixel data to w as
// explicit VR little endian with the native pixel data px gives: the meta information's
// Transfer Syntax UID changed, the Extended Offset Table dropped, px.Attributes set, every
// other element as stored (the SOP Instance UID included), as DCMTK's dcmdrle and dcmdjpeg do.
func TranscodeDecoded(w io.Writer, src io.ReaderAt, size int64, px *NativePixels) error {
	if px == nil || px.Frames < 1 || px.FrameLength < 1 || px.Frame == nil {
		return fmt.Errorf("transcoding: no decoded pixel data")
	}
	if px.FrameLength > (undefinedLength-1)/int64(px.Frames) {
		return ErrTooLargeForNative
	}
	return transcode(w, src, size, px, nil)
}

// EncapsulatedPixels is the compressed pixel data that replaces an instance's native Pixel
// Data in TranscodeEncapsulated (the encoder lives with the caller, as in TranscodeDecoded).
type EncapsulatedPixels struct {
	// TransferSyntaxUID names the compression; the data set stays explicit VR little endian.
	TransferSyntaxUID string
	// Frames are the compressed frames, one fragment each, of even length (PS3.5 A.4).
	Frames [][]byte
	// Attributes replace top-level attributes of the same tag, or are added.
	Attributes []Attribute
}

// TranscodeEncapsulated writes a Part 10 file with native pixel data in little endian to w
// with px as its encapsulated Pixel Data (PS3.5 A.4): a Basic Offset Table, one fragment per
// frame, the meta information's Transfer Syntax UID changed, px.Attributes set, every other
// element as stored (the SOP Instance UID included), as DCMTK's dcmcjpls does.
func TranscodeEncapsulated(w io.Writer, src io.ReaderAt, size int64, px *EncapsulatedPixels) error {
	if px == nil || len(px.Frames) < 1 || px.TransferSyntaxUID == "" || !Encapsulated(px.TransferSyntaxUID) {
		return fmt.Errorf("transcoding: no encapsulated pixel data")
	}
	var total int64
	for i, f := range px.Frames {
		if len(f)%2 == 1 {
			return fmt.Errorf("transcoding: frame %d has odd length %d", i+1, len(f))
		}
		total += int64(len(f)) + 8
	}
	if total > undefinedLength-1 {
		return fmt.Errorf("transcoding: %d bytes of fragments are too many for a Basic Offset Table", total)
	}
	return transcode(w, src, size, nil, px)
}

func transcode(w io.Writer, src io.ReaderAt, size int64, px *NativePixels, enc *EncapsulatedPixels) error {
	meta, datasetOffset, err := ReadMeta(src, size)
	if err != nil {
		return err
	}
	ts, err := lookupTransferSyntax(meta.TransferSyntaxUID)
	if err != nil {
		return err
	}
	if px == nil && enc == nil && !CanTranscodeToExplicitLE(ts.uid) {
		return fmt.Errorf("transcoding from %s is not supported", ts.uid)
	}
	if enc != nil && (ts.uid != ImplicitVRLittleEndian && ts.uid != ExplicitVRLittleEndian) {
		return fmt.Errorf("transcoding: compressing pixel data stored as %s is not supported (little endian only)", ts.uid)
	}
	if px != nil && !Encapsulated(ts.uid) {
		return fmt.Errorf("transcoding: %s does not encapsulate its pixel data", ts.uid)
	}
	r := &reader{src: src, size: size, pos: datasetOffset}
	if ts.deflated {
		inflated := flate.NewReader(io.NewSectionReader(src, datasetOffset, size-datasetOffset))
		r = &reader{stream: &capReader{r: inflated, left: maxInflatedSize}, pos: datasetOffset, base: datasetOffset}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	outTS := ExplicitVRLittleEndian
	if enc != nil {
		outTS = enc.TransferSyntaxUID
	}
	if err := writeMeta(bw, meta, outTS); err != nil {
		return err
	}
	t := &transcoder{
		walker: walker{r: r, bo: ts.byteOrder, implicit: ts.implicit},
		w:      bw,
		src:    src,
		swap:   ts.byteOrder == binary.BigEndian,
		px:     px,
		enc:    enc,
	}
	switch {
	case px != nil:
		t.set = append([]Attribute(nil), px.Attributes...)
	case enc != nil:
		t.set = append([]Attribute(nil), enc.Attributes...)
	}
	sort.Slice(t.set, func(i, j int) bool { return tagNumber(t.set[i].Tag) < tagNumber(t.set[j].Tag) })
	if err := t.dataset(0, -1, false); err != nil {
		return err
	}
	if px != nil && !t.pixelsWritten {
		return malformed("no encapsulated Pixel Data to decode")
	}
	if enc != nil && !t.pixelsWritten {
		return malformed("no native Pixel Data to compress")
	}
	t.flushSet(^uint32(0))
	return bw.Flush()
}

// Encapsulated Pixel Data Value Total Length (7FE0,0003), dropped with the fragments.
const elemEncapsulatedLength = 0x0003

func tagNumber(t tag.Tag) uint32 { return uint32(t.Group)<<16 | uint32(t.Element) }

// writeMeta writes the preamble, "DICM" and the meta group with a new transfer syntax.
func writeMeta(w *bufio.Writer, meta *Meta, tsUID string) error {
	return writeMetaWith(w, meta, map[uint16]string{0x0010: tsUID})
}

// writeMetaWith writes the preamble, "DICM" and the meta group with the UI values of the
// elements in repl (group 0002, by element number) replaced.
func writeMetaWith(w *bufio.Writer, meta *Meta, repl map[uint16]string) error {
	var group []byte
	le := binary.LittleEndian
	pos := 0
	b := meta.Bytes
	for pos+8 <= len(b) {
		element := le.Uint16(b[pos+2:])
		vr := string(b[pos+4 : pos+6])
		length, hl := int(le.Uint16(b[pos+6:])), 8
		if longVR(vr) {
			length, hl = int(le.Uint32(b[pos+8:])), 12
		}
		if pos+hl+length > len(b) {
			return malformed("file meta information truncated")
		}
		uid, replaced := repl[element]
		switch {
		case element == 0x0000:
		case replaced:
			v := []byte(uid)
			if len(v)%2 == 1 {
				v = append(v, 0)
			}
			group = le.AppendUint16(group, 0x0002)
			group = le.AppendUint16(group, element)
			group = append(group, 'U', 'I')
			group = le.AppendUint16(group, uint16(len(v)))
			group = append(group, v...)
		default:
			group = append(group, b[pos:pos+hl+length]...)
		}
		pos += hl + length
	}
	w.Write(make([]byte, 128))
	w.WriteString("DICM")
	var gl []byte
	gl = le.AppendUint16(gl, 0x0002)
	gl = le.AppendUint16(gl, 0x0000)
	gl = append(gl, 'U', 'L', 4, 0)
	gl = le.AppendUint32(gl, uint32(len(group)))
	w.Write(gl)
	_, err := w.Write(group)
	return err
}

type transcoder struct {
	walker
	w    *bufio.Writer
	src  io.ReaderAt
	swap bool // source is big endian

	px            *NativePixels
	enc           *EncapsulatedPixels
	set           []Attribute // px.Attributes or enc.Attributes by tag, not yet written
	pixelsWritten bool
}

// flushSet writes the attributes to set that come before tag number before.
func (t *transcoder) flushSet(before uint32) {
	for len(t.set) > 0 && tagNumber(t.set[0].Tag) < before {
		a := t.set[0]
		t.set = t.set[1:]
		t.header(a.Tag.Group, a.Tag.Element, a.VR, uint32(len(a.Value)))
		t.w.Write(a.Value)
	}
}

func (t *transcoder) header(g, e uint16, vr string, length uint32) {
	le := binary.LittleEndian
	var h [12]byte
	le.PutUint16(h[0:], g)
	le.PutUint16(h[2:], e)
	if g == groupItem {
		le.PutUint32(h[4:], length)
		t.w.Write(h[:8])
		return
	}
	copy(h[4:6], vr)
	if longVR(vr) {
		le.PutUint32(h[8:], length)
		t.w.Write(h[:12])
		return
	}
	le.PutUint16(h[6:], uint16(length))
	t.w.Write(h[:8])
}

// dataset copies elements until end of input, until limit bytes, or until an item delimiter.
func (t *transcoder) dataset(depth int, limit int64, delimited bool) error {
	if depth > maxDepth {
		return malformed("sequences nested deeper than %d", maxDepth)
	}
	end := int64(-1)
	if limit >= 0 {
		end = t.r.pos + limit
	}
	for {
		if end >= 0 && t.r.pos >= end {
			return nil
		}
		if end < 0 && !delimited && t.r.atEnd() {
			return nil
		}
		h, err := t.walker.header()
		if err != nil {
			return err
		}
		if h.group == groupItem {
			if h.element == elemItemDelim && delimited {
				return nil
			}
			return malformed("unexpected item tag (FFFE,%04X)", h.element)
		}
		if depth == 0 && (t.px != nil || t.enc != nil) {
			done, err := t.decodedElement(h)
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		if err := t.element(depth, h); err != nil {
			return err
		}
	}
}

// decodedElement handles the top-level elements that change when pixel data is decoded or
// compressed.
func (t *transcoder) decodedElement(h header) (bool, error) {
	n := uint32(h.group)<<16 | uint32(h.element)
	t.flushSet(n)
	switch {
	case len(t.set) > 0 && tagNumber(t.set[0].Tag) == n:
		t.flushSet(n + 1)
		return true, t.skipValue(h)
	case t.enc != nil && h.group == groupPixel && h.element == elemPixelData && h.length != undefinedLength:
		return true, t.encapsulatedPixelData(h)
	case t.enc != nil:
		return false, nil
	case h.group == groupPixel && h.element == elemPixelData && h.length == undefinedLength:
		return true, t.nativePixelData()
	case h.group == groupPixel && (h.element == elemExtendedOffset || h.element == elemExtendedLength || h.element == elemEncapsulatedLength):
		// Offsets into fragments that are no longer there (PS3.5 A.4).
		return true, t.skipValue(h)
	}
	return false, nil
}

func (t *transcoder) skipValue(h header) error {
	if h.vr == "SQ" || h.length == undefinedLength {
		return malformed("(%04X,%04X) replaced by a decoded value is a sequence", h.group, h.element)
	}
	return t.r.skip(int64(h.length))
}

// nativePixelData skips the encapsulated Pixel Data of the input and writes the decoded frames.
func (t *transcoder) nativePixelData() error {
	for {
		ih, err := t.itemHeader()
		if err != nil {
			return err
		}
		if ih.element == elemSequenceDelim {
			break
		}
		if ih.element != elemItem || ih.length == undefinedLength {
			return malformed("bad item in encapsulated pixel data")
		}
		if err := t.r.skip(int64(ih.length)); err != nil {
			return err
		}
	}
	px := t.px
	total := int64(px.Frames) * px.FrameLength
	vr := "OB"
	if px.BitsAllocated > 8 {
		vr = "OW"
	}
	t.header(groupPixel, elemPixelData, vr, uint32(total+total%2))
	for i := range px.Frames {
		b, err := px.Frame(i)
		if err != nil {
			return fmt.Errorf("decoding frame %d: %w", i+1, err)
		}
		if int64(len(b)) != px.FrameLength {
			return fmt.Errorf("decoded frame %d has %d bytes, want %d", i+1, len(b), px.FrameLength)
		}
		if _, err := t.w.Write(b); err != nil {
			return err
		}
	}
	if total%2 == 1 {
		t.w.WriteByte(0) // values are of even length (PS3.5 7.1.1)
	}
	t.pixelsWritten = true
	return nil
}

// encapsulatedPixelData skips the native Pixel Data of the input and writes the compressed
// frames: a Basic Offset Table with each frame's item offset, then one fragment per frame.
func (t *transcoder) encapsulatedPixelData(h header) error {
	if err := t.r.skip(int64(h.length)); err != nil {
		return err
	}
	frames := t.enc.Frames
	t.header(groupPixel, elemPixelData, "OB", undefinedLength)
	t.header(groupItem, elemItem, "", uint32(4*len(frames)))
	var off uint32
	for _, f := range frames {
		t.w.Write(binary.LittleEndian.AppendUint32(nil, off))
		off += 8 + uint32(len(f))
	}
	for _, f := range frames {
		t.header(groupItem, elemItem, "", uint32(len(f)))
		if _, err := t.w.Write(f); err != nil {
			return err
		}
	}
	t.header(groupItem, elemSequenceDelim, "", 0)
	t.pixelsWritten = true
	return nil
}

func (t *transcoder) element(depth int, h header) error {
	if h.element == 0x0000 {
		return t.r.skip(int64(h.length)) // group lengths would be wrong after rewriting
	}
	if h.group == groupPixel && h.element == elemPixelData && h.length == undefinedLength {
		if t.px != nil {
			return malformed("encapsulated Pixel Data in a sequence item (an icon) is not decoded")
		}
		return malformed("encapsulated pixel data in an uncompressed transfer syntax")
	}
	if h.vr == "SQ" || (h.length == undefinedLength && (h.vr == "UN" || h.vr == "")) {
		return t.sequence(depth, h)
	}
	if h.length == undefinedLength {
		return malformed("undefined length on (%04X,%04X) with VR %s", h.group, h.element, h.vr)
	}
	vr := h.vr
	if h.group == groupPixel && h.element == elemPixelData && vr != "OB" {
		vr = "OW"
	}
	if !longVR(vr) && h.length > 0xFFFF {
		vr = "UN" // a value too long for its VR's 16-bit length field (PS3.5 6.2.2)
	}
	t.header(h.group, h.element, vr, h.length)
	if depth == 0 && h.group == 0x0028 && h.element == 0x0103 && h.length == 2 {
		v, err := t.r.fill(2)
		if err != nil {
			return err
		}
		t.signedPixels = t.bo.Uint16(v) == 1
	}
	width := 0
	if t.swap {
		width = swapWidth(vr)
	}
	return t.copyValue(int64(h.length), width)
}

// copyValue copies the next n bytes of the input, reversing width-byte words.
func (t *transcoder) copyValue(n int64, width int) error {
	if t.r.stream == nil {
		if err := copySwapped(t.w, io.NewSectionReader(t.src, t.r.pos, n), n, width); err != nil {
			return err
		}
		return t.r.skip(n)
	}
	// A deflated data set is little endian: nothing to swap.
	for n > 0 {
		b, err := t.r.read(int(min(n, 64<<10)))
		if err != nil {
			return err
		}
		if _, err := t.w.Write(b); err != nil {
			return err
		}
		n -= int64(len(b))
	}
	return nil
}

func (t *transcoder) sequence(depth int, h header) error {
	if h.vr == "UN" && !t.implicit {
		// Items of a UN sequence are implicit VR little endian (PS3.5 6.2.2).
		bo, swap := t.bo, t.swap
		t.implicit, t.bo, t.swap = true, binary.LittleEndian, false
		defer func() { t.implicit, t.bo, t.swap = false, bo, swap }()
	}
	t.header(h.group, h.element, "SQ", undefinedLength)
	end := int64(-1)
	if h.length != undefinedLength {
		end = t.r.pos + int64(h.length)
	}
	for {
		if end >= 0 && t.r.pos >= end {
			break
		}
		ih, err := t.itemHeader()
		if err != nil {
			return err
		}
		if ih.element == elemSequenceDelim && end < 0 {
			break
		}
		if ih.element != elemItem {
			return malformed("expected an item in a sequence")
		}
		t.header(groupItem, elemItem, "", undefinedLength)
		if ih.length == undefinedLength {
			err = t.dataset(depth+1, -1, true)
		} else {
			err = t.dataset(depth+1, int64(ih.length), false)
		}
		if err != nil {
			return err
		}
		t.header(groupItem, elemItemDelim, "", 0)
	}
	t.header(groupItem, elemSequenceDelim, "", 0)
	return nil
}

// SwapWidth is the byte width to reverse when a VR's values change endianness (0: none).
func SwapWidth(vr string) int { return swapWidth(vr) }

func swapWidth(vr string) int {
	switch vr {
	case "US", "SS", "OW", "AT":
		return 2
	case "UL", "SL", "FL", "OF", "OL":
		return 4
	case "FD", "OD", "SV", "UV", "OV":
		return 8
	}
	return 0
}

func copySwapped(w io.Writer, r io.Reader, n int64, width int) error {
	if width == 0 {
		_, err := io.CopyN(w, r, n)
		return err
	}
	if n%int64(width) != 0 {
		return malformed("value of %d bytes is not a whole number of %d-byte values", n, width)
	}
	_, err := io.CopyN(w, &swapReader{r: r, width: width}, n)
	return err
}

// SwapReader reverses each width-byte word as bytes stream through (big to little endian).
func SwapReader(r io.Reader, width int) io.Reader { return &swapReader{r: r, width: width} }

type swapReader struct {
	r       io.Reader
	width   int
	buf     []byte
	pending []byte // swapped bytes not yet returned (when the caller's buffer was short)
}

func (s *swapReader) Read(p []byte) (int, error) {
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	n := len(p) / s.width * s.width
	if n == 0 {
		n = s.width // read one word and hand it out in pieces
	}
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	m, err := io.ReadFull(s.r, s.buf[:n])
	m = m / s.width * s.width // a trailing partial word is dropped: the value was malformed
	for i := 0; i+s.width <= m; i += s.width {
		for j := 0; j < s.width/2; j++ {
			s.buf[i+j], s.buf[i+s.width-1-j] = s.buf[i+s.width-1-j], s.buf[i+j]
		}
	}
	c := copy(p, s.buf[:m])
	s.pending = s.buf[c:m]
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	if c > 0 && err == io.EOF {
		err = nil
	}
	return c, err
}

// RewriteMeta writes src (a Part 10 file whose meta information names another SOP Instance
// than its data set: Parse answers ErrMetaMismatch) to w with the data set's SOP Instance and
// SOP Class UIDs in the meta information, the data set unchanged. Modalities and converters
// write such files, and a clinic cannot fix its modality: the data set is the instance (PS3.10
// 7.1 makes the meta information describe it), so it is taken as the truth, as Orthanc does.
// It returns the instance as the data set describes it.
func RewriteMeta(w io.Writer, src io.ReaderAt, size int64) (*Instance, error) {
	in, err := parse(src, size, true)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	repl := map[uint16]string{0x0003: in.SOPInstanceUID}
	if in.SOPClassUID != "" {
		repl[0x0002] = in.SOPClassUID
	}
	if err := writeMetaWith(bw, in.Meta, repl); err != nil {
		return nil, err
	}
	if _, err := io.Copy(bw, io.NewSectionReader(src, in.Layout.DatasetOffset, size-in.Layout.DatasetOffset)); err != nil {
		return nil, fmt.Errorf("copying the data set: %w", err)
	}
	return in, bw.Flush()
}
