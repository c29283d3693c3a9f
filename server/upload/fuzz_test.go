package upload

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"

	"github.com/tus/tusd/v2/pkg/handler"
)

// readingStore reads each instance to its end and refuses it, as the store refuses garbage.
type readingStore struct{ n int }

func (s *readingStore) IngestFor(_ context.Context, r io.Reader, _ store.Target) (*store.Result, error) {
	s.n++
	io.Copy(io.Discard, r)
	return nil, store.ErrInvalid
}

// FuzzIngest: any upload body gives a result (no panic, no error: only the store fails a whole
// ingest), with one FileResult per file handed to the store or refused before it.
func FuzzIngest(f *testing.F) {
	f.Add(instance("1.2.3", "1.2.3.1", "1.2.3.1.1", 64))
	f.Add(bundle(f, studyMembers("1.2.4", 3, 64)))
	f.Add(bundle(f, studyMembers("1.2.5", 2, 64))[:1500])
	f.Add(codedBundle(f, studyMembers("1.2.6", 2, 64)))
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := &readingStore{}
		res, err := ingest(context.Background(), st, bytes.NewReader(data), "upload", "", store.Target{}, 4<<30)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Files) < st.n || res.Failed != len(res.Files) {
			t.Fatalf("%d files in the result, %d ingested, %d failed", len(res.Files), st.n, res.Failed)
		}
	})
}

// FuzzStream: any body, cut anywhere in its first PATCH and sent whole after, gives a result,
// and the data file always agrees with what the first PATCH said it kept.
func FuzzStream(f *testing.F) {
	f.Add(bundle(f, studyMembers("1.2.4", 3, 64)), uint16(700))
	f.Add(bundle(f, studyMembers("1.2.5", 2, 2000)), uint16(2600))
	f.Add(instance("1.2.3", "1.2.3.1", "1.2.3.1.1", 64), uint16(100))
	f.Add([]byte("hello"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		if len(data) == 0 {
			return
		}
		st := &readingStore{}
		s, err := New(Config{Store: new(store.Store), Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		s.st = st // reads each instance and refuses it
		ctx := auth.WithPrincipal(context.Background(), &auth.Principal{Username: "station", InstitutionID: 1, Roles: []string{auth.RoleClinic}})
		up, err := s.files.NewUpload(ctx, handler.FileInfo{Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		su := syncedUpload{Upload: up, svc: s}
		k := min(int(cut), len(data))
		n, err := su.WriteChunk(ctx, 0, bytes.NewReader(data[:k]))
		if err != nil || n != int64(k) {
			t.Fatalf("first PATCH kept %d of %d: %v", n, k, err)
		}
		// Each request gets the upload afresh, as tusd does: the offset is the data file's size.
		got, err := s.files.GetUpload(ctx, mustInfo(t, up).ID)
		if err != nil {
			t.Fatal(err)
		}
		su = syncedUpload{Upload: got, svc: s}
		info := mustInfo(t, got)
		if info.Offset != n {
			t.Fatalf("offset %d after keeping %d", info.Offset, n)
		}
		if n < int64(len(data)) {
			if m, err := su.WriteChunk(ctx, n, bytes.NewReader(data[n:])); err != nil || n+m != int64(len(data)) {
				t.Fatalf("second PATCH: %d, %v", m, err)
			}
		}
		res, err := s.finish(ctx, info.ID, &auth.Principal{Username: "station", InstitutionID: 1, Roles: []string{auth.RoleClinic}})
		if err != nil {
			t.Fatal(err)
		}
		// The member the cut fell in went to the store twice: cut short, then whole.
		if len(res.Files) < st.n-1 {
			t.Fatalf("%d files in the result, %d ingested", len(res.Files), st.n)
		}
	})
}

func mustInfo(t *testing.T, up handler.Upload) handler.FileInfo {
	t.Helper()
	info, err := up.GetInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}
