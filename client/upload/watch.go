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
	// OnBatch hears of each batch's summary.
	OnBatch func(*Summary)
	Logger  *slog.Logger
}

type seen struct {
	size int64
	mod  time.Time
}

// Watch uploads files as they appear in Dir, until ctx ends. Stored files (and those the
// server already had) move to Sent; failed ones to Failed, each beside a ".reason" file.
// Interrupted, it resumes from its journal like Run.
func Watch(ctx context.Context, wc WatchConfig) error {
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
	before := map[string]seen{}
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
		if len(ready) > 0 {
			wc.batch(ctx, ready)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// batch uploads ready files and moves each where it belongs.
func (wc *WatchConfig) batch(ctx context.Context, ready []string) {
	var dicom []string
	for _, p := range ready {
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
		return
	}
	sum, err := Run(ctx, wc.Config, dicom)
	if err != nil {
		// The journal keeps what was done; the files stay and are taken again next scan.
		wc.Logger.Warn("upload interrupted; retrying on the next scan", "err", err)
	}
	if sum == nil {
		return
	}
	for _, f := range sum.Files {
		switch f.Outcome {
		case OutcomeStored, OutcomeAlreadyStored:
			wc.move(f.Path, wc.Sent, "")
		case OutcomeFailed, OutcomeConflict:
			wc.move(f.Path, wc.Failed, f.Outcome+": "+f.Error)
		}
	}
	if wc.OnBatch != nil {
		wc.OnBatch(sum)
	}
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
	if reason != "" {
		os.WriteFile(dst+".reason", []byte(reason+"\n"), 0o640)
	}
}
