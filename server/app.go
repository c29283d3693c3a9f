package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/sanping/sanping/server/api"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/dicomweb"
	"github.com/sanping/sanping/server/org"
	"github.com/sanping/sanping/server/sfu"
	"github.com/sanping/sanping/server/signal"
	"github.com/sanping/sanping/server/store"
	"github.com/sanping/sanping/server/turnserver"
	"github.com/sanping/sanping/server/upload"
	"github.com/sanping/sanping/server/webserver"
	"github.com/sanping/sanping/web"
)

// app is the server's services wired together, and every route it serves.
type app struct {
	auth    *auth.Service
	org     *org.Service
	consult *consult.Service
	trail   *audit.Log
	live    *signal.Service
	turn    *turnserver.Server
	routes  []auth.Route
	closed  sync.Once
}

// close ends live rooms and stops media and TURN.
func (a *app) close() {
	a.closed.Do(func() {
		if a.live != nil {
			a.live.Close()
		}
		if a.turn != nil {
			a.turn.Close()
		}
	})
}

// newApp opens every service on the store's database and lists the routes. Each route is an
// auth.Route: the one authorization check (auth.Service.Check) runs before its handler.
func newApp(ctx context.Context, st *store.Store, cfg Config, log *slog.Logger) (*app, error) {
	db := st.DB()
	trail, err := audit.Open(ctx, db, nil)
	if err != nil {
		return nil, err
	}
	// Institutions first: users and consultations refer to them.
	orgs, err := org.New(ctx, db)
	if err != nil {
		return nil, err
	}
	au, err := auth.New(ctx, db, log)
	if err != nil {
		return nil, err
	}
	au.SetAudit(trail)
	au.SetSecureCookies(cfg.TLSCert != "")
	cons, err := consult.New(ctx, db, trail, st.Dir(), nil)
	if err != nil {
		return nil, err
	}
	cons.SetPasswordCheck(au.VerifyPassword)
	var turn *turnserver.Server
	publicIP := cfg.PublicIP
	if cfg.TURNAddr != "" || cfg.TURNTLSAddr != "" {
		if publicIP == "" {
			publicIP = firstIPv4()
		}
		tc := turnserver.Config{Realm: "sanping", PublicIP: publicIP, UDPAddr: cfg.TURNAddr, TCPAddr: cfg.TURNAddr, Logger: log}
		if cfg.TURNTLSAddr != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				return nil, fmt.Errorf("TURN over TLS needs the server's certificate: %w", err)
			}
			tc.TLSAddr, tc.TLSConfig = cfg.TURNTLSAddr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		if turn, err = turnserver.New(tc); err != nil {
			return nil, fmt.Errorf("starting TURN: %w", err)
		}
	}
	sc := sfu.Config{UDPAddr: cfg.MediaUDP, TCPAddr: cfg.MediaTCP, RecordDir: filepath.Join(st.Dir(), "recordings"), Net: cfg.mediaNet, Logger: log}
	if cfg.PublicIP != "" {
		sc.PublicIPs = []string{cfg.PublicIP}
	}
	live, err := signal.New(ctx, signal.Config{DB: db, Consult: cons, Trail: trail, SFU: sc, TURN: turn, AllowedOrigins: cfg.CORSOrigins,
		FirstImage: st.FirstImage, Logger: log})
	if err != nil {
		if turn != nil {
			turn.Close()
		}
		return nil, err
	}
	cons.SetOnTransition(live.OnTransition)
	dw := dicomweb.New(dicomweb.Config{Store: st, Base: "/dicom-web", PublicURL: cfg.PublicURL, MaxRequestBody: cfg.MaxRequestBody, Logger: log, Audit: trail})
	rest := api.New(api.Config{Auth: au, Org: orgs, Consult: cons, Audit: trail, Logger: log, Live: live, Storage: st,
		RecordingDir: sc.RecordDir})
	routes := []auth.Route{
		{Pattern: "GET /healthz", Action: auth.ActPublic, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "ok\n")
		})},
		{Pattern: "/", Action: auth.ActPublic, Handler: web.Handler()},
	}
	routes = append(routes, rest.Routes()...)
	routes = append(routes, live.Routes()...)
	up, err := upload.New(upload.Config{Store: st, Dir: filepath.Join(st.Dir(), "uploads"), BasePath: "/api/uploads/", PublicURL: cfg.PublicURL, MaxSize: cfg.MaxRequestBody, Audit: trail, Logger: log})
	if err != nil {
		live.Close()
		return nil, err
	}
	routes = append(routes, up.Routes()...)
	routes = append(routes, dw.Routes()...)
	return &app{auth: au, org: orgs, consult: cons, trail: trail, live: live, turn: turn, routes: routes}, nil
}

// handler is everything the server answers, in the order a request meets it: security
// headers, CORS, the access log, then the routes behind the one authorization check.
func (a *app) handler(cfg Config, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	a.auth.Mount(mux, a.routes)
	return webserver.SecurityHeaders(cfg.TLSCert != "", webserver.CORS(cfg.CORSOrigins, webserver.AccessLog(log, mux)))
}

// firstIPv4 is the machine's first non-loopback IPv4 address (TURN's relay address when
// -public-ip is not given), or 127.0.0.1.
func firstIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
