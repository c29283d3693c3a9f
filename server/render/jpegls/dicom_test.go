package jpegls

// DICOM Part 10 files for the tests, written with the shared test writer and read back with
// Sanping's own parser: enough to hand an image to DCMTK and get the pixel data back.

import (
	"bytes"
	"fmt"
	"os"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

const tsJPEGLSLossless = "1.2.840.10008.1.2.4.80"

// testImage is a synthetic image in DICOM terms.
type testImage struct {
	name                string
	width, height, spp  int
	bitsAllocated, bits int    // bits = BitsStored
	pix                 []byte // native little endian samples, interleaved
	jls                 []byte // if set, stored encapsulated as JPEG-LS Lossless instead of pix
}

func (im *testImage) frame() Frame {
	return Frame{Width: im.width, Height: im.height, Components: im.spp, BitsPerSample: im.bits}
}

func writePart10(path string, im *testImage) error {
	uid := "1.2.826.0.1.3680043.9.7433.98." + fmt.Sprint(len(im.name)*7919+im.width*31+im.height)
	elems := dicomtest.BaseElems(dicomtest.UIDs{Study: uid + ".1", Series: uid + ".2", SOP: uid + ".3"}, dicomtest.SOPClassSC)
	elems = append(elems, dicomtest.US(0x00280002, uint16(im.spp)))
	if im.spp == 1 {
		elems = append(elems, dicomtest.Str(0x00280004, "CS", "MONOCHROME2"))
	} else {
		elems = append(elems, dicomtest.Str(0x00280004, "CS", "RGB"), dicomtest.US(0x00280006, 0))
	}
	elems = append(elems,
		dicomtest.US(0x00280010, uint16(im.height)), dicomtest.US(0x00280011, uint16(im.width)),
		dicomtest.US(0x00280100, uint16(im.bitsAllocated)), dicomtest.US(0x00280101, uint16(im.bits)),
		dicomtest.US(0x00280102, uint16(im.bits-1)), dicomtest.US(0x00280103, 0))
	ts := dicomtest.TSExplicitLE
	switch {
	case im.jls != nil:
		ts = tsJPEGLSLossless
		frag := im.jls
		if len(frag)%2 == 1 {
			frag = append(frag[:len(frag):len(frag)], 0)
		}
		elems = append(elems, dicomtest.Encapsulated(nil, frag))
	case im.bitsAllocated == 8:
		elems = append(elems, dicomtest.RawE(0x7FE00010, "OB", im.pix))
	default:
		elems = append(elems, dicomtest.RawE(0x7FE00010, "OW", im.pix))
	}
	return os.WriteFile(path, dicomtest.File{TS: ts, Elems: elems}.Bytes(), 0o644)
}

// pixelData is what readPixelData finds.
type pixelData struct {
	transferSyntax string
	native         []byte   // defined-length pixel data
	fragments      [][]byte // encapsulated pixel data, without the Basic Offset Table
}

// readPixelData parses a Part 10 file with Sanping's parser and returns its pixel data.
func readPixelData(path string) (*pixelData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	in, err := dcm.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	px := in.Layout.Pixel
	if px == nil {
		return nil, fmt.Errorf("%s: no pixel data", path)
	}
	pd := &pixelData{transferSyntax: in.TransferSyntax}
	if !px.Encapsulated {
		pd.native = b[px.Value.Offset : px.Value.Offset+px.Value.Length]
		return pd, nil
	}
	for _, f := range px.Fragments {
		pd.fragments = append(pd.fragments, b[f.Offset:f.Offset+f.Length])
	}
	return pd, nil
}

// stream concatenates the fragments of the single frame.
func (pd *pixelData) stream() []byte {
	var out []byte
	for _, f := range pd.fragments {
		out = append(out, f...)
	}
	return out
}
