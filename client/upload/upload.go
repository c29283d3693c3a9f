// Package upload is the station's uploader: it finds the Part 10 files under some paths, packs
// them into tar bundles of about 16 MB (a study of many small files costs a few round trips)
// and sends each bundle to the server's tus 1.0 endpoint (/api/uploads/), resuming across
// dropped links and killed processes from a journal on disk.
//
// Before bundling it asks the server (QIDO-RS) which instances it has already, by the SOP
// Instance UID of each file's File Meta Information, and does not send those. Each member of
// a tar carries its SHA-256, which the server checks before storing it.
package upload

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of one file, as the server names them (server/upload).
const (
	OutcomeStored        = "stored"
	OutcomeAlreadyStored = "already-stored"
	OutcomeConflict      = "conflict"
	OutcomeFailed        = "failed"
	// OutcomeSkipped: a file in a folder that is not DICOM Part 10 (not sent; the job still
	// succeeds). Only in Summary.SkippedFiles.
	OutcomeSkipped = "skipped"
)

// Config configures an upload job.
type Config struct {
	// Server is the Sanping server's URL, e.g. https://sanping.example.org:8080.
	Server string
	// Token is the station token (spt_...).
	Token string
	// JournalDir holds the journal (default os.UserCacheDir()/sanping/journal). One job at a
	// time per directory. Bundles are read from the files themselves as they are sent, coded
	// members from JournalDir/cache/<bundle>/ (at most a bundle's size each, removed with it).
	JournalDir string
	// BundleSize bounds a bundle's tar (default 16 MiB); ChunkSize a PATCH (default 64 MiB:
	// a bundle in one PATCH; the server keeps and syncs what arrives of a PATCH cut short, so
	// a smaller chunk saves nothing on a bad link and costs a round trip each).
	BundleSize, ChunkSize int64
	// Parallel is how many bundles are bundled and sent at once (default 4): the server
	// ingests one while the next arrives, and the link is kept busy meanwhile.
	Parallel int
	// MaxAttempts bounds the tries of one request in a row (0: until ctx ends).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between tries (default 250 ms and 30 s).
	MinBackoff, MaxBackoff time.Duration
	// Stall ends a PATCH whose body has not moved for this long (default 60 s).
	Stall time.Duration
	// HTTPClient defaults to one with connection and header timeouts.
	HTTPClient *http.Client
	// SendAll sends every file, without asking the server first which instances it has.
	SendAll bool
	// NoCompress sends every file as it is. Otherwise native images go as JPEG-LS lossless,
	// and other uncompressed files zstd-compressed (coding.go).
	NoCompress bool
	// FollowDICOMDIR: a path that is a DICOMDIR file stands for the files it references
	// (`sanping-station upload /media/cdrom/DICOMDIR`). Otherwise it is skipped as any DICOMDIR is.
	FollowDICOMDIR bool
	// OnProgress is called after each chunk; OnBundle after each bundle's result.
	OnProgress func(Progress)
	OnBundle   func(BundleReport)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Progress is how far the job is.
type Progress struct {
	Files, TotalFiles int   // files in finished bundles, of all
	Bytes, TotalBytes int64 // bundle bytes the server has, of all (estimated until bundled)
	Bundle, Bundles   int   // the bundle being sent (1-based), of all
}

// BundleReport is what became of one bundle.
type BundleReport struct {
	Bundle, Bundles                          int
	Files                                    int
	Size                                     int64
	Stored, AlreadyStored, Conflicts, Failed int
}

// FileOutcome is what became of one file.
type FileOutcome struct {
	Path             string `json:"path"`
	SOPInstanceUID   string `json:"sopInstanceUID,omitempty"`
	StudyInstanceUID string `json:"studyInstanceUID,omitempty"`
	Outcome          string `json:"outcome"`
	// Reason says why a file was skipped or not stored, as one of the Reason constants, for
	// the station's messages in the technician's language; Error says it in English with the
	// details (the server's own words when it refused the file).
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Why a file was skipped or not stored (FileOutcome.Reason).
const (
	ReasonEmpty       = "empty"        // a file of no bytes
	ReasonJPEG        = "jpeg"         // a JPEG picture
	ReasonPNG         = "png"          // a PNG picture
	ReasonPDF         = "pdf"          // a PDF document
	ReasonText        = "text"         // a text file
	ReasonNotDICOM    = "not-dicom"    // anything else that is not DICOM Part 10
	ReasonUnreadable  = "unreadable"   // the file could not be read (Error has the system's words)
	ReasonMissing     = "missing"      // listed by a DICOMDIR and not there
	ReasonDICOMDIR    = "dicomdir"     // a DICOMDIR, skipped as a file (its images are sent)
	ReasonBadDICOMDIR = "bad-dicomdir" // a DICOMDIR that could not be read
	ReasonChecksum    = "checksum"     // the server received other bytes than were sent
	ReasonRefused     = "refused"      // the server refused it (Error has the server's words)
)

// Summary is what became of the whole job (including the bundles a killed run finished).
type Summary struct {
	Files                                    []FileOutcome
	Stored, AlreadyStored, Conflicts, Failed int
	Skipped                                  int           // files in folders that are not Part 10 (or DICOMDIR)
	SkippedFiles                             []FileOutcome // those files, each with the reason
	NotSent                                  int           // already stored: the server had them before this run
	Bundles                                  int
	BytesSent                                int64 // PATCH body bytes sent by this run, resends included
}

// Problems lists the files that did not get stored: failed, and conflicts.
func (s *Summary) Problems() []FileOutcome {
	var out []FileOutcome
	for _, f := range s.Files {
		if f.Outcome != OutcomeStored && f.Outcome != OutcomeAlreadyStored {
			out = append(out, f)
		}
	}
	return out
}

func (s *Summary) add(f FileOutcome) {
	switch f.Outcome {
	case OutcomeStored:
		s.Stored++
	case OutcomeAlreadyStored:
		s.AlreadyStored++
	case OutcomeConflict:
		s.Conflicts++
	default:
		s.Failed++
	}
	s.Files = append(s.Files, f)
}

// DefaultJournalDir is os.UserCacheDir()/sanping/journal.
func DefaultJournalDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "sanping", "journal"), nil
}

// uploader runs one job. Bundles go through their own goroutines, Parallel at a time; mu
// guards the journal (every bundle's fields) and the counters.
type uploader struct {
	cfg   Config
	tus   *tusClient
	sent  atomic.Int64
	coder *coder // nil: files go as they are

	mu      sync.Mutex
	j       *journal
	acked   int64 // bytes of the job the server has acknowledged
	total   int64
	files   int
	nfiles  int
	current int // the highest bundle started (1-based)
}

// save applies change to bundle b and writes its state, under mu.
func (u *uploader) save(b *bundle, change func()) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	change()
	return u.j.saveBundle(b)
}

// Run uploads the Part 10 files under paths, first finishing what the journal holds of an
// earlier run. The error is for the job (ctx ended, the journal cannot be written, the server
// refuses the token); files the server refuses are in the Summary.
func Run(ctx context.Context, cfg Config, paths []string) (*Summary, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	endpoint, err := url.Parse(strings.TrimSuffix(cfg.Server, "/") + "/api/uploads/")
	if err != nil || endpoint.Host == "" || (endpoint.Scheme != "http" && endpoint.Scheme != "https") {
		return nil, fmt.Errorf("server %q is not a URL like https://host:8080", cfg.Server)
	}
	j, err := openJournal(cfg.JournalDir)
	if err != nil {
		return nil, err
	}
	u := &uploader{cfg: cfg, j: j}
	if !cfg.NoCompress {
		u.coder = &coder{dir: filepath.Join(cfg.JournalDir, "cache")}
	}
	u.tus = &tusClient{endpoint: endpoint, token: cfg.Token, hc: cfg.HTTPClient, stall: cfg.Stall, sent: &u.sent}

	found, failed, skipped, err := walk(paths, cfg.FollowDICOMDIR)
	if err != nil {
		return nil, err
	}
	// Files of the journal's bundles (an earlier, unfinished run) are not bundled again.
	known := map[string]bool{}
	for _, b := range j.Bundles {
		for _, f := range b.Files {
			known[f] = true
		}
	}
	var fresh []candidate
	for _, c := range found {
		if !known[c.path] {
			fresh = append(fresh, c)
		}
	}
	var onServer []FileOutcome
	if !cfg.SendAll && len(fresh) > 0 {
		if fresh, onServer, err = u.skipStored(ctx, fresh); err != nil {
			return nil, err
		}
	}
	if len(fresh) > 0 || len(j.Bundles) > 0 {
		j.Bundles = append(j.Bundles, group(fresh, cfg.BundleSize)...)
		if err := j.save(); err != nil {
			return nil, err
		}
	}
	sum := &Summary{Skipped: len(skipped), SkippedFiles: skipped, NotSent: len(onServer), Bundles: len(j.Bundles)}
	for _, f := range append(failed, onServer...) {
		sum.add(f)
	}
	for _, b := range j.Bundles {
		u.nfiles += len(b.Files)
		b.est = b.Size
		if len(b.Members) != len(b.Files) && b.State != stateDone {
			b.est = estimate(b)
		}
		u.total += b.est
		if b.State == stateDone {
			u.files += len(b.Files)
			u.acked += b.Size
		}
	}
	if err := u.all(ctx); err != nil {
		for _, b := range j.Bundles {
			if b.State == stateDone {
				for _, f := range b.Outcomes {
					sum.add(f)
				}
			}
		}
		sum.BytesSent = u.sent.Load()
		if ctx.Err() == nil { // being stopped is not a failure to report
			noteStatus(u.cfg.JournalDir, err)
		}
		return sum, err
	}
	for _, b := range j.Bundles {
		for _, f := range b.Outcomes {
			sum.add(f)
		}
	}
	sum.BytesSent = u.sent.Load()
	if len(j.Bundles) > 0 {
		if err := j.finish(); err != nil {
			return sum, err
		}
	}
	// Every bundle is done: no cache is needed, whatever a run without coding left.
	os.RemoveAll(filepath.Join(cfg.JournalDir, "cache"))
	return sum, nil
}

// all takes every bundle not done to done, Parallel at a time. One bundle more is prepared
// (hashed and coded) meanwhile, so the link does not wait for the encoder even with Parallel 1.
// The first error that ends the job stops the others (the journal keeps what each had reached).
func (u *uploader) all(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, u.cfg.Parallel)
	ahead := make(chan struct{}, u.cfg.Parallel+1)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	fail := func(err error) { once.Do(func() { first = err; cancel(err) }) }
	for i, b := range u.j.Bundles {
		if b.State == stateDone {
			continue
		}
		select {
		case ahead <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-ahead }()
			if err := u.prepareAhead(ctx, b); err != nil {
				fail(err)
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			u.mu.Lock()
			u.current = max(u.current, i+1)
			done := b.State == stateDone // nothing of it could be read
			u.mu.Unlock()
			if done {
				return
			}
			err := u.bundle(ctx, b)
			if err != nil {
				err = u.refused(ctx, b, err)
			}
			if err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return context.Cause(ctx)
}

// prepareAhead prepares b (ready) if the journal has not recorded its members yet; sending it
// later lays its tar out from the journal and the cache.
func (u *uploader) prepareAhead(ctx context.Context, b *bundle) error {
	u.mu.Lock()
	fresh := len(b.Members) != len(b.Files)
	u.mu.Unlock()
	if !fresh {
		return nil
	}
	t, err := u.ready(ctx, b)
	if t != nil {
		t.Close()
	}
	return err
}

func (cfg *Config) defaults() error {
	if cfg.Token == "" {
		return errors.New("no token: run sanping-station login, or give -token")
	}
	if cfg.JournalDir == "" {
		d, err := DefaultJournalDir()
		if err != nil {
			return err
		}
		cfg.JournalDir = d
	}
	if cfg.BundleSize <= 0 {
		cfg.BundleSize = 16 << 20
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = 64 << 20
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultHTTPClient()
	}
	return nil
}

// defaultHTTPClient is Config.HTTPClient's default.
func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		// A 4G link that drops packets silently fails the dial in 30 s, not the OS's minutes.
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute, // the final PATCH waits for ingestion
		IdleConnTimeout:       90 * time.Second,
	}}
}

// progress reports; called with mu held.
func (u *uploader) progress() {
	if u.cfg.OnProgress != nil {
		u.cfg.OnProgress(Progress{Files: u.files, TotalFiles: u.nfiles, Bytes: u.acked, TotalBytes: u.total,
			Bundle: u.current, Bundles: len(u.j.Bundles)})
	}
}

// FullJitter is a wait drawn evenly from (0, d] ("full jitter"): after a server restart or
// an outage, a county's stations retry spread over the whole window instead of all at the
// same instants, which would meet the server in lockstep bursts. The SCP's write-out to
// incoming/ backs off the same way.
func FullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d) + 1
}

// GaveUpError ends a job that tried one request MaxAttempts times in a row.
type GaveUpError struct {
	Attempts int
	Err      error // the last try's
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("giving up after %d tries: %v", e.Attempts, e.Err)
}
func (e *GaveUpError) Unwrap() error { return e.Err }

// retrier waits between tries of one step: exponential backoff with full jitter, reset by a
// success.
type retrier struct {
	cfg      *Config
	attempts int
}

// wait returns err when it is not worth trying again, else sleeps before the next try.
func (r *retrier) wait(ctx context.Context, err error) error {
	if !retryable(ctx, err) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	r.attempts++
	if r.cfg.MaxAttempts > 0 && r.attempts >= r.cfg.MaxAttempts {
		return &GaveUpError{Attempts: r.attempts, Err: err}
	}
	d := r.cfg.MinBackoff << min(r.attempts-1, 20)
	if d > r.cfg.MaxBackoff || d <= 0 {
		d = r.cfg.MaxBackoff
	}
	t := time.NewTimer(FullJitter(d))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ready lays out b's tar from the journal, first hashing its files when the journal has not
// recorded them yet or when one changed since (then the bundle goes as a new upload). t is nil
// when no file of b could be read; those are then done, failed.
func (u *uploader) ready(ctx context.Context, b *bundle) (*vtar, error) {
	u.mu.Lock()
	fresh := len(b.Members) != len(b.Files)
	u.mu.Unlock()
	for {
		if fresh {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			u.coder.forget(b)
			nb := &bundle{ID: b.ID, Files: b.Files}
			failed := prepare(nb, u.coder)
			t, err := layout(nb, u.coder)
			if err != nil {
				return nil, err
			}
			if t.size == 0 { // nothing readable
				u.mu.Lock()
				u.total -= b.est
				b.est = 0
				u.mu.Unlock()
				return nil, u.done(b, failed, "")
			}
			// Files that could not be read are failed already.
			err = u.save(b, func() {
				b.Members, b.Size, b.URL, b.State, b.Outcomes = nb.Members, t.size, "", statePending, failed
				u.total += t.size - b.est
				b.est = t.size
			})
			return t, err
		}
		if ok, err := u.restore(b); err != nil || !ok {
			if err != nil {
				return nil, err
			}
			u.cfg.Logger.Info("upload: a file's coding is not as bundled; bundling again", "bundle", b.ID)
			fresh = true
			continue
		}
		t, err := layout(b, u.coder)
		if err != nil {
			return nil, err
		}
		if t.size == b.Size && t.unchanged() {
			return t, nil
		}
		u.cfg.Logger.Info("upload: a file changed since it was bundled; bundling again", "bundle", b.ID)
		fresh = true
	}
}

// restore makes sure the cache holds b's coded members (coder.restore); false when b must be
// bundled again: a coded member and coding now off, or a coding that is not as bundled.
func (u *uploader) restore(b *bundle) (bool, error) {
	coded := false
	for _, m := range b.Members {
		coded = coded || m.Coding != ""
	}
	if !coded {
		return true, nil
	}
	if u.coder == nil {
		return false, nil
	}
	return u.coder.restore(b)
}

// bundle takes one bundle from where the journal says to done.
func (u *uploader) bundle(ctx context.Context, b *bundle) error {
	for {
		err := u.send(ctx, b)
		if !errors.Is(err, errFileChanged) {
			return err
		}
		// Laid out again from the files as they are now, and sent as a new upload.
		u.cfg.Logger.Info("upload: a file changed while it was sent; bundling again", "bundle", b.ID)
		if err := u.save(b, func() { b.Members, b.URL = nil, "" }); err != nil {
			return err
		}
	}
}

// send sends one bundle; errFileChanged if a file changed under it.
func (u *uploader) send(ctx context.Context, b *bundle) error {
	f, err := u.ready(ctx, b)
	if f == nil || err != nil {
		return err
	}
	defer f.Close()
	r := &retrier{cfg: &u.cfg}
	off := int64(-1) // unknown: ask the server
	if b.URL == "" {
		off = 0
	}
	var resultURL string
	var have int64 // what the server is known to have of the bundle
	for resultURL == "" {
		if b.URL == "" {
			loc, err := u.tus.create(ctx, b.Size, "bundle-"+b.ID+".tar")
			if err != nil {
				if err = r.wait(ctx, err); err != nil {
					return err
				}
				continue
			}
			off = 0
			if err := u.save(b, func() { b.URL, b.State = loc, stateUploading }); err != nil {
				return err
			}
		}
		if off < 0 {
			o, res, err := u.tus.head(ctx, b.URL)
			if errors.Is(err, errGone) {
				u.gone(b, &have)
				continue
			}
			if err != nil {
				if err = r.wait(ctx, err); err != nil {
					return err
				}
				continue
			}
			off, resultURL = o, res
			u.advance(&have, o, r)
			if resultURL != "" {
				break
			}
		}
		n := min(u.cfg.ChunkSize, b.Size-off)
		o, res, err := u.tus.patch(ctx, b.URL, f, off, n)
		if errors.Is(err, errGone) {
			u.gone(b, &have)
			continue
		}
		if err != nil {
			if f.changed.Load() {
				return errFileChanged
			}
			off = -1
			if err = r.wait(ctx, err); err != nil {
				return err
			}
			continue
		}
		off, resultURL = o, res
		u.advance(&have, o, r)
		if resultURL == "" && off >= b.Size {
			off = -1 // complete but no result named: HEAD names it
		}
	}
	var res *serverResult
	for {
		res, err = u.tus.result(ctx, resultURL)
		if err == nil {
			break
		}
		if err = r.wait(ctx, err); err != nil {
			return err
		}
	}
	return u.done(b, append(b.Outcomes, u.outcomes(b, res)...), "the server's result does not name this file")
}

// gone forgets an upload the server no longer has: the bundle starts again.
func (u *uploader) gone(b *bundle, have *int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b.URL = ""
	u.acked -= *have
	*have = 0
}

// advance notes that the server has off bytes of the bundle. Progress resets the backoff: on a
// link cut every few MB no PATCH of a whole chunk may succeed, yet the upload moves on.
func (u *uploader) advance(have *int64, off int64, r *retrier) {
	if off <= *have {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.acked += off - *have
	*have = off
	r.attempts = 0
	u.progress()
}

// outcomes maps the server's result (by tar member name) back to the files.
func (u *uploader) outcomes(b *bundle, res *serverResult) []FileOutcome {
	byName := map[string]int{}
	for i, f := range res.Files {
		byName[f.Name] = i
	}
	var out []FileOutcome
	for i, p := range b.Files {
		k, ok := byName[memberName(i, p)]
		if !ok {
			continue // not in the tar (unreadable, reported already) or never reached by the server
		}
		f := res.Files[k]
		o := FileOutcome{Path: p, SOPInstanceUID: f.SOPInstanceUID, StudyInstanceUID: f.StudyInstanceUID, Outcome: f.Outcome, Error: f.Error}
		if o.Outcome != OutcomeStored && o.Outcome != OutcomeAlreadyStored {
			o.Reason = ReasonRefused
		}
		// The server checks the tar's record; this catches a server that does not.
		if i < len(b.Members) && b.Members[i].SHA256 != "" && f.SHA256 != "" && !strings.EqualFold(b.Members[i].SHA256, f.SHA256) &&
			o.Outcome != OutcomeFailed {
			o.Outcome, o.Reason, o.Error = OutcomeFailed, ReasonChecksum, fmt.Sprintf("checksum mismatch: the server received SHA-256 %s, the file sent has %s", f.SHA256, b.Members[i].SHA256)
		}
		out = append(out, o)
	}
	return out
}

// refused ends a bundle the server refuses for what it is (413 too large, 400, ...): its files
// fail with the server's reason and the job goes on. Other errors end the job, a refused
// token (401, 403) among them.
func (u *uploader) refused(ctx context.Context, b *bundle, err error) error {
	var se *StatusError
	if ctx.Err() != nil || !errors.As(err, &se) || se.Code < 400 || se.Code >= 500 ||
		se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden || se.Temporary() {
		return err
	}
	return u.done(b, b.Outcomes, "bundle refused: "+err.Error())
}

// done records the bundle's outcomes (files without one fail with reason).
func (u *uploader) done(b *bundle, outcomes []FileOutcome, reason string) error {
	seen := map[string]bool{}
	for _, o := range outcomes {
		seen[o.Path] = true
	}
	for _, p := range b.Files {
		if !seen[p] {
			outcomes = append(outcomes, FileOutcome{Path: p, Outcome: OutcomeFailed, Reason: ReasonRefused, Error: reason})
		}
	}
	order := map[string]int{}
	for i, p := range b.Files {
		order[p] = i
	}
	sorted := make([]FileOutcome, len(b.Files))
	for _, o := range outcomes {
		sorted[order[o.Path]] = o
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	b.Outcomes, b.State = sorted, stateDone
	if err := u.j.saveBundle(b); err != nil {
		return err
	}
	u.coder.forget(b)
	noteStatus(u.cfg.JournalDir, nil)
	u.files += len(b.Files)
	u.progress()
	if u.cfg.OnBundle != nil {
		rep := BundleReport{Bundle: u.current, Bundles: len(u.j.Bundles), Files: len(b.Files), Size: b.Size}
		for _, o := range b.Outcomes {
			switch o.Outcome {
			case OutcomeStored:
				rep.Stored++
			case OutcomeAlreadyStored:
				rep.AlreadyStored++
			case OutcomeConflict:
				rep.Conflicts++
			default:
				rep.Failed++
			}
		}
		u.cfg.OnBundle(rep)
	}
	return nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
