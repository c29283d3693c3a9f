package dicomweb

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sanping/sanping/server/dcm"
)

// Content coding (RFC 9110 8.4, 12.5.3) of what is not compressed already: DICOM JSON
// (QIDO-RS results, metadata) always, and native pixel data (frames, bulk data, instances in
// an uncompressed transfer syntax) when the handler says so. Over a county's 4G links this
// cuts a CT's frames to about a third with no pixel changed. zstd is preferred (about 3x gzip's speed for a
// better ratio), then gzip for clients without it (browsers over plain HTTP, most PACS).
// Compressed pixel data (JPEG, JPEG-LS, JPEG 2000, RLE) and rendered images are sent as
// they are: a second compression costs CPU for nothing. Range requests are answered
// uncoded, so a byte range means the same bytes whatever the client accepts.

const (
	codingZstd = "zstd"
	codingGzip = "gzip"
	// minCoded: below this a coded body saves less than its headers cost.
	minCoded = 1024
)

// Pools of encoders. zstd at its default level (about level 3) codes a 512x512 16-bit CT
// frame to 0.32 of its size at about 130 MB/s a core here (BenchmarkCoding); its fastest
// level runs twice as fast for 0.36, 10% more bytes on a link that costs more than the CPU.
// gzip at level 4: 0.33 at about the same speed.
var (
	zstdEncoders = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		return e
	}}
	gzipEncoders = sync.Pool{New: func() any {
		g, _ := gzip.NewWriterLevel(nil, 4)
		return g
	}}
)

// negotiateCoding picks the coding for an Accept-Encoding header: zstd, then gzip, where
// acceptable (q > 0, or "*"), else "" (identity).
func negotiateCoding(header string) string {
	if header == "" {
		return ""
	}
	q := map[string]float64{}
	for item := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(item), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "x-gzip" {
			name = codingGzip
		}
		weight := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					weight = f
				} else {
					weight = 0 // a malformed weight does not make a coding acceptable
				}
			}
		}
		if name != "" {
			q[name] = weight
		}
	}
	acceptable := func(c string) bool {
		if w, ok := q[c]; ok {
			return w > 0
		}
		w, ok := q["*"]
		return ok && w > 0
	}
	switch {
	case acceptable(codingZstd):
		return codingZstd
	case acceptable(codingGzip):
		return codingGzip
	}
	return ""
}

// encoded wraps a read handler with content coding.
func encoded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		coding := negotiateCoding(r.Header.Get("Accept-Encoding"))
		if coding == "" || r.Header.Get("Range") != "" || r.Method == http.MethodHead {
			h(w, r)
			return
		}
		ew := &encodingWriter{ResponseWriter: w, coding: coding}
		defer ew.close()
		h(ew, r)
	}
}

// nativePixels tells w's coding that the body is native pixel data (or a data set holding
// it), which codes well; without it only DICOM JSON is coded.
func nativePixels(w http.ResponseWriter) {
	if ew, ok := w.(*encodingWriter); ok {
		ew.native = true
	}
}

// uncompressedSyntax reports whether pixel data in transfer syntax ts is native.
func uncompressedSyntax(ts string) bool {
	switch ts {
	case dcm.ExplicitVRLittleEndian, dcm.ImplicitVRLittleEndian, dcm.ExplicitVRBigEndian:
		return true
	}
	return false
}

// encodingWriter decides at WriteHeader whether to code the body, and codes it.
type encodingWriter struct {
	http.ResponseWriter
	coding  string
	native  bool
	decided bool
	enc     io.WriteCloser // nil: identity
	zw      *zstd.Encoder
	gw      *gzip.Writer
}

func (e *encodingWriter) WriteHeader(code int) {
	if e.decided {
		e.ResponseWriter.WriteHeader(code)
		return
	}
	e.decided = true
	h := e.Header()
	if code == http.StatusOK && h.Get("Content-Encoding") == "" && h.Get("Content-Range") == "" && e.codable(h) {
		h.Del("Content-Length")
		h.Set("Content-Encoding", e.coding)
		switch e.coding {
		case codingZstd:
			e.zw = zstdEncoders.Get().(*zstd.Encoder)
			e.zw.Reset(e.ResponseWriter)
			e.enc = e.zw
		case codingGzip:
			e.gw = gzipEncoders.Get().(*gzip.Writer)
			e.gw.Reset(e.ResponseWriter)
			e.enc = e.gw
		}
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *encodingWriter) codable(h http.Header) bool {
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil && n < minCoded {
		return false
	}
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "application/dicom+json", "application/json", "application/dicom+xml":
		return true
	case "application/octet-stream", "multipart/related", "application/dicom":
		return e.native
	}
	return false
}

func (e *encodingWriter) Write(p []byte) (int, error) {
	if !e.decided {
		e.WriteHeader(http.StatusOK)
	}
	if e.enc != nil {
		return e.enc.Write(p)
	}
	return e.ResponseWriter.Write(p)
}

// Flush sends what is coded so far (a long multipart answer streams).
func (e *encodingWriter) Flush() {
	if e.zw != nil {
		e.zw.Flush()
	}
	if e.gw != nil {
		e.gw.Flush()
	}
	if f, ok := e.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (e *encodingWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// close ends the coded stream and returns the encoder to its pool.
func (e *encodingWriter) close() {
	if e.zw != nil {
		e.zw.Close()
		e.zw.Reset(nil)
		zstdEncoders.Put(e.zw)
		e.zw = nil
	}
	if e.gw != nil {
		e.gw.Close()
		e.gw.Reset(io.Discard)
		gzipEncoders.Put(e.gw)
		e.gw = nil
	}
	e.enc = nil
}
