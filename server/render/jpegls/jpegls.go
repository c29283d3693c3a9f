// Package jpegls encodes and decodes JPEG-LS (ITU-T T.87 | ISO/IEC 14495-1) as used by the
// DICOM transfer syntaxes 1.2.840.10008.1.2.4.80 (JPEG-LS Lossless) and
// 1.2.840.10008.1.2.4.81 (JPEG-LS Lossy, Near-Lossless).
//
// Hand-written with the standard library only: no maintained pure-Go JPEG-LS module is served
// by our module proxy, and CharLS (C++) through cgo would break the station's single static
// Windows binary. Bit-exactness with DCMTK (dcmcjpls, dcmdjpls, which embed CharLS) is tested
// instead: pixels both ways, and the compressed bytes.
//
// Supported: sample precision 2..16 bits, 1 to 4 components with 1x1 sampling, interleave
// modes none (one scan per component), line and sample, NEAR 0 (lossless) and above
// (near-lossless) for decoding and encoding, LSE preset coding parameters (type 1: MAXVAL,
// T1-T3, RESET) and the default ones of T.87 C.2.4.1.1, restart intervals (DRI/RSTm), bit
// stuffing after 0xFF and fill bytes before markers.
//
// Not supported (ErrUnsupported): mapping tables (LSE types 2 and 3, Tm != 0), oversize
// dimensions (LSE type 4), point transforms, sampling factors other than 1x1, more than 4
// components, the HP color transforms that CharLS announces in an APP8 "mrfx" segment, and
// frames of more than 1<<28 samples.
//
// Sample interleaved scans follow CharLS, the reference DCMTK uses: run mode is entered when
// every component's gradients are zero, and each component of a run interruption sample is
// coded in the RItype 0 context with the sample above as prediction.
package jpegls

import (
	"errors"
	"fmt"
	"math/bits"
)

// Interleave is the ILV parameter of a scan (T.87 C.2.3).
type Interleave int

// Interleave modes.
const (
	InterleaveNone   Interleave = 0 // one scan per component
	InterleaveLine   Interleave = 1 // each line of every component in turn
	InterleaveSample Interleave = 2 // pixel by pixel
)

func (i Interleave) String() string {
	switch i {
	case InterleaveNone:
		return "none"
	case InterleaveLine:
		return "line"
	case InterleaveSample:
		return "sample"
	}
	return fmt.Sprintf("Interleave(%d)", int(i))
}

// Frame describes an image: its geometry and how it is (or is to be) coded. Samples go in
// and out as native little endian values, one byte each up to 8 bits and two above, pixel by
// pixel for more than one component.
type Frame struct {
	Width, Height, Components int
	BitsPerSample             int // sample precision P, 2..16
	Interleave                Interleave
	// Near is the largest difference allowed between a decoded and an original sample: 0 is
	// lossless. A decoded frame reports the largest NEAR of its scans.
	Near int
}

// Options are the preset coding parameters of T.87 C.2.4.1.1; zero means the default. When
// any is not the default, Encode writes them in an LSE segment.
type Options struct {
	MaxVal     int // largest sample value, default 2^P-1
	T1, T2, T3 int // gradient quantization thresholds, default from MAXVAL and NEAR
	Reset      int // context reset interval, default 64

	restart int // lines per restart interval (DRI), for the tests: DCMTK writes none
}

// ErrUnsupported is wrapped by errors for valid JPEG-LS data (or JPEG data of another
// process) that this package does not decode.
var ErrUnsupported = errors.New("unsupported JPEG-LS")

// ErrCorrupt is wrapped by errors for malformed or truncated data.
var ErrCorrupt = errors.New("corrupt JPEG-LS")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// maxSamples caps Width*Height*Components.
const maxSamples = 1 << 28

// maxCompression bounds the samples one byte of coded data can hold: in run mode with the
// largest run index one bit codes 2^15 samples of each component.
const maxCompression = 8 << 15

// Markers (second byte after 0xFF).
const (
	mSOF55 byte = 0xF7 // JPEG-LS frame
	mLSE   byte = 0xF8 // JPEG-LS preset parameters
	mSOI   byte = 0xD8
	mEOI   byte = 0xD9
	mSOS   byte = 0xDA
	mDNL   byte = 0xDC
	mDRI   byte = 0xDD
	mRST0  byte = 0xD0
	mAPP8  byte = 0xE8
)

// j is the run length order table J of T.87 A.7.1.2.
var j = [32]uint{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15}

// preset holds the coding parameters of a scan.
type preset struct {
	maxval, t1, t2, t3, reset int
}

// defaults fills the parameters left 0 as T.87 C.2.4.1.1 defines them for precision p and
// the given NEAR, and checks the ones given.
func (ps preset) defaults(p, near int) (preset, error) {
	if ps.maxval == 0 {
		ps.maxval = 1<<p - 1
	}
	if ps.maxval < 1 || ps.maxval >= 1<<p {
		return ps, corrupt("MAXVAL %d for precision %d", ps.maxval, p)
	}
	if near < 0 || near > min(255, ps.maxval/2) {
		return ps, corrupt("NEAR %d with MAXVAL %d", near, ps.maxval)
	}
	const basicT1, basicT2, basicT3 = 3, 7, 21
	clamp := func(i, lo int) int {
		if i > ps.maxval || i < lo {
			return lo
		}
		return i
	}
	var d1, d2, d3 int
	if ps.maxval >= 128 {
		f := (min(ps.maxval, 4095) + 128) / 256
		d1 = clamp(f*(basicT1-2)+2+3*near, near+1)
		d2 = clamp(f*(basicT2-3)+3+5*near, d1)
		d3 = clamp(f*(basicT3-4)+4+7*near, d2)
	} else {
		f := 256 / (ps.maxval + 1)
		d1 = clamp(max(2, basicT1/f+3*near), near+1)
		d2 = clamp(max(3, basicT2/f+5*near), d1)
		d3 = clamp(max(4, basicT3/f+7*near), d2)
	}
	if ps.t1 == 0 {
		ps.t1 = d1
	}
	if ps.t2 == 0 {
		ps.t2 = d2
	}
	if ps.t3 == 0 {
		ps.t3 = d3
	}
	if ps.reset == 0 {
		ps.reset = 64
	}
	if ps.t1 < near+1 || ps.t2 < ps.t1 || ps.t3 < ps.t2 || ps.t3 > ps.maxval {
		return ps, corrupt("thresholds %d, %d, %d with MAXVAL %d and NEAR %d", ps.t1, ps.t2, ps.t3, ps.maxval, near)
	}
	if ps.reset < 3 || ps.reset > max(255, ps.maxval) {
		return ps, corrupt("RESET %d with MAXVAL %d", ps.reset, ps.maxval)
	}
	return ps, nil
}

// context is a regular mode context (T.87 A.2.1): A, B, C, N.
type context struct {
	a, b, c, n int32
}

// runContext is a run interruption context: A, N, Nn.
type runContext struct {
	a, n, nn int32
}

// coder holds the parameters and adaptive state of one scan, shared by the encoder and the
// decoder.
type coder struct {
	maxval, near, rng, qbpp, limit, reset int32
	step                                  int32 // 2*NEAR+1
	quant                                 []int8
	qoff                                  int32 // quant[d+qoff] is Q(d) for -MAXVAL <= d <= MAXVAL
	ctx                                   [365]context
	run                                   [2]runContext
	runIndex                              [4]int32 // per component
}

func newCoder(p int, ps preset, near int) *coder {
	c := &coder{
		maxval: int32(ps.maxval), near: int32(near), reset: int32(ps.reset),
		step: int32(2*near + 1),
	}
	c.rng = (c.maxval+2*c.near)/c.step + 1
	for 1<<c.qbpp < c.rng {
		c.qbpp++
	}
	bpp := int32(2)
	for 1<<bpp < c.maxval+1 {
		bpp++
	}
	c.limit = 2 * (bpp + max(8, bpp))
	// Gradient quantization (T.87 A.3.3) for every difference of two samples.
	c.qoff = c.maxval
	c.quant = make([]int8, 2*c.maxval+1)
	t1, t2, t3 := int32(ps.t1), int32(ps.t2), int32(ps.t3)
	for d := -c.maxval; d <= c.maxval; d++ {
		var q int8
		switch {
		case d <= -t3:
			q = -4
		case d <= -t2:
			q = -3
		case d <= -t1:
			q = -2
		case d < -c.near:
			q = -1
		case d <= c.near:
			q = 0
		case d < t1:
			q = 1
		case d < t2:
			q = 2
		case d < t3:
			q = 3
		default:
			q = 4
		}
		c.quant[d+c.qoff] = q
	}
	c.init()
	return c
}

// init sets the adaptive state to its initial values (T.87 A.2.1), at the start of a scan and
// at each restart marker.
func (c *coder) init() {
	a := max(2, (c.rng+32)/64)
	for i := range c.ctx {
		c.ctx[i] = context{a: a, n: 1}
	}
	c.run = [2]runContext{{a: a, n: 1}, {a: a, n: 1}}
	c.runIndex = [4]int32{}
}

// predict is the median edge detector (T.87 A.4.1).
func predict(ra, rb, rc int32) int32 {
	mx, mn := max(ra, rb), min(ra, rb)
	switch {
	case rc >= mx:
		return mn
	case rc <= mn:
		return mx
	}
	return ra + rb - rc
}

// golombK is the Golomb parameter of a regular context (T.87 A.5.1): the least k with
// N<<k >= A, found from the bit lengths rather than by a loop.
func golombK(n, a int32) uint {
	d := bits.Len32(uint32(a)) - bits.Len32(uint32(n))
	if d < 0 {
		d = 0
	}
	if n<<d < a {
		d++
	}
	return uint(d)
}

// update adapts a regular context to the coded error (T.87 A.6).
func (c *coder) update(cx *context, errval int32) {
	cx.b += errval * c.step
	cx.a += abs(errval)
	if cx.n == c.reset {
		cx.a >>= 1
		cx.b >>= 1
		cx.n >>= 1
	}
	cx.n++
	if cx.b+cx.n <= 0 {
		cx.b += cx.n
		if cx.b <= -cx.n {
			cx.b = -cx.n + 1
		}
		if cx.c > -128 {
			cx.c--
		}
	} else if cx.b > 0 {
		cx.b -= cx.n
		if cx.b > 0 {
			cx.b = 0
		}
		if cx.c < 127 {
			cx.c++
		}
	}
}

// riK is the Golomb parameter of a run interruption context (T.87 A.7.2.1).
func riK(rc *runContext, ritype int32) uint {
	return golombK(rc.n, rc.a+(rc.n>>1)*ritype)
}

// riUpdate adapts a run interruption context (T.87 A.7.2.2).
func (c *coder) riUpdate(rc *runContext, errval, emerr, ritype int32) {
	if errval < 0 {
		rc.nn++
	}
	rc.a += (emerr + 1 - ritype) >> 1
	if rc.n == c.reset {
		rc.a >>= 1
		rc.n >>= 1
		rc.nn >>= 1
	}
	rc.n++
}

// reconstruct adds the dequantized error to the prediction, modulo the range (T.87 A.4.4).
func (c *coder) reconstruct(px, errval int32) int32 {
	v := px + errval*c.step
	if v < -c.near {
		v += c.rng * c.step
	} else if v > c.maxval+c.near {
		v -= c.rng * c.step
	}
	return min(max(v, 0), c.maxval)
}

// quantize turns a prediction error into its quantized, modulo-reduced value (T.87 A.4.4 and
// A.4.5), as the encoder codes it.
func (c *coder) quantize(e int32) int32 {
	if c.near > 0 {
		if e > 0 {
			e = (e + c.near) / c.step
		} else {
			e = -(c.near - e) / c.step
		}
	}
	if e < 0 {
		e += c.rng
	}
	if e >= (c.rng+1)/2 {
		e -= c.rng
	}
	return e
}

func abs(v int32) int32 {
	if v < 0 {
		return -v
	}
	return v
}
