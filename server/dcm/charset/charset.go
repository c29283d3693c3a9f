// Package charset decodes DICOM string values to UTF-8 as selected by the
// Specific Character Set (0008,0005), following DICOM PS3.5 section 6.1 and
// the worked examples of PS3.5 Annexes H (Japanese), I (Korean), J (UTF-8)
// and K (Chinese); the defined terms and their escape sequences are those of
// PS3.3 C.12.1.1.2 (Tables C.12-2 to C.12-5).
//
// It is hand-written because github.com/suyashkumar/dicom's own charset
// handling has no GB2312 and gets ISO 2022 code extensions wrong.
//
// Decode must be applied to an element's whole raw value, before splitting
// it on the backslash value delimiter: multi-byte encodings (GBK, GB18030,
// JIS X 0208 in G0) can contain the byte 05/12 inside a character, and only a
// character that encodes as the single byte 05/12 is a delimiter (PS3.5
// 6.1.2.3).
package charset

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// ErrUnknown is wrapped by the error Parse returns for a defined term it does
// not know.
var ErrUnknown = errors.New("unknown specific character set")

// Set is a parsed Specific Character Set (0008,0005) value.
//
// The zero value and the nil *Set both mean the default repertoire ISO-IR 6
// (PS3.5 6.1.2.1). A Set is immutable and safe for concurrent use.
type Set struct {
	terms []string

	// standalone is non-nil for the character sets that do not allow code
	// extensions (ISO_IR 192, GB18030, GBK; PS3.3 Table C.12-5): the whole
	// value is decoded with it and ISO 2022 is not interpreted.
	standalone encoding.Encoding
	utf8       bool // ISO_IR 192: decoded without x/text (see decodeUTF8)

	// g0 and g1 are the designations active at the start of every value and
	// after every delimiter (PS3.5 6.1.2.5.3): those of value 1.
	// A nil g0 means ISO-IR 6; a nil g1 means nothing is designated to G1,
	// so bytes in GR are invalid.
	g0, g1 *gset
}

// term describes one defined term of (0008,0005).
type term struct {
	// g0 and g1 are what the term designates when it is value 1.
	g0, g1 *gset
	// extensionOnly terms (the G0 multi-byte sets, PS3.3 Table C.12-4) are
	// not meant to be value 1; when they are, the initial state is ISO-IR 6.
	extensionOnly bool
	standalone    encoding.Encoding
	utf8          bool
}

// definedTerms maps normalized defined terms (see normalizeTerm) to their meaning.
// The ISO_IR and ISO 2022 IR forms of a single-byte set designate the same
// G0/G1 pair; they differ only in whether escape sequences are allowed, and
// Decode honours known escape sequences in both (a conforming value never
// contains one where it is not allowed).
var definedTerms = map[string]term{
	// PS3.3 Table C.12-2 (single-byte, no code extensions) and Table C.12-3
	// (single-byte with code extensions).
	"ISOIR6":       {},
	"ISO2022IR6":   {},
	"ISOIR100":     {g1: latin1},
	"ISO2022IR100": {g1: latin1},
	"ISOIR101":     {g1: latin2},
	"ISO2022IR101": {g1: latin2},
	"ISOIR109":     {g1: latin3},
	"ISO2022IR109": {g1: latin3},
	"ISOIR110":     {g1: latin4},
	"ISO2022IR110": {g1: latin4},
	"ISOIR144":     {g1: cyrillic},
	"ISO2022IR144": {g1: cyrillic},
	"ISOIR127":     {g1: arabic},
	"ISO2022IR127": {g1: arabic},
	"ISOIR126":     {g1: greek},
	"ISO2022IR126": {g1: greek},
	"ISOIR138":     {g1: hebrew},
	"ISO2022IR138": {g1: hebrew},
	"ISOIR148":     {g1: latin5},
	"ISO2022IR148": {g1: latin5},
	"ISOIR203":     {g1: latin9},
	"ISO2022IR203": {g1: latin9},
	"ISOIR166":     {g1: thai},
	"ISO2022IR166": {g1: thai},
	"ISOIR13":      {g0: romaji, g1: katakana},
	"ISO2022IR13":  {g0: romaji, g1: katakana},

	// PS3.3 Table C.12-4 (multi-byte with code extensions), for values 2
	// to n. As value 1, contrary to the standard but common in Korean and
	// Chinese files that then omit the escape sequences, the G1 sets are
	// taken as designated from the start.
	"ISO2022IR87":  {extensionOnly: true}, // JIS X 0208, ESC $ B into G0
	"ISO2022IR159": {extensionOnly: true}, // JIS X 0212, ESC $ ( D into G0
	"ISO2022IR149": {g1: ksx1001},         // KS X 1001, ESC $ ) C into G1
	"ISO2022IR58":  {g1: gb2312},          // GB 2312, ESC $ ) A into G1

	// PS3.3 Table C.12-5 (multi-byte without code extensions).
	"ISOIR192": {utf8: true},
	"GB18030":  {standalone: simplifiedchinese.GB18030},
	"GBK":      {standalone: simplifiedchinese.GBK},
	"GB2312":   {standalone: simplifiedchinese.GB18030}, // not a DICOM term, but common; GB18030 is a superset
	"UTF8":     {utf8: true},                            // not a DICOM term, seen in the wild
}

// normalizeTerm folds the common misspellings of defined terms ("ISO IR 100",
// "ISO-IR 100", "iso_ir 100", "ISO_2022_IR 87", "UTF-8") onto one key.
func normalizeTerm(t string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '_', '-', '+', '\t':
			return -1
		}
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, t)
}

// Parse takes the values of (0008,0005), already split on backslash with
// surrounding spaces trimmed. An empty or nil slice means the default
// repertoire ISO-IR 6. When the attribute has more than one value and value 1
// is empty, value 1 is ISO 2022 IR 6 (PS3.5 6.1.2.5.3).
//
// Unknown defined terms make Parse return an error wrapping ErrUnknown that
// names them; callers should then fall back to the default repertoire. The
// returned Set is nevertheless always usable: unknown terms are ignored, and
// an unknown value 1 leaves ISO-IR 6 as the initial state.
//
// Leniencies, none of which changes the result for a conforming value:
// misspellings such as "ISO IR 100" are accepted; GB2312 is accepted and
// decoded as GB18030; a multi-byte G1 set given as value 1 (e.g. a lone
// "ISO 2022 IR 149", common in Korean files) is designated to G1 initially;
// ISO_IR 192, GB18030 and GBK, which do not allow code extensions (PS3.3
// Table C.12-5), discard the other values when they are value 1 and are
// ignored when they are not.
func Parse(values []string) (*Set, error) {
	s := &Set{terms: append([]string(nil), values...)}
	var unknown []string
	for i, v := range values {
		v = strings.TrimSpace(v)
		if v == "" {
			continue // value 1 empty: ISO 2022 IR 6; later empty values mean nothing
		}
		t, ok := definedTerms[normalizeTerm(v)]
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", v))
			continue
		}
		if i != 0 {
			// Extensions only matter through the escape sequences in the
			// values, which Decode recognises on their own.
			continue
		}
		if t.standalone != nil || t.utf8 {
			s.standalone, s.utf8 = t.standalone, t.utf8
			break
		}
		if !t.extensionOnly {
			s.g0, s.g1 = t.g0, t.g1
		}
	}
	if len(unknown) > 0 {
		return s, fmt.Errorf("%w: %s", ErrUnknown, strings.Join(unknown, ", "))
	}
	return s, nil
}

// Terms returns the defined terms the Set was parsed from, as given to Parse,
// for echoing (0008,0005) back. It returns nil for the nil Set.
func (s *Set) Terms() []string {
	if s == nil || s.terms == nil {
		return nil
	}
	return append([]string(nil), s.terms...)
}

// String returns the terms joined with backslashes, as (0008,0005) is encoded.
func (s *Set) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(s.terms, `\`)
}

// Decode decodes one element's raw value bytes, the whole value with any
// multiple values still joined by backslashes, to valid UTF-8. vr is the
// two-letter VR.
//
// Only SH, LO, ST, LT, UT, PN and UC are affected by the character set
// (PS3.5 6.1.2.3, 6.2). Every other VR, including UN whose content is
// unknown, uses the default repertoire without code extensions and is
// returned as ASCII with each byte above 07/15 replaced by U+FFFD.
//
// For ISO 2022 character sets the designations of value 1 become active again
// at every control character other than ESC (CR, LF, FF, TAB, ...), at the
// backslash for the multi-valued VRs SH, LO, PN and UC, and at '^' and '=' for
// PN (PS3.5 6.1.2.5.3). Escape sequences are consumed; unknown or malformed
// ones and every invalid byte become U+FFFD. Decode never panics.
//
// Trailing padding (space or NUL) is returned as is.
func (s *Set) Decode(raw []byte, vr string) string {
	var delims delimiters
	switch vr {
	case "SH", "LO", "UC":
		delims = delimBackslash
	case "PN":
		delims = delimBackslash | delimPN
	case "ST", "LT", "UT":
	default:
		return decodeASCII(raw)
	}
	if s == nil {
		s = &defaultSet
	}
	switch {
	case s.utf8:
		return decodeUTF8(raw)
	case s.standalone != nil:
		return decodeWith(s.standalone, raw)
	}
	return s.decode2022(raw, delims)
}

var defaultSet Set

// decodeASCII returns raw as a string with every byte that is not ASCII
// replaced by U+FFFD.
func decodeASCII(raw []byte) string {
	i := 0
	for i < len(raw) && raw[i] < utf8.RuneSelf {
		i++
	}
	if i == len(raw) {
		return string(raw)
	}
	var b strings.Builder
	b.Grow(len(raw) + 2*(len(raw)-i))
	b.Write(raw[:i])
	for _, c := range raw[i:] {
		if c < utf8.RuneSelf {
			b.WriteByte(c)
		} else {
			b.WriteRune(utf8.RuneError)
		}
	}
	return b.String()
}

// decodeUTF8 returns raw with each byte that is not part of a valid UTF-8
// sequence replaced by U+FFFD (one per byte, as the WHATWG decoder does,
// rather than one per run as strings.ToValidUTF8 does).
func decodeUTF8(raw []byte) string {
	if utf8.Valid(raw) {
		return string(raw)
	}
	var b strings.Builder
	b.Grow(len(raw) + 8)
	for len(raw) > 0 {
		r, n := utf8.DecodeRune(raw)
		b.WriteRune(r) // RuneError for an invalid byte, with n == 1
		raw = raw[n:]
	}
	return b.String()
}

// decodeWith decodes raw with a stand-alone x/text encoding. The x/text
// multi-byte decoders already emit U+FFFD for invalid input instead of
// failing; the checks below only guard that assumption.
func decodeWith(e encoding.Encoding, raw []byte) string {
	out, err := e.NewDecoder().Bytes(raw)
	if err != nil {
		return decodeASCII(raw)
	}
	if !utf8.Valid(out) {
		return strings.ToValidUTF8(string(out), "\uFFFD")
	}
	return string(out)
}
