package upload

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"

	"github.com/sanping/sanping/protocol"
)

// A tar member may be a coding of its Part 10 file (protocol.TarCoding): the station
// zstd-compresses what is not image pixels (client/upload/coding.go). Each member is coded on
// its own, not the whole tar, so that the tar stays what tus resumes and stream.go ingests
// member by member: offsets are the archive's, and a bad member fails alone. The decoded
// bytes go to the store as any member's do, checked against the member's SHA-256 record,
// which names the decoded file.

// maxZstdWindow bounds the memory one decoder may ask for (the station uses 4 MiB).
const maxZstdWindow = 8 << 20

// codingProblem says why a coded member is not read at all, or "": its coding is unknown, or
// it does not declare a decoded size within maxInstance (a small member decoding to gigabytes
// fails alone before a byte of it reaches the store).
func codingProblem(h *tar.Header, maxInstance int64) string {
	coding, ok := h.PAXRecords[protocol.TarCoding]
	if !ok {
		return ""
	}
	if coding != protocol.CodingZstd {
		return fmt.Sprintf("coded as %q, which this server does not decode", coding)
	}
	n, err := strconv.ParseInt(h.PAXRecords[protocol.TarSize], 10, 64)
	switch {
	case err != nil || n < 0:
		return "coded without a valid " + protocol.TarSize + " record"
	case n > maxInstance:
		return fmt.Sprintf("decodes to %d bytes: larger than one instance may be (%d bytes)", n, maxInstance)
	case h.PAXRecords[protocol.TarSHA256] == "":
		return "coded without a " + protocol.TarSHA256 + " record"
	}
	return ""
}

// decodedReader reads a coded member's decoded bytes: exactly the declared size, else err.
type decodedReader struct {
	dec  *zstd.Decoder
	left int64 // declared bytes not read yet
	err  error // what is wrong with the member's coding
}

// decodeMember decodes member r of header h, which codingProblem passed.
func decodeMember(r io.Reader, h *tar.Header) (*decodedReader, error) {
	n, _ := strconv.ParseInt(h.PAXRecords[protocol.TarSize], 10, 64)
	dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxZstdWindow))
	if err != nil {
		return nil, fmt.Errorf("a zstd decoder: %w", err)
	}
	return &decodedReader{dec: dec, left: n}, nil
}

var errCoding = errors.New("the member's coding")

func (d *decodedReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if int64(len(p)) > d.left {
		// One byte past the declared size tells a member that decodes to more.
		p = p[:d.left+1]
	}
	n, err := d.dec.Read(p)
	if int64(n) > d.left {
		d.err = fmt.Errorf("%w: decodes to more than the %s bytes it declares", errCoding, protocol.TarSize)
		return 0, d.err
	}
	d.left -= int64(n)
	switch {
	case errors.Is(err, io.EOF) && d.left > 0:
		d.err = fmt.Errorf("%w: decodes to %d bytes fewer than it declares", errCoding, d.left)
		return n, d.err
	case err != nil && !errors.Is(err, io.EOF):
		d.err = fmt.Errorf("%w: zstd: %v", errCoding, err)
		return n, d.err
	}
	return n, err
}

func (d *decodedReader) close() { d.dec.Close() }
