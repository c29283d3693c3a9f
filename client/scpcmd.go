package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"sanping/client/scp"
)

// scpCommand is `client scp`: the DICOM C-STORE SCP the modality sends to. Every instance is
// on disk (fsync) under DIR/incoming before the modality hears success. (Forwarding to the
// server, with the upload queue, follows.)
func scpCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	aet := fs.String("aet", "SANPING", "this station's AE title, as configured on the modality (called AE)")
	addr := fs.String("addr", scp.DefaultAddr, "listen address (DICOM port)")
	dir := fs.String("dir", "sanping-spool", "spool directory: received instances go to DIR/incoming")
	allow := fs.String("allow", "", "comma-separated calling AE titles accepted (the modalities); empty: any")
	verbose := fs.Bool("v", false, "log associations")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: client scp [-aet SANPING] [-addr :11112] [-dir DIR] [-allow AE1,AE2]\n\n"+
			"Receives images from the modality by DICOM C-STORE (and answers C-ECHO) until interrupted.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("scp: unexpected argument %q", fs.Arg(0))}
	}
	var callers []string
	for _, a := range strings.Split(*allow, ",") {
		if a = strings.TrimSpace(a); a != "" {
			callers = append(callers, a)
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	var mu sync.Mutex
	srv, err := scp.Listen(scp.Config{AETitle: *aet, Addr: *addr, Dir: *dir, AllowedCallers: callers,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		OnStored: func(s scp.Stored) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(stdout, "stored %s from %s (%d bytes, %s)\n", s.SOPInstance, s.CallingAE, s.Size, s.TransferSyntax)
		}})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s as %s; instances in %s\n", srv.Addr(), *aet, *dir)
	return srv.Serve(ctx)
}
