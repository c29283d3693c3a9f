package client

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/upload"
)

// uploadUsage is upload's help (a message key).
const uploadUsage = `usage: sanping-station upload [-server URL] [-token spt_...] [-journal DIR] PATH...

Uploads the DICOM Part 10 files under the paths (files or folders) in bundles of about 16 MB,
resuming after a dropped link or an interrupted run. A path that is a DICOMDIR (a CD or DVD:
sanping-station upload /media/cdrom/DICOMDIR) stands for the files it references. Instances the
server already has are not sent and are reported as already stored. Uncompressed images
go as JPEG-LS lossless and other uncompressed files zstd-compressed, no pixel changed
(-compress=false sends files as they are). Exit status 1 if any file was not stored.

`

// uploadCommand is `sanping-station upload PATH...`: sends the Part 10 files under the paths to the
// server in tar bundles over tus, resuming what a killed run left in the journal.
func uploadCommand(ctx context.Context, p *msg.Printer, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", p.Tr("the Sanping server (default: the one saved by sanping-station login)"))
	token := fs.String("token", "", p.Tr("station token spt_... (default: the one saved by sanping-station login)"))
	config := fs.String("config", defaultConfigPath(), p.Tr("the saved login"))
	journal := fs.String("journal", "", p.Tr("journal directory (default: the user cache directory's sanping/journal)"))
	parallel := fs.Int("parallel", 4, p.Tr("bundles sent at once"))
	bundleMB := fs.Int("bundle-mb", 16, p.Tr("size of a bundle, MB"))
	attempts := fs.Int("attempts", 0, p.Tr("tries of one request in a row before giving up (0: until interrupted)"))
	check := fs.Bool("check", true, p.Tr("ask the server first which instances it has, and send only the others"))
	compress := fs.Bool("compress", true, p.Tr("compress uncompressed images losslessly (JPEG-LS) and other files (zstd) before sending; false: send files as they are"))
	fs.Usage = func() {
		p.Trf(fs.Output(), uploadUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("upload: no PATH to upload")
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
		return usagef("upload: no server or token: run sanping-station login first, or give -server and -token")
	}
	srv, err := serverURL(*server)
	if err != nil {
		return err
	}
	if *attempts < 0 {
		return usagef("upload: -attempts must be 0 or more")
	}
	if *parallel < 1 || *parallel > 16 || *bundleMB < 1 || *bundleMB > 1024 {
		return usagef("upload: -parallel must be 1 to 16 and -bundle-mb 1 to 1024")
	}
	pr := newProgressPrinter(p, stdout)
	sum, err := upload.Run(ctx, upload.Config{Server: srv, Token: *token, JournalDir: *journal, MaxAttempts: *attempts,
		Parallel: *parallel, BundleSize: int64(*bundleMB) << 20, SendAll: !*check, NoCompress: !*compress, FollowDICOMDIR: true, OnProgress: pr.progress, OnBundle: pr.bundle}, fs.Args())
	pr.end()
	if sum != nil {
		printSummary(p, stdout, sum)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ctx.Err(), err) // said as "interrupted: run it again"
		}
		return err
	}
	if n := len(sum.Problems()); n > 0 {
		return notStored{p.Tr("%d of %d files not stored: see the list above.", n, len(sum.Files))}
	}
	return nil
}

// notStored ends a job that ran to its end with files not stored (exit status 1); the
// summary has named each with its reason, so its message is already the technician's.
type notStored struct{ msg string }

func (e notStored) Error() string { return e.msg }

// fileLine is one file that was skipped or not stored, with why and what to do.
func fileLine(p *msg.Printer, f upload.FileOutcome) string {
	var why string
	switch f.Reason {
	case upload.ReasonEmpty:
		why = p.Tr("an empty file: export it from the modality again")
	case upload.ReasonJPEG, upload.ReasonPNG:
		why = p.Tr("a picture (JPEG or PNG), not DICOM: send the study from the modality as DICOM (DICOM send, or export to DICOM)")
	case upload.ReasonPDF:
		why = p.Tr("a PDF document, not DICOM")
	case upload.ReasonText:
		why = p.Tr("a text file, not DICOM")
	case upload.ReasonNotDICOM:
		why = p.Tr("not a DICOM file")
	case upload.ReasonUnreadable:
		why = p.Tr("cannot be read (%s): check the disc or the USB disk, or whether another program holds the file", f.Error)
	case upload.ReasonMissing:
		why = p.Tr("listed on the CD (DICOMDIR) but missing: the disc may be damaged or copied in part; copy the whole disc again (%s)", f.Error)
	case upload.ReasonDICOMDIR:
		why = p.Tr("the CD's index (DICOMDIR): the images it lists are sent")
	case upload.ReasonBadDICOMDIR:
		why = p.Tr("the CD's index (DICOMDIR) cannot be read (%s): upload the folder instead", f.Error)
	case upload.ReasonChecksum:
		why = p.Tr("damaged on the way (checksum): run the same command again")
	case upload.ReasonRefused:
		if f.Outcome == upload.OutcomeConflict {
			why = p.Tr("the server has a different image under the same ID (%s): tell the county hospital's administrator", f.Error)
		} else {
			why = p.Tr("refused by the server: %s", f.Error)
		}
	default:
		why = f.Error
	}
	return p.Tr("  %s %s: %s\n", outcomeWord(p, f.Outcome), f.Path, why)
}

// outcomeWord is a file's outcome in the technician's language.
func outcomeWord(p *msg.Printer, outcome string) string {
	switch outcome {
	case upload.OutcomeStored:
		return p.Tr("stored")
	case upload.OutcomeAlreadyStored:
		return p.Tr("already stored")
	case upload.OutcomeConflict:
		return p.Tr("conflict")
	case upload.OutcomeSkipped:
		return p.Tr("skipped")
	}
	return p.Tr("failed")
}

func printSummary(p *msg.Printer, w io.Writer, s *upload.Summary) {
	p.Trf(w, "%d files: %d stored, %d already stored, %d conflicts, %d failed", len(s.Files), s.Stored, s.AlreadyStored, s.Conflicts, s.Failed)
	if s.NotSent > 0 {
		p.Trf(w, " (%d not sent: on the server already)", s.NotSent)
	}
	if s.Skipped > 0 {
		p.Trf(w, " (%d other files skipped)", s.Skipped)
	}
	fmt.Fprintln(w)
	for _, f := range s.Problems() {
		fmt.Fprint(w, fileLine(p, f))
	}
	for _, f := range s.SkippedFiles {
		fmt.Fprint(w, fileLine(p, f))
	}
}

// progressPrinter shows the job: a bar rewritten in place on a terminal, a line per bundle
// elsewhere (logs, pipes).
type progressPrinter struct {
	p        *msg.Printer
	w        io.Writer
	terminal bool
	start    time.Time
	base     int64 // bytes already sent when this run's first figure came
	started  bool
	drawn    bool
	last     time.Time
}

func newProgressPrinter(mp *msg.Printer, w io.Writer) *progressPrinter {
	p := &progressPrinter{p: mp, w: w}
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
	fmt.Fprintf(p.w, "\r%s\x1b[K", progressLine(p.p, pr, pr.Bytes-p.base, now.Sub(p.start)))
	p.drawn = true
}

// progressLine is "12/100 files  3.2/20.5 MB  1.1 MB/s  ETA 16s".
func progressLine(p *msg.Printer, pr upload.Progress, sent int64, elapsed time.Duration) string {
	const mb = 1 << 20
	var b strings.Builder
	frac := 0.0
	if pr.TotalBytes > 0 {
		frac = min(float64(pr.Bytes)/float64(pr.TotalBytes), 1)
	}
	const width = 20
	fill := int(frac * width)
	fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("#", fill), strings.Repeat(".", width-fill))
	p.Trf(&b, "%d/%d files  %.1f/%.1f MB", pr.Files, pr.TotalFiles, float64(pr.Bytes)/mb, float64(pr.TotalBytes)/mb)
	if secs := elapsed.Seconds(); secs > 0.5 && sent > 0 {
		rate := float64(sent) / secs
		eta := time.Duration(float64(pr.TotalBytes-pr.Bytes) / rate * float64(time.Second)).Round(time.Second)
		p.Trf(&b, "  %.1f MB/s  ETA %s", rate/mb, max(eta, 0))
	}
	return b.String()
}

func (p *progressPrinter) bundle(r upload.BundleReport) {
	if p.terminal {
		return
	}
	p.p.Trf(p.w, "bundle %d/%d: %d files, %.1f MB: %d stored, %d already stored, %d conflicts, %d failed\n",
		r.Bundle, r.Bundles, r.Files, float64(r.Size)/(1<<20), r.Stored, r.AlreadyStored, r.Conflicts, r.Failed)
}

func (p *progressPrinter) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
