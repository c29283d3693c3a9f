package dicomweb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sanping/sanping/server/internal/dicomtest"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"
)

// BenchmarkSTOWSmall stores one small instance per request from 8 concurrent clients over
// loopback HTTP (set SANPING_BENCH_FILES to a directory of .dcm files; bench/cmd/dwbench -keep
// writes one). It is the in-process twin of bench/'s stow-small scenario, for profiling.
func BenchmarkSTOWSmall(b *testing.B) {
	var bodies [][]byte
	for _, data := range dicomtest.BenchFiles(b) {
		var body bytes.Buffer
		fmt.Fprintf(&body, "--B\r\nContent-Type: application/dicom\r\n\r\n")
		body.Write(data)
		fmt.Fprintf(&body, "\r\n--B--\r\n")
		bodies = append(bodies, body.Bytes())
	}
	st, err := store.Open(context.Background(), store.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	au, err := auth.New(context.Background(), st.DB(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := au.AddUser(context.Background(), auth.NewUser{Username: "admin", Roles: []string{auth.RoleAdmin}}, "bench-password"); err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	au.Mount(mux, New(Config{Store: st, Base: "/dicom-web"}).Routes())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				req, _ := http.NewRequest("POST", srv.URL+"/dicom-web/studies", bytes.NewReader(bodies[i%int64(len(bodies))]))
				req.SetBasicAuth("admin", "bench-password")
				req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
}
