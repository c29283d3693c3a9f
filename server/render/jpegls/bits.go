package jpegls

import (
	"encoding/binary"
	"math/bits"
)

// bitReader reads the coded bits of one entropy-coded segment (up to the next marker). A
// byte after 0xFF holds 7 bits: its high bit is a stuffed 0 (T.87 A.1), unlike T.81's stuffed
// zero byte. Past the end it reads zeros and counts them, so that truncation is found at the
// end of each line rather than by a check per bit.
type bitReader struct {
	data []byte
	pos  int
	acc  uint64 // unread bits, left-aligned; the bits below the n read ones are zero
	n    uint
	pad  int  // zero bytes read past the end
	ff   bool // the last byte read was 0xFF
	bad  bool // a code no encoder makes: the data is corrupt
}

// hasFF reports whether one of the 8 bytes of v is 0xFF.
func hasFF(v uint64) bool {
	x := ^v
	return (x-0x0101010101010101)&^x&0x8080808080808080 != 0
}

// refill loads whole bytes until at least 56 bits are buffered.
func (br *bitReader) refill() {
	if !br.ff && br.pos+8 <= len(br.data) {
		v := binary.BigEndian.Uint64(br.data[br.pos:])
		if !hasFF(v) {
			k := (64 - br.n) >> 3
			if k == 8 {
				br.acc = v
			} else {
				br.acc |= v >> (64 - 8*k) << (64 - br.n - 8*k)
			}
			br.pos += int(k)
			br.n += 8 * k
			return
		}
	}
	for br.n <= 56 {
		if br.pos >= len(br.data) {
			br.pad++
			br.n += 8
			br.ff = false
			continue
		}
		b := br.data[br.pos]
		br.pos++
		if br.ff {
			// The high bit is the stuffed 0 (a 1 would have made this a marker, which
			// ends the segment before it).
			br.acc |= uint64(b) << (57 - br.n)
			br.n += 7
		} else {
			br.acc |= uint64(b) << (56 - br.n)
			br.n += 8
		}
		br.ff = b == 0xFF
	}
}

// overrun reports whether bits past the end of the segment were used.
func (br *bitReader) overrun() bool {
	return br.pad > 0 && uint(br.pad)*8 > br.n
}

func (br *bitReader) bit() bool {
	if br.n < 1 {
		br.refill()
	}
	b := br.acc>>63 != 0
	br.acc <<= 1
	br.n--
	return b
}

// read returns the next k bits, k <= 32.
func (br *bitReader) read(k uint) int32 {
	if k == 0 {
		return 0
	}
	if br.n < k {
		br.refill()
	}
	v := br.acc >> (64 - k)
	br.acc <<= k
	br.n -= k
	return int32(v)
}

// golomb decodes a limited-length Golomb code (T.87 A.5.3): a unary prefix of up to
// limit-qbpp-1 zeros and k bits, or the escape of exactly that many zeros, a 1, and the
// value less one in qbpp bits.
func (br *bitReader) golomb(k uint, limit, qbpp int32) int32 {
	if br.n < 56 {
		br.refill()
	}
	maxZeros := uint(limit - qbpp - 1)
	z := uint(bits.LeadingZeros64(br.acc))
	if z < maxZeros && z+1+k <= br.n {
		v := br.acc << (z + 1) >> (64 - k) // k == 0: a shift by 64 gives 0
		br.acc <<= z + 1 + k
		br.n -= z + 1 + k
		return int32(z)<<k | int32(v)
	}
	return br.golombSlow(k, maxZeros, qbpp)
}

func (br *bitReader) golombSlow(k, maxZeros uint, qbpp int32) int32 {
	z := uint(0)
	for !br.bit() {
		z++
		if z > maxZeros {
			br.bad = true
			return 0
		}
	}
	if z == maxZeros {
		return br.read(uint(qbpp)) + 1
	}
	if k > 24 {
		br.bad = true
		return 0
	}
	return int32(z)<<k | br.read(k)
}

// bitWriter collects coded bits, stuffing a 0 bit after each 0xFF byte.
type bitWriter struct {
	out []byte
	acc uint64 // pending bits, left-aligned
	n   uint
	ff  bool // the last byte written was 0xFF
}

// put appends the nb low bits of v, nb <= 32.
func (bw *bitWriter) put(v uint32, nb uint) {
	bw.acc |= uint64(v) << (64 - bw.n - nb)
	bw.n += nb
	if bw.n >= 32 {
		bw.flush()
	}
}

// flush writes the whole bytes among the pending bits.
func (bw *bitWriter) flush() {
	if !bw.ff && bw.n >= 32 {
		top := uint32(bw.acc >> 32)
		if x := ^top; (x-0x01010101)&^x&0x80808080 == 0 {
			bw.out = binary.BigEndian.AppendUint32(bw.out, top)
			bw.acc <<= 32
			bw.n -= 32
		}
	}
	for bw.n >= 8 {
		var b byte
		if bw.ff {
			b = byte(bw.acc >> 57)
			bw.acc <<= 7
			bw.n -= 7
		} else {
			b = byte(bw.acc >> 56)
			bw.acc <<= 8
			bw.n -= 8
		}
		bw.out = append(bw.out, b)
		bw.ff = b == 0xFF
	}
}

// zeros appends n zero bits.
func (bw *bitWriter) zeros(n uint) {
	for n > 0 {
		m := min(n, 24)
		bw.put(0, m)
		n -= m
	}
}

// golomb appends m in the limited-length Golomb code of parameter k (T.87 A.5.3).
func (bw *bitWriter) golomb(m uint32, k uint, limit, qbpp int32) {
	high := m >> k
	if high < uint32(limit-qbpp-1) {
		if high+1+uint32(k) <= 32 {
			// high leading zeros come from the width.
			bw.put(1<<k|m&(1<<k-1), uint(high)+1+k)
			return
		}
		bw.zeros(uint(high))
		bw.put(1<<k|m&(1<<k-1), 1+k)
		return
	}
	bw.zeros(uint(limit - qbpp - 1))
	bw.put(1, 1)
	bw.put(m-1, uint(qbpp))
}

// end pads the last byte with zeros; after a final 0xFF a zero byte follows, so that the
// marker after the segment cannot be taken for coded data (as CharLS does).
func (bw *bitWriter) end() {
	bw.flush()
	for bw.n > 0 {
		var b byte
		if bw.ff {
			b = byte(bw.acc >> 57)
			bw.n = max(bw.n, 7) - 7
			bw.acc <<= 7
		} else {
			b = byte(bw.acc >> 56)
			bw.n = max(bw.n, 8) - 8
			bw.acc <<= 8
		}
		bw.out = append(bw.out, b)
		bw.ff = b == 0xFF
	}
	if bw.ff {
		bw.out = append(bw.out, 0)
		bw.ff = false
	}
}
