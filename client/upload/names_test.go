package upload

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

// TestUploadNamesEveryFile: in a folder with random bytes, an empty file, a JPEG named .dcm, a
// text file and one instance, the instance is stored and each other file is named with what
// it seems to be; the same files named on the command line fail, so the job ends non-zero.
func TestUploadNamesEveryFile(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	files := map[string][]byte{
		"random.bin": {0x13, 0x37, 0x00, 0xAB, 0xCD, 0x00, 0xEF, 0x01, 0x9A},
		"empty.dcm":  {},
		"photo.dcm":  append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 16}, []byte("JFIF\x00")...),
		"notes.txt":  []byte("检查申请单 / request form\n"),
		"IM0":        uploadtest.Part10(uploadtest.UID(41), uploadtest.UID(41, 1), uploadtest.UID(41, 1, 1), 1000),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"random.bin": "no \"DICM\"", "empty.dcm": "empty file", "photo.dcm": "JPEG", "notes.txt": "text file"}
	sum, err := Run(context.Background(), Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir()}, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 1 || len(sum.Problems()) != 0 || len(sum.SkippedFiles) != len(want) {
		t.Fatalf("folder: %+v", sum)
	}
	for _, f := range sum.SkippedFiles {
		if w := want[filepath.Base(f.Path)]; w == "" || !strings.Contains(f.Error, w) {
			t.Errorf("%s skipped as %q, want it to say %q", f.Path, f.Error, w)
		}
	}
	// Named one by one, a file that is not DICOM fails.
	var named []string
	for name := range want {
		named = append(named, filepath.Join(dir, name))
	}
	sum, err = Run(context.Background(), Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir()}, named)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != len(want) || len(sum.Problems()) != len(want) {
		t.Fatalf("named files: %+v", sum)
	}
	for _, f := range sum.Problems() {
		if w := want[filepath.Base(f.Path)]; w == "" || !strings.Contains(f.Error, w) {
			t.Errorf("%s failed as %q, want it to say %q", f.Path, f.Error, w)
		}
	}
}
