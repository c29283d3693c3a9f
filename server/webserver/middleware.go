// Package webserver holds the HTTP plumbing every route shares: security headers, CORS for
// DICOMweb viewers on other origins, and the access log.
package webserver

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// SecurityHeaders sets the headers every answer carries; HSTS only when serving TLS.
func SecurityHeaders(tlsOn bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if tlsOn {
			h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
		}
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Nothing of Sanping may be framed by another site (clickjacking a signed-in doctor).
		h.Set("X-Frame-Options", "DENY")
		if h.Get("Content-Security-Policy") == "" {
			h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		}
		next.ServeHTTP(w, r)
	})
}

// CORS lets browser viewers served from the listed origins (an OHIF deployment, say) call the
// API with credentials. Patient data is never opened to any origin: there is no wildcard.
func CORS(origins []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, o := range origins {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			allowed[o] = true
		}
	}
	if len(allowed) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !allowed[origin] {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "Warning, Content-Location, Content-Length")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, X-Requested-With")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack hands the connection to a websocket upgrader: gorilla/websocket asserts
// http.Hijacker on the writer it is given and does not look through Unwrap, so without this
// every live room's upgrade answered 500.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// Flush lets streamed answers (multipart WADO-RS, server-sent progress) reach the client as
// they are written.
func (s *statusRecorder) Flush() {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	_ = http.NewResponseController(s.ResponseWriter).Flush()
}

type identityKey struct{}

// Identify tells the access log who made the request, once authentication has proven it: a
// user name or a token's ID, never a secret. Without AccessLog in the chain it does nothing.
func Identify(ctx context.Context, who string) {
	if id, ok := ctx.Value(identityKey{}).(*atomic.Pointer[string]); ok {
		id.Store(&who)
	}
}

// AccessLog records every request with who made it (as Identify was told: empty when the
// caller was not authenticated), its answer and its time. The audit trail is the record of
// access to patient data; this is the operator's.
func AccessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		var who atomic.Pointer[string]
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), identityKey{}, &who)))
		user := ""
		if p := who.Load(); p != nil {
			user = *p
		}
		log.Info("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "status", rec.status,
			"bytes", rec.bytes, "ms", time.Since(start).Milliseconds(), "user", user, "remote", r.RemoteAddr)
	})
}
