package jpegls

// DICOM Part 10 files for the tests, written with the shared test writer and read back by
// finding the Pixel Data tag: enough to hand an image to DCMTK and get the pixel data back.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/sanping/sanping/server/internal/dicomtest"
)

const (
	tsJPEGLSLossless = "1.2.840.10008.1.2.4.80"
	tsJPEGLSNear     = "1.2.840.10008.1.2.4.81"
)

// testImage is a synthetic image in DICOM terms.
type testImage struct {
	name                string
	width, height, spp  int
	bitsAllocated, bits int    // bits = BitsStored
	pix                 []byte // native little endian samples, interleaved
	jls                 []byte // if set, stored encapsulated as JPEG-LS instead of pix
	near                bool   // jls is near-lossless (1.2.840.10008.1.2.4.81)
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
		if im.near {
			ts = tsJPEGLSNear
		}
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
	native    []byte   // defined-length pixel data
	fragments [][]byte // encapsulated pixel data, without the Basic Offset Table
}

// readPixelData returns the top-level pixel data of an explicit VR little endian Part 10
// file, found by its tag (Sanping's parser, server/dcm, imports this package).
func readPixelData(path string) (*pixelData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndex(b, []byte{0xE0, 0x7F, 0x10, 0x00})
	if i < 0 || i+12 > len(b) || (string(b[i+4:i+6]) != "OB" && string(b[i+4:i+6]) != "OW") {
		return nil, fmt.Errorf("%s: no pixel data", path)
	}
	n := binary.LittleEndian.Uint32(b[i+8:])
	p := i + 12
	if n != 0xFFFFFFFF {
		if p+int(n) > len(b) {
			return nil, fmt.Errorf("%s: pixel data truncated", path)
		}
		return &pixelData{native: b[p : p+int(n)]}, nil
	}
	pd := &pixelData{fragments: [][]byte{}}
	for item := 0; p+8 <= len(b); item++ {
		g, e, l := binary.LittleEndian.Uint16(b[p:]), binary.LittleEndian.Uint16(b[p+2:]), int(binary.LittleEndian.Uint32(b[p+4:]))
		p += 8
		if g != 0xFFFE || e != 0xE000 || p+l > len(b) {
			break
		}
		if item > 0 {
			pd.fragments = append(pd.fragments, b[p:p+l])
		}
		p += l
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
