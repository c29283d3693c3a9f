package upload

import (
	"bytes"
	"context"
	"io"
	"testing"

	"sanping/server/store"
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
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st := &readingStore{}
		res, err := ingest(context.Background(), st, bytes.NewReader(data), "upload", "", store.Target{})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Files) < st.n || res.Failed != len(res.Files) {
			t.Fatalf("%d files in the result, %d ingested, %d failed", len(res.Files), st.n, res.Failed)
		}
	})
}
