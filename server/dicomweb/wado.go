package dicomweb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/render"
	"github.com/sanping/sanping/server/store"
)

// metadata answers Retrieve Metadata (PS3.18 10.4.1.1.2) from the JSON computed at ingest.
func (s *Service) metadata(w http.ResponseWriter, r *http.Request) {
	study, series, instance, ok := uids(w, r)
	if !ok {
		return
	}
	if !acceptsJSON(r.Header.Get("Accept")) {
		problem(w, http.StatusNotAcceptable, "metadata is application/dicom+json")
		return
	}
	// The instances in scope name the answer: stored metadata never changes, but a study or
	// series gains instances, and BulkDataURIs are made from the base URL.
	list, err := s.st.Instances(r.Context(), study, series, instance)
	if err != nil {
		s.storeError(w, r, err, "study, series or instance")
		return
	}
	parts := make([]string, 0, 4+2*len(list))
	parts = append(parts, "metadata", s.baseURL(r), r.URL.Path, r.Header.Get("Accept"))
	for _, in := range list {
		parts = append(parts, in.SOPUID, in.SHA256)
	}
	if fresh(w, r, s.etag(parts...), cacheChanges) {
		s.record(r, "study.read", studyObject(study), "success")
		return
	}
	prefix := []byte(dcm.BulkDataPrefix)
	abs := []byte(dcm.BulkDataPrefix + s.baseURL(r))
	var scratch []byte
	rewrite := func(b []byte) []byte {
		scratch = appendReplaced(scratch[:0], b, prefix, abs)
		return scratch
	}
	// Buffered so that "not found" can still be a clean 404 before anything is sent.
	bw := &lazyWriter{w: w, contentType: "application/dicom+json"}
	err = s.st.WriteMetadata(r.Context(), bw, study, series, instance, rewrite)
	if err != nil && !bw.started {
		s.storeError(w, r, err, "study, series or instance")
		return
	}
	bw.Flush()
	s.record(r, "study.read", studyObject(study), "success")
}

func appendReplaced(dst, src, old, repl []byte) []byte {
	for {
		i := bytes.Index(src, old)
		if i < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:i]...)
		dst = append(dst, repl...)
		src = src[i+len(old):]
	}
}

// lazyWriter sends headers with the first write, through a buffer.
type lazyWriter struct {
	w           http.ResponseWriter
	bw          *bufio.Writer
	contentType string
	started     bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", l.contentType)
		l.bw = bufio.NewWriterSize(l.w, 64<<10)
	}
	return l.bw.Write(p)
}

func (l *lazyWriter) Flush() {
	if l.bw != nil {
		l.bw.Flush()
	}
}

// MaxFrameList bounds a frame list: more than the largest multi-frame instances a county sees
// (a long cine loop), and each frame at most once, so the answer is never larger than the
// instance itself.
const MaxFrameList = 10000

// ParseFrameList reads the {frames} of Retrieve Frames (PS3.18 8.3.3.1.2: a comma-separated
// list of frame numbers, from 1). A number repeated, or a list longer than MaxFrameList, is
// refused: "1,1,1,..." would otherwise return one copy of the frame per repetition.
func ParseFrameList(v string) ([]int, error) {
	if strings.Count(v, ",") >= MaxFrameList {
		return nil, fmt.Errorf("at most %d frames in one request", MaxFrameList)
	}
	parts := strings.Split(v, ",")
	nums := make([]int, 0, len(parts))
	seen := make(map[int]bool, len(parts))
	for _, f := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("frame number %q: frames are numbered from 1", f)
		}
		if seen[n] {
			return nil, fmt.Errorf("frame %d is asked for more than once", n)
		}
		seen[n] = true
		nums = append(nums, n)
	}
	return nums, nil
}

// frames answers Retrieve Frames (PS3.18 10.4.1.1.3 / 8.7.3.5): multipart/related, one part per
// frame, each part's Content-Type naming the transfer syntax so viewers decode by it.
func (s *Service) frames(w http.ResponseWriter, r *http.Request) {
	study, series, instance, ok := uids(w, r)
	if !ok {
		return
	}
	nums, err := ParseFrameList(r.PathValue("frames"))
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	in, layout, ok := s.instanceLayout(w, r, study, series, instance)
	if !ok {
		return
	}
	if len(layout.Frames) == 0 {
		if layout.FrameError != "" {
			problem(w, http.StatusNotFound, "frames of this instance cannot be located: "+layout.FrameError)
		} else {
			problem(w, http.StatusNotFound, "instance has no pixel data")
		}
		return
	}
	for _, n := range nums {
		if n > len(layout.Frames) {
			problem(w, http.StatusNotFound, fmt.Sprintf("frame %d: the instance has %d frames", n, len(layout.Frames)))
			return
		}
	}
	accept := r.Header.Get("Accept")
	// What is sent follows from the stored bytes, the frame list (in the path), Accept and
	// the base URL (multipart parts carry Content-Location).
	if fresh(w, r, s.etag("frames", in.SHA256, r.URL.Path, accept, s.baseURL(r)), cacheFixed) {
		s.record(r, "image.read", studyObject(study), "success")
		return
	}
	f, err := os.Open(s.st.FilePath(in))
	if err != nil {
		s.storeError(w, r, err, "instance")
		return
	}
	defer f.Close()
	ts, partType, single, ok := negotiateFrames(accept, in.TransferSyntax, layout.Encapsulated)
	// PS3.18 8.7.3.5.2: octet-stream without a transfer syntax means explicit VR little endian.
	// Lossless frames (RLE, JPEG lossless) are decoded for such a request; lossy ones are sent
	// as stored, their syntax named in the part.
	var native *nativeFrames
	if wantsNative(accept) && losslessDecodable(in.TransferSyntax) {
		// Decoded color frames are pixel-interleaved; an instance that says otherwise keeps its
		// stored frames rather than mislabelled native ones (the instance resource rewrites
		// Planar Configuration with the pixels).
		if nf, err := s.nativeFrames(r, in, layout); err == nil && (nf.attrs.SamplesPerPixel == 1 || nf.attrs.PlanarConfiguration == 0) {
			native, ts, partType, ok = nf, dcm.ExplicitVRLittleEndian, "application/octet-stream", true
			single = single && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(accept)), "multipart/")
		}
	}
	if !ok {
		problem(w, http.StatusNotAcceptable, fmt.Sprintf("frames of this instance are stored as %s and served as multipart/related; type=\"application/octet-stream\" (or the codec's media type) with transfer-syntax=* or %s; transcoding is not supported", in.TransferSyntax, storedOrNative(in.TransferSyntax, layout.Encapsulated)))
		return
	}
	if uncompressedSyntax(ts) {
		nativePixels(w)
	}
	dl := layout.Dcm()
	// Big endian OW pixel data is stored as swapped 16-bit words, 8-bit data included; 32-bit
	// pixels swap as 32-bit words.
	swap := 0
	if in.TransferSyntax == dcm.ExplicitVRBigEndian && layout.PixelVR == "OW" {
		swap = 2
		if in.BitsAllocated.Int64 == 32 {
			swap = 4
		}
	}
	writeFrame := func(dst io.Writer, fr dcm.Frame) error {
		if native != nil {
			b, _, err := native.decode(f, dl, fr)
			if err != nil {
				return err
			}
			_, err = dst.Write(b)
			return err
		}
		for _, sp := range fr {
			src := dcm.SpanReader(f, dl, sp)
			if swap > 0 {
				src = dcm.SwapReader(src, swap)
			}
			if _, err := io.Copy(dst, src); err != nil {
				return err
			}
		}
		return nil
	}
	if single && len(nums) == 1 {
		fr := layout.Frames[nums[0]-1]
		if native != nil {
			b, _, err := native.decode(f, dl, fr)
			if err != nil {
				problem(w, http.StatusUnprocessableEntity, "stored frame cannot be decoded: "+err.Error())
				return
			}
			w.Header().Set("Content-Type", partType+"; transfer-syntax="+ts)
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
			s.record(r, "image.read", studyObject(study), "success")
			return
		}
		w.Header().Set("Content-Type", partType+"; transfer-syntax="+ts)
		w.Header().Set("Content-Length", strconv.FormatInt(native.size(fr), 10))
		writeFrame(w, fr)
		s.record(r, "image.read", studyObject(study), "success")
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", fmt.Sprintf(`multipart/related; type=%q; boundary=%s`, partType, mw.Boundary()))
	for _, n := range nums {
		fr := layout.Frames[n-1]
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", partType+"; transfer-syntax="+ts)
		h.Set("Content-Length", strconv.FormatInt(native.size(fr), 10))
		h.Set("Content-Location", s.baseURL(r)+"/studies/"+study+"/series/"+series+"/instances/"+instance+"/frames/"+strconv.Itoa(n))
		pw, err := mw.CreatePart(h)
		if err != nil {
			return
		}
		if err := writeFrame(pw, fr); err != nil {
			return
		}
	}
	mw.Close()
	s.record(r, "image.read", studyObject(study), "success")
}

// Media types of compressed frames (PS3.18 Table 8.7.3-2).
var codecMediaTypes = map[string]string{
	"1.2.840.10008.1.2.4.50":  "image/jpeg",
	"1.2.840.10008.1.2.4.51":  "image/jpeg",
	"1.2.840.10008.1.2.4.57":  "image/jpeg",
	"1.2.840.10008.1.2.4.70":  "image/jpeg",
	"1.2.840.10008.1.2.4.80":  "image/jls",
	"1.2.840.10008.1.2.4.81":  "image/jls",
	"1.2.840.10008.1.2.4.90":  "image/jp2",
	"1.2.840.10008.1.2.4.91":  "image/jp2",
	"1.2.840.10008.1.2.4.201": "image/jphc",
	"1.2.840.10008.1.2.4.202": "image/jphc",
	"1.2.840.10008.1.2.4.203": "image/jphc",
	"1.2.840.10008.1.2.5":     "image/dicom-rle",
}

// Older names of the same media types that clients still send (dicomweb-client 0.11 asks for
// image/x-dicom-rle and image/x-jls).
var codecMediaAliases = map[string]string{
	"image/x-dicom-rle": "image/dicom-rle",
	"image/x-jls":       "image/jls",
	"image/jhc":         "image/jphc",
}

func storedOrNative(ts string, encapsulated bool) string {
	if encapsulated {
		return ts
	}
	return dcm.ExplicitVRLittleEndian
}

// negotiateFrames chooses the part media type and transfer syntax for frames. Native pixel data
// is served as explicit VR little endian octets (byte-swapped from big endian); encapsulated
// frames as stored.
func negotiateFrames(accept, stored string, encapsulated bool) (ts, partType string, single, ok bool) {
	have := storedOrNative(stored, encapsulated)
	codec := codecMediaTypes[stored]
	if accept == "" {
		return have, "application/octet-stream", false, true
	}
	for _, m := range parseAccept(accept) {
		pt, multi := m.partType()
		want := m.params["transfer-syntax"]
		tsOK := want == "" || want == "*" || want == have
		switch {
		case m.mediaType == "*/*" || (multi && pt == ""):
			return have, "application/octet-stream", false, true
		case pt == "application/octet-stream" && tsOK:
			// Without transfer-syntax, octet-stream means uncompressed (PS3.18 8.7.3.5.2); a
			// compressed stored frame is still sent as stored, its syntax named in the part.
			return have, "application/octet-stream", !multi, true
		case codec != "" && (pt == codec || codecMediaAliases[pt] == codec) && tsOK:
			return have, pt, !multi, true
		}
	}
	return "", "", false, false
}

// instanceLayout finds one instance and its stored layout, answering the error itself.
func (s *Service) instanceLayout(w http.ResponseWriter, r *http.Request, study, series, instance string) (*store.Instance, *store.StoredLayout, bool) {
	list, err := s.st.Instances(r.Context(), study, series, instance)
	if err != nil {
		s.storeError(w, r, err, "instance")
		return nil, nil, false
	}
	layout, err := s.st.Layout(r.Context(), list[0].PK)
	if err != nil {
		s.storeError(w, r, err, "instance")
		return nil, nil, false
	}
	return &list[0], layout, true
}

// bulkdata answers Retrieve Bulkdata (PS3.18 10.4.1.1.4) for the BulkDataURIs in metadata.
func (s *Service) bulkdata(w http.ResponseWriter, r *http.Request) {
	study, series, instance, ok := uids(w, r)
	if !ok {
		return
	}
	path := r.PathValue("path")
	in, layout, ok := s.instanceLayout(w, r, study, series, instance)
	if !ok {
		return
	}
	span, ok := layout.Bulk[path]
	if !ok {
		problem(w, http.StatusNotFound, fmt.Sprintf("no bulk data at %q", path))
		return
	}
	if path == "7FE00010" && len(layout.Frames) > 0 {
		// Pixel Data's bulk data is its frames (what viewers ask for by this URI).
		all := make([]string, len(layout.Frames))
		for i := range all {
			all[i] = strconv.Itoa(i + 1)
		}
		r.SetPathValue("frames", strings.Join(all, ","))
		s.frames(w, r)
		return
	}
	if fresh(w, r, s.etag("bulkdata", in.SHA256, r.URL.Path, r.Header.Get("Accept")), cacheFixed) {
		s.record(r, "image.read", studyObject(study), "success")
		return
	}
	single := false
	if acc := r.Header.Get("Accept"); acc != "" {
		okType := false
		for _, m := range parseAccept(acc) {
			pt, multi := m.partType()
			if pt == "application/octet-stream" || pt == "" {
				okType, single = true, !multi && m.mediaType != "*/*"
				break
			}
		}
		if !okType {
			problem(w, http.StatusNotAcceptable, "bulk data is served as application/octet-stream")
			return
		}
	}
	f, err := os.Open(s.st.FilePath(in))
	if err != nil {
		s.storeError(w, r, err, "instance")
		return
	}
	defer f.Close()
	if uncompressedSyntax(in.TransferSyntax) {
		nativePixels(w)
	}
	src := dcm.SpanReader(f, layout.Dcm(), span)
	if w := dcm.SwapWidth(layout.BulkVR[path]); w > 0 && in.TransferSyntax == dcm.ExplicitVRBigEndian {
		src = dcm.SwapReader(src, w) // bulk data is served little endian
	}
	if single {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(span.Length, 10))
		io.Copy(w, src)
		s.record(r, "image.read", studyObject(study), "success")
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", `multipart/related; type="application/octet-stream"; boundary=`+mw.Boundary())
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(span.Length, 10))
	pw, err := mw.CreatePart(h)
	if err != nil {
		return
	}
	if _, err := io.Copy(pw, src); err != nil {
		return
	}
	mw.Close()
	s.record(r, "image.read", studyObject(study), "success")
}

// wantsNative reports an Accept asking for octet-stream frames with no transfer syntax or with
// explicit VR little endian (not "*", which takes what is stored).
func wantsNative(accept string) bool {
	if accept == "" {
		return false // no preference: stored frames, as before
	}
	for _, m := range parseAccept(accept) {
		if pt, _ := m.partType(); pt == "application/octet-stream" {
			ts := m.params["transfer-syntax"]
			return ts == "" || ts == dcm.ExplicitVRLittleEndian
		}
	}
	return false
}

func losslessDecodable(ts string) bool {
	switch ts {
	case dcm.RLELossless, "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80":
		return true
	}
	return false
}

// nativeFrames decodes lossless compressed frames to native little endian pixel data.
type nativeFrames struct {
	attrs   *render.Attributes
	ts, vr  string
	frameSz int64
}

func (s *Service) nativeFrames(r *http.Request, in *store.Instance, layout *store.StoredLayout) (*nativeFrames, error) {
	meta, err := s.st.InstanceMetadata(r.Context(), in.PK)
	if err != nil {
		return nil, err
	}
	a, err := render.AttributesFromJSON(meta, nil)
	if err != nil {
		return nil, err
	}
	if a.BitsAllocated%8 != 0 || a.Rows < 1 || a.Columns < 1 || a.SamplesPerPixel < 1 {
		return nil, fmt.Errorf("pixels of %d bits allocated are not decoded to native frames", a.BitsAllocated)
	}
	size := int64(a.Rows) * int64(a.Columns) * int64(a.SamplesPerPixel) * int64(a.BitsAllocated/8)
	return &nativeFrames{attrs: a, ts: in.TransferSyntax, vr: layout.PixelVR, frameSz: size}, nil
}

func (n *nativeFrames) size(fr dcm.Frame) int64 {
	if n == nil {
		return fr.Size()
	}
	return n.frameSz
}

// decode decodes one stored frame; the attributes are what the decoded pixels are (the
// decoder may change Photometric Interpretation and Planar Configuration, see render.DecodeFrame).
func (n *nativeFrames) decode(f io.ReaderAt, dl *dcm.Layout, fr dcm.Frame) ([]byte, *render.Attributes, error) {
	raw := make([]byte, 0, fr.Size())
	for _, sp := range fr {
		b, err := dcm.ReadSpan(f, dl, sp)
		if err != nil {
			return nil, nil, err
		}
		raw = append(raw, b...)
	}
	out, a, err := render.DecodeFrame(raw, n.ts, n.vr, n.attrs)
	if err != nil {
		return nil, nil, err
	}
	if int64(len(out)) != n.frameSz {
		return nil, nil, fmt.Errorf("decoded frame has %d bytes, want %d", len(out), n.frameSz)
	}
	return out, a, nil
}
