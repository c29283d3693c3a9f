package jpegls

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Encode writes src, f.Width x f.Height pixels of f.Components samples (native little
// endian, one byte each up to 8 bits and two above, pixel by pixel), to w as a JPEG-LS stream
// with the interleave mode and NEAR of f. A single component is coded with ILV 0; for color,
// line interleave is what dcmcjpls writes by default. Preset parameters other than the
// defaults go in an LSE segment. The output is what CharLS (and so DCMTK's dcmcjpls) writes
// for the same parameters, except that dcmcjpls also writes default parameters in an LSE
// segment above 8 bits.
func Encode(w io.Writer, src []byte, f Frame, opts Options) error {
	b, err := AppendEncode(nil, src, f, opts)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// AppendEncode is Encode appending to dst.
func AppendEncode(dst, src []byte, f Frame, opts Options) ([]byte, error) {
	if f.Width < 1 || f.Width > 0xFFFF || f.Height < 1 || f.Height > 0xFFFF {
		return nil, fmt.Errorf("jpegls: cannot encode a %dx%d frame", f.Width, f.Height)
	}
	if f.Components < 1 || f.Components > 4 {
		return nil, fmt.Errorf("jpegls: cannot encode %d components", f.Components)
	}
	if f.BitsPerSample < 2 || f.BitsPerSample > 16 {
		return nil, fmt.Errorf("jpegls: cannot encode %d-bit samples", f.BitsPerSample)
	}
	if f.Interleave < InterleaveNone || f.Interleave > InterleaveSample {
		return nil, fmt.Errorf("jpegls: interleave mode %d", f.Interleave)
	}
	bps := 1
	if f.BitsPerSample > 8 {
		bps = 2
	}
	if want := f.Width * f.Height * f.Components * bps; len(src) != want {
		return nil, fmt.Errorf("jpegls: %d bytes of samples for a %dx%dx%d %d-bit frame, want %d",
			len(src), f.Width, f.Height, f.Components, f.BitsPerSample, want)
	}
	given := preset{maxval: opts.MaxVal, t1: opts.T1, t2: opts.T2, t3: opts.T3, reset: opts.Reset}
	ps, err := given.defaults(f.BitsPerSample, f.Near)
	if err != nil {
		return nil, fmt.Errorf("jpegls: %v", err)
	}
	if f.Components == 1 {
		f.Interleave = InterleaveNone
	}

	dst = append(dst, 0xFF, mSOI)
	sof := []byte{byte(f.BitsPerSample), byte(f.Height >> 8), byte(f.Height), byte(f.Width >> 8), byte(f.Width), byte(f.Components)}
	for i := range f.Components {
		sof = append(sof, byte(i+1), 0x11, 0)
	}
	dst = appendSegment(dst, mSOF55, sof)
	def, _ := preset{}.defaults(f.BitsPerSample, f.Near)
	if ps != def {
		lse := []byte{1}
		for _, v := range []int{ps.maxval, ps.t1, ps.t2, ps.t3, ps.reset} {
			lse = binary.BigEndian.AppendUint16(lse, uint16(v))
		}
		dst = appendSegment(dst, mLSE, lse)
	}
	if opts.restart > 0 {
		dst = appendSegment(dst, mDRI, []byte{byte(opts.restart >> 8), byte(opts.restart)})
	}
	e := &encoder{f: f, src: src, bps: bps, ps: ps, restart: opts.restart}
	if f.Interleave == InterleaveNone {
		for k := range f.Components {
			if dst, err = e.scan(dst, []int{k}); err != nil {
				return nil, err
			}
		}
	} else {
		all := []int{0, 1, 2, 3}[:f.Components]
		if dst, err = e.scan(dst, all); err != nil {
			return nil, err
		}
	}
	return append(dst, 0xFF, mEOI), nil
}

func appendSegment(dst []byte, code byte, payload []byte) []byte {
	dst = append(dst, 0xFF, code, byte((len(payload)+2)>>8), byte(len(payload)+2))
	return append(dst, payload...)
}

type encoder struct {
	f       Frame
	src     []byte
	bps     int
	ps      preset
	restart int // lines per restart interval, 0 = none
}

// scan appends one scan of the given components.
func (e *encoder) scan(dst []byte, comps []int) ([]byte, error) {
	f := e.f
	sos := []byte{byte(len(comps))}
	for _, k := range comps {
		sos = append(sos, byte(k+1), 0)
	}
	sos = append(sos, byte(f.Near), byte(f.Interleave), 0)
	dst = appendSegment(dst, mSOS, sos)

	c := newCoder(f.BitsPerSample, e.ps, f.Near)
	w, nc := f.Width, len(comps)
	bw := &bitWriter{out: dst}
	if f.Interleave == InterleaveSample {
		prev, cur := make([]int32, (w+2)*nc), make([]int32, (w+2)*nc)
		for y := range f.Height {
			e.restartMarker(bw, c, y)
			prev, cur = cur, prev
			if err := e.getSamples(y, cur[nc:(w+1)*nc], comps); err != nil {
				return nil, err
			}
			c.encodeLineSample(bw, prev, cur, nc)
		}
	} else {
		prev, cur := make([][]int32, nc), make([][]int32, nc)
		for i := range nc {
			prev[i], cur[i] = make([]int32, w+2), make([]int32, w+2)
		}
		for y := range f.Height {
			e.restartMarker(bw, c, y)
			for i, k := range comps {
				prev[i], cur[i] = cur[i], prev[i]
				if err := e.getSamples(y, cur[i][1:w+1], []int{k}); err != nil {
					return nil, err
				}
				c.encodeLine(bw, prev[i], cur[i], i)
			}
		}
	}
	bw.end()
	return bw.out, nil
}

// restartMarker ends a restart interval before line y (T.87 D.2): the coded bits padded to
// a byte, RSTm, and the adaptive state reset; the lines above still predict.
func (e *encoder) restartMarker(bw *bitWriter, c *coder, y int) {
	if e.restart == 0 || y == 0 || y%e.restart != 0 {
		return
	}
	bw.end()
	bw.out = append(bw.out, 0xFF, mRST0+byte((y/e.restart-1)%8))
	c.init()
}

// getSamples loads line y of the given components (interleaved in line) and checks them
// against MAXVAL.
func (e *encoder) getSamples(y int, line []int32, comps []int) error {
	f := e.f
	nc := len(comps)
	maxval := int32(e.ps.maxval)
	var over int32
	if e.bps == 1 {
		row := e.src[y*f.Width*f.Components:]
		if nc == f.Components {
			row = row[:len(line)]
			for i, v := range row {
				line[i] = int32(v)
				over |= int32(v)
			}
		} else {
			for i := range line {
				v := int32(row[(i/nc)*f.Components+comps[i%nc]])
				line[i] = v
				over |= v
			}
		}
	} else {
		row := e.src[2*y*f.Width*f.Components:]
		if nc == f.Components {
			row = row[:2*len(line)]
			for i := range line {
				v := int32(binary.LittleEndian.Uint16(row[2*i:]))
				line[i] = v
				over |= v
			}
		} else {
			for i := range line {
				v := int32(binary.LittleEndian.Uint16(row[2*((i/nc)*f.Components+comps[i%nc]):]))
				line[i] = v
				over |= v
			}
		}
	}
	// maxval+1 is a power of two unless set: the OR of the samples is a quick first check.
	if over > maxval {
		for _, v := range line {
			if v > maxval {
				return fmt.Errorf("jpegls: line %d has sample %d, above MAXVAL %d", y, v, maxval)
			}
		}
	}
	return nil
}

// encodeLine codes one line of one component; prev and cur as in decodeLine, cur holding the
// samples to code (replaced by the reconstructed ones when NEAR > 0). The regular mode of
// encodeRegular is written out for lossless coding: this loop is where encoding spends its
// time.
func (c *coder) encodeLine(bw *bitWriter, prev, cur []int32, comp int) {
	w := len(cur) - 2
	prev = prev[:w+2]
	prev[w+1] = prev[w]
	cur[0] = prev[1]
	quant, qoff := c.quant, c.qoff
	ctx := &c.ctx
	maxval, rng, limit, qbpp, reset := c.maxval, c.rng, c.limit, c.qbpp, c.reset
	for x := 1; x <= w; {
		ra, rb, rc, rd := cur[x-1], prev[x], prev[x-1], prev[x+1]
		q := 81*int32(quant[rd-rb+qoff]) + 9*int32(quant[rb-rc+qoff]) + int32(quant[rc-ra+qoff])
		if q == 0 {
			x = c.encodeRun(bw, prev, cur, x, comp)
			continue
		}
		if c.near != 0 {
			cur[x] = c.encodeRegular(bw, q, predict(ra, rb, rc), cur[x])
			x++
			continue
		}
		sign := q >> 31 // 0 or -1
		cx := &ctx[(q^sign)-sign]
		k := golombK(cx.n, cx.a)
		px := predict(ra, rb, rc) + (cx.c ^ sign) - sign
		px = min(max(px, 0), maxval)
		e := ((cur[x] - px) ^ sign) - sign
		if e < 0 {
			e += rng
		}
		if e >= (rng+1)/2 {
			e -= rng
		}
		m := uint32(e<<1 ^ e>>31) // 2e, or -2e-1 for e < 0
		if k == 0 && 2*cx.b <= -cx.n {
			m ^= 1
		}
		bw.golomb(m, k, limit, qbpp)
		// c.update(cx, e), written out.
		cb, ca, cn := cx.b+e, cx.a+abs(e), cx.n
		if cn == reset {
			ca, cb, cn = ca>>1, cb>>1, cn>>1
		}
		cn++
		cx.a, cx.n = ca, cn
		if cb+cn <= 0 {
			cb += cn
			if cb <= -cn {
				cb = -cn + 1
			}
			if cx.c > -128 {
				cx.c--
			}
		} else if cb > 0 {
			cb -= cn
			if cb > 0 {
				cb = 0
			}
			if cx.c < 127 {
				cx.c++
			}
		}
		cx.b = cb
		x++
	}
}

// encodeRegular codes sample ix in regular mode and returns its reconstructed value.
func (c *coder) encodeRegular(bw *bitWriter, q, px, ix int32) int32 {
	sign := int32(1)
	if q < 0 {
		sign, q = -1, -q
	}
	cx := &c.ctx[q]
	k := golombK(cx.n, cx.a)
	px = min(max(px+sign*cx.c, 0), c.maxval)
	e := c.quantize(sign * (ix - px))
	m := uint32(2 * e)
	if e < 0 {
		m = uint32(-2*e - 1)
	}
	if c.near == 0 && k == 0 && 2*cx.b <= -cx.n {
		m ^= 1
	}
	bw.golomb(m, k, c.limit, c.qbpp)
	c.update(cx, e)
	if c.near == 0 {
		return ix
	}
	return c.reconstruct(px, sign*e)
}

// encodeRun codes the run starting at sample x and the interruption sample ending it.
func (c *coder) encodeRun(bw *bitWriter, prev, cur []int32, x, comp int) int {
	w := len(cur) - 2
	ra := cur[x-1]
	n := 0
	for x+n <= w && abs(cur[x+n]-ra) <= c.near {
		n++
	}
	if c.near > 0 {
		fill(cur[x:x+n], ra)
	}
	x += n
	ri := c.encodeRunLength(bw, n, x > w, c.runIndex[comp])
	if x > w {
		c.runIndex[comp] = ri
		return x
	}
	ix, rb := cur[x], prev[x]
	if abs(ra-rb) <= c.near {
		e := c.quantize(ix - ra)
		c.encodeRI(bw, e, 1, ri)
		cur[x] = c.reconstruct(ra, e)
	} else {
		sign := int32(1)
		if ra > rb {
			sign = -1
		}
		e := c.quantize(sign * (ix - rb))
		c.encodeRI(bw, e, 0, ri)
		cur[x] = c.reconstruct(rb, sign*e)
	}
	if ri > 0 {
		ri--
	}
	c.runIndex[comp] = ri
	return x + 1
}

// encodeRunLength codes a run of n samples (T.87 A.7.1.2) and returns the new run index.
func (c *coder) encodeRunLength(bw *bitWriter, n int, eol bool, ri int32) int32 {
	for n >= 1<<j[ri] {
		bw.put(1, 1)
		n -= 1 << j[ri]
		if ri < 31 {
			ri++
		}
	}
	if eol {
		if n > 0 {
			bw.put(1, 1)
		}
		return ri
	}
	bw.put(uint32(n), j[ri]+1) // a 0, then n in J[RUNindex] bits
	return ri
}

// encodeRI codes the error of a run interruption sample (T.87 A.7.2).
func (c *coder) encodeRI(bw *bitWriter, e, ritype, ri int32) {
	rc := &c.run[ritype]
	k := riK(rc, ritype)
	var mp int32
	switch {
	case k == 0 && e > 0 && 2*rc.nn < rc.n:
		mp = 1
	case e < 0 && 2*rc.nn >= rc.n:
		mp = 1
	case e < 0 && k != 0:
		mp = 1
	}
	em := 2*abs(e) - ritype - mp
	bw.golomb(uint32(em), k, c.limit-int32(j[ri])-1, c.qbpp)
	c.riUpdate(rc, e, em, ritype)
}

// encodeLineSample codes one line of a sample interleaved scan (see decodeLineSample).
func (c *coder) encodeLineSample(bw *bitWriter, prev, cur []int32, nc int) {
	w := len(cur)/nc - 2
	for k := range nc {
		prev[(w+1)*nc+k] = prev[w*nc+k]
		cur[k] = prev[nc+k]
	}
	quant, qoff := c.quant, c.qoff
	var qs [4]int32
	for x := 1; x <= w; {
		i := x * nc
		zero := true
		for k := range nc {
			ra, rb, rc, rd := cur[i-nc+k], prev[i+k], prev[i-nc+k], prev[i+nc+k]
			qs[k] = 81*int32(quant[rd-rb+qoff]) + 9*int32(quant[rb-rc+qoff]) + int32(quant[rc-ra+qoff])
			zero = zero && qs[k] == 0
		}
		if zero {
			x = c.encodeRunSample(bw, prev, cur, x, nc)
			continue
		}
		for k := range nc {
			cur[i+k] = c.encodeRegular(bw, qs[k], predict(cur[i-nc+k], prev[i+k], prev[i-nc+k]), cur[i+k])
		}
		x++
	}
}

// encodeRunSample is encodeRun for a sample interleaved scan.
func (c *coder) encodeRunSample(bw *bitWriter, prev, cur []int32, x, nc int) int {
	w := len(cur)/nc - 2
	ra := cur[(x-1)*nc : x*nc]
	n := 0
run:
	for x+n <= w {
		for k := range nc {
			if abs(cur[(x+n)*nc+k]-ra[k]) > c.near {
				break run
			}
		}
		if c.near > 0 {
			copy(cur[(x+n)*nc:(x+n+1)*nc], ra)
		}
		n++
	}
	x += n
	ri := c.encodeRunLength(bw, n, x > w, c.runIndex[0])
	if x > w {
		c.runIndex[0] = ri
		return x
	}
	for k := range nc {
		ix, rb := cur[x*nc+k], prev[x*nc+k]
		sign := int32(1)
		if rb < ra[k] {
			sign = -1
		}
		e := c.quantize(sign * (ix - rb))
		c.encodeRI(bw, e, 0, ri)
		cur[x*nc+k] = c.reconstruct(rb, sign*e)
	}
	if ri > 0 {
		ri--
	}
	c.runIndex[0] = ri
	return x + 1
}
