package charset

import (
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// This file is the ISO/IEC 2022 decoder behind every defined term except the
// stand-alone ISO_IR 192, GB18030 and GBK. DICOM uses a restricted ISO 2022
// (PS3.5 6.1.2.5.1): G0 is always invoked in GL (02/01-07/14) and G1 in GR
// (10/01-15/14), G2, G3, locking and single shifts and the C1 set are not
// used, so decoding only needs to follow the designations made by escape
// sequences.

const esc = 0x1B

type setKind uint8

const (
	kindASCII    setKind = iota // ISO-IR 6, 94 characters
	kindRomaji                  // ISO-IR 14, JIS X 0201 Romaji, 94 characters
	kindKatakana                // ISO-IR 13, JIS X 0201 Katakana, 94 characters
	kind96                      // right-hand part of an ISO 8859 (or TIS 620), 96 characters
	kind94x94                   // two-byte set of 94x94 characters
)

// gset is a graphic character set that an escape sequence can designate.
type gset struct {
	kind  setKind
	cm    *charmap.Charmap      // kind96: decodes the GR bytes
	table func() *[94 * 94]rune // kind94x94: lazily built from x/text
}

// The graphic sets of PS3.3 Tables C.12-2 to C.12-4.
var (
	ascii    = &gset{kind: kindASCII}
	romaji   = &gset{kind: kindRomaji}
	katakana = &gset{kind: kindKatakana}
	latin1   = &gset{kind: kind96, cm: charmap.ISO8859_1}  // ISO-IR 100: true ISO 8859-1, not windows-1252
	latin2   = &gset{kind: kind96, cm: charmap.ISO8859_2}  // ISO-IR 101
	latin3   = &gset{kind: kind96, cm: charmap.ISO8859_3}  // ISO-IR 109
	latin4   = &gset{kind: kind96, cm: charmap.ISO8859_4}  // ISO-IR 110
	cyrillic = &gset{kind: kind96, cm: charmap.ISO8859_5}  // ISO-IR 144
	arabic   = &gset{kind: kind96, cm: charmap.ISO8859_6}  // ISO-IR 127
	greek    = &gset{kind: kind96, cm: charmap.ISO8859_7}  // ISO-IR 126
	hebrew   = &gset{kind: kind96, cm: charmap.ISO8859_8}  // ISO-IR 138
	latin5   = &gset{kind: kind96, cm: charmap.ISO8859_9}  // ISO-IR 148
	latin9   = &gset{kind: kind96, cm: charmap.ISO8859_15} // ISO-IR 203
	// ISO-IR 166 is the right-hand part of TIS 620; windows-874 agrees with
	// it on 10/00-15/15, and only the GR bytes are ever looked up.
	thai = &gset{kind: kind96, cm: charmap.Windows874}

	// The two-byte sets are looked up in tables made from x/text's EUC
	// decoders: in EUC a character of the set is its two 7-bit codes with the
	// high bit set (JIS X 0212 behind the single shift 08/15 in EUC-JP).
	jisX0208 = dbcs(japanese.EUCJP, 0)        // ISO-IR 87 (and ISO-IR 42)
	jisX0212 = dbcs(japanese.EUCJP, 0x8F)     // ISO-IR 159
	ksx1001  = dbcs(korean.EUCKR, 0)          // ISO-IR 149
	gb2312   = dbcs(simplifiedchinese.GBK, 0) // ISO-IR 58; GBK's A1-FE x A1-FE block is GB 2312 (EUC-CN)
)

func dbcs(e encoding.Encoding, prefix byte) *gset {
	return &gset{kind: kind94x94, table: sync.OnceValue(func() *[94 * 94]rune {
		return buildTable(e, prefix)
	})}
}

// buildTable decodes every character of a 94x94 set once. Decoding character
// by character, rather than handing x/text whole runs, keeps an unassigned
// code from shifting the alignment of the pairs that follow it.
func buildTable(e encoding.Encoding, prefix byte) *[94 * 94]rune {
	var t [94 * 94]rune
	dec := e.NewDecoder()
	var src [3]byte
	var dst [16]byte
	for i := range 94 {
		for j := range 94 {
			in := src[:0]
			if prefix != 0 {
				in = append(in, prefix)
			}
			in = append(in, byte(0xA1+i), byte(0xA1+j))
			dec.Reset()
			r := utf8.RuneError
			if nDst, nSrc, err := dec.Transform(dst[:], in, true); err == nil && nSrc == len(in) {
				if rr, n := utf8.DecodeRune(dst[:nDst]); n == nDst {
					r = rr
				}
			}
			t[i*94+j] = r
		}
	}
	return &t
}

func isGraphic94(c byte) bool { return 0x21 <= c && c <= 0x7E }

// rune1 decodes position c (02/00-07/15, the high bit cleared for GR) of a
// single-byte set, giving U+FFFD for a position the set does not assign.
func (g *gset) rune1(c byte) rune {
	switch g.kind {
	case kindASCII:
		if isGraphic94(c) {
			return rune(c)
		}
	case kindRomaji:
		// ISO-IR 14 is ASCII except for YEN SIGN at 05/12 and OVERLINE at
		// 07/14 (PS3.5 H.1.1). Where 05/12 is the value delimiter the caller
		// never gets here.
		switch c {
		case 0x5C:
			return '¥'
		case 0x7E:
			return '‾'
		}
		if isGraphic94(c) {
			return rune(c)
		}
	case kindKatakana:
		if 0x21 <= c && c <= 0x5F {
			return 0xFF61 + rune(c-0x21) // half-width katakana block
		}
	case kind96:
		return g.cm.DecodeByte(c | 0x80)
	}
	return utf8.RuneError
}

// rune2 decodes the two-byte character c1 c2 (both 02/01-07/14).
func (g *gset) rune2(c1, c2 byte) rune {
	return g.table()[int(c1-0x21)*94+int(c2-0x21)]
}

// escapeLen returns the length of the escape sequence at the start of p
// (p[0] is ESC), or 0 if it is malformed. ISO/IEC 2022 13.1: ESC, any number
// of intermediate bytes 02/00-02/15, one final byte 03/00-07/14.
func escapeLen(p []byte) int {
	i := 1
	for i < len(p) && 0x20 <= p[i] && p[i] <= 0x2F {
		i++
	}
	if i < len(p) && 0x30 <= p[i] && p[i] <= 0x7E {
		return i + 1
	}
	return 0
}

// designation interprets an escape sequence (without its ESC). It reports the
// code element designated (0 for G0, 1 for G1, -1 for a sequence that changes
// nothing) and the set, or ok == false for a sequence DICOM does not define.
// The sequences are those of PS3.3 Tables C.12-3 and C.12-4 plus the other
// ISO 2022 spellings of the same designations (ESC $ ( B for ESC $ B, G1
// forms of the two-byte sets).
func designation(seq []byte) (slot int, set *gset, ok bool) {
	switch string(seq) {
	case "(B":
		return 0, ascii, true
	case "(J":
		return 0, romaji, true
	case "(I":
		return 0, katakana, true
	case ")I":
		return 1, katakana, true
	case "-A":
		return 1, latin1, true
	case "-B":
		return 1, latin2, true
	case "-C":
		return 1, latin3, true
	case "-D":
		return 1, latin4, true
	case "-L":
		return 1, cyrillic, true
	case "-G":
		return 1, arabic, true
	case "-F":
		return 1, greek, true
	case "-H":
		return 1, hebrew, true
	case "-M":
		return 1, latin5, true
	case "-b":
		return 1, latin9, true
	case "-T":
		return 1, thai, true
	case "$B", "$@", "$(B", "$(@":
		return 0, jisX0208, true
	case "$)B", "$)@":
		return 1, jisX0208, true
	case "$(D":
		return 0, jisX0212, true
	case "$)D":
		return 1, jisX0212, true
	case "$)C":
		return 1, ksx1001, true
	case "$(C":
		return 0, ksx1001, true
	case "$)A":
		return 1, gb2312, true
	case "$A", "$(A":
		return 0, gb2312, true
	case "&@":
		// Announces JIS X 0208-1990 before its ESC $ B; the table is the same.
		return -1, nil, true
	}
	return 0, nil, false
}

// delimiters selects which graphic characters, besides the control
// characters, make the initial designations active again (PS3.5 6.1.2.5.3).
type delimiters uint8

const (
	delimBackslash delimiters = 1 << iota // value delimiter of SH, LO, PN, UC
	delimPN                               // '^' and '=' of PN
)

func (d delimiters) has(c byte) bool {
	switch c {
	case '\\':
		return d&delimBackslash != 0
	case '^', '=':
		return d&delimPN != 0
	}
	return false
}

// plainASCII reports whether raw holds only ASCII without ESC, which decodes
// to itself when G0 starts as ISO-IR 6.
func plainASCII(raw []byte) bool {
	for _, c := range raw {
		if c >= utf8.RuneSelf || c == esc {
			return false
		}
	}
	return true
}

// decode2022 decodes raw under ISO/IEC 2022 with the designations of value 1
// as the initial state (PS3.5 6.1.2.5.3 and 6.1.2.5.4).
func (s *Set) decode2022(raw []byte, delims delimiters) string {
	init0, init1 := s.g0, s.g1
	if init0 == nil {
		init0 = ascii
	}
	if init0 == ascii && plainASCII(raw) {
		return string(raw)
	}
	g0, g1 := init0, init1

	var b strings.Builder
	b.Grow(len(raw) + len(raw)/2)
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == esc:
			n := escapeLen(raw[i:])
			if n == 0 {
				b.WriteRune(utf8.RuneError)
				i++
				continue
			}
			switch slot, set, ok := designation(raw[i+1 : i+n]); {
			case !ok:
				b.WriteRune(utf8.RuneError)
			case slot == 0:
				g0 = set
			case slot == 1:
				g1 = set
			}
			i += n

		case c < 0x20:
			// CR, LF, FF, TAB or another control character: value 1's
			// character sets are active again from here on.
			g0, g1 = init0, init1
			b.WriteByte(c)
			i++

		case c == 0x20 || c == 0x7F:
			// SPACE and DELETE are fixed whatever G0 holds (ISO/IEC 2022 6.3).
			b.WriteByte(c)
			i++

		case c < 0x80: // GL, invoking G0
			if g0.kind == kind94x94 {
				// Both bytes are 02/01-07/14, so a byte that looks like '\\',
				// '^' or '=' here is half of a character, not a delimiter:
				// only a character that encodes as that single byte
				// delimits (PS3.5 6.1.2.3).
				if i+1 < len(raw) && isGraphic94(raw[i+1]) {
					b.WriteRune(g0.rune2(c, raw[i+1]))
					i += 2
				} else {
					b.WriteRune(utf8.RuneError)
					i++
				}
				continue
			}
			if delims.has(c) && (g0.kind == kindASCII || g0.kind == kindRomaji) {
				// For ISO-IR 14 too, 05/12 is the value delimiter of SH, LO,
				// PN and UC rather than a YEN SIGN (PS3.5 H.1.1 note 3).
				g0, g1 = init0, init1
				b.WriteByte(c)
				i++
				continue
			}
			b.WriteRune(g0.rune1(c))
			i++

		case c < 0xA0:
			// C1 area: the C1 code element is not used (PS3.5 6.1.2.5.1).
			b.WriteRune(utf8.RuneError)
			i++

		default: // GR, invoking G1
			switch {
			case g1 == nil:
				b.WriteRune(utf8.RuneError)
				i++
			case g1.kind == kind94x94:
				if c1 := c & 0x7F; isGraphic94(c1) && i+1 < len(raw) && raw[i+1] >= 0x80 && isGraphic94(raw[i+1]&0x7F) {
					b.WriteRune(g1.rune2(c1, raw[i+1]&0x7F))
					i += 2
				} else {
					b.WriteRune(utf8.RuneError)
					i++
				}
			default:
				b.WriteRune(g1.rune1(c & 0x7F))
				i++
			}
		}
	}
	return b.String()
}
