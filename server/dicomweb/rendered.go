package dicomweb

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/sanping/sanping/server/dcm"
	"github.com/sanping/sanping/server/render"
	"github.com/sanping/sanping/server/store"
)

// Rendered and thumbnail resources (PS3.18 10.4.1.1.5, 8.3.5): a frame through the pixel
// pipeline, as JPEG or PNG, optionally windowed and fitted into a viewport.

// thumbnailSize is the viewport of thumbnails when the client names none.
const thumbnailSize = 128

type renderRequest struct {
	mediaType string
	quality   int
	viewW     int
	viewH     int
	window    *render.Window
}

// parseRenderRequest reads Accept and the rendering query parameters (PS3.18 8.3.5.1).
func parseRenderRequest(r *http.Request, thumbnail bool) (*renderRequest, error) {
	rr := &renderRequest{mediaType: "image/jpeg"}
	if thumbnail {
		rr.viewW, rr.viewH = thumbnailSize, thumbnailSize
	}
	if acc := r.Header.Get("Accept"); acc != "" {
		rr.mediaType = ""
		for _, m := range parseAccept(acc) {
			switch m.mediaType {
			case "image/jpeg", "image/png":
				rr.mediaType = m.mediaType
			case "image/*", "*/*":
				rr.mediaType = "image/jpeg"
			}
			if rr.mediaType != "" {
				break
			}
		}
		if rr.mediaType == "" {
			return nil, errNotAcceptable
		}
	}
	q := r.URL.Query()
	if v := q.Get("quality"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, fmt.Errorf("quality=%q: an integer from 1 to 100", v)
		}
		rr.quality = n
	}
	if v := q.Get("viewport"); v != "" {
		parts := strings.Split(v, ",")
		if len(parts) != 2 && len(parts) != 6 {
			return nil, fmt.Errorf("viewport=%q: vw,vh (cropping with sx,sy,sw,sh is not supported)", v)
		}
		if len(parts) == 6 {
			return nil, fmt.Errorf("viewport=%q: cropping with sx,sy,sw,sh is not supported", v)
		}
		w, errW := strconv.Atoi(strings.TrimSpace(parts[0]))
		h, errH := strconv.Atoi(strings.TrimSpace(parts[1]))
		if errW != nil || errH != nil || w < 1 || h < 1 || w > 8192 || h > 8192 {
			return nil, fmt.Errorf("viewport=%q: width and height from 1 to 8192", v)
		}
		rr.viewW, rr.viewH = w, h
	}
	if v := q.Get("window"); v != "" {
		parts := strings.Split(v, ",")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("window=%q: center,width[,function]", v)
		}
		c, errC := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
		w, errW := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
		if errC != nil || errW != nil || w < 1 {
			return nil, fmt.Errorf("window=%q: numeric center and a width of at least 1", v)
		}
		win := &render.Window{Center: c, Width: w, Function: "LINEAR"}
		if len(parts) == 3 {
			switch f := strings.ToLower(strings.TrimSpace(parts[2])); f {
			case "linear":
			case "linear-exact", "linear_exact":
				win.Function = "LINEAR_EXACT"
			case "sigmoid":
				win.Function = "SIGMOID"
			default:
				return nil, fmt.Errorf("window function %q: linear, linear-exact or sigmoid", f)
			}
		}
		rr.window = win
	}
	return rr, nil
}

var errNotAcceptable = errors.New("rendered images are image/jpeg or image/png")

// renderedInstance answers .../instances/{i}/rendered and .../frames/{n}/rendered.
func (s *Service) renderedInstance(thumbnail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		study, series, instance, ok := uids(w, r)
		if !ok {
			return
		}
		frame := 1
		if v := r.PathValue("frames"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				problem(w, http.StatusBadRequest, fmt.Sprintf("frame %q: one frame number, from 1", v))
				return
			}
			frame = n
		}
		s.renderOne(w, r, study, series, instance, frame, thumbnail, cacheFixed)
	}
}

// renderedSeries answers .../series/{r}/rendered and thumbnails of a series or study: the
// representative image is the middle instance (by Instance Number) of the first series.
func (s *Service) renderedSeries(thumbnail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		study, series, _, ok := uids(w, r)
		if !ok {
			return
		}
		list, err := s.st.Instances(r.Context(), study, series, "")
		if err != nil {
			s.storeError(w, r, err, "study or series")
			return
		}
		// Instances come ordered by series, then instance number; keep the first series with pixels.
		first := ""
		var images []store.Instance
		for _, in := range list {
			if !in.Rows.Valid || in.Rows.Int64 == 0 {
				continue
			}
			if first == "" {
				first = in.SeriesUID
			}
			if in.SeriesUID == first {
				images = append(images, in)
			}
		}
		if len(images) == 0 {
			problem(w, http.StatusNotFound, "no image in this study or series")
			return
		}
		pick := images[0]
		if thumbnail {
			pick = images[len(images)/2]
		}
		// The pick changes as instances arrive: revalidated on every use.
		s.renderOne(w, r, study, pick.SeriesUID, pick.SOPUID, 1, thumbnail, cacheChanges)
	}
}

// renderOne renders one frame of an instance; policy is its Cache-Control.
func (s *Service) renderOne(w http.ResponseWriter, r *http.Request, study, series, instance string, frame int, thumbnail bool, policy string) {
	rr, err := parseRenderRequest(r, thumbnail)
	if errors.Is(err, errNotAcceptable) {
		problem(w, http.StatusNotAcceptable, err.Error())
		return
	}
	if err != nil {
		problem(w, http.StatusBadRequest, err.Error())
		return
	}
	in, layout, ok := s.instanceLayout(w, r, study, series, instance)
	if !ok {
		return
	}
	if len(layout.Frames) == 0 {
		problem(w, http.StatusNotFound, "instance has no pixel data to render")
		return
	}
	if frame > len(layout.Frames) {
		problem(w, http.StatusNotFound, fmt.Sprintf("frame %d: the instance has %d frames", frame, len(layout.Frames)))
		return
	}
	// The image follows from the stored bytes, the frame, the query (viewport, window,
	// quality) and Accept; the instance's UID and SHA-256 cover a series' pick.
	if fresh(w, r, s.etag("rendered", in.SOPUID, in.SHA256, strconv.Itoa(frame), r.URL.Path, r.URL.RawQuery, r.Header.Get("Accept")), policy) {
		s.record(r, "image.read", studyObject(study), "success")
		return
	}
	cacheable := thumbnail && rr.window == nil
	cachePath := ""
	if cacheable {
		cachePath = filepath.Join(s.st.Dir(), "cache", "thumbnails", in.SHA256[:2],
			fmt.Sprintf("%s-%d-%dx%d-q%d.%s", in.SHA256, frame, rr.viewW, rr.viewH, rr.quality, strings.TrimPrefix(rr.mediaType, "image/")))
		if b, err := os.ReadFile(cachePath); err == nil {
			w.Header().Set("Content-Type", rr.mediaType)
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
			s.record(r, "image.read", studyObject(study), "success")
			return
		}
	}
	img, err := s.renderFrame(r, in, layout, frame, rr)
	if err != nil {
		switch {
		case errors.Is(err, render.ErrUnsupported):
			problem(w, http.StatusNotImplemented, err.Error())
		case errors.Is(err, dcm.ErrMalformed):
			problem(w, http.StatusUnprocessableEntity, "stored pixel data cannot be decoded: "+err.Error())
		default:
			s.storeError(w, r, err, "rendering")
		}
		return
	}
	var buf bytes.Buffer
	if err := render.Encode(&buf, img, rr.mediaType, rr.quality); err != nil {
		s.storeError(w, r, err, "encoding")
		return
	}
	if cacheable {
		writeCache(cachePath, buf.Bytes())
	}
	w.Header().Set("Content-Type", rr.mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
	s.record(r, "image.read", studyObject(study), "success")
}

// writeCache stores a rendered thumbnail (temp + rename; a cache needs no fsync).
func writeCache(path string, b []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	cerr := f.Close()
	if werr != nil || cerr != nil || os.Rename(f.Name(), path) != nil {
		os.Remove(f.Name())
	}
}

func (s *Service) renderFrame(r *http.Request, in *store.Instance, layout *store.StoredLayout, frame int, rr *renderRequest) (image.Image, error) {
	meta, err := s.st.InstanceMetadata(r.Context(), in.PK)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(s.st.FilePath(in))
	if err != nil {
		return nil, fmt.Errorf("opening stored instance: %w", err)
	}
	defer f.Close()
	dl := layout.Dcm()
	fetch := func(uri string) ([]byte, error) {
		// BulkDataURIs in stored metadata are relative paths ending in bulkdata/{path}.
		i := strings.LastIndex(uri, "/bulkdata/")
		if i < 0 {
			return nil, fmt.Errorf("bulk data URI %q", uri)
		}
		span, ok := layout.Bulk[uri[i+len("/bulkdata/"):]]
		if !ok {
			return nil, fmt.Errorf("no bulk data at %q", uri)
		}
		return dcm.ReadSpan(f, dl, span)
	}
	attrs, err := render.AttributesFromJSON(meta, fetch)
	if err != nil {
		return nil, err
	}
	fr := layout.Frames[frame-1]
	rawp := frameBuffer(int(fr.Size()))
	defer framePool.Put(rawp)
	raw := *rawp
	off := 0
	for _, sp := range fr {
		if _, err := io.ReadFull(dcm.SpanReader(f, dl, sp), raw[off:off+int(sp.Length)]); err != nil {
			return nil, fmt.Errorf("reading frame %d: %w", frame, err)
		}
		off += int(sp.Length)
	}
	native, attrs, err := render.DecodeFrame(raw, in.TransferSyntax, layout.PixelVR, attrs)
	if err != nil {
		return nil, err
	}
	img, err := render.Render(native, attrs, render.Options{Window: rr.window, Frame: frame})
	if err != nil {
		return nil, err
	}
	if rr.viewW > 0 {
		img = render.Resize(img, rr.viewW, rr.viewH)
	}
	return img, nil
}

// framePool reuses frame buffers: a radiograph's frame is 7-8 MB, and zeroing a new one for
// every rendering cost more than reading it.
var framePool sync.Pool

func frameBuffer(n int) *[]byte {
	if b, ok := framePool.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}
