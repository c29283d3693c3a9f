package render

import (
	"bytes"
	"encoding/binary"
	"hash/adler32"
	"hash/crc32"
	"image"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
)

// The PNG writer is hand-written because image/png spends most of a large rendering in
// choosing a filter for every row and compresses on one core: a 2140x1760 radiograph took
// ~100 ms. This one filters every row with Up (smooth medical images compress well with it)
// and deflates row bands on all cores, joining the streams with sync flushes as pigz does
// (RFC 1951: a sync flush ends on a byte boundary with a non-final block, so the next band's
// blocks can follow; only the last band ends with a final block).

// minBand is the smallest band of filtered bytes compressed on its own (smaller bands cost
// compression ratio for no speed).
const minBand = 256 << 10

// encodePNG writes 8-bit grey (*image.Gray) or RGB (anything else, converted) as PNG.
func encodePNG(w io.Writer, img image.Image) error {
	b := img.Bounds()
	width, height := b.Dx(), b.Dy()
	gray, isGray := img.(*image.Gray)
	channels := 3
	colorType := byte(2) // truecolour
	if isGray {
		channels, colorType = 1, 0
	}
	stride := width*channels + 1 // filter byte + row
	fb := getBuf(stride * height)
	defer putBuf(fb)
	filtered := (*fb)[:stride*height]
	rows := func(y0, y1 int) {
		prev := make([]byte, width*channels)
		cur := make([]byte, width*channels)
		if y0 > 0 {
			rowBytes(img, gray, b, y0-1, prev)
		}
		for y := y0; y < y1; y++ {
			rowBytes(img, gray, b, y, cur)
			out := filtered[y*stride : (y+1)*stride]
			out[0] = 2 // Up
			for i, v := range cur {
				out[1+i] = v - prev[i]
			}
			prev, cur = cur, prev
		}
	}
	workers := runtime.GOMAXPROCS(0)
	split(height, parts(width*height), 1, func(_, y0, y1 int) { rows(y0, y1) })

	// Compress bands of whole rows concurrently.
	bands := max(1, min(workers*2, len(filtered)/minBand))
	rowsPerBand := (height + bands - 1) / bands
	type band struct {
		data  []byte
		adler uint32
		n     int
		buf   *[]byte
	}
	out := make([]band, bands)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for i := range bands {
		y0, y1 := i*rowsPerBand, min(height, (i+1)*rowsPerBand)
		if y0 >= y1 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := filtered[y0*stride : y1*stride]
			bb := getBuf(len(src)/2 + 1024)
			buf := bytes.NewBuffer((*bb)[:0])
			zw := getFlate(buf)
			defer flatePool.Put(zw)
			zw.Write(src)
			var err error
			if y1 == height {
				err = zw.Close()
			} else {
				err = zw.Flush()
			}
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
			*bb = buf.Bytes()
			out[i] = band{data: buf.Bytes(), adler: adler32.Checksum(src), n: len(src), buf: bb}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	defer func() {
		for _, bd := range out {
			if bd.buf != nil {
				putBuf(bd.buf)
			}
		}
	}()
	var idat bytes.Buffer
	idat.Grow(2 + 4 + func() (n int) {
		for _, bd := range out {
			n += len(bd.data)
		}
		return n
	}())
	idat.Write([]byte{0x78, 0x01}) // zlib header: deflate, 32 KiB window, fastest
	var sum uint32 = 1
	for _, bd := range out {
		if bd.n == 0 {
			continue
		}
		idat.Write(bd.data)
		sum = adler32Combine(sum, bd.adler, bd.n)
	}
	idat.Write(binary.BigEndian.AppendUint32(nil, sum))

	var hdr [13]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(width))
	binary.BigEndian.PutUint32(hdr[4:], uint32(height))
	hdr[8], hdr[9] = 8, colorType // bit depth, colour type; compression, filter, interlace 0
	if _, err := w.Write([]byte("\x89PNG\r\n\x1a\n")); err != nil {
		return err
	}
	if err := writeChunk(w, "IHDR", hdr[:]); err != nil {
		return err
	}
	if err := writeChunk(w, "IDAT", idat.Bytes()); err != nil {
		return err
	}
	return writeChunk(w, "IEND", nil)
}

func rowBytes(img image.Image, gray *image.Gray, b image.Rectangle, y int, dst []byte) {
	if gray != nil {
		copy(dst, gray.Pix[y*gray.Stride:y*gray.Stride+b.Dx()])
		return
	}
	if m, ok := img.(*image.RGBA); ok {
		row := m.Pix[y*m.Stride : y*m.Stride+4*b.Dx()]
		for x := range b.Dx() {
			dst[3*x], dst[3*x+1], dst[3*x+2] = row[4*x], row[4*x+1], row[4*x+2]
		}
		return
	}
	if m, ok := img.(*image.NRGBA); ok {
		row := m.Pix[y*m.Stride : y*m.Stride+4*b.Dx()]
		for x := range b.Dx() {
			dst[3*x], dst[3*x+1], dst[3*x+2] = row[4*x], row[4*x+1], row[4*x+2]
		}
		return
	}
	for x := range b.Dx() {
		r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
		dst[3*x], dst[3*x+1], dst[3*x+2] = byte(r>>8), byte(g>>8), byte(bl>>8)
	}
}

func writeChunk(w io.Writer, kind string, data []byte) error {
	var head [8]byte
	binary.BigEndian.PutUint32(head[:4], uint32(len(data)))
	copy(head[4:], kind)
	crc := crc32.NewIEEE()
	crc.Write(head[4:])
	crc.Write(data)
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

// adler32Combine is zlib's adler32_combine: the checksum of A||B from those of A and B and
// B's length.
func adler32Combine(a, b uint32, lenB int) uint32 {
	const base = 65521
	rem := uint32(lenB % base)
	sum1 := a & 0xffff
	sum2 := (rem * sum1) % base
	sum1 += (b & 0xffff) + base - 1
	sum2 += (a >> 16) + (b >> 16) + base - rem
	if sum1 >= base {
		sum1 -= base
	}
	if sum1 >= base {
		sum1 -= base
	}
	if sum2 >= base<<1 {
		sum2 -= base << 1
	}
	if sum2 >= base {
		sum2 -= base
	}
	return sum2<<16 | sum1
}

// Big buffers are reused: zeroing a fresh 4-8 MB slice for every rendering was a fifth of the
// CPU time of a radiograph.
var bufPool sync.Pool

func getBuf(n int) *[]byte {
	if b, ok := bufPool.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

func putBuf(b *[]byte) { bufPool.Put(b) }

// Huffman-only deflate (github.com/klauspost/compress/flate, ~1.5x the standard library's speed
// here): on radiographs, whose noise defeats LZ77 matching, it compresses as well as BestSpeed
// at about twice the speed.
var flatePool sync.Pool

func getFlate(w io.Writer) *flate.Writer {
	if zw, ok := flatePool.Get().(*flate.Writer); ok {
		zw.Reset(w)
		return zw
	}
	zw, _ := flate.NewWriter(w, flate.HuffmanOnly)
	return zw
}
