package client

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"time"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/scp"
	"github.com/sanping/sanping/client/upload"
)

// What status says (message keys), in one place.
const (
	statusQueue     = "queue:        %d bundles, %d files, %.1f MB waiting\n"
	statusLast      = "last success: %s\n"
	statusNever     = "never"
	statusLastError = "last error:   %s (%s)\n"
	statusNoLogin   = "no login saved (sanping-station login)"
	statusLinkDown  = "down: %s (%s)"
	statusLinkUp    = "up: %s, token accepted (%d ms)"
	statusLink      = "link:         %s\n"

	spoolNoState     = "spool:        no state in %s (sanping-station scp has not run with -dir %s)\n"
	spoolLine        = "spool:        %s, %s as of %s\n"
	spoolRunning     = "scp running"
	spoolStopped     = "scp stopped"
	spoolWaiting     = "waiting:      %d images (%.1f MB) not yet written out to incoming/\n"
	spoolFree        = "disk free:    %s (warning below %s)\n"
	spoolFreeUnknown = "disk free:    not known (warning below %s)\n"
	warnLowSpace     = "warning:      free disk space %s is below %s: free some space, or the station will refuse images\n"
	warnWriteOut     = "warning:      images cannot be written out to incoming/, trying again: %s\n"
	warnRefusing     = "warning:      refusing images from the modality, no room in the spool: %s\n"
)

// statusCommand is `sanping-station status`: the upload queue, the last success, the link,
// and the SCP's spool (free space, the threshold, images waiting to be written out).
func statusCommand(ctx context.Context, p *msg.Printer, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// A station set up machine-wide (login -machine, the service) is shown from its
	// machine-wide journal and spool unless told otherwise.
	paths := currentPaths()
	defConfig, defJournal, defSpool := paths.config(), "", defaultSpoolDir
	if defConfig == paths.Machine.Config {
		defJournal, defSpool = paths.Machine.Journal, paths.Machine.Spool
	}
	config := fs.String("config", defConfig, p.Tr("the saved login"))
	journal := fs.String("journal", defJournal, p.Tr("journal directory (default: the user cache directory's sanping/journal)"))
	spool := fs.String("spool", defSpool, p.Tr("the spool directory of sanping-station scp (its -dir)"))
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := *journal
	if dir == "" {
		var err error
		if dir, err = upload.DefaultJournalDir(); err != nil {
			return err
		}
	}
	st, err := upload.ReadStatus(dir)
	if err != nil {
		return err
	}
	p.Trf(stdout, statusQueue, st.PendingBundles, st.PendingFiles, float64(st.PendingBytes)/1e6)
	last := p.Tr(statusNever)
	if !st.LastSuccess.IsZero() {
		last = st.LastSuccess.Local().Format("2006-01-02 15:04:05")
	}
	p.Trf(stdout, statusLast, last)
	if st.LastError != "" {
		p.Trf(stdout, statusLastError, st.LastError, st.LastErrorAt.Local().Format("2006-01-02 15:04:05"))
	}
	link := p.Tr(statusNoLogin)
	if saved, err := readStationConfig(*config); err == nil && saved.Server != "" {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		// The session check proves both: the server answers and still takes the token.
		if err := checkSession(cctx, saved.Server, saved.Token); err == nil {
			link = p.Tr(statusLinkUp, saved.Server, time.Since(start).Milliseconds())
			// The admin console sees what this shows (best effort: status is about the station).
			if report, err := stationStatus(dir, *spool); err == nil {
				upload.SendStatus(cctx, upload.Config{Server: saved.Server, Token: saved.Token}, report)
			}
		} else {
			link = p.Tr(statusLinkDown, saved.Server, whatWentWrongOr(p, err))
		}
	}
	p.Trf(stdout, statusLink, link)
	return spoolStatus(p, stdout, *spool)
}

// spoolStatus shows the state the SCP records in its spool directory.
func spoolStatus(p *msg.Printer, w io.Writer, dir string) error {
	st, err := scp.ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		p.Trf(w, spoolNoState, dir, dir)
		return nil
	}
	if err != nil {
		return err
	}
	running := p.Tr(spoolStopped)
	if st.Running {
		running = p.Tr(spoolRunning)
	}
	p.Trf(w, spoolLine, dir, running, st.Updated.Local().Format("2006-01-02 15:04:05"))
	p.Trf(w, spoolWaiting, st.Waiting, float64(st.WaitingBytes)/1e6)
	if st.Free >= 0 {
		p.Trf(w, spoolFree, formatBytes(st.Free), formatBytes(st.MinFree))
	} else {
		p.Trf(w, spoolFreeUnknown, formatBytes(st.MinFree))
	}
	if st.LowSpace {
		p.Trf(w, warnLowSpace, formatBytes(st.Free), formatBytes(st.MinFree))
	}
	if st.WriteOutError != "" {
		p.Trf(w, warnWriteOut, st.WriteOutError)
	}
	if st.Refusing != "" {
		p.Trf(w, warnRefusing, st.Refusing)
	}
	return nil
}
