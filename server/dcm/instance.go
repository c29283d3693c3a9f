// Package dcm reads DICOM Part 10 files (PS3.10) into what Sanping stores and serves: the
// identifying attributes for the index, the DICOM JSON model (PS3.18 F.2) and where frames and
// bulk data lie in the file. Values are decoded by github.com/suyashkumar/dicom.
package dcm

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm/charset"
)

// Transfer syntaxes this package treats specially (PS3.5 A, PS3.6 A).
const (
	ImplicitVRLittleEndian  = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian  = "1.2.840.10008.1.2.1"
	DeflatedExplicitVRLE    = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian     = "1.2.840.10008.1.2.2"
	JPIPReferencedDeflate   = "1.2.840.10008.1.2.4.95"
	RLELossless             = "1.2.840.10008.1.2.5"
	maxMetaLength           = 64 << 10
	preambleAndMagicLength  = 132
	metaElementHeaderLength = 8
)

type transferSyntax struct {
	uid       string
	byteOrder binary.ByteOrder
	implicit  bool
	deflated  bool
}

func lookupTransferSyntax(uid string) (transferSyntax, error) {
	ts := transferSyntax{uid: uid, byteOrder: binary.LittleEndian}
	switch uid {
	case ImplicitVRLittleEndian:
		ts.implicit = true
	case ExplicitVRBigEndian:
		ts.byteOrder = binary.BigEndian
	case DeflatedExplicitVRLE, "1.2.840.10008.1.2.8.1":
		ts.deflated = true
	case "":
		return ts, fmt.Errorf("%w: no Transfer Syntax UID (0002,0010) in the file meta information", ErrMalformed)
	default:
		// Every other transfer syntax encodes the data set in explicit VR little endian (PS3.5 A.4).
		if !validUID(uid) {
			return ts, fmt.Errorf("%w: transfer syntax %q is not a UID", ErrMalformed, uid)
		}
	}
	return ts, nil
}

// Encapsulated reports whether a transfer syntax carries pixel data in fragments.
func Encapsulated(tsUID string) bool {
	switch tsUID {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLE,
		"1.2.840.10008.1.2.8.1", JPIPReferencedDeflate, "1.2.840.10008.1.2.4.94":
		return false
	}
	return true
}

// Meta is the File Meta Information (PS3.10 7.1) that Sanping uses.
type Meta struct {
	MediaStorageSOPClassUID    string
	MediaStorageSOPInstanceUID string
	TransferSyntaxUID          string
	// Bytes is the raw meta group, preamble excluded.
	Bytes []byte
}

// ReadMeta checks the 128-byte preamble and "DICM" prefix and reads the File Meta Information
// group. The library reads non-DICOM input "generously", so this check is ours.
func ReadMeta(src io.ReaderAt, size int64) (*Meta, int64, error) {
	if size < preambleAndMagicLength+metaElementHeaderLength {
		return nil, 0, fmt.Errorf("%w: %d bytes is too short for a DICOM file (preamble, DICM prefix and meta information)", ErrMalformed, size)
	}
	head := make([]byte, min(size, preambleAndMagicLength+maxMetaLength))
	if _, err := src.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("reading file meta information: %w", err)
	}
	if string(head[128:132]) != "DICM" {
		return nil, 0, fmt.Errorf("%w: no \"DICM\" prefix after the 128-byte preamble (PS3.10 7.1)", ErrMalformed)
	}
	m := &Meta{}
	pos := preambleAndMagicLength
	for {
		if pos+metaElementHeaderLength > len(head) {
			if int64(pos) >= size {
				break
			}
			return nil, 0, fmt.Errorf("%w: file meta information longer than %d bytes or truncated", ErrMalformed, maxMetaLength)
		}
		group := binary.LittleEndian.Uint16(head[pos:])
		if group != 0x0002 {
			break
		}
		element := binary.LittleEndian.Uint16(head[pos+2:])
		vr := string(head[pos+4 : pos+6])
		var length, hl int
		if longVR(vr) {
			if pos+12 > len(head) {
				return nil, 0, fmt.Errorf("%w: truncated file meta information", ErrMalformed)
			}
			length, hl = int(binary.LittleEndian.Uint32(head[pos+8:])), 12
		} else if validVR(vr) {
			length, hl = int(binary.LittleEndian.Uint16(head[pos+6:])), 8
		} else {
			return nil, 0, fmt.Errorf("%w: invalid VR %q in file meta information (0002,%04X)", ErrMalformed, vr, element)
		}
		if length < 0 || pos+hl+length > len(head) {
			return nil, 0, fmt.Errorf("%w: file meta element (0002,%04X) runs past the meta information", ErrMalformed, element)
		}
		value := head[pos+hl : pos+hl+length]
		switch element {
		case 0x0002:
			m.MediaStorageSOPClassUID = trimUID(value)
		case 0x0003:
			m.MediaStorageSOPInstanceUID = trimUID(value)
		case 0x0010:
			m.TransferSyntaxUID = trimUID(value)
		}
		pos += hl + length
	}
	m.Bytes = head[preambleAndMagicLength:pos]
	return m, int64(pos), nil
}

func trimUID(b []byte) string { return strings.TrimRight(string(b), " \x00") }

func validUID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// Instance is one parsed SOP instance.
type Instance struct {
	Meta           *Meta
	Layout         *Layout
	Dataset        dicom.Dataset
	Charset        *charset.Set
	TransferSyntax string

	StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID string
}

// Parse reads a whole Part 10 file. It never loads Pixel Data: the layout records where it is.
func Parse(src io.ReaderAt, size int64) (*Instance, error) {
	return parse(src, size, false)
}

// parse is Parse; with metaMismatchOK a meta information naming another SOP Instance than the
// data set is let through (RewriteMeta mends it).
func parse(src io.ReaderAt, size int64, metaMismatchOK bool) (*Instance, error) {
	meta, datasetOffset, err := ReadMeta(src, size)
	if err != nil {
		return nil, err
	}
	ts, err := lookupTransferSyntax(meta.TransferSyntaxUID)
	if err != nil {
		return nil, err
	}
	layout, err := scanLayout(src, size, datasetOffset, ts)
	if err != nil {
		return nil, err
	}
	in := &Instance{Meta: meta, Layout: layout, TransferSyntax: ts.uid}
	if layout.Charset != nil {
		raw, err := in.readSpan(src, *layout.Charset)
		if err != nil {
			return nil, err
		}
		terms := strings.Split(strings.TrimRight(string(raw), " \x00"), `\`)
		for i := range terms {
			terms[i] = strings.TrimSpace(terms[i])
		}
		// An unknown term falls back to the default repertoire (cs stays usable); the value is
		// still echoed back in (0008,0005).
		in.Charset, _ = charset.Parse(terms)
	}
	view, viewLen, err := libraryView(src, size, datasetOffset, meta, ts, layout)
	if err != nil {
		return nil, err
	}
	elements, err := parseValues(view, viewLen, ts)
	if err != nil {
		return nil, err
	}
	in.Dataset = dicom.Dataset{Elements: elements}
	in.StudyInstanceUID = in.String(tag.StudyInstanceUID)
	in.SeriesInstanceUID = in.String(tag.SeriesInstanceUID)
	in.SOPInstanceUID = in.String(tag.SOPInstanceUID)
	in.SOPClassUID = in.String(tag.SOPClassUID)
	switch {
	case !validUID(in.StudyInstanceUID):
		return nil, fmt.Errorf("%w: missing or invalid Study Instance UID (0020,000D)", ErrMalformed)
	case !validUID(in.SeriesInstanceUID):
		return nil, fmt.Errorf("%w: missing or invalid Series Instance UID (0020,000E)", ErrMalformed)
	case !validUID(in.SOPInstanceUID):
		return nil, fmt.Errorf("%w: missing or invalid SOP Instance UID (0008,0018)", ErrMalformed)
	case !metaMismatchOK && meta.MediaStorageSOPInstanceUID != "" && meta.MediaStorageSOPInstanceUID != in.SOPInstanceUID:
		return nil, fmt.Errorf("%w: Media Storage SOP Instance UID %q in the meta information differs from SOP Instance UID %q",
			ErrMetaMismatch, meta.MediaStorageSOPInstanceUID, in.SOPInstanceUID)
	}
	if in.SOPClassUID == "" {
		in.SOPClassUID = meta.MediaStorageSOPClassUID
	}
	return in, nil
}

// parseValues runs the library over the view. The library panics on some malformed input
// (found by fuzzing: a short (0002,0000), a non-string (0002,0010)); that is malformed input.
func parseValues(view io.Reader, viewLen int64, ts transferSyntax) (elements []*dicom.Element, err error) {
	defer func() {
		if r := recover(); r != nil {
			elements, err = nil, fmt.Errorf("%w: the parser gave up: %v", ErrMalformed, r)
		}
	}()
	p, err := dicom.NewParser(view, viewLen, nil,
		dicom.SkipPixelData(),
		dicom.AllowMissingMetaElementGroupLength(),
		dicom.AllowUnknownSpecificCharacterSet())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Our own reading of (0002,0010) decides, also for syntaxes the library does not know.
	p.SetTransferSyntax(ts.byteOrder, ts.implicit)
	for {
		e, err := p.Next()
		if errors.Is(err, dicom.ErrorEndOfDICOM) || errors.Is(err, io.EOF) {
			return elements, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		elements = append(elements, e)
	}
}

// readSpan reads a value span of the stored file (inflating for deflated data sets).
func (in *Instance) readSpan(src io.ReaderAt, s Span) ([]byte, error) {
	return ReadSpan(src, in.Layout, s)
}

// ReadSpan reads bytes at s from a stored file with layout l.
func ReadSpan(src io.ReaderAt, l *Layout, s Span) ([]byte, error) {
	if s.Length < 0 || s.Length > 1<<31 {
		return nil, fmt.Errorf("%w: span of %d bytes", ErrMalformed, s.Length)
	}
	buf := make([]byte, s.Length)
	if _, err := io.ReadFull(SpanReader(src, l, s), buf); err != nil {
		return nil, fmt.Errorf("reading %d bytes at %d: %w", s.Length, s.Offset, err)
	}
	return buf, nil
}

// SpanReader streams the bytes at s of a stored file with layout l.
func SpanReader(src io.ReaderAt, l *Layout, s Span) io.Reader {
	if !l.Deflated {
		return io.NewSectionReader(src, s.Offset, s.Length)
	}
	// Deflated data sets (rare) are inflated from their start on each read.
	fr := flate.NewReader(io.NewSectionReader(src, l.DatasetOffset, 1<<62))
	if _, err := io.CopyN(io.Discard, fr, s.Offset-l.DatasetOffset); err != nil {
		return errReader{err}
	}
	return io.LimitReader(fr, s.Length)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// libraryView builds the stream handed to the library: the meta information, then the data set
// with (a) the top-level Specific Character Set value masked so that string values reach us as
// raw bytes for our own PS3.5 decoding and (b) Pixel Data replaced by an empty element, so a
// 300 MB file is not read twice. Deflated data sets are handed over inflated, with the meta
// information saying explicit VR little endian.
func libraryView(src io.ReaderAt, size, datasetOffset int64, meta *Meta, ts transferSyntax, l *Layout) (io.Reader, int64, error) {
	head := make([]byte, 0, preambleAndMagicLength+len(meta.Bytes))
	head = append(head, make([]byte, 128)...)
	head = append(head, "DICM"...)
	head = append(head, meta.Bytes...)
	patches := l.Patches
	if l.Charset != nil {
		patches = append(patches, Patch{l.Charset.Offset, bytes.Repeat([]byte{'?'}, int(l.Charset.Length))})
	}
	if ts.deflated {
		head = patchTransferSyntax(head, ExplicitVRLittleEndian)
		inflated := flate.NewReader(io.NewSectionReader(src, datasetOffset, size-datasetOffset))
		return io.MultiReader(bytes.NewReader(head), &patchReader{r: inflated, pos: datasetOffset, patches: patches}), -9999, nil
	}
	var parts []io.Reader
	total := int64(len(head))
	parts = append(parts, bytes.NewReader(head))
	add := func(from, to int64) {
		if to > from {
			parts = append(parts, &patchReader{r: io.NewSectionReader(src, from, to-from), pos: from, patches: patches})
			total += to - from
		}
	}
	if l.Pixel != nil {
		add(datasetOffset, l.Pixel.Element.Offset)
		empty := emptyPixelData(ts, l.Pixel.VR)
		parts = append(parts, bytes.NewReader(empty))
		total += int64(len(empty))
		add(l.Pixel.Element.Offset+l.Pixel.Element.Length, size)
	} else {
		add(datasetOffset, size)
	}
	return io.MultiReader(parts...), total, nil
}

func emptyPixelData(ts transferSyntax, vr string) []byte {
	bo := ts.byteOrder.(binary.AppendByteOrder)
	b := make([]byte, 0, 12)
	b = bo.AppendUint16(b, groupPixel)
	b = bo.AppendUint16(b, elemPixelData)
	if ts.implicit {
		return bo.AppendUint32(b, 0)
	}
	b = append(b, vr[0], vr[1], 0, 0)
	return bo.AppendUint32(b, 0)
}

// patchTransferSyntax rewrites (0002,0010) in a meta group to uid, keeping its length.
func patchTransferSyntax(head []byte, uid string) []byte {
	pos := preambleAndMagicLength
	for pos+8 <= len(head) {
		element := binary.LittleEndian.Uint16(head[pos+2:])
		vr := string(head[pos+4 : pos+6])
		length, hl := int(binary.LittleEndian.Uint16(head[pos+6:])), 8
		if longVR(vr) {
			length, hl = int(binary.LittleEndian.Uint32(head[pos+8:])), 12
		}
		if element == 0x0010 && length >= len(uid) {
			v := head[pos+hl : pos+hl+length]
			copy(v, uid)
			for i := len(uid); i < len(v); i++ {
				v[i] = 0
			}
		}
		pos += hl + length
	}
	return head
}

// patchReader applies patches (file offsets) to the bytes streaming past.
type patchReader struct {
	r       io.Reader
	pos     int64
	patches []Patch
}

func (m *patchReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	for _, pt := range m.patches {
		lo := max(pt.Offset, m.pos)
		hi := min(pt.Offset+int64(len(pt.Data)), m.pos+int64(n))
		for i := lo; i < hi; i++ {
			p[i-m.pos] = pt.Data[i-pt.Offset]
		}
	}
	m.pos += int64(n)
	return n, err
}
