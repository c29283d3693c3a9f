package dcm

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm/charset"
)

// InlineBinaryLimit is the largest binary value written inline in DICOM JSON; larger ones get a
// BulkDataURI (PS3.18 F.2.6 leaves the choice to the origin server).
const InlineBinaryLimit = 256

// BulkDataPrefix starts every BulkDataURI in stored JSON; the server swaps it for its public
// base URL when serving, so stored metadata does not depend on the host name. The sequence
// `"BulkDataURI":"` cannot occur inside an encoded value (quotes are escaped there).
const BulkDataPrefix = `"BulkDataURI":"`

// textVR reports VRs whose values are one text, never split on backslash (PS3.5 6.2).
func textVR(vr string) bool { return vr == "LT" || vr == "ST" || vr == "UT" || vr == "UR" }

// decodeStrings turns the library's raw string values of one element into UTF-8 values.
// The library splits on backslash before decoding, which breaks multi-byte sets whose
// bytes can be 0x5C (GBK, ISO 2022 IR 87), so the raw value is re-joined and decoded first.
func decodeStrings(e *dicom.Element, cs *charset.Set) []string {
	vals, ok := e.Value.GetValue().([]string)
	if !ok {
		return nil
	}
	vr := e.RawValueRepresentation
	raw := strings.Join(vals, `\`)
	text := cs.Decode([]byte(raw), vr)
	if textVR(vr) {
		return []string{strings.TrimRight(text, " \x00")}
	}
	parts := strings.Split(text, `\`)
	for i, p := range parts {
		if vr == "PN" || vr == "LO" || vr == "SH" || vr == "UC" {
			parts[i] = strings.Trim(p, " \x00")
		} else {
			parts[i] = strings.TrimSpace(strings.Trim(p, "\x00"))
		}
	}
	return parts
}

func (in *Instance) element(t tag.Tag) *dicom.Element {
	for _, e := range in.Dataset.Elements {
		if e.Tag == t {
			return e
		}
	}
	return nil
}

// Strings returns the decoded values of a top-level string element.
func (in *Instance) Strings(t tag.Tag) []string {
	e := in.element(t)
	if e == nil {
		return nil
	}
	if t == tag.SpecificCharacterSet && in.Charset != nil {
		return in.Charset.Terms()
	}
	return decodeStrings(e, in.Charset)
}

// String returns the first decoded value of a top-level string element, or "".
func (in *Instance) String(t tag.Tag) string {
	v := in.Strings(t)
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// Int returns the first value of a top-level integer or integer-string element.
func (in *Instance) Int(t tag.Tag) (int, bool) {
	e := in.element(t)
	if e == nil {
		return 0, false
	}
	switch v := e.Value.GetValue().(type) {
	case []int:
		if len(v) > 0 {
			return v[0], true
		}
	case []string:
		if s := in.String(t); s != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(s, "+"))
			return n, err == nil
		}
	}
	return 0, false
}

// JSON encodes the data set as a DICOM JSON object (PS3.18 F.2). src is the stored file,
// bulkBase the path prefix (after BulkDataPrefix) for this instance's bulk data.
func (in *Instance) JSON(src io.ReaderAt, bulkBase string) ([]byte, error) {
	enc := jsonEncoder{src: src, in: in, bulkBase: bulkBase}
	b := make([]byte, 0, 4096)
	b, err := enc.object(b, in.Dataset.Elements, "", in.Charset, true)
	if err != nil {
		return nil, err
	}
	return b, nil
}

type jsonEncoder struct {
	src      io.ReaderAt
	in       *Instance
	bulkBase string
}

func (j *jsonEncoder) object(b []byte, elems []*dicom.Element, path string, cs *charset.Set, top bool) ([]byte, error) {
	// A Specific Character Set inside an item applies to that item (PS3.5 6.1.2.2 note).
	if !top {
		for _, e := range elems {
			if e.Tag == tag.SpecificCharacterSet {
				if vals, ok := e.Value.GetValue().([]string); ok {
					if s, err := charset.Parse(trimAll(vals)); err == nil {
						cs = s
					}
				}
			}
		}
	}
	b = append(b, '{')
	first := true
	for _, e := range elems {
		if e.Tag.Group == 0x0002 || e.Tag.Group == groupItem || e.Tag.Element == 0x0000 {
			continue // meta information, delimiters and group lengths are not part of the model
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		var err error
		b, err = j.attribute(b, e, path, cs, top)
		if err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func trimAll(v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

func (j *jsonEncoder) attribute(b []byte, e *dicom.Element, path string, cs *charset.Set, top bool) ([]byte, error) {
	vr := e.RawValueRepresentation
	if e.Value != nil && e.Value.ValueType() == dicom.Sequences {
		vr = "SQ" // includes UN of undefined length (PS3.5 6.2.2)
	}
	elemPath := BulkPath(path, e.Tag.Group, e.Tag.Element)
	if tv, ok := j.in.Layout.TrueVR[elemPath]; ok {
		vr = tv // shown to the library under another VR (see Layout.Patches)
		if tv == "SQ" {
			// A UN sequence (PS3.5 6.2.2): its implicit VR items are parsed on their own.
			if seq, err := j.implicitSequence(e.Tag, elemPath); err == nil {
				e = seq
			} else {
				vr = "UN"
			}
		}
	}
	if e.Tag == tag.PixelData {
		if px := j.in.Layout.Pixel; top && px != nil {
			vr = px.VR
		} else if vr != "OB" && vr != "OW" {
			vr = "OW"
		}
	}
	b = append(b, '"')
	b = fmt.Appendf(b, "%04X%04X", e.Tag.Group, e.Tag.Element)
	b = append(b, `":{"vr":"`...)
	b = append(b, vr...)
	b = append(b, '"')
	switch vr {
	case "SQ":
		items, _ := e.Value.GetValue().([]*dicom.SequenceItemValue)
		if len(items) == 0 {
			return append(b, '}'), nil
		}
		b = append(b, `,"Value":[`...)
		for i, it := range items {
			if i > 0 {
				b = append(b, ',')
			}
			sub, _ := it.GetValue().([]*dicom.Element)
			var err error
			b, err = j.object(b, sub, itemPath(elemPath, i), cs, false)
			if err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN", "SV", "UV":
		var err error
		b, err = j.binary(b, vr, elemPath)
		if err != nil {
			return nil, err
		}
	case "PN":
		vals := decodeStrings(e, cs)
		if !allEmpty(vals) {
			b = append(b, `,"Value":[`...)
			for i, v := range vals {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendPersonName(b, v)
			}
			b = append(b, ']')
		}
	case "FL", "FD":
		vals, _ := e.Value.GetValue().([]float64)
		if len(vals) > 0 {
			b = append(b, `,"Value":[`...)
			for i, v := range vals {
				if i > 0 {
					b = append(b, ',')
				}
				if math.IsNaN(v) || math.IsInf(v, 0) {
					b = append(b, "null"...)
					continue
				}
				if vr == "FL" {
					b = strconv.AppendFloat(b, v, 'g', -1, 32)
				} else {
					b = strconv.AppendFloat(b, v, 'g', -1, 64)
				}
			}
			b = append(b, ']')
		}
	case "SL", "SS", "UL", "US", "AT":
		vals, _ := e.Value.GetValue().([]int)
		if vr == "US" && j.in.TransferSyntax == ImplicitVRLittleEndian && usOrSS(e.Tag) && j.signed() {
			// The dictionary says "US or SS"; with signed pixels the value is SS (PS3.5 Annex A).
			b = b[:len(b)-len(`US"`)]
			b = append(b, `SS"`...)
			signed := make([]int, len(vals))
			for i, v := range vals {
				signed[i] = int(int16(uint16(v)))
			}
			vals = signed
		}
		if vr == "AT" {
			if len(vals) >= 2 {
				b = append(b, `,"Value":[`...)
				for i := 0; i+1 < len(vals); i += 2 {
					if i > 0 {
						b = append(b, ',')
					}
					b = fmt.Appendf(b, `"%04X%04X"`, vals[i], vals[i+1])
				}
				b = append(b, ']')
			}
			break
		}
		if len(vals) > 0 {
			b = append(b, `,"Value":[`...)
			for i, v := range vals {
				if i > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendInt(b, int64(v), 10)
			}
			b = append(b, ']')
		}
	case "IS", "DS":
		if vals := decodeStrings(e, cs); !allEmpty(vals) {
			b = append(b, `,"Value":[`...)
			for i, v := range vals {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendNumber(b, v, vr == "IS")
			}
			b = append(b, ']')
		}
	default:
		var vals []string
		if e.Tag == tag.SpecificCharacterSet {
			// DICOM JSON is always UTF-8 (PS3.18 F.2), so the strings it carries are ISO_IR 192
			// whatever the file used; a client writing the JSON back to Part 10 must not be told
			// otherwise.
			vals = []string{"ISO_IR 192"}
		} else {
			vals = decodeStrings(e, cs)
		}
		if !allEmpty(vals) {
			b = append(b, `,"Value":[`...)
			for i, v := range vals {
				if i > 0 {
					b = append(b, ',')
				}
				if v == "" {
					b = append(b, "null"...)
					continue
				}
				b = appendString(b, v)
			}
			b = append(b, ']')
		}
	}
	return append(b, '}'), nil
}

func (j *jsonEncoder) binary(b []byte, vr, path string) ([]byte, error) {
	span, ok := j.in.Layout.Bulk[path]
	if !ok || span.Length == 0 {
		return b, nil
	}
	if vr == "SV" || vr == "UV" {
		raw, err := ReadSpan(j.src, j.in.Layout, span)
		if err != nil {
			return nil, err
		}
		bo := j.byteOrder()
		b = append(b, `,"Value":[`...)
		for i := 0; i+8 <= len(raw); i += 8 {
			if i > 0 {
				b = append(b, ',')
			}
			u := bo.Uint64(raw[i:])
			// Beyond 2^53 a JSON number loses precision; PS3.18 F.2.3.1 allows a string then.
			switch {
			case vr == "SV" && (int64(u) > 1<<53 || int64(u) < -(1<<53)):
				b = strconv.AppendQuote(b, strconv.FormatInt(int64(u), 10))
			case vr == "UV" && u > 1<<53:
				b = strconv.AppendQuote(b, strconv.FormatUint(u, 10))
			case vr == "SV":
				b = strconv.AppendInt(b, int64(u), 10)
			default:
				b = strconv.AppendUint(b, u, 10)
			}
		}
		return append(b, ']'), nil
	}
	if span.Length <= InlineBinaryLimit && path != "7FE00010" {
		raw, err := ReadSpan(j.src, j.in.Layout, span)
		if err != nil {
			return nil, err
		}
		if w := swapWidth(vr); w > 0 && j.in.TransferSyntax == ExplicitVRBigEndian {
			raw = swapped(raw, w) // DICOM JSON binary is little endian, like the web syntaxes
		}
		b = append(b, `,"InlineBinary":"`...)
		b = base64.StdEncoding.AppendEncode(b, raw)
		return append(b, '"'), nil
	}
	b = append(b, ',')
	b = append(b, BulkDataPrefix...)
	b = append(b, j.bulkBase...)
	b = append(b, path...)
	return append(b, '"'), nil
}

func (j *jsonEncoder) signed() bool {
	v, ok := j.in.Int(tag.PixelRepresentation)
	return ok && v == 1
}

func (j *jsonEncoder) byteOrder() binary.ByteOrder {
	if j.in.TransferSyntax == ExplicitVRBigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func allEmpty(v []string) bool {
	for _, s := range v {
		if s != "" {
			return false
		}
	}
	return true
}

// appendNumber writes a DS or IS value as a JSON number; a value that is not a number
// (hostile or broken files) is written as a string rather than producing invalid JSON.
func appendNumber(b []byte, s string, integer bool) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	if integer {
		if n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64); err == nil {
			return strconv.AppendInt(b, n, 10)
		}
	} else if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	}
	return appendString(b, s)
}

// PersonName is a PN value split into its component groups (PS3.5 6.2.1).
type PersonName struct{ Alphabetic, Ideographic, Phonetic string }

// SplitPersonName splits a decoded PN value on '='.
func SplitPersonName(v string) PersonName {
	g := strings.SplitN(v, "=", 3)
	var p PersonName
	p.Alphabetic = strings.TrimRight(g[0], " ")
	if len(g) > 1 {
		p.Ideographic = strings.TrimRight(g[1], " ")
	}
	if len(g) > 2 {
		p.Phonetic = strings.TrimRight(g[2], " ")
	}
	return p
}

func appendPersonName(b []byte, v string) []byte {
	if v == "" {
		return append(b, "null"...)
	}
	p := SplitPersonName(v)
	b = append(b, '{')
	n := 0
	for _, kv := range [][2]string{{"Alphabetic", p.Alphabetic}, {"Ideographic", p.Ideographic}, {"Phonetic", p.Phonetic}} {
		if kv[1] == "" {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = appendString(b, kv[0])
		b = append(b, ':')
		b = appendString(b, kv[1])
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, replacing invalid UTF-8.
func appendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func swapped(b []byte, width int) []byte {
	out := make([]byte, len(b)/width*width)
	for i := 0; i+width <= len(b); i += width {
		for k := range width {
			out[i+k] = b[i+width-1-k]
		}
	}
	return out
}

// implicitSequence parses the items of a UN sequence, which are implicit VR little endian
// whatever the file's transfer syntax, by handing the library a small implicit VR file that
// holds just this element.
func (j *jsonEncoder) implicitSequence(t tag.Tag, path string) (*dicom.Element, error) {
	span, ok := j.in.Layout.Bulk[path]
	if !ok {
		return nil, fmt.Errorf("no span for %s", path)
	}
	raw, err := ReadSpan(j.src, j.in.Layout, span)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var meta []byte
	uid := []byte(ImplicitVRLittleEndian + "\x00")
	meta = le.AppendUint16(meta, 0x0002)
	meta = le.AppendUint16(meta, 0x0010)
	meta = append(meta, 'U', 'I')
	meta = le.AppendUint16(meta, uint16(len(uid)))
	meta = append(meta, uid...)
	file := make([]byte, 128, 128+4+12+len(meta)+8+len(raw))
	file = append(file, "DICM"...)
	file = le.AppendUint16(file, 0x0002)
	file = le.AppendUint16(file, 0x0000)
	file = append(file, 'U', 'L', 4, 0)
	file = le.AppendUint32(file, uint32(len(meta)))
	file = append(file, meta...)
	file = le.AppendUint16(file, t.Group)
	file = le.AppendUint16(file, t.Element)
	file = le.AppendUint32(file, undefinedLength)
	file = append(file, raw...)
	ts := transferSyntax{uid: ImplicitVRLittleEndian, byteOrder: binary.LittleEndian, implicit: true}
	elems, err := parseValues(bytes.NewReader(file), int64(len(file)), ts)
	if err != nil {
		return nil, err
	}
	if len(elems) != 1 || elems[0].Value == nil || elems[0].Value.ValueType() != dicom.Sequences {
		return nil, fmt.Errorf("UN value of %s is not a sequence", path)
	}
	return elems[0], nil
}
