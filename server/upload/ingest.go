package upload

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/store"
)

// Outcomes of one file of an upload (the wire types are in package protocol, which the
// station's uploader reads too).
const (
	OutcomeStored        = protocol.OutcomeStored
	OutcomeAlreadyStored = protocol.OutcomeAlreadyStored
	OutcomeConflict      = protocol.OutcomeConflict
	OutcomeFailed        = protocol.OutcomeFailed
)

// FileResult is what became of one file of an upload.
type FileResult = protocol.UploadFile

// Result is what became of an upload.
type Result = protocol.UploadResult

// ingest reads an upload: one Part 10 file ("DICM" at offset 128, PS3.10 7.1) or a tar of
// them ("ustar" at offset 257: POSIX ustar, pax and GNU archives). Each member streams from the
// tar reader into the store. A file the store refuses fails alone; an error of the store
// itself (disk, index) fails the whole ingest, so that it can be retried.
//
// A member with a protocol.TarSHA256 record, and a single file when wantSHA256 is not empty, is
// checked by the store against the hash it computes anyway (store.Target.SHA256): a mismatch
// stores nothing, and the file fails alone.
func ingest(ctx context.Context, st instanceStore, r io.Reader, name, wantSHA256 string, t store.Target, maxInstance int64) (*Result, error) {
	res := &Result{Files: []FileResult{}}
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(512)
	switch {
	case len(head) >= 132 && string(head[128:132]) == "DICM":
		t.SHA256 = wantSHA256
		f, err := ingestOne(ctx, st, br, name, t)
		if err != nil {
			return nil, err
		}
		res.Add(f)
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		if err := ingestTar(ctx, st, tar.NewReader(br), name, t, maxInstance, res); err != nil {
			return nil, err
		}
	default:
		res.Add(FileResult{Name: name, Outcome: OutcomeFailed,
			Error: "415 Unsupported Media Type: neither a DICOM Part 10 file (no \"DICM\" at offset 128) nor a tar archive"})
	}
	return res, nil
}

// memberProblem says why a tar member is not read at all, or "". Only regular files are
// instances. A sparse member (GNU.sparse.* records, PAX format 0.0-1.0) is refused: Go's tar
// reader expands its holes, so a few kilobytes of archive could make the store write and hash
// gigabytes. Without sparse members a member's bytes are the archive's own, and its declared
// size is checked against maxInstance before any is stored.
func memberProblem(h *tar.Header, maxInstance int64) string {
	if h.Typeflag != tar.TypeReg {
		return "not a regular file"
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "a sparse file: not accepted in a bundle"
		}
	}
	if h.Size > maxInstance {
		return fmt.Sprintf("%d bytes: larger than one instance may be (%d bytes)", h.Size, maxInstance)
	}
	return codingProblem(h, maxInstance)
}

// ingestTar ingests the members of a tar to its end, adding to res. A member with a
// protocol.TarSHA256 record is checked by the store.
func ingestTar(ctx context.Context, st instanceStore, tr *tar.Reader, name string, t store.Target, maxInstance int64, res *Result) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			res.Add(FileResult{Name: name, Outcome: OutcomeFailed, Error: "reading the tar archive: " + err.Error()})
			return nil
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if why := memberProblem(h, maxInstance); why != "" {
			res.Add(FileResult{Name: h.Name, Outcome: OutcomeFailed, Error: why})
			continue
		}
		f, cut, err := ingestMember(ctx, st, tr, h, t)
		if cut != nil {
			// The archive is cut short or damaged: nothing after this member can be read.
			res.Add(FileResult{Name: h.Name, Outcome: OutcomeFailed, Error: "reading the tar archive: " + cut.Error()})
			return nil
		}
		if err != nil {
			return err
		}
		res.Add(f)
	}
}

// ingestMember stores the tar member whose header tr has just read (memberProblem passed),
// decoding it first if it is coded. cut is the error reading the archive (cut short or
// damaged: nothing after can be read); err is the store's own. A member whose decoding fails
// fails alone, and its remaining bytes are read, so that tr stands at its end either way.
func ingestMember(ctx context.Context, st instanceStore, tr *tar.Reader, h *tar.Header, t store.Target) (f FileResult, cut, err error) {
	member := &memberReader{r: tr}
	t.SHA256 = h.PAXRecords[protocol.TarSHA256]
	var r io.Reader = member
	var dec *decodedReader
	if h.PAXRecords[protocol.TarCoding] != "" {
		if dec, err = decodeMember(member, h); err != nil {
			return f, nil, err
		}
		defer dec.close()
		r = dec
	}
	f, err = ingestOne(ctx, st, r, h.Name, t)
	if member.err == nil {
		_, cut = io.Copy(io.Discard, member)
	}
	if member.err != nil {
		return f, member.err, nil
	}
	if cut != nil {
		return f, cut, nil
	}
	if dec != nil && dec.err != nil {
		// Not a store failure: this member's bytes are bad, and it fails alone.
		return FileResult{Name: h.Name, Outcome: OutcomeFailed, Error: dec.err.Error()}, nil, nil
	}
	return f, nil, err
}

// ingestOne stores one Part 10 file. Refusals of the file become its FileResult; other
// errors are returned.
func ingestOne(ctx context.Context, st instanceStore, r io.Reader, name string, t store.Target) (FileResult, error) {
	f := FileResult{Name: name}
	sr, err := st.IngestFor(ctx, r, t)
	if sr != nil {
		f.SOPInstanceUID, f.StudyInstanceUID, f.SHA256, f.Warnings = sr.SOPInstanceUID, sr.StudyInstanceUID, sr.SHA256, sr.Warnings
	}
	switch {
	case err == nil && sr.Outcome == store.Stored:
		f.Outcome = OutcomeStored
	case err == nil && sr.Outcome == store.AlreadyStored:
		f.Outcome = OutcomeAlreadyStored
	case err == nil && sr.Outcome == store.Conflict:
		f.Outcome, f.Error, f.Warnings = OutcomeConflict, strings.Join(sr.Warnings, "; "), nil
	case err == nil:
		return f, fmt.Errorf("unknown store outcome %d", sr.Outcome)
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrTooLarge),
		errors.Is(err, store.ErrUIDInUse), errors.Is(err, store.ErrStudyMismatch),
		errors.Is(err, store.ErrChecksum):
		f.Outcome, f.Error = OutcomeFailed, err.Error()
	default:
		return f, err
	}
	return f, nil
}

// memberReader keeps the error of reading a tar member (other than its end), so that a broken
// archive is told from a failing store.
type memberReader struct {
	r   io.Reader
	err error
}

func (m *memberReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		m.err = err
	}
	return n, err
}
