package client

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/client/upload"
	"github.com/sanping/sanping/client/upload/uploadtest"
)

func TestUploadCommand(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := loginFile(t, srv)
	dir := t.TempDir()
	for i := range 3 {
		d := filepath.Join(dir, fmt.Sprintf("s%d", i))
		os.MkdirAll(d, 0o755)
		b := uploadtest.Part10(uploadtest.UID(7), uploadtest.UID(7, 1), uploadtest.UID(7, 1, i), 2000)
		if err := os.WriteFile(filepath.Join(d, "IM0"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bad := filepath.Join(dir, "bad.dcm")
	os.WriteFile(bad, append(append(make([]byte, 128), "DICM"...), "garbage garbage"...), 0o644)
	journal := t.TempDir()

	var out, errs strings.Builder
	code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, dir}, &out, &errs)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out.String(), errs.String())
	}
	for _, want := range []string{"bundle 1/1: 4 files", "4 files: 3 stored, 0 already stored, 0 conflicts, 1 failed", "failed " + bad + ": "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errs.String(), "1 of 4 files not stored") {
		t.Errorf("stderr: %s", errs.String())
	}

	// Good files only, again: all already stored, exit 0.
	os.Remove(bad)
	out.Reset()
	errs.Reset()
	if code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, dir}, &out, &errs); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "3 files: 0 stored, 3 already stored") {
		t.Errorf("%s", out.String())
	}

	// Flags override the saved login; a wrong token ends the job.
	errs.Reset()
	if code := run(context.Background(), []string{"upload", "-config", config, "-journal", journal, "-token", "spt_wrong", dir}, &out, &errs); code != 1 || !strings.Contains(errs.String(), "401") {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
}

func TestUploadCommandUsage(t *testing.T) {
	config := filepath.Join(t.TempDir(), "none.json")
	for _, args := range [][]string{
		{"upload", "-config", config, "x"},                                                // no login
		{"upload", "-config", config, "-server", "http://127.0.0.1:1", "-token", "spt_x"}, // no path
	} {
		var out, errs strings.Builder
		if code := run(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("%v: exit %d (%s)", args, code, errs.String())
		}
	}
}

func TestProgressLine(t *testing.T) {
	pr := upload.Progress{Files: 10, TotalFiles: 100, Bytes: 5 << 20, TotalBytes: 20 << 20, Bundle: 1, Bundles: 2}
	got := progressLine(pr, 5<<20, 5*time.Second)
	want := "[#####...............] 10/100 files  5.0/20.0 MB  1.0 MB/s  ETA 15s"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
