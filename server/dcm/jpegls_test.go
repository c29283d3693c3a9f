package dcm_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
	"github.com/sanping/sanping/server/render/jpegls"
)

// jlsCase is a native instance to compress.
type jlsCase struct {
	name                    string
	rows, cols, spp, frames int
	ba, bs                  int
	signed, planar          bool
	pi                      string
	wantErr                 string // TranscodeJPEGLS refuses it
	sameBytesAsDCMTK        bool   // dcmcjpls codes it with the same precision
}

// pixels makes the native frames: a gradient with noise, a flat border (run mode) and, for
// signed data, negative values sign-extended to Bits Allocated.
func (c jlsCase) pixels() []byte {
	rng := rand.New(rand.NewPCG(uint64(c.rows), uint64(c.cols)))
	n := c.rows * c.cols * c.spp * c.frames
	out := make([]byte, 0, n*c.ba/8)
	maxv := 1<<c.bs - 1
	for i := range n {
		p := i / c.spp % (c.rows * c.cols)
		x, y := p%c.cols, p/c.cols
		v := 0
		if x > 3 && y > 2 {
			v = (x*maxv/c.cols+y*maxv/c.rows)/2 + rng.IntN(9) - 4 + i%c.spp*17
		}
		v = min(max(v, 0), maxv)
		if c.signed {
			v -= 1 << (c.bs - 1) // two's complement, sign-extended below
		}
		if c.ba == 8 {
			out = append(out, byte(v))
		} else {
			out = binary.LittleEndian.AppendUint16(out, uint16(int16(v)))
		}
	}
	return out
}

func (c jlsCase) file(pix []byte) []byte {
	u := dicomtest.UIDs{Study: "1.2.826.0.1.3680043.10.543.9.1", Series: "1.2.826.0.1.3680043.10.543.9.2",
		SOP: "1.2.826.0.1.3680043.10.543.9.3." + strconv.Itoa(len(c.name))}
	pr := 0
	if c.signed {
		pr = 1
	}
	elems := append(dicomtest.BaseElems(u, dicomtest.SOPClassSC),
		dicomtest.US(0x00280002, uint16(c.spp)),
		dicomtest.Str(0x00280004, "CS", c.pi))
	if c.spp > 1 {
		pc := uint16(0)
		if c.planar {
			pc = 1
		}
		elems = append(elems, dicomtest.US(0x00280006, pc))
	}
	if c.frames > 1 {
		elems = append(elems, dicomtest.Str(0x00280008, "IS", strconv.Itoa(c.frames)))
	}
	elems = append(elems,
		dicomtest.US(0x00280010, uint16(c.rows)), dicomtest.US(0x00280011, uint16(c.cols)),
		dicomtest.US(0x00280100, uint16(c.ba)), dicomtest.US(0x00280101, uint16(c.bs)),
		dicomtest.US(0x00280102, uint16(c.bs-1)), dicomtest.US(0x00280103, uint16(pr)),
		dicomtest.Str(0x00282110, "CS", "00"))
	vr := "OW"
	if c.ba == 8 {
		vr = "OB"
	}
	elems = append(elems, dicomtest.RawE(0x7FE00010, vr, pix))
	return dicomtest.File{TS: dicomtest.TSExplicitLE, Elems: elems}.Bytes()
}

// expected is what a lossless decoder gives back: interleaved by pixel, the bits above Bits
// Stored cleared.
func (c jlsCase) expected(pix []byte) []byte {
	out := bytes.Clone(pix)
	bps := c.ba / 8
	if c.planar {
		n := c.rows * c.cols
		for f := range c.frames {
			frame := pix[f*n*c.spp*bps:]
			for s := range c.spp {
				for i := range n {
					copy(out[(f*n*c.spp+i*c.spp+s)*bps:][:bps], frame[(s*n+i)*bps:][:bps])
				}
			}
		}
	}
	mask := 1<<c.bs - 1
	for i := 0; i < len(out); i += bps {
		if bps == 1 {
			out[i] &= byte(mask)
		} else {
			binary.LittleEndian.PutUint16(out[i:], binary.LittleEndian.Uint16(out[i:])&uint16(mask))
		}
	}
	return out
}

var jlsCases = []jlsCase{
	{name: "grey8", rows: 97, cols: 203, spp: 1, frames: 1, ba: 8, bs: 8, pi: "MONOCHROME2", sameBytesAsDCMTK: true},
	{name: "CT12 signed", rows: 64, cols: 80, spp: 1, frames: 2, ba: 16, bs: 12, signed: true, pi: "MONOCHROME2"},
	{name: "grey6", rows: 31, cols: 17, spp: 1, frames: 1, ba: 8, bs: 6, pi: "MONOCHROME2", sameBytesAsDCMTK: true},
	{name: "CR16", rows: 120, cols: 99, spp: 1, frames: 1, ba: 16, bs: 16, pi: "MONOCHROME1", sameBytesAsDCMTK: true},
	{name: "RGB", rows: 40, cols: 51, spp: 3, frames: 3, ba: 8, bs: 8, pi: "RGB", sameBytesAsDCMTK: true},
	{name: "RGB planar", rows: 33, cols: 20, spp: 3, frames: 2, ba: 8, bs: 8, planar: true, pi: "RGB"},
	{name: "YBR_FULL_422", rows: 8, cols: 8, spp: 3, frames: 1, ba: 8, bs: 8, pi: "YBR_FULL_422", wantErr: "Photometric"},
	{name: "32 bits allocated", rows: 8, cols: 8, spp: 1, frames: 1, ba: 32, bs: 32, pi: "MONOCHROME2", wantErr: "Bits Allocated"},
}

// TestTranscodeJPEGLS compresses native instances and checks the result with our decoder,
// with dcmdjpls (the same pixels), with dcmdump (no complaint) and against dcmcjpls (the same
// fragments where it codes with the same precision; it codes 12 bits in 16-bit words with
// precision 16).
func TestTranscodeJPEGLS(t *testing.T) {
	dcmtk := testtool.Want(t, testtool.DCMTK, "dcmdjpls") && testtool.Want(t, testtool.DCMTK, "dcmcjpls") && testtool.Want(t, testtool.DCMTK, "dcmdump")
	for _, c := range jlsCases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pix := c.pixels()
			src := c.file(pix)
			var out bytes.Buffer
			err := dcm.TranscodeJPEGLS(&out, bytes.NewReader(src), int64(len(src)))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in, r := parse(t, out.Bytes())
			if in.TransferSyntax != dcm.JPEGLSLossless || in.SOPInstanceUID == "" || !strings.HasSuffix(in.SOPInstanceUID, "."+strconv.Itoa(len(c.name))) {
				t.Fatalf("transfer syntax %s, SOP Instance UID %s", in.TransferSyntax, in.SOPInstanceUID)
			}
			if pc, _ := in.Int(tag.PlanarConfiguration); c.spp > 1 && pc != 0 {
				t.Errorf("Planar Configuration %d", pc)
			}
			if in.String(tag.PhotometricInterpretation) != c.pi || in.String(tag.LossyImageCompression) != "00" {
				t.Errorf("Photometric Interpretation %q, Lossy Image Compression %q", in.String(tag.PhotometricInterpretation), in.String(tag.LossyImageCompression))
			}
			px := in.Layout.Pixel
			if len(px.Fragments) != c.frames || px.BasicOffsetTable.Length != int64(4*c.frames) {
				t.Fatalf("%d fragments, offset table of %d bytes, want %d frames", len(px.Fragments), px.BasicOffsetTable.Length, c.frames)
			}
			bot := out.Bytes()[px.BasicOffsetTable.Offset:]
			for i, start := range px.ItemStarts {
				if got, want := int64(binary.LittleEndian.Uint32(bot[4*i:])), start-px.ItemStarts[0]; got != want {
					t.Errorf("offset table entry %d is %d, want %d", i, got, want)
				}
			}
			frames, err := in.Frames(r)
			if err != nil || len(frames) != c.frames {
				t.Fatalf("%d frames: %v", len(frames), err)
			}
			want := c.expected(pix)
			frameLen := len(want) / c.frames
			for i, fr := range frames {
				b := make([]byte, fr.Size())
				r.ReadAt(b, fr[0].Offset)
				if len(b)%2 != 0 || !bytes.HasSuffix(b, []byte{0xFF, 0xD9}) {
					t.Fatalf("frame %d: %d bytes ending % x", i+1, len(b), b[max(0, len(b)-3):])
				}
				_, got, err := jpegls.Decode(b)
				if err != nil {
					t.Fatalf("frame %d: %v", i+1, err)
				}
				if !bytes.Equal(got, want[i*frameLen:(i+1)*frameLen]) {
					t.Errorf("frame %d decodes to other samples", i+1)
				}
			}
			if !dcmtk {
				return
			}
			ours := filepath.Join(dir, "ours.dcm")
			if err := os.WriteFile(ours, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command("dcmdump", "-q", ours).CombinedOutput(); err != nil || len(b) == 0 || bytes.Contains(b, []byte("W: ")) || bytes.Contains(b, []byte("E: ")) {
				t.Errorf("dcmdump: %v\n%s", err, b)
			}
			plain := filepath.Join(dir, "plain.dcm")
			dicomtest.Run(t, "dcmdjpls", ours, plain)
			pin, _ := parseFile(t, plain)
			pb, _ := os.ReadFile(plain)
			native := pb[pin.Layout.Pixel.Value.Offset:][:pin.Layout.Pixel.Value.Length]
			if !bytes.Equal(native[:len(want)], want) {
				t.Errorf("dcmdjpls decodes other samples")
			}
			// dcmcjpls on the same input: the same fragments, or how much smaller ours are.
			native0, theirs := filepath.Join(dir, "native.dcm"), filepath.Join(dir, "theirs.dcm")
			if err := os.WriteFile(native0, src, 0o644); err != nil {
				t.Fatal(err)
			}
			dicomtest.Run(t, "dcmcjpls", native0, theirs)
			tin, _ := parseFile(t, theirs)
			if tin.SOPInstanceUID != in.SOPInstanceUID {
				t.Errorf("dcmcjpls kept SOP Instance UID %s, we %s", tin.SOPInstanceUID, in.SOPInstanceUID)
			}
			var sizeOurs, sizeTheirs int64
			for _, f := range px.Fragments {
				sizeOurs += f.Length
			}
			for _, f := range tin.Layout.Pixel.Fragments {
				sizeTheirs += f.Length
			}
			t.Logf("fragments: ours %d bytes, dcmcjpls %d (%+.2f%%)", sizeOurs, sizeTheirs, 100*float64(sizeOurs-sizeTheirs)/float64(sizeTheirs))
			if c.sameBytesAsDCMTK {
				tb, _ := os.ReadFile(theirs)
				for i, f := range tin.Layout.Pixel.Fragments {
					o := px.Fragments[i]
					if !bytes.Equal(jlsNormal(tb[f.Offset:][:f.Length]), jlsNormal(out.Bytes()[o.Offset:][:o.Length])) {
						t.Errorf("fragment %d differs from dcmcjpls's", i+1)
					}
				}
			} else if float64(sizeOurs) > 1.02*float64(sizeTheirs) {
				t.Errorf("ours are more than 2%% larger")
			}
		})
	}
}

// jlsNormal drops what dcmcjpls writes and TranscodeJPEGLS need not: an LSE segment after the
// frame header (dcmcjpls repeats the default parameters above 8 bits) and the fill byte before
// EOI that makes a stream even.
func jlsNormal(b []byte) []byte {
	b = bytes.Clone(b)
	if len(b) > 4 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF && b[3] == 0xF7 {
		sof := 4 + int(b[4])<<8 | int(b[5])
		if sof+4 < len(b) && b[sof] == 0xFF && b[sof+1] == 0xF8 {
			b = append(b[:sof], b[sof+2+(int(b[sof+2])<<8|int(b[sof+3])):]...)
		}
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(b, []byte{0xFF, 0xFF, 0xD9}), []byte{0xFF, 0xD9})
}
