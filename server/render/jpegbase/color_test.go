package jpegbase

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"testing"
)

// TestColorGuess: with no Photometric Interpretation to go by, three components are YCbCr or
// RGB as libjpeg decides from the markers: an Adobe marker with transform 0, or component IDs
// 'R', 'G', 'B', mean RGB; a JFIF marker, or IDs 1, 2, 3, mean YCbCr.
func TestColorGuess(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			img.Set(x, y, color.RGBA{uint8(x * 15), uint8(y * 15), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	plain := buf.Bytes() // component IDs 1, 2, 3 and no JFIF or Adobe marker
	adobe := func(transform byte) []byte {
		seg := []byte{0xFF, 0xEE, 0, 14, 'A', 'd', 'o', 'b', 'e', 0, 100, 0, 0, 0, 0, transform}
		return append(append([]byte{0xFF, 0xD8}, seg...), plain[2:]...)
	}
	rgbIDs := bytes.Clone(plain)
	sof := bytes.Index(rgbIDs, []byte{0xFF, 0xC0})
	sos := bytes.Index(rgbIDs, []byte{0xFF, 0xDA})
	for i, id := range []byte{'R', 'G', 'B'} {
		rgbIDs[sof+2+8+3*i] = id // SOF0: length, precision, height, width, count, then 3 bytes per component
		rgbIDs[sos+2+3+2*i] = id // SOS: length, count, then the components it names, 2 bytes each
	}
	same := func(a, b image.Image) bool { return bytes.Equal(a.(*image.RGBA).Pix, b.(*image.RGBA).Pix) }
	for _, c := range []struct {
		name string
		data []byte
		rgb  bool
	}{
		{"IDs 1, 2, 3", plain, false},
		{"Adobe transform 1", adobe(1), false},
		{"Adobe transform 0", adobe(0), true},
		{"IDs R, G, B", rgbIDs, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			guess, err := DecodeColor(c.data, ColorGuess)
			if err != nil {
				t.Fatal(err)
			}
			asRGB, _ := DecodeColor(c.data, ColorRGB)
			asYCbCr, _ := DecodeColor(c.data, ColorYCbCr)
			if same(asRGB, asYCbCr) {
				t.Fatal("converting changed nothing: the test cannot tell")
			}
			if got := same(guess, asRGB); got != c.rgb {
				t.Fatalf("taken as RGB: %v, want %v", got, c.rgb)
			}
			if !c.rgb && !same(guess, asYCbCr) {
				t.Fatal("neither RGB nor YCbCr")
			}
		})
	}
}
