package main

import (
	"encoding/binary"
	"image"
	"image/color"
	"testing"
)

func TestImgRuleSize(t *testing.T) {
	exact := imgRule{cols: 2140, rows: 1760}
	vp := imgRule{cols: 2140, rows: 1760, vw: 1024, vh: 1024}
	for _, c := range []struct {
		r    imgRule
		w, h int
		ok   bool
	}{
		{exact, 2140, 1760, true},
		{exact, 1760, 2140, false},
		{exact, 1024, 842, false},
		{vp, 1024, 842, true},
		{vp, 1024, 841, true},
		{vp, 1024, 839, false},
		{vp, 1024, 845, false},
		{vp, 512, 421, true},
		{vp, 1025, 843, false},
		{vp, 1024, 1024, true}, // letterboxed; its bands are checked on decode
		{vp, 842, 1024, false},
		{vp, 0, 0, false},
	} {
		err := c.r.checkSize(c.w, c.h)
		if (err == nil) != c.ok {
			t.Errorf("%+v %dx%d: err %v, want ok=%v", c.r, c.w, c.h, err, c.ok)
		}
	}
}

func TestImgRuleLetterbox(t *testing.T) {
	r := imgRule{cols: 2140, rows: 1760, vw: 1024, vh: 1024}
	fw, fh, ox, oy := r.fitted()
	if fw != 1024 || fh != 842 || ox != 0 || oy != 91 {
		t.Fatalf("fitted = %d %d %d %d", fw, fh, ox, oy)
	}
	img := image.NewGray(image.Rect(0, 0, 1024, 1024))
	for y := oy; y < oy+fh; y++ {
		for x := 0; x < 1024; x++ {
			img.SetGray(x, y, color.Gray{200})
		}
	}
	if err := r.checkImage(img); err != nil {
		t.Errorf("letterboxed: %v", err)
	}
	img.SetGray(512, 10, color.Gray{200}) // content in the top band: stretched
	if err := r.checkImage(img); err == nil {
		t.Errorf("stretched image accepted")
	}
	if err := r.checkImage(image.NewGray(image.Rect(0, 0, 1024, 842))); err != nil {
		t.Errorf("fitted: %v", err)
	}
}

func TestMakeCR(t *testing.T) {
	const rows, cols = 176, 214
	px := makeChestPixels(rows, cols, 4000)
	if len(px) != rows*cols*2 {
		t.Fatalf("%d bytes", len(px))
	}
	lo, hi := 65535, 0
	for i := 0; i < len(px); i += 2 {
		v := int(binary.LittleEndian.Uint16(px[i:]))
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi > 4095 || hi-lo < 1500 {
		t.Errorf("pixel range %d..%d, want a wide range within 12 bits", lo, hi)
	}
	// Air (the corner) is stored high, the spine (centre) low: MONOCHROME1.
	at := func(y, x int) int { return int(binary.LittleEndian.Uint16(px[2*(y*cols+x):])) }
	if at(2, 2) < 3400 || at(rows/2, cols/2) > 2000 {
		t.Errorf("corner %d, centre %d", at(2, 2), at(rows/2, cols/2))
	}
	data := makeCR(sliceSpec{studyUID: "1.2.3", seriesUID: "1.2.3.4", sopUID: "1.2.3.4.5", rows: rows, cols: cols, instanceNum: 1, seriesNumber: 1, accession: "A", studyID: "1", seed: 4000})
	if string(data[128:132]) != "DICM" || len(data) < len(px)+500 {
		t.Errorf("not a Part 10 file of the expected size: %d bytes", len(data))
	}
}
