package render

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/dcm"
)

// packBits packs 0/1 values least significant bit first (PS3.5 D.1), padded to even length.
func packBits(bits []int) []byte {
	out := make([]byte, (len(bits)+15)/16*2)
	for i, b := range bits {
		out[i/8] |= byte(b&1) << (i % 8)
	}
	return out
}

// maskFrames makes frames of rows*cols bits: a pattern, all ones, all zeros, another pattern.
func maskFrames(rows, cols int) [][]int {
	n := rows * cols
	f := make([][]int, 4)
	for k := range f {
		f[k] = make([]int, n)
	}
	r := &rng{s: uint64(n) | 1}
	for i := range n {
		x, y := i%cols, i/cols
		f[0][i] = (x/2 + y) % 2
		f[1][i] = 1
		f[3][i] = int(r.next() % 2)
	}
	return f
}

// frameSpan is the bytes of 1-bit frame i (from 0) as dcm.Frames spans them.
func frameSpan(pixels []byte, i, bits int) []byte {
	return pixels[i*bits/8 : ((i+1)*bits+7)/8]
}

// TestRenderBitmap: 1-bit frames render as masks (0 black, 1 white, also in a frame of all
// ones), including frames that do not start on a byte boundary.
func TestRenderBitmap(t *testing.T) {
	for _, sz := range [][2]int{{7, 5}, {4, 4}, {3, 11}} {
		rows, cols := sz[0], sz[1]
		frames := maskFrames(rows, cols)
		var all []int
		for _, f := range frames {
			all = append(all, f...)
		}
		pixels := packBits(all)
		a := &Attributes{Rows: rows, Columns: cols, SamplesPerPixel: 1, BitsAllocated: 1, BitsStored: 1,
			Photometric: "MONOCHROME2", NumberOfFrames: len(frames)}
		for k, f := range frames {
			img, err := Render(frameSpan(pixels, k, rows*cols), a, Options{Frame: k + 1})
			if err != nil {
				t.Fatalf("%dx%d frame %d: %v", cols, rows, k+1, err)
			}
			got := grayPix(t, img, nil)
			for i, b := range f {
				if want := uint8(255 * b); got[i] != want {
					t.Fatalf("%dx%d frame %d pixel %d: %d, want %d", cols, rows, k+1, i, got[i], want)
				}
			}
		}
	}
	a := &Attributes{Rows: 3, Columns: 3, SamplesPerPixel: 1, BitsAllocated: 1, Photometric: "MONOCHROME1"}
	img, err := Render([]byte{0b1010_0101, 1}, a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(grayPix(t, img, nil)), "[0 255 0 255 255 0 255 0 0]"; got != want {
		t.Errorf("MONOCHROME1 = %s, want %s", got, want)
	}
	if _, err := Render([]byte{0xFF}, a, Options{}); err == nil {
		t.Error("Render of 8 bits for 9 pixels: no error")
	}
}

// TestBitmapDCMTK compares 1-bit frames, located by dcm.Frames, with dcmj2pnm +Wm's
// rendering of each frame (its min-max window shows a mask as 0 and 255, also a frame of all
// ones; without a window dcmj2pnm shows 1 as 128).
func TestBitmapDCMTK(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmj2pnm", "dcm2json")
	for _, sz := range [][2]int{{7, 5}, {16, 16}, {3, 11}} {
		rows, cols := sz[0], sz[1]
		t.Run(fmt.Sprintf("%dx%d", cols, rows), func(t *testing.T) {
			frames := maskFrames(rows, cols)
			var all []int
			for _, f := range frames {
				all = append(all, f...)
			}
			pixels := packBits(all)
			pm := pixelModule{rows: rows, cols: cols, ba: 1, bs: 1, hb: 0, pi: "MONOCHROME2", frames: len(frames)}
			data := part10(pm, pixels)
			file := filepath.Join(t.TempDir(), "in.dcm")
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			// The frames as the server finds them in the stored file.
			in, err := dcm.Parse(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			spans, err := in.Frames(bytes.NewReader(data))
			if err != nil || len(spans) != len(frames) {
				t.Fatalf("dcm.Frames: %d frames, %v", len(spans), err)
			}
			a, err := AttributesFromJSON(dcm2json(t, file), nil)
			if err != nil {
				t.Fatal(err)
			}
			for k := range frames {
				w, h, ch, want := dcmj2pnm(t, file, "+Wm", "+F", fmt.Sprint(k+1))
				var raw []byte
				for _, sp := range spans[k] {
					b, err := dcm.ReadSpan(bytes.NewReader(data), in.Layout, sp)
					if err != nil {
						t.Fatal(err)
					}
					raw = append(raw, b...)
				}
				img, err := Render(raw, a, Options{Frame: k + 1})
				if err != nil {
					t.Fatalf("frame %d: %v", k+1, err)
				}
				if maxd, _ := diffStats(t, img, w, h, ch, want); maxd != 0 {
					t.Errorf("frame %d: max difference %d from dcmj2pnm", k+1, maxd)
				}
			}
		})
	}
}
