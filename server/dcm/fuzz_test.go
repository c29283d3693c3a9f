package dcm_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// fuzzSeeds are small valid files of every shape the parser handles, and cuts of them.
func fuzzSeeds() map[string][]byte {
	u := dicomtest.UIDs{Study: "1.2.3", Series: "1.2.3.4", SOP: "1.2.3.4.5"}
	img := func(ts string, extra ...dicomtest.E) []byte {
		e := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 8, 0, "MONOCHROME2")...)
		e = append(e, dicomtest.Str(0x00100010, "PN", "Doe^J"), dicomtest.Str(0x00281050, "DS", "1.5"))
		return dicomtest.File{TS: ts, Elems: append(e, extra...)}.Bytes()
	}
	seeds := map[string][]byte{
		"explicit":   img(dicomtest.TSExplicitLE, dicomtest.RawE(0x7FE00010, "OB", []byte{1, 2, 3, 4})),
		"implicit":   img(dicomtest.TSImplicitLE, dicomtest.RawE(0x7FE00010, "OW", []byte{1, 2, 3, 4})),
		"bigendian":  img(dicomtest.TSExplicitBE, dicomtest.E{Tag: 0x7FE00010, VR: "OW", U16: []uint16{0x102, 0x304}}),
		"deflated":   img(dicomtest.TSDeflated, dicomtest.RawE(0x7FE00010, "OB", []byte{1, 2, 3, 4})),
		"multiframe": dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(append(dicomtest.BaseElems(u, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 8, 2, "MONOCHROME2")...), dicomtest.RawE(0x7FE00010, "OB", []byte{1, 2, 3, 4, 5, 6, 7, 8}))}.Bytes(),
		"encap-bot": dicomtest.File{TS: dicomtest.TSJPEGBaseline, Elems: append(append(dicomtest.BaseElems(u, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 8, 2, "MONOCHROME2")...),
			dicomtest.Encapsulated([]uint32{0, 14}, dicomtest.JPEGFragment(true, 6, 1), dicomtest.JPEGFragment(true, 4, 2)))}.Bytes(),
		"encap-soi": dicomtest.File{TS: dicomtest.TSJPEGBaseline, Elems: append(append(dicomtest.BaseElems(u, dicomtest.SOPClassSC), dicomtest.ImageElems(2, 2, 8, 2, "MONOCHROME2")...),
			dicomtest.Encapsulated(nil, dicomtest.JPEGFragment(true, 6, 1), dicomtest.JPEGFragment(false, 4, 2), dicomtest.JPEGFragment(true, 4, 3)))}.Bytes(),
		"sequences": dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
			dicomtest.Seq(0x00081110, false, dicomtest.Item{Elems: []dicomtest.E{dicomtest.Str(0x00081150, "UI", "1.2"),
				dicomtest.Seq(0x00081199, true, dicomtest.Item{UndefLen: true, Elems: []dicomtest.E{dicomtest.Str(0x00081155, "UI", "1.2.9")}})}}),
			dicomtest.Seq(0x00880200, true, dicomtest.Item{UndefLen: true, Elems: []dicomtest.E{dicomtest.RawE(0x7FE00010, "OB", []byte{9, 9})}}))}.Bytes(),
		"charset-2022": dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
			dicomtest.Str(0x00080005, "CS", "", "ISO 2022 IR 149"),
			dicomtest.RawE(0x00100010, "PN", []byte("Hong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7")))}.Bytes(),
		"charset-gbk": dicomtest.File{TS: dicomtest.TSImplicitLE, Elems: append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
			dicomtest.Str(0x00080005, "CS", "GBK"), dicomtest.RawE(0x00100010, "PN", []byte("\x81\x5c^\xce\xa4")))}.Bytes(),
	}
	full := seeds["explicit"]
	for _, cut := range []int{132, 140, 200, len(full) - 3} {
		seeds[fmt.Sprintf("explicit-cut%d", cut)] = full[:cut]
	}
	enc := seeds["encap-bot"]
	seeds["encap-bot-cut"] = enc[:len(enc)-10]
	df := seeds["deflated"]
	seeds["deflated-cut"] = df[:len(df)-8]
	return seeds
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzParse when SANPING_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SANPING_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set SANPING_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzParse")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds() {
		data := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func expectedError(err error) bool {
	return errors.Is(err, dcm.ErrMalformed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// FuzzParse feeds arbitrary bytes to Parse, Frames, ReadSpan and JSON: no panic, no hang,
// errors that say "malformed" (or I/O), valid JSON whenever JSON succeeds.
func FuzzParse(f *testing.F) {
	for _, b := range fuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		in, libraryPanic, err := parseGuarded(r, int64(len(b)))
		if libraryPanic != "" {
			t.Fatal(bugLibraryPanic + libraryPanic)
		}
		if err != nil {
			if !expectedError(err) {
				t.Fatalf("Parse error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if in.SOPInstanceUID == "" || in.StudyInstanceUID == "" || in.SeriesInstanceUID == "" {
			t.Fatalf("Parse succeeded without UIDs: %q %q %q", in.StudyInstanceUID, in.SeriesInstanceUID, in.SOPInstanceUID)
		}
		for _, tg := range []tag.Tag{tag.PatientName, tag.PatientID, tag.StudyDate, tag.SpecificCharacterSet, tag.StudyDescription} {
			_ = in.Strings(tg)
		}
		_, _ = in.Int(tag.NumberOfFrames)
		frames, err := in.Frames(r)
		if err != nil && !expectedError(err) {
			t.Fatalf("Frames error does not wrap ErrMalformed: %v", err)
		}
		for _, fr := range frames {
			for _, s := range fr {
				if s.Length > int64(len(b))*1100 { // more than any inflation of the input could give
					t.Fatalf("frame span %+v is larger than the input (%d bytes) can hold", s, len(b))
				}
				if _, err := dcm.ReadSpan(r, in.Layout, s); err != nil && !expectedError(err) {
					t.Fatalf("ReadSpan(%+v): %v", s, err)
				}
			}
		}
		for p, s := range in.Layout.Bulk {
			if _, err := dcm.ReadSpan(r, in.Layout, s); err != nil && !expectedError(err) {
				t.Fatalf("ReadSpan bulk %s %+v: %v", p, s, err)
			}
		}
		if dcm.CanTranscodeToExplicitLE(in.TransferSyntax) {
			checkTranscode(t, b, in)
		}
		js, err := in.JSON(r, "/b/")
		if err != nil {
			if !expectedError(err) {
				t.Fatalf("JSON error: %v", err)
			}
			return
		}
		if !json.Valid(js) {
			t.Fatalf("JSON() is not valid JSON: %.300s", js)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(js, &m); err != nil {
			t.Fatalf("JSON() is not an object: %v", err)
		}
	})
}

// parseGuarded runs Parse and recovers a panic raised inside github.com/suyashkumar/dicom,
// returning where it happened. Panics anywhere else (Sanping's own code) are not recovered.
func parseGuarded(r *bytes.Reader, size int64) (in *dcm.Instance, libraryPanic string, err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		stack := string(debug.Stack())
		site := panicSite(stack)
		if !strings.HasPrefix(site, "github.com/suyashkumar/dicom") {
			panic(fmt.Sprintf("%v\n%s", p, stack))
		}
		libraryPanic = fmt.Sprintf("%v at %s", p, site)
		if f := os.Getenv("SANPING_FUZZ_PANIC_LOG"); f != "" {
			if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintln(fh, libraryPanic)
				fh.Close()
			}
		}
	}()
	in, err = dcm.Parse(r, size)
	return in, "", err
}

// panicSite returns the function that panicked: the first frame after the runtime's panic
// machinery (and log.Panicf, which the library uses).
func panicSite(stack string) string {
	lines := strings.Split(stack, "\n")
	after := false
	for _, l := range lines {
		if strings.HasPrefix(l, "panic(") {
			after = true
			continue
		}
		if !after || strings.HasPrefix(l, "\t") || l == "" {
			continue
		}
		if strings.HasPrefix(l, "runtime.") || strings.HasPrefix(l, "log.") {
			continue
		}
		return l
	}
	return ""
}

const bugLibraryPanic = "regression: dcm.Parse lets github.com/suyashkumar/dicom panic on malformed input instead of returning " +
	"ErrMalformed (instance.go Parse hands the raw File Meta group and data set to dicom.NewParser/Next without validating " +
	"what the library assumes and without recover): "

// checkTranscode: a file that parses transcodes to explicit VR little endian that parses too,
// as the same instance (or fails as malformed).
func checkTranscode(t *testing.T, b []byte, in *dcm.Instance) {
	var out bytes.Buffer
	err := dcm.TranscodeToExplicitLE(&out, bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, io.ErrShortBuffer) {
		t.Fatal("fixed bug is back: TranscodeToExplicitLE io.ErrShortBuffer (see TestTranscodeWideWordsAcrossBuffer)")
	}
	if err != nil {
		if !expectedError(err) {
			t.Fatalf("TranscodeToExplicitLE error does not wrap ErrMalformed: %v", err)
		}
		return
	}
	got, libraryPanic, err := parseGuarded(bytes.NewReader(out.Bytes()), int64(out.Len()))
	if libraryPanic != "" {
		t.Fatal(bugLibraryPanic + libraryPanic)
	}
	if err != nil {
		t.Fatalf("transcoded file does not parse: %v", err)
	}
	if got.TransferSyntax != dcm.ExplicitVRLittleEndian || got.SOPInstanceUID != in.SOPInstanceUID {
		t.Fatalf("transcoded file: %s %s, want %s %s", got.TransferSyntax, got.SOPInstanceUID, dcm.ExplicitVRLittleEndian, in.SOPInstanceUID)
	}
}
