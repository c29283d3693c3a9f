package consult_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sanping/sanping/server/consult"
)

func pdf(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return append([]byte("%PDF-1.7\n"), b...)
}

func (e *env) consentFiles() []string {
	e.t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dir, "consent"))
	e.must(err)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

func TestConsentForm(t *testing.T) {
	e := newEnv(t)
	id := e.create()
	body := pdf(300 << 10)
	c, err := e.svc.SetConsentForm(e.ctx, e.clinic, id, `C:\扫描\知情同意书.pdf`, "application/pdf", bytes.NewReader(body), 1<<20)
	e.must(err)
	sum := sha256.Sum256(body)
	want := consult.Attachment{Name: "知情同意书.pdf", ContentType: "application/pdf", Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:])}
	if c.ConsentForm == nil || *c.ConsentForm != want {
		t.Fatalf("attachment %+v, want %+v", c.ConsentForm, want)
	}
	att, rc, err := e.svc.ConsentForm(e.ctx, id)
	e.must(err)
	got, err := io.ReadAll(rc)
	rc.Close()
	e.must(err)
	if *att != want || !bytes.Equal(got, body) {
		t.Errorf("read back %+v, %d bytes, equal %v", att, len(got), bytes.Equal(got, body))
	}
	if files := e.consentFiles(); !slices.Equal(files, []string{want.SHA256}) {
		t.Errorf("consent directory holds %v", files)
	}
	entries := e.entries(id)
	if last := entries[len(entries)-1]; last.Action != "consultation.consent.upload" || !strings.Contains(last.Detail, want.SHA256) {
		t.Errorf("audit entry %+v", last)
	}

	exe := append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00"), make([]byte, 4096)...)
	n := e.auditLen()
	for _, tc := range []struct {
		name, contentType string
		body              []byte
		max               int64
		field, problem    string
	}{
		{"exe claimed to be PDF", "application/pdf", exe, 1 << 20, "file", "not application/pdf"},
		{"PNG claimed to be JPEG", "image/jpeg", []byte("\x89PNG\r\n\x1a\n0000"), 1 << 20, "file", "not image/jpeg"},
		{"exe type", "application/x-msdownload", exe, 1 << 20, "contentType", "must be"},
		{"no type", "", body, 1 << 20, "contentType", "must be"},
		{"empty", "application/pdf", nil, 1 << 20, "file", "not application/pdf"},
		{"too large", "application/pdf", pdf(2000), 1000, "file", "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.SetConsentForm(e.ctx, e.clinic, id, "x.pdf", tc.contentType, bytes.NewReader(tc.body), tc.max)
			var fe *consult.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Problem, tc.problem) {
				t.Fatalf("got %v, want ErrInvalid on %s: %s", err, tc.field, tc.problem)
			}
			if files := e.consentFiles(); !slices.Equal(files, []string{want.SHA256}) {
				t.Errorf("refused upload left files: %v", files)
			}
		})
	}
	if e.auditLen() != n {
		t.Error("refused uploads audited")
	}
	if c := e.get(id); *c.ConsentForm != want {
		t.Errorf("refused uploads changed the attachment: %+v", c.ConsentForm)
	}

	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	c, err = e.svc.SetConsentForm(e.ctx, e.clinic, id, "", "image/png; charset=binary", bytes.NewReader(png), 0)
	e.must(err)
	if c.ConsentForm.Name != "consent.png" || c.ConsentForm.ContentType != "image/png" || c.ConsentForm.Size != int64(len(png)) {
		t.Errorf("replaced by %+v", c.ConsentForm)
	}
	if len(e.consentFiles()) != 2 {
		t.Errorf("the replaced form is not kept: %v", e.consentFiles())
	}

	live := e.inState(consult.Live)
	if _, err := e.svc.SetConsentForm(e.ctx, e.clinic, live, "x.pdf", "application/pdf", bytes.NewReader(body), 1<<20); !errors.Is(err, consult.ErrConflict) {
		t.Errorf("upload while live: %v, want ErrConflict", err)
	}
	if _, _, err := e.svc.ConsentForm(e.ctx, live); !errors.Is(err, consult.ErrNotFound) {
		t.Errorf("no consent form: %v, want ErrNotFound", err)
	}
	if len(e.consentFiles()) != 2 {
		t.Errorf("refused upload left files: %v", e.consentFiles())
	}
}
