// Package upload is the resumable upload endpoint: tus 1.0 (https://tus.io/protocols/resumable-upload)
// through github.com/tus/tusd/v2, for stations on 4G links that drop. An upload is one Part 10
// file or a tar bundle of them (one round trip per study instead of one per file); when its
// last byte arrives every instance is ingested before the final PATCH is answered.
package upload

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sanping/sanping/internal/durable"
	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/store"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
)

// Config configures the upload service.
type Config struct {
	Store *store.Store
	// Dir holds partial uploads (<id>, <id>.info: tusd's filestore), who created each
	// (<id>.owner.json) and, once ingested, its result (<id>.result.json). Created if missing.
	Dir string
	// BasePath is where the routes are mounted, "/api/uploads/".
	BasePath string
	// PublicURL, when set (e.g. "https://pacs.dahua.example"), is where clients reach the
	// server: upload Locations are made from it, not from the request's Host header.
	PublicURL string
	// MaxSize bounds one upload (default 8 GiB); a larger Upload-Length is answered 413.
	MaxSize int64
	// MaxInstance bounds one member of a tar bundle (default 4 GiB, the store's own limit):
	// a larger one fails before a byte of it is stored.
	MaxInstance int64
	// Audit records the studies uploads touch (nil: not recorded).
	Audit  *audit.Log
	Logger *slog.Logger
}

// Service serves tus uploads.
type Service struct {
	cfg    Config
	st     instanceStore
	files  filestore.FileStore
	locker *memorylocker.MemoryLocker
	tus    *handler.UnroutedHandler
	log    *slog.Logger

	// tusd's handlers wrapped in its Middleware (protocol version check, tus headers).
	post, head, patch, del, options http.Handler

	// busy holds the requests under way, by upload (see settle).
	mu   sync.Mutex
	busy map[string]chan struct{}
}

// busyWait bounds how long a request waits for the one under way on the same upload.
const busyWait = 5 * time.Second

// settle takes upload id for a request (HEAD, PATCH, DELETE) once no other request of ours
// holds it, and returns its release. Requests on one upload so never meet in tusd's lock,
// whose way of letting the newcomer in is to interrupt the holder: a PATCH whose client gave
// up after a cut may still be ingesting what it received, and tusd's interruption races with
// its own handler. A request still holding the upload after busyWait (a connection that died
// without a word, as carrier NAT does) is left to tusd to interrupt.
func (s *Service) settle(ctx context.Context, id string) (release func()) {
	ctx, cancel := context.WithTimeout(ctx, busyWait)
	defer cancel()
	for {
		s.mu.Lock()
		ch, busy := s.busy[id]
		if !busy {
			done := make(chan struct{})
			s.busy[id] = done
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				if s.busy[id] == done {
					delete(s.busy, id)
				}
				s.mu.Unlock()
				close(done)
			}
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return func() {}
		}
	}
}

// instanceStore is what the service needs of the store.
type instanceStore interface {
	IngestFor(ctx context.Context, r io.Reader, t store.Target) (*store.Result, error)
}

// New prepares Dir and tusd's handler.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("upload: Config.Store is required")
	}
	if cfg.Dir == "" {
		return nil, errors.New("upload: Config.Dir is required")
	}
	if cfg.BasePath == "" {
		cfg.BasePath = "/api/uploads/"
	}
	if !strings.HasSuffix(cfg.BasePath, "/") {
		cfg.BasePath += "/"
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 8 << 30
	}
	if cfg.MaxInstance <= 0 {
		cfg.MaxInstance = 4 << 30
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("upload: creating %s: %w", cfg.Dir, err)
	}
	s := &Service{cfg: cfg, st: cfg.Store, files: filestore.New(cfg.Dir), locker: memorylocker.New(), log: cfg.Logger,
		busy: map[string]chan struct{}{}}
	s.files.FileModePerm, s.files.DirModePerm = 0o640, 0o750
	// Core, termination and a lock per upload; no concatenation, no deferred length (an upload
	// is bounded when it is created), no download.
	composer := handler.NewStoreComposer()
	synced := syncedStore{s.files, s}
	composer.UseCore(synced)
	composer.UseTerminater(synced)
	s.locker.UseIn(composer)
	tusBase := cfg.BasePath // Locations from the request's Host
	if cfg.PublicURL != "" {
		tusBase = strings.TrimRight(cfg.PublicURL, "/") + cfg.BasePath // tusd then makes absolute Locations from it alone
	}
	tus, err := handler.NewUnroutedHandler(handler.Config{
		StoreComposer:             composer,
		BasePath:                  tusBase,
		MaxSize:                   cfg.MaxSize,
		DisableDownload:           true,
		DisableConcatenation:      true,
		Cors:                      &handler.CorsConfig{Disable: true}, // the web app is same-origin
		Logger:                    tusLogger(cfg.Logger),
		PreUploadCreateCallback:   s.beforeCreate,
		PreFinishResponseCallback: s.beforeFinishResponse,
	})
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	s.tus = tus
	s.post = tus.Middleware(http.HandlerFunc(tus.PostFile))
	s.head = tus.Middleware(http.HandlerFunc(tus.HeadFile))
	s.patch = tus.Middleware(http.HandlerFunc(tus.PatchFile))
	s.del = tus.Middleware(http.HandlerFunc(tus.DelFile))
	s.options = tus.Middleware(http.NotFoundHandler()) // the Middleware answers OPTIONS itself
	return s, nil
}

// Routes lists the tus routes (auth.Guard serves them).
func (s *Service) Routes() []auth.Route {
	b := s.cfg.BasePath
	up := func(pattern string, h http.HandlerFunc) auth.Route {
		return auth.Route{Pattern: pattern, Action: auth.ActStudyUpload, Handler: h}
	}
	return []auth.Route{
		up("POST "+b, s.create),
		up("HEAD "+b+"{id}", s.status),
		up("PATCH "+b+"{id}", s.append),
		up("DELETE "+b+"{id}", s.terminate),
		up("GET "+b+"{id}/result", s.result),
		// Discovery (Tus-Version, Tus-Extension, Tus-Max-Size) reveals nothing about uploads.
		{Pattern: "OPTIONS " + b, Action: auth.ActPublic, Handler: s.options},
	}
}

// owner is who created an upload: only they may see, continue or delete it. It is written
// (and fsynced) before the upload exists, so it survives a restart between two PATCHes.
type owner struct {
	Username      string    `json:"username"`
	InstitutionID int64     `json:"institutionId"`
	Size          int64     `json:"size"`
	Created       time.Time `json:"created"`
}

func (s *Service) ownerPath(id string) string  { return filepath.Join(s.cfg.Dir, id+".owner.json") }
func (s *Service) resultPath(id string) string { return filepath.Join(s.cfg.Dir, id+".result.json") }
func (s *Service) dataPath(id string) string   { return filepath.Join(s.cfg.Dir, id) }
func (s *Service) infoPath(id string) string   { return filepath.Join(s.cfg.Dir, id+".info") }
func (s *Service) resultURL(id string) string  { return s.cfg.BasePath + id + "/result" }

// uploadID: IDs are made here (beforeCreate), 128 random bits in hex; anything else in a path
// is not an upload (and never reaches the file system).
var uploadID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// beforeCreate runs inside tusd's POST: it names the upload and records its creator.
func (s *Service) beforeCreate(hook handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	p, ok := auth.FromContext(hook.Context)
	if !ok {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, problemError(http.StatusUnauthorized, "authentication required")
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	o := owner{Username: p.Username, InstitutionID: p.InstitutionID, Size: hook.Upload.Size, Created: time.Now().UTC()}
	data, _ := json.Marshal(o)
	if err := durable.WriteFile(s.ownerPath(id), data); err != nil {
		s.log.Error("upload: recording the creator", "err", err)
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, problemError(http.StatusInternalServerError, "could not create the upload")
	}
	return handler.HTTPResponse{}, handler.FileInfoChanges{ID: id}, nil
}

// create is POST: tusd creates the upload (and takes a first chunk if one is sent along).
func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.cfg.BasePath {
		auth.WriteProblem(w, http.StatusNotFound, "not found")
		return
	}
	r.Header.Del("X-HTTP-Method-Override") // routes are chosen by method here, not by tusd
	if r.Header.Get("Tus-Resumable") == "1.0.0" {
		if r.Header.Get("Upload-Defer-Length") != "" || r.Header.Get("Upload-Length") == "" {
			auth.WriteProblem(w, http.StatusBadRequest, "Upload-Length is required (uploads of deferred length are not accepted)")
			return
		}
		n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
		if err != nil || n < 0 {
			auth.WriteProblem(w, http.StatusBadRequest, "Upload-Length must be a non-negative integer")
			return
		}
		if n > s.cfg.MaxSize {
			w.Header().Set("Tus-Max-Size", strconv.FormatInt(s.cfg.MaxSize, 10))
			auth.WriteProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("an upload is at most %d bytes", s.cfg.MaxSize))
			return
		}
	}
	s.post.ServeHTTP(w, r) // a wrong Tus-Resumable gets tusd's 412
}

// own answers 404 unless id is an upload the caller created.
func (s *Service) own(w http.ResponseWriter, r *http.Request) (string, *owner, bool) {
	id := r.PathValue("id")
	p, _ := auth.FromContext(r.Context())
	if p != nil && uploadID.MatchString(id) {
		if data, err := os.ReadFile(s.ownerPath(id)); err == nil {
			var o owner
			if json.Unmarshal(data, &o) == nil && o.Username == p.Username && o.InstitutionID == p.InstitutionID {
				return id, &o, true
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("upload: reading the creator", "upload", id, "err", err)
		}
	}
	auth.WriteProblem(w, http.StatusNotFound, "upload not found")
	return "", nil, false
}

// ingested reports whether the upload's result is saved (its data is then gone).
func (s *Service) ingested(id string) bool {
	_, err := os.Stat(s.resultPath(id))
	return err == nil
}

// tusPath gives tusd the request with the path it expects: the upload ID alone.
func tusPath(r *http.Request, id string) *http.Request {
	r = r.WithContext(r.Context())
	u := *r.URL
	u.Path, u.RawPath = id, ""
	r.URL = &u
	r.Header.Del("X-HTTP-Method-Override")
	return r
}

// completeHeaders describes an upload whose every byte has arrived.
func (s *Service) completeHeaders(w http.ResponseWriter, id string, o *owner) {
	h := w.Header()
	h.Set("Tus-Resumable", "1.0.0")
	h.Set("Upload-Offset", strconv.FormatInt(o.Size, 10))
	h.Set("Upload-Result", s.resultURL(id))
	h.Set("Cache-Control", "no-store")
}

// status is HEAD: the offset to resume from. An ingested upload (its final PATCH answer may
// have been lost on the way) says it is complete.
func (s *Service) status(w http.ResponseWriter, r *http.Request) {
	id, o, ok := s.own(w, r)
	if !ok {
		return
	}
	defer s.settle(r.Context(), id)()
	if s.ingested(id) {
		s.completeHeaders(w, id, o)
		w.Header().Set("Upload-Length", strconv.FormatInt(o.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	// tusd's HEAD waits for the upload's lock: held by the final PATCH, it is let go once the
	// upload is ingested and its data removed, and tusd then answers 404. Its answer (a HEAD
	// has no body) is held back to tell that case.
	rec := &headRecorder{w: w, header: http.Header{}}
	s.head.ServeHTTP(rec, tusPath(r, id))
	if rec.code == http.StatusNotFound && s.ingested(id) {
		s.completeHeaders(w, id, o)
		w.Header().Set("Upload-Length", strconv.FormatInt(o.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(max(rec.code, http.StatusOK))
}

// headRecorder keeps the answer to a HEAD request. Deadlines (http.ResponseController) go to
// the connection.
type headRecorder struct {
	w      http.ResponseWriter
	header http.Header
	code   int
}

func (h *headRecorder) Unwrap() http.ResponseWriter { return h.w }

func (h *headRecorder) Header() http.Header { return h.header }

func (h *headRecorder) Write(b []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return len(b), nil // a HEAD answer has no body
}

func (h *headRecorder) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}

// append is PATCH: tusd appends the chunk; the last one runs beforeFinishResponse.
func (s *Service) append(w http.ResponseWriter, r *http.Request) {
	id, o, ok := s.own(w, r)
	if !ok {
		return
	}
	defer s.settle(r.Context(), id)()
	if s.ingested(id) || s.complete(id, o) {
		s.appendToComplete(w, r, id, o)
		return
	}
	ctx := context.WithValue(r.Context(), responseKey{}, http.NewResponseController(w))
	s.patch.ServeHTTP(w, tusPath(r.WithContext(ctx), id))
}

// complete: every byte is in but no result was saved (the server stopped, or the store failed,
// between the last byte and the result).
func (s *Service) complete(id string, o *owner) bool {
	fi, err := os.Stat(s.dataPath(id))
	return err == nil && fi.Size() == o.Size
}

// appendToComplete answers a PATCH to an upload that has all its bytes: a resend of the final
// PATCH whose answer was lost, or a retry after ingestion failed (which ingests again:
// instances stored the first time are then already stored).
func (s *Service) appendToComplete(w http.ResponseWriter, r *http.Request, id string, o *owner) {
	if r.Header.Get("Tus-Resumable") != "1.0.0" {
		w.Header().Set("Tus-Version", "1.0.0")
		auth.WriteProblem(w, http.StatusPreconditionFailed, "Tus-Resumable 1.0.0 is required")
		return
	}
	if off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64); err != nil || off != o.Size {
		w.Header().Set("Upload-Offset", strconv.FormatInt(o.Size, 10))
		auth.WriteProblem(w, http.StatusConflict, "the upload is complete: Upload-Offset must be "+strconv.FormatInt(o.Size, 10))
		return
	}
	if !s.ingested(id) {
		lock, _ := s.locker.NewLock(id)
		ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
		err := lock.Lock(ctx, func() {})
		cancel()
		if err != nil {
			w.Header().Set("Retry-After", "5")
			auth.WriteProblem(w, http.StatusServiceUnavailable, "the upload is busy; try again")
			return
		}
		defer lock.Unlock()
		if !s.ingested(id) {
			p, _ := auth.FromContext(r.Context())
			http.NewResponseController(w).SetWriteDeadline(time.Time{})
			if _, err := s.finish(context.WithoutCancel(r.Context()), id, p); err != nil {
				s.log.Error("upload: ingesting", "upload", id, "err", err)
				auth.WriteProblem(w, http.StatusInternalServerError, "the upload could not be ingested; try again")
				return
			}
		}
	}
	s.completeHeaders(w, id, o)
	w.WriteHeader(http.StatusNoContent)
}

// terminate is DELETE: the upload and anything kept about it go.
func (s *Service) terminate(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.own(w, r)
	if !ok {
		return
	}
	defer s.settle(r.Context(), id)()
	if s.ingested(id) {
		for _, p := range []string{s.dataPath(id), s.infoPath(id), s.resultPath(id), s.ownerPath(id)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Error("upload: removing", "path", p, "err", err)
			}
		}
		w.Header().Set("Tus-Resumable", "1.0.0")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.del.ServeHTTP(w, tusPath(r, id))
	if _, err := os.Stat(s.infoPath(id)); errors.Is(err, fs.ErrNotExist) {
		os.Remove(s.ownerPath(id))
		os.Remove(s.streamPath(id))
	}
}

// result is GET .../result: what became of each file.
func (s *Service) result(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.own(w, r)
	if !ok {
		return
	}
	data, err := os.ReadFile(s.resultPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		auth.WriteProblem(w, http.StatusConflict, "the upload is not complete")
		return
	}
	if err != nil {
		s.log.Error("upload: reading result", "upload", id, "err", err)
		auth.WriteProblem(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(data)
}

type responseKey struct{}

// beforeFinishResponse runs in the request that brings the last byte, before it is answered:
// the upload is ingested and its result saved, so a 204 means the instances are stored.
func (s *Service) beforeFinishResponse(hook handler.HookEvent) (handler.HTTPResponse, error) {
	p, ok := auth.FromContext(hook.Context)
	if !ok {
		return handler.HTTPResponse{}, problemError(http.StatusUnauthorized, "authentication required")
	}
	// tusd's write deadline (2 x its network timeout) counts from the last read; a large
	// bundle can take longer than that to ingest.
	if rc, ok := hook.Context.Value(responseKey{}).(*http.ResponseController); ok {
		rc.SetWriteDeadline(time.Time{})
	}
	id := hook.Upload.ID
	// What has been received is ingested to the end, even if the client goes away meanwhile.
	if _, err := s.finish(context.WithoutCancel(hook.Context), id, p); err != nil {
		s.log.Error("upload: ingesting", "upload", id, "err", err)
		return handler.HTTPResponse{}, problemError(http.StatusInternalServerError, "the upload could not be ingested; resend the final PATCH to try again")
	}
	return handler.HTTPResponse{Header: handler.HTTPHeader{"Upload-Result": s.resultURL(id)}}, nil
}

// finish ingests a complete upload, records the studies it touched, saves the result and
// deletes the data. An error leaves the data in place for a retry.
func (s *Service) finish(ctx context.Context, id string, p *auth.Principal) (*Result, error) {
	if p == nil {
		return nil, errors.New("no principal")
	}
	name, sum := id, ""
	if up, err := s.files.GetUpload(ctx, id); err == nil {
		if info, err := up.GetInfo(ctx); err == nil {
			if info.MetaData["filename"] != "" {
				name = info.MetaData["filename"]
			}
			sum = info.MetaData[protocol.MetaSHA256]
		}
	}
	f, err := os.Open(s.dataPath(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := store.Target{InstitutionID: p.InstitutionID, OwnOnly: !p.HasRole(auth.RoleAdmin)}
	// Members ingested as they arrived (stream.go) are not read again: the tar goes on after them.
	streamed, err := s.readStreamed(id)
	if err != nil {
		return nil, err
	}
	var res *Result
	if streamed != nil {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		res = &Result{Files: []FileResult{}}
		for _, fr := range streamed.Files {
			res.Add(fr)
		}
		if streamed.From < fi.Size() {
			tr := tar.NewReader(bufio.NewReaderSize(io.NewSectionReader(f, streamed.From, fi.Size()-streamed.From), 64<<10))
			if err := ingestTar(ctx, s.st, tr, name, t, s.cfg.MaxInstance, res); err != nil {
				return nil, err
			}
		}
	} else if res, err = ingest(ctx, s.st, f, name, sum, t, s.cfg.MaxInstance); err != nil {
		return nil, err
	}
	res.Upload = id
	s.record(ctx, p, res)
	data, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	if err := durable.WriteFile(s.resultPath(id), data); err != nil {
		return nil, fmt.Errorf("saving the result: %w", err)
	}
	f.Close()
	// The instances are in the store now; the result and the creator stay for the client.
	for _, p := range []string{s.dataPath(id), s.infoPath(id), s.streamPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("upload: removing ingested data", "path", p, "err", err)
		}
	}
	return res, nil
}

// record adds one audit entry per study the upload touched (coalesced per minute).
func (s *Service) record(ctx context.Context, p *auth.Principal, res *Result) {
	if s.cfg.Audit == nil {
		return
	}
	outcome := map[string]string{}
	for _, f := range res.Files {
		if f.StudyInstanceUID == "" {
			continue
		}
		if f.Outcome != OutcomeFailed {
			outcome[f.StudyInstanceUID] = "success"
		} else if outcome[f.StudyInstanceUID] == "" {
			outcome[f.StudyInstanceUID] = "failure"
		}
	}
	for uid, o := range outcome {
		e := p.AuditEntry("study.upload", "study:"+uid, o)
		e.Detail = "tus"
		patient := func(ctx context.Context) (string, string, error) { return s.cfg.Store.StudyPatient(ctx, uid) }
		if _, err := s.cfg.Audit.ReadAbout(ctx, e, patient); err != nil {
			s.log.Error("audit trail: entry not written", "action", e.Action, "object", e.Object, "err", err)
		}
	}
}

// problemError is an error tusd answers with as an RFC 9457 problem.
func problemError(status int, detail string) handler.Error {
	body, _ := json.Marshal(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
	return handler.Error{ErrorCode: "ERR_SANPING", Message: detail, HTTPResponse: handler.HTTPResponse{
		StatusCode: status, Body: string(body) + "\n",
		Header: handler.HTTPHeader{"Content-Type": "application/problem+json"},
	}}
}
