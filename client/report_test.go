package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/client/scp"
	"github.com/sanping/sanping/client/upload/uploadtest"
	"github.com/sanping/sanping/server/auth"
)

// lastReport is the server's latest report of the test station ("" when none).
func lastReport(t *testing.T, srv *uploadtest.Server) *auth.StationReport {
	t.Helper()
	r, err := srv.Auth.StationReport(context.Background(), srv.TokenID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWatchReportsStatus: the watching station reports its status when it starts and again
// after an upload attempt (the minute's tick is far off), so the server learns of the
// upload's success and the emptied queue.
func TestWatchReportsStatus(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	dir := t.TempDir()
	w := startCommand(t, "", "watch", "-config", config, "-journal", t.TempDir(), "-interval", "100ms", dir)
	eventually(t, 10*time.Second, "a report at start", func() bool { return lastReport(t, srv) != nil }, w.output)
	first := lastReport(t, srv)
	if !first.LastSuccess.IsZero() || first.Queue.Files != 0 || first.Spool != nil {
		t.Errorf("first report: %+v", first)
	}
	os.WriteFile(filepath.Join(dir, "IM1"), uploadtest.Part10(uploadtest.UID(21), uploadtest.UID(21, 1), uploadtest.UID(21, 1, 1), 2000), 0o644)
	eventually(t, 20*time.Second, "a report of the upload", func() bool {
		r := lastReport(t, srv)
		return !r.LastSuccess.IsZero() && r.Queue == first.Queue && r.LastError == nil
	}, w.output)
}

// TestReportNeverHoldsUploads: a server that never answers the report (or refuses it) does not
// hold up or fail the uploads.
func TestReportNeverHoldsUploads(t *testing.T) {
	for _, mode := range []string{"hang", "refuse"} {
		t.Run(mode, func(t *testing.T) {
			srv := uploadtest.Start(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/api/station/status" {
						h.ServeHTTP(w, r)
						return
					}
					if mode == "hang" {
						// The body read, the server notices the client going away.
						io.Copy(io.Discard, r.Body)
						<-r.Context().Done()
						return
					}
					http.Error(w, "no", http.StatusInternalServerError)
				})
			})
			config := loginFile(t, srv)
			dir := t.TempDir()
			w := startCommand(t, "", "watch", "-config", config, "-journal", t.TempDir(), "-interval", "100ms", dir)
			for i := range 3 {
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("IM%d", i)), uploadtest.Part10(uploadtest.UID(22), uploadtest.UID(22, 1), uploadtest.UID(22, 1, i), 2000), 0o644)
			}
			eventually(t, 20*time.Second, "3 files sent", func() bool {
				sent, _ := filepath.Glob(filepath.Join(dir, ".sent", "IM*"))
				return len(sent) == 3
			}, w.output)
		})
	}
}

// TestStatusCommandReports: `sanping-station status` with a login sends what it shows,
// the SCP's spool included.
func TestStatusCommandReports(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	spool := t.TempDir()
	state, _ := json.Marshal(scp.State{Updated: time.Now(), Running: true, Free: 5 << 30, MinFree: 1 << 30, Waiting: 4, WaitingBytes: 4 << 20,
		Refusing: "disk full"})
	if err := os.WriteFile(filepath.Join(spool, scp.StateName), state, 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if code := run(context.Background(), []string{"status", "-config", config, "-journal", t.TempDir(), "-spool", spool}, &out, &out); code != 0 {
		t.Fatalf("status: %d\n%s", code, out.String())
	}
	r := lastReport(t, srv)
	if r == nil || r.Spool == nil || r.Spool.WaitingImages != 4 || r.Spool.WaitingBytes != 4<<20 || r.Spool.DiskFree != 5<<30 || !r.Spool.Refusing {
		t.Errorf("report: %+v", r)
	}
}
