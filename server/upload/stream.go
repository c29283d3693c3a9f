package upload

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sanping/sanping/internal/durable"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"

	"github.com/tus/tusd/v2/pkg/filestore"
)

// An upload's first PATCH (from offset 0) is ingested as it arrives when it carries a tar: each
// member goes from the request into the store, and only what a cut PATCH leaves of a member not
// yet ingested is written to the upload's data file. The data file is otherwise a hole of the
// upload's size (so that tusd's filestore, which takes the offset from the file's size, agrees).
// What was ingested is recorded in a sidecar (<id>.stream.json: the offset where the tar goes
// on, and the results so far), made durable before the PATCH is answered; the final ingest
// (finish) reads the data file from that offset on. Without this, every byte was written to
// the data file, synced, read back and written again by the store.

const streamBufLimit = 8 << 20 // bytes of a member kept in memory before going to the data file

// streamed is the sidecar.
type streamed struct {
	// From is where the tar goes on in the data file: the start of the first member (its
	// header) not ingested, or the end of the archive.
	From  int64        `json:"from"`
	Files []FileResult `json:"files"`
}

func (s *Service) streamPath(id string) string { return s.dataPath(id) + ".stream.json" }

func (s *Service) readStreamed(id string) (*streamed, error) {
	data, err := os.ReadFile(s.streamPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st streamed
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.streamPath(id), err)
	}
	return &st, nil
}

// keeper counts what is read from the request and keeps the bytes from a mark on: in memory
// up to streamBufLimit, then in the data file f (and from then on, everything after too).
type keeper struct {
	r       io.Reader
	f       *os.File
	n       int64  // bytes read
	mark    int64  // keep bytes from here
	buf     []byte // bytes from mark to n, while in memory
	spilled bool   // bytes go to f
	err     error  // of writing to f
}

func (k *keeper) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		start := max(k.mark-k.n, 0) // bytes of p before the mark are not kept
		if start < int64(n) {
			k.keep(p[start:n], k.n+start)
		}
		k.n += int64(n)
	}
	return n, err
}

func (k *keeper) keep(b []byte, at int64) {
	if !k.spilled && len(k.buf)+len(b) <= streamBufLimit {
		k.buf = append(k.buf, b...)
		return
	}
	k.spill()
	if k.err == nil {
		_, k.err = k.f.WriteAt(b, at)
	}
}

// spill moves the bytes kept in memory to the data file; later bytes go there directly.
func (k *keeper) spill() {
	if !k.spilled && len(k.buf) > 0 && k.err == nil {
		_, k.err = k.f.WriteAt(k.buf, k.mark)
	}
	k.spilled, k.buf = true, nil
}

// setMark drops what was kept and keeps from off on (a member boundary, at or after n).
func (k *keeper) setMark(off int64) {
	k.mark = off
	k.buf = k.buf[:0]
}

// streamChunk ingests the first PATCH of a tar upload as it arrives and returns how many bytes
// of the request are now the server's (ingested, or kept in the data file), as WriteChunk does.
// ok is false when the upload is not for streaming (not a tar, or already under way): nothing
// was read then.
func (u syncedUpload) streamChunk(ctx context.Context, src io.Reader) (n int64, ok bool, err error) {
	s := u.svc
	info, err := u.Upload.GetInfo(ctx)
	if err != nil || info.Offset != 0 {
		return 0, false, nil
	}
	p, hasP := auth.FromContext(ctx)
	if !hasP {
		return 0, false, nil
	}
	if st, err := s.readStreamed(info.ID); err != nil || st != nil {
		return 0, false, nil
	}
	f, err := os.OpenFile(info.Storage[filestore.StorageKeyPath], os.O_WRONLY, 0)
	if err != nil {
		return 0, false, nil // tusd's filestore answers for it
	}
	defer f.Close()
	// The tar's first block tells whether to stream; it is read here and kept.
	k := &keeper{r: src, f: f}
	head := make([]byte, 512)
	got, _ := io.ReadFull(k, head)
	if got < 512 || string(head[257:262]) != "ustar" {
		// Not a tar (or too short to tell): the data file takes it all, as tusd's filestore would.
		n, err := u.writeFile(ctx, io.MultiReader(bytes.NewReader(head[:got]), src))
		return n, true, err
	}

	ictx := context.WithoutCancel(ctx)
	t := store.Target{InstitutionID: p.InstitutionID, OwnOnly: !p.HasRole(auth.RoleAdmin)}
	var res streamed
	tr := tar.NewReader(io.MultiReader(bytes.NewReader(head), k))
	ended := false // the end of the archive was read
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// The end of the archive, or the request cut at a member boundary (which tar
			// reads as an end too): only the first if every byte arrived.
			ended = k.n == info.Size
			break
		}
		if err != nil {
			break // cut short (or not a tar after all): the rest goes to the data file
		}
		if memberProblem(h, s.cfg.MaxInstance) != "" {
			break // finish reports it, as for any upload, and reads none of it
		}
		fr, cut, err := ingestMember(ictx, s.st, tr, h, t)
		if cut != nil || err != nil || k.err != nil {
			break // cut short, or the store failed: finish ingests this member from the data file
		}
		// The member is in the store: the tar goes on at the block after its data.
		res.Files = append(res.Files, fr)
		res.From = (k.n + 511) / 512 * 512
		k.setMark(res.From)
	}
	if ended {
		res.From = k.n
		k.setMark(k.n) // the end of the archive needs no keeping: finish reads zeros there
	}
	// Whatever the request still holds (the rest of a tar that could not be streamed, or the
	// end of the archive) is kept too.
	if _, err := io.Copy(io.Discard, k); err != nil {
		return 0, true, err
	}
	k.spill()
	if k.err != nil {
		return 0, true, fmt.Errorf("writing the upload's data file: %w", k.err)
	}
	// The data file is as long as what arrived; only the kept part holds data.
	if err := f.Truncate(k.n); err == nil {
		err = durable.DataSync(f)
		if err != nil {
			return 0, true, fmt.Errorf("syncing the upload's data file: %w", err)
		}
	} else {
		return 0, true, fmt.Errorf("sizing the upload's data file: %w", err)
	}
	if res.From == 0 && len(res.Files) == 0 {
		return k.n, true, nil // nothing ingested: the data file holds it all
	}
	data, err := json.Marshal(res)
	if err == nil {
		err = durable.WriteFile(s.streamPath(info.ID), data)
	}
	if err != nil {
		return 0, true, fmt.Errorf("recording what was ingested: %w", err)
	}
	return k.n, true, nil
}
