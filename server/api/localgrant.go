package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"
)

// Local read grants (docs/architecture.md "Local-first village screens"): the browser at a
// clinic asks for a grant to read one study from the station's own copies; the station asks
// the county whether a grant it was shown is good. The county audits the grant as the read.

type localGrantRequest struct {
	Study string `json:"study"`
}

type localGrantAnswer struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

type localGrantVerifyRequest struct {
	Token string `json:"token"`
}

// grantStudy names the study of a grant request from its JSON body, for the guard's
// ActStudyRead check; the body is put back for the handler, which decodes it strictly. An
// unreadable body names no study (404 but for admins; the handler then answers 400).
func grantStudy(r *http.Request) (auth.Object, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxJSON+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return auth.Study(""), nil
	}
	var v localGrantRequest
	json.Unmarshal(b, &v)
	return auth.Study(v.Study), nil
}

// createLocalGrant is POST /api/local-grants: the guard has checked that the caller may read
// the study.
func (s *Service) createLocalGrant(w http.ResponseWriter, r *http.Request) {
	var req localGrantRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Study == "" {
		auth.WriteProblem(w, http.StatusBadRequest, "study is required")
		return
	}
	p := principal(r)
	token, expires, err := s.auth.IssueLocalGrant(r.Context(), p, req.Study)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.trail != nil {
		e := p.AuditEntry("study.read.local", "study:"+req.Study, "success")
		var patient audit.PatientFunc
		if s.cfg.Storage != nil {
			patient = func(ctx context.Context) (string, string, error) { return s.cfg.Storage.StudyPatient(ctx, req.Study) }
		}
		if _, err := s.trail.ReadAbout(context.WithoutCancel(r.Context()), e, patient); err != nil {
			s.log.Error("audit trail: entry not written", "action", e.Action, "object", e.Object, "err", err)
		}
	}
	writeJSON(w, http.StatusCreated, localGrantAnswer{Token: token, ExpiresAt: expires.UTC()})
}

// verifyLocalGrant is POST /api/local-grants/verify: a station's token asks about a grant a
// browser showed it. Only a station of the study's institution learns anything (403 otherwise,
// the same answer for a grant of another institution's study as for an unknown one).
func (s *Service) verifyLocalGrant(w http.ResponseWriter, r *http.Request) {
	var req localGrantVerifyRequest
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	g, err := s.auth.VerifyLocalGrant(r.Context(), req.Token)
	if errors.Is(err, auth.ErrGrantUnknown) {
		auth.WriteProblem(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	var owner int64
	if s.cfg.Storage != nil {
		owner, err = s.cfg.Storage.StudyInstitution(r.Context(), g.Study)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	if owner == 0 || owner != p.InstitutionID {
		if s.trail != nil {
			e := p.AuditEntry("access.denied", "study:"+g.Study, "denied")
			e.Detail = r.Method + " " + r.URL.Path + ": a local grant shown to another institution's station"
			if _, err := s.trail.Append(context.WithoutCancel(r.Context()), e); err != nil {
				s.log.Error("audit trail: entry not written", "action", e.Action, "object", e.Object, "err", err)
			}
		}
		auth.WriteProblem(w, http.StatusForbidden, "this station's institution does not own the grant's study")
		return
	}
	writeJSON(w, http.StatusOK, g)
}
