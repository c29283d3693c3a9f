// Package dicomweb serves the store over DICOMweb (DICOM PS3.18): STOW-RS, QIDO-RS and WADO-RS
// under a base path (/dicom-web).
package dicomweb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"
)

// Config configures the DICOMweb service.
type Config struct {
	Store *store.Store
	// Base is the path prefix the service is mounted at, e.g. "/dicom-web".
	Base string
	// PublicURL, when set (e.g. "https://pacs.dahua.example"), is where clients reach the
	// server: RetrieveURLs, BulkDataURIs and Content-Locations are made from it, not from the
	// request's Host header.
	PublicURL string
	// MaxRequestBody bounds a STOW-RS request body.
	MaxRequestBody int64
	// MaxResults bounds a QIDO-RS answer when the client sends no limit.
	MaxResults int
	Logger     *slog.Logger
	// Audit records access to patient data (nil: not recorded; tests only).
	Audit *audit.Log
}

// Service is the DICOMweb HTTP handler.
type Service struct {
	cfg   Config
	st    *store.Store
	log   *slog.Logger
	build string // in every ETag (cache.go)
}

// New builds the service and its routes.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRequestBody <= 0 {
		cfg.MaxRequestBody = 8 << 30
	}
	if cfg.MaxResults <= 0 {
		cfg.MaxResults = 1000
	}
	return &Service{cfg: cfg, st: cfg.Store, log: cfg.Logger, build: buildTag()}
}

// Routes lists the service's routes with their authorization (auth.Guard serves them). HTTP
// Basic is accepted on all of them, for PACS peers.
func (s *Service) Routes() []auth.Route {
	b := s.cfg.Base
	study := auth.StudyParam("study")
	read := func(pattern string, h http.HandlerFunc) auth.Route {
		return auth.Route{Pattern: "GET " + b + pattern, Action: auth.ActStudyRead, Object: study, Basic: true, Handler: encoded(h)}
	}
	search := func(pattern string, level store.Level) auth.Route {
		return auth.Route{Pattern: "GET " + b + pattern, Action: auth.ActStudySearch, Basic: true, Handler: encoded(s.qido(level))}
	}
	searchIn := func(pattern string, level store.Level) auth.Route {
		rt := read(pattern, s.qido(level))
		return rt
	}
	return []auth.Route{
		{Pattern: "POST " + b + "/studies", Action: auth.ActStudyUpload, Basic: true, Handler: http.HandlerFunc(s.stow)},
		{Pattern: "POST " + b + "/studies/{study}", Action: auth.ActStudyUpload, Basic: true, Handler: http.HandlerFunc(s.stow)},

		search("/studies", store.StudyLevel),
		search("/series", store.SeriesLevel),
		search("/instances", store.InstanceLevel),
		searchIn("/studies/{study}/series", store.SeriesLevel),
		searchIn("/studies/{study}/instances", store.InstanceLevel),
		searchIn("/studies/{study}/series/{series}/instances", store.InstanceLevel),

		read("/studies/{study}", s.retrieve),
		read("/studies/{study}/series/{series}", s.retrieve),
		read("/studies/{study}/series/{series}/instances/{instance}", s.retrieve),
		read("/studies/{study}/metadata", s.metadata),
		read("/studies/{study}/series/{series}/metadata", s.metadata),
		read("/studies/{study}/series/{series}/instances/{instance}/metadata", s.metadata),
		read("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", s.frames),
		read("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{path...}", s.bulkdata),
		read("/studies/{study}/series/{series}/instances/{instance}/rendered", s.renderedInstance(false)),
		read("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered", s.renderedInstance(false)),
		read("/studies/{study}/series/{series}/rendered", s.renderedSeries(false)),
		read("/studies/{study}/series/{series}/instances/{instance}/thumbnail", s.renderedInstance(true)),
		read("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail", s.renderedInstance(true)),
		read("/studies/{study}/series/{series}/thumbnail", s.renderedSeries(true)),
		read("/studies/{study}/thumbnail", s.renderedSeries(true)),
		{Pattern: b + "/", Action: auth.ActSelf, Basic: true, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			problem(w, http.StatusNotFound, "no such DICOMweb resource: "+r.Method+" "+r.URL.Path)
		})},
	}
}

// baseURL is the absolute URL of the service as the client reached it (for RetrieveURL and
// BulkDataURI, which PS3.18 wants absolute).
func (s *Service) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimRight(s.cfg.PublicURL, "/") + s.cfg.Base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + s.cfg.Base
}

// problem answers with an RFC 9457 problem document, never cached (a representation that
// failed after its caching headers were set loses them).
func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Del("ETag")
	w.Header().Del("Cache-Control")
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"type":   "about:blank",
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
	})
}

// storeError maps store errors to one HTTP answer each.
func (s *Service) storeError(w http.ResponseWriter, r *http.Request, err error, what string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		problem(w, http.StatusNotFound, what+" not found")
	case errors.Is(err, store.ErrBadQuery):
		problem(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, context.Canceled):
		// client went away
	default:
		s.log.Error("dicomweb request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		problem(w, http.StatusInternalServerError, fmt.Sprintf("%s: internal error", what))
	}
}

func validUIDParam(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	return strings.Trim(v, "0123456789.") == ""
}

// uids reads and checks the UID path parameters present in r.
func uids(w http.ResponseWriter, r *http.Request) (study, series, instance string, ok bool) {
	study, series, instance = r.PathValue("study"), r.PathValue("series"), r.PathValue("instance")
	for _, v := range []string{study, series, instance} {
		if v != "" && !validUIDParam(v) {
			problem(w, http.StatusBadRequest, fmt.Sprintf("%q is not a valid UID", v))
			return "", "", "", false
		}
	}
	return study, series, instance, true
}

// record adds an audit entry for patient data touched by this request, coalesced per actor,
// action and object per minute (PS: issue 4's audit trail; reads of one study in one minute
// are one entry). An audit failure is logged, never hidden: the request has already been
// answered by then.
func (s *Service) record(r *http.Request, action, object, outcome string) {
	if s.cfg.Audit == nil {
		return
	}
	p, _ := auth.FromContext(r.Context())
	e := p.AuditEntry(action, object, outcome)
	var patient audit.PatientFunc
	if uid, ok := strings.CutPrefix(object, "study:"); ok && s.st != nil {
		patient = func(ctx context.Context) (string, string, error) { return s.st.StudyPatient(ctx, uid) }
	}
	if _, err := s.cfg.Audit.ReadAbout(context.WithoutCancel(r.Context()), e, patient); err != nil {
		s.log.Error("audit trail: entry not written", "action", action, "object", object, "err", err)
	}
}

func studyObject(uid string) string { return "study:" + uid }
