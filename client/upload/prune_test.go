package upload

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneSent: files sent longer ago than KeepSent go; newer ones and those elsewhere stay.
func TestPruneSent(t *testing.T) {
	dir := t.TempDir()
	wc := WatchConfig{Dir: dir, Sent: filepath.Join(dir, ".sent"), KeepSent: 30 * 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)}
	old := filepath.Join(wc.Sent, "study", "old.dcm")
	recent := filepath.Join(wc.Sent, "study", "recent.dcm")
	waiting := filepath.Join(dir, "waiting.dcm")
	for _, p := range []string{old, recent, waiting} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-31 * 24 * time.Hour)
	os.Chtimes(old, long, long)
	os.Chtimes(waiting, long, long)
	wc.prune()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("a file sent 31 days ago is still there: %v", err)
	}
	for _, p := range []string{recent, waiting} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	// Moving a file to Sent stamps it with the time it was sent.
	f := filepath.Join(dir, "new.dcm")
	os.WriteFile(f, []byte("y"), 0o644)
	os.Chtimes(f, long, long)
	wc.move(f, wc.Sent, "")
	if fi, err := os.Stat(filepath.Join(wc.Sent, "new.dcm")); err != nil || time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("moved file: %v, %v", fi, err)
	}
}
