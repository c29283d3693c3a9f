// Package api is Sanping's REST API under /api: JSON in and out, RFC 9457 problem details for
// errors. Every route is an auth.Route, so the one authorization check runs before any
// handler; handlers call the domain packages (auth, org, consult, audit).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/org"
	"github.com/sanping/sanping/server/recording"
)

// Config wires the API to the domain services.
type Config struct {
	Auth    *auth.Service
	Org     *org.Service
	Consult *consult.Service
	Audit   *audit.Log
	Logger  *slog.Logger
	// MaxConsentForm bounds an uploaded consent form scan.
	MaxConsentForm int64
	// Live is what the session logs read of live rooms (nil: nothing).
	Live LiveLog
	// Storage is the DICOM store's usage for the dashboard (nil: none).
	Storage Storage
	// RecordingDir holds the SFU's recordings; only files in it are served.
	RecordingDir string
}

// Service serves the REST API.
type Service struct {
	cfg   Config
	auth  *auth.Service
	org   *org.Service
	cons  *consult.Service
	trail *audit.Log
	log   *slog.Logger
	rec   recording.Cache
}

// New builds the API.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConsentForm <= 0 {
		cfg.MaxConsentForm = 20 << 20
	}
	return &Service{cfg: cfg, auth: cfg.Auth, org: cfg.Org, cons: cfg.Consult, trail: cfg.Audit, log: cfg.Logger}
}

// maxJSON bounds a JSON request body: the largest legitimate one is a report draft.
const maxJSON = 256 << 10

// Routes lists every /api route with its authorization.
func (s *Service) Routes() []auth.Route {
	cons := auth.ConsultationParam("id")
	r := func(pattern string, act auth.Action, h http.HandlerFunc) auth.Route {
		return auth.Route{Pattern: pattern, Action: act, Handler: h}
	}
	c := func(pattern string, act auth.Action, h http.HandlerFunc) auth.Route {
		return auth.Route{Pattern: pattern, Action: act, Object: cons, Handler: h}
	}
	pending := func(rt auth.Route) auth.Route { rt.DuringPasswordChange = true; return rt }
	return []auth.Route{
		r("POST /api/login", auth.ActPublic, s.login),
		pending(r("POST /api/logout", auth.ActSelf, s.logout)),
		pending(r("GET /api/session", auth.ActSelf, s.session)),
		pending(r("POST /api/session/password", auth.ActSelf, s.changePassword)),

		r("GET /api/institutions", auth.ActDirectory, s.listInstitutions),
		r("POST /api/institutions", auth.ActAdmin, s.addInstitution),
		r("GET /api/institutions/{iid}", auth.ActDirectory, s.getInstitution),
		r("PUT /api/institutions/{iid}", auth.ActAdmin, s.renameInstitution),
		r("POST /api/institutions/{iid}/departments", auth.ActAdmin, s.addDepartment),
		r("GET /api/institutions/{iid}/stations", auth.ActAdmin, s.listStations),
		r("POST /api/institutions/{iid}/stations", auth.ActAdmin, s.addStation),
		r("GET /api/doctors", auth.ActDirectory, s.listDoctors),

		r("GET /api/users", auth.ActAdmin, s.listUsers),
		r("POST /api/users", auth.ActAdmin, s.addUser),
		r("GET /api/users/{uid}", auth.ActAdmin, s.getUser),
		r("PUT /api/users/{uid}", auth.ActAdmin, s.updateUser),
		r("POST /api/users/{uid}/password", auth.ActAdmin, s.resetPassword),
		r("POST /api/users/{uid}/lock", auth.ActAdmin, s.lockUser),
		r("POST /api/users/{uid}/unlock", auth.ActAdmin, s.unlockUser),

		r("GET /api/tokens", auth.ActAdmin, s.listTokens),
		r("POST /api/tokens", auth.ActAdmin, s.createToken),
		r("DELETE /api/tokens/{tid}", auth.ActAdmin, s.revokeToken),
		r("POST /api/station/status", auth.ActStationReport, s.reportStation),

		r("GET /api/sessions", auth.ActAdmin, s.listSessions),
		r("DELETE /api/sessions/{sessid}", auth.ActAdmin, s.endSession),

		r("GET /api/consultations", auth.ActConsultList, s.listConsultations),
		r("GET /api/worklist", auth.ActConsultList, s.worklist),
		r("POST /api/consultations", auth.ActConsultCreate, s.createConsultation),
		c("GET /api/consultations/{id}", auth.ActConsultRead, s.getConsultation),
		c("POST /api/consultations/{id}/accept", auth.ActConsultRespond, s.accept),
		c("POST /api/consultations/{id}/decline", auth.ActConsultRespond, s.decline),
		c("POST /api/consultations/{id}/schedule", auth.ActConsultRespond, s.schedule),
		c("POST /api/consultations/{id}/start", auth.ActConsultRun, s.start),
		c("POST /api/consultations/{id}/finish", auth.ActConsultRun, s.finish),
		c("POST /api/consultations/{id}/close", auth.ActConsultClose, s.close),
		c("POST /api/consultations/{id}/cancel", auth.ActConsultCancel, s.cancel),
		c("POST /api/consultations/{id}/participants", auth.ActConsultInvite, s.addParticipant),
		c("PUT /api/consultations/{id}/consent-form", auth.ActConsentUpload, s.putConsentForm),
		c("GET /api/consultations/{id}/consent-form", auth.ActConsultRead, s.getConsentForm),
		c("GET /api/consultations/{id}/report", auth.ActConsultRead, s.getReport),
		c("PUT /api/consultations/{id}/report", auth.ActReportWrite, s.saveReport),
		c("POST /api/consultations/{id}/report/sign", auth.ActReportWrite, s.signReport),
		c("POST /api/consultations/{id}/report/addenda", auth.ActReportWrite, s.addAddendum),
		c("GET /api/consultations/{id}/report/print", auth.ActConsultRead, s.printReport),

		{Pattern: "POST /api/local-grants", Action: auth.ActStudyRead, Object: grantStudy, Handler: http.HandlerFunc(s.createLocalGrant)},
		r("POST /api/local-grants/verify", auth.ActLocalGrantVerify, s.verifyLocalGrant),

		r("GET /api/audit", auth.ActAdmin, s.listAudit),
		r("GET /api/audit/verify", auth.ActAdmin, s.verifyAudit),
		r("GET /api/audit/export", auth.ActAdmin, s.exportAudit),
		r("GET /api/session-logs", auth.ActAdmin, s.listSessionLogs),
		r("GET /api/session-logs/{sid}", auth.ActAdmin, s.sessionLog),
		r("GET /api/session-logs/{sid}/recordings/{n}", auth.ActAdmin, s.sessionRecording),
		r("GET /api/dashboard", auth.ActAdmin, s.getDashboard),

		r("/api/", auth.ActSelf, func(w http.ResponseWriter, r *http.Request) {
			auth.WriteProblem(w, http.StatusNotFound, "no such API resource: "+r.Method+" "+r.URL.Path)
		}),
	}
}

// principal is the caller; Guard has put it in the context of every non-public route.
func principal(r *http.Request) *auth.Principal {
	p, _ := auth.FromContext(r.Context())
	return p
}

// errBadRequest marks a request the server cannot read (400, where ErrInvalid is 422).
var errBadRequest = errors.New("bad request")

// decode reads a JSON body into v strictly: application/json only, bounded, unknown fields
// and trailing data refused, so a typo never silently does nothing.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return fmt.Errorf("%w: Content-Type must be application/json", errUnsupportedMedia)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: body larger than %d bytes", errTooLarge, maxJSON)
		}
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the JSON value", errBadRequest)
	}
	return nil
}

var (
	errUnsupportedMedia = errors.New("unsupported media type")
	errTooLarge         = errors.New("too large")
)

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail maps an error to one HTTP answer.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var te *consult.TransitionError
	var fe *consult.FieldError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errUnsupportedMedia):
		auth.WriteProblem(w, http.StatusUnsupportedMediaType, err.Error())
	case errors.Is(err, errTooLarge), errors.As(err, &mbe):
		auth.WriteProblem(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, errBadRequest):
		auth.WriteProblem(w, http.StatusBadRequest, err.Error())
	case errors.As(err, &fe) && fe.Field == "contentType":
		auth.WriteProblem(w, http.StatusUnsupportedMediaType, err.Error())
	case errors.As(err, &fe) && fe.Field == "file" && strings.Contains(fe.Problem, "too large"):
		auth.WriteProblem(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.As(err, &te):
		auth.WriteProblem(w, http.StatusConflict, te.Error())
	case errors.Is(err, auth.ErrInvalid), errors.Is(err, org.ErrInvalid), errors.Is(err, consult.ErrInvalid):
		auth.WriteProblem(w, http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, auth.ErrConflict), errors.Is(err, org.ErrConflict), errors.Is(err, consult.ErrConflict):
		auth.WriteProblem(w, http.StatusConflict, err.Error())
	case errors.Is(err, auth.ErrHidden), errors.Is(err, org.ErrNotFound), errors.Is(err, consult.ErrNotFound):
		auth.WriteProblem(w, http.StatusNotFound, "not found")
	case errors.Is(err, consult.ErrBadPassword):
		auth.WriteProblem(w, http.StatusForbidden, "the password is not correct")
	case errors.Is(err, consult.ErrForbidden):
		auth.WriteProblem(w, http.StatusForbidden, err.Error())
	default:
		s.auth.WriteError(w, r, err, false)
	}
}

// record appends an audit entry for an admin change or another event; a failure to write it
// is logged loudly (the change has been made).
func (s *Service) record(r *http.Request, action, object, detail string) {
	if s.trail == nil {
		return
	}
	e := principal(r).AuditEntry(action, object, "success")
	e.Detail = detail
	if _, err := s.trail.Append(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.Error("audit trail: entry not written", "action", action, "object", object, "err", err)
	}
}

// recordRead appends a coalesced read of patient data.
func (s *Service) recordRead(r *http.Request, action, object string) {
	if s.trail == nil {
		return
	}
	e := principal(r).AuditEntry(action, object, "success")
	if _, err := s.trail.Read(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.Error("audit trail: entry not written", "action", action, "object", object, "err", err)
	}
}

// pathID reads a positive integer path parameter; anything else is a 404.
func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, auth.ErrHidden
	}
	return id, nil
}

// queryInt reads an optional integer query parameter.
func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s must be a non-negative integer", errBadRequest, name)
	}
	return n, nil
}

// queryTime reads an optional time query parameter: RFC 3339 or a date (YYYY-MM-DD, China
// Standard Time, the county's day).
func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", v, chinaTime); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s must be RFC 3339 (2026-11-28T08:00:00+08:00) or a date (2026-11-28)", errBadRequest, name)
}

// chinaTime is China Standard Time, without depending on the system's zone database.
var chinaTime = time.FixedZone("CST", 8*3600)
