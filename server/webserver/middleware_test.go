package webserver

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sanping/sanping/internal/testtool"
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

// TestWebsocketThroughChain: a websocket upgrade passes the whole chain (the access log's
// writer must let the connection be hijacked), and the log records 101.
func TestWebsocketThroughChain(t *testing.T) {
	logged := &testtool.Buffer{}
	log := slog.New(slog.NewTextHandler(logged, nil))
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if typ, msg, err := c.ReadMessage(); err == nil {
			c.WriteMessage(typ, msg)
		}
	})
	srv := httptest.NewServer(SecurityHeaders(false, CORS([]string{"https://viewer.example"}, AccessLog(log, echo))))
	defer srv.Close()
	c, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("upgrade through the chain: %v (status %d)", err, status)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("三屏")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "三屏" {
		t.Fatalf("echo: %q %v", msg, err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logged.String(), "status=101") {
		if time.Now().After(deadline) {
			t.Fatalf("access log lacks status 101: %s", logged.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFlushThroughChain: a streamed answer is flushed through the access log's writer.
func TestFlushThroughChain(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	release := make(chan struct{})
	h := AccessLog(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		<-release
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer close(release)
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != "first part\n" {
		t.Fatalf("flushed part: %q %v", line, err)
	}
}

// TestAccessLogNamesTheCaller: the log line carries who authentication proved (Identify), not
// what a request claims, and never its credentials.
func TestAccessLogNamesTheCaller(t *testing.T) {
	logged := &testtool.Buffer{}
	log := slog.New(slog.NewTextHandler(logged, nil))
	h := AccessLog(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer spt_secret" {
			Identify(r.Context(), "token:7")
		}
	}))
	for _, auth := range []string{"Bearer spt_secret", "Basic bWFsbG9yeTpndWVzcw=="} {
		req := httptest.NewRequest("GET", "/dicom-web/studies", nil)
		req.Header.Set("Authorization", auth)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "user=token:7") || !strings.Contains(lines[1], `user=""`) {
		t.Fatalf("access log:\n%s", logged.String())
	}
	if strings.Contains(logged.String(), "spt_secret") || strings.Contains(logged.String(), "mallory") {
		t.Fatalf("a credential or an unproven claim reached the log:\n%s", logged.String())
	}
}
