package dicomweb

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"
)

// Failure and warning reasons of a Store Instances response (PS3.18 10.5.3, PS3.4 B.2.3).
const (
	reasonNotAuthorized     = 0x0124 // PS3.7 C.5.3: Refused: Not Authorized
	reasonProcessingFailure = 0x0110
	reasonOutOfResources    = 0xA700
	reasonDataSetMismatch   = 0xA900 // also used for a Study Instance UID other than the URL's
	reasonCannotUnderstand  = 0xC000
	warningCoercion         = 0xB000
)

type stowFailure struct {
	classUID, instanceUID string
	reason                int
	comment               string
}

type stowSuccess struct {
	res      *store.Result
	warnings []string
}

// stow handles Store Instances (PS3.18 10.5): each part of a multipart/related body is one
// Part 10 instance, stored on its own so that a broken part fails alone.
func (s *Service) stow(w http.ResponseWriter, r *http.Request) {
	study, _, _, ok := uids(w, r)
	if !ok {
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt, params = lenientMediaType(r.Header.Get("Content-Type"))
	}
	if mt != "multipart/related" {
		problem(w, http.StatusUnsupportedMediaType, fmt.Sprintf(`Content-Type %q: STOW-RS takes multipart/related; type="application/dicom"`, mt))
		return
	}
	if t := strings.ToLower(params["type"]); t != "" && t != "application/dicom" {
		problem(w, http.StatusUnsupportedMediaType, fmt.Sprintf(`multipart/related type %q: only "application/dicom" instances are accepted`, t))
		return
	}
	boundary := params["boundary"]
	if boundary == "" {
		problem(w, http.StatusBadRequest, "multipart/related without a boundary parameter")
		return
	}
	p, ok := auth.FromContext(r.Context())
	if !ok {
		problem(w, http.StatusUnauthorized, "authentication required")
		return
	}
	// What a clinic uploads is its institution's; it cannot add to another's study.
	target := store.Target{Study: study, InstitutionID: p.InstitutionID, OwnOnly: !p.HasRole(auth.RoleAdmin)}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBody)
	mr := multipart.NewReader(body, boundary)
	var stored []stowSuccess
	var failed []stowFailure
	var bodyErr error
	parts := 0
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bodyErr = err
			break
		}
		parts++
		ct := part.Header.Get("Content-Type")
		if pt, _, _ := mime.ParseMediaType(ct); ct != "" && pt != "application/dicom" {
			failed = append(failed, stowFailure{reason: reasonCannotUnderstand,
				comment: fmt.Sprintf("part %d has Content-Type %q, expected application/dicom", parts, ct)})
			io.Copy(io.Discard, part)
			continue
		}
		res, err := s.st.IngestFor(r.Context(), part, target)
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			bodyErr = err
		case errors.Is(err, store.ErrStudyMismatch):
			failed = append(failed, stowFailure{classUID: res.SOPClassUID, instanceUID: res.SOPInstanceUID, reason: reasonDataSetMismatch,
				comment: fmt.Sprintf("part %d: %v", parts, err)})
		case errors.Is(err, store.ErrUIDInUse):
			failed = append(failed, stowFailure{classUID: res.SOPClassUID, instanceUID: res.SOPInstanceUID, reason: reasonNotAuthorized,
				comment: fmt.Sprintf("part %d: %v", parts, err)})
		case errors.Is(err, store.ErrInvalid):
			failed = append(failed, stowFailure{reason: reasonCannotUnderstand, comment: fmt.Sprintf("part %d: %v", parts, err)})
		case errors.Is(err, store.ErrTooLarge):
			failed = append(failed, stowFailure{reason: reasonOutOfResources, comment: fmt.Sprintf("part %d: %v", parts, err)})
		case err != nil && isBodyError(err):
			bodyErr = err
		case err != nil:
			s.log.Error("storing instance failed", "part", parts, "err", err)
			failed = append(failed, stowFailure{reason: reasonProcessingFailure, comment: fmt.Sprintf("part %d: could not be stored", parts)})
		default:
			stored = append(stored, stowSuccess{res: res, warnings: res.Warnings})
		}
		if bodyErr != nil {
			break
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(bodyErr, &mbe):
		s.writeStowResponse(w, r, http.StatusRequestEntityTooLarge, study, stored, failed,
			fmt.Sprintf("request body larger than the limit of %d bytes; instances before the limit are listed", s.cfg.MaxRequestBody))
		return
	case bodyErr != nil && parts == 0 && len(stored) == 0:
		problem(w, http.StatusBadRequest, "malformed multipart/related body: "+bodyErr.Error())
		return
	case bodyErr != nil:
		failed = append(failed, stowFailure{reason: reasonCannotUnderstand, comment: "malformed multipart body after part " + fmt.Sprint(parts) + ": " + bodyErr.Error()})
	case parts == 0:
		problem(w, http.StatusBadRequest, "multipart/related body without parts")
		return
	}
	status := http.StatusOK
	switch {
	case len(stored) == 0:
		status = http.StatusConflict
	case len(failed) > 0:
		status = http.StatusAccepted
	default:
		for _, ok := range stored {
			if len(ok.warnings) > 0 {
				status = http.StatusAccepted // PS3.18 10.5.3: stored with warnings
			}
		}
	}
	s.writeStowResponse(w, r, status, study, stored, failed, "")
	studies := map[string]bool{}
	for _, ok := range stored {
		if !studies[ok.res.StudyInstanceUID] {
			studies[ok.res.StudyInstanceUID] = true
			s.record(r, "study.upload", studyObject(ok.res.StudyInstanceUID), "success")
		}
	}
}

func isBodyError(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "multipart:")
}

func (s *Service) writeStowResponse(w http.ResponseWriter, r *http.Request, status int, study string, stored []stowSuccess, failed []stowFailure, note string) {
	base := s.baseURL(r)
	o := newObject()
	if study == "" && len(stored) > 0 {
		// The top-level RetrieveURL names the study only when all instances belong to one.
		study = stored[0].res.StudyInstanceUID
		for _, ok := range stored {
			if ok.res.StudyInstanceUID != study {
				study = ""
				break
			}
		}
	}
	if study != "" {
		o.str("00081190", "UR", base+"/studies/"+study)
	}
	var warns []string
	if len(failed) > 0 {
		items := make([]*object, 0, len(failed))
		for _, f := range failed {
			it := newObject()
			it.str("00081150", "UI", f.classUID)
			it.str("00081155", "UI", f.instanceUID)
			it.ints("00081197", "US", f.reason)
			it.str("00000902", "LO", truncate(f.comment, 1024))
			items = append(items, it)
			warns = append(warns, f.comment)
		}
		o.seq("00081198", items)
	}
	if len(stored) > 0 {
		items := make([]*object, 0, len(stored))
		for _, ok := range stored {
			res := ok.res
			it := newObject()
			it.str("00081150", "UI", res.SOPClassUID)
			it.str("00081155", "UI", res.SOPInstanceUID)
			it.str("00081190", "UR", base+"/studies/"+res.StudyInstanceUID+"/series/"+res.SeriesInstanceUID+"/instances/"+res.SOPInstanceUID)
			if len(ok.warnings) > 0 {
				it.ints("00081196", "US", warningCoercion)
				it.str("00000902", "LO", truncate(strings.Join(ok.warnings, "; "), 1024))
				warns = append(warns, ok.warnings...)
			}
			items = append(items, it)
		}
		o.seq("00081199", items)
	}
	if note != "" {
		warns = append(warns, note)
	}
	for _, msg := range warns {
		// PS3.18 8.4.2 (Warning header field): 299 <service> "<text>".
		w.Header().Add("Warning", fmt.Sprintf(`299 sanping %q`, truncate(asciiOnly(msg), 512)))
	}
	w.Header().Set("Content-Type", "application/dicom+json")
	w.WriteHeader(status)
	w.Write(o.encode())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
