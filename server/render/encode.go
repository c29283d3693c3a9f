package render

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"strings"
	"sync"
)

// ErrMediaType is returned by Encode for a media type it cannot write.
var ErrMediaType = errors.New("unsupported rendered media type")

// DefaultQuality is the JPEG quality when Encode is given 0.
const DefaultQuality = 90

var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

type pngPool struct{ p sync.Pool }

func (p *pngPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *pngPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

var grayPalette = func() color.Palette {
	p := make(color.Palette, 256)
	for i := range p {
		p[i] = color.Gray{Y: uint8(i)}
	}
	return p
}()

// Encode writes img as image/png (fastest compression), image/jpeg (quality 1..100, 90 when
// 0; out of range values are clamped) or image/gif. Media type parameters are ignored.
func Encode(w io.Writer, img image.Image, mediaType string, quality int) error {
	mt, _, err := mime.ParseMediaType(mediaType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(mediaType))
	}
	switch mt {
	case "image/png":
		switch img.(type) {
		case *image.Gray, *image.RGBA, *image.NRGBA:
			return encodePNG(w, img)
		}
		return pngEncoder.Encode(w, img)
	case "image/jpeg", "image/jpg":
		if quality == 0 {
			quality = DefaultQuality
		}
		quality = min(max(quality, 1), 100)
		return jpeg.Encode(w, img, &jpeg.Options{Quality: quality})
	case "image/gif":
		if g, ok := img.(*image.Gray); ok {
			// Exact: a grey palette, the grey values as indexes.
			p := &image.Paletted{Pix: g.Pix, Stride: g.Stride, Rect: g.Rect, Palette: grayPalette}
			return gif.Encode(w, p, nil)
		}
		return gif.Encode(w, img, nil)
	}
	return fmt.Errorf("%w: %q", ErrMediaType, mediaType)
}
