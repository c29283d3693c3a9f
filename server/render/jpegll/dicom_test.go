package jpegll

// Minimal DICOM Part 10 writing and reading for the tests: enough to hand an
// image to DCMTK and to get the (encapsulated or native) pixel data back.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

const (
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsJPEGLossless = "1.2.840.10008.1.2.4.57"
	sopClassSC     = "1.2.840.10008.5.1.4.1.1.7" // Secondary Capture Image Storage
)

// testImage is a synthetic image in DICOM terms.
type testImage struct {
	name                string
	width, height, spp  int
	bitsAllocated, bits int      // bits = BitsStored
	pix                 []uint16 // interleaved, len = width*height*spp
	jpeg                []byte   // if set, stored encapsulated as JPEG Lossless (.57) instead of pix
}

type elemWriter struct{ bytes.Buffer }

func (w *elemWriter) header(group, elem uint16, vr string, n int) {
	var b [12]byte
	binary.LittleEndian.PutUint16(b[0:], group)
	binary.LittleEndian.PutUint16(b[2:], elem)
	copy(b[4:], vr)
	switch vr {
	case "": // items and delimiters
		binary.LittleEndian.PutUint32(b[4:], uint32(n))
		w.Write(b[:8])
	case "OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL", "OV":
		binary.LittleEndian.PutUint32(b[8:], uint32(n))
		w.Write(b[:12])
	default:
		binary.LittleEndian.PutUint16(b[6:], uint16(n))
		w.Write(b[:8])
	}
}

func (w *elemWriter) str(group, elem uint16, vr, s string) {
	if len(s)%2 == 1 {
		if vr == "UI" {
			s += "\x00"
		} else {
			s += " "
		}
	}
	w.header(group, elem, vr, len(s))
	w.WriteString(s)
}

func (w *elemWriter) us(group, elem uint16, v int) {
	w.header(group, elem, "US", 2)
	binary.Write(w, binary.LittleEndian, uint16(v))
}

func (w *elemWriter) ul(group, elem uint16, v int) {
	w.header(group, elem, "UL", 4)
	binary.Write(w, binary.LittleEndian, uint32(v))
}

func (w *elemWriter) bin(group, elem uint16, vr string, b []byte) {
	if len(b)%2 == 1 {
		b = append(b[:len(b):len(b)], 0)
	}
	w.header(group, elem, vr, len(b))
	w.Write(b)
}

// writePart10 writes im as an explicit VR little endian Part 10 file.
func writePart10(path string, im *testImage) error {
	uid := "1.2.826.0.1.3680043.9.7433.99." + fmt.Sprint(len(im.name)*7919+im.width*31+im.height)
	var meta elemWriter
	meta.bin(0x0002, 0x0001, "OB", []byte{0, 1})
	meta.str(0x0002, 0x0002, "UI", sopClassSC)
	meta.str(0x0002, 0x0003, "UI", uid+".3")
	if im.jpeg != nil {
		meta.str(0x0002, 0x0010, "UI", tsJPEGLossless)
	} else {
		meta.str(0x0002, 0x0010, "UI", tsExplicitLE)
	}
	meta.str(0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.9.7433.1.1")

	var ds elemWriter
	ds.str(0x0008, 0x0016, "UI", sopClassSC)
	ds.str(0x0008, 0x0018, "UI", uid+".3")
	ds.str(0x0020, 0x000D, "UI", uid+".1")
	ds.str(0x0020, 0x000E, "UI", uid+".2")
	ds.us(0x0028, 0x0002, im.spp)
	if im.spp == 1 {
		ds.str(0x0028, 0x0004, "CS", "MONOCHROME2")
	} else {
		ds.str(0x0028, 0x0004, "CS", "RGB")
		ds.us(0x0028, 0x0006, 0)
	}
	ds.us(0x0028, 0x0010, im.height)
	ds.us(0x0028, 0x0011, im.width)
	ds.us(0x0028, 0x0100, im.bitsAllocated)
	ds.us(0x0028, 0x0101, im.bits)
	ds.us(0x0028, 0x0102, im.bits-1)
	ds.us(0x0028, 0x0103, 0)
	switch {
	case im.jpeg != nil:
		ds.header(0x7FE0, 0x0010, "OB", undefinedLength)
		ds.header(0xFFFE, 0xE000, "", 0) // empty Basic Offset Table
		frag := im.jpeg
		if len(frag)%2 == 1 {
			frag = append(frag[:len(frag):len(frag)], 0)
		}
		ds.header(0xFFFE, 0xE000, "", len(frag))
		ds.Write(frag)
		ds.header(0xFFFE, 0xE0DD, "", 0)
	case im.bitsAllocated == 8:
		b := make([]byte, len(im.pix))
		for i, v := range im.pix {
			b[i] = byte(v)
		}
		ds.bin(0x7FE0, 0x0010, "OB", b)
	default:
		b := make([]byte, 2*len(im.pix))
		for i, v := range im.pix {
			binary.LittleEndian.PutUint16(b[2*i:], v)
		}
		ds.bin(0x7FE0, 0x0010, "OW", b)
	}

	var out bytes.Buffer
	out.Write(make([]byte, 128))
	out.WriteString("DICM")
	var gl elemWriter
	gl.ul(0x0002, 0x0000, meta.Len())
	out.Write(gl.Bytes())
	out.Write(meta.Bytes())
	out.Write(ds.Bytes())
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// pixelData is what readPixelData finds.
type pixelData struct {
	transferSyntax string
	native         []byte   // defined-length pixel data
	fragments      [][]byte // encapsulated pixel data, without the Basic Offset Table
}

const undefinedLength = 0xFFFFFFFF

// readPixelData parses an explicit VR little endian Part 10 file (all that
// DCMTK writes here: the JPEG transfer syntaxes encode the data set that way
// too) and returns its pixel data.
func readPixelData(path string) (*pixelData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, errors.New("not a Part 10 file")
	}
	pd := &pixelData{}
	_, err = walkElements(b, 132, len(b), func(group, elem uint16, val []byte, undefined bool, pos int) (int, error) {
		switch {
		case group == 0x0002 && elem == 0x0010:
			pd.transferSyntax = string(bytes.TrimRight(val, "\x00 "))
		case group == 0x7FE0 && elem == 0x0010 && !undefined:
			pd.native = val
		case group == 0x7FE0 && elem == 0x0010 && undefined:
			frags, next, err := readFragments(b, pos)
			if err != nil {
				return 0, err
			}
			pd.fragments = frags
			return next, nil
		}
		return -1, nil
	})
	if err != nil {
		return nil, err
	}
	if pd.native == nil && pd.fragments == nil {
		return nil, errors.New("no pixel data")
	}
	return pd, nil
}

// walkElements visits the explicit VR little endian elements in b[pos:end].
// visit gets the value (nil when the length is undefined) and the position
// after the element header; it may return the position where walking goes
// on (-1: after the value, or after the undefined-length sequence). A
// sequence or item delimiter ends the walk; its position after is returned.
func walkElements(b []byte, pos, end int, visit func(group, elem uint16, val []byte, undefined bool, pos int) (int, error)) (int, error) {
	for pos < end {
		if pos+8 > end {
			return 0, errors.New("truncated element")
		}
		group := binary.LittleEndian.Uint16(b[pos:])
		elem := binary.LittleEndian.Uint16(b[pos+2:])
		if group == 0xFFFE { // item, item or sequence delimiter
			n := binary.LittleEndian.Uint32(b[pos+4:])
			if elem == 0xE00D || elem == 0xE0DD {
				return pos + 8, nil
			}
			return 0, fmt.Errorf("unexpected item at %d (length %d)", pos, n)
		}
		vr := string(b[pos+4 : pos+6])
		var n uint32
		switch vr {
		case "OB", "OW", "SQ", "UN", "UT", "UC", "UR", "OD", "OF", "OL", "OV":
			if pos+12 > end {
				return 0, errors.New("truncated element")
			}
			n = binary.LittleEndian.Uint32(b[pos+8:])
			pos += 12
		default:
			n = uint32(binary.LittleEndian.Uint16(b[pos+6:]))
			pos += 8
		}
		if n == undefinedLength {
			next, err := visit(group, elem, nil, true, pos)
			if err != nil {
				return 0, err
			}
			if next < 0 {
				if vr != "SQ" && vr != "UN" {
					return 0, fmt.Errorf("undefined length for VR %s", vr)
				}
				if next, err = skipSequence(b, pos); err != nil {
					return 0, err
				}
			}
			pos = next
			continue
		}
		if uint64(pos)+uint64(n) > uint64(end) {
			return 0, errors.New("element value past the end")
		}
		next, err := visit(group, elem, b[pos:pos+int(n)], false, pos)
		if err != nil {
			return 0, err
		}
		if next < 0 {
			next = pos + int(n)
		}
		pos = next
	}
	return pos, nil
}

// skipSequence skips the items of an undefined-length sequence starting at
// pos and returns the position after its delimiter.
func skipSequence(b []byte, pos int) (int, error) {
	for {
		if pos+8 > len(b) {
			return 0, errors.New("truncated sequence")
		}
		group := binary.LittleEndian.Uint16(b[pos:])
		elem := binary.LittleEndian.Uint16(b[pos+2:])
		n := binary.LittleEndian.Uint32(b[pos+4:])
		pos += 8
		switch {
		case group == 0xFFFE && elem == 0xE0DD:
			return pos, nil
		case group == 0xFFFE && elem == 0xE000 && n == undefinedLength:
			next, err := walkElements(b, pos, len(b), func(uint16, uint16, []byte, bool, int) (int, error) { return -1, nil })
			if err != nil {
				return 0, err
			}
			pos = next
		case group == 0xFFFE && elem == 0xE000:
			pos += int(n)
		default:
			return 0, errors.New("bad item in sequence")
		}
	}
}

// readFragments reads encapsulated pixel data items starting at pos: the
// Basic Offset Table item, then fragments up to the sequence delimiter.
func readFragments(b []byte, pos int) ([][]byte, int, error) {
	var frags [][]byte
	first := true
	for {
		if pos+8 > len(b) {
			return nil, 0, errors.New("truncated encapsulated pixel data")
		}
		group := binary.LittleEndian.Uint16(b[pos:])
		elem := binary.LittleEndian.Uint16(b[pos+2:])
		n := int(binary.LittleEndian.Uint32(b[pos+4:]))
		pos += 8
		if group == 0xFFFE && elem == 0xE0DD {
			return frags, pos, nil
		}
		if group != 0xFFFE || elem != 0xE000 || n < 0 || pos+n > len(b) {
			return nil, 0, errors.New("bad fragment item")
		}
		if !first {
			frags = append(frags, b[pos:pos+n])
		}
		first = false
		pos += n
	}
}

// jpegFrame concatenates the fragments of the single frame.
func (pd *pixelData) jpegFrame() []byte {
	var out []byte
	for _, f := range pd.fragments {
		out = append(out, f...)
	}
	return out
}

// samples converts native pixel data to samples.
func (pd *pixelData) samples(bitsAllocated, n int) ([]uint16, error) {
	out := make([]uint16, n)
	switch bitsAllocated {
	case 8:
		if len(pd.native) < n {
			return nil, fmt.Errorf("native pixel data has %d bytes, want %d", len(pd.native), n)
		}
		for i := range out {
			out[i] = uint16(pd.native[i])
		}
	case 16:
		if len(pd.native) < 2*n {
			return nil, fmt.Errorf("native pixel data has %d bytes, want %d", len(pd.native), 2*n)
		}
		for i := range out {
			out[i] = binary.LittleEndian.Uint16(pd.native[2*i:])
		}
	default:
		return nil, fmt.Errorf("bits allocated %d", bitsAllocated)
	}
	return out, nil
}
