// Package dicomtest writes DICOM Part 10 files for tests.
package dicomtest

// A small DICOM Part 10 writer for tests: explicit/implicit VR little endian, explicit VR big
// endian, deflated, encapsulated pixel data (with or without a Basic Offset Table), nested
// sequences of defined or undefined length. It writes exactly what it is told (no dictionary,
// no validation), so tests can also build files that are wrong on purpose.
//

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Transfer syntax UIDs used by the tests.
const (
	TSImplicitLE   = "1.2.840.10008.1.2"
	TSExplicitLE   = "1.2.840.10008.1.2.1"
	TSDeflated     = "1.2.840.10008.1.2.1.99"
	TSExplicitBE   = "1.2.840.10008.1.2.2"
	TSJPEGBaseline = "1.2.840.10008.1.2.4.50"
	TSJPEGLossless = "1.2.840.10008.1.2.4.70"
	TSRLE          = "1.2.840.10008.1.2.5"

	SOPClassSC = "1.2.840.10008.5.1.4.1.1.7"
	SOPClassCT = "1.2.840.10008.5.1.4.1.1.2"
)

// E is one data element to write.
type E struct {
	Tag uint32 // group<<16 | element
	VR  string
	// One of the following is the value.
	Str   []string  // text VRs: joined with '\', padded to even length
	Raw   []byte    // written as is (padded to even length): OB, UN, or text in a character set
	U16   []uint16  // US, SS, OW: written in the file's byte order
	U32   []uint32  // UL, SL, OL
	U64   []uint64  // OV, UV, SV
	F64   []float64 // FD
	F32   []float32 // FL
	Items []Item    // SQ
	// UndefLen writes a sequence (or a UN element holding a sequence) with undefined length.
	UndefLen bool
	// Encapsulated pixel data: BOT is the Basic Offset Table (nil: empty item), Frags the
	// fragments. Written with undefined length whatever VR says.
	Encap bool
	BOT   []uint32
	Frags [][]byte
	// Length, when not zero, overrides the value length written in the header (broken files).
	Length uint32
}

// Item is a sequence item.
type Item struct {
	Elems    []E
	UndefLen bool
}

func TagOf(g, e uint16) uint32 { return uint32(g)<<16 | uint32(e) }

// Str makes a text element.
func Str(tag uint32, vr string, vals ...string) E { return E{Tag: tag, VR: vr, Str: vals} }

// RawE makes an element whose value bytes are given.
func RawE(tag uint32, vr string, b []byte) E { return E{Tag: tag, VR: vr, Raw: b} }

// US makes a US element.
func US(tag uint32, v ...uint16) E { return E{Tag: tag, VR: "US", U16: v} }

// UL makes a UL element.
func UL(tag uint32, v ...uint32) E { return E{Tag: tag, VR: "UL", U32: v} }

// Seq makes a sequence of items of defined length (undef=false) or undefined length.
func Seq(tag uint32, undef bool, items ...Item) E {
	return E{Tag: tag, VR: "SQ", Items: items, UndefLen: undef}
}

// Encapsulated makes encapsulated Pixel Data.
func Encapsulated(bot []uint32, frags ...[]byte) E {
	return E{Tag: 0x7FE00010, VR: "OB", Encap: true, BOT: bot, Frags: frags}
}

// File describes a Part 10 file.
type File struct {
	TS    string
	Elems []E
	// Meta overrides: SOPClass/SOPInstance default to the data set's (0008,0016)/(0008,0018).
	MetaSOPClass, MetaSOPInstance string
	NoMetaSOPInstance             bool
	// Preamble defaults to 128 zero bytes.
	Preamble []byte
}

var longVRs = map[string]bool{"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true,
	"SQ": true, "SV": true, "UC": true, "UN": true, "UR": true, "UT": true, "UV": true}

type enc struct {
	bo       binary.AppendByteOrder
	implicit bool
}

func (en enc) header(b []byte, tag uint32, vr string, length uint32) []byte {
	b = en.bo.AppendUint16(b, uint16(tag>>16))
	b = en.bo.AppendUint16(b, uint16(tag))
	if en.implicit || tag>>16 == 0xFFFE {
		return en.bo.AppendUint32(b, length)
	}
	b = append(b, vr...)
	if longVRs[vr] {
		b = append(b, 0, 0)
		return en.bo.AppendUint32(b, length)
	}
	if length > 0xFFFF {
		panic(fmt.Sprintf("value of %08X too long for VR %s", tag, vr))
	}
	return en.bo.AppendUint16(b, uint16(length))
}

func (en enc) value(e E) []byte {
	var v []byte
	switch {
	case e.Str != nil:
		v = []byte(strings.Join(e.Str, `\`))
		if len(v)%2 == 1 {
			if e.VR == "UI" {
				v = append(v, 0)
			} else {
				v = append(v, ' ')
			}
		}
	case e.Raw != nil:
		v = append([]byte(nil), e.Raw...)
		if len(v)%2 == 1 {
			switch e.VR {
			case "OB", "UN", "UI":
				v = append(v, 0)
			default:
				v = append(v, ' ')
			}
		}
	case e.U16 != nil:
		for _, x := range e.U16 {
			v = en.bo.AppendUint16(v, x)
		}
	case e.U32 != nil:
		for _, x := range e.U32 {
			v = en.bo.AppendUint32(v, x)
		}
	case e.U64 != nil:
		for _, x := range e.U64 {
			v = en.bo.AppendUint64(v, x)
		}
	case e.F64 != nil:
		for _, x := range e.F64 {
			v = en.bo.AppendUint64(v, math.Float64bits(x))
		}
	case e.F32 != nil:
		for _, x := range e.F32 {
			v = en.bo.AppendUint32(v, math.Float32bits(x))
		}
	}
	return v
}

func (en enc) elems(b []byte, elems []E) []byte {
	sorted := append([]E(nil), elems...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Tag < sorted[j].Tag })
	for _, e := range sorted {
		b = en.elem(b, e)
	}
	return b
}

func (en enc) elem(b []byte, e E) []byte {
	switch {
	case e.Encap:
		b = en.header(b, e.Tag, e.VR, 0xFFFFFFFF)
		var bot []byte
		for _, o := range e.BOT {
			bot = binary.LittleEndian.AppendUint32(bot, o)
		}
		b = en.header(b, 0xFFFEE000, "", uint32(len(bot)))
		b = append(b, bot...)
		for _, f := range e.Frags {
			if len(f)%2 == 1 {
				f = append(append([]byte(nil), f...), 0)
			}
			b = en.header(b, 0xFFFEE000, "", uint32(len(f)))
			b = append(b, f...)
		}
		return en.header(b, 0xFFFEE0DD, "", 0)
	case e.Items != nil || e.VR == "SQ":
		var body []byte
		ien := en
		if e.VR == "UN" {
			// A sequence in a UN element is encoded in implicit VR little endian (PS3.5 6.2.2).
			ien = enc{bo: binary.LittleEndian, implicit: true}
		}
		for _, it := range e.Items {
			inner := ien.elems(nil, it.Elems)
			if it.UndefLen {
				body = en.header(body, 0xFFFEE000, "", 0xFFFFFFFF)
				body = append(body, inner...)
				body = en.header(body, 0xFFFEE00D, "", 0)
			} else {
				body = en.header(body, 0xFFFEE000, "", uint32(len(inner)))
				body = append(body, inner...)
			}
		}
		if e.UndefLen {
			b = en.header(b, e.Tag, e.VR, 0xFFFFFFFF)
			b = append(b, body...)
			return en.header(b, 0xFFFEE0DD, "", 0)
		}
		b = en.header(b, e.Tag, e.VR, uint32(len(body)))
		return append(b, body...)
	}
	v := en.value(e)
	n := uint32(len(v))
	if e.Length != 0 {
		n = e.Length
	}
	b = en.header(b, e.Tag, e.VR, n)
	return append(b, v...)
}

// DataSet encodes elements in a transfer syntax (not deflated).
func DataSet(ts string, elems []E) []byte {
	en := enc{bo: binary.LittleEndian}
	switch ts {
	case TSImplicitLE:
		en.implicit = true
	case TSExplicitBE:
		en.bo = binary.BigEndian
	}
	return en.elems(nil, elems)
}

func findValue(elems []E, tag uint32) string {
	for _, e := range elems {
		if e.Tag == tag && len(e.Str) > 0 {
			return e.Str[0]
		}
	}
	return ""
}

// Meta encodes the File Meta Information group (with its group length).
func Meta(ts, sopClass, sopInstance string, withInstance bool) []byte {
	le := enc{bo: binary.LittleEndian}
	meta := []E{
		RawE(0x00020001, "OB", []byte{0, 1}),
		Str(0x00020002, "UI", sopClass),
		Str(0x00020010, "UI", ts),
		Str(0x00020012, "UI", "1.2.826.0.1.3680043.10.543.1"),
		Str(0x00020013, "SH", "SANPING_TEST"),
	}
	if withInstance {
		meta = append(meta, Str(0x00020003, "UI", sopInstance))
	}
	body := le.elems(nil, meta)
	out := le.elem(nil, UL(0x00020000, uint32(len(body))))
	return append(out, body...)
}

// Bytes writes the whole Part 10 file.
func (f File) Bytes() []byte {
	ts := f.TS
	if ts == "" {
		ts = TSExplicitLE
	}
	class, inst := f.MetaSOPClass, f.MetaSOPInstance
	if class == "" {
		class = findValue(f.Elems, 0x00080016)
	}
	if inst == "" {
		inst = findValue(f.Elems, 0x00080018)
	}
	var out bytes.Buffer
	if f.Preamble != nil {
		out.Write(f.Preamble)
	} else {
		out.Write(make([]byte, 128))
	}
	out.WriteString("DICM")
	out.Write(Meta(ts, class, inst, !f.NoMetaSOPInstance))
	dsTS := ts
	if ts == TSDeflated {
		dsTS = TSExplicitLE
	} else if ts != TSImplicitLE && ts != TSExplicitBE {
		dsTS = TSExplicitLE
	}
	ds := DataSet(dsTS, f.Elems)
	if ts == TSDeflated {
		var z bytes.Buffer
		w, _ := flate.NewWriter(&z, flate.BestCompression)
		w.Write(ds)
		w.Close()
		ds = z.Bytes()
	}
	out.Write(ds)
	return out.Bytes()
}

// UIDs of a generated instance.
type UIDs struct{ Study, Series, SOP string }

// BaseElems are the identifying attributes every generated instance has.
func BaseElems(u UIDs, sopClass string) []E {
	return []E{
		Str(0x00080016, "UI", sopClass),
		Str(0x00080018, "UI", u.SOP),
		Str(0x0020000D, "UI", u.Study),
		Str(0x0020000E, "UI", u.Series),
	}
}

// ImageElems describes native or encapsulated pixel data of rows x cols, frames frames.
func ImageElems(rows, cols, bits, frames int, photometric string) []E {
	e := []E{
		US(0x00280002, 1),
		Str(0x00280004, "CS", photometric),
		US(0x00280010, uint16(rows)),
		US(0x00280011, uint16(cols)),
		US(0x00280100, uint16(bits)),
		US(0x00280101, uint16(bits)),
		US(0x00280102, uint16(bits-1)),
		US(0x00280103, 0),
	}
	if frames > 0 {
		e = append(e, Str(0x00280008, "IS", fmt.Sprint(frames)))
	}
	return e
}

// Pixels16 returns n 16-bit pixel values that differ from each other and from their byte swaps.
func Pixels16(n int, seed int) []uint16 {
	p := make([]uint16, n)
	for i := range p {
		p[i] = uint16(seed*7919 + i*257 + 1)
	}
	return p
}

func LE16(p []uint16) []byte {
	var b []byte
	for _, x := range p {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

func BE16(p []uint16) []byte {
	var b []byte
	for _, x := range p {
		b = binary.BigEndian.AppendUint16(b, x)
	}
	return b
}

// JPEGFragment is a fake JPEG fragment: SOI when start is set, then filler.
func JPEGFragment(start bool, n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, n)
	if start && n >= 2 {
		b[0], b[1] = 0xFF, 0xD8
	}
	return b
}

// ExplicitLE encodes elements in explicit VR little endian with nothing before them (for
// files that are broken on purpose, such as meta information without a transfer syntax).
func ExplicitLE(elems []E) []byte { return enc{bo: binary.LittleEndian}.elems(nil, elems) }

// Run runs a program and fails the test with its output if it fails.
func Run(tb testing.TB, name string, args ...string) {
	tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// BenchFiles reads the .dcm files of the directory named by SANPING_BENCH_FILES (bench/cmd/dwbench
// -keep writes one), skipping the benchmark when it is not set.
func BenchFiles(b *testing.B) [][]byte {
	dir := os.Getenv("SANPING_BENCH_FILES")
	if dir == "" {
		b.Skip("SANPING_BENCH_FILES not set")
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	if len(paths) == 0 {
		b.Skip("no .dcm files in SANPING_BENCH_FILES")
	}
	var files [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
	}
	return files
}
