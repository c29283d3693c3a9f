package jpegls

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
)

// decoder holds the state while walking the marker segments.
type decoder struct {
	data      []byte
	pos       int
	f         Frame
	haveFrame bool
	ids       []byte // component identifiers, in frame order
	decoded   [4]bool
	ps        preset // from LSE type 1; zeros are defaults
	restart   int    // restart interval in lines, 0 = none
	scans     int
	out       []byte
}

// DecodeConfig returns the frame parameters (those of the first scan for Interleave and
// Near) without decoding the samples.
func DecodeConfig(data []byte) (Frame, error) {
	d := &decoder{data: data}
	if err := d.header(); err != nil {
		return Frame{}, err
	}
	if _, err := d.scanHeader(); err != nil {
		return Frame{}, err
	}
	return d.f, nil
}

// Decode decodes a JPEG-LS stream. The samples are native little endian, one byte each for a
// precision up to 8 bits and two above, interleaved pixel by pixel whatever the interleave
// mode of the scans.
func Decode(data []byte) (Frame, []byte, error) {
	d := &decoder{data: data}
	if err := d.header(); err != nil {
		return Frame{}, nil, err
	}
	f := d.f
	for {
		code, err := d.marker()
		if err != nil {
			return Frame{}, nil, err
		}
		switch code {
		case mEOI:
			for i := range f.Components {
				if !d.decoded[i] {
					return Frame{}, nil, corrupt("component %d has no scan", d.ids[i])
				}
			}
			f.Interleave, f.Near = d.f.Interleave, d.f.Near
			return f, d.out, nil
		case mSOS:
			if err := d.scan(); err != nil {
				return Frame{}, nil, err
			}
		default:
			if err := d.tables(code); err != nil {
				return Frame{}, nil, err
			}
		}
	}
}

// marker reads the marker at the current position, skipping fill bytes (0xFF).
func (d *decoder) marker() (byte, error) {
	if d.pos >= len(d.data) || d.data[d.pos] != 0xFF {
		return 0, corrupt("no marker at byte %d", d.pos)
	}
	for d.pos < len(d.data) && d.data[d.pos] == 0xFF {
		d.pos++
	}
	if d.pos >= len(d.data) {
		return 0, corrupt("truncated before EOI")
	}
	code := d.data[d.pos]
	d.pos++
	return code, nil
}

// segment returns the payload of the marker segment at the current position.
func (d *decoder) segment(code byte) ([]byte, error) {
	if d.pos+2 > len(d.data) {
		return nil, corrupt("truncated marker segment FF%02X", code)
	}
	l := int(d.data[d.pos])<<8 | int(d.data[d.pos+1])
	if l < 2 || d.pos+l > len(d.data) {
		return nil, corrupt("bad length %d of marker segment FF%02X", l, code)
	}
	p := d.data[d.pos+2 : d.pos+l]
	d.pos += l
	return p, nil
}

// header reads SOI and the segments up to and including the frame header.
func (d *decoder) header() error {
	if len(d.data) < 2 || d.data[0] != 0xFF || d.data[1] != mSOI {
		return corrupt("missing SOI marker")
	}
	d.pos = 2
	for !d.haveFrame {
		code, err := d.marker()
		if err != nil {
			return err
		}
		switch code {
		case mSOF55:
			p, err := d.segment(code)
			if err != nil {
				return err
			}
			if err := d.parseSOF(p); err != nil {
				return err
			}
		case mSOS, mEOI:
			return corrupt("FF%02X before the frame header", code)
		default:
			if err := d.tables(code); err != nil {
				return err
			}
		}
	}
	return nil
}

// tables handles the segments allowed between the frame header and scans.
func (d *decoder) tables(code byte) error {
	switch {
	case code >= 0xC0 && code <= 0xCF && code != 0xC4 && code != 0xC8 && code != 0xCC, code == mSOF55 && d.haveFrame:
		if code == mSOF55 {
			return corrupt("second frame header")
		}
		return unsupported("JPEG process SOF%d, not JPEG-LS", code-0xC0)
	case code == mDNL:
		return unsupported("heights defined by DNL")
	case code >= mRST0 && code < mRST0+8, code == mSOI, code == 0x01:
		return corrupt("unexpected marker FF%02X", code)
	}
	p, err := d.segment(code)
	if err != nil {
		return err
	}
	switch code {
	case mLSE:
		return d.parseLSE(p)
	case mDRI:
		if len(p) < 2 || len(p) > 4 {
			return corrupt("DRI of %d bytes", len(p))
		}
		d.restart = 0
		for _, b := range p {
			d.restart = d.restart<<8 | int(b)
		}
	case mAPP8:
		// CharLS's HP color transforms (not part of T.87).
		if len(p) >= 5 && string(p[:4]) == "mrfx" && p[4] != 0 {
			return unsupported("HP color transform %d (APP8 mrfx)", p[4])
		}
	}
	return nil
}

func (d *decoder) parseSOF(p []byte) error {
	if len(p) < 6 {
		return corrupt("short frame header")
	}
	f := Frame{
		BitsPerSample: int(p[0]),
		Height:        int(p[1])<<8 | int(p[2]),
		Width:         int(p[3])<<8 | int(p[4]),
		Components:    int(p[5]),
	}
	if len(p) != 6+3*f.Components {
		return corrupt("frame header of %d bytes for %d components", len(p), f.Components)
	}
	if f.BitsPerSample < 2 || f.BitsPerSample > 16 {
		return corrupt("sample precision %d", f.BitsPerSample)
	}
	if f.Width == 0 {
		return corrupt("width 0")
	}
	if f.Height == 0 {
		return unsupported("height 0 (defined by DNL or LSE)")
	}
	if f.Components < 1 || f.Components > 4 {
		return unsupported("%d components", f.Components)
	}
	n := f.Width * f.Height * f.Components
	if n > maxSamples {
		return unsupported("frame of %d samples", n)
	}
	if n > maxCompression*f.Components*len(d.data) {
		return corrupt("%dx%dx%d frame in %d bytes", f.Width, f.Height, f.Components, len(d.data))
	}
	for i := range f.Components {
		c := p[6+3*i:]
		if c[1] != 0x11 {
			return unsupported("sampling factors %dx%d", c[1]>>4, c[1]&15)
		}
		if bytes.IndexByte(d.ids, c[0]) >= 0 {
			return corrupt("component id %d twice", c[0])
		}
		d.ids = append(d.ids, c[0])
	}
	d.f = f
	d.haveFrame = true
	return nil
}

func (d *decoder) parseLSE(p []byte) error {
	if len(p) < 1 {
		return corrupt("empty LSE segment")
	}
	switch p[0] {
	case 1:
		if len(p) != 11 {
			return corrupt("LSE preset parameters of %d bytes", len(p))
		}
		u := func(i int) int { return int(binary.BigEndian.Uint16(p[i:])) }
		d.ps = preset{maxval: u(1), t1: u(3), t2: u(5), t3: u(7), reset: u(9)}
		return nil
	case 2, 3:
		return unsupported("mapping tables (LSE type %d)", p[0])
	case 4:
		return unsupported("oversize image dimensions (LSE type 4)")
	}
	return corrupt("LSE type %d", p[0])
}

// scanHeader reads the segments up to the first SOS and its header, for DecodeConfig.
func (d *decoder) scanHeader() (*scanHeader, error) {
	for {
		code, err := d.marker()
		if err != nil {
			return nil, err
		}
		if code == mSOS {
			return d.parseSOS()
		}
		if code == mEOI {
			return nil, corrupt("no scan")
		}
		if err := d.tables(code); err != nil {
			return nil, err
		}
	}
}

// scanHeader is what a scan header says.
type scanHeader struct {
	comps []int // frame indices of the components, in scan order
	near  int
	ilv   Interleave
}

// parseSOS reads a scan header; it sets d.f.Interleave and d.f.Near (the largest NEAR so far).
func (d *decoder) parseSOS() (*scanHeader, error) {
	p, err := d.segment(mSOS)
	if err != nil {
		return nil, err
	}
	if len(p) < 1 {
		return nil, corrupt("empty scan header")
	}
	ns := int(p[0])
	if ns < 1 || ns > d.f.Components || len(p) != 4+2*ns {
		return nil, corrupt("scan header of %d bytes for %d components", len(p), ns)
	}
	comps := make([]int, ns)
	for i := range ns {
		k := bytes.IndexByte(d.ids, p[1+2*i])
		if k < 0 {
			return nil, corrupt("scan names component %d, not in the frame", p[1+2*i])
		}
		if d.decoded[k] {
			return nil, corrupt("component %d in two scans", p[1+2*i])
		}
		for _, c := range comps[:i] {
			if c == k {
				return nil, corrupt("component %d twice in a scan", p[1+2*i])
			}
		}
		if p[2+2*i] != 0 {
			return nil, unsupported("mapping table %d", p[2+2*i])
		}
		comps[i] = k
	}
	near, ilv, pt := int(p[1+2*ns]), Interleave(p[2+2*ns]), p[3+2*ns]
	if ilv > InterleaveSample || (ilv == InterleaveNone && ns != 1) {
		return nil, corrupt("interleave mode %d with %d components", ilv, ns)
	}
	if pt != 0 {
		return nil, unsupported("point transform %d", pt&15)
	}
	if d.scans == 0 || near > d.f.Near {
		d.f.Near = near
	}
	if d.scans == 0 || ns > 1 {
		d.f.Interleave = ilv
	}
	d.scans++
	return &scanHeader{comps: comps, near: near, ilv: ilv}, nil
}

// segmentEnd returns the index of the marker that ends the entropy-coded segment starting at
// pos: a 0xFF followed by a byte with its high bit set (T.87 A.1: after 0xFF coded data has a
// 0 bit).
func segmentEnd(data []byte, pos int) int {
	for {
		i := bytes.IndexByte(data[pos:], 0xFF)
		if i < 0 {
			return len(data)
		}
		pos += i
		if pos+1 >= len(data) || data[pos+1]&0x80 != 0 {
			return pos
		}
		pos++
	}
}

func (d *decoder) scan() error {
	sh, err := d.parseSOS()
	if err != nil {
		return err
	}
	f, comps, ilv, near := d.f, sh.comps, sh.ilv, sh.near
	ps, err := d.ps.defaults(f.BitsPerSample, near)
	if err != nil {
		return err
	}
	c := newCoder(f.BitsPerSample, ps, near)
	if d.out == nil {
		// Grown as lines are decoded (putSamples): a header may promise far more than the data
		// holds, and allocating for it up front would let a few bytes claim half a gigabyte.
		d.out = make([]byte, 0, min(d.frameBytes(), 1<<20))
	}
	w, nc := f.Width, len(comps)
	if ilv == InterleaveNone {
		nc = 1
	}
	// Two lines per component (one interleaved pair in sample mode), each with a sample of
	// padding at both ends.
	var prev, cur [][]int32
	if ilv == InterleaveSample {
		prev, cur = [][]int32{make([]int32, (w+2)*nc)}, [][]int32{make([]int32, (w+2)*nc)}
	} else {
		for range nc {
			prev = append(prev, make([]int32, w+2))
			cur = append(cur, make([]int32, w+2))
		}
	}
	end := segmentEnd(d.data, d.pos)
	br := &bitReader{data: d.data[d.pos:end]}
	for y := range f.Height {
		if d.restart > 0 && y > 0 && y%d.restart == 0 {
			m := byte((y/d.restart - 1) % 8)
			d.pos = end
			code, err := d.marker()
			if err != nil || code != mRST0+m {
				return corrupt("line %d: missing RST%d marker", y, m)
			}
			c.init()
			end = segmentEnd(d.data, d.pos)
			br = &bitReader{data: d.data[d.pos:end]}
		}
		if ilv == InterleaveSample {
			prev[0], cur[0] = cur[0], prev[0]
			c.decodeLineSample(br, prev[0], cur[0], nc)
			d.putSamples(y, cur[0][nc:(w+1)*nc], comps)
		} else {
			for i := range nc {
				prev[i], cur[i] = cur[i], prev[i]
				c.decodeLine(br, prev[i], cur[i], i)
				d.putSamples(y, cur[i][1:w+1], comps[i:i+1])
			}
		}
		if br.bad {
			return corrupt("line %d: invalid code", y)
		}
		if br.overrun() {
			return corrupt("truncated at line %d of %d", y, f.Height)
		}
	}
	for _, k := range comps {
		d.decoded[k] = true
	}
	d.pos = end
	return nil
}

// frameBytes is the size of the decoded frame.
func (d *decoder) frameBytes() int {
	n := d.f.Width * d.f.Height * d.f.Components
	if d.f.BitsPerSample > 8 {
		n *= 2
	}
	return n
}

// putSamples stores a decoded line of the given components (interleaved in line).
func (d *decoder) putSamples(y int, line []int32, comps []int) {
	f := d.f
	nc := len(comps)
	if need := (y + 1) * f.Width * f.Components * (1 + (f.BitsPerSample-1)/8); need > len(d.out) {
		n := min(max(need, 2*len(d.out)), d.frameBytes())
		d.out = slices.Grow(d.out, n-len(d.out))[:n]
	}
	if f.BitsPerSample <= 8 {
		row := d.out[y*f.Width*f.Components:]
		if nc == f.Components {
			row = row[:len(line)]
			for i, v := range line {
				row[i] = byte(v)
			}
			return
		}
		for i, v := range line {
			row[(i/nc)*f.Components+comps[i%nc]] = byte(v)
		}
		return
	}
	row := d.out[2*y*f.Width*f.Components:]
	if nc == f.Components {
		row = row[:2*len(line)]
		for i, v := range line {
			binary.LittleEndian.PutUint16(row[2*i:], uint16(v))
		}
		return
	}
	for i, v := range line {
		binary.LittleEndian.PutUint16(row[2*((i/nc)*f.Components+comps[i%nc]):], uint16(v))
	}
}

// decodeLine decodes one line of one component. prev and cur are the line above and this
// one with a sample of padding at each end: sample x at index x+1. The regular mode of
// decodeRegular is written out here: this loop is where decoding spends its time.
func (c *coder) decodeLine(br *bitReader, prev, cur []int32, comp int) {
	w := len(cur) - 2
	prev = prev[:w+2]
	prev[w+1] = prev[w] // Rd of the last sample (T.87 A.2.1)
	cur[0] = prev[1]    // Ra of the first; its Rc is the first sample two lines up
	quant, qoff := c.quant, c.qoff
	ctx := &c.ctx
	maxval, rng, near, limit, qbpp, step, reset := c.maxval, c.rng, c.near, c.limit, c.qbpp, c.step, c.reset
	maxZeros := uint(limit - qbpp - 1)
	for x := 1; x <= w; {
		ra, rb, rc, rd := cur[x-1], prev[x], prev[x-1], prev[x+1]
		q := 81*int32(quant[rd-rb+qoff]) + 9*int32(quant[rb-rc+qoff]) + int32(quant[rc-ra+qoff])
		if q == 0 {
			x = c.decodeRun(br, prev, cur, x, comp)
			continue
		}
		sign := q >> 31 // 0 or -1
		cx := &ctx[(q^sign)-sign]
		k := golombK(cx.n, cx.a)
		px := predict(ra, rb, rc) + (cx.c ^ sign) - sign
		px = min(max(px, 0), maxval)

		if br.n < 56 {
			br.refill()
		}
		var m int32
		if z := uint(bits.LeadingZeros64(br.acc)); z < maxZeros && z+1+k <= br.n {
			m = int32(z)<<k | int32(br.acc<<(z+1)>>(64-k))
			br.acc <<= z + 1 + k
			br.n -= z + 1 + k
		} else {
			m = br.golombSlow(k, maxZeros, qbpp)
		}
		if near == 0 && k == 0 && 2*cx.b <= -cx.n {
			m ^= 1
		}
		e := m>>1 ^ -(m & 1)
		if e > rng || e < -rng {
			br.bad = true
			e = 0
		}
		// c.update(cx, e), written out.
		cb, ca, cn := cx.b+e*step, cx.a+abs(e), cx.n
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
		e = (e ^ sign) - sign
		if near == 0 {
			rx := px + e
			if rx < 0 {
				rx += rng
			} else if rx > maxval {
				rx -= rng
			}
			cur[x] = min(max(rx, 0), maxval)
		} else {
			cur[x] = c.reconstruct(px, e)
		}
		x++
	}
}

// decodeRegular decodes a sample in regular mode (T.87 A.4-A.6) given its context and
// prediction.
func (c *coder) decodeRegular(br *bitReader, q, px int32) int32 {
	sign := int32(1)
	if q < 0 {
		sign, q = -1, -q
	}
	cx := &c.ctx[q]
	k := golombK(cx.n, cx.a)
	px = min(max(px+sign*cx.c, 0), c.maxval)
	m := br.golomb(k, c.limit, c.qbpp)
	if c.near == 0 && k == 0 && 2*cx.b <= -cx.n {
		m ^= 1
	}
	e := m>>1 ^ -(m & 1)
	if e > c.rng || e < -c.rng {
		br.bad = true
		e = 0
	}
	c.update(cx, e)
	return c.reconstruct(px, sign*e)
}

// decodeRun decodes a run starting at sample x and the run interruption sample that ends it
// before the end of the line (T.87 A.7); it returns the position after them.
func (c *coder) decodeRun(br *bitReader, prev, cur []int32, x, comp int) int {
	w := len(cur) - 2
	ra := cur[x-1]
	ri := c.runIndex[comp]
	for br.bit() {
		n := min(1<<j[ri], w-x+1)
		if n == 1<<j[ri] && ri < 31 {
			ri++
		}
		fill(cur[x:x+n], ra)
		x += n
		if x > w {
			c.runIndex[comp] = ri
			return x
		}
	}
	n := int(br.read(j[ri]))
	if n > w-x+1 {
		br.bad = true
		n = w - x + 1
	}
	fill(cur[x:x+n], ra)
	x += n
	if x > w {
		c.runIndex[comp] = ri
		return x
	}
	rb := prev[x]
	if abs(ra-rb) <= c.near {
		cur[x] = c.reconstruct(ra, c.decodeRI(br, 1, ri))
	} else if ra > rb {
		cur[x] = c.reconstruct(rb, -c.decodeRI(br, 0, ri))
	} else {
		cur[x] = c.reconstruct(rb, c.decodeRI(br, 0, ri))
	}
	if ri > 0 {
		ri--
	}
	c.runIndex[comp] = ri
	return x + 1
}

// decodeRI decodes the error of a run interruption sample (T.87 A.7.2).
func (c *coder) decodeRI(br *bitReader, ritype, ri int32) int32 {
	rc := &c.run[ritype]
	k := riK(rc, ritype)
	em := br.golomb(k, c.limit-int32(j[ri])-1, c.qbpp)
	t := em + ritype
	mp := t & 1
	e := (t + mp) >> 1
	if (k != 0 || 2*rc.nn >= rc.n) == (mp == 1) {
		e = -e
	}
	if e > c.rng || e < -c.rng {
		br.bad = true
		e, em = 0, 0 // and A stays bounded
	}
	c.riUpdate(rc, e, em, ritype)
	return e
}

func fill(s []int32, v int32) {
	for i := range s {
		s[i] = v
	}
}

// decodeLineSample decodes one line of a sample interleaved scan of nc components: pixel x
// at index (x+1)*nc.
func (c *coder) decodeLineSample(br *bitReader, prev, cur []int32, nc int) {
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
			x = c.decodeRunSample(br, prev, cur, x, nc)
			continue
		}
		for k := range nc {
			cur[i+k] = c.decodeRegular(br, qs[k], predict(cur[i-nc+k], prev[i+k], prev[i-nc+k]))
		}
		x++
	}
}

// decodeRunSample is decodeRun for a sample interleaved scan: runs of whole pixels, and each
// component of the interruption pixel coded as RItype 0 from the sample above (CharLS).
func (c *coder) decodeRunSample(br *bitReader, prev, cur []int32, x, nc int) int {
	w := len(cur)/nc - 2
	ra := cur[(x-1)*nc : x*nc]
	ri := c.runIndex[0]
	for br.bit() {
		n := min(1<<j[ri], w-x+1)
		if n == 1<<j[ri] && ri < 31 {
			ri++
		}
		for ; n > 0; n-- {
			copy(cur[x*nc:(x+1)*nc], ra)
			x++
		}
		if x > w {
			c.runIndex[0] = ri
			return x
		}
	}
	n := int(br.read(j[ri]))
	if n > w-x+1 {
		br.bad = true
		n = w - x + 1
	}
	for ; n > 0; n-- {
		copy(cur[x*nc:(x+1)*nc], ra)
		x++
	}
	if x > w {
		c.runIndex[0] = ri
		return x
	}
	for k := range nc {
		rb := prev[x*nc+k]
		e := c.decodeRI(br, 0, ri)
		if rb < ra[k] {
			e = -e
		}
		cur[x*nc+k] = c.reconstruct(rb, e)
	}
	if ri > 0 {
		ri--
	}
	c.runIndex[0] = ri
	return x + 1
}
