package upload

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WatchConfig is Watch's: what Run needs, and the folder to watch.
type WatchConfig struct {
	Config
	// Dir is watched for files, in any subfolder; Sent and Failed (default Dir/.sent and
	// Dir/.failed) receive them once done, keeping their paths below Dir.
	Dir, Sent, Failed string
	// Interval between scans (default 2 s). A file is taken once its size and time have not
	// changed between two scans and it is at least Stable old (default 2 s): the modality or
	// the copy that writes it has finished.
	Interval, Stable time.Duration
	// KeepSent: files in Sent (the server has them) older than this, counted from when they
	// were sent, are removed, so that the station's disk does not fill; 0 keeps them.
	KeepSent time.Duration
	// OnBatch hears of each batch's summary; AfterAttempt of each upload attempt, whatever
	// its outcome (err nil: it went through), once the journal has noted it.
	OnBatch      func(*Summary)
	AfterAttempt func(err error)
	// OnSent hears of each file moved to Sent, by its new path (the station's local
	// DICOMweb indexes it).
	OnSent func(path string)
	Logger *slog.Logger
}

// watchAttempts is Watch's MaxAttempts when none is set: a batch that cannot reach the server
// ends soon, so that what arrives meanwhile joins the journal (and sanping-station status counts it).
const watchAttempts = 4

type seen struct {
	size int64
	mod  time.Time
}

// Watch uploads files as they appear in Dir, until ctx ends. Stored files (and those the
// server already had) move to Sent; failed ones to Failed, each beside a ".reason" file.
// Interrupted, it resumes from its journal like Run.
//
// A batch gives up after MaxAttempts tries in a row (default 4) and is taken again, with what
// arrived since, after a wait that doubles from Interval up to MaxBackoff (default 30 s): a
// day offline costs a try every MaxBackoff, never a wait of hours.
func Watch(ctx context.Context, wc WatchConfig) error {
	if wc.MaxAttempts <= 0 {
		wc.MaxAttempts = watchAttempts
	}
	maxWait := wc.MaxBackoff
	if maxWait <= 0 {
		maxWait = 30 * time.Second
	}
	if wc.Interval <= 0 {
		wc.Interval = 2 * time.Second
	}
	if wc.Stable <= 0 {
		wc.Stable = 2 * time.Second
	}
	if wc.Sent == "" {
		wc.Sent = filepath.Join(wc.Dir, ".sent")
	}
	if wc.Failed == "" {
		wc.Failed = filepath.Join(wc.Dir, ".failed")
	}
	if wc.Logger == nil {
		wc.Logger = slog.New(slog.DiscardHandler)
	}
	if wc.Config.Logger == nil {
		wc.Config.Logger = wc.Logger
	}
	before := map[string]seen{}
	var pruned time.Time
	var wait time.Duration // before the next batch, after batches that stopped short
	var retryAt time.Time
	t := time.NewTicker(wc.Interval)
	defer t.Stop()
	for {
		now := map[string]seen{}
		var ready []string
		err := filepath.WalkDir(wc.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // a file that went away between listing and reading
			}
			if d.IsDir() {
				if p != wc.Dir && (p == wc.Sent || p == wc.Failed || strings.HasPrefix(d.Name(), ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			s := seen{fi.Size(), fi.ModTime()}
			now[p] = s
			if b, ok := before[p]; ok && b == s && time.Since(s.mod) >= wc.Stable {
				ready = append(ready, p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("watching %s: %w", wc.Dir, err)
		}
		before = now
		if wc.KeepSent > 0 && time.Since(pruned) > min(wc.KeepSent/10, 10*time.Minute) {
			wc.prune()
			pruned = time.Now()
		}
		if len(ready) > 0 && !time.Now().Before(retryAt) {
			if wc.batch(ctx, ready) {
				wait = 0
			} else {
				wait = min(max(2*wait, wc.Interval), maxWait)
				retryAt = time.Now().Add(FullJitter(wait))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// batch uploads ready files and moves each where it belongs. It reports false when the
// upload stopped short (the server out of reach, ctx ended).
func (wc *WatchConfig) batch(ctx context.Context, ready []string) bool {
	var dicom []string
	taken := map[string]os.FileInfo{} // each file as it was when taken
	for _, p := range ready {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		taken[p] = fi
		ok, _, err := isPart10(p)
		switch {
		case err != nil:
			continue // gone or unreadable now: the next scan sees
		case !ok && strings.EqualFold(filepath.Base(p), "DICOMDIR"):
			wc.move(p, wc.Sent, "")
		case !ok:
			wc.move(p, wc.Failed, "not a DICOM Part 10 file (no DICM at offset 128)")
		default:
			dicom = append(dicom, p)
		}
	}
	if len(dicom) == 0 {
		return true
	}
	sum, err := Run(ctx, wc.Config, dicom)
	if wc.AfterAttempt != nil {
		wc.AfterAttempt(err)
	}
	if err != nil && ctx.Err() == nil {
		// The journal keeps what was done; the files stay and are taken again later.
		wc.Logger.Warn("upload interrupted; retrying later", "err", err)
	}
	if sum == nil {
		return err == nil
	}
	// A journal left by a batch that stopped short also reports the bundles it finished, whose
	// files were moved then: those are not moved or reported again.
	mine := *sum
	mine.Files, mine.Stored, mine.AlreadyStored, mine.Conflicts, mine.Failed = nil, 0, 0, 0, 0
	for _, f := range sum.Files {
		fi, err := os.Lstat(f.Path)
		if err != nil {
			continue
		}
		if was, ok := taken[f.Path]; ok && !sameFile(was, fi) {
			// Replaced while it was being sent (the modality sent the instance again,
			// perhaps corrected): left for the next scan, which sends the new one.
			continue
		}
		mine.add(f)
		switch f.Outcome {
		case OutcomeStored, OutcomeAlreadyStored:
			wc.move(f.Path, wc.Sent, "")
		case OutcomeFailed, OutcomeConflict:
			wc.move(f.Path, wc.Failed, f.Outcome+": "+f.Error)
		}
	}
	if wc.OnBatch != nil && len(mine.Files) > 0 {
		wc.OnBatch(&mine)
	}
	return err == nil
}

// prune removes files sent longer than KeepSent ago (their time is set when they are sent).
func (wc *WatchConfig) prune() {
	cutoff := time.Now().Add(-wc.KeepSent)
	filepath.WalkDir(wc.Sent, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.ModTime().Before(cutoff) {
			if err := os.Remove(p); err != nil {
				wc.Logger.Warn("removing a sent file", "file", p, "err", err)
			}
		}
		return nil
	})
}

// sameFile reports whether a and b describe the same file, unchanged.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// move puts a file under to, at its path below Dir, with a ".reason" file when reason is set.
func (wc *WatchConfig) move(p, to, reason string) {
	rel, err := filepath.Rel(wc.Dir, p)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = filepath.Base(p)
	}
	dst := filepath.Join(to, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		wc.Logger.Error("moving a done file", "file", p, "err", err)
		return
	}
	if err := os.Rename(p, dst); err != nil {
		wc.Logger.Error("moving a done file", "file", p, "err", err)
		return
	}
	if to == wc.Sent {
		now := time.Now()
		os.Chtimes(dst, now, now) // when it was sent, for KeepSent
		if wc.OnSent != nil {
			wc.OnSent(dst)
		}
	}
	if reason != "" {
		os.WriteFile(dst+".reason", []byte(reason+"\n"), 0o640)
	}
}
