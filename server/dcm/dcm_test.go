package dcm_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// parse parses a file held in memory and fails the test on error.
func parse(t testing.TB, b []byte) (*dcm.Instance, *bytes.Reader) {
	t.Helper()
	r := bytes.NewReader(b)
	in, err := dcm.Parse(r, int64(len(b)))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return in, r
}

// frameBytes reads every frame through its spans.
func frameBytes(t testing.TB, in *dcm.Instance, r *bytes.Reader) [][]byte {
	t.Helper()
	frames, err := in.Frames(r)
	if err != nil {
		t.Fatalf("Frames: %v", err)
	}
	out := make([][]byte, len(frames))
	for i, f := range frames {
		for _, s := range f {
			b, err := dcm.ReadSpan(r, in.Layout, s)
			if err != nil {
				t.Fatalf("frame %d: ReadSpan(%+v): %v", i+1, s, err)
			}
			out[i] = append(out[i], b...)
		}
		if int64(len(out[i])) != f.Size() {
			t.Errorf("frame %d: read %d bytes, Size() says %d", i+1, len(out[i]), f.Size())
		}
	}
	return out
}

// jsonAttr is one attribute of the DICOM JSON model.
type jsonAttr struct {
	VR           string            `json:"vr"`
	Value        []json.RawMessage `json:"Value"`
	InlineBinary string            `json:"InlineBinary"`
	BulkDataURI  string            `json:"BulkDataURI"`
}

// decodeJSON checks that JSON() is valid and returns its attributes.
func decodeJSON(t testing.TB, in *dcm.Instance, r *bytes.Reader, base string) map[string]jsonAttr {
	t.Helper()
	raw, err := in.JSON(r, base)
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if !json.Valid(raw) {
		t.Fatalf("JSON() is not valid JSON: %.500s", raw)
	}
	var m map[string]jsonAttr
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("JSON() does not decode into the DICOM JSON model: %v\n%.500s", err, raw)
	}
	return m
}

func items(t testing.TB, a jsonAttr) []map[string]jsonAttr {
	t.Helper()
	var out []map[string]jsonAttr
	for _, v := range a.Value {
		var m map[string]jsonAttr
		if err := json.Unmarshal(v, &m); err != nil {
			t.Fatalf("sequence item %s: %v", v, err)
		}
		out = append(out, m)
	}
	return out
}

func pnAlphabetic(t testing.TB, a jsonAttr) map[string]string {
	t.Helper()
	if a.VR != "PN" || len(a.Value) == 0 {
		t.Fatalf("not a PN with a value: %+v", a)
	}
	var m map[string]string
	if err := json.Unmarshal(a.Value[0], &m); err != nil {
		t.Fatalf("PN value %s is not an object of component groups: %v", a.Value[0], err)
	}
	return m
}

func numbers(t testing.TB, a jsonAttr) []float64 {
	t.Helper()
	var out []float64
	for _, v := range a.Value {
		var f float64
		if err := json.Unmarshal(v, &f); err != nil {
			t.Fatalf("%s value %s is not a JSON number", a.VR, v)
		}
		out = append(out, f)
	}
	return out
}

func strs(t testing.TB, a jsonAttr) []string {
	t.Helper()
	var out []string
	for _, v := range a.Value {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			t.Fatalf("%s value %s is not a JSON string", a.VR, v)
		}
		out = append(out, s)
	}
	return out
}

var testUIDs = dicomtest.UIDs{Study: "1.2.826.0.1.3680043.10.543.1.1", Series: "1.2.826.0.1.3680043.10.543.1.1.2", SOP: "1.2.826.0.1.3680043.10.543.1.1.2.3"}

// TestParseTransferSyntaxes writes the same multi-frame 16-bit instance in the four native
// transfer syntaxes and checks identification, values and the frames read through the spans.
func TestParseTransferSyntaxes(t *testing.T) {
	const rows, cols, nframes = 3, 5, 3
	px := dicomtest.Pixels16(rows*cols*nframes, 1)
	for _, tc := range []struct {
		ts        string
		wantBytes []byte // the pixel data as it lies in the (inflated) data set
		deflated  bool
	}{
		{dicomtest.TSExplicitLE, dicomtest.LE16(px), false},
		{dicomtest.TSImplicitLE, dicomtest.LE16(px), false},
		{dicomtest.TSExplicitBE, dicomtest.BE16(px), false},
		{dicomtest.TSDeflated, dicomtest.LE16(px), true},
	} {
		t.Run(tc.ts, func(t *testing.T) {
			elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassCT), dicomtest.ImageElems(rows, cols, 16, nframes, "MONOCHROME2")...)
			elems = append(elems,
				dicomtest.Str(0x00100010, "PN", "Doe^John"),
				dicomtest.Str(0x00100020, "LO", "PID-1"),
				dicomtest.Str(0x00080020, "DA", "20240131"),
				dicomtest.Str(0x00080060, "CS", "CT"),
				dicomtest.Str(0x00200013, "IS", "42"),
				dicomtest.Str(0x00281050, "DS", "1.5", "-2.25"),
				dicomtest.Str(0x00181050, "DS", "+3e2"),
				dicomtest.E{Tag: 0x7FE00010, VR: "OW", U16: px},
			)
			in, r := parse(t, dicomtest.File{TS: tc.ts, Elems: elems}.Bytes())
			if in.TransferSyntax != tc.ts {
				t.Errorf("TransferSyntax = %q, want %q", in.TransferSyntax, tc.ts)
			}
			if in.StudyInstanceUID != testUIDs.Study || in.SeriesInstanceUID != testUIDs.Series || in.SOPInstanceUID != testUIDs.SOP || in.SOPClassUID != dicomtest.SOPClassCT {
				t.Errorf("UIDs = %q %q %q %q", in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID, in.SOPClassUID)
			}
			if in.Layout.Deflated != tc.deflated {
				t.Errorf("Layout.Deflated = %v", in.Layout.Deflated)
			}
			if got := in.String(tag.PatientName); got != "Doe^John" {
				t.Errorf("PatientName = %q", got)
			}
			if n, ok := in.Int(tag.Rows); !ok || n != rows {
				t.Errorf("Rows = %d, %v", n, ok)
			}
			if n, ok := in.Int(tag.NumberOfFrames); !ok || n != nframes {
				t.Errorf("NumberOfFrames = %d, %v", n, ok)
			}
			if in.Layout.Pixel == nil || in.Layout.Pixel.Encapsulated {
				t.Fatalf("Pixel layout = %+v", in.Layout.Pixel)
			}
			frames := frameBytes(t, in, r)
			if len(frames) != nframes {
				t.Fatalf("%d frames, want %d", len(frames), nframes)
			}
			size := rows * cols * 2
			for i, f := range frames {
				if !bytes.Equal(f, tc.wantBytes[i*size:(i+1)*size]) {
					t.Errorf("frame %d differs:\n got % X\nwant % X", i+1, f, tc.wantBytes[i*size:(i+1)*size])
				}
			}
			m := decodeJSON(t, in, r, "/b/")
			if pn := pnAlphabetic(t, m["00100010"]); pn["Alphabetic"] != "Doe^John" || len(pn) != 1 {
				t.Errorf("PatientName JSON = %v", pn)
			}
			if got := numbers(t, m["00281050"]); !slices.Equal(got, []float64{1.5, -2.25}) || m["00281050"].VR != "DS" {
				t.Errorf("WindowCenter DS = %v (%s)", got, m["00281050"].VR)
			}
			if got := numbers(t, m["00181050"]); !slices.Equal(got, []float64{300}) {
				t.Errorf("DS +3e2 = %v", got)
			}
			if got := numbers(t, m["00200013"]); !slices.Equal(got, []float64{42}) || m["00200013"].VR != "IS" {
				t.Errorf("InstanceNumber IS = %v", got)
			}
			if got := numbers(t, m["00280010"]); !slices.Equal(got, []float64{rows}) || m["00280010"].VR != "US" {
				t.Errorf("Rows = %v %s", got, m["00280010"].VR)
			}
			if got := strs(t, m["00080020"]); !slices.Equal(got, []string{"20240131"}) {
				t.Errorf("StudyDate = %v", got)
			}
			pd := m["7FE00010"]
			if pd.BulkDataURI != "/b/7FE00010" || pd.VR != "OW" {
				t.Errorf("PixelData = %+v, want OW with BulkDataURI /b/7FE00010", pd)
			}
			for k := range m {
				if strings.HasPrefix(k, "0002") {
					t.Errorf("meta element %s in the data set JSON", k)
				}
			}
		})
	}
}

// frameCase is an encapsulated pixel data layout and the frames it must give.
type frameCase struct {
	name    string
	frames  int // NumberOfFrames (0: absent)
	bot     []uint32
	frags   [][]byte
	eot     []uint64 // Extended Offset Table (nil: absent)
	want    [][]int  // fragment indices per frame
	wantErr bool
}

// offsetsOf returns the offsets of the fragments' item tags from the first one.
func offsetsOf(frags [][]byte, starts ...int) []uint32 {
	var pos []uint32
	off := uint32(0)
	for _, f := range frags {
		pos = append(pos, off)
		off += 8 + uint32(len(f)+len(f)%2)
	}
	var out []uint32
	for _, s := range starts {
		out = append(out, pos[s])
	}
	return out
}

func to64(v []uint32) []uint64 {
	out := make([]uint64, len(v))
	for i, x := range v {
		out[i] = uint64(x)
	}
	return out
}

var five = [][]byte{dicomtest.JPEGFragment(true, 10, 1), dicomtest.JPEGFragment(false, 7, 2), dicomtest.JPEGFragment(true, 12, 3), dicomtest.JPEGFragment(true, 6, 4), dicomtest.JPEGFragment(false, 9, 5)}

func TestFramesEncapsulated(t *testing.T) {
	three := [][]byte{dicomtest.JPEGFragment(true, 10, 1), dicomtest.JPEGFragment(true, 8, 2), dicomtest.JPEGFragment(true, 14, 3)}
	noSOI := [][]byte{bytes.Repeat([]byte{1}, 10), bytes.Repeat([]byte{2}, 10), bytes.Repeat([]byte{3}, 10), bytes.Repeat([]byte{4}, 10)}
	cases := []frameCase{
		{name: "BOT groups fragments", frames: 3, bot: offsetsOf(five, 0, 2, 3), frags: five, want: [][]int{{0, 1}, {2}, {3, 4}}},
		{name: "BOT one fragment per frame", frames: 3, bot: offsetsOf(three, 0, 1, 2), frags: three, want: [][]int{{0}, {1}, {2}}},
		{name: "no BOT one fragment per frame", frames: 3, frags: three, want: [][]int{{0}, {1}, {2}}},
		{name: "no BOT several fragments per frame by SOI", frames: 3, frags: five, want: [][]int{{0, 1}, {2}, {3, 4}}},
		{name: "NumberOfFrames 1 several fragments", frames: 1, frags: five, want: [][]int{{0, 1, 2, 3, 4}}},
		{name: "NumberOfFrames absent several fragments", frames: 0, frags: five, want: [][]int{{0, 1, 2, 3, 4}}},
		{name: "BOT not starting at 0 falls back to SOI", frames: 3, bot: []uint32{4, 30, 60}, frags: five, want: [][]int{{0, 1}, {2}, {3, 4}}},
		{name: "BOT pointing between items falls back", frames: 3, bot: []uint32{0, 5, 50}, frags: three, want: [][]int{{0}, {1}, {2}}},
		{name: "no BOT no markers", frames: 3, frags: noSOI, wantErr: true},
		{name: "odd fragment length padded", frames: 2, frags: [][]byte{dicomtest.JPEGFragment(true, 9, 7), dicomtest.JPEGFragment(true, 11, 8)}, want: [][]int{{0}, {1}}},
	}
	runFrameCases(t, cases)
}

// TestFramesExtendedOffsetTable: the Extended Offset Table (7FE0,0001) OV decides frame
// boundaries before the Basic Offset Table.
func TestFramesExtendedOffsetTable(t *testing.T) {
	cases := []frameCase{
		{name: "EOT with empty BOT", frames: 3, eot: to64(offsetsOf(five, 0, 2, 3)), frags: five, want: [][]int{{0, 1}, {2}, {3, 4}}},
		{name: "EOT wins over a wrong BOT", frames: 2, bot: offsetsOf(five, 0, 1), eot: to64(offsetsOf(five, 0, 3)), frags: five, want: [][]int{{0, 1, 2}, {3, 4}}},
	}
	b := encapsulatedFile(cases[0])
	if _, err := dcm.Parse(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("fixed bug is back: dcm.Parse rejects every explicit VR file with an OV (or SV/UV) element such as the Extended Offset Table: "+
			"github.com/suyashkumar/dicom v1.1.0 reads OV/SV/UV headers as short VRs (read.go readVL), and instance.go libraryView hands "+
			"these elements to it unmasked. Parse error: %v", err)
	}
	runFrameCases(t, cases)
}

func encapsulatedFile(tc frameCase) []byte {
	elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.ImageElems(4, 4, 8, tc.frames, "YBR_FULL_422")...)
	elems = append(elems, dicomtest.Encapsulated(tc.bot, tc.frags...))
	if tc.eot != nil {
		var lens []uint64
		for i := range tc.eot {
			lens = append(lens, uint64(i)) // lengths are not used for grouping
		}
		elems = append(elems, dicomtest.E{Tag: 0x7FE00001, VR: "OV", U64: tc.eot}, dicomtest.E{Tag: 0x7FE00002, VR: "OV", U64: lens})
	}
	return dicomtest.File{TS: dicomtest.TSJPEGBaseline, Elems: elems}.Bytes()
}

// TestJSONPixelDataVR: the JSON gives Pixel Data the VR it has in the file; encapsulated
// Pixel Data is always OB (PS3.5 A.4).
func TestJSONPixelDataVR(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"encapsulated", encapsulatedFile(frameCase{frames: 1, frags: five}), "OB"},
		{"native OB", dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 8, 0, "MONOCHROME2")...), dicomtest.RawE(0x7FE00010, "OB", []byte{1, 2, 3, 4}))}.Bytes(), "OB"},
		{"native OW", dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 16, 0, "MONOCHROME2")...), dicomtest.E{Tag: 0x7FE00010, VR: "OW", U16: []uint16{1, 2, 3, 4}})}.Bytes(), "OW"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, r := parse(t, tc.b)
			m := decodeJSON(t, in, r, "/x/")
			if got := m["7FE00010"].VR; got != tc.want {
				t.Fatalf("fixed bug is back: JSON gives Pixel Data VR %q, want %q: instance.go emptyPixelData always hands the library an OW "+
					"element in place of Pixel Data, and json.go attribute() keeps that VR", got, tc.want)
			}
		})
	}
}

func runFrameCases(t *testing.T, cases []frameCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, r := parse(t, encapsulatedFile(tc))
			px := in.Layout.Pixel
			if px == nil || !px.Encapsulated {
				t.Fatalf("pixel layout %+v", px)
			}
			if len(px.Fragments) != len(tc.frags) {
				t.Fatalf("%d fragments, want %d", len(px.Fragments), len(tc.frags))
			}
			if tc.eot != nil && in.Layout.ExtendedOffsets == nil {
				t.Errorf("Extended Offset Table not found")
			}
			if tc.wantErr {
				_, err := in.Frames(r)
				if !errors.Is(err, dcm.ErrMalformed) {
					t.Fatalf("Frames err = %v, want ErrMalformed", err)
				}
				return
			}
			got := frameBytes(t, in, r)
			if len(got) != len(tc.want) {
				t.Fatalf("%d frames, want %d", len(got), len(tc.want))
			}
			for i, idx := range tc.want {
				var want []byte
				for _, k := range idx {
					f := tc.frags[k]
					if len(f)%2 == 1 {
						f = append(append([]byte(nil), f...), 0)
					}
					want = append(want, f...)
				}
				if !bytes.Equal(got[i], want) {
					t.Errorf("frame %d = % X\nwant % X", i+1, got[i], want)
				}
			}
			// The JSON never inlines Pixel Data.
			m := decodeJSON(t, in, r, "/x/")
			if m["7FE00010"].BulkDataURI != "/x/7FE00010" {
				t.Errorf("PixelData JSON %+v", m["7FE00010"])
			}
			if tc.eot != nil && m["7FE00001"].VR != "OV" {
				t.Errorf("Extended Offset Table JSON %+v", m["7FE00001"])
			}
		})
	}
}

func TestFramesNative(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rows, cols int
		bits       int
		frames     int
		photo      string
		value      int // bytes of pixel data
		frameSize  int
		wantFrames int
		spans      [][2]int // each frame's bytes [start, end) when frames overlap
		wantErr    bool
	}{
		{name: "8-bit 3 frames", rows: 4, cols: 6, bits: 8, frames: 3, photo: "MONOCHROME2", value: 72, frameSize: 24, wantFrames: 3},
		{name: "8-bit single odd size padded", rows: 3, cols: 5, bits: 8, photo: "MONOCHROME2", value: 16, frameSize: 15, wantFrames: 1},
		{name: "1-bit single frame", rows: 3, cols: 3, bits: 1, photo: "MONOCHROME2", value: 2, frameSize: 2, wantFrames: 1},
		{name: "too little pixel data", rows: 4, cols: 4, bits: 8, frames: 2, photo: "MONOCHROME2", value: 20, wantErr: true},
		// 9-bit frames: frame 2 is bits 9..17, in bytes 1..2; frame 3 bits 18..26, bytes 2..3.
		{name: "1-bit frames not byte aligned", rows: 3, cols: 3, bits: 1, frames: 3, photo: "MONOCHROME2", value: 4,
			spans: [][2]int{{0, 2}, {1, 3}, {2, 4}}, wantFrames: 3},
		{name: "1-bit frames byte aligned", rows: 4, cols: 4, bits: 1, frames: 3, photo: "MONOCHROME2", value: 6, frameSize: 2, wantFrames: 3},
		{name: "too little 1-bit pixel data", rows: 3, cols: 3, bits: 1, frames: 4, photo: "MONOCHROME2", value: 4, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.ImageElems(tc.rows, tc.cols, tc.bits, tc.frames, tc.photo)...)
			pix := make([]byte, tc.value)
			for i := range pix {
				pix[i] = byte(i + 1)
			}
			elems = append(elems, dicomtest.RawE(0x7FE00010, "OB", pix))
			in, r := parse(t, dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes())
			if tc.wantErr {
				if _, err := in.Frames(r); !errors.Is(err, dcm.ErrMalformed) {
					t.Fatalf("Frames err = %v, want ErrMalformed", err)
				}
				return
			}
			got := frameBytes(t, in, r)
			if len(got) != tc.wantFrames {
				t.Fatalf("%d frames, want %d", len(got), tc.wantFrames)
			}
			for i, f := range got {
				want := pix[i*tc.frameSize : (i+1)*tc.frameSize]
				if tc.spans != nil {
					want = pix[tc.spans[i][0]:tc.spans[i][1]]
				}
				if !bytes.Equal(f, want) {
					t.Errorf("frame %d = % X, want % X", i+1, f, want)
				}
			}
		})
	}
}

// TestJSONNested covers sequences of defined and undefined length, an undefined-length item,
// icon pixel data in a sequence (BulkDataURI with its path), inline and bulk binaries,
// numbers and a UN element.
func TestJSONNested(t *testing.T) {
	icon := make([]byte, 400)
	for i := range icon {
		icon[i] = byte(i)
	}
	doc := bytes.Repeat([]byte("%PDF"), 200)
	small := []byte{1, 2, 3, 4, 5, 6}
	elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 8, 0, "MONOCHROME2")...)
	elems = append(elems,
		dicomtest.Str(0x00100010, "PN", "Müller^Hans", "Other^Name"),
		dicomtest.Str(0x00080005, "CS", "ISO_IR 192"),
		// Defined length sequence holding an undefined-length one with an undefined-length item.
		dicomtest.Seq(0x00081110, false, dicomtest.Item{Elems: []dicomtest.E{
			dicomtest.Str(0x00081150, "UI", "1.2.3"),
			dicomtest.Str(0x00081155, "UI", "1.2.3.4"),
			dicomtest.Seq(0x00081199, true, dicomtest.Item{UndefLen: true, Elems: []dicomtest.E{
				dicomtest.Str(0x00081150, "UI", "1.2.3.5"),
				dicomtest.Str(0x0040A30A, "DS", "7.25"),
			}}, dicomtest.Item{Elems: []dicomtest.E{dicomtest.Str(0x00081150, "UI", "1.2.3.6")}}),
		}}),
		// Icon Image Sequence with its own Pixel Data (bulk) and a small OB (inline).
		dicomtest.Seq(0x00880200, true, dicomtest.Item{UndefLen: true, Elems: []dicomtest.E{
			dicomtest.US(0x00280010, 20), dicomtest.US(0x00280011, 20), dicomtest.US(0x00280100, 8),
			dicomtest.RawE(0x7FE00010, "OB", icon),
			dicomtest.RawE(0x00091001, "OB", small),
			dicomtest.Str(0x00090010, "LO", "SANPING TEST"),
		}}),
		dicomtest.Seq(0x00400275, false), // empty sequence
		dicomtest.RawE(0x00420011, "OB", doc),
		dicomtest.RawE(0x00091002, "UN", []byte("un-value")),
		dicomtest.Str(0x00090010, "LO", "SANPING TEST"),
		dicomtest.E{Tag: 0x00186011, VR: "SQ", Items: []dicomtest.Item{{Elems: []dicomtest.E{dicomtest.E{Tag: 0x00186014, VR: "US", U16: []uint16{1}}, dicomtest.E{Tag: 0x0018602C, VR: "FD", F64: []float64{0.125}}}}}},
		dicomtest.E{Tag: 0x00109431, VR: "FL", F32: []float32{2.5}},
		dicomtest.E{Tag: 0x00280009, VR: "AT", U16: []uint16{0x0018, 0x1063}},
		dicomtest.RawE(0x7FE00010, "OB", []byte{9, 8, 7, 6}),
	)
	for _, ts := range []string{dicomtest.TSExplicitLE, dicomtest.TSImplicitLE, dicomtest.TSExplicitBE, dicomtest.TSDeflated} {
		t.Run(ts, func(t *testing.T) {
			in, r := parse(t, dicomtest.File{TS: ts, Elems: elems}.Bytes())
			wantBulk := map[string]int{"7FE00010": 4, "00880200.0.7FE00010": 400, "00880200.0.00091001": 6, "00420011": 800}
			for p, n := range wantBulk {
				s, ok := in.Layout.Bulk[p]
				if !ok || s.Length != int64(n) {
					t.Errorf("Layout.Bulk[%q] = %+v, %v; want %d bytes", p, s, ok, n)
				}
			}
			if s, ok := in.Layout.Bulk["00880200.0.7FE00010"]; ok {
				b, err := dcm.ReadSpan(r, in.Layout, s)
				if err != nil || !bytes.Equal(b, icon) {
					t.Errorf("icon pixel data through span: %v, equal=%v", err, bytes.Equal(b, icon))
				}
			}
			m := decodeJSON(t, in, r, "/studies/1/series/2/instances/3/bulkdata/")
			pn := m["00100010"]
			if len(pn.Value) != 2 {
				t.Fatalf("PN values %s", pn.Value)
			}
			if got := pnAlphabetic(t, pn); got["Alphabetic"] != "Müller^Hans" {
				t.Errorf("PN = %v", got)
			}
			if got := m["00880200"]; got.VR != "SQ" {
				t.Fatalf("IconImageSequence %+v", got)
			}
			iconItem := items(t, m["00880200"])
			if len(iconItem) != 1 {
				t.Fatalf("icon items %d", len(iconItem))
			}
			if got := iconItem[0]["7FE00010"].BulkDataURI; got != "/studies/1/series/2/instances/3/bulkdata/00880200.0.7FE00010" {
				t.Errorf("icon BulkDataURI = %q", got)
			}
			if got := iconItem[0]["00091001"].InlineBinary; got != base64.StdEncoding.EncodeToString(small) {
				t.Errorf("small OB InlineBinary = %q", got)
			}
			if got := m["00420011"].BulkDataURI; got != "/studies/1/series/2/instances/3/bulkdata/00420011" {
				t.Errorf("document BulkDataURI = %q", got)
			}
			if got := m["7FE00010"].BulkDataURI; got != "/studies/1/series/2/instances/3/bulkdata/7FE00010" {
				t.Errorf("small top-level Pixel Data must still be bulk: %+v", m["7FE00010"])
			}
			ref := items(t, m["00081110"])
			if len(ref) != 1 {
				t.Fatalf("ReferencedStudySequence items: %d", len(ref))
			}
			inner := items(t, ref[0]["00081199"])
			if len(inner) != 2 {
				t.Fatalf("nested undefined-length sequence items: %d", len(inner))
			}
			if got := strs(t, inner[0]["00081150"]); !slices.Equal(got, []string{"1.2.3.5"}) {
				t.Errorf("nested UI = %v", got)
			}
			if got := numbers(t, inner[0]["0040A30A"]); !slices.Equal(got, []float64{7.25}) {
				t.Errorf("nested DS = %v", got)
			}
			if got := strs(t, inner[1]["00081150"]); !slices.Equal(got, []string{"1.2.3.6"}) {
				t.Errorf("second nested item UI = %v", got)
			}
			if got := m["00400275"]; got.VR != "SQ" || len(got.Value) != 0 {
				t.Errorf("empty sequence = %+v", got)
			}
			reg := items(t, m["00186011"])
			if len(reg) != 1 || !slices.Equal(numbers(t, reg[0]["0018602C"]), []float64{0.125}) || !slices.Equal(numbers(t, reg[0]["00186014"]), []float64{1}) {
				t.Errorf("FD/US in a sequence: %+v", reg)
			}
			if got := numbers(t, m["00109431"]); !slices.Equal(got, []float64{2.5}) {
				t.Errorf("FL = %v", got)
			}
			if got := strs(t, m["00280009"]); !slices.Equal(got, []string{"00181063"}) {
				t.Errorf("AT = %v", got)
			}
			if got := strs(t, m["00080005"]); !slices.Equal(got, []string{"ISO_IR 192"}) {
				t.Errorf("SpecificCharacterSet = %v", got)
			}
		})
	}
}

// TestJSONHostileValues: values that are not what their VR promises still give valid JSON.
func TestJSONHostileValues(t *testing.T) {
	elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC),
		dicomtest.Str(0x00200013, "IS", "abc"),
		dicomtest.Str(0x00281050, "DS", "NaN", "Infinity", "1e999", "", "2"),
		dicomtest.RawE(0x00100010, "PN", []byte("Bad\xff\xfe^\"Quote\"\\Back\x01slash")),
		dicomtest.RawE(0x00081030, "LO", []byte("tab\there\x00")),
		dicomtest.Str(0x00321060, "LO", `a"b`, `c\d`),
	)
	in, r := parse(t, dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes())
	m := decodeJSON(t, in, r, "")
	if v := m["00200013"].Value; len(v) != 1 || string(v[0]) != `"abc"` {
		t.Errorf("IS abc = %s", v)
	}
	for _, v := range m["00281050"].Value {
		if s := string(v); s == "NaN" || s == "Infinity" {
			t.Errorf("DS gave non-JSON number %s", s)
		}
	}
}

// TestParseMalformed: inputs that are not DICOM fail with ErrMalformed, never panic.
func TestParseMalformed(t *testing.T) {
	valid := dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.Str(0x00100010, "PN", "A^B"))}.Bytes()
	nested := func(depth int) []dicomtest.E {
		e := []dicomtest.E{dicomtest.Str(0x00081150, "UI", "1.2")}
		for i := 0; i < depth; i++ {
			e = []dicomtest.E{dicomtest.Seq(0x00081110, true, dicomtest.Item{UndefLen: true, Elems: e})}
		}
		return e
	}
	preamble := make([]byte, 132)
	copy(preamble[128:], "DICM")
	cases := map[string][]byte{
		"empty":              nil,
		"preamble and DICM":  preamble,
		"no DICM":            append(make([]byte, 128), bytes.Repeat([]byte{'X'}, 200)...),
		"garbage after DICM": append(slices.Clone(preamble), bytes.Repeat([]byte{0xAB}, 300)...),
		"missing study UID": dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: []dicomtest.E{dicomtest.Str(0x00080016, "UI", dicomtest.SOPClassSC), dicomtest.Str(0x00080018, "UI", "1.2.3"),
			dicomtest.Str(0x0020000E, "UI", "1.2.3.4")}}.Bytes(),
		"missing SOP UID": dicomtest.File{TS: dicomtest.TSExplicitLE, MetaSOPInstance: "1.2.3", Elems: []dicomtest.E{dicomtest.Str(0x00080016, "UI", dicomtest.SOPClassSC),
			dicomtest.Str(0x0020000D, "UI", "1.2"), dicomtest.Str(0x0020000E, "UI", "1.2.3.4")}}.Bytes(),
		"SOP UID not a UID": dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: dicomtest.BaseElems(dicomtest.UIDs{Study: "1.2", Series: "1.2.3", SOP: "1.2.x"}, dicomtest.SOPClassSC)}.Bytes(),
		"meta SOP differs":  dicomtest.File{TS: dicomtest.TSExplicitLE, MetaSOPInstance: "9.9.9", Elems: dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC)}.Bytes(),
		"no transfer syntax": func() []byte {
			b := slices.Clone(preamble)
			return append(b, dicomtest.ExplicitLE([]dicomtest.E{dicomtest.Str(0x00020002, "UI", dicomtest.SOPClassSC)})...)
		}(),
		"transfer syntax not a UID": dicomtest.File{TS: "hello", Elems: dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC)}.Bytes(),
		"invalid VR":                append(slices.Clone(valid), 0x10, 0x00, 0x20, 0x00, 'Z', 'Z', 2, 0, 'a', 'b'),
		"value past end":            dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.E{Tag: 0x00100010, VR: "PN", Str: []string{"AB"}, Length: 200})}.Bytes(),
		"undefined length LO":       dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), dicomtest.E{Tag: 0x00081030, VR: "UT", Str: []string{"AB"}, Length: 0xFFFFFFFF})}.Bytes(),
		"sequences too deep":        dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), nested(40)...)}.Bytes(),
		"deflated garbage":          append(dicomtest.File{TS: dicomtest.TSDeflated, Elems: nil}.Bytes(), 0xFF, 0xFF, 0xFF, 0xFF, 0x12, 0x34),
	}
	for cut := 133; cut < len(valid); cut += 17 {
		cases[fmt.Sprintf("truncated at %d", cut)] = valid[:cut]
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", in)
			}
			if !errors.Is(err, dcm.ErrMalformed) {
				t.Fatalf("err = %v, does not wrap ErrMalformed", err)
			}
		})
	}
	// Nesting well below the limit is fine.
	b := dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC), nested(20)...)}.Bytes()
	if _, err := dcm.Parse(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Errorf("20 nested sequences: %v", err)
	}
}

// TestCharsetsEndToEnd writes PatientName in the bytes of each character set and checks the
// decoded String and the JSON PN.
func TestCharsetsEndToEnd(t *testing.T) {
	gb := func(s string) []byte { b, _ := simplifiedchinese.GB18030.NewEncoder().Bytes([]byte(s)); return b }
	gbk := func(s string) []byte { b, _ := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(s)); return b }
	latin1 := func(s string) []byte { b, _ := charmap.ISO8859_1.NewEncoder().Bytes([]byte(s)); return b }
	cyr := func(s string) []byte { b, _ := charmap.ISO8859_5.NewEncoder().Bytes([]byte(s)); return b }
	hexb := func(s string) []byte {
		var out []byte
		for _, f := range strings.Fields(s) {
			var x byte
			fmt.Sscanf(f, "%02X", &x)
			out = append(out, x)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		charset []string
		raw     []byte
		want    string // decoded value
		alpha   string // JSON component groups
		ideo    string
		phon    string
	}{
		{"GB18030", []string{"GB18030"}, gb("Wang^XiaoDong=王^小东="), "Wang^XiaoDong=王^小东=", "Wang^XiaoDong", "王^小东", ""},
		{"GB18030 韦", []string{"GB18030"}, hexb("CE A4 5E B6 AB C6 BD"), "韦^东平", "韦^东平", "", ""},
		{"GBK", []string{"GBK"}, gbk("韦^东平=Wei^Dongping"), "韦^东平=Wei^Dongping", "韦^东平", "Wei^Dongping", ""},
		{"GBK with 5C trail byte", []string{"GBK"}, gbk("乗^东平"), "乗^东平", "乗^东平", "", ""},
		{"GB2312", []string{"GB2312"}, gb("张^三"), "张^三", "张^三", "", ""},
		{"ISO_IR 192", []string{"ISO_IR 192"}, []byte("Wang^XiaoDong=王^小東="), "Wang^XiaoDong=王^小東=", "Wang^XiaoDong", "王^小東", ""},
		{"ISO_IR 100", []string{"ISO_IR 100"}, latin1("Buc^Jérôme"), "Buc^Jérôme", "Buc^Jérôme", "", ""},
		{"ISO_IR 144", []string{"ISO_IR 144"}, cyr("Люкceмбypг^Гeнpиeттa"), "Люкceмбypг^Гeнpиeттa", "Люкceмбypг^Гeнpиeттa", "", ""},
		{"ISO 2022 IR 149", []string{"", "ISO 2022 IR 149"},
			hexb("48 6F 6E 67 5E 47 69 6C 64 6F 6E 67 3D 1B 24 29 43 FB F3 5E 1B 24 29 43 D1 CE D4 D7 3D 1B 24 29 43 C8 AB 5E 1B 24 29 43 B1 E6 B5 BF"),
			"Hong^Gildong=洪^吉洞=홍^길동", "Hong^Gildong", "洪^吉洞", "홍^길동"},
		{"ISO 2022 IR 87", []string{"", "ISO 2022 IR 87"},
			hexb("59 61 6D 61 64 61 5E 54 61 72 6F 75 3D 1B 24 42 3B 33 45 44 1B 28 42 5E 1B 24 42 42 40 4F 3A 1B 28 42 3D 1B 24 42 24 64 24 5E 24 40 1B 28 42 5E 1B 24 42 24 3F 24 6D 24 26 1B 28 42"),
			"Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada^Tarou", "山田^太郎", "やまだ^たろう"},
	} {
		for _, ts := range []string{dicomtest.TSExplicitLE, dicomtest.TSImplicitLE, dicomtest.TSExplicitBE, dicomtest.TSDeflated} {
			t.Run(tc.name+"/"+ts, func(t *testing.T) {
				elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC),
					dicomtest.Str(0x00080005, "CS", tc.charset...),
					dicomtest.RawE(0x00100010, "PN", tc.raw),
					dicomtest.RawE(0x00081030, "LO", tc.raw), // StudyDescription: same bytes as LO
				)
				in, r := parse(t, dicomtest.File{TS: ts, Elems: elems}.Bytes())
				if got := in.String(tag.PatientName); got != tc.want {
					t.Errorf("String(PatientName) = %q, want %q", got, tc.want)
				}
				if got := in.String(tag.StudyDescription); got != tc.want {
					t.Errorf("String(StudyDescription) = %q, want %q", got, tc.want)
				}
				if got := in.Strings(tag.SpecificCharacterSet); !slices.Equal(got, tc.charset) {
					t.Errorf("Strings(SpecificCharacterSet) = %q", got)
				}
				m := decodeJSON(t, in, r, "")
				pn := pnAlphabetic(t, m["00100010"])
				want := map[string]string{}
				for k, v := range map[string]string{"Alphabetic": tc.alpha, "Ideographic": tc.ideo, "Phonetic": tc.phon} {
					if v != "" {
						want[k] = v
					}
				}
				if fmt.Sprint(pn) != fmt.Sprint(want) {
					t.Errorf("JSON PN = %v, want %v", pn, want)
				}
				// DICOM JSON is UTF-8, so it says ISO_IR 192 whatever the file used.
				if got := strs(t, m["00080005"]); !slices.Equal(got, []string{"ISO_IR 192"}) {
					t.Errorf("JSON SpecificCharacterSet = %q, want [ISO_IR 192]", got)
				}
			})
		}
	}
}

// TestLibraryTestdata parses the suyashkumar/dicom test files.
func TestLibraryTestdata(t *testing.T) {
	dir := moduleDir(t, "github.com/suyashkumar/dicom")
	for _, tc := range []struct {
		file                 string
		ts, study, sop, name string
		frames               int
		frameSize            int64
		bulk                 []string
	}{
		{"1.dcm", dicomtest.TSExplicitLE, "1.3.6.1.4.1.14519.5.2.1.7009.2401.541147157881199293470020980360",
			"1.3.6.1.4.1.14519.5.2.1.7009.2401.264581068966524608390523682945", "ACRIN-FLT-Breast_029", 1, 168 * 168 * 2,
			[]string{"7FE00010", "00880200.0.7FE00010"}},
		{"2.dcm", dicomtest.TSExplicitLE, "1.3.6.1.4.1.14519.5.2.1.7009.2401.219951169878334856059814306522",
			"1.3.6.1.4.1.14519.5.2.1.7009.2401.272868799396348327593768937204", "ACRIN-FLT-Breast_028", 1, 168 * 168 * 2,
			[]string{"7FE00010", "00880200.0.7FE00010"}},
		{"3.dcm", dicomtest.TSExplicitLE, "1.3.6.1.4.1.14519.5.2.1.9823.1001.108958069993282969141944803554",
			"1.3.6.1.4.1.14519.5.2.1.9823.1001.100673283425501223987092441879", "", 1, 176 * 176 * 2, []string{"7FE00010"}},
		{"4.dcm", dicomtest.TSImplicitLE, "1.3.6.1.4.1.14519.5.2.1.9999.103.2445110399502685110179049624124",
			"1.3.6.1.4.1.14519.5.2.1.9999.103.3006616233530892121079169089013", "COVID-19-AR-16406488", 1, 2140 * 1760 * 2, []string{"7FE00010"}},
		{"5.dcm", dicomtest.TSExplicitLE, "1.3.6.1.4.1.5962.1.2.10.1166562673.14401",
			"1.3.6.1.4.1.5962.1.1.10.3.1.1166562673.14401", "Perfusion^MCA Stroke", 2, 512 * 512 * 2, []string{"7FE00010"}},
		{"6.dcm", dicomtest.TSDeflated, "1.3.6.1.4.1.5962.1.2.0.977067310.6001.0",
			"1.3.6.1.4.1.5962.1.1.0.0.0.977067309.6001.0", "^^^^", 1, 512 * 512, []string{"7FE00010"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(dir, "testdata", tc.file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Skipf("library test file not available: %v", err)
			}
			in, r := parse(t, b)
			if in.TransferSyntax != tc.ts || in.StudyInstanceUID != tc.study || in.SOPInstanceUID != tc.sop {
				t.Errorf("ts=%q study=%q sop=%q", in.TransferSyntax, in.StudyInstanceUID, in.SOPInstanceUID)
			}
			if got := in.String(tag.PatientName); got != tc.name {
				t.Errorf("PatientName = %q, want %q", got, tc.name)
			}
			frames, err := in.Frames(r)
			if err != nil {
				t.Fatalf("Frames: %v", err)
			}
			if len(frames) != tc.frames {
				t.Fatalf("%d frames, want %d", len(frames), tc.frames)
			}
			for i, f := range frames {
				if f.Size() != tc.frameSize {
					t.Errorf("frame %d: %d bytes, want %d", i+1, f.Size(), tc.frameSize)
				}
			}
			for _, p := range tc.bulk {
				if _, ok := in.Layout.Bulk[p]; !ok {
					t.Errorf("no bulk span %q", p)
				}
			}
			m := decodeJSON(t, in, r, "/b/")
			if tc.file == "1.dcm" {
				icon := items(t, m["00880200"])
				if len(icon) != 1 || icon[0]["7FE00010"].BulkDataURI != "/b/00880200.0.7FE00010" {
					t.Errorf("icon pixel data JSON: %+v", icon)
				}
			}
			if tc.name != "" {
				if pn := pnAlphabetic(t, m["00100010"]); pn["Alphabetic"] != strings.TrimRight(tc.name, "^") && tc.name != "^^^^" {
					t.Errorf("JSON PN = %v", pn)
				}
			}
			// Cross-check the pixel data with DCMTK when it is there.
			if testtool.Want(t, testtool.DCMTK, "dcmdump") {
				want := dcmtkPixelData(t, path)
				var got []byte
				for _, f := range frameBytes(t, in, r) {
					got = append(got, f...)
				}
				if !bytes.Equal(got, want[:min(len(want), len(got))]) || len(want)-len(got) > 1 {
					t.Errorf("frames (%d bytes) differ from dcmdump +W pixel data (%d bytes)", len(got), len(want))
				}
			}
		})
	}
}

func moduleDir(t testing.TB, mod string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Skipf("cannot locate module %s: %v", mod, err)
	}
	return strings.TrimSpace(string(out))
}

// dcmtkPixelData writes the top-level Pixel Data of a native file with `dcmdump +W` and reads
// it back (little endian, as DCMTK writes it). Returns the raw value for encapsulated files'
// fragments concatenated in order, BOT excluded.
func dcmtkPixelData(t testing.TB, path string) []byte {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("dcmdump", "-q", "+L", "+W", dir, path).CombinedOutput()
	if err != nil {
		t.Fatalf("dcmdump +W: %v\n%s", err, out)
	}
	// The dump names the files it wrote: "(7fe0,0010) OW =dir/name.raw" at top level.
	var files []string
	encapsulated := false
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "(7fe0,0010)") {
			if strings.Contains(line, "PixelSequence") {
				encapsulated = true
				continue
			}
			if i := strings.Index(line, "="); i >= 0 {
				files = append(files, strings.Fields(line[i+1:])[0])
			}
			break
		}
		if encapsulated && strings.HasPrefix(line, "  (fffe,e000) pi =") {
			files = append(files, strings.Fields(line[strings.Index(line, "=")+1:])[0])
		}
		if encapsulated && strings.HasPrefix(line, "(fffe,e0dd)") {
			break
		}
	}
	if len(files) == 0 {
		t.Fatalf("dcmdump +W wrote no pixel data:\n%.2000s", out)
	}
	if encapsulated {
		files = files[1:] // Basic Offset Table
	}
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestUNSequence: a sequence whose VR became UN (undefined length) is encoded in implicit VR
// little endian inside, whatever the transfer syntax (PS3.5 6.2.2).
func TestUNSequence(t *testing.T) {
	for _, ts := range []string{dicomtest.TSExplicitLE, dicomtest.TSDeflated} {
		t.Run(ts, func(t *testing.T) {
			b := dicomtest.File{TS: ts, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC),
				dicomtest.Str(0x00090010, "LO", "SANPING TEST"),
				dicomtest.E{Tag: 0x00091010, VR: "UN", UndefLen: true, Items: []dicomtest.Item{{UndefLen: true, Elems: []dicomtest.E{
					dicomtest.Str(0x00080100, "SH", "CODE1"),
					dicomtest.Str(0x00080104, "LO", "Meaning one"),
				}}}},
				dicomtest.Str(0x00100010, "PN", "After^Sequence"),
			)}.Bytes()
			in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("fixed bug is back: Parse fails on a UN element of undefined length (a sequence, PS3.5 6.2.2): layout.go "+
					"walker.element calls w.sequence with the file's explicit VR, but the items inside are implicit VR "+
					"little endian. Error: %v", err)
			}
			if got := in.String(tag.PatientName); got != "After^Sequence" {
				t.Errorf("PatientName after the UN sequence = %q", got)
			}
			m := decodeJSON(t, in, bytes.NewReader(b), "")
			if got := m["00091010"]; got.VR != "SQ" || len(got.Value) != 1 {
				t.Errorf("UN sequence JSON = %+v", got)
			}
		})
	}
}

// TestFramesGeometryOverflow: Rows x Columns x Samples x Bits x NumberOfFrames that overflow
// int64 must not pass the "enough pixel data" check. Here the product is exactly 2^64 (0 after
// overflow) with 2^20 frames; with NumberOfFrames 2^33 the same file makes Frames allocate
// hundreds of GB (a 400-byte upload crashes the server).
func TestFramesGeometryOverflow(t *testing.T) {
	elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC),
		dicomtest.US(0x00280002, 1<<14), // SamplesPerPixel 16384
		dicomtest.Str(0x00280004, "CS", "MONOCHROME2"),
		dicomtest.Str(0x00280008, "IS", fmt.Sprint(1<<20)),
		dicomtest.US(0x00280010, 1<<15), dicomtest.US(0x00280011, 1<<15), dicomtest.US(0x00280100, 8),
		dicomtest.RawE(0x7FE00010, "OB", make([]byte, 16)),
	)
	in, r := parse(t, dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes())
	frames, err := in.Frames(r)
	if err == nil {
		t.Fatalf("fixed bug is back: Frames accepted %d frames of 2^44 bytes from 16 bytes of pixel data: frames.go nativeFrames computes "+
			"bitsPerFrame and size*int64(n) in int64 without overflow checks, so the check against px.Value.Length passes and "+
			"make([]Frame, n) is sized by the attacker (NumberOfFrames=8589934592 with Rows=Columns=32768, SamplesPerPixel=16, "+
			"BitsAllocated=1 asks for over 300 GB)", len(frames))
	}
	if !errors.Is(err, dcm.ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

// TestCharsetInSequences: items inherit the data set's Specific Character Set, and an item
// with its own (0008,0005) uses that one (PS3.5 6.1.2.2 note, C.12.1.1.2).
func TestCharsetInSequences(t *testing.T) {
	gb := func(s string) []byte { b, _ := simplifiedchinese.GB18030.NewEncoder().Bytes([]byte(s)); return b }
	latin1 := func(s string) []byte { b, _ := charmap.ISO8859_1.NewEncoder().Bytes([]byte(s)); return b }
	for _, ts := range []string{dicomtest.TSExplicitLE, dicomtest.TSImplicitLE} {
		t.Run(ts, func(t *testing.T) {
			b := dicomtest.File{TS: ts, Elems: append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC),
				dicomtest.Str(0x00080005, "CS", "GB18030"),
				dicomtest.RawE(0x00100010, "PN", gb("韦^东平")),
				dicomtest.Seq(0x00081120, false, // ReferencedPatientSequence: inherits GB18030
					dicomtest.Item{Elems: []dicomtest.E{dicomtest.RawE(0x00100010, "PN", gb("张^三")), dicomtest.Str(0x00081150, "UI", "1.2.3")}}),
				dicomtest.Seq(0x00400275, true, // RequestAttributesSequence item with its own character set
					dicomtest.Item{UndefLen: true, Elems: []dicomtest.E{dicomtest.Str(0x00080005, "CS", "ISO_IR 100"), dicomtest.RawE(0x00321032, "PN", latin1("Müller^Hans"))}}),
			)}.Bytes()
			in, r := parse(t, b)
			m := decodeJSON(t, in, r, "")
			if got := pnAlphabetic(t, m["00100010"])["Alphabetic"]; got != "韦^东平" {
				t.Errorf("top-level PN %q", got)
			}
			ref := items(t, m["00081120"])
			if len(ref) != 1 {
				t.Fatalf("ReferencedPatientSequence %d items", len(ref))
			}
			if got := pnAlphabetic(t, ref[0]["00100010"])["Alphabetic"]; got != "张^三" {
				t.Errorf("PN in an item without its own character set = %q, want 张^三 (inherited GB18030)", got)
			}
			req := items(t, m["00400275"])
			if len(req) != 1 {
				t.Fatalf("RequestAttributesSequence %d items", len(req))
			}
			if got := pnAlphabetic(t, req[0]["00321032"])["Alphabetic"]; got != "Müller^Hans" {
				t.Errorf("PN in an item with ISO_IR 100 = %q, want Müller^Hans", got)
			}
		})
	}
}

// TestJSONInlineBinaryByteOrder: InlineBinary of OW/OF/OL/OD is little endian whatever the
// file's byte order, as DCMTK's dcm2json writes it (a JSON consumer has no transfer syntax to
// swap by).
func TestJSONInlineBinaryByteOrder(t *testing.T) {
	elems := append(dicomtest.BaseElems(testUIDs, dicomtest.SOPClassSC),
		dicomtest.E{Tag: 0x00281201, VR: "OW", U16: []uint16{0x0102, 0x0304, 0x0506}},
		dicomtest.E{Tag: 0x00660016, VR: "OF", F32: []float32{1.5}},
	)
	want := map[string]string{
		"00281201": base64.StdEncoding.EncodeToString([]byte{2, 1, 4, 3, 6, 5}),
		"00660016": base64.StdEncoding.EncodeToString(binary.LittleEndian.AppendUint32(nil, 0x3FC00000)),
	}
	for _, ts := range []string{dicomtest.TSExplicitLE, dicomtest.TSExplicitBE} {
		t.Run(ts, func(t *testing.T) {
			in, r := parse(t, dicomtest.File{TS: ts, Elems: elems}.Bytes())
			m := decodeJSON(t, in, r, "")
			for tag, w := range want {
				if got := m[tag].InlineBinary; got != w {
					if ts == dicomtest.TSExplicitBE {
						t.Fatalf("fixed bug is back: %s InlineBinary of a big endian file is %q, want little endian %q (dcm2json gives the "+
							"little endian bytes): json.go binary() base64-encodes the stored bytes without swapping OW/OF/OL/OD "+
							"words; the bulkdata route serves non-pixel OW/OF values of big endian files unswapped the same way", tag, got, w)
					}
					t.Errorf("%s InlineBinary %q, want %q", tag, got, w)
				}
			}
		})
	}
}
