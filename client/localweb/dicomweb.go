package localweb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/dicomweb"
)

// parsed is what a file gives the reads: its DICOM JSON (bulk data URIs after
// dcm.BulkDataPrefix, made absolute when served) and its frames.
type parsed struct {
	json        []byte
	frames      []dcm.Frame
	frameErr    error
	layout      *dcm.Layout
	ts          string
	swap        int // big endian OW: swap words when serving native frames
	hasPixels   bool
	encapsulate bool
}

// parsedCache keeps files' parses by path, size and time (a study's opening asks for every
// instance's metadata, then its frames).
type parsedCache struct {
	mu sync.Mutex
	m  map[string]*parsedItem
}

type parsedItem struct {
	size int64
	mod  time.Time
	p    *parsed
}

// maxParsed bounds the cache: about 10 KB of JSON an instance, a few studies' worth.
const maxParsed = 4000

func newParsedCache() *parsedCache { return &parsedCache{m: map[string]*parsedItem{}} }

func (c *parsedCache) get(e *entry) (*parsed, error) {
	c.mu.Lock()
	it := c.m[e.path]
	c.mu.Unlock()
	if it != nil && it.size == e.size && it.mod.Equal(e.mod) {
		return it.p, nil
	}
	p, err := parseFile(e)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxParsed {
		clear(c.m)
	}
	c.m[e.path] = &parsedItem{size: e.size, mod: e.mod, p: p}
	c.mu.Unlock()
	return p, nil
}

// parseFile reads one stored file through server/dcm, as the county's store does at ingest.
func parseFile(e *entry) (*parsed, error) {
	f, err := os.Open(e.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != e.size || !fi.ModTime().Equal(e.mod) {
		return nil, os.ErrNotExist // replaced since indexed: the index is refreshed by the caller
	}
	in, err := dcm.Parse(f, fi.Size())
	if err != nil {
		return nil, err
	}
	bulkBase := "/studies/" + e.study + "/series/" + e.series + "/instances/" + e.sop + "/bulkdata/"
	js, err := in.JSON(f, bulkBase)
	if err != nil {
		return nil, err
	}
	p := &parsed{json: js, layout: in.Layout, ts: in.TransferSyntax}
	if px := in.Layout.Pixel; px != nil {
		p.hasPixels, p.encapsulate = true, px.Encapsulated
		p.frames, p.frameErr = in.Frames(f)
		if in.TransferSyntax == dcm.ExplicitVRBigEndian && px.VR == "OW" {
			p.swap = 2
			if bits, _ := in.Int(tag.BitsAllocated); bits == 32 {
				p.swap = 4
			}
		}
	}
	return p, nil
}

// problem answers an RFC 9457 problem, as the county does.
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}

// baseURL is this server's DICOMweb root as the browser reached it.
func baseURL(r *http.Request) string { return "http://" + r.Host + "/dicom-web" }

// seriesList answers QIDO-RS series of a study (PS3.18 10.6) with the attributes the viewer
// reads, for the series the station has.
func (s *Server) seriesList(w http.ResponseWriter, r *http.Request) {
	study := r.PathValue("study")
	series := s.index.seriesOf(study)
	if series == nil {
		problem(w, http.StatusNotFound, "the station has no copy of this study")
		return
	}
	type attr struct {
		VR    string `json:"vr"`
		Value []any  `json:"Value,omitempty"`
	}
	str := func(vr, v string) attr {
		if v == "" {
			return attr{VR: vr}
		}
		return attr{VR: vr, Value: []any{v}}
	}
	out := make([]map[string]attr, 0, len(series))
	for uid, list := range series {
		first := list[0]
		o := map[string]attr{
			"0020000D": str("UI", study),
			"0020000E": str("UI", uid),
			"00080060": str("CS", first.modality),
			"0008103E": str("LO", first.seriesDescription),
			"00201209": {VR: "IS", Value: []any{len(list)}},
		}
		if first.hasSeriesNumber {
			o["00200011"] = attr{VR: "IS", Value: []any{first.seriesNumber}}
		} else {
			o["00200011"] = attr{VR: "IS"}
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		return fmt.Sprint(out[i]["0020000E"].Value) < fmt.Sprint(out[j]["0020000E"].Value)
	})
	w.Header().Set("Content-Type", "application/dicom+json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}

// seriesMetadata answers WADO-RS series metadata (PS3.18 10.4.1.1.2): the DICOM JSON the
// county serves for the same files, bulk data URIs pointing here.
func (s *Server) seriesMetadata(w http.ResponseWriter, r *http.Request) {
	list := s.index.seriesOf(r.PathValue("study"))[r.PathValue("series")]
	if len(list) == 0 {
		problem(w, http.StatusNotFound, "the station has no copy of this series")
		return
	}
	s.writeMetadata(w, r, list)
}

func (s *Server) instanceMetadata(w http.ResponseWriter, r *http.Request) {
	e := s.index.instance(r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if e == nil {
		problem(w, http.StatusNotFound, "the station has no copy of this instance")
		return
	}
	s.writeMetadata(w, r, []*entry{e})
}

func (s *Server) writeMetadata(w http.ResponseWriter, r *http.Request, list []*entry) {
	if !acceptsJSON(r.Header.Get("Accept")) {
		problem(w, http.StatusNotAcceptable, "metadata is application/dicom+json")
		return
	}
	abs := []byte(dcm.BulkDataPrefix + baseURL(r))
	var buf bytes.Buffer
	buf.WriteByte('[')
	n := 0
	for _, e := range list {
		p, err := s.parsedOf(e)
		if err != nil {
			continue // gone since indexed: the county still has it
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(bytes.ReplaceAll(p.json, []byte(dcm.BulkDataPrefix), abs))
		n++
	}
	buf.WriteByte(']')
	if n == 0 {
		problem(w, http.StatusNotFound, "the station no longer has these files")
		return
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// parsedOf parses e's file, forgetting e when the file went away (pruned after KeepSent).
func (s *Server) parsedOf(e *entry) (*parsed, error) {
	p, err := s.cache.get(e)
	if err != nil {
		s.index.drop(e)
		if ne, err2 := s.index.add(e.path); err2 == nil && ne.sop == e.sop {
			return s.cache.get(ne) // replaced in place (the modality sent it again)
		}
	}
	return p, err
}

func acceptsJSON(accept string) bool {
	if accept == "" {
		return true
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/dicom+json", "application/json", "*/*", "application/*":
			return true
		}
	}
	return false
}

// frames answers Retrieve Frames (PS3.18 8.7.3.5) as the county does for the viewer's
// request: multipart/related, one application/octet-stream part per frame naming its transfer
// syntax; native frames as explicit VR little endian, encapsulated ones as stored. The
// station does not decode: asking for native octets of a compressed instance (without
// transfer-syntax=*) is 406, and the viewer then reads from the county.
func (s *Server) frames(w http.ResponseWriter, r *http.Request) {
	e := s.index.instance(r.PathValue("study"), r.PathValue("series"), r.PathValue("instance"))
	if e == nil {
		problem(w, http.StatusNotFound, "the station has no copy of this instance")
		return
	}
	// The county's own reading of {frames}, limits included.
	nums, err := dicomweb.ParseFrameList(r.PathValue("frames"))
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	p, err := s.parsedOf(e)
	if err != nil {
		problem(w, http.StatusNotFound, "the station no longer has this file")
		return
	}
	if !p.hasPixels || p.frameErr != nil || len(p.frames) == 0 {
		problem(w, http.StatusNotFound, "frames of this instance cannot be located")
		return
	}
	for _, n := range nums {
		if n > len(p.frames) {
			problem(w, http.StatusNotFound, fmt.Sprintf("frame %d: the instance has %d frames", n, len(p.frames)))
			return
		}
	}
	ts := dcm.ExplicitVRLittleEndian
	if p.encapsulate {
		ts = p.ts
	}
	multi, ok := negotiate(r.Header.Get("Accept"), ts)
	if !ok {
		problem(w, http.StatusNotAcceptable, "frames are served as multipart/related; type=\"application/octet-stream\"; transfer-syntax=* (or "+ts+")")
		return
	}
	f, err := os.Open(e.path)
	if err != nil {
		problem(w, http.StatusNotFound, "the station no longer has this file")
		return
	}
	defer f.Close()
	write := func(dst io.Writer, fr dcm.Frame) error {
		for _, sp := range fr {
			src := dcm.SpanReader(f, p.layout, sp)
			if p.swap > 0 {
				src = dcm.SwapReader(src, p.swap)
			}
			if _, err := io.Copy(dst, src); err != nil {
				return err
			}
		}
		return nil
	}
	partType := "application/octet-stream; transfer-syntax=" + ts
	w.Header().Set("Cache-Control", "private, max-age=600")
	if !multi && len(nums) == 1 {
		fr := p.frames[nums[0]-1]
		w.Header().Set("Content-Type", partType)
		w.Header().Set("Content-Length", strconv.FormatInt(fr.Size(), 10))
		write(w, fr)
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", fmt.Sprintf(`multipart/related; type=%q; boundary=%s`, "application/octet-stream", mw.Boundary()))
	for _, n := range nums {
		fr := p.frames[n-1]
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", partType)
		h.Set("Content-Length", strconv.FormatInt(fr.Size(), 10))
		h.Set("Content-Location", baseURL(r)+"/studies/"+e.study+"/series/"+e.series+"/instances/"+e.sop+"/frames/"+strconv.Itoa(n))
		pw, err := mw.CreatePart(h)
		if err != nil || write(pw, fr) != nil {
			return
		}
	}
	mw.Close()
}

// negotiate reads Accept for frames of transfer syntax ts: octet-stream with
// transfer-syntax=* or ts (or none, for native frames), or anything. multi: a multipart
// answer (everything but a bare octet-stream).
func negotiate(accept, ts string) (multi, ok bool) {
	if strings.TrimSpace(accept) == "" {
		return true, true
	}
	for _, part := range strings.Split(accept, ",") {
		fields := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(fields[0]))
		typ, want := "", ""
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(k) {
			case "type":
				typ = strings.ToLower(v)
			case "transfer-syntax":
				want = v
			}
		}
		tsOK := want == "*" || want == ts || (want == "" && ts == dcm.ExplicitVRLittleEndian)
		switch {
		case mt == "*/*":
			return true, true
		case mt == "multipart/related" && (typ == "" || typ == "application/octet-stream") && tsOK:
			return true, true
		case mt == "application/octet-stream" && tsOK:
			return false, true
		}
	}
	return false, false
}
