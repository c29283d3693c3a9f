package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"strings"

	"github.com/sanping/sanping/server/render/jpegbase"
	"github.com/sanping/sanping/server/render/jpegll"
	"github.com/sanping/sanping/server/render/jpegls"
	"github.com/sanping/sanping/server/render/rle"
)

// Transfer syntaxes that DecodeFrame turns into native pixel data (PS3.5 A, PS3.6 Table A-1).
const (
	tsImplicitLE   = "1.2.840.10008.1.2"
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsDeflated     = "1.2.840.10008.1.2.1.99"
	tsExplicitBE   = "1.2.840.10008.1.2.2"
	tsJPEGBaseline = "1.2.840.10008.1.2.4.50"
	tsJPEGExtended = "1.2.840.10008.1.2.4.51"
	tsJPEGLossless = "1.2.840.10008.1.2.4.57"
	tsJPEGLossSV1  = "1.2.840.10008.1.2.4.70"
	tsJPEGLS       = "1.2.840.10008.1.2.4.80"
	tsJPEGLSNear   = "1.2.840.10008.1.2.4.81"
	tsRLE          = "1.2.840.10008.1.2.5"
)

// Renders reports whether frames stored in a transfer syntax can be rendered by the server.
func Renders(ts string) bool {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsDeflated, tsExplicitBE, tsJPEGBaseline, tsJPEGExtended, tsJPEGLossless, tsJPEGLossSV1, tsJPEGLS, tsJPEGLSNear, tsRLE:
		return true
	}
	return false
}

// DecodeFrame turns one stored frame into native pixel data (little endian, Planar
// Configuration as the returned attributes say) for Render. pixelVR is the stored Pixel Data VR
// (big endian OW data is word-swapped). Syntaxes the server cannot decode (JPEG 2000, HTJ2K:
// browsers decode those from the frames resource) fail with ErrUnsupported.
func DecodeFrame(frame []byte, ts, pixelVR string, a *Attributes) ([]byte, *Attributes, error) {
	switch ts {
	case tsImplicitLE, tsExplicitLE, tsDeflated:
		return frame, a, nil
	case tsExplicitBE:
		if pixelVR != "OW" {
			return frame, a, nil
		}
		width := 2
		if a.BitsAllocated == 32 {
			width = 4
		}
		out := make([]byte, len(frame)/width*width)
		for i := 0; i+width <= len(frame); i += width {
			for k := range width {
				out[i+k] = frame[i+width-1-k]
			}
		}
		return out, a, nil
	case tsRLE:
		out, err := rle.Decode(frame, a.Rows, a.Columns, a.SamplesPerPixel, a.BitsAllocated)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: RLE frame: %v", ErrUnsupported, err)
		}
		b := *a
		b.PlanarConfiguration = 0 // the decoder interleaves samples
		return out, &b, nil
	case tsJPEGLossless, tsJPEGLossSV1:
		img, err := jpegll.Decode(frame)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: lossless JPEG frame: %v", ErrUnsupported, err)
		}
		if img.Width != a.Columns || img.Height != a.Rows || img.Components != a.SamplesPerPixel {
			return nil, nil, fmt.Errorf("%w: lossless JPEG frame is %dx%dx%d, the data set says %dx%dx%d", ErrUnsupported,
				img.Width, img.Height, img.Components, a.Columns, a.Rows, a.SamplesPerPixel)
		}
		b := *a
		b.PlanarConfiguration = 0
		if a.BitsAllocated <= 8 {
			out := make([]byte, len(img.Pix))
			for i, v := range img.Pix {
				out[i] = byte(v)
			}
			return out, &b, nil
		}
		out := make([]byte, 2*len(img.Pix))
		for i, v := range img.Pix {
			binary.LittleEndian.PutUint16(out[2*i:], v)
		}
		b.BitsAllocated = 16
		return out, &b, nil
	case tsJPEGLS, tsJPEGLSNear:
		return nativeFromJPEGLS(frame, a)
	case tsJPEGBaseline, tsJPEGExtended:
		// jpegbase decodes exactly as libjpeg (and so DCMTK) does; image/jpeg, whose inverse DCT
		// and chroma upsampling differ by up to a few levels, reads what jpegbase does not.
		// The Photometric Interpretation decides, as in DCMTK's default ("convert if YCbCr
		// photometric interpretation"); without one, the markers, as in libjpeg.
		color := jpegbase.ColorGuess
		switch {
		case a.Photometric == "RGB":
			color = jpegbase.ColorRGB
		case strings.HasPrefix(a.Photometric, "YBR"):
			color = jpegbase.ColorYCbCr
		}
		img, err := jpegbase.DecodeColor(frame, color)
		if errors.Is(err, jpegbase.ErrUnsupported) {
			img, err = jpeg.Decode(bytes.NewReader(frame))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: JPEG frame (8- and 12-bit sequential Huffman JPEG only): %v", ErrUnsupported, err)
		}
		if m, ok := img.(*jpegbase.Image12); ok {
			return nativeFromImage12(m, a)
		}
		return nativeFromImage(img, a)
	}
	return nil, nil, fmt.Errorf("%w: frames stored as %s are not rendered by the server; the frames resource serves them as stored for the viewer to decode", ErrUnsupported, ts)
}

// nativeFromJPEGLS decodes a JPEG-LS frame: samples as coded (dcmcjpls codes 12-bit data in
// 16-bit words with precision 16, two's complement bits included), one byte each when Bits
// Allocated is 8 and 16-bit words otherwise, interleaved by pixel.
func nativeFromJPEGLS(frame []byte, a *Attributes) ([]byte, *Attributes, error) {
	f, pix, err := jpegls.Decode(frame)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: JPEG-LS frame: %v", ErrUnsupported, err)
	}
	if f.Width != a.Columns || f.Height != a.Rows || f.Components != a.SamplesPerPixel {
		return nil, nil, fmt.Errorf("%w: JPEG-LS frame is %dx%dx%d, the data set says %dx%dx%d", ErrUnsupported,
			f.Width, f.Height, f.Components, a.Columns, a.Rows, a.SamplesPerPixel)
	}
	b := *a
	b.PlanarConfiguration = 0 // the decoder interleaves samples
	switch {
	case a.BitsAllocated <= 8 && f.BitsPerSample <= 8:
		return pix, &b, nil
	case a.BitsAllocated <= 8:
		return nil, nil, fmt.Errorf("%w: %d-bit JPEG-LS samples, Bits Allocated %d", ErrUnsupported, f.BitsPerSample, a.BitsAllocated)
	case f.BitsPerSample <= 8:
		out := make([]byte, 2*len(pix))
		for i, v := range pix {
			out[2*i] = v
		}
		pix = out
	}
	b.BitsAllocated = 16
	return pix, &b, nil
}

// nativeFromImage12 turns a decoded 12-bit JPEG into 16-bit words holding the samples as
// decoded, as dcmdjpeg writes them: signed data (Pixel Representation 1) is not sign-extended,
// the pipeline takes the sign from Bits Stored.
func nativeFromImage12(m *jpegbase.Image12, a *Attributes) ([]byte, *Attributes, error) {
	if m.Width != a.Columns || m.Height != a.Rows {
		return nil, nil, fmt.Errorf("%w: JPEG frame is %dx%d, the data set says %dx%d", ErrUnsupported, m.Width, m.Height, a.Columns, a.Rows)
	}
	b := *a
	b.BitsAllocated = 16
	if b.BitsStored < 1 || b.BitsStored > 16 {
		b.BitsStored = 12
	}
	b.HighBit = b.BitsStored - 1
	b.PlanarConfiguration = 0
	b.SamplesPerPixel = m.Components
	if m.Components == 3 {
		b.Photometric = "RGB"
	}
	out := make([]byte, 2*len(m.Pix))
	for i, v := range m.Pix {
		binary.LittleEndian.PutUint16(out[2*i:], v)
	}
	return out, &b, nil
}

// nativeFromImage turns a decoded 8-bit JPEG into native pixel data: grey for one component,
// RGB (the decoder has undone any YCbCr transform) for three.
func nativeFromImage(img image.Image, a *Attributes) ([]byte, *Attributes, error) {
	r := img.Bounds()
	if r.Dx() != a.Columns || r.Dy() != a.Rows {
		return nil, nil, fmt.Errorf("%w: JPEG frame is %dx%d, the data set says %dx%d", ErrUnsupported, r.Dx(), r.Dy(), a.Columns, a.Rows)
	}
	b := *a
	b.BitsAllocated, b.BitsStored, b.HighBit, b.PixelRepresentation = 8, 8, 7, 0
	b.PlanarConfiguration = 0
	if g, ok := img.(*image.Gray); ok {
		out := make([]byte, 0, r.Dx()*r.Dy())
		for y := r.Min.Y; y < r.Max.Y; y++ {
			out = append(out, g.Pix[(y-r.Min.Y)*g.Stride:(y-r.Min.Y)*g.Stride+r.Dx()]...)
		}
		b.SamplesPerPixel = 1
		return out, &b, nil
	}
	b.SamplesPerPixel = 3
	b.Photometric = "RGB"
	out := make([]byte, 0, 3*r.Dx()*r.Dy())
	if m, ok := img.(*image.RGBA); ok {
		for y := 0; y < r.Dy(); y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+4*r.Dx()]
			for x := 0; x < r.Dx(); x++ {
				out = append(out, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
		return out, &b, nil
	}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			out = append(out, c.R, c.G, c.B)
		}
	}
	return out, &b, nil
}
