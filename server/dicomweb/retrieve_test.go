package dicomweb_test

import (
	"bytes"
	"fmt"
	"math"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

const (
	acceptDefault  = `multipart/related; type="application/dicom"`
	acceptExplicit = `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1`
	acceptStored   = `multipart/related; type="application/dicom"; transfer-syntax=*`
)

// rgbImage is a secondary capture of rows x cols RGB pixels with frames frames.
func rgbImage(u dicomtest.UIDs, rows, cols, frames int) []byte {
	rgb := make([]byte, 0, rows*cols*3*frames)
	for f := range frames {
		for y := range rows {
			for x := range cols {
				rgb = append(rgb, byte(x*3+f*20), byte(y*4), byte(128+int(40*math.Sin(float64(x+y)/6))))
			}
		}
	}
	elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
		dicomtest.US(0x00280002, 3), dicomtest.Str(0x00280004, "CS", "RGB"), dicomtest.Str(0x00280008, "IS", fmt.Sprint(frames)),
		dicomtest.US(0x00280006, 0),
		dicomtest.US(0x00280010, uint16(rows)), dicomtest.US(0x00280011, uint16(cols)),
		dicomtest.US(0x00280100, 8), dicomtest.US(0x00280101, 8), dicomtest.US(0x00280102, 7), dicomtest.US(0x00280103, 0),
		dicomtest.RawE(0x7FE00010, "OB", rgb))
	return dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes()
}

// multiFrameCT is a 16-bit monochrome image of three frames.
func multiFrameCT(u dicomtest.UIDs, rows, cols int) []byte {
	const frames = 3
	pix := make([]uint16, 0, rows*cols*frames)
	for f := range frames {
		for y := range rows {
			for x := range cols {
				pix = append(pix, uint16(100*f+x*20+y*7+(x*y)%13))
			}
		}
	}
	elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
		append(dicomtest.ImageElems(rows, cols, 16, frames, "MONOCHROME2"), dicomtest.RawE(0x7FE00010, "OW", dicomtest.LE16(pix)))...)
	return dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes()
}

// interleavedPixels reads a native file's pixel data, samples interleaved whatever its Planar
// Configuration says.
func interleavedPixels(t *testing.T, b []byte) []byte {
	t.Helper()
	in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if dcm.Encapsulated(in.TransferSyntax) || in.Layout.Pixel == nil {
		t.Fatalf("%s: no native pixel data", in.TransferSyntax)
	}
	px, err := dcm.ReadSpan(bytes.NewReader(b), in.Layout, in.Layout.Pixel.Value)
	if err != nil {
		t.Fatal(err)
	}
	spp, _ := in.Int(tag.SamplesPerPixel)
	pc, _ := in.Int(tag.PlanarConfiguration)
	if spp != 3 || pc != 1 {
		return px
	}
	rows, _ := in.Int(tag.Rows)
	cols, _ := in.Int(tag.Columns)
	n := rows * cols
	out := make([]byte, 0, len(px))
	for f := 0; f+3*n <= len(px); f += 3 * n {
		for i := range n {
			out = append(out, px[f+i], px[f+n+i], px[f+2*n+i])
		}
	}
	return out
}

// dumpAttributes is dcmdump's listing of a file's data set without the meta information,
// group lengths, Pixel Data and the attributes named in skip; it fails on any warning or error.
func dumpAttributes(t *testing.T, file string, skip ...string) string {
	t.Helper()
	out, err := exec.Command("dcmdump", "-q", "+E", "-M", file).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("E: ")) || bytes.Contains(out, []byte("W: ")) {
		t.Fatalf("dcmdump %s: %v\n%s", filepath.Base(file), err, out)
	}
	var keep []string
	trailing := regexp.MustCompile(`\s+#.*$`)
lines:
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "(0002,") || strings.HasPrefix(l, "(7fe0,0010)") ||
			regexp.MustCompile(`^\([0-9a-f]{4},0000\)`).MatchString(l) {
			continue
		}
		for _, s := range skip {
			if strings.HasPrefix(l, s) {
				continue lines
			}
		}
		if strings.Contains(l, "DelimitationItem") {
			continue // written or implied, as the lengths are undefined or explicit
		}
		l = trailing.ReplaceAllString(l, "")
		l = regexp.MustCompile(`\((Sequence|Item) with .*`).ReplaceAllString(l, "($1")
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// TestRetrieveDecodesToExplicitLEAsDCMTK: compressed instances retrieved without a transfer
// syntax (lossless ones) or as explicit VR little endian (lossy ones too) come back decoded.
// DCMTK reads the result without a warning, its pixels are those of DCMTK's own decompression
// (dcmdrle, dcmdjpeg) of the stored file, and its attributes are the ones DCMTK writes.
func TestRetrieveDecodesToExplicitLEAsDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmdump", "dcmcrle", "dcmdrle", "dcmcjpeg", "dcmdjpeg", "dcmodify")
	dir := t.TempDir()
	e := newEnv(t, 0)
	for i, c := range []struct {
		name       string
		native     func(dicomtest.UIDs) []byte
		compress   []string
		decompress string
		accept     string
		lossy      bool
		// dropLossyFlag removes Lossy Image Compression from the stored file (as some
		// modalities and converters leave it out).
		dropLossyFlag bool
	}{
		{"RLE CT", func(u dicomtest.UIDs) []byte { return ctSlice(u, 60, 50, "MONOCHROME2") }, []string{"dcmcrle"}, "dcmdrle", acceptDefault, false, false},
		{"RLE CT, Accept */*", func(u dicomtest.UIDs) []byte { return ctSlice(u, 60, 50, "MONOCHROME2") }, []string{"dcmcrle"}, "dcmdrle", "*/*", false, false},
		{"RLE CT, no Accept", func(u dicomtest.UIDs) []byte { return ctSlice(u, 60, 50, "MONOCHROME2") }, []string{"dcmcrle"}, "dcmdrle", "", false, false},
		{"RLE multi-frame", func(u dicomtest.UIDs) []byte { return multiFrameCT(u, 40, 30) }, []string{"dcmcrle"}, "dcmdrle", acceptDefault, false, false},
		{"RLE RGB", func(u dicomtest.UIDs) []byte { return rgbImage(u, 33, 41, 2) }, []string{"dcmcrle"}, "dcmdrle", acceptExplicit, false, false},
		{"JPEG lossless SV1", func(u dicomtest.UIDs) []byte { return ctSlice(u, 60, 50, "MONOCHROME2") }, []string{"dcmcjpeg", "+e1"}, "dcmdjpeg", acceptDefault, false, false},
		{"JPEG lossless process 14 SV6", func(u dicomtest.UIDs) []byte { return multiFrameCT(u, 40, 30) }, []string{"dcmcjpeg", "+el", "+sv", "6"}, "dcmdjpeg", acceptDefault, false, false},
		{"JPEG baseline grey", func(u dicomtest.UIDs) []byte { return ctSlice(u, 60, 50, "MONOCHROME2") }, []string{"dcmcjpeg", "+eb", "+Wi", "1", "+un"}, "dcmdjpeg", acceptExplicit, true, false},
		{"JPEG baseline YBR_FULL_422", func(u dicomtest.UIDs) []byte { return rgbImage(u, 32, 48, 1) }, []string{"dcmcjpeg", "+eb", "+un"}, "dcmdjpeg", acceptExplicit, true, false},
		{"JPEG baseline without Lossy Image Compression", func(u dicomtest.UIDs) []byte { return rgbImage(u, 32, 48, 2) }, []string{"dcmcjpeg", "+eb", "+un"}, "dcmdjpeg", acceptExplicit, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			u := dicomtest.UIDs{Study: fmt.Sprintf("1.2.826.0.1.77.%d", i), Series: fmt.Sprintf("1.2.826.0.1.77.%d.1", i), SOP: fmt.Sprintf("1.2.826.0.1.77.%d.1.1", i)}
			in, stored, ours, ref := filepath.Join(dir, fmt.Sprint(i, "n.dcm")), filepath.Join(dir, fmt.Sprint(i, "c.dcm")), filepath.Join(dir, fmt.Sprint(i, "ours.dcm")), filepath.Join(dir, fmt.Sprint(i, "dcmtk.dcm"))
			os.WriteFile(in, c.native(u), 0o600)
			run(t, append(c.compress, in, stored)...)
			if c.dropLossyFlag {
				run(t, "dcmodify", "-nb", "-e", "(0028,2110)", stored)
			}
			run(t, c.decompress, stored, ref)
			data, _ := os.ReadFile(stored)
			e.mustStow(data)

			r := e.get(instPath(u), c.accept)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			parts := multipartParts(t, r)
			if len(parts) != 1 {
				t.Fatalf("%d parts", len(parts))
			}
			if _, p, _ := mime.ParseMediaType(parts[0].header.Get("Content-Type")); p["transfer-syntax"] != dcm.ExplicitVRLittleEndian {
				t.Fatalf("part Content-Type %q", parts[0].header.Get("Content-Type"))
			}
			os.WriteFile(ours, parts[0].body, 0o600)
			got, err := dcm.Parse(bytes.NewReader(parts[0].body), int64(len(parts[0].body)))
			if err != nil {
				t.Fatalf("our file does not parse: %v", err)
			}
			if got.TransferSyntax != dcm.ExplicitVRLittleEndian || got.SOPInstanceUID != u.SOP || got.Meta.MediaStorageSOPInstanceUID != u.SOP {
				t.Errorf("transfer syntax %s, SOP Instance UID %s (meta %s)", got.TransferSyntax, got.SOPInstanceUID, got.Meta.MediaStorageSOPInstanceUID)
			}
			refData, _ := os.ReadFile(ref)
			if !bytes.Equal(interleavedPixels(t, parts[0].body), interleavedPixels(t, refData)) {
				t.Errorf("pixels differ from %s's", c.decompress)
			}
			var skip []string
			if c.dropLossyFlag {
				skip = []string{"(0028,2110)"} // ours says 01, dcmdjpeg leaves it absent
			}
			if a, b := dumpAttributes(t, ours, skip...), dumpAttributes(t, ref, skip...); a != b {
				t.Errorf("attributes differ from %s's\nours:\n%s\nDCMTK:\n%s", c.decompress, a, b)
			}
			if v := got.String(tag.LossyImageCompression); c.lossy && v != "01" {
				t.Errorf("Lossy Image Compression %q, want 01", v)
			}
		})
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// TestRetrieveNegotiation: per instance, the first acceptable transfer syntax it can be given
// in. Without one, a lossy instance comes as stored (PS3.18 8.7.3 lets a server that has only
// the lossy form send it); one the server cannot decode is a 406 on its own, and is left out
// of a study with 206 and a Warning. The transcoded retrieve is audited like any other.
func TestRetrieveNegotiation(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcrle", "dcmcjpeg", "dcmcjpls")
	dir := t.TempDir()
	e := newEnv(t, 0)
	const study = "1.2.826.0.1.78"
	files := map[string][]byte{}
	add := func(n int, conv ...string) dicomtest.UIDs {
		u := dicomtest.UIDs{Study: study, Series: fmt.Sprintf("%s.%d", study, n), SOP: fmt.Sprintf("%s.%d.1", study, n)}
		in, out := filepath.Join(dir, fmt.Sprint(n, "n.dcm")), filepath.Join(dir, fmt.Sprint(n, "c.dcm"))
		os.WriteFile(in, ctSlice(u, 40, 30, "MONOCHROME2"), 0o600)
		run(t, append(conv, in, out)...)
		files[u.SOP], _ = os.ReadFile(out)
		e.mustStow(files[u.SOP])
		return u
	}
	rle := add(1, "dcmcrle")
	jpeg := add(2, "dcmcjpeg", "+eb", "+Wi", "1", "+un")
	jls := add(3, "dcmcjpls") // JPEG-LS lossless: decoded like RLE
	// JPEG 2000 (a hand-made stand-in: DCMTK has no encoder), which the server does not decode.
	j2k := dicomtest.UIDs{Study: study, Series: study + ".4", SOP: study + ".4.1"}
	files[j2k.SOP] = dicomtest.File{TS: "1.2.840.10008.1.2.4.90", Elems: append(dicomtest.BaseElems(j2k, dicomtest.SOPClassCT),
		append(dicomtest.ImageElems(30, 40, 16, 0, "MONOCHROME2"), dicomtest.Encapsulated(nil, []byte{0xFF, 0x4F, 0xFF, 0x51, 0, 0x29, 0, 0}))...)}.Bytes()
	e.mustStow(files[j2k.SOP])

	partTS := func(p part) string {
		_, params, _ := mime.ParseMediaType(p.header.Get("Content-Type"))
		return params["transfer-syntax"]
	}
	one := func(u dicomtest.UIDs, accept string) (int, string, []byte) {
		t.Helper()
		r := e.get(instPath(u), accept)
		if r.status != http.StatusOK {
			return r.status, "", r.body
		}
		parts := multipartParts(t, r)
		if len(parts) != 1 {
			t.Fatalf("%d parts", len(parts))
		}
		return r.status, partTS(parts[0]), parts[0].body
	}
	// The first read of the study is a decoded one, and is audited (the trail coalesces reads
	// of a study within a minute).
	if st, ts, _ := one(rle, acceptDefault); st != http.StatusOK || ts != dcm.ExplicitVRLittleEndian {
		t.Errorf("RLE, default: %d %s, want it decoded", st, ts)
	}
	entries, err := e.audit.List(t.Context(), audit.Filter{Action: "study.download", ObjectPrefix: "study:" + study})
	if err != nil || len(entries) != 1 {
		t.Errorf("audit entries for the decoded retrieve: %d (%v), want 1", len(entries), err)
	}
	if st, ts, b := one(jpeg, acceptDefault); st != http.StatusOK || ts != "1.2.840.10008.1.2.4.50" || !bytes.Equal(b, files[jpeg.SOP]) {
		t.Errorf("JPEG baseline, default: %d %s, want the stored file", st, ts)
	}
	if st, ts, _ := one(jpeg, acceptExplicit); st != http.StatusOK || ts != dcm.ExplicitVRLittleEndian {
		t.Errorf("JPEG baseline as explicit VR LE: %d %s, want it decoded", st, ts)
	}
	if st, ts, _ := one(jls, acceptDefault); st != http.StatusOK || ts != dcm.ExplicitVRLittleEndian {
		t.Errorf("JPEG-LS, default: %d %s, want it decoded", st, ts)
	}
	for _, accept := range []string{acceptStored, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80`} {
		if st, _, b := one(jls, accept); st != http.StatusOK || !bytes.Equal(b, files[jls.SOP]) {
			t.Errorf("JPEG-LS, %s: %d, want the stored file", accept, st)
		}
	}
	if st, _, body := one(j2k, acceptDefault); st != http.StatusNotAcceptable || !bytes.Contains(body, []byte("transfer-syntax=*")) {
		t.Errorf("JPEG 2000, default: %d %s, want 406 saying to ask with transfer-syntax=*", st, body)
	}
	if st, _, _ := one(rle, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50`); st != http.StatusNotAcceptable {
		t.Errorf("RLE as JPEG baseline: %d, want 406", st)
	}
	// The most preferred syntax that can be given, per instance.
	if st, ts, _ := one(j2k, `multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1, multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5`); st != http.StatusOK || ts != "1.2.840.10008.1.2.4.90" {
		t.Errorf("JPEG 2000, explicit VR LE or else as stored: %d %s", st, ts)
	}

	r := e.get(base+"/studies/"+study, acceptDefault)
	if r.status != http.StatusPartialContent || !strings.Contains(r.header.Get("Warning"), j2k.SOP) {
		t.Fatalf("study, default: %d, Warning %q; want 206 naming the JPEG 2000 instance", r.status, r.header.Get("Warning"))
	}
	got := map[string]string{}
	for _, p := range multipartParts(t, r) {
		in, err := dcm.Parse(bytes.NewReader(p.body), int64(len(p.body)))
		if err != nil {
			t.Fatal(err)
		}
		got[in.SOPInstanceUID] = partTS(p)
	}
	want := map[string]string{rle.SOP: dcm.ExplicitVRLittleEndian, jpeg.SOP: "1.2.840.10008.1.2.4.50", jls.SOP: dcm.ExplicitVRLittleEndian}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("study, default: parts %v, want %v", got, want)
	}
	r = e.get(base+"/studies/"+study, acceptStored)
	if r.status != http.StatusOK || len(multipartParts(t, r)) != 4 {
		t.Errorf("study, transfer-syntax=*: %d", r.status)
	}
}

// BenchmarkRetrieveRLEInstance: one 512 x 512 16-bit RLE CT slice retrieved over HTTP, decoded
// to explicit VR little endian (the default) and, for comparison, as stored.
func BenchmarkRetrieveRLEInstance(b *testing.B) {
	testtool.Need(b, testtool.DCMTK, "dcmcrle")
	dir := b.TempDir()
	e := newEnv(b, 0)
	u := dicomtest.UIDs{Study: "1.2.826.0.1.79", Series: "1.2.826.0.1.79.1", SOP: "1.2.826.0.1.79.1.1"}
	in, out := filepath.Join(dir, "n.dcm"), filepath.Join(dir, "c.dcm")
	os.WriteFile(in, ctSlice(u, 512, 512, "MONOCHROME2"), 0o600)
	if b, err := exec.Command("dcmcrle", in, out).CombinedOutput(); err != nil {
		panic(fmt.Sprintf("dcmcrle: %v\n%s", err, b))
	}
	data, _ := os.ReadFile(out)
	e.mustStow(data)
	for _, c := range []struct{ name, accept string }{{"decoded", acceptDefault}, {"as stored", acceptStored}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(512 * 512 * 2)
			for b.Loop() {
				if r := e.get(instPath(u), c.accept); r.status != http.StatusOK {
					b.Fatalf("%d %s", r.status, r.body)
				}
			}
		})
	}
}
