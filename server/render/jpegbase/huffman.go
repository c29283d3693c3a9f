package jpegbase

// naturalOrder maps zigzag index to natural (row-major) index; like libjpeg's
// jpeg_natural_order it has 16 extra entries so that a corrupt run length pushing k past
// 63 stores into coefficient 63 instead of overrunning.
var naturalOrder = [80]int{
	0, 1, 8, 16, 9, 2, 3, 10,
	17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34,
	27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36,
	29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46,
	53, 60, 61, 54, 47, 55, 62, 63,
	63, 63, 63, 63, 63, 63, 63, 63,
	63, 63, 63, 63, 63, 63, 63, 63,
}

// lookBits is libjpeg's HUFF_LOOKAHEAD: codes of up to 8 bits decode with one table lookup.
const lookBits = 8

type huffTable struct {
	maxcode [18]int32 // maxcode[l] = largest code of length l, -1 if none; [17] sentinel
	valoff  [17]int32 // huffval index offset: val = huffval[code + valoff[l]]
	huffval [256]uint8
	// look maps the next lookBits bits to length<<8 | symbol for codes of up to lookBits
	// bits, 0 for longer ones.
	look [1 << lookBits]uint16
}

// buildHuff follows jdhuff.c jpeg_make_d_derived_tbl, including its validity checks.
func buildHuff(counts [17]int, vals []byte, isDC bool) (*huffTable, error) {
	t := &huffTable{}
	copy(t.huffval[:], vals)
	code := int32(0)
	p := 0
	for l := 1; l <= 16; l++ {
		n := counts[l]
		if n > 0 {
			t.valoff[l] = int32(p) - code
			code += int32(n)
			p += n
			t.maxcode[l] = code - 1
		} else {
			t.maxcode[l] = -1
		}
		if code >= 1<<l {
			return nil, corrupt("bad Huffman table")
		}
		code <<= 1
	}
	t.maxcode[17] = 0x7FFFFFFF
	code, p = 0, 0
	for l := 1; l <= lookBits; l++ {
		for i := 0; i < counts[l]; i, p, code = i+1, p+1, code+1 {
			first := code << (lookBits - l)
			for j := int32(0); j < 1<<(lookBits-l); j++ {
				t.look[first+j] = uint16(l)<<8 | uint16(t.huffval[p])
			}
		}
		code <<= 1
	}
	if isDC {
		for _, v := range vals {
			if v > 15 {
				return nil, corrupt("bad DC Huffman symbol %d", v)
			}
		}
	}
	return t, nil
}

// fillByte adds one byte of entropy-coded data to the bit buffer, following
// jdhuff.c jpeg_fill_bit_buffer: 0xFF 0x00 is a data 0xFF, fill 0xFFs are skipped, and a
// marker (or the end of data) stops input; from then on zero bits are supplied and the
// out-of-data flag is set.
func (d *decoder) fillByte() {
	if c, ok := d.nextByte(); ok {
		d.bitBuf = d.bitBuf<<8 | uint64(c)
		d.bitsLeft += 8
		return
	}
	d.insufficient = true
	d.bitBuf <<= 8
	d.bitsLeft += 8
}

// nextByte returns the next byte of entropy-coded data, or false once a marker or the end of
// data is reached (then unreadMarker is set).
func (d *decoder) nextByte() (byte, bool) {
	if d.unreadMarker != 0 {
		return 0, false
	}
	if d.pos >= len(d.data) {
		d.unreadMarker = mEOI
		return 0, false
	}
	c := d.data[d.pos]
	d.pos++
	if c != 0xFF {
		return c, true
	}
	for d.pos < len(d.data) && d.data[d.pos] == 0xFF {
		d.pos++
	}
	if d.pos >= len(d.data) {
		d.unreadMarker = mEOI
		return 0, false
	}
	c2 := d.data[d.pos]
	d.pos++
	if c2 != 0 {
		d.unreadMarker = c2
		return 0, false
	}
	return 0xFF, true
}

// fillData tops up the bit buffer with data bytes only, never padding: what
// jpeg_fill_bit_buffer does when asked for no particular number of bits.
func (d *decoder) fillData() {
	for d.bitsLeft <= 56 {
		c, ok := d.nextByte()
		if !ok {
			return
		}
		d.bitBuf = d.bitBuf<<8 | uint64(c)
		d.bitsLeft += 8
	}
}

func (d *decoder) getBits(n int) int32 {
	if n == 0 {
		return 0
	}
	if d.bitsLeft < n {
		d.fillData()
		for d.bitsLeft < n {
			d.fillByte()
		}
	}
	d.bitsLeft -= n
	return int32(d.bitBuf>>uint(d.bitsLeft)) & (1<<uint(n) - 1)
}

func (d *decoder) getBit() int32 { return d.getBits(1) }

// decodeHuff is jdhuff.c HUFF_DECODE: a table lookup when lookBits bits of data are at hand
// and the code is that short, else bit by bit (padding with zeros past the data).
func (d *decoder) decodeHuff(t *huffTable) (int, error) {
	if d.bitsLeft < lookBits {
		d.fillData()
	}
	if d.bitsLeft >= lookBits {
		if e := t.look[(d.bitBuf>>uint(d.bitsLeft-lookBits))&(1<<lookBits-1)]; e != 0 {
			d.bitsLeft -= int(e >> 8)
			return int(e & 0xFF), nil
		}
	}
	code := d.getBit()
	l := 1
	for code > t.maxcode[l] {
		code = code<<1 | d.getBit()
		l++
		if l > 16 {
			return 0, corrupt("bad Huffman code")
		}
	}
	return int(t.huffval[(code+t.valoff[l])&0xFF]), nil
}

func extend(x int32, s int) int32 {
	if x < 1<<uint(s-1) {
		return x + (-1 << uint(s)) + 1
	}
	return x
}

// decodeBlock is jdhuff.c decode_mcu for one block.
func (d *decoder) decodeBlock(c *component, blk *[64]int16) error {
	s, err := d.decodeHuff(d.dc[c.td])
	if err != nil {
		return err
	}
	var diff int32
	if s != 0 {
		diff = extend(d.getBits(s), s)
	}
	c.dcPred += diff
	blk[0] = int16(c.dcPred)
	ac := d.ac[c.ta]
	for k := 1; k < 64; k++ {
		rs, err := d.decodeHuff(ac)
		if err != nil {
			return err
		}
		r, s := rs>>4, rs&15
		if s != 0 {
			k += r
			v := extend(d.getBits(s), s)
			blk[naturalOrder[k]] = int16(v)
		} else {
			if r != 15 {
				break
			}
			k += 15
		}
	}
	return nil
}
