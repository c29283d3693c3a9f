package main

// A small DICOM Part 10 writer for the benchmark's synthetic images:
// 128-byte preamble, "DICM", a file meta group (with its group length) and a
// data set, all in Explicit VR Little Endian. Only what dwbench needs.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strings"
)

const (
	tsExplicitLE    = "1.2.840.10008.1.2.1"
	sopClassMR      = "1.2.840.10008.5.1.4.1.1.4"
	sopClassCT      = "1.2.840.10008.5.1.4.1.1.2"
	sopClassCR      = "1.2.840.10008.5.1.4.1.1.1"
	implClassUID    = "2.25.196032846318937605817370218290731935143"
	implVersionName = "DWBENCH_1"
)

// longVR are the VRs whose explicit-VR header is tag, VR, 2 reserved bytes
// and a 32-bit length (PS3.5 7.1.2).
var longVR = map[string]bool{
	"OB": true, "OD": true, "OF": true, "OL": true, "OV": true, "OW": true,
	"SQ": true, "SV": true, "UC": true, "UN": true, "UR": true, "UT": true, "UV": true,
}

type element struct {
	tag uint32 // group<<16 | element
	vr  string
	val []byte
}

func strElem(tag uint32, vr string, vals ...string) element {
	v := []byte(strings.Join(vals, `\`))
	if len(v)%2 == 1 {
		if vr == "UI" {
			v = append(v, 0)
		} else {
			v = append(v, ' ')
		}
	}
	return element{tag, vr, v}
}

func usElem(tag uint32, v uint16) element {
	b := make([]byte, 2)
	binary.LittleEndian.PutUint16(b, v)
	return element{tag, "US", b}
}

func ulElem(tag uint32, v uint32) element {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, v)
	return element{tag, "UL", b}
}

func writeElems(buf *bytes.Buffer, elems []element) {
	sort.Slice(elems, func(i, j int) bool { return elems[i].tag < elems[j].tag })
	var hdr [12]byte
	for _, e := range elems {
		val := e.val
		if len(val)%2 == 1 {
			val = append(val[:len(val):len(val)], 0)
		}
		binary.LittleEndian.PutUint16(hdr[0:], uint16(e.tag>>16))
		binary.LittleEndian.PutUint16(hdr[2:], uint16(e.tag))
		hdr[4], hdr[5] = e.vr[0], e.vr[1]
		if longVR[e.vr] {
			hdr[6], hdr[7] = 0, 0
			binary.LittleEndian.PutUint32(hdr[8:], uint32(len(val)))
			buf.Write(hdr[:12])
		} else {
			if len(val) > 0xffff {
				panic(fmt.Sprintf("value of (%04x,%04x) too long for VR %s", e.tag>>16, e.tag&0xffff, e.vr))
			}
			binary.LittleEndian.PutUint16(hdr[6:], uint16(len(val)))
			buf.Write(hdr[:8])
		}
		buf.Write(val)
	}
}

// part10 returns a complete Part 10 file for the data set elems, which must
// include SOP Class UID (0008,0016) and SOP Instance UID (0008,0018).
func part10(sopClass, sopInstance string, elems []element, sizeHint int) []byte {
	var meta bytes.Buffer
	writeElems(&meta, []element{
		{0x00020001, "OB", []byte{0, 1}},
		strElem(0x00020002, "UI", sopClass),
		strElem(0x00020003, "UI", sopInstance),
		strElem(0x00020010, "UI", tsExplicitLE),
		strElem(0x00020012, "UI", implClassUID),
		strElem(0x00020013, "SH", implVersionName),
	})
	out := bytes.NewBuffer(make([]byte, 0, sizeHint+meta.Len()+4096))
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	writeElems(out, []element{ulElem(0x00020000, uint32(meta.Len()))})
	out.Write(meta.Bytes())
	writeElems(out, elems)
	return out.Bytes()
}

// uidRoot returns "2.25.<decimal>" where the decimal is the given 96 random
// bits; everything dwbench generates in one run sits under it.
func uidRoot(random []byte) string {
	return "2.25." + new(big.Int).SetBytes(random).String()
}

// sliceSpec describes one generated image.
type sliceSpec struct {
	modality     string // "MR" or "CT"
	patientName  string
	patientID    string
	studyUID     string
	seriesUID    string
	sopUID       string
	frameOfRef   string
	studyID      string
	seriesNumber int
	seriesDesc   string
	accession    string
	instanceNum  int // 1-based
	rows, cols   int
	seed         uint64
}

// makeSlice builds the Part 10 bytes for one slice. The pixel data is a
// deterministic function of spec.seed and the slice geometry.
func makeSlice(s sliceSpec) []byte {
	sopClass := sopClassMR
	bitsStored, highBit := uint16(12), uint16(11)
	wc, ww, intercept := "600", "1200", "0"
	thickness := 5.0
	if s.modality == "CT" {
		sopClass = sopClassCT
		wc, ww, intercept = "40", "400", "-1024"
		thickness = 1.0
	}
	z := float64(s.instanceNum-1) * thickness
	pos := fmt.Sprintf("-125\\-125\\%.1f", z)
	pixels := makePixels(s.rows, s.cols, s.instanceNum, s.seed, s.modality == "CT")
	elems := []element{
		strElem(0x00080005, "CS", "ISO_IR 100"),
		strElem(0x00080008, "CS", "ORIGINAL", "PRIMARY", "AXIAL"),
		strElem(0x00080016, "UI", sopClass),
		strElem(0x00080018, "UI", s.sopUID),
		strElem(0x00080020, "DA", "20240115"),
		strElem(0x00080030, "TM", "101500"),
		strElem(0x00080050, "SH", s.accession),
		strElem(0x00080060, "CS", s.modality),
		strElem(0x00080070, "LO", "DWBENCH"),
		strElem(0x00080090, "PN", ""),
		strElem(0x0008103E, "LO", s.seriesDesc),
		strElem(0x00100010, "PN", s.patientName),
		strElem(0x00100020, "LO", s.patientID),
		strElem(0x00100030, "DA", "19700101"),
		strElem(0x00100040, "CS", "O"),
		strElem(0x00180050, "DS", fmt.Sprintf("%.1f", thickness)),
		strElem(0x0020000D, "UI", s.studyUID),
		strElem(0x0020000E, "UI", s.seriesUID),
		strElem(0x00200010, "SH", s.studyID),
		strElem(0x00200011, "IS", fmt.Sprint(s.seriesNumber)),
		strElem(0x00200013, "IS", fmt.Sprint(s.instanceNum)),
		strElem(0x00200032, "DS", pos),
		strElem(0x00200037, "DS", "1", "0", "0", "0", "1", "0"),
		strElem(0x00200052, "UI", s.frameOfRef),
		strElem(0x00201041, "DS", fmt.Sprintf("%.1f", z)),
		usElem(0x00280002, 1),
		strElem(0x00280004, "CS", "MONOCHROME2"),
		usElem(0x00280010, uint16(s.rows)),
		usElem(0x00280011, uint16(s.cols)),
		strElem(0x00280030, "DS", "0.5", "0.5"),
		usElem(0x00280100, 16),
		usElem(0x00280101, bitsStored),
		usElem(0x00280102, highBit),
		usElem(0x00280103, 0),
		strElem(0x00281050, "DS", wc),
		strElem(0x00281051, "DS", ww),
		strElem(0x00281052, "DS", intercept),
		strElem(0x00281053, "DS", "1"),
		{0x7FE00010, "OW", pixels},
	}
	return part10(sopClass, s.sopUID, elems, len(pixels))
}

// makePixels draws a disc phantom with a slice-dependent inner disc plus
// xorshift noise, 12-bit values stored in 16 bits, little endian.
func makePixels(rows, cols, slice int, seed uint64, ct bool) []byte {
	out := make([]byte, rows*cols*2)
	x := seed*0x9E3779B97F4A7C15 + uint64(slice)*0xBF58476D1CE4E5B9 + 1
	cy, cx := float64(rows)/2, float64(cols)/2
	r := 0.45 * float64(min(rows, cols))
	r2 := r * r
	inner := (0.1 + 0.2*float64(slice%50)/50) * r
	inner2 := inner * inner
	bg, body, organ := uint16(0), uint16(1000), uint16(1400)
	if !ct {
		bg, body, organ = 0, 500, 900
	}
	i := 0
	for y := 0; y < rows; y++ {
		dy := float64(y) - cy
		for c := 0; c < cols; c++ {
			dx := float64(c) - cx
			d2 := dx*dx + dy*dy
			v := bg
			if d2 < r2 {
				v = body
				if d2 < inner2 {
					v = organ
				}
			}
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			v += uint16(x & 63)
			out[i] = byte(v)
			out[i+1] = byte(v >> 8)
			i += 2
		}
	}
	return out
}

// makeCR builds the Part 10 bytes for one Computed Radiography image (CR
// Image Storage): a chest-like projection of s.rows x s.cols, MONOCHROME1
// (low stored values display bright), 12 bits stored in 16, unsigned, with
// a window. s.modality, slice geometry and frameOfRef are ignored.
func makeCR(s sliceSpec) []byte {
	pixels := makeChestPixels(s.rows, s.cols, s.seed)
	elems := []element{
		strElem(0x00080005, "CS", "ISO_IR 100"),
		strElem(0x00080008, "CS", "ORIGINAL", "PRIMARY"),
		strElem(0x00080016, "UI", sopClassCR),
		strElem(0x00080018, "UI", s.sopUID),
		strElem(0x00080020, "DA", "20240115"),
		strElem(0x00080030, "TM", "101500"),
		strElem(0x00080050, "SH", s.accession),
		strElem(0x00080060, "CS", "CR"),
		strElem(0x00080070, "LO", "DWBENCH"),
		strElem(0x00080090, "PN", ""),
		strElem(0x0008103E, "LO", s.seriesDesc),
		strElem(0x00100010, "PN", s.patientName),
		strElem(0x00100020, "LO", s.patientID),
		strElem(0x00100030, "DA", "19700101"),
		strElem(0x00100040, "CS", "O"),
		strElem(0x00180015, "CS", "CHEST"),
		strElem(0x00181164, "DS", "0.2", "0.2"),
		strElem(0x00185101, "CS", "PA"),
		strElem(0x0020000D, "UI", s.studyUID),
		strElem(0x0020000E, "UI", s.seriesUID),
		strElem(0x00200010, "SH", s.studyID),
		strElem(0x00200011, "IS", fmt.Sprint(s.seriesNumber)),
		strElem(0x00200013, "IS", fmt.Sprint(s.instanceNum)),
		strElem(0x00200020, "CS", "L", "F"),
		usElem(0x00280002, 1),
		strElem(0x00280004, "CS", "MONOCHROME1"),
		usElem(0x00280010, uint16(s.rows)),
		usElem(0x00280011, uint16(s.cols)),
		usElem(0x00280100, 16),
		usElem(0x00280101, 12),
		usElem(0x00280102, 11),
		usElem(0x00280103, 0),
		strElem(0x00281050, "DS", "2500"),
		strElem(0x00281051, "DS", "2800"),
		{0x7FE00010, "OW", pixels},
	}
	return part10(sopClassCR, s.sopUID, elems, len(pixels))
}

// ellipseIn is 1 well inside the ellipse centred on (cx, cy) with radii
// (rx, ry), 0 outside it, with a smooth ramp over the outer ~15 % of the
// radius (so edges are soft, as in a projection image).
func ellipseIn(x, y, cx, cy, rx, ry float64) float64 {
	dx, dy := (x-cx)/rx, (y-cy)/ry
	e := dx*dx + dy*dy
	switch {
	case e >= 1:
		return 0
	case e <= 0.72:
		return 1
	}
	t := (1 - e) / 0.28 // 0 at the edge, 1 inside
	return t * t * (3 - 2*t)
}

// makeChestPixels draws a chest-like projection: direct exposure around a
// body, two lungs with curved ribs, heart and spine, a slight heel-effect
// gradient, plus xorshift noise. Values are attenuation subtracted from
// the direct-exposure level, as MONOCHROME1 stores them (air = high =
// dark on display, bone = low = bright), 12 bits in 16, little endian.
func makeChestPixels(rows, cols int, seed uint64) []byte {
	out := make([]byte, rows*cols*2)
	x := seed*0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D
	fr, fc := float64(rows), float64(cols)
	i := 0
	for y := 0; y < rows; y++ {
		v := float64(y) / fr
		for c := 0; c < cols; c++ {
			u := float64(c) / fc
			att := 1900 * ellipseIn(u, v, 0.5, 0.58, 0.40, 0.56) // body
			if att > 0 {
				lung := ellipseIn(u, v, 0.335, 0.47, 0.115, 0.31) + ellipseIn(u, v, 0.665, 0.47, 0.115, 0.31)
				if lung > 0 {
					// Ribs: bands curving down from the spine.
					d := u - 0.5
					ph := 14 * (v - 0.9*d*d)
					r := 0.5 + 0.5*math.Cos(2*math.Pi*ph)
					r *= r
					att += lung * (300*r*r - 950)
				}
				att += 550 * ellipseIn(u, v, 0.555, 0.63, 0.11, 0.13) // heart
				att += 650 * ellipseIn(u, v, 0.5, 0.55, 0.028, 0.6)   // spine
			}
			val := 3750 - att - 150*u
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			val += float64(int(x&127) - 64)
			p := uint16(max(0, min(4095, int(val))))
			out[i] = byte(p)
			out[i+1] = byte(p >> 8)
			i += 2
		}
	}
	return out
}
