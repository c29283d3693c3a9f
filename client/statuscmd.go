package client

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sanping/sanping/client/scp"
	"github.com/sanping/sanping/client/upload"
)

// What status says of the SCP's spool (scp.State), in one place for translation.
const (
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
func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultConfigPath(), "the saved login")
	journal := fs.String("journal", "", "journal directory (default: the user cache directory's sanping/journal)")
	spool := fs.String("spool", defaultSpoolDir, "the spool directory of sanping-station scp (its -dir)")
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
	fmt.Fprintf(stdout, "queue:        %d bundles, %d files, %.1f MB waiting\n", st.PendingBundles, st.PendingFiles, float64(st.PendingBytes)/1e6)
	last := "never"
	if !st.LastSuccess.IsZero() {
		last = st.LastSuccess.Local().Format("2006-01-02 15:04:05")
	}
	fmt.Fprintf(stdout, "last success: %s\n", last)
	if st.LastError != "" {
		fmt.Fprintf(stdout, "last error:   %s (%s)\n", st.LastError, st.LastErrorAt.Local().Format("2006-01-02 15:04:05"))
	}
	link := "no login saved (sanping-station login)"
	if saved, err := readStationConfig(*config); err == nil && saved.Server != "" {
		link = "down: " + saved.Server
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		// The session check proves both: the server answers and still takes the token.
		if err := checkSession(cctx, saved.Server, saved.Token); err == nil {
			link = fmt.Sprintf("up: %s, token accepted (%d ms)", saved.Server, time.Since(start).Milliseconds())
		} else {
			link += " (" + err.Error() + ")"
		}
	}
	fmt.Fprintf(stdout, "link:         %s\n", link)
	return spoolStatus(stdout, *spool)
}

// spoolStatus shows the state the SCP records in its spool directory.
func spoolStatus(w io.Writer, dir string) error {
	st, err := scp.ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, spoolNoState, dir, dir)
		return nil
	}
	if err != nil {
		return err
	}
	running := spoolStopped
	if st.Running {
		running = spoolRunning
	}
	fmt.Fprintf(w, spoolLine, dir, running, st.Updated.Local().Format("2006-01-02 15:04:05"))
	fmt.Fprintf(w, spoolWaiting, st.Waiting, float64(st.WaitingBytes)/1e6)
	if st.Free >= 0 {
		fmt.Fprintf(w, spoolFree, formatBytes(st.Free), formatBytes(st.MinFree))
	} else {
		fmt.Fprintf(w, spoolFreeUnknown, formatBytes(st.MinFree))
	}
	if st.LowSpace {
		fmt.Fprintf(w, warnLowSpace, formatBytes(st.Free), formatBytes(st.MinFree))
	}
	if st.WriteOutError != "" {
		fmt.Fprintf(w, warnWriteOut, st.WriteOutError)
	}
	if st.Refusing != "" {
		fmt.Fprintf(w, warnRefusing, st.Refusing)
	}
	return nil
}
