package jpegll

import "encoding/binary"

// lutBits is the number of bits looked up at once: codes up to this length
// are decoded with one table access (and, when the additional bits fit too,
// the whole difference); longer codes take the slow path.
const lutBits = 9

// A lookup entry packs, from the low bits: the number of bits to consume (5
// bits: code and additional bits); the number of additional bits still to
// be read and extended, if they did not fit in the lookup (5 bits, else 0);
// in the high 16 bits the difference modulo 2^16 when the lookup decoded it
// whole. Entries of codes longer than lutBits are 0.
type lutEntry = uint32

const (
	lutMask    = 1<<lutBits - 1
	entryExtra = 5
	entryDiff  = 16
)

// huffTable is a decoding table built from a DHT segment.
type huffTable struct {
	lut      [1 << lutBits]lutEntry
	maxcode  [17]int32 // largest code of each length, -1 if none
	valoff   [17]int32 // index in vals of the first code of each length, minus that code
	vals     [256]uint8
	lossless bool // every symbol is a difference category 0..16
}

// build makes the canonical code (T.81 Annex C) for counts[1..16] and vals.
func (t *huffTable) build(counts *[17]int, vals []byte) error {
	*t = huffTable{}
	t.lossless = true
	for _, v := range vals {
		if v > 16 {
			t.lossless = false
		}
	}
	copy(t.vals[:], vals)
	code, k := 0, 0
	for l := 1; l <= 16; l++ {
		t.valoff[l] = int32(k - code)
		t.maxcode[l] = -1
		for range counts[l] {
			// Same check as libjpeg: the codes of length l must fit in l bits.
			if code >= 1<<l {
				return corrupt("bad Huffman table (code space overflow at length %d)", l)
			}
			if l <= lutBits {
				t.fill(code, l, vals[k])
			}
			code++
			k++
		}
		if counts[l] > 0 {
			t.maxcode[l] = int32(code - 1)
		}
		code <<= 1
	}
	return nil
}

// fill sets the lookup entries for the code of length l.
func (t *huffTable) fill(code, l int, sym byte) {
	shift := lutBits - l
	base := code << shift
	s := int(sym)
	for j := range 1 << shift {
		var e lutEntry
		switch {
		case s == 0:
			e = lutEntry(l)
		case s == 16:
			// SSSS=16: the difference is 32768 and no additional bits
			// follow (T.81 H.1.2.2, Table H.2). Some old non-conformant
			// encoders wrote 16 additional bits after it; DCMTK's dcmdjpeg
			// (libjpeg with the lossless patch) reads none, and neither
			// does this decoder.
			e = lutEntry(l) | 32768<<entryDiff
		case l+s <= lutBits:
			v := int32(j>>(shift-s)) & (1<<s - 1)
			e = lutEntry(l+s) | lutEntry(uint16(extend(v, uint(s))))<<entryDiff
		default: // s < 16 (tables with other symbols are rejected before use)
			e = lutEntry(l+s) | lutEntry(s&31)<<entryExtra
		}
		t.lut[base+j] = e
	}
}

// extend turns the s additional bits v into a signed difference (T.81 F.2.2.1).
func extend(v int32, s uint) int32 {
	if v < 1<<(s-1) {
		return v - 1<<s + 1
	}
	return v
}

// bitReader reads the entropy-coded segment MSB first. It never reads past
// a marker: at a marker or at the end of data it appends zero bits and
// counts them in pad, so that reading into them is detected afterwards.
type bitReader struct {
	data []byte
	pos  int    // next byte to load
	acc  uint64 // the low n bits are the next bits of the stream
	n    uint
	pad  uint // zero bits appended past the end of the segment
	err  bool // an invalid Huffman code was met
}

// refill loads bytes until at least 57 bits are buffered.
func (br *bitReader) refill() {
	data := br.data
	pos := br.pos
	// Fast path: eight bytes without 0xFF.
	if pos+8 <= len(data) {
		w := binary.BigEndian.Uint64(data[pos:])
		// Does any byte of w equal 0xFF? (classic "has zero byte" test on ^w)
		x := ^w
		if (x-0x0101010101010101)&^x&0x8080808080808080 == 0 {
			k := (64 - br.n) >> 3 // whole bytes that fit
			br.acc = br.acc<<(k*8) | w>>(64-k*8)
			br.n += k * 8
			br.pos = pos + int(k)
			return
		}
	}
	for br.n <= 56 {
		var b byte
		if pos < len(data) {
			b = data[pos]
			if b != 0xFF {
				pos++
			} else if pos+1 < len(data) && data[pos+1] == 0x00 {
				pos += 2
			} else {
				b = 0 // a marker (or the end): do not move past it
				br.pad += 8
			}
		} else {
			br.pad += 8
		}
		br.acc = br.acc<<8 | uint64(b)
		br.n += 8
	}
	br.pos = pos
}

// The scan loops keep the bit buffer in local variables (acc, nb) and
// decode each difference with the inlined decodeFast; refillAt and long are
// the rarely taken calls. At least 32 bits are buffered before each
// difference (the longest is a 16-bit code with 15 additional bits).

// decodeFast decodes a difference whose code has at most lutBits bits, with
// nb >= 32 bits buffered in acc. It returns the difference modulo 2^16 and
// the bits left; for a longer code it returns left == nb (every code takes
// at least one bit), and long must decode it. Branch-free.
func decodeFast(lut *[1 << lutBits]lutEntry, acc uint64, nb uint) (d uint16, left uint) {
	e := lut[(acc>>(nb-lutBits))&lutMask]
	nb -= uint(e & 31)
	// Additional bits that did not fit in the lookup (s = 0: none).
	s := uint(e>>entryExtra) & 31
	m := int32(1)<<s - 1
	v := int32(acc>>nb) & m
	v -= (v>>(s-1) - 1) & m // extend: v < 2^(s-1) stands for v - (2^s - 1)
	return uint16(e>>entryDiff) + uint16(v), nb
}

// refillAt refills the buffer from local state and returns the new state.
func (br *bitReader) refillAt(acc uint64, nb uint) (uint64, uint) {
	br.acc, br.n = acc, nb
	br.refill()
	return br.acc, br.n
}

// long decodes a difference whose code is longer than lutBits, with nb >= 32
// bits buffered. An invalid code sets br.err.
func (br *bitReader) long(t *huffTable, acc uint64, nb uint) (uint16, uint) {
	l := uint(lutBits + 1)
	code := int32(acc>>(nb-l)) & (1<<l - 1)
	for code > t.maxcode[l] {
		l++
		if l > 16 {
			br.err = true
			return 0, nb
		}
		code = int32(acc>>(nb-l)) & (1<<l - 1)
	}
	nb -= l
	s := uint(t.vals[(t.valoff[l]+code)&0xFF])
	switch {
	case s == 0:
		return 0, nb
	case s == 16:
		return 32768, nb // no additional bits: see fill
	case s > 16:
		br.err = true
		return 0, nb
	}
	nb -= s
	v := int32(acc>>nb) & (1<<s - 1)
	return uint16(extend(v, s)), nb
}

// decodeMCU decodes one difference per table (scan component) into dd.
func (br *bitReader) decodeMCU(tables []*huffTable, dd *[4]uint16, acc uint64, nb uint) (uint64, uint) {
	for k, t := range tables {
		if nb < 32 {
			acc, nb = br.refillAt(acc, nb)
		}
		d, left := decodeFast(&t.lut, acc, nb)
		if left == nb {
			d, left = br.long(t, acc, nb)
		}
		nb = left
		dd[k&3] = d
	}
	return acc, nb
}

// decode reads one difference; for the few samples decoded outside the
// scan loops.
func (br *bitReader) decode(t *huffTable) uint16 {
	acc, nb := br.acc, br.n
	if nb < 32 {
		acc, nb = br.refillAt(acc, nb)
	}
	d, left := decodeFast(&t.lut, acc, nb)
	if left == nb {
		d, left = br.long(t, acc, nb)
	}
	br.acc, br.n = acc, left
	return d
}

// overrun reports whether decoding went wrong: an invalid code, or bits
// consumed beyond the end of the entropy-coded segment.
func (br *bitReader) overrun() bool {
	return br.err || br.n < br.pad
}

// restart consumes the RSTn marker that ends a restart interval and resets
// the bit buffer.
func (br *bitReader) restart() error {
	if br.overrun() {
		return corrupt("entropy-coded data ends inside a restart interval")
	}
	br.acc, br.n, br.pad = 0, 0, 0
	code, at, ok := nextMarker(br.data, br.pos)
	if !ok || code < mRST0 || code > mRST7 {
		return corrupt("missing RST marker")
	}
	br.pos = at + 2
	return nil
}
