package charset

import (
	"bytes"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// Escape sequences of PS3.3 Tables C.12-3 and C.12-4, spelled out.
const (
	escASCII  = "\x1b\x28\x42"     // ESC ( B   ISO-IR 6 into G0
	escRomaji = "\x1b\x28\x4a"     // ESC ( J   ISO-IR 14 into G0
	escKana   = "\x1b\x29\x49"     // ESC ) I   ISO-IR 13 into G1
	escJIS    = "\x1b\x24\x42"     // ESC $ B   ISO-IR 87 into G0
	escJIS212 = "\x1b\x24\x28\x44" // ESC $ ( D ISO-IR 159 into G0
	escKSC    = "\x1b\x24\x29\x43" // ESC $ ) C ISO-IR 149 into G1
	escGB     = "\x1b\x24\x29\x41" // ESC $ ) A ISO-IR 58 into G1
	escGreek  = "\x1b\x2d\x46"     // ESC - F   ISO-IR 126 into G1
	escCyril  = "\x1b\x2d\x4c"     // ESC - L   ISO-IR 144 into G1
)

// hx turns "41 42 1B" into bytes, the way the PS3.5 annexes print encodings.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// enc encodes s with an x/text encoder, for the bytes of the GR runs.
func enc(t testing.TB, e encoding.Encoding, s string) string {
	t.Helper()
	b, err := e.NewEncoder().String(s)
	if err != nil {
		t.Fatalf("cannot encode %q: %v", s, err)
	}
	return b
}

type decodeCase struct {
	name  string
	terms []string
	vr    string
	raw   []byte
	want  string
}

func runDecodeCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.terms)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.terms, err)
			}
			got := s.Decode(tc.raw, tc.vr)
			if got != tc.want {
				t.Errorf("Decode(% X, %s)\n got %q\nwant %q", tc.raw, tc.vr, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("invalid UTF-8 %q", got)
			}
		})
	}
}

// TestSingleByte covers the single-byte character sets without code
// extensions: David Clunie's SCS* test files (as shipped with pydicom) and
// the pydicom examples for the other ISO 8859 parts.
func TestSingleByte(t *testing.T) {
	runDecodeCases(t, []decodeCase{
		{"default nil", nil, "PN", []byte("Doe^John"), "Doe^John"},
		{"default empty", []string{""}, "PN", []byte("Doe^John"), "Doe^John"},
		{"ISO_IR 6", []string{"ISO_IR 6"}, "LO", []byte(`A\B`), `A\B`},
		{"default rejects GR", nil, "PN", []byte("Jos\xe9"), "Jos\uFFFD"},
		{"SCSGERM", []string{"ISO_IR 100"}, "PN", hx(t, "C4 6E 65 61 73 5E 52 FC 64 69 67 65 72"), "Äneas^Rüdiger"},
		{"SCSFR", []string{"ISO_IR 100"}, "PN", hx(t, "42 75 63 5E 4A E9 72 F4 6D 65"), "Buc^Jérôme"},
		{"SCSRUS", []string{"ISO_IR 144"}, "PN", hx(t, "BB EE DA 63 65 DC D1 79 70 D3"), "Люкceмбypг"},
		{"SCSGREEK", []string{"ISO_IR 126"}, "PN", hx(t, "C4 E9 EF ED F5 F3 E9 EF F2"), "Διονυσιος"},
		{"SCSARAB", []string{"ISO_IR 127"}, "PN", hx(t, "E2 C8 C7 E6 EA 5E E4 E6 D2 C7 D1"), "قباني^لنزار"},
		{"SCSHBRW", []string{"ISO_IR 138"}, "PN", hx(t, "F9 F8 E5 EF 5E E3 E1 E5 F8 E4"), "שרון^דבורה"},
		{"Latin-2", []string{"ISO_IR 101"}, "PN", hx(t, "57 61 B3 EA 73 61"), "Wałęsa"},
		{"Latin-3", []string{"ISO_IR 109"}, "PN", hx(t, "61 6E 74 61 FD 6E 6F 6D 6F"), "antaŭnomo"},
		{"Latin-4", []string{"ISO_IR 110"}, "PN", hx(t, "76 E0 72 64 73"), "vārds"},
		{"Latin-5", []string{"ISO_IR 148"}, "PN", hx(t, "C7 61 76 75 FE 6F F0 6C 75"), "Çavuşoğlu"},
		{"Latin-9", []string{"ISO_IR 203"}, "LO", hx(t, "BC 75 76 72 65 20 A4"), "Œuvre €"},
		{"Thai", []string{"ISO_IR 166"}, "PN", hx(t, "B9 D2 C1 CA A1 D8 C5"), "นามสกุล"},
		{"Thai unassigned", []string{"ISO_IR 166"}, "LO", hx(t, "DB FC"), "\uFFFD\uFFFD"},
		// ISO_IR 100 is ISO 8859-1: no windows-1252 curly quotes in 08/00-09/15,
		// which is the unused C1 area (PS3.5 6.1.2.5.1).
		{"Latin-1 C1", []string{"ISO_IR 100"}, "LO", hx(t, "4F 92 42 80 9F"), "O\uFFFDB\uFFFD\uFFFD"},
		{"Latin-1 NBSP", []string{"ISO_IR 100"}, "LO", hx(t, "A0 FF"), "\u00a0ÿ"},
		{"Arabic unassigned", []string{"ISO_IR 127"}, "LO", hx(t, "A1"), "\uFFFD"},
	})
}

// TestJISX0201 covers ISO_IR 13: JIS X 0201 katakana in GR and Romaji, not
// ASCII, in G0 (PS3.5 H.1.1).
func TestJISX0201(t *testing.T) {
	ir13 := []string{"ISO_IR 13"}
	runDecodeCases(t, []decodeCase{
		{"katakana PN", ir13, "PN", hx(t, "D4 CF C0 DE 5E C0 DB B3"), "ﾔﾏﾀﾞ^ﾀﾛｳ"},
		{"katakana range", ir13, "SH", hx(t, "A1 DF A0 E0 FF"), "｡ﾟ\uFFFD\uFFFD\uFFFD"},
		// 05/12 is a YEN SIGN, except where it delimits values (note 3 of H.1.1).
		{"yen in LT", ir13, "LT", []byte(`\100~`), "¥100‾"},
		{"backslash delimits LO", ir13, "LO", []byte(`A\B`), `A\B`},
		{"backslash delimits PN", ir13, "PN", []byte(`A\B`), `A\B`},
	})
}

// TestStandalone covers ISO_IR 192, GB18030, GBK and the non-standard GB2312,
// which do not allow code extensions (PS3.3 Table C.12-5).
func TestStandalone(t *testing.T) {
	gb18030 := simplifiedchinese.GB18030
	gbk := simplifiedchinese.GBK
	lt := "The first line includes中文.\r\nThe second line includes中文, too.\r\nThe third line."
	runDecodeCases(t, []decodeCase{
		// PS3.5 J.1 (SCSX1).
		{"SCSX1 UTF-8", []string{"ISO_IR 192"}, "PN",
			hx(t, "57 61 6E 67 5E 58 69 61 6F 44 6F 6E 67 3D E7 8E 8B 5E E5 B0 8F E6 9D B1 3D"),
			"Wang^XiaoDong=王^小東="},
		// PS3.5 K.1 (SCSX2).
		{"SCSX2 GB18030", []string{"GB18030"}, "PN",
			hx(t, "57 61 6E 67 5E 58 69 61 6F 44 6F 6E 67 3D CD F5 5E D0 A1 B6 AB 3D"),
			"Wang^XiaoDong=王^小东="},
		{"GB18030 traditional", []string{"GB18030"}, "PN",
			[]byte(enc(t, gb18030, "Wang^XiaoDong=王^小東=")), "Wang^XiaoDong=王^小東="},
		{"GB18030 LT", []string{"GB18030"}, "LT", []byte(enc(t, gb18030, lt)), lt},
		{"UTF-8 LT", []string{"ISO_IR 192"}, "LT", []byte(lt), lt},
		{"GB18030 four-byte", []string{"GB18030"}, "LO", hx(t, "95 32 82 36 81 30 86 30"), "\U00020000¸"},
		{"韦^东平 GB18030", []string{"GB18030"}, "PN", hx(t, "CE A4 5E B6 AB C6 BD"), "韦^东平"},
		{"韦^东平 GBK", []string{"GBK"}, "PN", hx(t, "CE A4 5E B6 AB C6 BD"), "韦^东平"},
		{"韦^东平 GB2312", []string{"GB2312"}, "PN", hx(t, "CE A4 5E B6 AB C6 BD"), "韦^东平"},
		{"韦^东平 UTF-8", []string{"ISO_IR 192"}, "PN", hx(t, "E9 9F A6 5E E4 B8 9C E5 B9 B3"), "韦^东平"},
		{"GBK built", []string{"GBK"}, "PN", []byte(enc(t, gbk, "韦^东平=Wei^Dongping")), "韦^东平=Wei^Dongping"},
		{"UTF-8 invalid", []string{"ISO_IR 192"}, "LO", hx(t, "41 FF C3 E4 B8"), "A\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"GB18030 truncated", []string{"GB18030"}, "LO", hx(t, "41 81"), "A\uFFFD"},
		{"GB18030 bad trail", []string{"GB18030"}, "LO", hx(t, "81 20 41"), "\uFFFD A"},
		{"GB18030 no escapes", []string{"GB18030"}, "LO", []byte("\x1b$)A\xd5\xc5"), "\x1b$)A张"},
	})
}

// TestGBKBackslashTrailByte proves why Decode must see the whole value: 乗
// is 81 5C in GBK, its trail byte is the backslash, and only a character that
// encodes as the single byte 05/12 is a value delimiter (PS3.5 6.1.2.3).
func TestGBKBackslashTrailByte(t *testing.T) {
	jou := enc(t, simplifiedchinese.GBK, "乗")
	if jou != "\x81\x5c" {
		t.Fatalf("乗 is % X in GBK, want 81 5C", jou)
	}
	raw := []byte(jou + `\` + enc(t, simplifiedchinese.GBK, "韦东平"))
	if n := len(bytes.Split(raw, []byte(`\`))); n != 3 {
		t.Fatalf("raw bytes split into %d parts, want 3 (the naive split is wrong)", n)
	}
	for _, term := range []string{"GBK", "GB18030", "GB2312"} {
		s, err := Parse([]string{term})
		if err != nil {
			t.Fatal(err)
		}
		got := s.Decode(raw, "LO")
		if got != `乗\韦东平` {
			t.Errorf("%s: got %q", term, got)
		}
		if vals := strings.Split(got, `\`); !slices.Equal(vals, []string{"乗", "韦东平"}) {
			t.Errorf("%s: values %q", term, vals)
		}
	}
}

// TestISO2022Annex covers the code extension examples of PS3.5 Annexes H, I
// and K, byte for byte as printed there.
func TestISO2022Annex(t *testing.T) {
	runDecodeCases(t, []decodeCase{
		// H.3.1 (SCSH31): value 1 empty, ISO 2022 IR 87.
		{"SCSH31", []string{"", "ISO 2022 IR 87"}, "PN",
			hx(t, "59 61 6D 61 64 61 5E 54 61 72 6F 75 3D 1B 24 42 3B 33 45 44 1B 28 42 5E 1B 24 42 42 40 4F 3A 1B 28 42 3D"+
				"1B 24 42 24 64 24 5E 24 40 1B 28 42 5E 1B 24 42 24 3F 24 6D 24 26 1B 28 42"),
			"Yamada^Tarou=山田^太郎=やまだ^たろう"},
		// H.3.2 (SCSH32): ISO 2022 IR 13 as value 1, so ESC ( J returns to Romaji.
		{"SCSH32", []string{"ISO 2022 IR 13", "ISO 2022 IR 87"}, "PN",
			hx(t, "D4 CF C0 DE 5E C0 DB B3 3D 1B 24 42 3B 33 45 44 1B 28 4A 5E 1B 24 42 42 40 4F 3A 1B 28 4A 3D"+
				"1B 24 42 24 64 24 5E 24 40 1B 28 4A 5E 1B 24 42 24 3F 24 6D 24 26 1B 28 4A"),
			"ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"},
		// I.2 (SCSI2): KS X 1001 in G1.
		{"SCSI2", []string{"", "ISO 2022 IR 149"}, "PN",
			hx(t, "48 6F 6E 67 5E 47 69 6C 64 6F 6E 67 3D 1B 24 29 43 FB F3 5E 1B 24 29 43 D1 CE D4 D7 3D"+
				"1B 24 29 43 C8 AB 5E 1B 24 29 43 B1 E6 B5 BF"),
			"Hong^Gildong=洪^吉洞=홍^길동"},
		// K: GB 2312 in G1.
		{"ISO 2022 IR 58", []string{"", "ISO 2022 IR 58"}, "PN",
			hx(t, "5A 68 61 6E 67 5E 58 69 61 6F 44 6F 6E 67 3D 1B 24 29 41 D5 C5 5E 1B 24 29 41 D0 A1 B6 AB 3D"),
			"Zhang^XiaoDong=张^小东="},
	})
}

// TestISO2022Built builds values from spelled-out escape sequences and the
// GR bytes of x/text encoders.
func TestISO2022Built(t *testing.T) {
	euckr := korean.EUCKR
	gbk := simplifiedchinese.GBK
	ksc := func(s string) string { return escKSC + enc(t, euckr, s) }
	gb := func(s string) string { return escGB + enc(t, gbk, s) }
	ko := []string{"", "ISO 2022 IR 149"}
	zh := []string{"", "ISO 2022 IR 58"}
	runDecodeCases(t, []decodeCase{
		{"SCSI2 built", ko, "PN",
			[]byte("Hong^Gildong=" + ksc("洪") + "^" + ksc("吉洞") + "=" + ksc("홍") + "^" + ksc("길동")),
			"Hong^Gildong=洪^吉洞=홍^길동"},
		// In the manner of I.3: each line designates KS X 1001 again, since
		// CR and LF restore value 1's sets.
		{"Korean LT", ko, "LT",
			[]byte("The 1st line includes " + ksc("길동") + ".\r\nThe 2nd line includes " + ksc("길동") + ", too.\r\nThe 3rd line."),
			"The 1st line includes 길동.\r\nThe 2nd line includes 길동, too.\r\nThe 3rd line."},
		{"Korean LT missing escape after CRLF", ko, "LT",
			[]byte(ksc("길") + "\r\n" + enc(t, euckr, "동")),
			"길\r\n\uFFFD\uFFFD"},
		{"韦^东平 IR 58", zh, "PN", []byte(gb("韦") + "^" + gb("东平")), "韦^东平"},
		{"Chinese LT IR 58", zh, "LT",
			[]byte("The first line includes" + gb("中文") + ".\r\nThe second line includes" + gb("中文") + ", too.\r\nThe third line."),
			"The first line includes中文.\r\nThe second line includes中文, too.\r\nThe third line."},
		// pydicom's JIS X 0212 example: ESC $ ( D for 鷗.
		{"IR 159", []string{"ISO 2022 IR 6", "ISO 2022 IR 87", "ISO 2022 IR 159"}, "PN",
			[]byte("Mori^Ogai=" + escJIS + "\x3f\x39" + escASCII + "^" + escJIS212 + "\x6c\x3f" + escJIS + "\x33\x30" + escASCII +
				"=" + escJIS + "\x24\x62\x24\x6a" + escASCII + "^" + escJIS + "\x24\x2a\x24\x26\x24\x2c\x24\x24" + escASCII),
			"Mori^Ogai=森^鷗外=もり^おうがい"},
		{"JIS mixture", []string{"ISO 2022 IR 13", "ISO 2022 IR 87", "ISO 2022 IR 159"}, "LO",
			[]byte(escJIS + "\x24\x22" + escRomaji + "a" + escKana + "\xb1" + escJIS + "\x25\x22" + escJIS212 + "\x6d\x4e" + escRomaji),
			"あaｱア齩"},
		// JIS X 0208-1990 announcer ESC & @ before ESC $ B.
		{"JIS announcer", []string{"", "ISO 2022 IR 87"}, "LO",
			[]byte("\x1b&@" + escJIS + "\x24\x22" + escASCII), "あ"},
	})
}

// TestISO2022Delimiters checks that value 1's designations come back at the
// delimiters of PS3.5 6.1.2.5.3, and only at real delimiters.
func TestISO2022Delimiters(t *testing.T) {
	greekLatin := []string{"ISO 2022 IR 100", "ISO 2022 IR 144", "ISO 2022 IR 126"}
	multi := []byte("Buc^J\xe9r\xf4me\\" + escGreek + "\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2\\" +
		escCyril + "\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3")
	kanaName := []byte("ASCII+" + escKana + "\xd4\xcf\xc0\xde^\xc0\xdb\xb3")
	jis := []string{"", "ISO 2022 IR 87"}
	runDecodeCases(t, []decodeCase{
		{"PN multi-value", greekLatin, "PN", multi, `Buc^Jérôme\Διονυσιος\Люкceмбypг`},
		{"LO multi-value", greekLatin, "LO", multi, `Buc^Jérôme\Διονυσιος\Люкceмбypг`},
		{"value 1 without escape", greekLatin, "LO", []byte("R\xf6ntgenaufnahme"), "Röntgenaufnahme"},
		{"component group", []string{"ISO 2022 IR 100", "ISO 2022 IR 126"}, "PN",
			[]byte("Dionysios=" + escGreek + "\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"), "Dionysios=Διονυσιος"},
		{"backslash resets LO", greekLatin, "LO", []byte(escGreek + "\xc4\\\xc4"), `Δ\Ä`},
		{"backslash does not reset LT", greekLatin, "LT", []byte(escGreek + "\xc4\\\xc4"), `Δ\Δ`},
		{"TAB resets", greekLatin, "ST", []byte(escGreek + "\xc4\t\xc4"), "Δ\tÄ"},
		{"FF resets", greekLatin, "UT", []byte(escGreek + "\xc4\f\xc4"), "Δ\fÄ"},
		// '^' restores ISO 2022 IR 6, which has no G1: the katakana after a
		// missing escape sequence are invalid in PN, but not in LO.
		{"caret resets PN", []string{"", "ISO 2022 IR 13"}, "PN", kanaName, "ASCII+ﾔﾏﾀﾞ^\uFFFD\uFFFD\uFFFD"},
		{"caret does not reset LO", []string{"", "ISO 2022 IR 13"}, "LO", kanaName, "ASCII+ﾔﾏﾀﾞ^ﾀﾛｳ"},
		{"equals resets PN", []string{"", "ISO 2022 IR 149"}, "PN", []byte(escKSC + "\xb1\xe6=\xb1\xe6"), "길=\uFFFD\uFFFD"},
		// In JIS X 0208 the bytes 05/12, 05/14 and 03/13 are halves of
		// characters (ぼ 24 5C, ま 24 5E, そ 24 3D), not delimiters.
		{"JIS 5C 5E 3D in PN", jis, "PN", []byte(escJIS + "\x24\x5c\x24\x5e\x24\x3d" + escASCII), "ぼまそ"},
		{"JIS multi-value LO", jis, "LO", []byte(escJIS + "\x24\x5c" + escASCII + `\` + escJIS + "\x24\x5e" + escASCII), `ぼ\ま`},
		{"CRLF restores ASCII G0", jis, "LT", []byte(escJIS + "\x24\x22\r\n\x24\x22"), "あ\r\n$\""},
		{"space in JIS", jis, "LO", []byte(escJIS + "\x24\x22 \x24\x22" + escASCII), "あ あ"},
	})
}

// TestISO2022Single covers every single-byte code extension after ISO 2022
// IR 6 (pydicom's encoded names).
func TestISO2022Single(t *testing.T) {
	cases := []struct{ term, want, raw string }{
		{"ISO 2022 IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ", "\x1b\x29\x49\xd4\xcf\xc0\xde\x5e\x1b\x29\x49\xc0\xdb\xb3"},
		{"ISO 2022 IR 100", "Buc^Jérôme", "\x1b\x2d\x41\x42\x75\x63\x5e\x1b\x2d\x41\x4a\xe9\x72\xf4\x6d\x65"},
		{"ISO 2022 IR 101", "Wałęsa", "\x1b\x2d\x42\x57\x61\xb3\xea\x73\x61"},
		{"ISO 2022 IR 109", "antaŭnomo", "\x1b\x2d\x43\x61\x6e\x74\x61\xfd\x6e\x6f\x6d\x6f"},
		{"ISO 2022 IR 110", "vārds", "\x1b\x2d\x44\x76\xe0\x72\x64\x73"},
		{"ISO 2022 IR 127", "قباني^لنزار", "\x1b\x2d\x47\xe2\xc8\xc7\xe6\xea\x5e\x1b\x2d\x47\xe4\xe6\xd2\xc7\xd1"},
		{"ISO 2022 IR 126", "Διονυσιος", "\x1b\x2d\x46\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2"},
		{"ISO 2022 IR 138", "שרון^דבורה", "\x1b\x2d\x48\xf9\xf8\xe5\xef\x5e\x1b\x2d\x48\xe3\xe1\xe5\xf8\xe4"},
		{"ISO 2022 IR 144", "Люкceмбypг", "\x1b\x2d\x4c\xbb\xee\xda\x63\x65\xdc\xd1\x79\x70\xd3"},
		{"ISO 2022 IR 148", "Çavuşoğlu", "\x1b\x2d\x4d\xc7\x61\x76\x75\xfe\x6f\xf0\x6c\x75"},
		{"ISO 2022 IR 166", "นามสกุล", "\x1b\x2d\x54\xb9\xd2\xc1\xca\xa1\xd8\xc5"},
		{"ISO 2022 IR 203", "Œ", "\x1b\x2d\x62\xbc"},
	}
	var dc []decodeCase
	for _, c := range cases {
		dc = append(dc, decodeCase{c.term, []string{"", c.term}, "PN", []byte("ASCII+" + c.raw), "ASCII+" + c.want})
	}
	runDecodeCases(t, dc)
}

// TestInvalid checks that malformed input becomes U+FFFD and escape
// sequences never reach the output.
func TestInvalid(t *testing.T) {
	ko := []string{"", "ISO 2022 IR 149"}
	jis := []string{"", "ISO 2022 IR 87"}
	runDecodeCases(t, []decodeCase{
		{"unknown escape", jis, "LO", []byte("a\x1b(Zb"), "a\uFFFDb"},
		{"undefined G0 96-set", jis, "LO", []byte("a\x1b,Ab"), "a\uFFFDb"},
		{"truncated escape", jis, "LO", []byte("abc\x1b$"), "abc\uFFFD$"},
		{"lone ESC", jis, "LO", []byte("\x1b"), "\uFFFD"},
		{"ESC ESC", jis, "LO", []byte("\x1b\x1b(Bx"), "\uFFFDx"},
		{"JIS odd byte at end", jis, "LO", []byte(escJIS + "\x24"), "\uFFFD"},
		{"JIS odd byte before ESC", jis, "LO", []byte(escJIS + "\x24" + escASCII + "a"), "\uFFFDa"},
		{"JIS GR byte", jis, "LO", []byte(escJIS + "\xa4\xa2"), "\uFFFD\uFFFD"},
		{"KSC odd byte", ko, "LO", []byte(escKSC + "\xb1A"), "\uFFFDA"},
		{"KSC GR then GL", ko, "LO", []byte(escKSC + "\xb1\x31"), "\uFFFD1"},
		{"KSC A0 FF", ko, "LO", []byte(escKSC + "\xa0\xff"), "\uFFFD\uFFFD"},
		{"KSC C1", ko, "LO", []byte(escKSC + "\x80\x9f"), "\uFFFD\uFFFD"},
		{"no G1 designated", ko, "LO", []byte("\xb1\xe6"), "\uFFFD\uFFFD"},
		{"C0 passes through", ko, "LT", []byte("a\x00b"), "a\x00b"},
	})
}

// TestUnassignedPairKeepsAlignment: an unassigned two-byte code gives one
// U+FFFD and the following character still decodes.
func TestUnassignedPairKeepsAlignment(t *testing.T) {
	for _, c := range []struct {
		name   string
		g      *gset
		prefix string // escape sequence designating g
		gr     bool   // g is designated to G1
		next   string // the following character, 7-bit
		want   rune
	}{
		{"JIS X 0208", jisX0208, escJIS, false, "\x30\x21", '亜'},
		{"JIS X 0212", jisX0212, escJIS212, false, "\x30\x21", '丂'},
		{"KS X 1001", ksx1001, escKSC, true, "\x30\x21", '가'},
		{"GB 2312", gb2312, escGB, true, "\x30\x21", '啊'},
	} {
		i := slices.Index(c.g.table()[:], utf8.RuneError)
		if i < 0 {
			t.Errorf("%s: no unassigned code", c.name)
			continue
		}
		pair := []byte{byte(0x21 + i/94), byte(0x21 + i%94)}
		raw := append(pair, c.next...)
		if c.gr {
			for j := range raw {
				raw[j] |= 0x80
			}
		}
		raw = append([]byte(c.prefix), raw...)
		want := "\uFFFD" + string(c.want)
		if got := (&Set{}).Decode(raw, "LO"); got != want {
			t.Errorf("%s: unassigned % X: got %q, want %q", c.name, pair, got, want)
		}
	}
}

// TestOtherVRs: VRs not in PS3.5 6.1.2.3 ignore the character set.
func TestOtherVRs(t *testing.T) {
	latin1 := []string{"ISO_IR 100"}
	runDecodeCases(t, []decodeCase{
		{"CS", latin1, "CS", []byte("ORIGINAL\\PRIMARY"), "ORIGINAL\\PRIMARY"},
		{"CS GR", latin1, "CS", []byte("J\xe9"), "J\uFFFD"},
		{"UN", []string{"ISO_IR 192"}, "UN", []byte("\xc3\xa9"), "\uFFFD\uFFFD"},
		{"DA", []string{"GB18030"}, "DA", []byte("20240102"), "20240102"},
		{"empty VR", latin1, "", []byte("\xe9"), "\uFFFD"},
		{"lower-case VR", latin1, "pn", []byte("\xe9"), "\uFFFD"},
		{"escape kept", []string{"", "ISO 2022 IR 87"}, "UI", []byte("1.2\x1b$B"), "1.2\x1b$B"},
	})
}

func TestParse(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		for _, terms := range [][]string{nil, {}, {""}, {"ISO_IR 6"}, {"ISO 2022 IR 6"}} {
			s, err := Parse(terms)
			if err != nil || s == nil {
				t.Fatalf("Parse(%q) = %v, %v", terms, s, err)
			}
			if got := s.Decode([]byte("A\xe9"), "LO"); got != "A\uFFFD" {
				t.Errorf("Parse(%q): got %q", terms, got)
			}
		}
	})
	t.Run("nil set", func(t *testing.T) {
		var s *Set
		if got := s.Decode([]byte("Doe^J\xe9"), "PN"); got != "Doe^J\uFFFD" {
			t.Errorf("got %q", got)
		}
		if s.Terms() != nil || s.String() != "" {
			t.Errorf("nil Terms/String = %q, %q", s.Terms(), s.String())
		}
		var zero Set
		if got := zero.Decode([]byte(escJIS+"\x24\x22"+escASCII), "PN"); got != "あ" {
			t.Errorf("zero Set: got %q", got)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		s, err := Parse([]string{"ISO_IR 999"})
		if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "ISO_IR 999") {
			t.Fatalf("err = %v", err)
		}
		if got := s.Decode([]byte("A\xe9"), "LO"); got != "A\uFFFD" {
			t.Errorf("got %q", got)
		}
		s, err = Parse([]string{"ISO 2022 IR 100", "ISO 2022 IR 146", "KOI8"})
		if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "ISO 2022 IR 146") || !strings.Contains(err.Error(), "KOI8") {
			t.Fatalf("err = %v", err)
		}
		if got := s.Decode([]byte("J\xe9"), "LO"); got != "Jé" {
			t.Errorf("known value 1 lost: %q", got)
		}
	})
	runDecodeCases(t, []decodeCase{
		{"misspelled ISO IR 100", []string{"ISO IR 100"}, "PN", []byte("J\xe9"), "Jé"},
		{"misspelled iso-ir 144", []string{"iso-ir 144"}, "PN", []byte("\xbb"), "Л"},
		{"misspelled ISO_2022-IR 100", []string{"ISO_2022-IR 100", "ISO_2022_IR+126"}, "PN",
			[]byte("J\xe9=" + escGreek + "\xc4"), "Jé=Δ"},
		{"ISO_IR 13 with extensions", []string{"ISO_IR 13", "ISO 2022 IR 87"}, "PN",
			[]byte("\xd4=" + escJIS + "\x3b\x33" + escRomaji), "ﾔ=山"},
		{"padded term", []string{" ISO_IR 192 "}, "PN", []byte("\xc3\xa9"), "é"},
		{"UTF-8 ignores extensions", []string{"ISO_IR 192", "ISO 2022 IR 100"}, "PN", []byte("J\xc3\xa9"), "Jé"},
		{"UTF-8 ignored as extension", []string{"ISO 2022 IR 100", "ISO_IR 192"}, "PN", []byte("J\xe9"), "Jé"},
		{"lone IR 149 without escapes", []string{"ISO 2022 IR 149"}, "PN", []byte(enc(t, korean.EUCKR, "김희중")), "김희중"},
		{"lone IR 58 without escapes", []string{"ISO 2022 IR 58"}, "PN", hx(t, "D5 C5"), "张"},
		{"lone IR 87", []string{"ISO 2022 IR 87"}, "PN", []byte("Yamada=" + escJIS + "\x3b\x33" + escASCII), "Yamada=山"},
		{"undeclared escape honoured", []string{"ISO_IR 100"}, "PN", []byte("J\xe9=" + escGreek + "\xc4"), "Jé=Δ"},
	})
	t.Run("terms", func(t *testing.T) {
		in := []string{"", "ISO 2022 IR 87"}
		s, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		got := s.Terms()
		if !slices.Equal(got, in) {
			t.Fatalf("Terms() = %q", got)
		}
		got[1] = "changed"
		in[0] = "changed"
		if !slices.Equal(s.Terms(), []string{"", "ISO 2022 IR 87"}) {
			t.Errorf("Terms() aliases its input or output: %q", s.Terms())
		}
		if s.String() != `\ISO 2022 IR 87` {
			t.Errorf("String() = %q", s.String())
		}
	})
}

func TestTablesKnownCharacters(t *testing.T) {
	for _, c := range []struct {
		g      *gset
		c1, c2 byte
		want   rune
	}{
		{jisX0208, 0x3b, 0x33, '山'},
		{jisX0212, 0x6c, 0x3f, '鷗'},
		{ksx1001, 0x48, 0x2b, '홍'},
		{gb2312, 0x55, 0x45, '张'},
	} {
		if got := c.g.rune2(c.c1, c.c2); got != c.want {
			t.Errorf("%02X%02X: got %q, want %q", c.c1, c.c2, got, c.want)
		}
	}
}

var fuzzVRs = []string{"SH", "LO", "ST", "LT", "UT", "PN", "UC", "UN", "CS", "DA", ""}

// FuzzDecode: any terms and bytes decode without panicking to valid UTF-8
// that invents no value delimiter, and ISO 2022 decoding drops every ESC.
func FuzzDecode(f *testing.F) {
	f.Add(`\ISO 2022 IR 87`, []byte("Yamada^Tarou="+escJIS+"\x3b\x33\x45\x44"+escASCII))
	f.Add(`ISO 2022 IR 13\ISO 2022 IR 87\ISO 2022 IR 159`, []byte(escJIS212+"\x6c\x3f\xd4\\"+escKana))
	f.Add(`\ISO 2022 IR 149`, []byte("Hong="+escKSC+"\xfb\xf3^\xb1"))
	f.Add(`\ISO 2022 IR 58`, []byte(escGB+"\xd5\xc5="+escGreek+"\xc4\x1b"))
	f.Add(`GB18030`, []byte("\xce\xa4^\x81\x30\x86\x30\x81"))
	f.Add(`GBK`, []byte("\x81\x5c\\\xff"))
	f.Add(`ISO_IR 192`, []byte("\xe9\x9f\xa6\xc3"))
	f.Add(`ISO_IR 100\ISO 2022 IR 126`, []byte("\x80\xe9\x1b-F\xc4\r\n\x1b$"))
	f.Add(`ISO_IR 13`, []byte("\\~\xb1\xe0"))
	f.Add(``, []byte("\x1b$)C\xb0"))
	f.Fuzz(func(t *testing.T, terms string, raw []byte) {
		var values []string
		if terms != "" {
			values = strings.Split(terms, `\`)
		}
		s, _ := Parse(values)
		for _, set := range []*Set{s, nil} {
			for _, vr := range fuzzVRs {
				out := set.Decode(raw, vr)
				if !utf8.ValidString(out) {
					t.Fatalf("%q %s % X: invalid UTF-8 %q", terms, vr, raw, out)
				}
				if strings.Count(out, `\`) > bytes.Count(raw, []byte(`\`)) {
					t.Fatalf("%q %s % X: invented a backslash: %q", terms, vr, raw, out)
				}
				iso2022 := set == nil || (set.standalone == nil && !set.utf8)
				affected := slices.Contains([]string{"SH", "LO", "ST", "LT", "UT", "PN", "UC"}, vr)
				if iso2022 && affected && strings.IndexByte(out, esc) >= 0 {
					t.Fatalf("%q %s % X: ESC in output %q", terms, vr, raw, out)
				}
			}
		}
	})
}
