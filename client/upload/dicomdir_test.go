package upload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanping/sanping/client/upload/uploadtest"
	"github.com/sanping/sanping/internal/testtool"
)

// TestUploadDICOMDIR: a DICOMDIR made by DCMTK's dcmmkdir, on media whose names read in
// lower case: its files are found and uploaded, one it references but that is gone fails
// with the reason, and a file it does not reference is not sent.
func TestUploadDICOMDIR(t *testing.T) {
	testtool.Need(t, testtool.DCMTK, "dcmmkdir")
	srv := uploadtest.Start(t, nil)
	cd := t.TempDir()
	// ISO 9660 names, as dcmmkdir wants them: 8 characters, upper case.
	series := filepath.Join(cd, "DICOM", "ST000001", "SE000001")
	if err := os.MkdirAll(series, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		b := uploadtest.Part10(uploadtest.UID(30), uploadtest.UID(30, 1), uploadtest.UID(30, 1, i), 1000)
		if err := os.WriteFile(filepath.Join(series, fmt.Sprintf("IM%06d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("dcmmkdir", "-q", "+r", "+I", "DICOM") // invents the type 1 attributes the test files lack
	cmd.Dir = cd
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dcmmkdir: %v\n%s", err, out)
	}
	// As a CD may read on Linux: a folder's name in lower case, a file with an ISO 9660
	// version; one referenced file gone; one file more that the DICOMDIR does not list.
	if err := os.Rename(filepath.Join(cd, "DICOM", "ST000001"), filepath.Join(cd, "DICOM", "st000001")); err != nil {
		t.Fatal(err)
	}
	series = filepath.Join(cd, "DICOM", "st000001", "SE000001")
	if err := os.Rename(filepath.Join(series, "IM000001"), filepath.Join(series, "im000001;1")); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(series, "IM000003")
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	extra := uploadtest.Part10(uploadtest.UID(30), uploadtest.UID(30, 1), uploadtest.UID(30, 1, 99), 1000)
	if err := os.WriteFile(filepath.Join(series, "EXTRA"), extra, 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir(), FollowDICOMDIR: true}
	sum, err := Run(context.Background(), cfg, []string{filepath.Join(cd, "DICOMDIR")})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 3 || sum.Failed != 1 || len(sum.Files) != 4 {
		t.Fatalf("%+v", sum)
	}
	p := sum.Problems()
	if p[0].Path != gone || !strings.Contains(p[0].Error, `DICOM\ST000001\SE000001\IM000003`) || !strings.Contains(p[0].Error, "missing") {
		t.Fatalf("%+v", p[0])
	}
	if n := countInstances(t, srv, 30); n != 3 {
		t.Fatalf("%d instances", n)
	}

	// The CD's folder given instead of its DICOMDIR: the DICOMDIR is skipped, its files are
	// found by the walk, and the one it lists that is gone still fails with the reason.
	sum, err = Run(context.Background(), Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir(), FollowDICOMDIR: true}, []string{cd})
	if err != nil {
		t.Fatal(err)
	}
	if p := sum.Problems(); len(p) != 1 || p[0].Path != gone || !strings.Contains(p[0].Error, "missing") {
		t.Fatalf("the folder of the CD: problems %+v", p)
	}
	if len(sum.SkippedFiles) != 1 || filepath.Base(sum.SkippedFiles[0].Path) != "DICOMDIR" {
		t.Fatalf("the folder of the CD: skipped %+v", sum.SkippedFiles)
	}

	// Without FollowDICOMDIR (sanping-station watch), a DICOMDIR given as a path is skipped.
	cfg.FollowDICOMDIR = false
	if sum, err = Run(context.Background(), cfg, []string{filepath.Join(cd, "DICOMDIR")}); err != nil || len(sum.Files) != 0 || sum.Skipped != 1 {
		t.Fatalf("%+v, %v", sum, err)
	}
}

// TestUploadBadDICOMDIR: a DICOMDIR that cannot be read ends the job with a clear error.
func TestUploadBadDICOMDIR(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"text", []byte("not a DICOMDIR at all")},
		{"no records", uploadtest.Part10(uploadtest.UID(31), uploadtest.UID(31, 1), uploadtest.UID(31, 1, 1), 10)},
		{"garbage after DICM", append(append(make([]byte, 128), "DICM"...), strings.Repeat("\x02\x00\x10\x00UI\xff\xff", 40)...)},
	} {
		path := filepath.Join(dir, tc.name, "DICOMDIR")
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Run(context.Background(), Config{Server: "http://127.0.0.1:1", Token: "spt_x", JournalDir: t.TempDir(), FollowDICOMDIR: true}, []string{path})
		if !errors.Is(err, errNotDICOMDIR) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// FuzzDICOMDIR: any bytes give file IDs or an error, without a panic.
func FuzzDICOMDIR(f *testing.F) {
	f.Add(uploadtest.Part10(uploadtest.UID(1), uploadtest.UID(1, 2), uploadtest.UID(1, 2, 3), 10))
	f.Add(append(append(make([]byte, 128), "DICM"...), "\x04\x00\x20\x12SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := parseDICOMDIR(data)
		if err != nil && ids != nil {
			t.Fatalf("file IDs with an error: %v", err)
		}
	})
}
