package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

var testApp = fstest.MapFS{
	"index.html":                {Data: []byte(`<!doctype html><script type="module" src="/assets/index-AbC123.js"></script>`)},
	"favicon.svg":               {Data: []byte(`<svg/>`)},
	"assets/index-AbC123.js":    {Data: []byte(`console.log("app")`)},
	"assets/index-AbC123.js.gz": {Data: []byte(`gzipped`)},
	"assets/index-AbC123.js.br": {Data: []byte(`brotli`)},
	"assets/index-9z8Y.css":     {Data: []byte(`body{}`)},
}

func get(t *testing.T, h http.Handler, method, target string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServeBuiltApp(t *testing.T) {
	h := newHandler(testApp)
	index := string(testApp["index.html"].Data)
	for _, c := range []struct {
		name, path, accept string
		status             int
		body, cache, ctype string
		encoding           string
	}{
		{"root", "/", "", 200, index, "no-cache", "text/html; charset=utf-8", ""},
		{"index.html", "/index.html", "", 200, index, "no-cache", "text/html; charset=utf-8", ""},
		{"a screen reloaded", "/clinic/upload", "", 200, index, "no-cache", "text/html; charset=utf-8", ""},
		{"a screen with an ID", "/doctor/consultations/12", "", 200, index, "no-cache", "text/html; charset=utf-8", ""},
		{"hashed script", "/assets/index-AbC123.js", "", 200, `console.log("app")`, "public, max-age=31536000, immutable", "text/javascript; charset=utf-8", ""},
		{"hashed script, gzip", "/assets/index-AbC123.js", "gzip, deflate", 200, "gzipped", "public, max-age=31536000, immutable", "text/javascript; charset=utf-8", "gzip"},
		{"hashed script, br preferred", "/assets/index-AbC123.js", "gzip, deflate, br, zstd", 200, "brotli", "public, max-age=31536000, immutable", "text/javascript; charset=utf-8", "br"},
		{"br refused with q=0", "/assets/index-AbC123.js", "br;q=0, gzip", 200, "gzipped", "public, max-age=31536000, immutable", "text/javascript; charset=utf-8", "gzip"},
		{"stylesheet without a compressed copy", "/assets/index-9z8Y.css", "br", 200, "body{}", "public, max-age=31536000, immutable", "text/css; charset=utf-8", ""},
		{"file at the top", "/favicon.svg", "", 200, "<svg/>", "no-cache", "image/svg+xml", ""},
		{"the old live page's script, gone", "/live.js", "", 404, "", "", "application/problem+json", ""},
		{"missing asset", "/assets/index-old.js", "", 404, "", "", "application/problem+json", ""},
		{"assets folder", "/assets/", "", 404, "", "", "application/problem+json", ""},
		{"missing file", "/favicon.ico", "", 404, "", "", "application/problem+json", ""},
		{"bare /api", "/api", "", 404, "", "", "application/problem+json", ""},
		{"bare /dicom-web", "/dicom-web", "", 404, "", "", "application/problem+json", ""},
		{"under /healthz", "/healthz/x", "", 404, "", "", "application/problem+json", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			hdr := map[string]string{}
			if c.accept != "" {
				hdr["Accept-Encoding"] = c.accept
			}
			rec := get(t, h, "GET", c.path, hdr)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			if c.body != "" && rec.Body.String() != c.body {
				t.Errorf("body %q, want %q", rec.Body, c.body)
			}
			if got := rec.Header().Get("Cache-Control"); got != c.cache {
				t.Errorf("Cache-Control %q, want %q", got, c.cache)
			}
			if got := rec.Header().Get("Content-Type"); got != c.ctype {
				t.Errorf("Content-Type %q, want %q", got, c.ctype)
			}
			if got := rec.Header().Get("Content-Encoding"); got != c.encoding {
				t.Errorf("Content-Encoding %q, want %q", got, c.encoding)
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q", got)
			}
		})
	}
	// Compressed and plain answers differ by Accept-Encoding: caches must keep both.
	if v := get(t, h, "GET", "/assets/index-AbC123.js", nil).Header().Get("Vary"); v != "Accept-Encoding" {
		t.Errorf("Vary %q", v)
	}
}

func TestRevalidateIndex(t *testing.T) {
	h := newHandler(testApp)
	first := get(t, h, "GET", "/", nil)
	etag := first.Header().Get("ETag")
	if etag == "" {
		t.Fatal("index.html has no ETag")
	}
	if rec := get(t, h, "GET", "/", map[string]string{"If-None-Match": etag}); rec.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", rec.Code)
	}
	if rec := get(t, h, "HEAD", "/clinic/studies", nil); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	h := newHandler(testApp)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		rec := get(t, h, m, "/index.html", nil)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q", m, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

// TestOldLivePage: the first live test page's address, still in links and bookmarks, goes
// to the app's room with the other query parameters kept; c never becomes anything but digits.
func TestOldLivePage(t *testing.T) {
	h := newHandler(testApp)
	for _, c := range []struct{ method, target, want string }{
		{"GET", "/live.html?c=12", "/consultations/12/live"},
		{"GET", "/live.html?c=12&auto=1", "/consultations/12/live?auto=1"},
		{"HEAD", "/live.html?auto=1&c=7&lang=en", "/consultations/7/live?auto=1&lang=en"},
		{"GET", "/live.html", "/"},
		{"GET", "/live.html?auto=1", "/?auto=1"},
		{"GET", "/live.html?c=//evil.example/x", "/"},
		{"GET", "/live.html?c=-1", "/"},
		{"GET", "/live.html?c=0", "/"},
		{"GET", "/live.html?c=12%2F..%2F..%2Fapi", "/"},
	} {
		rec := get(t, h, c.method, c.target, nil)
		if rec.Code != http.StatusFound || rec.Header().Get("Location") != c.want {
			t.Errorf("%s %s: %d Location %q, want 302 %q", c.method, c.target, rec.Code, rec.Header().Get("Location"), c.want)
		}
	}
	if rec := get(t, h, "POST", "/live.html?c=1", nil); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /live.html: %d", rec.Code)
	}
}

func TestNotBuilt(t *testing.T) {
	h := newHandler(nil)
	for _, p := range []string{"/", "/index.html", "/clinic/upload"} {
		rec := get(t, h, "GET", p, nil)
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != 200 || !strings.Contains(string(body), "make run") || !strings.Contains(string(body), "网页界面") {
			t.Errorf("%s: %d %.200s", p, rec.Code, body)
		}
		if rec.Header().Get("Content-Security-Policy") != ContentSecurityPolicy {
			t.Errorf("%s: no CSP", p)
		}
	}
	if rec := get(t, h, "GET", "/assets/index-AbC123.js", nil); rec.Code != 404 {
		t.Errorf("asset without an app: %d", rec.Code)
	}
	if rec := get(t, h, "GET", "/live.html?c=3", nil); rec.Code != http.StatusFound || rec.Header().Get("Location") != "/consultations/3/live" {
		t.Errorf("old live page without the app: %d %q", rec.Code, rec.Header().Get("Location"))
	}
	// An app folder without index.html (a build that failed half way) is not an app.
	if rec := get(t, newHandler(fstest.MapFS{"assets/x.js": {Data: []byte("x")}}), "GET", "/", nil); !strings.Contains(rec.Body.String(), "make run") {
		t.Errorf("half-built app: %.200s", rec.Body)
	}
}

// TestStrictPolicy: the policy forbids inline script and eval, and framing.
func TestStrictPolicy(t *testing.T) {
	directives := map[string]string{}
	for d := range strings.SplitSeq(ContentSecurityPolicy, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	for name, want := range map[string]string{
		"default-src": "'self'", "script-src": "'self' 'wasm-unsafe-eval'", "frame-ancestors": "'none'", "base-uri": "'none'",
		"connect-src": "'self' http://127.0.0.1:11180", "object-src": "'none'", "form-action": "'self'",
	} {
		if directives[name] != want {
			t.Errorf("%s %q, want %q", name, directives[name], want)
		}
	}
	// 'wasm-unsafe-eval' lets WebAssembly compile (the viewer's codecs), not JavaScript's eval.
	if strings.Contains(strings.ReplaceAll(ContentSecurityPolicy, "'wasm-unsafe-eval'", ""), "unsafe-eval") || strings.Contains(directives["script-src"], "unsafe-inline") {
		t.Error("the policy allows inline script or eval")
	}
}

// TestEmbedded: the embedded handler works whether or not the app was built before go build.
func TestEmbedded(t *testing.T) {
	h := Handler()
	if rec := get(t, h, "GET", "/", nil); rec.Code != 200 {
		t.Errorf("/: %d", rec.Code)
	}
	if rec := get(t, h, "GET", "/live.js", nil); rec.Code != 404 {
		t.Errorf("/live.js: %d, want 404 (the old live page is gone)", rec.Code)
	}
	if _, built := App(); built {
		rec := get(t, h, "GET", "/", nil)
		if strings.Contains(rec.Body.String(), "make run") {
			t.Error("the built app serves the not-built page")
		}
	}
}
