package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Browser sessions: a random 256-bit secret in an HttpOnly, SameSite=Lax cookie (Secure and
// __Host- prefixed under TLS); the database keeps only its SHA-256. Each session has its own
// CSRF token, which the app sends back in the X-CSRF-Token header on every state-changing
// request (a cross-site form cannot read it).
const sessionSchema = `
CREATE TABLE IF NOT EXISTS sessions (
	id_hash    TEXT PRIMARY KEY,
	user_pk    INTEGER NOT NULL,
	csrf       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	ip         TEXT NOT NULL,
	user_agent TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_pk);
`

// Session timeouts: a clinic PC left signed in locks itself after the idle timeout; nobody
// stays signed in past the absolute one.
const (
	SessionIdle     = 30 * time.Minute
	SessionAbsolute = 12 * time.Hour
	// lastSeen is written at most this often (not on every image request).
	lastSeenEvery = time.Minute
)

// CSRFHeader carries a session's CSRF token on state-changing requests.
const CSRFHeader = "X-CSRF-Token"

// CookieName is the session cookie's name for a server with or without TLS.
func CookieName(secure bool) string {
	if secure {
		return "__Host-sanping_session"
	}
	return "sanping_session"
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Login checks a username and password for a browser sign-in and starts a session: it sets
// the cookie on w and returns the principal and the session's CSRF token. Attempts are
// rate-limited per client address as well as counted per account.
func (s *Service) Login(w http.ResponseWriter, r *http.Request, username, password string) (*Principal, string, error) {
	ip := ClientIP(r)
	if !s.limiter.allow(ip, s.now()) {
		s.auditLogin(r, username, "login.ratelimited", "denied", "session", nil)
		return nil, "", ErrRateLimited
	}
	p, err := s.login(r.Context(), username, password, "session", ip)
	if err != nil {
		s.auditLoginError(r, username, "session", err)
		return nil, "", err
	}
	secret, csrf := randomString(32), randomString(24)
	now := s.now().UnixMilli()
	if _, err := s.db.ExecContext(r.Context(), `INSERT INTO sessions (id_hash, user_pk, csrf, created_at, last_seen, ip, user_agent)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, hashSecret(secret), p.UserID, csrf, now, now, ip, truncate(r.UserAgent(), 512)); err != nil {
		return nil, "", fmt.Errorf("starting session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName(s.secureCookies), Value: secret, Path: "/", HttpOnly: true,
		Secure: s.secureCookies, SameSite: http.SameSiteLaxMode})
	s.auditLogin(r, username, "login", "success", "session", p)
	return p, csrf, nil
}

func (s *Service) auditLoginError(r *http.Request, user, method string, err error) {
	switch {
	case errors.Is(err, ErrThrottledNow):
		s.auditLogin(r, user, "login.lockout", "failure", method, nil)
	case errors.Is(err, ErrThrottled):
		s.auditLogin(r, user, "login.held", "denied", method, nil)
	case errors.Is(err, ErrLocked):
		s.auditLogin(r, user, "login.locked", "denied", method, nil)
	case errors.Is(err, ErrUnauthenticated):
		s.auditLogin(r, user, "login.failed", "failure", method, nil)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Logout ends the request's session and clears the cookie.
func (s *Service) Logout(w http.ResponseWriter, r *http.Request) error {
	c, err := r.Cookie(CookieName(s.secureCookies))
	if err == nil {
		if _, err := s.db.ExecContext(r.Context(), `DELETE FROM sessions WHERE id_hash = ?`, hashSecret(c.Value)); err != nil {
			return fmt.Errorf("ending session: %w", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName(s.secureCookies), Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.secureCookies, SameSite: http.SameSiteLaxMode})
	p, _ := FromContext(r.Context())
	s.record(r.Context(), p.AuditEntry("logout", "user:"+p.Username, "success"))
	return nil
}

// SessionSecret returns the request's session cookie value ("" when none).
func (s *Service) SessionSecret(r *http.Request) string {
	if c, err := r.Cookie(CookieName(s.secureCookies)); err == nil {
		return c.Value
	}
	return ""
}

// CSRFToken returns the CSRF token of the request's session.
func (s *Service) CSRFToken(ctx context.Context, r *http.Request) (string, error) {
	var csrf string
	err := s.db.QueryRowContext(ctx, `SELECT csrf FROM sessions WHERE id_hash = ?`, hashSecret(s.SessionSecret(r))).Scan(&csrf)
	if err != nil {
		return "", ErrUnauthenticated
	}
	return csrf, nil
}

// sessionPrincipal authenticates a session cookie; csrf is the session's CSRF token.
func (s *Service) sessionPrincipal(ctx context.Context, secret string) (p *Principal, csrf string, err error) {
	var user, created, seen int64
	id := hashSecret(secret)
	err = s.db.QueryRowContext(ctx, `SELECT user_pk, csrf, created_at, last_seen FROM sessions WHERE id_hash = ?`, id).
		Scan(&user, &csrf, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", ErrUnauthenticated
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading session: %w", err)
	}
	now := s.now()
	if now.Sub(time.UnixMilli(seen)) > SessionIdle || now.Sub(time.UnixMilli(created)) > SessionAbsolute {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, id); err != nil {
			return nil, "", fmt.Errorf("ending expired session: %w", err)
		}
		return nil, "", fmt.Errorf("%w: the session expired", ErrUnauthenticated)
	}
	if now.Sub(time.UnixMilli(seen)) > lastSeenEvery {
		if _, err := s.db.ExecContext(ctx, `UPDATE sessions SET last_seen = ? WHERE id_hash = ?`, now.UnixMilli(), id); err != nil {
			return nil, "", fmt.Errorf("touching session: %w", err)
		}
		// Expired sessions of everyone are dropped now and then, not on every request.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE last_seen < ? OR created_at < ?`,
			now.Add(-SessionIdle).UnixMilli(), now.Add(-SessionAbsolute).UnixMilli()); err != nil {
			return nil, "", fmt.Errorf("dropping expired sessions: %w", err)
		}
	}
	p, err = s.principal(ctx, user, "session")
	if err != nil {
		return nil, "", err
	}
	return p, csrf, nil
}

func csrfMatches(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
