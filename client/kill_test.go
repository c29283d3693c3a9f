package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

// TestMain lets a test run this binary as the station program (a child process to kill).
// The tests read the station's English unless they ask for Chinese (-lang zh): a test
// machine's locale must not decide what they see.
func TestMain(m *testing.M) {
	os.Setenv("SANPING_LANG", "en") //nolint:errcheck // cannot fail for a valid name
	if os.Getenv("SANPING_CLIENT_CHILD") == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestUploadKill9: `sanping-station upload` killed with SIGKILL in the middle of sending (a real
// process, no chance to clean up), then run again with the same command: it finishes, every
// instance is stored once, and the second run sends no more than what the server had not
// received before the kill.
func TestUploadKill9(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL")
	}
	var received atomic.Int64
	srv := uploadtest.Start(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch {
				// A slow link, so that the kill lands in the middle of a bundle.
				r.Body = countBody{slowBody{r.Body}, &received}
			}
			h.ServeHTTP(w, r)
		})
	})
	config := loginFile(t, srv)
	dir := t.TempDir()
	const n = 40
	var total int64
	for i := range n {
		b := uploadtest.Part10(uploadtest.UID(9), uploadtest.UID(9, 1), uploadtest.UID(9, 1, i), 400<<10)
		total += int64(len(b))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("IM%04d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	journal := t.TempDir()
	args := []string{"upload", "-config", config, "-journal", journal, dir}

	child := exec.Command(os.Args[0], args...)
	child.Env = append(os.Environ(), "SANPING_CLIENT_CHILD=1")
	var out strings.Builder
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); received.Load() < total/3; {
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatalf("the child sent only %d bytes\n%s", received.Load(), out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	// What the server read before the kill (its handlers finish the cut PATCHes meanwhile).
	time.Sleep(200 * time.Millisecond)
	before := received.Load()
	if before >= total {
		t.Fatalf("the child finished before the kill (%d of %d bytes)", before, total)
	}

	var out2, errs2 strings.Builder
	if code := run(context.Background(), args, &out2, &errs2); code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out2.String(), errs2.String())
	}
	if !strings.Contains(out2.String(), fmt.Sprintf("%d files: ", n)) || strings.Contains(out2.String(), "failed "+dir) {
		t.Errorf("second run's summary:\n%s", out2.String())
	}
	inst, err := srv.Store.Instances(context.Background(), uploadtest.UID(9), "", "")
	if err != nil || len(inst) != n {
		t.Fatalf("%d instances stored, want %d: %v", len(inst), n, err)
	}
	second := received.Load() - before
	overhead := int64(n)*2048 + 4*1024 // per member: PAX and ustar headers, padding; ends of tars
	t.Logf("data %d bytes; the server read %d before the kill, %d after", total, before, second)
	if second > total-before+overhead {
		t.Errorf("the second run sent %d bytes; %d were left", second, total-before)
	}
}

type countBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

// slowBody reads at most 64 KiB every 2 ms (about 30 MB/s).
type slowBody struct{ io.ReadCloser }

func (b slowBody) Read(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return b.ReadCloser.Read(p[:min(len(p), 64<<10)])
}
