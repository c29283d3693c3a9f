package client

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sanping/sanping/client/upload"
)

// uploadCommand is `sanping-station upload PATH...`: sends the Part 10 files under the paths to the
// server in tar bundles over tus, resuming what a killed run left in the journal.
func uploadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the Sanping server (default: the one saved by sanping-station login)")
	token := fs.String("token", "", "station token spt_... (default: the one saved by sanping-station login)")
	config := fs.String("config", defaultConfigPath(), "the saved login")
	journal := fs.String("journal", "", "journal directory (default: the user cache directory's sanping/journal)")
	parallel := fs.Int("parallel", 4, "bundles sent at once")
	bundleMB := fs.Int("bundle-mb", 16, "size of a bundle, MB")
	attempts := fs.Int("attempts", 0, "tries of one request in a row before giving up (0: until interrupted)")
	check := fs.Bool("check", true, "ask the server first which instances it has, and send only the others")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sanping-station upload [-server URL] [-token spt_...] [-journal DIR] PATH...\n\n"+
			"Uploads the DICOM Part 10 files under the paths (files or folders) in bundles of about 16 MB,\n"+
			"resuming after a dropped link or an interrupted run. A path that is a DICOMDIR (a CD or DVD:\n"+
			"sanping-station upload /media/cdrom/DICOMDIR) stands for the files it references. Instances the\n"+
			"server already has are not sent and are reported as already stored. Exit status 1 if any\n"+
			"file was not stored.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError{"upload: no PATH to upload"}
	}
	saved, err := readStationConfig(*config)
	if err != nil {
		return err
	}
	if *server == "" {
		*server = saved.Server
	}
	if *token == "" {
		*token = saved.Token
	}
	if *server == "" || *token == "" {
		return usageError{"upload: no server or token: run sanping-station login first, or give -server and -token"}
	}
	srv, err := serverURL(*server)
	if err != nil {
		return err
	}
	if *attempts < 0 {
		return usageError{"upload: -attempts must be 0 or more"}
	}
	if *parallel < 1 || *parallel > 16 || *bundleMB < 1 || *bundleMB > 1024 {
		return usageError{"upload: -parallel must be 1 to 16 and -bundle-mb 1 to 1024"}
	}
	pr := newProgressPrinter(stdout)
	sum, err := upload.Run(ctx, upload.Config{Server: srv, Token: *token, JournalDir: *journal, MaxAttempts: *attempts,
		Parallel: *parallel, BundleSize: int64(*bundleMB) << 20, SendAll: !*check, FollowDICOMDIR: true, OnProgress: pr.progress, OnBundle: pr.bundle}, fs.Args())
	pr.end()
	if sum != nil {
		printSummary(stdout, sum)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; run the same command again to resume: %w", err)
		}
		return err
	}
	if p := len(sum.Problems()); p > 0 {
		return fmt.Errorf("%d of %d files not stored", p, len(sum.Files))
	}
	return nil
}

func printSummary(w io.Writer, s *upload.Summary) {
	fmt.Fprintf(w, "%d files: %d stored, %d already stored, %d conflicts, %d failed", len(s.Files), s.Stored, s.AlreadyStored, s.Conflicts, s.Failed)
	if s.NotSent > 0 {
		fmt.Fprintf(w, " (%d not sent: on the server already)", s.NotSent)
	}
	if s.Skipped > 0 {
		fmt.Fprintf(w, " (%d other files skipped)", s.Skipped)
	}
	fmt.Fprintln(w)
	for _, f := range s.Problems() {
		fmt.Fprintf(w, "  %s %s: %s\n", f.Outcome, f.Path, f.Error)
	}
	for _, f := range s.SkippedFiles {
		fmt.Fprintf(w, "  %s %s: %s\n", f.Outcome, f.Path, f.Error)
	}
}

// progressPrinter shows the job: a bar rewritten in place on a terminal, a line per bundle
// elsewhere (logs, pipes).
type progressPrinter struct {
	w        io.Writer
	terminal bool
	start    time.Time
	base     int64 // bytes already sent when this run's first figure came
	started  bool
	drawn    bool
	last     time.Time
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	p := &progressPrinter{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progressPrinter) progress(pr upload.Progress) {
	now := time.Now()
	if !p.started {
		p.started, p.start, p.base = true, now, pr.Bytes
	}
	if !p.terminal || (now.Sub(p.last) < 200*time.Millisecond && pr.Bytes < pr.TotalBytes) {
		return
	}
	p.last = now
	fmt.Fprintf(p.w, "\r%s\x1b[K", progressLine(pr, pr.Bytes-p.base, now.Sub(p.start)))
	p.drawn = true
}

// progressLine is "12/100 files  3.2/20.5 MB  1.1 MB/s  ETA 16s".
func progressLine(pr upload.Progress, sent int64, elapsed time.Duration) string {
	const mb = 1 << 20
	var b strings.Builder
	frac := 0.0
	if pr.TotalBytes > 0 {
		frac = min(float64(pr.Bytes)/float64(pr.TotalBytes), 1)
	}
	const width = 20
	fill := int(frac * width)
	fmt.Fprintf(&b, "[%s%s] %d/%d files  %.1f/%.1f MB", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		pr.Files, pr.TotalFiles, float64(pr.Bytes)/mb, float64(pr.TotalBytes)/mb)
	if secs := elapsed.Seconds(); secs > 0.5 && sent > 0 {
		rate := float64(sent) / secs
		eta := time.Duration(float64(pr.TotalBytes-pr.Bytes) / rate * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(&b, "  %.1f MB/s  ETA %s", rate/mb, max(eta, 0))
	}
	return b.String()
}

func (p *progressPrinter) bundle(r upload.BundleReport) {
	if p.terminal {
		return
	}
	fmt.Fprintf(p.w, "bundle %d/%d: %d files, %.1f MB: %d stored, %d already stored, %d conflicts, %d failed\n",
		r.Bundle, r.Bundles, r.Files, float64(r.Size)/(1<<20), r.Stored, r.AlreadyStored, r.Conflicts, r.Failed)
}

func (p *progressPrinter) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
