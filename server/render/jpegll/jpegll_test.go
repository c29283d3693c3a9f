package jpegll

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/server/internal/dicomtest"
)

// synth makes a w x h image with nc interleaved components of the given bit
// depth: gradients, noise of every amplitude, full-range noise, flat areas,
// stripes and hard edges, so that every difference category occurs. For
// 16 bits the checkerboard jumps between 0 and 32768 (SSSS=16).
func synth(w, h, nc, bits int, seed uint64) []uint16 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	maxv := 1<<bits - 1
	pix := make([]uint16, w*h*nc)
	for y := range h {
		for x := range w {
			region := x*8/w + 8*(y*4/h)
			for c := range nc {
				g := ((x*maxv/w+y*maxv/h)/2 + c*maxv/7) % (maxv + 1)
				var v int
				switch region % 8 {
				case 0:
					v = g
				case 1:
					v = g + rng.IntN(9) - 4
				case 2:
					a := 1 << (y % bits)
					v = g + rng.IntN(2*a+1) - a
				case 3:
					v = rng.IntN(maxv + 1)
				case 4:
					v = maxv / 3
				case 5:
					if x/2%2 == 0 {
						v = 0
					} else {
						v = maxv
					}
				case 6:
					hi := maxv
					if bits == 16 {
						hi = 32768
					}
					if (x+y+c)%2 == 0 {
						v = 0
					} else {
						v = hi
					}
				case 7:
					v = (x*977 + y*331 + c*101) & maxv
				}
				pix[(y*w+x)*nc+c] = uint16(min(max(v, 0), maxv))
			}
		}
	}
	return pix
}

func shifted(pix []uint16, pt int) []uint16 {
	out := make([]uint16, len(pix))
	for i, v := range pix {
		out[i] = v >> pt << pt
	}
	return out
}

func firstMismatch(got, want []uint16, nc, w int) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			p := i / nc
			return fmt.Sprintf("sample %d (x=%d y=%d c=%d): got %d, want %d", i, p%w, p/w, i%nc, got[i], want[i])
		}
	}
	return ""
}

// huffSymbols lists the symbols of the lossless Huffman tables in a stream.
func huffSymbols(t *testing.T, data []byte) map[byte]bool {
	t.Helper()
	syms := map[byte]bool{}
	pos := 2
	for {
		code, at, ok := nextMarker(data, pos)
		if !ok || code == mEOI {
			return syms
		}
		if code >= mRST0 && code <= mRST7 {
			pos = at + 2
			continue
		}
		p, next, err := segment(data, at)
		if err != nil {
			t.Fatal(err)
		}
		if code == mDHT {
			for len(p) >= 17 {
				n := 0
				for l := 1; l <= 16; l++ {
					n += int(p[l])
				}
				if p[0]>>4 == 0 {
					for _, s := range p[17 : 17+n] {
						syms[s] = true
					}
				}
				p = p[17+n:]
			}
		}
		pos = next
	}
}

// describe lists the markers of a stream with the frame and scan parameters.
func describe(data []byte) string {
	var parts []string
	pos := 2
	for {
		code, at, ok := nextMarker(data, pos)
		if !ok || code == mEOI {
			return strings.Join(parts, " ")
		}
		if code >= mRST0 && code <= mRST7 {
			pos = at + 2
			continue
		}
		p, next, err := segment(data, at)
		if err != nil {
			return strings.Join(append(parts, err.Error()), " ")
		}
		switch code {
		case mSOF3:
			parts = append(parts, fmt.Sprintf("SOF3(P=%d,Nf=%d)", p[0], p[5]))
		case mSOS:
			ns := int(p[0])
			var tbls []string
			for i := range ns {
				tbls = append(tbls, fmt.Sprint(p[2+2*i]>>4))
			}
			parts = append(parts, fmt.Sprintf("SOS(Ns=%d,Td=%s,Ss=%d,Al=%d)", ns, strings.Join(tbls, "/"), p[1+2*ns], p[3+2*ns]&15))
		case mDRI:
			parts = append(parts, fmt.Sprintf("DRI(%d)", int(p[0])<<8|int(p[1])))
		default:
			parts = append(parts, fmt.Sprintf("FF%02X", code))
		}
		pos = next
	}
}

func needDCMTK(tb testing.TB) {
	tb.Helper()
	testtool.Need(tb, testtool.DCMTK, "dcmcjpeg", "dcmdjpeg")
}

// dcmtkEncode compresses im with dcmcjpeg and returns the JPEG stream and
// the compressed file's path.
func dcmtkEncode(tb testing.TB, dir string, im *testImage, args []string) ([]byte, string, string) {
	tb.Helper()
	in := filepath.Join(dir, im.name+".dcm")
	if _, err := os.Stat(in); err != nil {
		if err := writePart10(in, im); err != nil {
			tb.Fatal(err)
		}
	}
	out := filepath.Join(dir, im.name+"_"+strings.ReplaceAll(strings.Join(args, ""), "+", "_")+".dcm")
	dicomtest.Run(tb, "dcmcjpeg", append(append([]string{}, args...), in, out)...)
	pd, err := readPixelData(out)
	if err != nil {
		tb.Fatal(err)
	}
	if pd.fragments == nil {
		tb.Fatalf("dcmcjpeg %v wrote native pixel data (%s)", args, pd.transferSyntax)
	}
	return pd.jpegFrame(), out, pd.transferSyntax
}

// dcmtkDecode decompresses a file with dcmdjpeg and returns its samples.
func dcmtkDecode(tb testing.TB, path string, im *testImage) []uint16 {
	tb.Helper()
	out := strings.TrimSuffix(path, ".dcm") + "_dec.dcm"
	dicomtest.Run(tb, "dcmdjpeg", "+px", path, out)
	pd, err := readPixelData(out)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := pd.samples(im.bitsAllocated, len(im.pix))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func dcmtkImages() []*testImage {
	return []*testImage{
		{name: "gray8", width: 203, height: 97, spp: 1, bitsAllocated: 8, bits: 8},
		{name: "gray12", width: 200, height: 120, spp: 1, bitsAllocated: 16, bits: 12},
		{name: "gray16", width: 160, height: 99, spp: 1, bitsAllocated: 16, bits: 16},
		{name: "rgb8", width: 97, height: 64, spp: 3, bitsAllocated: 8, bits: 8},
	}
}

// TestDCMTK compresses synthetic images with dcmcjpeg in every lossless
// variant it offers and checks Decode against the original samples and
// against dcmdjpeg.
func TestDCMTK(t *testing.T) {
	needDCMTK(t)
	dir := t.TempDir()
	pts := map[string]int{"gray8": 2, "gray12": 3, "gray16": 5, "rgb8": 1}
	for i, im := range dcmtkImages() {
		im.pix = synth(im.width, im.height, im.spp, im.bits, uint64(i+1))
		t.Run(im.name, func(t *testing.T) {
			t.Parallel()
			var variants [][]string
			for _, pt := range []int{0, pts[im.name]} {
				ptArgs := []string{}
				if pt > 0 {
					ptArgs = []string{"+pt", fmt.Sprint(pt)}
				}
				variants = append(variants, append([]string{"+e1"}, ptArgs...))
				for sv := 1; sv <= 7; sv++ {
					variants = append(variants, append([]string{"+el", "+sv", fmt.Sprint(sv)}, ptArgs...))
				}
			}
			if im.spp == 1 {
				// DCMTK's old pseudo-lossless codec (which goes through its
				// image rendering and, unlike +tl, encodes 12-bit data with
				// precision 12). Color would be converted to YCbCr.
				variants = append(variants, []string{"+pl", "+e1"}, []string{"+pl", "+el", "+sv", "5"})
			}
			for _, args := range variants {
				t.Run(strings.Join(args, ""), func(t *testing.T) {
					stream, path, ts := dcmtkEncode(t, dir, im, args)
					pseudo := args[0] == "+pl"
					if pseudo {
						args = args[1:]
					}
					wantTS := "1.2.840.10008.1.2.4.57"
					if args[0] == "+e1" {
						wantTS = "1.2.840.10008.1.2.4.70"
					}
					if ts != wantTS {
						t.Errorf("transfer syntax %s, want %s", ts, wantTS)
					}
					t.Logf("%s: %d bytes: %s", ts, len(stream), describe(stream))
					w, h, nc, prec, err := DecodeConfig(stream)
					if err != nil {
						t.Fatal(err)
					}
					// DCMTK's true lossless codec encodes BitsAllocated 16
					// with precision 16 even when BitsStored is 12.
					if w != im.width || h != im.height || nc != im.spp || prec < im.bits || prec > im.bitsAllocated {
						t.Fatalf("DecodeConfig = %d %d %d %d", w, h, nc, prec)
					}
					img, err := Decode(stream)
					if err != nil {
						t.Fatal(err)
					}
					if img.Width != im.width || img.Height != im.height || img.Components != im.spp || img.Precision != prec {
						t.Fatalf("image %dx%dx%d P%d", img.Width, img.Height, img.Components, img.Precision)
					}
					pt := 0
					if len(args) >= 2 && args[len(args)-2] == "+pt" {
						fmt.Sscan(args[len(args)-1], &pt)
					}
					if m := firstMismatch(img.Pix, shifted(im.pix, pt), im.spp, im.width); m != "" {
						t.Errorf("vs original: %s", m)
					}
					if m := firstMismatch(img.Pix, dcmtkDecode(t, path, im), im.spp, im.width); m != "" {
						t.Errorf("vs dcmdjpeg: %s", m)
					}
					if args[0] == "+e1" {
						// With predictor 1 every difference category occurs
						// in the synthetic images.
						syms := huffSymbols(t, stream)
						for s := 0; s <= im.bits-pt; s++ {
							if !syms[byte(s)] {
								t.Errorf("category %d not in the Huffman tables", s)
							}
						}
					}
				})
			}
		})
	}
}

type synthCase struct {
	name          string
	w, h, nc, bit int
	opts          encOpts
}

// dcmtkCanDecode tells whether dcmdjpeg can check the case: DICOM has 1 or 3
// samples per pixel.
func (c synthCase) dcmtkCanDecode() bool {
	return c.nc == 1 || c.nc == 3
}

func (c synthCase) expected(pix []uint16) []uint16 {
	want := make([]uint16, len(pix))
	for _, sc := range c.opts.scans {
		for _, comp := range sc.comps {
			for j := comp; j < len(pix); j += c.nc {
				want[j] = pix[j] >> sc.pt << sc.pt
			}
		}
	}
	return want
}

func synthCases() []synthCase {
	var cases []synthCase
	add := func(name string, w, h, nc, bits int, o encOpts) {
		cases = append(cases, synthCase{name, w, h, nc, bits, o})
	}
	for pred := 1; pred <= 7; pred++ {
		for _, bits := range []int{2, 8, 12, 16} {
			for _, pt := range []int{0, 1} {
				for _, nc := range []int{1, 3} {
					for _, ri := range []int{0, 1, 4} { // restart interval in lines, 0: none
						w, h := 37, 19
						restart := ri * w
						name := fmt.Sprintf("p%d_b%d_pt%d_c%d_ri%d", pred, bits, pt, nc, restart)
						add(name+"_int", w, h, nc, bits, encOpts{scans: interleaved(nc, pred, pt), restart: restart})
						if nc > 1 {
							add(name+"_sep", w, h, nc, bits, encOpts{scans: separate(nc, pred, pt), restart: restart, fill: true})
						}
					}
				}
			}
		}
	}
	// Tiny frames.
	for _, d := range [][2]int{{1, 1}, {1, 9}, {9, 1}, {2, 2}} {
		for pred := 1; pred <= 7; pred++ {
			add(fmt.Sprintf("tiny%dx%d_p%d", d[0], d[1], pred), d[0], d[1], 1, 16, encOpts{scans: interleaved(1, pred, 0)})
			add(fmt.Sprintf("tiny%dx%d_p%d_ri1", d[0], d[1], pred), d[0], d[1], 2, 8, encOpts{scans: interleaved(2, pred, 0), restart: d[0]})
		}
	}
	// Four components, partial interleave, a predictor and a point
	// transform per scan, shared and redefined tables.
	add("rgba_mixed", 41, 23, 4, 12, encOpts{restart: 41 * 2, fill: true, scans: []encScan{
		{comps: []int{0, 1}, pred: 4, pt: 0, tables: []int{0, 1}},
		{comps: []int{2}, pred: 7, pt: 2, tables: []int{1}},
		{comps: []int{3}, pred: 6, pt: 0, tables: []int{1}},
	}})
	add("shared_table", 41, 23, 3, 16, encOpts{scans: []encScan{
		{comps: []int{0, 1, 2}, pred: 5, tables: []int{3, 3, 3}},
	}})
	add("long_codes", 50, 30, 1, 16, encOpts{scans: []encScan{{comps: []int{0}, pred: 1, tables: []int{2}, longCodes: true}}})
	add("long_codes_rgb", 50, 30, 3, 12, encOpts{restart: 50, scans: []encScan{{comps: []int{0, 1, 2}, pred: 6, tables: []int{0, 1, 0}, longCodes: true}}})
	add("ids_odd", 20, 20, 3, 8, encOpts{ids: []byte{'R', 'G', 'B'}, scans: separate(3, 2, 0)})
	return cases
}

// TestSynthetic checks the decoder against the test encoder in all the
// variants DCMTK cannot produce.
func TestSynthetic(t *testing.T) {
	for i, c := range synthCases() {
		pix := synth(c.w, c.h, c.nc, c.bit, uint64(i))
		stream := encodeLossless(pix, c.w, c.h, c.nc, c.bit, c.opts)
		img, err := Decode(stream)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := c.expected(pix)
		if img.Width != c.w || img.Height != c.h || img.Components != c.nc || img.Precision != c.bit {
			t.Errorf("%s: image %dx%dx%d P%d", c.name, img.Width, img.Height, img.Components, img.Precision)
		}
		if m := firstMismatch(img.Pix, want, c.nc, c.w); m != "" {
			t.Errorf("%s: %s", c.name, m)
		}
	}
}

// TestSyntheticVsDCMTK wraps test-encoder streams (restart intervals,
// non-interleaved scans, redefined and long Huffman tables, fill bytes...)
// in DICOM files and checks that dcmdjpeg decodes them as Decode does.
func TestSyntheticVsDCMTK(t *testing.T) {
	needDCMTK(t)
	dir := t.TempDir()
	cases := synthCases()
	for i, c := range cases {
		if !c.dcmtkCanDecode() {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pix := synth(c.w, c.h, c.nc, c.bit, uint64(i))
			stream := encodeLossless(pix, c.w, c.h, c.nc, c.bit, c.opts)
			im := &testImage{name: c.name, width: c.w, height: c.h, spp: c.nc, bitsAllocated: 8, bits: c.bit, jpeg: stream}
			if c.bit > 8 {
				im.bitsAllocated = 16
			}
			im.pix = make([]uint16, len(pix)) // only its length is used
			path := filepath.Join(dir, c.name+".dcm")
			if err := writePart10(path, im); err != nil {
				t.Fatal(err)
			}
			img, err := Decode(stream)
			if err != nil {
				t.Fatal(err)
			}
			if m := firstMismatch(img.Pix, c.expected(pix), c.nc, c.w); m != "" {
				t.Errorf("vs original: %s", m)
			}
			if m := firstMismatch(img.Pix, dcmtkDecode(t, path, im), c.nc, c.w); m != "" {
				t.Errorf("vs dcmdjpeg: %s (%s)", m, describe(stream))
			}
		})
	}
}

func TestSSSS16(t *testing.T) {
	// Alternating 0 and 32768: with predictor 1 every difference but the
	// first is +-32768, coded as category 16 without additional bits.
	w, h := 33, 5
	pix := make([]uint16, w*h)
	for i := range pix {
		if i%2 == 1 {
			pix[i] = 32768
		}
	}
	pix[7] = 65535
	stream := encodeLossless(pix, w, h, 1, 16, encOpts{scans: interleaved(1, 1, 0)})
	if !huffSymbols(t, stream)[16] {
		t.Fatal("no category 16 in the stream")
	}
	img, err := Decode(stream)
	if err != nil {
		t.Fatal(err)
	}
	if m := firstMismatch(img.Pix, pix, 1, w); m != "" {
		t.Fatal(m)
	}
}

func TestRestartMarkerMissing(t *testing.T) {
	w, h := 16, 8
	pix := synth(w, h, 1, 12, 3)
	stream := encodeLossless(pix, w, h, 1, 12, encOpts{scans: interleaved(1, 1, 0), restart: 2 * w})
	i := bytes.Index(stream, []byte{0xFF, 0xD1})
	if i < 0 {
		t.Fatal("no RST1 in stream")
	}
	bad := bytes.Clone(stream)
	bad[i+1] = 0xFE // turn RST1 into a COM marker
	if _, err := Decode(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
	// A wrong restart number is tolerated (libjpeg resynchronizes too).
	bad[i+1] = 0xD5
	img, err := Decode(bad)
	if err != nil {
		t.Fatal(err)
	}
	if m := firstMismatch(img.Pix, pix, 1, w); m != "" {
		t.Fatal(m)
	}
}

func sofStream(code byte, prec, w, h int, comps ...byte) []byte {
	p := []byte{byte(prec), byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(len(comps) / 2)}
	for i := 0; i+1 < len(comps); i += 2 {
		p = append(p, comps[i], comps[i+1], 0)
	}
	out := []byte{0xFF, 0xD8, 0xFF, code, byte((len(p) + 2) >> 8), byte(len(p) + 2)}
	return append(append(out, p...), 0xFF, 0xD9)
}

func TestErrors(t *testing.T) {
	small := encodeLossless(synth(8, 8, 1, 8, 1), 8, 8, 1, 8, encOpts{scans: interleaved(1, 1, 0)})
	midLine := encodeLossless(synth(8, 8, 1, 8, 1), 8, 8, 1, 8, encOpts{scans: interleaved(1, 1, 0), restart: 12})
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"not jpeg", []byte("hello, world"), ErrCorrupt},
		{"soi only", []byte{0xFF, 0xD8}, ErrCorrupt},
		{"baseline", sofStream(0xC0, 8, 8, 8, 1, 0x11), ErrUnsupported},
		{"extended", sofStream(0xC1, 12, 8, 8, 1, 0x11), ErrUnsupported},
		{"progressive", sofStream(0xC2, 8, 8, 8, 1, 0x11), ErrUnsupported},
		{"arithmetic lossless", sofStream(0xCB, 8, 8, 8, 1, 0x11), ErrUnsupported},
		{"differential lossless", sofStream(0xC7, 8, 8, 8, 1, 0x11), ErrUnsupported},
		{"jpeg-ls", sofStream(0xF7, 8, 8, 8, 1, 0x11), ErrUnsupported},
		{"subsampled", sofStream(0xC3, 8, 8, 8, 1, 0x22, 2, 0x11, 3, 0x11), ErrUnsupported},
		{"5 components", sofStream(0xC3, 8, 8, 8, 1, 0x11, 2, 0x11, 3, 0x11, 4, 0x11, 5, 0x11), ErrUnsupported},
		{"too large", sofStream(0xC3, 16, 65535, 65535, 1, 0x11), ErrUnsupported},
		{"dnl height", sofStream(0xC3, 8, 8, 0, 1, 0x11), ErrUnsupported},
		{"precision 1", sofStream(0xC3, 1, 8, 8, 1, 0x11), ErrCorrupt},
		{"precision 17", sofStream(0xC3, 17, 8, 8, 1, 0x11), ErrCorrupt},
		{"zero width", sofStream(0xC3, 8, 0, 8, 1, 0x11), ErrCorrupt},
		{"duplicate id", sofStream(0xC3, 8, 8, 8, 1, 0x11, 1, 0x11), ErrCorrupt},
		{"no scan", sofStream(0xC3, 8, 1, 1, 1, 0x11), ErrCorrupt},
		{"big frame, tiny data", sofStream(0xC3, 16, 16384, 16384, 1, 0x11), ErrCorrupt},
		{"truncated", small[:len(small)/2], ErrCorrupt},
		{"restart in mid-line", midLine, ErrUnsupported},
	}
	for _, c := range cases {
		_, err := Decode(c.data)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Decode error %v, want %v", c.name, err, c.want)
		}
	}
	// DecodeConfig reads only the header.
	if _, _, _, _, err := DecodeConfig(sofStream(0xC0, 8, 8, 8, 1, 0x11)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("DecodeConfig baseline: %v", err)
	}
	w, h, nc, p, err := DecodeConfig(sofStream(0xC3, 16, 16384, 16384, 1, 0x11))
	if err != nil || w != 16384 || h != 16384 || nc != 1 || p != 16 {
		t.Errorf("DecodeConfig = %d %d %d %d %v", w, h, nc, p, err)
	}
	// A single component may declare any sampling factors.
	if _, _, _, _, err := DecodeConfig(sofStream(0xC3, 8, 8, 8, 1, 0x22)); err != nil {
		t.Errorf("gray 2x2: %v", err)
	}
}

// TestMangled decodes every prefix and many corrupted versions of valid
// streams: errors must be ErrCorrupt or ErrUnsupported, never panics.
func TestMangled(t *testing.T) {
	var streams [][]byte
	for _, c := range synthCases()[:40] {
		pix := synth(c.w, c.h, c.nc, c.bit, 9)
		streams = append(streams, encodeLossless(pix, c.w, c.h, c.nc, c.bit, c.opts))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(data []byte) {
		img, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		checkImage(t, img)
	}
	for si, s := range streams {
		if si%8 == 0 {
			for n := range len(s) {
				check(s[:n])
			}
		}
		for range 200 {
			b := bytes.Clone(s)
			for range 1 + rng.IntN(4) {
				b[rng.IntN(len(b))] = byte(rng.IntN(256))
			}
			check(b)
		}
	}
}

func checkImage(t *testing.T, img *Image) {
	t.Helper()
	if len(img.Pix) != img.Width*img.Height*img.Components {
		t.Fatalf("len(Pix) = %d for %dx%dx%d", len(img.Pix), img.Width, img.Height, img.Components)
	}
	lim := uint32(1) << img.Precision
	for _, v := range img.Pix {
		if uint32(v) >= lim {
			t.Fatalf("sample %d with precision %d", v, img.Precision)
		}
	}
}

// fuzzSeeds are streams from the test encoder; testdata/fuzz/FuzzDecode has
// DCMTK-made ones (see TestWriteFuzzSeeds).
func fuzzSeeds() [][]byte {
	var out [][]byte
	add := func(w, h, nc, bits int, o encOpts) {
		out = append(out, encodeLossless(synth(w, h, nc, bits, 7), w, h, nc, bits, o))
	}
	add(8, 6, 1, 8, encOpts{scans: interleaved(1, 1, 0)})
	add(8, 6, 1, 16, encOpts{scans: interleaved(1, 6, 0), restart: 8})
	add(7, 5, 3, 12, encOpts{scans: separate(3, 4, 1), restart: 3, fill: true})
	add(6, 6, 4, 16, encOpts{scans: []encScan{{comps: []int{0, 1, 2, 3}, pred: 7, tables: []int{0, 1, 2, 3}, longCodes: true}}})
	return out
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, h, nc, p, cfgErr := DecodeConfig(data)
		img, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrUnsupported", err)
			}
			return
		}
		if cfgErr != nil {
			t.Fatalf("Decode succeeded, DecodeConfig failed: %v", cfgErr)
		}
		if w != img.Width || h != img.Height || nc != img.Components || p != img.Precision {
			t.Fatalf("DecodeConfig %d %d %d %d, image %dx%dx%d P%d", w, h, nc, p, img.Width, img.Height, img.Components, img.Precision)
		}
		checkImage(t, img)
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecode from small
// DCMTK-compressed images when JPEGLL_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("JPEGLL_WRITE_SEEDS") != "1" {
		t.Skip("set JPEGLL_WRITE_SEEDS=1 to regenerate the seed corpus")
	}
	needDCMTK(t)
	dir := t.TempDir()
	seedDir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := []struct {
		im   testImage
		args []string
	}{
		{testImage{name: "gray8", width: 16, height: 12, spp: 1, bitsAllocated: 8, bits: 8}, []string{"+e1"}},
		{testImage{name: "gray12", width: 16, height: 12, spp: 1, bitsAllocated: 16, bits: 12}, []string{"+el", "+sv", "7", "+pt", "1"}},
		{testImage{name: "gray16", width: 16, height: 12, spp: 1, bitsAllocated: 16, bits: 16}, []string{"+el", "+sv", "6"}},
		{testImage{name: "rgb8", width: 12, height: 8, spp: 3, bitsAllocated: 8, bits: 8}, []string{"+el", "+sv", "4"}},
	}
	for i, s := range seeds {
		im := s.im
		im.pix = synth(im.width, im.height, im.spp, im.bits, uint64(i+100))
		stream, _, _ := dcmtkEncode(t, dir, &im, s.args)
		name := fmt.Sprintf("dcmtk_%s_%s", im.name, strings.ReplaceAll(strings.Join(s.args, ""), "+", ""))
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", stream)
		if err := os.WriteFile(filepath.Join(seedDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// benchImage is a radiograph-like 12 or 16-bit frame: a collimated field
// with smooth anatomy-like structure, edges and a few bits of noise.
func benchImage(w, h, bits int) []uint16 {
	rng := rand.New(rand.NewPCG(42, 43))
	maxv := float64(int(1)<<bits - 1)
	pix := make([]uint16, w*h)
	for y := range h {
		for x := range w {
			var v float64
			inside := x > w/20 && x < w-w/20 && y > h/25 && y < h-h/25
			if inside {
				fx, fy := float64(x)/float64(w), float64(y)/float64(h)
				v = 0.45 + 0.2*math.Sin(fx*9)*math.Cos(fy*7) + 0.1*math.Sin(fx*40+fy*13)
				if (x/180+y/160)%5 == 0 {
					v += 0.15 // bone-like plateaus
				}
				v = v*maxv + rng.NormFloat64()*maxv/800
			} else {
				v = maxv*0.02 + rng.NormFloat64()*maxv/2000
			}
			pix[y*w+x] = uint16(min(max(v, 0), maxv))
		}
	}
	return pix
}

type benchCase struct {
	name string
	bits int
}

var benchCases = []benchCase{{"12bit_sv1", 12}, {"16bit_sv1", 16}}

// benchFile writes and compresses the benchmark image with dcmcjpeg +e1.
func benchFile(b *testing.B, dir string, bc benchCase) ([]byte, string, *testImage) {
	im := &testImage{name: bc.name, width: 2140, height: 1760, spp: 1, bitsAllocated: 16, bits: bc.bits}
	im.pix = benchImage(im.width, im.height, im.bits)
	stream, path, _ := dcmtkEncode(b, dir, im, []string{"+e1"})
	return stream, path, im
}

func BenchmarkDecode(b *testing.B) {
	needDCMTK(b)
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			stream, _, im := benchFile(b, b.TempDir(), bc)
			img, err := Decode(stream)
			if err != nil {
				b.Fatal(err)
			}
			if m := firstMismatch(img.Pix, im.pix, 1, im.width); m != "" {
				b.Fatal(m)
			}
			b.Logf("%d bytes: %s", len(stream), describe(stream))
			b.SetBytes(int64(2 * len(im.pix)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := Decode(stream); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(stream))*8/float64(len(im.pix)), "bits/sample")
		})
	}
}

// BenchmarkDcmdjpeg times DCMTK's dcmdjpeg on the same files for reference
// (a whole process run: start-up, file reading and writing included).
func BenchmarkDcmdjpeg(b *testing.B) {
	needDCMTK(b)
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			_, path, im := benchFile(b, dir, bc)
			out := filepath.Join(dir, "out.dcm")
			b.SetBytes(int64(2 * len(im.pix)))
			b.ResetTimer()
			for b.Loop() {
				dicomtest.Run(b, "dcmdjpeg", path, out)
			}
		})
	}
}
