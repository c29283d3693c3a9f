package dicomweb_test

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// ctSlice is a 16-bit signed CT-like image with rescale and a window: a bright disc on a darker
// body on air, with noise, so every grey level region and edge is exercised.
func ctSlice(u dicomtest.UIDs, rows, cols int, photometric string) []byte {
	pix := make([]uint16, rows*cols)
	for y := range rows {
		for x := range cols {
			dx, dy := float64(x-cols/2), float64(y-rows/2)
			r := math.Hypot(dx, dy)
			v := 0.0 // air: -1024 HU after rescale
			switch {
			case r < float64(rows)/6:
				v = 2200 // bone
			case r < float64(rows)*0.45:
				v = 1024 + 40 + 30*math.Sin(dx/9)*math.Cos(dy/7) // soft tissue
			}
			v += float64((x*31+y*17)%23) - 11
			pix[y*cols+x] = uint16(int16(v))
		}
	}
	elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassCT),
		dicomtest.Str(0x00080060, "CS", "CT"),
		dicomtest.Str(0x00100010, "PN", "Render^Test"),
		dicomtest.Str(0x00200013, "IS", "1"),
		dicomtest.US(0x00280002, 1),
		dicomtest.Str(0x00280004, "CS", photometric),
		dicomtest.US(0x00280010, uint16(rows)),
		dicomtest.US(0x00280011, uint16(cols)),
		dicomtest.US(0x00280100, 16),
		dicomtest.US(0x00280101, 16),
		dicomtest.US(0x00280102, 15),
		dicomtest.US(0x00280103, 1),
		dicomtest.Str(0x00281050, "DS", "40"),
		dicomtest.Str(0x00281051, "DS", "400"),
		dicomtest.Str(0x00281052, "DS", "-1024"),
		dicomtest.Str(0x00281053, "DS", "1"),
		dicomtest.RawE(0x7FE00010, "OW", dicomtest.LE16(pix)),
	)
	return dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes()
}

func decodeImage(t *testing.T, b []byte, mediaType string) image.Image {
	t.Helper()
	var img image.Image
	var err error
	if mediaType == "image/png" {
		img, err = png.Decode(bytes.NewReader(b))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(b))
	}
	if err != nil {
		t.Fatalf("decoding %s (%d bytes): %v", mediaType, len(b), err)
	}
	return img
}

func grey(img image.Image, x, y int) int {
	r, g, b, _ := img.At(x, y).RGBA()
	return int((r + g + b) / 3 >> 8)
}

// TestRenderedMatchesDCMTK renders a CT slice stored natively and as DCMTK compressed it (RLE,
// JPEG lossless SV1 and process 14) and compares every pixel with dcmj2pnm's rendering of the
// same file with the same window: at most 2 grey levels apart.
func TestRenderedMatchesDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmj2pnm", "dcmcrle", "dcmcjpeg")
	dir := t.TempDir()
	e := newEnv(t, 0)
	variants := []struct {
		name string
		conv []string // DCMTK command turning native.dcm into the variant
		mono string
		voi  string // dcmj2pnm's VOI option for what Sanping does by default
	}{
		{"native", nil, "MONOCHROME2", "+Wi"},
		{"native MONOCHROME1", nil, "MONOCHROME1", "+Wi"},
		{"RLE", []string{"dcmcrle"}, "MONOCHROME2", "+Wi"},
		{"JPEG lossless SV1", []string{"dcmcjpeg", "+e1"}, "MONOCHROME2", "+Wi"},
		{"JPEG lossless SV5", []string{"dcmcjpeg", "+el", "+sv", "5"}, "MONOCHROME2", "+Wi"},
		// The windowed 8-bit JPEG keeps no window: Sanping then maps min..max, as +Wm does.
		{"JPEG baseline (8-bit, windowed by DCMTK)", []string{"dcmcjpeg", "+eb", "+Wi", "1", "+un"}, "MONOCHROME2", "+Wm"},
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			u := dicomtest.UIDs{Study: fmt.Sprintf("1.2.826.0.1.99.%d", i), Series: fmt.Sprintf("1.2.826.0.1.99.%d.1", i), SOP: fmt.Sprintf("1.2.826.0.1.99.%d.1.1", i)}
			native := filepath.Join(dir, fmt.Sprintf("native%d.dcm", i))
			os.WriteFile(native, ctSlice(u, 96, 128, v.mono), 0o600)
			file := native
			if v.conv != nil {
				file = filepath.Join(dir, fmt.Sprintf("variant%d.dcm", i))
				args := append(append([]string{}, v.conv[1:]...), native, file)
				if out, err := exec.Command(v.conv[0], args...).CombinedOutput(); err != nil {
					t.Fatalf("%v: %v\n%s", v.conv, err, out)
				}
			}
			data, _ := os.ReadFile(file)
			e.mustStow(data)
			want := filepath.Join(dir, fmt.Sprintf("dcmtk%d.png", i))
			if out, err := exec.Command("dcmj2pnm", append(append([]string{"+on"}, voiArgs(v.voi)...), file, want)...).CombinedOutput(); err != nil {
				t.Fatalf("dcmj2pnm: %v\n%s", err, out)
			}
			wb, _ := os.ReadFile(want)
			ref := decodeImage(t, wb, "image/png")
			r := e.get(fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/rendered", base, u.Study, u.Series, u.SOP), "image/png")
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "image/png" {
				t.Fatalf("rendered: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			got := decodeImage(t, r.body, "image/png")
			if got.Bounds() != ref.Bounds() {
				t.Fatalf("size %v, DCMTK %v", got.Bounds(), ref.Bounds())
			}
			maxDiff, sum := 0, 0
			b := ref.Bounds()
			for y := b.Min.Y; y < b.Max.Y; y++ {
				for x := b.Min.X; x < b.Max.X; x++ {
					d := grey(got, x, y) - grey(ref, x, y)
					if d < 0 {
						d = -d
					}
					maxDiff = max(maxDiff, d)
					sum += d
				}
			}
			t.Logf("%s: max difference %d, mean %.3f grey levels", v.name, maxDiff, float64(sum)/float64(b.Dx()*b.Dy()))
			if maxDiff > 2 {
				t.Fatalf("%s: a pixel differs from dcmj2pnm by %d grey levels", v.name, maxDiff)
			}
		})
	}
}

func TestRenderedResources(t *testing.T) {
	e := newEnv(t, 0)
	u := dicomtest.UIDs{Study: "1.2.826.0.1.77", Series: "1.2.826.0.1.77.1", SOP: "1.2.826.0.1.77.1.1"}
	e.mustStow(ctSlice(u, 200, 300, "MONOCHROME2"))
	inst := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s", base, u.Study, u.Series, u.SOP)
	// A JPEG 2000 instance: stored and retrievable, not rendered by the server.
	ls := dicomtest.UIDs{Study: u.Study, Series: "1.2.826.0.1.77.2", SOP: "1.2.826.0.1.77.2.1"}
	lsFile := dicomtest.File{TS: "1.2.840.10008.1.2.4.90", Elems: append(dicomtest.BaseElems(ls, dicomtest.SOPClassCT),
		append(dicomtest.ImageElems(8, 8, 16, 0, "MONOCHROME2"), dicomtest.Encapsulated(nil, []byte{0xFF, 0x4F, 0xFF, 0x51, 0, 0x29, 0, 0}))...)}.Bytes()
	e.mustStow(lsFile)

	cases := []struct {
		name, path, accept string
		status             int
		mediaType          string
		maxW, maxH         int
	}{
		{"instance PNG", inst + "/rendered", "image/png", 200, "image/png", 300, 200},
		{"instance default is JPEG", inst + "/rendered", "", 200, "image/jpeg", 300, 200},
		{"frame 1 with viewport", inst + "/frames/1/rendered?viewport=150,150", "image/jpeg", 200, "image/jpeg", 150, 100},
		{"window and quality", inst + "/rendered?window=40,400,linear&quality=50", "image/jpeg", 200, "image/jpeg", 300, 200},
		{"sigmoid window", inst + "/rendered?window=40,400,sigmoid", "image/png", 200, "image/png", 300, 200},
		{"series rendered", fmt.Sprintf("%s/studies/%s/series/%s/rendered", base, u.Study, u.Series), "image/png", 200, "image/png", 300, 200},
		{"instance thumbnail", inst + "/thumbnail", "", 200, "image/jpeg", 128, 128},
		{"frame thumbnail", inst + "/frames/1/thumbnail", "image/png", 200, "image/png", 128, 128},
		{"series thumbnail", fmt.Sprintf("%s/studies/%s/series/%s/thumbnail", base, u.Study, u.Series), "", 200, "image/jpeg", 128, 128},
		{"study thumbnail", fmt.Sprintf("%s/studies/%s/thumbnail", base, u.Study), "", 200, "image/jpeg", 128, 128},
		{"thumbnail again (cached)", inst + "/thumbnail", "", 200, "image/jpeg", 128, 128},
		{"GIF not offered", inst + "/rendered", "image/gif", 406, "", 0, 0},
		{"frame beyond the last", inst + "/frames/2/rendered", "", 404, "", 0, 0},
		{"frame zero", inst + "/frames/0/rendered", "", 400, "", 0, 0},
		{"bad viewport", inst + "/rendered?viewport=0,10", "", 400, "", 0, 0},
		{"bad window", inst + "/rendered?window=a,b", "", 400, "", 0, 0},
		{"bad window function", inst + "/rendered?window=1,2,cubic", "", 400, "", 0, 0},
		{"bad quality", inst + "/rendered?quality=101", "", 400, "", 0, 0},
		{"unknown instance", fmt.Sprintf("%s/studies/%s/series/%s/instances/1.2.3.999/rendered", base, u.Study, u.Series), "", 404, "", 0, 0},
		{"JPEG 2000 is not rendered here", fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/rendered", base, ls.Study, ls.Series, ls.SOP), "", 501, "", 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.get(c.path, c.accept)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.status != 200 {
				if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("error answer is %q, want a problem document", ct)
				}
				return
			}
			if ct := r.header.Get("Content-Type"); ct != c.mediaType {
				t.Fatalf("Content-Type %q, want %q", ct, c.mediaType)
			}
			img := decodeImage(t, r.body, c.mediaType)
			b := img.Bounds()
			if b.Dx() > c.maxW || b.Dy() > c.maxH || (b.Dx() != c.maxW && b.Dy() != c.maxH) {
				t.Fatalf("image %dx%d, want it to fit %dx%d touching one side", b.Dx(), b.Dy(), c.maxW, c.maxH)
			}
			// The aspect ratio of the 300x200 slice is kept.
			if ratio := float64(b.Dx()) / float64(b.Dy()); math.Abs(ratio-1.5) > 0.05 {
				t.Fatalf("aspect ratio %.3f, want 1.5", ratio)
			}
		})
	}
	thumbs, _ := filepath.Glob(filepath.Join(e.dir, "cache", "thumbnails", "*", "*"))
	if len(thumbs) == 0 {
		t.Fatal("thumbnails were not cached")
	}
}

func voiArgs(opt string) []string {
	if opt == "+Wi" {
		return []string{"+Wi", "1"}
	}
	return []string{opt}
}

// TestRenderedColorMatchesDCMTK: an RGB image stored natively, as RLE, and as baseline JPEG
// (which DCMTK writes as YBR_FULL_422) renders like dcmj2pnm, channel by channel (the JPEG one
// exactly, since jpegbase decodes as libjpeg does).
func TestRenderedColorMatchesDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmj2pnm", "dcmcrle", "dcmcjpeg")
	const rows, cols = 64, 80
	rgb := make([]byte, 0, rows*cols*3)
	for y := range rows {
		for x := range cols {
			rgb = append(rgb, byte(x*3), byte(y*4), byte(128+int(40*math.Sin(float64(x+y)/6))))
		}
	}
	dir := t.TempDir()
	e := newEnv(t, 0)
	// +cr: the JPEG holds RGB, not YCbCr (Photometric Interpretation RGB, component IDs R, G, B
	// or an Adobe marker): no colour conversion on decoding, as libjpeg and DCMTK decide.
	for i, conv := range [][]string{nil, {"dcmcrle"}, {"dcmcjpeg", "+eb", "+un"}, {"dcmcjpeg", "+eb", "+un", "+cr"}} {
		u := dicomtest.UIDs{Study: fmt.Sprintf("1.2.826.0.1.88.%d", i), Series: fmt.Sprintf("1.2.826.0.1.88.%d.1", i), SOP: fmt.Sprintf("1.2.826.0.1.88.%d.1.1", i)}
		elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
			dicomtest.US(0x00280002, 3), dicomtest.Str(0x00280004, "CS", "RGB"), dicomtest.US(0x00280006, 0),
			dicomtest.US(0x00280010, rows), dicomtest.US(0x00280011, cols),
			dicomtest.US(0x00280100, 8), dicomtest.US(0x00280101, 8), dicomtest.US(0x00280102, 7), dicomtest.US(0x00280103, 0),
			dicomtest.RawE(0x7FE00010, "OB", rgb))
		file := filepath.Join(dir, fmt.Sprintf("rgb%d.dcm", i))
		os.WriteFile(file, dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes(), 0o600)
		name := "native"
		if conv != nil {
			name = conv[0]
			out := filepath.Join(dir, fmt.Sprintf("rgb%d-c.dcm", i))
			if b, err := exec.Command(conv[0], append(conv[1:], file, out)...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", conv, err, b)
			}
			file = out
		}
		data, _ := os.ReadFile(file)
		e.mustStow(data)
		want := filepath.Join(dir, fmt.Sprintf("rgb%d.png", i))
		if b, err := exec.Command("dcmj2pnm", "+on", file, want).CombinedOutput(); err != nil {
			t.Fatalf("dcmj2pnm: %v\n%s", err, b)
		}
		wb, _ := os.ReadFile(want)
		ref := decodeImage(t, wb, "image/png")
		r := e.get(fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/rendered", base, u.Study, u.Series, u.SOP), "image/png")
		if r.status != http.StatusOK {
			t.Fatalf("%s: rendered %d %s", name, r.status, r.body)
		}
		got := decodeImage(t, r.body, "image/png")
		maxDiff := 0
		for y := range rows {
			for x := range cols {
				r1, g1, b1, _ := got.At(x, y).RGBA()
				r2, g2, b2, _ := ref.At(x, y).RGBA()
				for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
					maxDiff = max(maxDiff, max(d, -d))
				}
			}
		}
		t.Logf("%s: max channel difference %d", name, maxDiff)
		if maxDiff > 2 {
			t.Errorf("%s: a channel differs from dcmj2pnm by %d levels", name, maxDiff)
		}
	}
}

// TestRenderedFramesMatchDCMTK: each frame of a multi-frame instance (native and RLE) renders
// like dcmj2pnm's rendering of that frame.
func TestRenderedFramesMatchDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmj2pnm", "dcmcrle")
	const rows, cols, frames = 40, 50, 3
	pix := make([]uint16, 0, rows*cols*frames)
	for f := range frames {
		for y := range rows {
			for x := range cols {
				pix = append(pix, uint16(100*f+x*20+y*7+(x*y)%13))
			}
		}
	}
	dir := t.TempDir()
	e := newEnv(t, 0)
	for i, conv := range [][]string{nil, {"dcmcrle"}} {
		u := dicomtest.UIDs{Study: fmt.Sprintf("1.2.826.0.1.66.%d", i), Series: fmt.Sprintf("1.2.826.0.1.66.%d.1", i), SOP: fmt.Sprintf("1.2.826.0.1.66.%d.1.1", i)}
		elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
			append(dicomtest.ImageElems(rows, cols, 16, frames, "MONOCHROME2"), dicomtest.RawE(0x7FE00010, "OW", dicomtest.LE16(pix)))...)
		file := filepath.Join(dir, fmt.Sprintf("mf%d.dcm", i))
		os.WriteFile(file, dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes(), 0o600)
		if conv != nil {
			out := filepath.Join(dir, fmt.Sprintf("mf%d-c.dcm", i))
			if b, err := exec.Command(conv[0], append(conv[1:], file, out)...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", conv, err, b)
			}
			file = out
		}
		data, _ := os.ReadFile(file)
		e.mustStow(data)
		for f := 1; f <= frames; f++ {
			want := filepath.Join(dir, fmt.Sprintf("mf%d-%d.png", i, f))
			if b, err := exec.Command("dcmj2pnm", "+on", "+Wm", "+F", fmt.Sprint(f), file, want).CombinedOutput(); err != nil {
				t.Fatalf("dcmj2pnm: %v\n%s", err, b)
			}
			wb, _ := os.ReadFile(want)
			ref := decodeImage(t, wb, "image/png")
			r := e.get(fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/%d/rendered", base, u.Study, u.Series, u.SOP, f), "image/png")
			if r.status != http.StatusOK {
				t.Fatalf("frame %d: %d %s", f, r.status, r.body)
			}
			got := decodeImage(t, r.body, "image/png")
			for y := range rows {
				for x := range cols {
					if d := grey(got, x, y) - grey(ref, x, y); d > 2 || d < -2 {
						t.Fatalf("variant %d frame %d pixel (%d,%d): %d vs DCMTK %d", i, f, x, y, grey(got, x, y), grey(ref, x, y))
					}
				}
			}
		}
	}
}

// TestLosslessFramesDecodedOnRequest: frames of RLE and JPEG lossless instances asked for as
// octet-stream without a transfer syntax (explicit VR little endian, PS3.18 8.7.3.5.2) come
// back decoded, equal to the original pixels; with transfer-syntax=* as stored.
func TestLosslessFramesDecodedOnRequest(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmcrle", "dcmcjpeg")
	dir := t.TempDir()
	e := newEnv(t, 0)
	for i, conv := range [][]string{{"dcmcrle"}, {"dcmcjpeg", "+e1"}, {"dcmcjpeg", "+el", "+sv", "6"}} {
		u := dicomtest.UIDs{Study: fmt.Sprintf("1.2.826.0.1.44.%d", i), Series: fmt.Sprintf("1.2.826.0.1.44.%d.1", i), SOP: fmt.Sprintf("1.2.826.0.1.44.%d.1.1", i)}
		native := ctSlice(u, 30, 40, "MONOCHROME2")
		in := filepath.Join(dir, fmt.Sprintf("n%d.dcm", i))
		out := filepath.Join(dir, fmt.Sprintf("c%d.dcm", i))
		os.WriteFile(in, native, 0o600)
		if b, err := exec.Command(conv[0], append(conv[1:], in, out)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", conv, err, b)
		}
		data, _ := os.ReadFile(out)
		e.mustStow(data)
		want := native[len(native)-30*40*2:] // the pixel data is the file's last element
		path := fmt.Sprintf("%s/studies/%s/series/%s/instances/%s/frames/1", base, u.Study, u.Series, u.SOP)
		r := e.get(path, "application/octet-stream")
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1" {
			t.Fatalf("%v: %d %q %s", conv, r.status, r.header.Get("Content-Type"), r.body)
		}
		if !bytes.Equal(r.body, want) {
			t.Fatalf("%v: decoded frame differs from the original pixels (%d vs %d bytes)", conv, len(r.body), len(want))
		}
		r = e.get(path, `multipart/related; type="application/octet-stream"; transfer-syntax=*`)
		if r.status != http.StatusOK || bytes.Contains(r.body, want[:64]) {
			t.Fatalf("%v: transfer-syntax=* should return the compressed frame as stored", conv)
		}
	}
}
