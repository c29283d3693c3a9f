package dcm_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// writePGM writes an 8-bit binary PGM and returns its pixels.
func writePGM(t testing.TB, path string, w, h int) []byte {
	t.Helper()
	pix := make([]byte, w*h)
	for i := range pix {
		pix[i] = byte(i*7 + i/w)
	}
	data := append([]byte(fmt.Sprintf("P5\n%d %d\n255\n", w, h)), pix...)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return pix
}

// readPGM reads back an 8-bit binary PGM (as written above: no comments).
func readPGM(t testing.TB, path string) (w, h int, pix []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var maxval int
	n, err := fmt.Sscanf(string(b), "P5\n%d %d\n%d\n", &w, &h, &maxval)
	if n != 3 || err != nil {
		t.Fatalf("not a PGM: %v", err)
	}
	return w, h, b[len(b)-w*h:]
}

// pgmToBMP writes the PGM's pixels as an 8-bit grey-palette BMP, which img2dcm reads
// (img2dcm takes JPEG and BMP only).
func pgmToBMP(t testing.TB, pgm, bmp string) {
	t.Helper()
	w, h, pix := readPGM(t, pgm)
	stride := (w + 3) &^ 3
	off := 14 + 40 + 256*4
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("BM")
	le(uint32(off + stride*h))
	le(uint32(0))
	le(uint32(off))
	le(uint32(40))
	le(int32(w))
	le(int32(h))
	le(uint16(1))
	le(uint16(8))
	le(uint32(0))
	le(uint32(stride * h))
	le(int32(2835))
	le(int32(2835))
	le(uint32(256))
	le(uint32(0))
	for i := range 256 {
		b.Write([]byte{byte(i), byte(i), byte(i), 0})
	}
	for y := h - 1; y >= 0; y-- { // bottom-up
		row := make([]byte, stride)
		copy(row, pix[y*w:(y+1)*w])
		b.Write(row)
	}
	if err := os.WriteFile(bmp, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func parseFile(t testing.TB, path string) (*dcm.Instance, *bytes.Reader) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, b)
}

func swapPairs(b []byte) []byte {
	out := bytes.Clone(b)
	for i := 0; i+1 < len(out); i += 2 {
		out[i], out[i+1] = out[i+1], out[i]
	}
	return out
}

// TestDCMTKSingleFrame: img2dcm from a PGM (via BMP), then dcmconv to every native transfer
// syntax and dcmcjpeg/dcmcrle; the frames read through the spans are the PGM's pixels
// (native) or the fragments dcmdump +W writes (encapsulated).
func TestDCMTKSingleFrame(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "img2dcm", "dcmconv", "dcmcjpeg", "dcmcrle", "dcmdump")
	for _, size := range [][2]int{{16, 8}, {17, 9}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			dir := t.TempDir()
			p := func(n string) string { return filepath.Join(dir, n) }
			pix := writePGM(t, p("a.pgm"), size[0], size[1])
			pgmToBMP(t, p("a.pgm"), p("a.bmp"))
			dicomtest.Run(t, "img2dcm", "-q", "-i", "BMP", p("a.bmp"), p("a.dcm"))
			dicomtest.Run(t, "dcmconv", "-q", "+ti", p("a.dcm"), p("ti.dcm"))
			dicomtest.Run(t, "dcmconv", "-q", "+te", p("a.dcm"), p("te.dcm"))
			dicomtest.Run(t, "dcmconv", "-q", "+tb", p("a.dcm"), p("tb.dcm"))
			dicomtest.Run(t, "dcmconv", "-q", "+td", p("a.dcm"), p("td.dcm"))
			dicomtest.Run(t, "dcmcjpeg", "-q", p("a.dcm"), p("jpeg.dcm"))
			dicomtest.Run(t, "dcmcrle", "-q", p("a.dcm"), p("rle.dcm"))
			for _, tc := range []struct {
				file, ts string
				want     []byte
			}{
				{"a.dcm", dicomtest.TSExplicitLE, pix},
				{"ti.dcm", dicomtest.TSImplicitLE, pix},
				{"te.dcm", dicomtest.TSExplicitLE, pix},
				// 8-bit pixels in an OW value: big endian files hold them swapped in pairs; the
				// spans give the stored bytes (the server swaps when serving frames).
				{"tb.dcm", dicomtest.TSExplicitBE, swapPairs(append(bytes.Clone(pix), 0))[:len(pix)]},
				{"td.dcm", dicomtest.TSDeflated, pix},
				{"jpeg.dcm", dicomtest.TSJPEGLossless, nil},
				{"rle.dcm", dicomtest.TSRLE, nil},
			} {
				t.Run(tc.file, func(t *testing.T) {
					in, r := parseFile(t, p(tc.file))
					if in.TransferSyntax != tc.ts {
						t.Fatalf("TransferSyntax %q, want %q", in.TransferSyntax, tc.ts)
					}
					if in.SOPInstanceUID == "" || in.SOPInstanceUID != in.Meta.MediaStorageSOPInstanceUID {
						t.Errorf("SOP Instance UID %q, meta %q", in.SOPInstanceUID, in.Meta.MediaStorageSOPInstanceUID)
					}
					frames := frameBytes(t, in, r)
					if len(frames) != 1 {
						t.Fatalf("%d frames", len(frames))
					}
					want := tc.want
					if want == nil {
						want = dcmtkPixelData(t, p(tc.file))
					}
					if !bytes.Equal(frames[0], want) {
						t.Errorf("frame (%d bytes) differs from expected (%d bytes)\n got % X\nwant % X", len(frames[0]), len(want), head(frames[0]), head(want))
					}
					decodeJSON(t, in, r, "/b/")
				})
			}
			// Decompressed again by DCMTK, the frames are the PGM's pixels.
			if testtool.Want(t, testtool.DCMTK, "dcmdjpeg") {
				dicomtest.Run(t, "dcmdjpeg", "-q", p("jpeg.dcm"), p("dj.dcm"))
				in, r := parseFile(t, p("dj.dcm"))
				if f := frameBytes(t, in, r); len(f) != 1 || !bytes.Equal(f[0], pix) {
					t.Errorf("dcmdjpeg round trip: frames differ from the PGM")
				}
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 32)] }

// TestDCMTKMultiFrame: a 16-bit, 3-frame image made by dump2dcm, converted by dcmconv and
// compressed by dcmcjpeg (one fragment per frame; 1 KB fragments with and without a Basic
// Offset Table) and dcmcrle.
func TestDCMTKMultiFrame(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dump2dcm", "dcmconv", "dcmcjpeg", "dcmcrle", "dcmdump")
	const rows, cols, nframes = 48, 64, 3
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, rows*cols*nframes*2)
	for i := 0; i < len(raw); i += 2 {
		binary.LittleEndian.PutUint16(raw[i:], uint16(rng.IntN(4096)))
	}
	if err := os.WriteFile(p("px.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	dump := fmt.Sprintf(`(0008,0005) CS [ISO_IR 192]
(0008,0016) UI =CTImageStorage
(0008,0018) UI [1.2.826.0.1.3680043.10.543.9.1.1]
(0008,0060) CS [CT]
(0010,0010) PN [测试^多帧]
(0020,000d) UI [1.2.826.0.1.3680043.10.543.9]
(0020,000e) UI [1.2.826.0.1.3680043.10.543.9.1]
(0028,0002) US 1
(0028,0004) CS [MONOCHROME2]
(0028,0008) IS [%d]
(0028,0010) US %d
(0028,0011) US %d
(0028,0100) US 16
(0028,0101) US 12
(0028,0102) US 11
(0028,0103) US 0
(7fe0,0010) OW =%s
`, nframes, rows, cols, p("px.raw"))
	if err := os.WriteFile(p("mf.dump"), []byte(dump), 0o644); err != nil {
		t.Fatal(err)
	}
	dicomtest.Run(t, "dump2dcm", "-q", "+te", p("mf.dump"), p("mf.dcm"))
	dicomtest.Run(t, "dcmconv", "-q", "+ti", p("mf.dcm"), p("ti.dcm"))
	dicomtest.Run(t, "dcmconv", "-q", "+tb", p("mf.dcm"), p("tb.dcm"))
	dicomtest.Run(t, "dcmconv", "-q", "+td", p("mf.dcm"), p("td.dcm"))
	dicomtest.Run(t, "dcmcjpeg", "-q", p("mf.dcm"), p("j1.dcm"))
	dicomtest.Run(t, "dcmcjpeg", "-q", "+fs", "1", p("mf.dcm"), p("jfrag.dcm"))
	dicomtest.Run(t, "dcmcjpeg", "-q", "+fs", "1", "-ot", p("mf.dcm"), p("jfragnobot.dcm"))
	dicomtest.Run(t, "dcmcrle", "-q", p("mf.dcm"), p("rle.dcm"))
	dicomtest.Run(t, "dcmcrle", "-q", "-ot", p("mf.dcm"), p("rlenobot.dcm"))
	frameSize := rows * cols * 2
	for _, tc := range []struct {
		file         string
		native       []byte
		encapsulated bool
		minFragments int
	}{
		{"mf.dcm", raw, false, 0},
		{"ti.dcm", raw, false, 0},
		{"tb.dcm", swapPairs(raw), false, 0},
		{"td.dcm", raw, false, 0},
		{"j1.dcm", nil, true, 3},
		{"jfrag.dcm", nil, true, 6},
		{"jfragnobot.dcm", nil, true, 6},
		{"rle.dcm", nil, true, 3},
		{"rlenobot.dcm", nil, true, 3},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in, r := parseFile(t, p(tc.file))
			if got := in.String(tag.PatientName); got != "测试^多帧" {
				t.Errorf("PatientName %q", got)
			}
			frames := frameBytes(t, in, r)
			if len(frames) != nframes {
				t.Fatalf("%d frames, want %d", len(frames), nframes)
			}
			if !tc.encapsulated {
				for i, f := range frames {
					if !bytes.Equal(f, tc.native[i*frameSize:(i+1)*frameSize]) {
						t.Errorf("frame %d differs from the raw pixels", i+1)
					}
				}
				return
			}
			if n := len(in.Layout.Pixel.Fragments); n < tc.minFragments {
				t.Errorf("%d fragments, expected at least %d (test setup)", n, tc.minFragments)
			}
			// All fragments, in order, are the frames, in order.
			all := dcmtkPixelData(t, p(tc.file))
			if got := bytes.Join(frames, nil); !bytes.Equal(got, all) {
				t.Errorf("frames concatenated (%d bytes) differ from the fragments dcmdump +W wrote (%d bytes)", len(got), len(all))
			}
			for i, f := range frames {
				if strings.HasPrefix(tc.file, "j") {
					end := bytes.TrimRight(f, "\x00")
					if !bytes.HasPrefix(f, []byte{0xFF, 0xD8}) || !bytes.HasSuffix(end, []byte{0xFF, 0xD9}) {
						t.Errorf("frame %d is not one JPEG stream (SOI ... EOI): % X ... % X", i+1, head(f), f[max(0, len(f)-4):])
					}
					if bytes.Count(f, []byte{0xFF, 0xD8, 0xFF}) != 1 {
						t.Errorf("frame %d holds %d JPEG streams", i+1, bytes.Count(f, []byte{0xFF, 0xD8, 0xFF}))
					}
				} else if len(f) < 64 || binary.LittleEndian.Uint32(f) != 2 { // RLE header: 2 segments for 16 bit
					t.Errorf("frame %d does not start with an RLE header of 2 segments: % X", i+1, head(f))
				}
			}
		})
	}
}
