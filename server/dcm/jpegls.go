package dcm

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/render/jpegls"
)

// JPEGLSLossless is the transfer syntax TranscodeJPEGLS writes (PS3.5 A.4.3).
const JPEGLSLossless = "1.2.840.10008.1.2.4.80"

// TranscodeJPEGLS writes a Part 10 file with native pixel data (implicit or explicit VR little
// endian) to w as JPEG-LS Lossless (1.2.840.10008.1.2.4.80), as the station does before
// uploading: each frame compressed by render/jpegls into one fragment, a Basic Offset Table,
// the SOP Instance UID kept (the pixels are unchanged), Lossy Image Compression untouched.
// The codec package knows no DICOM; the rules of PS3.5 8.2.3 and A.4.3 are here:
//   - Photometric Interpretation MONOCHROME1, MONOCHROME2, PALETTE COLOR, RGB or YBR_FULL,
//     unchanged (YBR_FULL_422 and the other subsampled or lossy forms are refused);
//   - color is coded line interleaved (dcmcjpls's default) and Planar Configuration becomes 0;
//   - samples are coded with precision Bits Stored, at least 8 (High Bit must be one less);
//     bits above it are not pixel data (PS3.5 8.1.1) and are dropped, so signed values
//     come back without their sign extension, as from any JPEG. dcmcjpls codes with precision
//     Bits Allocated, 3-4% larger for 12-bit CT; DCMTK 3.6 decodes no precision below 8;
//   - an odd-length stream gets a fill byte before its EOI marker, as dcmcjpls writes it.
func TranscodeJPEGLS(w io.Writer, src io.ReaderAt, size int64) error {
	in, err := Parse(src, size)
	if err != nil {
		return err
	}
	if in.TransferSyntax != ImplicitVRLittleEndian && in.TransferSyntax != ExplicitVRLittleEndian {
		return fmt.Errorf("JPEG-LS: pixel data stored as %s is not compressed (little endian native only)", in.TransferSyntax)
	}
	px := in.Layout.Pixel
	if px == nil || px.Encapsulated {
		return fmt.Errorf("JPEG-LS: no native Pixel Data")
	}
	g, err := jpeglsGeometry(in)
	if err != nil {
		return err
	}
	frames, err := in.Frames(src)
	if err != nil {
		return err
	}
	out := &EncapsulatedPixels{TransferSyntaxUID: JPEGLSLossless}
	if g.spp > 1 {
		out.Attributes = append(out.Attributes, USAttribute(tag.PlanarConfiguration, 0))
	}
	f := jpegls.Frame{Width: g.cols, Height: g.rows, Components: g.spp, BitsPerSample: max(g.bs, 8), Interleave: jpegls.InterleaveLine}
	var native []byte
	for i, fr := range frames {
		if len(fr) != 1 || fr[0].Length != g.frameLength() {
			return fmt.Errorf("JPEG-LS: frame %d is not %d bytes of native pixel data", i+1, g.frameLength())
		}
		if int64(cap(native)) < fr[0].Length {
			native = make([]byte, fr[0].Length)
		}
		native = native[:fr[0].Length]
		if _, err := src.ReadAt(native, fr[0].Offset); err != nil {
			return fmt.Errorf("JPEG-LS: reading frame %d: %w", i+1, err)
		}
		samples := g.samples(native)
		stream, err := jpegls.AppendEncode(nil, samples, f, jpegls.Options{})
		if err != nil {
			return fmt.Errorf("JPEG-LS: frame %d: %w", i+1, err)
		}
		if n := len(stream); n%2 == 1 {
			stream = append(stream[:n-2], 0xFF, 0xFF, 0xD9)
		}
		out.Frames = append(out.Frames, stream)
	}
	return TranscodeEncapsulated(w, src, size, out)
}

// jpeglsFrame is the pixel description of an instance to compress.
type jpeglsFrame struct {
	rows, cols, spp, ba, bs int
	planar                  bool
}

func (g jpeglsFrame) frameLength() int64 {
	return int64(g.rows) * int64(g.cols) * int64(g.spp) * int64(g.ba/8)
}

func jpeglsGeometry(in *Instance) (jpeglsFrame, error) {
	var g jpeglsFrame
	g.rows, _ = in.Int(tag.Rows)
	g.cols, _ = in.Int(tag.Columns)
	g.ba, _ = in.Int(tag.BitsAllocated)
	g.bs, _ = in.Int(tag.BitsStored)
	hb, _ := in.Int(tag.HighBit)
	g.spp = 1
	if n, ok := in.Int(tag.SamplesPerPixel); ok {
		g.spp = n
	}
	pc, _ := in.Int(tag.PlanarConfiguration)
	g.planar = pc == 1
	pi := in.String(tag.PhotometricInterpretation)
	if g.rows < 1 || g.rows > 0xFFFF || g.cols < 1 || g.cols > 0xFFFF {
		return g, fmt.Errorf("JPEG-LS: %d rows, %d columns", g.rows, g.cols)
	}
	if g.ba != 8 && g.ba != 16 {
		return g, fmt.Errorf("JPEG-LS: Bits Allocated %d (8 or 16 only)", g.ba)
	}
	if g.bs < 2 || g.bs > g.ba || hb != g.bs-1 {
		return g, fmt.Errorf("JPEG-LS: Bits Stored %d, High Bit %d with Bits Allocated %d", g.bs, hb, g.ba)
	}
	switch {
	case g.spp == 1 && (pi == "MONOCHROME1" || pi == "MONOCHROME2" || pi == "PALETTE COLOR"):
	case g.spp == 3 && (pi == "RGB" || pi == "YBR_FULL"):
	default:
		return g, fmt.Errorf("JPEG-LS: Photometric Interpretation %q with %d samples per pixel is not compressed (PS3.5 8.2.3)", pi, g.spp)
	}
	return g, nil
}

// samples turns a native frame into what the encoder takes: interleaved by pixel, the bits
// above Bits Stored cleared.
func (g jpeglsFrame) samples(native []byte) []byte {
	if g.planar && g.spp > 1 {
		n := g.rows * g.cols
		bps := g.ba / 8
		il := make([]byte, len(native))
		for c := range g.spp {
			plane := native[c*n*bps : (c+1)*n*bps]
			for i := range n {
				copy(il[(i*g.spp+c)*bps:(i*g.spp+c+1)*bps], plane[i*bps:(i+1)*bps])
			}
		}
		native = il
	}
	if g.bs == g.ba {
		return native
	}
	mask := uint16(1)<<g.bs - 1
	if g.ba == 8 {
		for i := range native {
			native[i] &= byte(mask)
		}
		return native
	}
	for i := 0; i+1 < len(native); i += 2 {
		binary.LittleEndian.PutUint16(native[i:], binary.LittleEndian.Uint16(native[i:])&mask)
	}
	return native
}
