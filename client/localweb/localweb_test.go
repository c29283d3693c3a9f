package localweb

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:11180": true, "[::1]:11180": true, "localhost:11180": true, "127.0.0.2:1": true,
		":11180": false, "0.0.0.0:11180": false, "192.168.1.5:11180": false, "[::]:11180": false, "example.org:80": false, "127.0.0.1": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	const le, jpeg = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"
	for _, c := range []struct {
		accept, ts string
		multi, ok  bool
	}{
		{`multipart/related; type="application/octet-stream"; transfer-syntax=*`, jpeg, true, true},
		{`multipart/related; type="application/octet-stream"; transfer-syntax=*`, le, true, true},
		{`multipart/related; type="application/octet-stream"`, le, true, true},
		{`multipart/related; type="application/octet-stream"`, jpeg, false, false},
		{`application/octet-stream`, le, false, true},
		{`application/octet-stream; transfer-syntax=` + jpeg, jpeg, false, true},
		{`image/jpeg`, jpeg, false, false},
		{`*/*`, jpeg, true, true},
		{``, jpeg, true, true},
	} {
		multi, ok := negotiate(c.accept, c.ts)
		if multi != c.multi || ok != c.ok {
			t.Errorf("negotiate(%q, %s) = %v, %v; want %v, %v", c.accept, c.ts, multi, ok, c.multi, c.ok)
		}
	}
}

// county is a fake county server's verify endpoint: grants by token, calls counted.
type county struct {
	*httptest.Server
	calls  atomic.Int64
	grants map[string]string // token -> study; "refused" -> 403
}

func newCounty(t *testing.T, grants map[string]string) *county {
	c := &county{grants: grants}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.calls.Add(1)
		if r.URL.Path != "/api/local-grants/verify" || r.Header.Get("Authorization") != "Bearer spt_station" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var v struct{ Token string }
		json.NewDecoder(r.Body).Decode(&v)
		study, ok := c.grants[v.Token]
		switch {
		case !ok:
			w.WriteHeader(http.StatusNotFound)
		case study == "refused":
			w.WriteHeader(http.StatusForbidden)
		default:
			json.NewEncoder(w).Encode(grant{User: "clinic", Study: study, ExpiresAt: time.Now().Add(time.Minute)})
		}
	}))
	t.Cleanup(c.Close)
	return c
}

func start(t *testing.T, c *county, roots ...string) (*Server, string) {
	t.Helper()
	s, err := Listen(Config{Addr: "127.0.0.1:0", Server: c.URL, Token: "spt_station", Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, "http://" + s.Addr()
}

func fetch(t *testing.T, url, grant string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if grant != "" {
		req.Header.Set("Authorization", "Bearer "+grant)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func waitFor(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.index.count() != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("indexed %d, want %d", s.index.count(), n)
		}
	}
}

// TestGrantsCached: a study's opening (many requests at once) costs the county one check, a
// refused grant too.
func TestGrantsCached(t *testing.T) {
	study := uploadtest.UID(1)
	dir := t.TempDir()
	for i := range 3 {
		os.WriteFile(filepath.Join(dir, uploadtest.UID(3, i)), uploadtest.Part10(study, uploadtest.UID(2), uploadtest.UID(3, i), 64), 0o600)
	}
	c := newCounty(t, map[string]string{"spg_good": study, "spg_other": "refused"})
	s, url := start(t, c, dir)
	waitFor(t, s, 3)
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body := fetch(t, url+"/dicom-web/studies/"+study+"/series/"+uploadtest.UID(2)+"/metadata", "spg_good"); code != http.StatusOK ||
				strings.Count(body, `"00080018"`) != 3 {
				t.Errorf("metadata: %d %.300s", code, body)
			}
		}()
	}
	wg.Wait()
	if n := c.calls.Load(); n != 1 {
		t.Errorf("county asked %d times, want 1", n)
	}
	for range 3 {
		if code, _ := fetch(t, url+"/dicom-web/studies/"+study+"/series", "spg_other"); code != http.StatusForbidden {
			t.Errorf("refused grant: %d", code)
		}
		if code, _ := fetch(t, url+"/dicom-web/studies/"+study+"/series", "spg_unknown"); code != http.StatusUnauthorized {
			t.Errorf("unknown grant: %d", code)
		}
	}
	if n := c.calls.Load(); n != 3 {
		t.Errorf("county asked %d times, want 3", n)
	}
	if code, _ := fetch(t, url+"/dicom-web/health", ""); code != http.StatusOK {
		t.Errorf("health: %d", code)
	}
}

// TestIndexFollowsFiles: a file added after the start is served; one removed (pruned) is not.
func TestIndexFollowsFiles(t *testing.T) {
	study, series := uploadtest.UID(1), uploadtest.UID(2)
	dir := t.TempDir()
	first := filepath.Join(dir, "a.dcm")
	os.WriteFile(first, uploadtest.Part10(study, series, uploadtest.UID(3, 1), 64), 0o600)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not DICOM"), 0o600)
	os.MkdirAll(filepath.Join(dir, ".failed"), 0o700)
	os.WriteFile(filepath.Join(dir, ".failed", "f.dcm"), uploadtest.Part10(study, series, uploadtest.UID(3, 9), 64), 0o600)
	c := newCounty(t, map[string]string{"spg_good": study})
	s, url := start(t, c, dir)
	waitFor(t, s, 1)
	second := filepath.Join(dir, "b.dcm")
	os.WriteFile(second, uploadtest.Part10(study, series, uploadtest.UID(3, 2), 64), 0o600)
	s.Add(second)
	if code, body := fetch(t, url+"/dicom-web/studies/"+study+"/series", "spg_good"); code != http.StatusOK || !strings.Contains(body, `"00201209":{"vr":"IS","Value":[2]}`) {
		t.Errorf("series: %d %s", code, body)
	}
	os.Remove(first)
	if code, body := fetch(t, url+"/dicom-web/studies/"+study+"/series/"+series+"/instances/"+uploadtest.UID(3, 1)+"/metadata", "spg_good"); code != http.StatusNotFound {
		t.Errorf("removed file: %d %s", code, body)
	}
	if s.index.count() != 1 {
		t.Errorf("index keeps %d, want 1", s.index.count())
	}
}
