package dicomweb_test

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/sanping/sanping/server/internal/dicomtest"
)

func decodeBody(t *testing.T, r response) []byte {
	t.Helper()
	switch r.header.Get("Content-Encoding") {
	case "zstd":
		d, err := zstd.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		b, err := io.ReadAll(d)
		if err != nil {
			t.Fatalf("zstd body: %v", err)
		}
		return b
	case "gzip":
		g, err := gzip.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(g)
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		return b
	case "":
		return r.body
	}
	t.Fatalf("Content-Encoding %q", r.header.Get("Content-Encoding"))
	return nil
}

// partsOf reads a multipart/related body's parts (boundaries differ between answers).
func partsOf(t *testing.T, contentType string, body []byte) [][]byte {
	t.Helper()
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		out = append(out, b)
	}
}

// TestContentCoding: native frames, metadata, search results and instances are sent zstd or
// gzip coded to a client that accepts it, and decode to exactly what an identity answer
// holds; compressed pixel data, small bodies and problems are sent as they are.
func TestContentCoding(t *testing.T) {
	e := newEnv(t, 0)
	native, jpeg := newUIDs(), newUIDs()
	e.mustStow(ctSlice(native, 128, 128, "MONOCHROME2"))
	big := bytes.Repeat([]byte{0x55, 0x12, 0x80}, 2000) // incompressible enough, and > minCoded
	e.mustStow(dicomtest.File{TS: dicomtest.TSJPEGBaseline, Elems: append(append(dicomtest.BaseElems(jpeg, dicomtest.SOPClassSC),
		dicomtest.ImageElems(64, 64, 8, 1, "MONOCHROME2")...), dicomtest.Encapsulated(nil, append(dicomtest.JPEGFragment(true, 10, 1), big...)))}.Bytes())

	get := func(path, accept, coding string) response {
		t.Helper()
		h := map[string]string{"Accept-Encoding": coding}
		if accept != "" {
			h["Accept"] = accept
		}
		if coding == "" {
			h["Accept-Encoding"] = "identity"
		}
		r := e.do("GET", path, h, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s (%s): %d %s", path, coding, r.status, r.body)
		}
		if !strings.Contains(strings.Join(r.header.Values("Vary"), ","), "Accept-Encoding") {
			t.Errorf("%s: Vary %v lacks Accept-Encoding", path, r.header.Values("Vary"))
		}
		return r
	}
	frame := instPath(native) + "/frames/1"
	for _, c := range []struct {
		name, path, accept string
		multipart          bool
	}{
		{"frame", frame, "application/octet-stream", false},
		{"frames multipart", frame, `multipart/related; type="application/octet-stream"`, true},
		{"frame as stored", frame, `multipart/related; type="application/octet-stream"; transfer-syntax=*`, true},
		{"metadata", instPath(native) + "/metadata", "application/dicom+json", false},
		{"search", base + "/studies/" + native.Study + "/instances", "application/dicom+json", false},
		{"instance", instPath(native), `multipart/related; type="application/dicom"; transfer-syntax=*`, true},
	} {
		plain := get(c.path, c.accept, "")
		if plain.header.Get("Content-Encoding") != "" {
			t.Fatalf("%s: coded without Accept-Encoding", c.name)
		}
		for _, coding := range []string{"zstd", "gzip"} {
			r := get(c.path, c.accept, "br, "+coding)
			if r.header.Get("Content-Encoding") != coding || r.header.Get("Content-Length") != "" && r.header.Get("Content-Length") == plain.header.Get("Content-Length") {
				t.Errorf("%s, %s: Content-Encoding %q, Content-Length %q", c.name, coding, r.header.Get("Content-Encoding"), r.header.Get("Content-Length"))
				continue
			}
			got := decodeBody(t, r)
			if c.multipart {
				a, b := partsOf(t, plain.header.Get("Content-Type"), plain.body), partsOf(t, r.header.Get("Content-Type"), got)
				if len(a) != len(b) || len(a) == 0 || !bytes.Equal(a[0], b[0]) {
					t.Errorf("%s, %s: the decoded parts differ from the identity answer's", c.name, coding)
				}
			} else if !bytes.Equal(got, plain.body) {
				t.Errorf("%s, %s: the decoded body differs from the identity answer (%d vs %d bytes)", c.name, coding, len(got), len(plain.body))
			}
			t.Logf("%s, %s: %d -> %d bytes", c.name, coding, len(plain.body), len(r.body))
		}
	}
	// The CT frame codes to well under its size.
	if r := get(frame, "application/octet-stream", "zstd"); len(r.body) > 128*128 {
		t.Errorf("zstd frame: %d bytes of %d", len(r.body), 2*128*128)
	}
	// JPEG frames are sent as stored, uncoded.
	r := get(instPath(jpeg)+"/frames/1", `multipart/related; type="image/jpeg"`, "zstd, gzip")
	if ce := r.header.Get("Content-Encoding"); ce != "" {
		t.Errorf("JPEG frame coded %q", ce)
	}
	// A problem is not coded.
	p := e.do("GET", instPath(native)+"/frames/9", map[string]string{"Accept-Encoding": "zstd"}, nil)
	if p.status != http.StatusNotFound || p.header.Get("Content-Encoding") != "" {
		t.Errorf("missing frame: %d, Content-Encoding %q", p.status, p.header.Get("Content-Encoding"))
	}
}
