package render

import (
	"image"
	"image/draw"
	"math"
)

// Resize fits img into w x h keeping the aspect ratio: the result is as large as fits in the
// box (a w or h of 0 or less leaves that side free). It filters with a Catmull-Rom kernel
// widened by the reduction factor when shrinking, so downscaling averages every source pixel
// (no aliasing). It returns img itself when the size does not change. The result is
// *image.Gray for *image.Gray input, else *image.RGBA (or *image.NRGBA for *image.NRGBA).
func Resize(img image.Image, w, h int) image.Image {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if sw <= 0 || sh <= 0 || (w <= 0 && h <= 0) {
		return img
	}
	s := math.Inf(1)
	if w > 0 {
		s = float64(w) / float64(sw)
	}
	if h > 0 {
		s = min(s, float64(h)/float64(sh))
	}
	dw := max(1, int(math.Round(float64(sw)*s)))
	dh := max(1, int(math.Round(float64(sh)*s)))
	if w > 0 {
		dw = min(dw, w)
	}
	if h > 0 {
		dh = min(dh, h)
	}
	if dw == sw && dh == sh {
		return img
	}
	switch src := img.(type) {
	case *image.Gray:
		dst := image.NewGray(image.Rect(0, 0, dw, dh))
		resample(src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, sw, sh, 1, dst.Pix, dst.Stride, dw, dh)
		return dst
	case *image.RGBA:
		dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
		resample(src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, sw, sh, 4, dst.Pix, dst.Stride, dw, dh)
		return dst
	case *image.NRGBA:
		dst := image.NewNRGBA(image.Rect(0, 0, dw, dh))
		resample(src.Pix[src.PixOffset(b.Min.X, b.Min.Y):], src.Stride, sw, sh, 4, dst.Pix, dst.Stride, dw, dh)
		return dst
	}
	rgba := image.NewRGBA(image.Rect(0, 0, sw, sh))
	draw.Draw(rgba, rgba.Bounds(), img, b.Min, draw.Src)
	return Resize(rgba, w, h)
}

// catmullRom is the Catmull-Rom cubic (B=0, C=1/2).
func catmullRom(x float64) float64 {
	x = math.Abs(x)
	switch {
	case x < 1:
		return (1.5*x-2.5)*x*x + 1
	case x < 2:
		return ((-0.5*x+2.5)*x-4)*x + 2
	}
	return 0
}

// weightBits is the fixed-point precision of filter weights.
const weightBits = 14

// contrib is the contribution of source pixels start, start+1, ... to one output pixel.
type contrib struct {
	start int
	w     []int32
}

// weights computes the filter taps mapping n source pixels onto m output pixels, with edge
// pixels repeated beyond the borders and weights summing to exactly 1<<weightBits.
func weights(n, m int) []contrib {
	scale := float64(m) / float64(n)
	stretch := max(1, 1/scale)
	support := 2 * stretch
	out := make([]contrib, m)
	var fw []float64
	for j := range out {
		center := (float64(j)+0.5)/scale - 0.5
		lo, hi := int(math.Ceil(center-support)), int(math.Floor(center+support))
		first, last := max(lo, 0), min(hi, n-1)
		if first > last { // cannot happen for sane sizes; keep the nearest pixel
			first = min(max(int(math.Round(center)), 0), n-1)
			last = first
		}
		fw = fw[:0]
		for range last - first + 1 {
			fw = append(fw, 0)
		}
		var sum float64
		for i := lo; i <= hi; i++ {
			wt := catmullRom((float64(i) - center) / stretch)
			fw[min(max(i, first), last)-first] += wt
			sum += wt
		}
		iw := make([]int32, len(fw))
		var total int32
		best := 0
		for k, f := range fw {
			iw[k] = int32(math.Round(f / sum * (1 << weightBits)))
			total += iw[k]
			if iw[k] > iw[best] {
				best = k
			}
		}
		iw[best] += 1<<weightBits - total
		out[j] = contrib{start: first, w: iw}
	}
	return out
}

// resample scales an 8-bit image of ch interleaved channels from sw x sh to dw x dh: a
// vertical pass into 16-bit intermediates (4 extra bits of precision), then a horizontal pass.
func resample(src []uint8, sstride, sw, sh, ch int, dst []uint8, dstride, dw, dh int) {
	xw, yw := weights(sw, dw), weights(sh, dh)
	srcLen, dstLen := sw*ch, dw*ch
	tmp := make([]int16, dh*srcLen)
	split(dh, parts(dh*sw), 1, func(_, r0, r1 int) {
		acc := make([]int32, srcLen)
		for y := r0; y < r1; y++ {
			clear(acc)
			c := yw[y]
			for k, wt := range c.w {
				srow := src[(c.start+k)*sstride : (c.start+k)*sstride+srcLen]
				acc := acc[:len(srow)]
				for i, v := range srow {
					acc[i] += int32(v) * wt
				}
			}
			trow := tmp[y*srcLen : (y+1)*srcLen]
			trow = trow[:len(acc)]
			for i, v := range acc {
				trow[i] = int16((v + 1<<(weightBits-5)) >> (weightBits - 4))
			}
		}
	})
	const shift = weightBits + 4
	clamp := func(v int32) uint8 {
		v = (v + 1<<(shift-1)) >> shift
		switch {
		case v < 0:
			return 0
		case v > 255:
			return 255
		}
		return uint8(v)
	}
	split(dh, parts(dh*dw), 1, func(_, r0, r1 int) {
		for y := r0; y < r1; y++ {
			trow := tmp[y*srcLen : (y+1)*srcLen]
			drow := dst[y*dstride : y*dstride+dstLen]
			if ch == 1 {
				drow := drow[:len(xw)]
				for x, c := range xw {
					s := trow[c.start : c.start+len(c.w)]
					w := c.w[:len(s)]
					var acc int32
					for k, v := range s {
						acc += int32(v) * w[k]
					}
					drow[x] = clamp(acc)
				}
				continue
			}
			for x, c := range xw {
				s := trow[c.start*ch : (c.start+len(c.w))*ch]
				for q := range ch {
					var acc int32
					for k, wt := range c.w {
						acc += int32(s[k*ch+q]) * wt
					}
					drow[x*ch+q] = clamp(acc)
				}
			}
		}
	})
}
