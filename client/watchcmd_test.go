package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

// TestWatchCommand: files dropped into the watched folder (one written slowly, in two parts)
// are uploaded once complete and moved to .sent; a file that is not DICOM goes to .failed
// with its reason.
func TestWatchCommand(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	dir := t.TempDir()
	w := startCommand(t, "", "watch", "-config", config, "-journal", t.TempDir(), "-interval", "200ms", dir)
	study := uploadtest.UID(9)
	for i := range 4 {
		b := uploadtest.Part10(study, uploadtest.UID(9, 1), uploadtest.UID(9, 1, i), 4000)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("IM%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// One arrives slowly: half now, the rest after a few scans; it must not go half-written.
	slow := uploadtest.Part10(study, uploadtest.UID(9, 1), uploadtest.UID(9, 1, 99), 4000)
	f, _ := os.Create(filepath.Join(dir, "IM_slow"))
	f.Write(slow[:len(slow)/2])
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	time.Sleep(700 * time.Millisecond)
	f.Write(slow[len(slow)/2:])
	f.Close()
	eventually(t, 20*time.Second, "5 instances stored and sent, and notes.txt failed", func() bool {
		ins, _ := srv.Store.Instances(context.Background(), study, "", "")
		sent, _ := filepath.Glob(filepath.Join(dir, ".sent", "IM*"))
		reason, _ := os.ReadFile(filepath.Join(dir, ".failed", "notes.txt.reason"))
		return len(ins) == 5 && len(sent) == 5 && strings.Contains(string(reason), "not a DICOM")
	}, w.output)
	left, _ := filepath.Glob(filepath.Join(dir, "IM*"))
	if len(left) != 0 {
		t.Fatalf("files left in the watched folder: %v", left)
	}
}

// TestStatusCommand: after an upload, status shows an empty queue, the last success and the
// link up.
func TestStatusCommand(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	journal := t.TempDir()
	var out strings.Builder
	if code := run(context.Background(), []string{"status", "-config", config, "-journal", journal}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "last success: never") || !strings.Contains(out.String(), "link:         up") {
		t.Fatalf("status before: %d\n%s", code, out.String())
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "IM0"), uploadtest.Part10(uploadtest.UID(11), uploadtest.UID(11, 1), uploadtest.UID(11, 1, 1), 1000), 0o644)
	if code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, dir}, &out, &out); code != 0 {
		t.Fatalf("upload: %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"status", "-config", config, "-journal", journal}, &out, &out); code != 0 ||
		!strings.Contains(out.String(), "queue:        0 bundles") || strings.Contains(out.String(), "never") {
		t.Fatalf("status after: %d\n%s", code, out.String())
	}
}

// TestWatchCorrected: the modality sends an instance again, corrected, under the same SOP
// Instance UID. watch sends it (it does not skip what the server has by UID) and the server's
// answer, a conflict, puts it in .failed with the reason: never silently in .sent.
func TestWatchCorrected(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	dir := t.TempDir()
	w := startCommand(t, "", "watch", "-config", config, "-journal", t.TempDir(), "-interval", "100ms", dir)
	uid := uploadtest.UID(12, 1, 1)
	first := uploadtest.Part10(uploadtest.UID(12), uploadtest.UID(12, 1), uid, 4000)
	os.WriteFile(filepath.Join(dir, "IM1"), first, 0o644)
	eventually(t, 20*time.Second, "the first sent", func() bool { _, err := os.Stat(filepath.Join(dir, ".sent", "IM1")); return err == nil }, w.output)
	corrected := uploadtest.Part10(uploadtest.UID(12), uploadtest.UID(12, 1), uid, 5000)
	os.WriteFile(filepath.Join(dir, "IM1"), corrected, 0o644)
	eventually(t, 20*time.Second, "the correction's conflict", func() bool {
		reason, _ := os.ReadFile(filepath.Join(dir, ".failed", "IM1.reason"))
		return strings.HasPrefix(string(reason), "conflict")
	}, w.output)
}
