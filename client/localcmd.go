package client

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"

	"github.com/sanping/sanping/client/localweb"
	"github.com/sanping/sanping/client/msg"
)

// localFlags are the local DICOMweb's flags, shared by watch, scp and serve.
type localFlags struct {
	addr     *string
	allowLAN *bool
}

func addLocalFlags(fs *flag.FlagSet, p *msg.Printer) localFlags {
	return localFlags{
		addr:     fs.String("local-addr", localweb.DefaultAddr, p.Tr("address of the local DICOMweb the clinic's browser reads this station's copies from (empty: off)")),
		allowLAN: fs.Bool("local-allow-lan", false, p.Tr("let the local DICOMweb listen on an address other than loopback")),
	}
}

// startLocal starts the local DICOMweb over roots in the background; it returns nil (and says
// why) when it is off or cannot listen: uploading matters more than the local copy.
func startLocal(ctx context.Context, p *msg.Printer, lf localFlags, server, token string, roots []string, stdout, stderr io.Writer) *localweb.Server {
	if *lf.addr == "" {
		return nil
	}
	srv, err := localweb.Listen(localweb.Config{Addr: *lf.addr, AllowLAN: *lf.allowLAN, Server: server, Token: token, Roots: roots,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		p.Trf(stderr, "local DICOMweb not started: %s\n", err.Error())
		return nil
	}
	p.Trf(stdout, "local DICOMweb on http://%s/dicom-web\n", srv.Addr())
	go srv.Serve(ctx)
	return srv
}

// serveUsage is serve's help (a message key).
const serveUsage = `usage: sanping-station serve [-local-addr 127.0.0.1:11180] DIR...

Serves the DICOM files under the folders read-only to the clinic's browser (local DICOMweb,
with grants the county server checks), as watch and scp -forward do for what they sent. Runs
until interrupted.

`

// serveCommand is `sanping-station serve DIR...`: the local DICOMweb alone, for tests and for
// a folder of copies made otherwise.
func serveCommand(ctx context.Context, p *msg.Printer, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", p.Tr("the Sanping server (default: the one saved by sanping-station login)"))
	token := fs.String("token", "", p.Tr("station token spt_... (default: the one saved by sanping-station login)"))
	config := fs.String("config", defaultConfigPath(), p.Tr("the saved login"))
	lf := addLocalFlags(fs, p)
	fs.Usage = func() {
		p.Trf(fs.Output(), serveUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("serve: at least one DIR")
	}
	if *lf.addr == "" {
		return usagef("serve: -local-addr is needed")
	}
	srv, tok, err := stationLogin(*server, *token, *config)
	if err != nil {
		return err
	}
	for _, d := range fs.Args() {
		if _, err := os.Stat(d); err != nil {
			return err
		}
	}
	ls, err := localweb.Listen(localweb.Config{Addr: *lf.addr, AllowLAN: *lf.allowLAN, Server: srv, Token: tok, Roots: fs.Args(),
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		return err
	}
	p.Trf(stdout, "local DICOMweb on http://%s/dicom-web\n", ls.Addr())
	return ls.Serve(ctx)
}
