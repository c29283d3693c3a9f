package client

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/scp"
)

// scpUsage is scp's help (a message key).
const scpUsage = `usage: sanping-station scp [-aet SANPING] [-addr :11112] [-dir DIR] [-allow AE1,AE2] [-min-free 1GiB] [-forward]

Receives images from the modality by DICOM C-STORE (and answers C-ECHO) until interrupted.

`

// defaultSpoolDir is scp's -dir and status's -spool unless given.
const defaultSpoolDir = "sanping-spool"

// scpCommand is `sanping-station scp`: the DICOM C-STORE SCP the modality sends to. Every instance is
// on disk (fsync) under DIR/incoming before the modality hears success. (Forwarding to the
// server, with the upload queue, follows.)
func scpCommand(ctx context.Context, p *msg.Printer, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	aet := fs.String("aet", "SANPING", p.Tr("this station's AE title, as configured on the modality (called AE)"))
	addr := fs.String("addr", scp.DefaultAddr, p.Tr("listen address (DICOM port)"))
	dir := fs.String("dir", defaultSpoolDir, p.Tr("spool directory: received instances go to DIR/incoming"))
	var minFree byteSize
	fs.Var(&minFree, "min-free", p.Tr("warn (log, sanping-station status) when DIR's disk has less than `SIZE` free, e.g. 2GiB or 500MB (default 1GiB, or 5%% of a smaller disk)"))
	allow := fs.String("allow", "", p.Tr("comma-separated calling AE titles accepted (the modalities); empty: any"))
	verbose := fs.Bool("v", false, p.Tr("log associations"))
	forward := fs.Bool("forward", false, p.Tr("also upload what arrives to the server (the saved login), as sanping-station watch DIR/incoming does"))
	config := fs.String("config", defaultConfigPath(), p.Tr("the saved login (with -forward)"))
	journal := fs.String("journal", "", p.Tr("upload journal directory (with -forward)"))
	interval := fs.Duration("interval", 2*time.Second, p.Tr("time between scans of DIR/incoming (with -forward)"))
	maxBackoff := fs.Duration("max-backoff", 30*time.Second, p.Tr("longest wait between tries while the server is out of reach (with -forward)"))
	lf := addLocalFlags(fs, p)
	compress := fs.Bool("compress", true, p.Tr("compress losslessly before sending, as upload -compress does (with -forward)"))
	keepSent := fs.Duration("keep-sent", 30*24*time.Hour, p.Tr("remove images from DIR/incoming/.sent this long after the server took them (0: keep; with -forward)"))
	fs.Usage = func() {
		p.Trf(fs.Output(), scpUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("scp: unexpected argument %q", fs.Arg(0))
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
	srv, err := scp.Listen(scp.Config{AETitle: *aet, Addr: *addr, Dir: *dir, AllowedCallers: callers, MinFree: int64(minFree),
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		OnStored: func(s scp.Stored) {
			mu.Lock()
			defer mu.Unlock()
			p.Trf(stdout, "stored %s from %s (%d bytes, %s)\n", s.SOPInstance, s.CallingAE, s.Size, s.TransferSyntax)
		}})
	if err != nil {
		return err
	}
	p.Trf(stdout, "listening on %s as %s; images in %s\n", srv.Addr(), *aet, *dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	forwarding := make(chan error, 1)
	if *forward {
		server, token, err := stationLogin("", "", *config)
		if err != nil {
			srv.Close()
			return err
		}
		// Received instances are on disk before the modality hears success; forwarding runs
		// apart, so a day offline loses nothing: the spool waits, the upload resumes.
		wc := watchConfig(p, server, token, *journal, filepath.Join(*dir, "incoming"), *interval, *maxBackoff, stdout, stderr)
		wc.KeepSent = *keepSent
		wc.NoCompress = !*compress
		wc.Stable = time.Millisecond // files appear whole (renamed into place after fsync)
		if local := startLocal(ctx, p, lf, server, token, []string{filepath.Join(*dir, "incoming", ".sent")}, stdout, stderr); local != nil {
			wc.OnSent = local.Add
		}
		go func() {
			err := watchReporting(ctx, wc, *dir)
			if ctx.Err() != nil {
				err = nil // stopped with the command
			} else {
				cancel() // a station that no longer forwards stops receiving, loudly
			}
			forwarding <- err
		}()
	} else {
		forwarding <- nil
	}
	err = srv.Serve(ctx)
	cancel()
	// The journal is let go before returning: a station started again at once takes it.
	if ferr := <-forwarding; ferr != nil {
		return fmt.Errorf("forwarding: %w", ferr) // explained by the cause
	}
	return err
}

// byteSize is a flag of bytes: a number with an optional unit, decimal (KB, MB, GB, TB) or
// binary (KiB, MiB, GiB, TiB).
type byteSize int64

var byteUnits = []struct {
	name string
	n    float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

func (b *byteSize) Set(s string) error {
	num, unit := strings.TrimSpace(s), 1.0
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(strings.ToLower(num), u.name); ok {
			num, unit = strings.TrimSpace(rest), u.n
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*unit >= 1<<62 {
		return fmt.Errorf("%q is not a size such as 2GiB or 500MB", s)
	}
	*b = byteSize(v * unit)
	return nil
}

func (b byteSize) String() string {
	if b == 0 {
		return ""
	}
	return formatBytes(int64(b))
}

// formatBytes writes n in binary units, as -min-free takes them.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1fTiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
