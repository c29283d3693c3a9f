package upload

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"sanping/server/store"
)

// Outcomes of one file of an upload.
const (
	OutcomeStored        = "stored"
	OutcomeAlreadyStored = "already-stored"
	OutcomeConflict      = "conflict" // another object is stored under the SOP Instance UID; see Error
	OutcomeFailed        = "failed"
)

// FileResult is what became of one file of an upload (a tar member, or the upload itself).
type FileResult struct {
	Name             string   `json:"name"`
	SOPInstanceUID   string   `json:"sopInstanceUID,omitempty"`
	StudyInstanceUID string   `json:"studyInstanceUID,omitempty"`
	Outcome          string   `json:"outcome"`
	Error            string   `json:"error,omitempty"`
	SHA256           string   `json:"sha256,omitempty"`
	Warnings         []string `json:"warnings,omitempty"`
}

// Result is what became of an upload, saved when its last byte arrives.
type Result struct {
	Upload        string       `json:"upload"`
	Files         []FileResult `json:"files"`
	Stored        int          `json:"stored"`
	AlreadyStored int          `json:"alreadyStored"`
	Conflicts     int          `json:"conflicts"`
	Failed        int          `json:"failed"`
}

func (r *Result) add(f FileResult) {
	switch f.Outcome {
	case OutcomeStored:
		r.Stored++
	case OutcomeAlreadyStored:
		r.AlreadyStored++
	case OutcomeConflict:
		r.Conflicts++
	default:
		r.Failed++
	}
	r.Files = append(r.Files, f)
}

// ingest reads an upload: one Part 10 file ("DICM" at offset 128, PS3.10 7.1) or a tar of
// them ("ustar" at offset 257: POSIX ustar, pax and GNU archives). Each member streams from the
// tar reader into the store. A file the store refuses fails alone; an error of the store
// itself (disk, index) fails the whole ingest, so that it can be retried.
func ingest(ctx context.Context, st instanceStore, r io.Reader, name string, t store.Target) (*Result, error) {
	res := &Result{Files: []FileResult{}}
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(512)
	switch {
	case len(head) >= 132 && string(head[128:132]) == "DICM":
		f, err := ingestOne(ctx, st, br, name, t)
		if err != nil {
			return nil, err
		}
		res.add(f)
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		tr := tar.NewReader(br)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				res.add(FileResult{Name: name, Outcome: OutcomeFailed, Error: "reading the tar archive: " + err.Error()})
				break
			}
			switch h.Typeflag {
			case tar.TypeReg:
			case tar.TypeDir:
				continue
			default:
				res.add(FileResult{Name: h.Name, Outcome: OutcomeFailed, Error: "not a regular file"})
				continue
			}
			member := &memberReader{r: tr}
			f, err := ingestOne(ctx, st, member, h.Name, t)
			if member.err != nil {
				// The archive is cut short or damaged: nothing after this member can be read.
				res.add(FileResult{Name: h.Name, Outcome: OutcomeFailed, Error: "reading the tar archive: " + member.err.Error()})
				break
			}
			if err != nil {
				return nil, err
			}
			res.add(f)
		}
	default:
		res.add(FileResult{Name: name, Outcome: OutcomeFailed,
			Error: "415 Unsupported Media Type: neither a DICOM Part 10 file (no \"DICM\" at offset 128) nor a tar archive"})
	}
	return res, nil
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
		errors.Is(err, store.ErrOtherInstitution), errors.Is(err, store.ErrStudyMismatch):
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
