package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// ContentSecurityPolicy is sent with everything the app's handler serves. Scripts only from
// this origin: Vite emits no inline script, and vue-i18n runs its runtime-only build on
// messages compiled at build time (the full build compiles with new Function). Styles allow
// 'unsafe-inline' because Element Plus sets style attributes (popper positions, z-index,
// transitions); that is styling only, never script. 'self' in connect-src covers ws: and wss:
// of the same origin in Chromium, which the live room needs. connect-src also names the
// clinic's own station (client/localweb's default address, web/src/viewer/local.ts), whose
// copies the viewer reads with a grant; a station moved elsewhere needs this changed too.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' http://127.0.0.1:11180; worker-src 'self' blob:; " +
	"object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// Handler serves the embedded browser app at / (GET and HEAD only): hashed files under
// /assets/ cached for a year, index.html revalidated on every load, and index.html for any
// other path that is not a file and not the server's own (/api, /dicom-web, /healthz), so
// that reloading /clinic/upload works (history-API routing). Without a built app it serves
// a page saying how to build it. The old live test page's address (/live.html?c=N) redirects
// to the app's room (/consultations/N/live).
func Handler() http.Handler {
	app, _ := App()
	return newHandler(app)
}

type handler struct {
	app   fs.FS // nil: the app was not built
	index []byte
	etags map[string]string // file name in app -> strong ETag
}

func newHandler(app fs.FS) *handler {
	h := &handler{app: app, etags: map[string]string{}}
	if app != nil {
		if b, err := fs.ReadFile(app, "index.html"); err == nil {
			h.index = b
		} else {
			h.app = nil
		}
	}
	if h.index == nil {
		h.index = notBuilt
	}
	if h.app != nil {
		// A few dozen files: hashing them once spares a read per request for revalidation.
		fs.WalkDir(h.app, ".", func(name string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if b, err := fs.ReadFile(h.app, name); err == nil {
					sum := sha256.Sum256(b)
					h.etags[name] = `"` + hex.EncodeToString(sum[:12]) + `"`
				}
			}
			return nil
		})
	}
	sum := sha256.Sum256(h.index)
	h.etags["index.html"] = `"` + hex.EncodeToString(sum[:12]) + `"`
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, http.StatusMethodNotAllowed, r.Method+" is not allowed here")
		return
	}
	w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	switch {
	case name == "" || name == "index.html":
		h.serveIndex(w, r)
	case name == "live.html":
		redirectLive(w, r)
	case strings.HasPrefix(name, "assets/"):
		if h.app == nil || !isFile(h.app, name) {
			writeProblem(w, http.StatusNotFound, "not found")
			return
		}
		h.serveFile(w, r, name, cacheImmutable)
	case reserved(name):
		writeProblem(w, http.StatusNotFound, "not found")
	case h.app != nil && isFile(h.app, name):
		h.serveFile(w, r, name, cacheRevalidate)
	case strings.Contains(path.Base(name), "."):
		// A missing file, not a screen: index.html would answer a script or image request
		// with HTML.
		writeProblem(w, http.StatusNotFound, "not found")
	default:
		h.serveIndex(w, r)
	}
}

// redirectLive sends the first live test page's address, which links and bookmarks still
// carry, to the app's room: /live.html?c=12&auto=1 -> /consultations/12/live?auto=1. Without a
// consultation number (or with one that is not a number) it goes to the app's home, so c never
// shapes the path beyond digits (no open redirect through "//host").
func redirectLive(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("c")
	q.Del("c")
	target := "/"
	if n, err := strconv.ParseUint(id, 10, 63); err == nil && n > 0 {
		target = "/consultations/" + strconv.FormatUint(n, 10) + "/live"
	}
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusFound)
}

// reserved: the server's own paths, never the app's screens. (/api/ and /dicom-web/ have
// their own routes; their bare names and anything under /healthz end here.)
func reserved(name string) bool {
	for _, p := range []string{"api", "dicom-web", "healthz", "assets"} {
		if name == p || strings.HasPrefix(name, p+"/") {
			return true
		}
	}
	return false
}

func isFile(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && st.Mode().IsRegular()
}

func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", cacheRevalidate)
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("ETag", h.etags["index.html"])
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.index))
}

// serveFile serves name from the built app, or its precompressed .br or .gz sibling when the
// client accepts that encoding.
func (h *handler) serveFile(w http.ResponseWriter, r *http.Request, name, cache string) {
	hd := w.Header()
	hd.Set("Cache-Control", cache)
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hd.Set("Content-Type", ctype)
	send := name
	hd.Add("Vary", "Accept-Encoding")
	for _, enc := range []struct{ token, ext string }{{"br", ".br"}, {"gzip", ".gz"}} {
		if accepts(r.Header.Get("Accept-Encoding"), enc.token) && isFile(h.app, name+enc.ext) {
			hd.Set("Content-Encoding", enc.token)
			send = name + enc.ext
			break
		}
	}
	if tag, ok := h.etags[send]; ok {
		hd.Set("ETag", tag)
	}
	b, err := fs.ReadFile(h.app, send)
	if err != nil {
		writeProblem(w, http.StatusNotFound, "not found")
		return
	}
	http.ServeContent(w, r, send, time.Time{}, bytes.NewReader(b))
}

// accepts reports whether an Accept-Encoding header value allows coding (q > 0).
func accepts(header, coding string) bool {
	for part := range strings.SplitSeq(header, ",") {
		token, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(token), coding) {
			continue
		}
		params = strings.TrimSpace(params)
		if q, ok := strings.CutPrefix(params, "q="); ok {
			v, err := strconv.ParseFloat(q, 64)
			return err == nil && v > 0
		}
		return true
	}
	return false
}

// writeProblem answers with an RFC 9457 problem document, as the API does.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Del("Cache-Control")
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}
