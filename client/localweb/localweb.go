// Package localweb is the station's local DICOMweb: read-only copies of the studies the
// station received and uploaded, served on the loopback address to the browser app at the
// same clinic, so that the village screen shows a study at once instead of downloading back
// from the county what was just uploaded (docs/architecture.md "Local-first village screens").
//
// Every request but the health check and CORS preflights needs a local read grant from the
// county (Authorization: Bearer spg_...), checked with the county once and cached until it
// expires; a grant reads its one study. Only the county server's origin gets CORS headers,
// and preflights asking for Private Network Access are answered for it.
package localweb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultAddr is where the browser app looks for the station (web/src/viewer/local.ts).
const DefaultAddr = "127.0.0.1:11180"

// Config is the local server's.
type Config struct {
	// Addr to listen on (default DefaultAddr). A non-loopback address is refused unless
	// AllowLAN: the copies are patient data, and the browser reads them on the same PC.
	Addr     string
	AllowLAN bool
	// Server is the county server's base URL (from sanping-station login): its origin is the
	// one CORS allows, and grants are verified there with Token, the station's API token.
	Server, Token string
	// Roots are folders of the station's copies, scanned at start (DIR/.sent of watch,
	// DIR/incoming of scp); Add indexes files as they arrive or are sent.
	Roots  []string
	Logger *slog.Logger
	// Client reaches the county (default: 10 s timeout).
	Client *http.Client
}

// Server is the running local DICOMweb.
type Server struct {
	cfg    Config
	ln     net.Listener
	origin string
	log    *slog.Logger
	index  *index
	grants *grants
	cache  *parsedCache

	readMu sync.Mutex
	reads  map[string]time.Time // user and study -> last read logged
}

// ErrNotLoopback refuses a listen address other machines could reach.
var ErrNotLoopback = errors.New("the local DICOMweb listens on the loopback address only (127.0.0.1, ::1 or localhost); -local-allow-lan allows others")

// Loopback reports whether a listen address reaches only this machine.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Origin is the scheme, host and port of a base URL (what a browser sends as Origin).
func Origin(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("server URL %q: want http(s)://host[:port]", server)
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), nil
}

// Listen binds the address; Serve starts answering.
func Listen(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if !cfg.AllowLAN && !Loopback(cfg.Addr) {
		return nil, fmt.Errorf("%w: %s", ErrNotLoopback, cfg.Addr)
	}
	origin, err := Origin(cfg.Server)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("local DICOMweb: %w", err)
	}
	s := &Server{cfg: cfg, ln: ln, origin: origin, log: cfg.Logger, index: newIndex(), cache: newParsedCache(),
		reads: map[string]time.Time{}}
	s.grants = &grants{server: strings.TrimRight(cfg.Server, "/"), token: cfg.Token, client: cfg.Client, now: time.Now,
		cache: map[[32]byte]grantEntry{}}
	return s, nil
}

// Addr is the address listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Add indexes a file the station now keeps (received, or moved to .sent).
func (s *Server) Add(path string) {
	if _, err := s.index.add(path); err != nil {
		s.log.Debug("local DICOMweb: not indexed", "file", path, "err", err)
	}
}

// Serve indexes the roots and answers until ctx ends, then closes.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		for _, root := range s.cfg.Roots {
			s.index.scan(root)
		}
		s.log.Info("local DICOMweb: index ready", "instances", s.index.count())
	}()
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}

// Handler is the local DICOMweb with its CORS, host and grant checks.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dicom-web/health", s.health)
	const inst = "/dicom-web/studies/{study}/series/{series}/instances/{instance}"
	mux.Handle("GET /dicom-web/studies/{study}/series", s.granted(s.seriesList))
	mux.Handle("GET /dicom-web/studies/{study}/series/{series}/metadata", s.granted(s.seriesMetadata))
	mux.Handle("GET "+inst+"/metadata", s.granted(s.instanceMetadata))
	mux.Handle("GET "+inst+"/frames/{frames}", s.granted(s.frames))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "the station serves only the viewer's DICOMweb reads")
	})
	return s.cors(s.hostCheck(mux))
}

// hostCheck refuses a Host other than a loopback one (unless AllowLAN): a page on another
// site whose name was made to resolve to 127.0.0.1 (DNS rebinding) is not the county's.
func (s *Server) hostCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if _, _, err := net.SplitHostPort(host); err != nil {
			host += ":80"
		}
		if !s.cfg.AllowLAN && !Loopback(host) {
			problem(w, http.StatusMisdirectedRequest, "the station answers only on its loopback address")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cors answers the county's origin alone: CORS headers on its requests, and preflights
// (with Private Network Access, https://wicg.github.io/private-network-access/: Chrome asks
// before a public or county page reads from 127.0.0.1). Other origins get no CORS header, and
// their preflights 403.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		allowed := origin != "" && strings.EqualFold(origin, s.origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network")
			if !allowed {
				problem(w, http.StatusForbidden, "origin not allowed")
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "GET")
			h.Set("Access-Control-Allow-Headers", "Authorization, Accept")
			h.Set("Access-Control-Max-Age", "600")
			if strings.EqualFold(r.Header.Get("Access-Control-Request-Private-Network"), "true") {
				h.Set("Access-Control-Allow-Private-Network", "true")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Content-Type, Content-Length")
		}
		next.ServeHTTP(w, r)
	})
}

// granted requires a grant for the path's study, and logs the read: at Info once per user,
// study and minute (the county audited the grant itself, coalesced alike), every request at
// Debug.
func (s *Server) granted(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, cred, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		cred = strings.TrimSpace(cred)
		if !strings.EqualFold(scheme, "Bearer") || cred == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Sanping station"`)
			problem(w, http.StatusUnauthorized, "a local read grant is required (POST /api/local-grants on the county server)")
			return
		}
		g, err := s.grants.verify(r.Context(), cred)
		switch {
		case errors.Is(err, errGrantUnknown):
			w.Header().Set("WWW-Authenticate", `Bearer realm="Sanping station", error="invalid_token"`)
			problem(w, http.StatusUnauthorized, err.Error())
			return
		case errors.Is(err, errGrantRefused):
			problem(w, http.StatusForbidden, err.Error())
			return
		case err != nil:
			s.log.Warn("local DICOMweb: grant not verified", "err", err)
			problem(w, http.StatusServiceUnavailable, "the county server could not be asked about the grant")
			return
		}
		study := r.PathValue("study")
		if study != g.Study {
			s.log.Warn("local DICOMweb: grant for another study", "user", g.User, "grant_study", g.Study, "study", study)
			problem(w, http.StatusForbidden, "the grant is for another study")
			return
		}
		s.logRead(g.User, study, r.URL.Path)
		h(w, r)
	})
}

func (s *Server) logRead(user, study, path string) {
	key := user + "\x00" + study
	now := time.Now()
	s.readMu.Lock()
	last, seen := s.reads[key]
	if !seen || now.Sub(last) >= time.Minute {
		s.reads[key] = now
	}
	if len(s.reads) > 10000 {
		clear(s.reads)
	}
	s.readMu.Unlock()
	if !seen || now.Sub(last) >= time.Minute {
		s.log.Info("local read", "user", user, "study", study, "path", path)
	} else {
		s.log.Debug("local read", "user", user, "study", study, "path", path)
	}
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, `{"status":"ok","instances":%d}`+"\n", s.index.count())
}
