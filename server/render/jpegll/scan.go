package jpegll

// scan decodes the entropy-coded data of one scan into pix. While the scan
// is decoded pix holds the point-transformed values (modulo 2^16); finish
// shifts them back.
type scan struct {
	br                       bitReader
	pix                      []uint16
	width, height, stride    int // stride = components in the frame
	ns                       int // components in the scan
	comps                    [4]int
	tables                   [4]*huffTable
	predictor, pt, precision int
	restart                  int
}

// decode decodes the scan line by line.
//
// Prediction follows T.81 H.1.2.1: the first sample of the scan and of every
// restart interval is predicted with 2^(P-Pt-1), the rest of that line with
// Ra (predictor 1); the first sample of every other line with Rb (predictor
// 2); everything else with the scan's predictor. Restart intervals are whole
// lines (checked by the caller, as libjpeg does).
func (s *scan) decode() error {
	w, h := s.width, s.height
	rowsPer := s.restart / w // lines per restart interval, 0 = no restarts
	startRow := 0
	for y := range h {
		if rowsPer > 0 && y > 0 && y%rowsPer == 0 {
			if err := s.br.restart(); err != nil {
				return err
			}
			startRow = y
		}
		if y == startRow {
			s.initial(y)
			if w > 1 {
				s.run(1, y, 1, w)
			}
		} else {
			s.run(2, y, 0, 1)
			if w > 1 {
				s.run(s.predictor, y, 1, w)
			}
		}
		if s.br.overrun() {
			return s.overrunError()
		}
	}
	return nil
}

func (s *scan) overrunError() error {
	if s.br.err {
		return corrupt("invalid Huffman code")
	}
	return corrupt("entropy-coded data too short")
}

// initial decodes the first MCU of line y, predicted with 2^(P-Pt-1).
func (s *scan) initial(y int) {
	p0 := uint16(1) << (s.precision - s.pt - 1)
	base := y * s.width * s.stride
	for k := range s.ns {
		d := s.br.decode(s.tables[k])
		s.pix[base+s.comps[k]] = p0 + d
	}
}

// run decodes the MCUs x0..x1-1 of row y with predictor p. x0 >= 1 for
// predictors that use Ra; y >= 1 for predictors that use Rb or Rc.
func (s *scan) run(p, y, x0, x1 int) {
	if s.ns == 1 {
		st := s.stride
		i0 := (y*s.width+x0)*st + s.comps[0]
		runSingle(&s.br, s.tables[0], s.pix, p, i0, x1-x0, st, s.width*st)
		return
	}
	runMulti(s, p, y, x0, x1)
}

// The loops below repeat the same few lines to decode a difference d with
// the bit buffer in registers:
//
//	if nb < 32 {
//		acc, nb = br.refillAt(acc, nb)
//	}
//	d, left := decodeFast(lut, acc, nb)
//	if left == nb {
//		d, left = br.long(t, acc, nb)
//	}
//	nb = left
//
// and keep the predictor switch outside the loops.

// runSingle decodes n samples of one component, the first at pix[i], the
// next ones st apart; up is the distance to the sample above.
func runSingle(br *bitReader, t *huffTable, pix []uint16, p, i, n, st, up int) {
	end := i + n*st
	if i < 0 || end-st >= len(pix) || n <= 0 {
		return
	}
	acc, nb := br.acc, br.n
	lut := &t.lut
	switch p {
	case 1: // Ra
		ra := pix[i-st]
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			ra += d
			pix[i] = ra
		}
	case 2: // Rb
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			pix[i] = pix[i-up] + d
		}
	case 3: // Rc
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			pix[i] = pix[i-up-st] + d
		}
	case 4: // Ra + Rb - Rc
		ra := int32(pix[i-st])
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			v := uint16(ra+int32(pix[i-up])-int32(pix[i-up-st])) + d
			pix[i] = v
			ra = int32(v)
		}
	case 5: // Ra + ((Rb - Rc) >> 1)
		ra := int32(pix[i-st])
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			v := uint16(ra+(int32(pix[i-up])-int32(pix[i-up-st]))>>1) + d
			pix[i] = v
			ra = int32(v)
		}
	case 6: // Rb + ((Ra - Rc) >> 1)
		ra := int32(pix[i-st])
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			v := uint16(int32(pix[i-up])+(ra-int32(pix[i-up-st]))>>1) + d
			pix[i] = v
			ra = int32(v)
		}
	case 7: // (Ra + Rb) >> 1
		ra := int32(pix[i-st])
		for ; i < end; i += st {
			if nb < 32 {
				acc, nb = br.refillAt(acc, nb)
			}
			d, left := decodeFast(lut, acc, nb)
			if left == nb {
				d, left = br.long(t, acc, nb)
			}
			nb = left
			v := uint16((ra+int32(pix[i-up]))>>1) + d
			pix[i] = v
			ra = int32(v)
		}
	}
	br.acc, br.n = acc, nb
}

// runMulti decodes the interleaved MCUs x0..x1-1 of row y: one sample of
// each scan component per MCU.
func runMulti(s *scan, p, y, x0, x1 int) {
	br := &s.br
	pix := s.pix
	st := s.stride
	up := s.width * st
	comps := s.comps[:s.ns]
	tables := s.tables[:s.ns]
	i0 := (y*s.width + x0) * st
	i1 := (y*s.width + x1) * st
	if i0 < 0 || i1 > len(pix) {
		return
	}
	var dd [4]uint16
	acc, nb := br.acc, br.n
	switch p {
	case 1:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				pix[i] = pix[i-st] + dd[k]
			}
		}
	case 2:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				pix[i] = pix[i-up] + dd[k]
			}
		}
	case 3:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				pix[i] = pix[i-up-st] + dd[k]
			}
		}
	case 4:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				ra, rb, rc := int32(pix[i-st]), int32(pix[i-up]), int32(pix[i-up-st])
				pix[i] = uint16(ra+rb-rc) + dd[k]
			}
		}
	case 5:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				ra, rb, rc := int32(pix[i-st]), int32(pix[i-up]), int32(pix[i-up-st])
				pix[i] = uint16(ra+(rb-rc)>>1) + dd[k]
			}
		}
	case 6:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				ra, rb, rc := int32(pix[i-st]), int32(pix[i-up]), int32(pix[i-up-st])
				pix[i] = uint16(rb+(ra-rc)>>1) + dd[k]
			}
		}
	case 7:
		for b := i0; b < i1; b += st {
			acc, nb = br.decodeMCU(tables, &dd, acc, nb)
			for k, c := range comps {
				i := b + c
				ra, rb := int32(pix[i-st]), int32(pix[i-up])
				pix[i] = uint16((ra+rb)>>1) + dd[k]
			}
		}
	}
	br.acc, br.n = acc, nb
}

// finish undoes the point transform and keeps every sample below
// 1<<precision (only corrupt data can produce larger values).
func (s *scan) finish() {
	mask := uint16(1<<s.precision - 1)
	pt := uint(s.pt)
	if pt == 0 && s.precision == 16 {
		return
	}
	pix := s.pix
	st := s.stride
	if s.ns == st {
		for i, v := range pix {
			pix[i] = v << pt & mask
		}
		return
	}
	for _, c := range s.comps[:s.ns] {
		for i := c; i < len(pix); i += st {
			pix[i] = pix[i] << pt & mask
		}
	}
}
