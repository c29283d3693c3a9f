package client

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/upload"
)

// stationLogin is the server and token of the flags, else of the saved login.
func stationLogin(server, token, config string) (string, string, error) {
	saved, err := readStationConfig(config)
	if err != nil {
		return "", "", err
	}
	if server == "" {
		server = saved.Server
	}
	if token == "" {
		token = saved.Token
	}
	if server == "" || token == "" {
		return "", "", usagef("no server or token: run sanping-station login first, or give -server and -token")
	}
	srv, err := serverURL(server)
	return srv, token, err
}

// watchUsage is watch's help (a message key).
const watchUsage = `usage: sanping-station watch [-server URL] [-token spt_...] DIR

Uploads files as they appear in DIR (any subfolder) once they stop changing. Stored files
move to DIR/.sent, failed ones to DIR/.failed with a .reason file. Runs until interrupted.

`

// watchCommand is `sanping-station watch DIR`: uploads files as they appear once complete.
func watchCommand(ctx context.Context, p *msg.Printer, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", p.Tr("the Sanping server (default: the one saved by sanping-station login)"))
	token := fs.String("token", "", p.Tr("station token spt_... (default: the one saved by sanping-station login)"))
	config := fs.String("config", defaultConfigPath(), p.Tr("the saved login"))
	journal := fs.String("journal", "", p.Tr("journal and spool directory (default: the user cache directory's sanping/journal)"))
	interval := fs.Duration("interval", 2*time.Second, p.Tr("time between scans of DIR"))
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, p.Tr("longest wait between tries while the server is out of reach"))
	keepSent := fs.Duration("keep-sent", 0, p.Tr("remove files from DIR/.sent this long after the server took them (0: keep)"))
	lf := addLocalFlags(fs, p)
	compress := fs.Bool("compress", true, p.Tr("compress uncompressed images losslessly (JPEG-LS) and other files (zstd) before sending; false: send files as they are"))
	fs.Usage = func() {
		p.Trf(fs.Output(), watchUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("watch: one DIR to watch")
	}
	srv, tok, err := stationLogin(*server, *token, *config)
	if err != nil {
		return err
	}
	p.Trf(stdout, "watching %s\n", fs.Arg(0))
	wc := watchConfig(p, srv, tok, *journal, fs.Arg(0), *interval, *maxBackoff, stdout, stderr)
	wc.KeepSent = *keepSent
	if local := startLocal(ctx, p, lf, srv, tok, []string{filepath.Join(fs.Arg(0), ".sent")}, stdout, stderr); local != nil {
		wc.OnSent = local.Add
	}
	wc.NoCompress = !*compress
	err = watchReporting(ctx, wc, "")
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// watchConfig is the watch of dir; maxBackoff also bounds the first waits between tries.
func watchConfig(p *msg.Printer, server, token, journal, dir string, interval, maxBackoff time.Duration, stdout, stderr io.Writer) upload.WatchConfig {
	return upload.WatchConfig{
		// Everything that arrives is sent, without asking the server first what it has: a
		// modality sends an instance again when it was corrected, under the same SOP Instance
		// UID, and only the server can tell new content (a conflict, kept and reported) from
		// the same (already stored). The check is for `sanping-station upload` of a folder or a CD.
		Config: upload.Config{Server: server, Token: token, JournalDir: journal, SendAll: true,
			MinBackoff: min(250*time.Millisecond, maxBackoff), MaxBackoff: maxBackoff},
		Dir:      dir,
		Interval: interval,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnBatch: func(s *upload.Summary) {
			fmt.Fprintf(stdout, "%s: ", time.Now().Format("15:04:05"))
			p.Trf(stdout, "%d files: %d stored, %d already stored, %d conflicts, %d failed", len(s.Files), s.Stored, s.AlreadyStored, s.Conflicts, s.Failed)
			fmt.Fprintln(stdout)
			for _, f := range s.Problems() {
				fmt.Fprint(stdout, fileLine(p, f))
			}
		},
	}
}
