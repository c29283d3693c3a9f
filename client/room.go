package client

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// liveURL is the websocket address of a consultation's live room on a server given by its
// web address (https://host:8080 gives wss://host:8080/api/consultations/ID/live).
func liveURL(server, consultation string) (string, error) {
	id, err := strconv.ParseInt(consultation, 10, 64)
	if err != nil || id <= 0 {
		return "", usagef("consultation ID %q is not a positive number", consultation)
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return "", usagef("server %q is not a URL like https://host:8080", server)
	}
	switch u.Scheme {
	case "https", "wss":
		u.Scheme = "wss"
	case "http", "ws":
		u.Scheme = "ws"
	default:
		return "", usagef("server %q: scheme must be https or http", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/consultations/" + strconv.FormatInt(id, 10) + "/live"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

// credentialHeader authenticates the websocket: a station token (spt_...) as a Bearer token,
// anything of the form name=value as the browser session cookie (e.g. sanping_session=...).
func credentialHeader(credential string) (http.Header, error) {
	h := http.Header{}
	switch {
	case strings.HasPrefix(credential, "spt_"):
		h.Set("Authorization", "Bearer "+credential)
	case strings.Contains(credential, "="):
		h.Set("Cookie", credential)
	default:
		return nil, usagef("a credential is a station token spt_... or a session cookie name=value")
	}
	return h, nil
}

// dialer is the websocket dialer; insecure accepts any certificate (test servers).
func dialer(insecure bool) *websocket.Dialer {
	d := &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 15 * time.Second}
	if insecure {
		d.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with -insecure
	}
	return d
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
