package jpegbase

// jidctint.c (libjpeg 6b) jpeg_idct_islow, transcribed: CONST_BITS 13, and PASS1_BITS 2
// when built for 8-bit samples, 1 for 12-bit ones (BITS_IN_JSAMPLE 12, as in DCMTK's libijg12).
// This part of Sanping is based in part on the work of the Independent JPEG Group.
const (
	constBits = 13

	fix0_298631336 = 2446
	fix0_390180644 = 3196
	fix0_541196100 = 4433
	fix0_765366865 = 6270
	fix0_899976223 = 7373
	fix1_175875602 = 9633
	fix1_501321110 = 12299
	fix1_847759065 = 15137
	fix1_961570560 = 16069
	fix2_053119869 = 16819
	fix2_562915447 = 20995
	fix3_072711026 = 25172
)

func descale(x int64, n uint) int64 { return (x + 1<<(n-1)) >> n }

// sample is a decoded sample: uint8 for 8-bit precision, uint16 for 12-bit.
type sample interface{ uint8 | uint16 }

// idctParams are what jidctint.c takes from the sample size: PASS1_BITS and the range limit
// table (libjpeg's idct_sample_range_limit, indexed by value & RANGE_MASK: values taken modulo
// 4*(MAXJSAMPLE+1) as signed numbers, offset by CENTERJSAMPLE and clamped to 0..MAXJSAMPLE).
type idctParams[T sample] struct {
	pass1Bits uint
	// wide: dequantized coefficients are INT32 (long) products, as jdct.h has them for
	// 12-bit samples; for 8-bit ones they are int products (MULTIPLIER), wrapping at 32 bits.
	wide       bool
	rangeLimit []T // len 4*(MAXJSAMPLE+1), a power of two
}

func newIDCTParams[T sample](pass1Bits uint, maxSample int) *idctParams[T] {
	n := 4 * (maxSample + 1)
	p := &idctParams[T]{pass1Bits: pass1Bits, wide: maxSample > 255, rangeLimit: make([]T, n)}
	for i := range p.rangeLimit {
		s := i
		if s >= n/2 {
			s -= n
		}
		p.rangeLimit[i] = T(min(max(s+(maxSample+1)/2, 0), maxSample))
	}
	return p
}

var (
	idct8  = newIDCTParams[uint8](2, 255)
	idct12 = newIDCTParams[uint16](1, 4095)
)

// idctIslow dequantizes coef with quant (natural order) and writes the 8x8 result to out
// with the given stride.
func idctIslow[T sample](p *idctParams[T], coef *[64]int16, quant *[64]uint16, out []T, stride int) {
	pass1Bits := p.pass1Bits
	rangeLimit := p.rangeLimit
	mask := int64(len(rangeLimit) - 1)
	var ws [64]int32
	for col := 0; col < 8; col++ {
		in := func(row int) int64 {
			v := int64(coef[row*8+col]) * int64(quant[row*8+col])
			if !p.wide {
				v = int64(int32(v))
			}
			return v
		}
		if coef[8+col] == 0 && coef[16+col] == 0 && coef[24+col] == 0 && coef[32+col] == 0 &&
			coef[40+col] == 0 && coef[48+col] == 0 && coef[56+col] == 0 {
			dc := int32(in(0)) << pass1Bits
			for r := 0; r < 8; r++ {
				ws[r*8+col] = dc
			}
			continue
		}
		// Even part.
		z2 := in(2)
		z3 := in(6)
		z1 := (z2 + z3) * fix0_541196100
		tmp2 := z1 + z3*(-fix1_847759065)
		tmp3 := z1 + z2*fix0_765366865
		z2 = in(0)
		z3 = in(4)
		tmp0 := (z2 + z3) << constBits
		tmp1 := (z2 - z3) << constBits
		tmp10 := tmp0 + tmp3
		tmp13 := tmp0 - tmp3
		tmp11 := tmp1 + tmp2
		tmp12 := tmp1 - tmp2
		// Odd part.
		tmp0 = in(7)
		tmp1 = in(5)
		tmp2 = in(3)
		tmp3 = in(1)
		z1 = tmp0 + tmp3
		z2 = tmp1 + tmp2
		z3 = tmp0 + tmp2
		z4 := tmp1 + tmp3
		z5 := (z3 + z4) * fix1_175875602
		tmp0 *= fix0_298631336
		tmp1 *= fix2_053119869
		tmp2 *= fix3_072711026
		tmp3 *= fix1_501321110
		z1 *= -fix0_899976223
		z2 *= -fix2_562915447
		z3 *= -fix1_961570560
		z4 *= -fix0_390180644
		z3 += z5
		z4 += z5
		tmp0 += z1 + z3
		tmp1 += z2 + z4
		tmp2 += z2 + z3
		tmp3 += z1 + z4
		n := constBits - pass1Bits
		ws[0*8+col] = int32(descale(tmp10+tmp3, n))
		ws[7*8+col] = int32(descale(tmp10-tmp3, n))
		ws[1*8+col] = int32(descale(tmp11+tmp2, n))
		ws[6*8+col] = int32(descale(tmp11-tmp2, n))
		ws[2*8+col] = int32(descale(tmp12+tmp1, n))
		ws[5*8+col] = int32(descale(tmp12-tmp1, n))
		ws[3*8+col] = int32(descale(tmp13+tmp0, n))
		ws[4*8+col] = int32(descale(tmp13-tmp0, n))
	}
	for row := 0; row < 8; row++ {
		w := ws[row*8 : row*8+8]
		o := out[row*stride : row*stride+8]
		if w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0 {
			v := rangeLimit[descale(int64(w[0]), pass1Bits+3)&mask]
			for i := range o {
				o[i] = v
			}
			continue
		}
		// Even part.
		z2 := int64(w[2])
		z3 := int64(w[6])
		z1 := (z2 + z3) * fix0_541196100
		tmp2 := z1 + z3*(-fix1_847759065)
		tmp3 := z1 + z2*fix0_765366865
		tmp0 := (int64(w[0]) + int64(w[4])) << constBits
		tmp1 := (int64(w[0]) - int64(w[4])) << constBits
		tmp10 := tmp0 + tmp3
		tmp13 := tmp0 - tmp3
		tmp11 := tmp1 + tmp2
		tmp12 := tmp1 - tmp2
		// Odd part.
		tmp0 = int64(w[7])
		tmp1 = int64(w[5])
		tmp2 = int64(w[3])
		tmp3 = int64(w[1])
		z1 = tmp0 + tmp3
		z2 = tmp1 + tmp2
		z3 = tmp0 + tmp2
		z4 := tmp1 + tmp3
		z5 := (z3 + z4) * fix1_175875602
		tmp0 *= fix0_298631336
		tmp1 *= fix2_053119869
		tmp2 *= fix3_072711026
		tmp3 *= fix1_501321110
		z1 *= -fix0_899976223
		z2 *= -fix2_562915447
		z3 *= -fix1_961570560
		z4 *= -fix0_390180644
		z3 += z5
		z4 += z5
		tmp0 += z1 + z3
		tmp1 += z2 + z4
		tmp2 += z2 + z3
		tmp3 += z1 + z4
		n := constBits + pass1Bits + 3
		o[0] = rangeLimit[descale(tmp10+tmp3, n)&mask]
		o[7] = rangeLimit[descale(tmp10-tmp3, n)&mask]
		o[1] = rangeLimit[descale(tmp11+tmp2, n)&mask]
		o[6] = rangeLimit[descale(tmp11-tmp2, n)&mask]
		o[2] = rangeLimit[descale(tmp12+tmp1, n)&mask]
		o[5] = rangeLimit[descale(tmp12-tmp1, n)&mask]
		o[3] = rangeLimit[descale(tmp13+tmp0, n)&mask]
		o[4] = rangeLimit[descale(tmp13-tmp0, n)&mask]
	}
}
