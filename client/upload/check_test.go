package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sanping/sanping/client/upload/uploadtest"
	"github.com/sanping/sanping/protocol"
)

// patchCounter counts the PATCH body bytes the server reads, and may refuse DICOMweb.
type patchCounter struct {
	bytes    atomic.Int64
	noSearch bool // answer 404 under /dicom-web, as a server without it
}

func (c *patchCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.noSearch && strings.HasPrefix(r.URL.Path, "/dicom-web/") {
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodPatch {
			r.Body = &countingBody{ReadCloser: r.Body, f: func(k int) { c.bytes.Add(int64(k)) }}
		}
		h.ServeHTTP(w, r)
	})
}

// TestUploadSkipsStored: a folder uploaded again with new files in it sends the new files
// only; the others are reported already stored without being sent.
func TestUploadSkipsStored(t *testing.T) {
	var count patchCounter
	srv := uploadtest.Start(t, count.wrap)
	dir := t.TempDir()
	first := writeStudy(t, dir, 20, 30, 10<<10)
	cfg := Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir()}
	sum, err := Run(context.Background(), cfg, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 30 || sum.NotSent != 0 || count.bytes.Load() != first {
		t.Fatalf("first run: %+v; %d bytes sent, bundle of %d", sum, count.bytes.Load(), first)
	}

	count.bytes.Store(0)
	second := writeStudy(t, dir, 21, 5, 10<<10)
	sum, err = Run(context.Background(), cfg, []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stored != 5 || sum.AlreadyStored != 30 || sum.NotSent != 30 || sum.Failed != 0 || len(sum.Files) != 35 || sum.Bundles != 1 {
		t.Fatalf("second run: %+v", sum)
	}
	if n := count.bytes.Load(); n != second || sum.BytesSent != second {
		t.Fatalf("second run sent %d bytes (the client counts %d), the new files' bundle is %d", n, sum.BytesSent, second)
	}
	for _, f := range sum.Files {
		want := uploadtest.UID(21)
		if f.Outcome == OutcomeAlreadyStored {
			want = uploadtest.UID(20)
		}
		if f.StudyInstanceUID != want || f.SOPInstanceUID == "" {
			t.Fatalf("%+v", f)
		}
	}
	if n := countInstances(t, srv, 21); n != 5 {
		t.Fatalf("%d instances of the new study", n)
	}
}

// TestUploadCheckFails: a server that cannot be asked (here 404 under /dicom-web) gets every
// file, and dedups them itself.
func TestUploadCheckFails(t *testing.T) {
	count := patchCounter{noSearch: true}
	srv := uploadtest.Start(t, count.wrap)
	dir := t.TempDir()
	total := writeStudy(t, dir, 22, 4, 1000)
	var log bytes.Buffer
	cfg := Config{Server: srv.URL, Token: srv.Token, JournalDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&log, nil))}
	for run, want := range []int{0, 4} {
		count.bytes.Store(0)
		sum, err := Run(context.Background(), cfg, []string{dir})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Stored != 4-want || sum.AlreadyStored != want || sum.NotSent != 0 || count.bytes.Load() != total {
			t.Fatalf("run %d: %+v, %d bytes sent", run+1, sum, count.bytes.Load())
		}
	}
	if !strings.Contains(log.String(), "could not ask the server which instances it has") || !strings.Contains(log.String(), "404") {
		t.Fatalf("log: %s", log.String())
	}
	// Switched off, the check is not made: everything is sent to a server that has it all.
	count.noSearch = false
	count.bytes.Store(0)
	cfg.SendAll = true
	sum, err := Run(context.Background(), cfg, []string{dir})
	if err != nil || sum.AlreadyStored != 4 || sum.NotSent != 0 || count.bytes.Load() != total {
		t.Fatalf("%+v, %v, %d bytes sent", sum, err, count.bytes.Load())
	}
}

// TestUploadChecksumRecord: each member of a bundle's tar carries the SHA-256 of its file,
// and the tar laid out from the journal is a valid archive of the estimated size.
func TestUploadChecksumRecord(t *testing.T) {
	dir := t.TempDir()
	writeStudy(t, dir, 23, 3, 3000)
	found, _, _, err := walk([]string{dir}, false)
	if err != nil {
		t.Fatal(err)
	}
	b := group(found, 16<<20)[0]
	if failed := prepare(b, nil); len(failed) > 0 {
		t.Fatal(failed)
	}
	vt, err := layout(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer vt.Close()
	sums := tarChecksums(t, io.NewSectionReader(vt, 0, vt.size))
	if len(sums) != 3 {
		t.Fatalf("%d members", len(sums))
	}
	for i, p := range b.Files {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := sha256Hex(data); sums[memberName(i, p)] != want || b.Members[i].SHA256 != want {
			t.Fatalf("%s: record %s, journal %s, want %s", filepath.Base(p), sums[memberName(i, p)], b.Members[i].SHA256, want)
		}
	}
	sp := struct{ size int64 }{vt.size}
	if sp.size != estimate(b) {
		t.Fatalf("tar of %d bytes, estimated %d", sp.size, estimate(b))
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// tarChecksums gives each member's protocol.TarSHA256 record.
func tarChecksums(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h.PAXRecords[protocol.TarSHA256]
	}
}
