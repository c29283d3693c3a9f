package jpegll

// A small lossless JPEG encoder for the tests: it produces what DCMTK's
// dcmcjpeg cannot be asked for (restart intervals, non-interleaved and
// partially interleaved scans, several and redefined Huffman tables,
// different predictors and point transforms per scan, fill bytes, APPn and
// COM segments, Huffman codes up to 16 bits). Predictions are computed here
// from the position of each sample (not incrementally as in the decoder).

import (
	"bytes"
	"sort"
)

type encScan struct {
	comps     []int // frame component indices, in frame order
	pred, pt  int
	tables    []int // Huffman table id per scan component
	longCodes bool  // use a fixed table whose codes are mostly 10..16 bits long
}

type encOpts struct {
	scans   []encScan
	restart int  // restart interval in MCUs, 0 = none
	fill    bool // fill bytes before markers, APPn and COM segments, DHT before SOF
	ids     []byte
}

// interleaved is one scan with all components, each with its own table.
func interleaved(nc, pred, pt int) []encScan {
	s := encScan{pred: pred, pt: pt}
	for c := range nc {
		s.comps = append(s.comps, c)
		s.tables = append(s.tables, c)
	}
	return []encScan{s}
}

// separate is one scan per component, all with table 0 (redefined before
// each scan).
func separate(nc, pred, pt int) []encScan {
	var ss []encScan
	for c := range nc {
		ss = append(ss, encScan{comps: []int{c}, pred: pred, pt: pt, tables: []int{0}})
	}
	return ss
}

type bitWriter struct {
	out  bytes.Buffer
	acc  uint64
	n    uint
	fill bool
}

func (w *bitWriter) bits(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.acc = w.acc<<1 | uint64(v>>uint(i)&1)
		w.n++
		if w.n == 8 {
			b := byte(w.acc)
			w.out.WriteByte(b)
			if b == 0xFF {
				w.out.WriteByte(0)
			}
			w.acc, w.n = 0, 0
		}
	}
}

func (w *bitWriter) flush() {
	for w.n != 0 {
		w.bits(1, 1)
	}
}

func (w *bitWriter) marker(code byte) {
	w.out.WriteByte(0xFF)
	if w.fill {
		w.out.Write([]byte{0xFF, 0xFF})
	}
	w.out.WriteByte(code)
}

func (w *bitWriter) segment(code byte, payload []byte) {
	w.marker(code)
	n := len(payload) + 2
	w.out.Write([]byte{byte(n >> 8), byte(n)})
	w.out.Write(payload)
}

// encTable is a Huffman table for encoding.
type encTable struct {
	bits [17]int
	vals []byte
	code [17]uint32
	size [17]uint
}

func (t *encTable) assign() {
	code := uint32(0)
	k := 0
	for l := 1; l <= 16; l++ {
		for range t.bits[l] {
			s := t.vals[k]
			t.code[s], t.size[s] = code, uint(l)
			code++
			k++
		}
		code <<= 1
	}
}

func (t *encTable) dht(id int) []byte {
	p := []byte{byte(id)}
	for l := 1; l <= 16; l++ {
		p = append(p, byte(t.bits[l]))
	}
	return append(p, t.vals...)
}

// optimalTable builds a length-limited Huffman table from symbol
// frequencies, following T.81 Annex K.2 (as libjpeg does).
func optimalTable(freq0 []int) *encTable {
	var freq [258]int
	copy(freq[:], freq0)
	freq[256] = 1 // reserve the all-ones code point
	var codesize [258]int
	var others [258]int
	for i := range others {
		others[i] = -1
	}
	for {
		c1, c2 := -1, -1
		v := int(^uint(0) >> 1)
		for i := 0; i <= 256; i++ {
			if freq[i] != 0 && freq[i] <= v {
				v, c1 = freq[i], i
			}
		}
		v = int(^uint(0) >> 1)
		for i := 0; i <= 256; i++ {
			if freq[i] != 0 && freq[i] <= v && i != c1 {
				v, c2 = freq[i], i
			}
		}
		if c2 < 0 {
			break
		}
		freq[c1] += freq[c2]
		freq[c2] = 0
		codesize[c1]++
		for others[c1] >= 0 {
			c1 = others[c1]
			codesize[c1]++
		}
		others[c1] = c2
		codesize[c2]++
		for others[c2] >= 0 {
			c2 = others[c2]
			codesize[c2]++
		}
	}
	var bits [64]int
	for i := 0; i <= 256; i++ {
		if codesize[i] > 0 {
			bits[codesize[i]]++
		}
	}
	for i := 63; i > 16; i-- {
		for bits[i] > 0 {
			j := i - 2
			for bits[j] == 0 {
				j--
			}
			bits[i] -= 2
			bits[i-1]++
			bits[j+1] += 2
			bits[j]--
		}
	}
	i := 16
	for bits[i] == 0 {
		i--
	}
	bits[i]-- // drop the reserved code
	t := &encTable{}
	copy(t.bits[:], bits[:17])
	for l := 1; l < 64; l++ {
		for s := 0; s < 256; s++ {
			if codesize[s] == l {
				t.vals = append(t.vals, byte(s))
			}
		}
	}
	t.assign()
	return t
}

// longTable gives symbol 16 a 1-bit code and all others 10..16 bits.
func longTable() *encTable {
	t := &encTable{}
	t.bits[1], t.bits[10], t.bits[12], t.bits[14], t.bits[16] = 1, 4, 4, 4, 4
	t.vals = []byte{16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	t.assign()
	return t
}

func category(d int32) uint {
	if d < 0 {
		d = -d
	}
	n := uint(0)
	for d != 0 {
		n++
		d >>= 1
	}
	return n
}

// encodeLossless encodes pix (w x h, nc components interleaved, precision
// prec) as a lossless JPEG.
func encodeLossless(pix []uint16, w, h, nc, prec int, o encOpts) []byte {
	bw := &bitWriter{fill: o.fill}
	bw.out.Write([]byte{0xFF, 0xD8})
	if o.fill {
		bw.segment(0xE0, []byte("JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x00\x00"))
		bw.segment(0xFE, []byte("jpegll test stream \xff\xff"))
	}
	type scanData struct {
		diffs  [][]int32 // per scan component, in MCU order
		tables map[int]*encTable
	}
	prepared := make([]scanData, len(o.scans))
	for si, sc := range o.scans {
		sd := scanData{tables: map[int]*encTable{}}
		freq := map[int][]int{}
		for k, c := range sc.comps {
			r := func(y, x int) int32 { return int32(pix[(y*w+x)*nc+c] >> sc.pt) }
			ds := make([]int32, w*h)
			for y := range h {
				for x := range w {
					m := y*w + x
					s0 := 0
					if o.restart > 0 {
						s0 = m / o.restart * o.restart
					}
					var px int32
					switch {
					case m == s0:
						px = 1 << (prec - sc.pt - 1)
					case y == s0/w:
						px = r(y, x-1)
					case x == 0:
						px = r(y-1, x)
					default:
						ra, rb, rc := r(y, x-1), r(y-1, x), r(y-1, x-1)
						switch sc.pred {
						case 1:
							px = ra
						case 2:
							px = rb
						case 3:
							px = rc
						case 4:
							px = ra + rb - rc
						case 5:
							px = ra + (rb-rc)>>1
						case 6:
							px = rb + (ra-rc)>>1
						case 7:
							px = (ra + rb) >> 1
						}
					}
					d := (r(y, x) - px) & 0xFFFF
					if d > 32768 {
						d -= 65536
					}
					ds[m] = d
					id := sc.tables[k]
					if freq[id] == nil {
						freq[id] = make([]int, 17)
					}
					freq[id][category(d)]++
				}
			}
			sd.diffs = append(sd.diffs, ds)
		}
		ids := make([]int, 0, len(freq))
		for id := range freq {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			if sc.longCodes {
				sd.tables[id] = longTable()
			} else {
				sd.tables[id] = optimalTable(freq[id])
			}
		}
		prepared[si] = sd
	}
	dhtFor := func(sd scanData) []byte {
		var p []byte
		ids := make([]int, 0, len(sd.tables))
		for id := range sd.tables {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			p = append(p, sd.tables[id].dht(id)...)
		}
		return p
	}
	if o.fill {
		bw.segment(0xC4, dhtFor(prepared[0]))
	}
	ids := o.ids
	if ids == nil {
		ids = []byte{1, 2, 3, 4}
	}
	sof := []byte{byte(prec), byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(nc)}
	for c := range nc {
		sof = append(sof, ids[c], 0x11, 0)
	}
	bw.segment(0xC3, sof)
	if o.restart > 0 {
		bw.segment(0xDD, []byte{byte(o.restart >> 8), byte(o.restart)})
	}
	for si, sc := range o.scans {
		sd := prepared[si]
		if !(o.fill && si == 0) {
			bw.segment(0xC4, dhtFor(sd))
		}
		sos := []byte{byte(len(sc.comps))}
		for k, c := range sc.comps {
			sos = append(sos, ids[c], byte(sc.tables[k]<<4))
		}
		sos = append(sos, byte(sc.pred), 0, byte(sc.pt))
		bw.segment(0xDA, sos)
		rst := 0
		for m := range w * h {
			if o.restart > 0 && m > 0 && m%o.restart == 0 {
				bw.flush()
				bw.marker(0xD0 + byte(rst&7))
				rst++
			}
			for k := range sc.comps {
				d := sd.diffs[k][m]
				t := sd.tables[sc.tables[k]]
				s := category(d)
				bw.bits(t.code[s], t.size[s])
				if s != 0 && s != 16 {
					v := d
					if v < 0 {
						v += 1<<s - 1
					}
					bw.bits(uint32(v), s)
				}
			}
		}
		bw.flush()
	}
	bw.marker(0xD9)
	return bw.out.Bytes()
}
