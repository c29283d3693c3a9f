// Package server is Sanping's server, built as the sanping command (cmd/sanping): with no
// subcommand it serves the whole product (DICOMweb store, browser app) from one data directory.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/transport/v5"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/lossless"
	"github.com/sanping/sanping/server/store"
)

// Main runs the sanping command with the process's arguments and exits.
func Main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, log); err != nil {
		fmt.Fprintln(os.Stderr, "sanping:", err)
		os.Exit(1)
	}
}

// Config is what serve needs, from flags and environment.
type Config struct {
	Addr            string
	DataDir         string
	TLSCert, TLSKey string
	MaxRequestBody  int64
	AdminPassword   string
	CORSOrigins     []string
	// PublicURL is where clients reach the server ("https://host[:port]"); when set, URLs in
	// answers (upload Locations, DICOMweb RetrieveURL and BulkDataURI) are made from it
	// instead of the request's Host header.
	PublicURL string
	// Live media: one UDP port and one TCP port (ICE-TCP) for all participants; "" picks
	// ephemeral ports (tests). PublicIP is advertised to clients (the server's address as the
	// clinics reach it, when it sits behind 1:1 NAT).
	MediaUDP, MediaTCP string
	PublicIP           string
	// TURN on UDP and TCP (TURNAddr, e.g. ":3478") and over TLS (TURNTLSAddr, e.g. ":443",
	// with the server's certificate), for clinics behind firewalls; "" = off.
	TURNAddr, TURNTLSAddr string
	// mediaNet replaces the network of live media in tests (a pion vnet).
	mediaNet transport.Net
	// started, in tests, is handed the running services before ready is told the address,
	// so a test drives the very server serve() runs, through its whole handler chain.
	started func(*app, *store.Store)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer, log *slog.Logger) error {
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if len(args) > 1 && args[0] == "audit" && args[1] == "verify" {
		return auditVerify(ctx, args[2:], stdout)
	}
	if len(args) > 0 {
		switch args[0] {
		case "user":
			return userCommand(ctx, args[1:], stdin, stdout)
		case "site":
			return siteCommand(ctx, args[1:], stdout)
		case "token":
			return tokenCommand(ctx, args[1:], stdout)
		}
	}
	fl := flag.NewFlagSet("server", flag.ContinueOnError)
	var cfg Config
	fl.StringVar(&cfg.Addr, "addr", envOr("SANPING_ADDR", ":8080"), "listen address (env SANPING_ADDR)")
	fl.StringVar(&cfg.DataDir, "data", envOr("SANPING_DATA", "./data"), "data directory: index and images (env SANPING_DATA)")
	fl.StringVar(&cfg.TLSCert, "tls-cert", os.Getenv("SANPING_TLS_CERT"), "TLS certificate file (PEM); with -tls-key serves HTTPS with HSTS")
	fl.StringVar(&cfg.TLSKey, "tls-key", os.Getenv("SANPING_TLS_KEY"), "TLS private key file (PEM)")
	fl.Int64Var(&cfg.MaxRequestBody, "max-body", 8<<30, "largest accepted upload request body in bytes")
	corsOrigins := fl.String("cors-origins", os.Getenv("SANPING_CORS_ORIGINS"), "comma-separated origins (scheme://host[:port]) of browser viewers allowed to call the API, e.g. an OHIF deployment")
	fl.StringVar(&cfg.PublicURL, "public-url", os.Getenv("SANPING_PUBLIC_URL"), "URL clients reach this server at, e.g. https://pacs.dahua.example (env SANPING_PUBLIC_URL); URLs in answers are made from it, not from the Host header")
	cpuProfile := fl.String("cpuprofile", "", "write a CPU profile to this file until shutdown (for benchmarks)")
	fl.StringVar(&cfg.MediaUDP, "media-udp", envOr("SANPING_MEDIA_UDP", ":8080"), "UDP address for all live media (ICE UDP mux)")
	fl.StringVar(&cfg.MediaTCP, "media-tcp", envOr("SANPING_MEDIA_TCP", ":8081"), "TCP address for live media over ICE-TCP (networks that block UDP); empty: off")
	fl.StringVar(&cfg.PublicIP, "public-ip", os.Getenv("SANPING_PUBLIC_IP"), "IP address clients reach this server at, advertised for media and TURN (behind 1:1 NAT)")
	fl.StringVar(&cfg.TURNAddr, "turn", envOr("SANPING_TURN", ":3478"), "TURN server address (UDP and TCP); empty: off")
	fl.StringVar(&cfg.TURNTLSAddr, "turn-tls", os.Getenv("SANPING_TURN_TLS"), "TURN over TLS address, e.g. :443 (needs -tls-cert); for networks that allow only 443")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unknown subcommand %q", fl.Arg(0))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("-public-url %q: want scheme://host[:port], e.g. https://pacs.dahua.example", cfg.PublicURL)
		}
		cfg.PublicURL = u.Scheme + "://" + u.Host
	}
	cfg.AdminPassword = os.Getenv("SANPING_ADMIN_PASSWORD")
	if *corsOrigins != "" {
		cfg.CORSOrigins = strings.Split(*corsOrigins, ",")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("creating CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting CPU profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	return serve(ctx, cfg, stdout, log, nil)
}

// serve runs until ctx ends, then shuts down gracefully: requests in flight finish (an upload
// being stored completes or is not acknowledged), then the store closes cleanly.
// ready, if not nil, receives the bound address once /healthz answers.
func serve(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger, ready chan<- string) error {
	st, err := store.Open(ctx, store.Config{Dir: cfg.DataDir, Logger: log, SameInstance: lossless.SameInstance})
	if err != nil {
		return err
	}
	defer st.Close()
	tlsOn := cfg.TLSCert != ""
	app, err := newApp(ctx, st, cfg, log)
	if err != nil {
		return err
	}
	defer app.close()
	// The chain's tail is checked on every start; a broken chain is reported loudly but does not
	// stop the county's images from being served (`sanping audit verify` checks it all).
	if err := app.trail.VerifyTail(ctx, 1000); err != nil {
		log.Error("AUDIT TRAIL BROKEN: entries were changed or removed", "err", err)
	}
	generated, err := app.auth.Bootstrap(ctx, cfg.AdminPassword)
	if err != nil {
		return err
	}
	if generated != "" {
		fmt.Fprintf(stdout, "Created user admin with password: %s\n(shown once; set SANPING_ADMIN_PASSWORD to choose it)\n", generated)
	}
	srv := &http.Server{
		Handler:           app.handler(cfg, log),
		ReadHeaderTimeout: 20 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	log.Info("serving", "addr", ln.Addr().String(), "data", cfg.DataDir, "tls", tlsOn)
	errc := make(chan error, 1)
	go func() {
		if tlsOn {
			errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	if cfg.started != nil {
		cfg.started(app, st)
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not finish cleanly", "err", err)
	}
	// Live rooms end (participants get bye; their websockets are not tracked by Shutdown),
	// their last events are written, then the store closes.
	app.close()
	if err := st.Close(); err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	log.Info("stopped")
	return nil
}

// auditVerify walks the whole audit chain of a data directory: exit status 0 when it holds,
// an error naming the first changed or missing entry otherwise.
func auditVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fl := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dataDir := fl.String("data", envOr("SANPING_DATA", "./data"), "data directory")
	pinned := fl.String("head", "", "SEQ:HASH printed by an earlier verify and kept elsewhere: also check that entry SEQ still has HASH, which proves the trail up to it was not rewritten")
	if err := fl.Parse(args); err != nil {
		return err
	}
	// Verifying never creates: a mistyped -data must not report an empty trail as holding.
	if _, err := os.Stat(filepath.Join(*dataDir, "index.db")); err != nil {
		return fmt.Errorf("no Sanping index in %s: %w", *dataDir, err)
	}
	db, err := store.OpenDB(filepath.Join(*dataDir, "index.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	trail, err := audit.Open(ctx, db, nil)
	if err != nil {
		return err
	}
	if err := trail.Verify(ctx); err != nil {
		return fmt.Errorf("audit trail does not hold: %w", err)
	}
	if *pinned != "" {
		// The chain only proves the file agrees with itself: someone able to write it could
		// re-hash everything after a change. A head recorded elsewhere (printed, mailed to the
		// county health bureau) pins the past.
		seqText, want, ok := strings.Cut(*pinned, ":")
		seq, err := strconv.ParseInt(seqText, 10, 64)
		if !ok || err != nil || seq < 1 {
			return fmt.Errorf("-head wants SEQ:HASH as printed by audit verify")
		}
		entries, err := trail.List(ctx, audit.Filter{Offset: int(seq - 1), Limit: 1})
		if err != nil {
			return err
		}
		if len(entries) != 1 || entries[0].Seq != seq {
			return fmt.Errorf("audit trail does not hold: entry %d, recorded elsewhere, is missing", seq)
		}
		if entries[0].Hash != want {
			return fmt.Errorf("audit trail does not hold: entry %d has hash %s, but %s was recorded: the trail was rewritten", seq, entries[0].Hash, want)
		}
	}
	seq, hash, err := trail.Head(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit trail holds: %d entries, last hash %s\nkeep this head elsewhere and check it later with: audit verify -head %d:%s\n", seq, hash, seq, hash)
	return nil
}
