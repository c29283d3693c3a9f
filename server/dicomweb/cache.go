package dicomweb

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"runtime/debug"
	"strings"
)

// Browser caching of patient data. The store never changes what it holds under a SOP
// Instance UID (a re-sent instance with other bytes is kept aside as a conflict, the first
// stays) and never deletes, so an instance's frames, bulk data and renderings are fixed for a
// given build of the server: they are cached for a while. Metadata and the series or study
// thumbnails change as instances arrive: they are revalidated on every use. Everything is
// private (patient data must never sit in a shared cache) and varies on Cookie as well as
// Accept: a browser profile shared at a clinic PC keeps one entry per session, so the next
// user's request reaches the server, its authorization check and the audit trail, and is
// answered 304 only if that user may see the study.
const (
	// cacheFixed is a session's absolute lifetime (12 h): past it the Cookie differs anyway,
	// and the browser revalidates with If-None-Match.
	cacheFixed   = "private, max-age=43200"
	cacheChanges = "private, no-cache"
	cacheVary    = "Accept, Cookie"
)

// buildTag names this build of the server in every ETag, so that a decoder or renderer fixed
// in a new build is never answered 304 with an older build's pixels. Without version control
// information (go test, a build from a tree with changes) it is random per process.
func buildTag() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				rev = st.Value
			case "vcs.modified":
				modified = st.Value
			}
		}
		if rev != "" && modified == "false" {
			return rev
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" && !strings.Contains(v, "+dirty") {
			return v
		}
	}
	return rand.Text()
}

// etag is a weak validator over what a representation depends on (the build, the stored
// instances' SHA-256, the negotiated type and parameters). Weak: multipart answers carry a
// new boundary each time, the same content otherwise.
func (s *Service) etag(parts ...string) string {
	h := sha256.New()
	h.Write([]byte(s.build))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return `W/"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
}

// fresh sets the caching headers of a representation and reports whether the client's copy
// is current (If-None-Match), in which case it has answered 304 and the caller sends nothing
// more. The caller has already been authorized for the study, and records the read either
// way: a revalidation is the user looking at the data again.
func fresh(w http.ResponseWriter, r *http.Request, etag, policy string) bool {
	h := w.Header()
	h.Set("Cache-Control", policy)
	h.Set("ETag", etag)
	h.Add("Vary", cacheVary)
	if matchesETag(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	return false
}

// matchesETag is If-None-Match's weak comparison (RFC 9110 13.1.2): "*" or any listed tag
// whose opaque part equals etag's.
func matchesETag(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == want {
			return true
		}
	}
	return false
}
