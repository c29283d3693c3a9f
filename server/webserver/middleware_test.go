package webserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCORS(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := CORS([]string{"https://viewer.example.cn/", " http://localhost:3000"}, next)
	cases := []struct {
		name, method, origin, reqMethod string
		wantStatus                      int
		wantAllow                       string
	}{
		{"same origin request passes untouched", "GET", "", "", http.StatusTeapot, ""},
		{"allowed origin gets CORS headers", "GET", "https://viewer.example.cn", "", http.StatusTeapot, "https://viewer.example.cn"},
		{"trailing slash in config still matches", "POST", "http://localhost:3000", "", http.StatusTeapot, "http://localhost:3000"},
		{"other origin gets nothing", "GET", "https://evil.example", "", http.StatusTeapot, ""},
		{"preflight of an allowed origin answered here", "OPTIONS", "https://viewer.example.cn", "POST", http.StatusNoContent, "https://viewer.example.cn"},
		{"preflight of another origin goes on (and meets auth)", "OPTIONS", "https://evil.example", "POST", http.StatusTeapot, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, "/dicom-web/studies", nil)
			if c.origin != "" {
				req.Header.Set("Origin", c.origin)
			}
			if c.reqMethod != "" {
				req.Header.Set("Access-Control-Request-Method", c.reqMethod)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, c.wantStatus)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != c.wantAllow {
				t.Errorf("Allow-Origin %q, want %q", got, c.wantAllow)
			}
			if c.wantAllow != "" && rec.Header().Get("Access-Control-Allow-Credentials") != "true" {
				t.Error("credentials not allowed for an allowed origin")
			}
		})
	}
	if got := CORS(nil, next); got == nil {
		t.Fatal("CORS without origins returned nil")
	}
}

func TestSecurityHeaders(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for _, tlsOn := range []bool{false, true} {
		rec := httptest.NewRecorder()
		SecurityHeaders(tlsOn, next).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if hsts := rec.Header().Get("Strict-Transport-Security") != ""; hsts != tlsOn {
			t.Errorf("tls=%v: HSTS present=%v", tlsOn, hsts)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Error("nosniff missing")
		}
	}
}
