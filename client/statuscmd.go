package client

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sanping/sanping/client/upload"
)

// statusCommand is `sanping-station status`: the upload queue, the last success and the link.
func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultConfigPath(), "the saved login")
	journal := fs.String("journal", "", "journal directory (default: the user cache directory's sanping/journal)")
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
	return nil
}
