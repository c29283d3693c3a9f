package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
)

func consultObject(id int64) string { return "consultation:" + strconv.FormatInt(id, 10) }

func (s *Service) listConsultations(w http.ResponseWriter, r *http.Request) {
	f := consult.ListFilter{State: consult.State(r.URL.Query().Get("state"))}
	var err error
	if f.Since, err = queryTime(r, "from"); err == nil {
		f.Until, err = queryTime(r, "to")
	}
	var limit, offset int64
	if err == nil {
		f.InstitutionID, err = queryInt(r, "institutionId")
	}
	if err == nil {
		f.DoctorID, err = queryInt(r, "doctorId")
	}
	if err == nil {
		limit, err = queryInt(r, "limit")
	}
	if err == nil {
		offset, err = queryInt(r, "offset")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f.Limit, f.Offset = int(min(limit, 1000)), int(min(offset, 1<<30))
	f.Scope, f.ScopeArgs = auth.ConsultationScope(principal(r))
	list, err := s.cons.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A worklist names patients: it is a read of patient data.
	s.recordRead(r, "consultation.list", "consultations")
	writeJSON(w, http.StatusOK, nonNil(list))
}

func (s *Service) createConsultation(w http.ResponseWriter, r *http.Request) {
	var req consult.Request
	if err := decode(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	// Only studies the requester may see can be attached: attaching would otherwise grant
	// sight of another institution's study.
	for _, uid := range req.StudyUIDs {
		if err := s.auth.Check(r.Context(), p, auth.ActStudyRead, auth.Study(uid)); err != nil {
			s.fail(w, r, fmt.Errorf("%w: study %q not found", consult.ErrInvalid, uid))
			return
		}
	}
	c, err := s.cons.Create(r.Context(), p, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, c)
}

func (s *Service) getConsultation(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	c, err := s.cons.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.recordRead(r, "consultation.read", consultObject(id))
	writeJSON(w, http.StatusOK, c)
}

// transition runs one state change with an optional JSON body.
func (s *Service) transition(w http.ResponseWriter, r *http.Request, body any, do func(id int64) (*consult.Consultation, error)) {
	id, _ := pathID(r, "id")
	if body != nil {
		if err := decode(w, r, body); err != nil {
			s.fail(w, r, err)
			return
		}
	} else if err := emptyBody(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := do(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// emptyBody accepts no body, or an empty JSON object: the action needs no input.
func emptyBody(w http.ResponseWriter, r *http.Request) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1024))
	if err != nil {
		return fmt.Errorf("%w: %v", errTooLarge, err)
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || string(b) == "{}" {
		return nil
	}
	return fmt.Errorf("%w: this action takes no body", errBadRequest)
}

func (s *Service) accept(w http.ResponseWriter, r *http.Request) {
	var in struct {
		DoctorID    int64     `json:"doctorId"`
		ScheduledAt time.Time `json:"scheduledAt"`
	}
	s.transition(w, r, &in, func(id int64) (*consult.Consultation, error) {
		return s.cons.Accept(r.Context(), principal(r), id, in.DoctorID, in.ScheduledAt)
	})
}

func (s *Service) decline(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	s.transition(w, r, &in, func(id int64) (*consult.Consultation, error) {
		return s.cons.Decline(r.Context(), principal(r), id, in.Reason)
	})
}

func (s *Service) schedule(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ScheduledAt time.Time `json:"scheduledAt"`
	}
	s.transition(w, r, &in, func(id int64) (*consult.Consultation, error) {
		return s.cons.Schedule(r.Context(), principal(r), id, in.ScheduledAt)
	})
}

func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, nil, func(id int64) (*consult.Consultation, error) { return s.cons.Start(r.Context(), principal(r), id) })
}

func (s *Service) finish(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, nil, func(id int64) (*consult.Consultation, error) { return s.cons.Finish(r.Context(), principal(r), id) })
}

func (s *Service) close(w http.ResponseWriter, r *http.Request) {
	s.transition(w, r, nil, func(id int64) (*consult.Consultation, error) { return s.cons.Close(r.Context(), principal(r), id) })
}

func (s *Service) cancel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	s.transition(w, r, &in, func(id int64) (*consult.Consultation, error) {
		return s.cons.Cancel(r.Context(), principal(r), id, in.Reason)
	})
}

func (s *Service) addParticipant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID int64 `json:"userId"`
	}
	s.transition(w, r, &in, func(id int64) (*consult.Consultation, error) {
		return s.cons.AddParticipant(r.Context(), principal(r), id, in.UserID)
	})
}

func (s *Service) putConsentForm(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	name := r.URL.Query().Get("filename")
	if len(name) > 200 {
		name = name[:200]
	}
	c, err := s.cons.SetConsentForm(r.Context(), principal(r), id, name, r.Header.Get("Content-Type"),
		http.MaxBytesReader(w, r.Body, s.cfg.MaxConsentForm+1), s.cfg.MaxConsentForm)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Service) getConsentForm(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	att, rc, err := s.cons.ConsentForm(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	s.recordRead(r, "consultation.consent.read", consultObject(id))
	w.Header().Set("Content-Type", att.ContentType)
	w.Header().Set("Content-Length", strconv.FormatInt(att.Size, 10))
	w.Header().Set("Content-Disposition", "attachment")
	w.Header().Set("Cache-Control", "private, no-store")
	io.Copy(w, rc)
}

func (s *Service) getReport(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	rep, err := s.cons.Report(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.recordRead(r, "report.read", consultObject(id))
	writeJSON(w, http.StatusOK, rep)
}

func (s *Service) saveReport(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	var in struct {
		Findings        string `json:"findings"`
		Impression      string `json:"impression"`
		Recommendations string `json:"recommendations"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := s.cons.SaveDraft(r.Context(), principal(r), id, in.Findings, in.Impression, in.Recommendations)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Service) signReport(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	var in struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := s.cons.Sign(r.Context(), principal(r), id, in.Password)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Service) addAddendum(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	var in struct {
		Text     string `json:"text"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.cons.AddAddendum(r.Context(), principal(r), id, in.Text, in.Password)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

func (s *Service) printReport(w http.ResponseWriter, r *http.Request) {
	id, _ := pathID(r, "id")
	var buf bytes.Buffer
	if err := s.cons.PrintHTML(r.Context(), &buf, id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.recordRead(r, "report.print", consultObject(id))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "private, no-store")
	// The page is self-contained: no scripts, styles inline.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.Write(buf.Bytes())
}
