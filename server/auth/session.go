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

// SessionActive: a session seen within this long counts as someone signed in now (last_seen is
// written at most once a minute, and idle sessions end at SessionIdle).
const SessionActive = 15 * time.Minute

// ActiveSession is a signed-in browser session as admins see it: never its secret nor the hash
// the database keys it by. ID is a hash of that hash, enough to name it for EndSession.
type ActiveSession struct {
	ID            string    `json:"id"`
	UserID        int64     `json:"userId"`
	Username      string    `json:"username"`
	DisplayName   string    `json:"displayName"`
	Roles         []string  `json:"roles"`
	InstitutionID int64     `json:"institutionId,omitempty"`
	IP            string    `json:"ip"`
	UserAgent     string    `json:"userAgent"`
	CreatedAt     time.Time `json:"createdAt"`
	LastSeen      time.Time `json:"lastSeen"`
	// Current: the session of the request that asked.
	Current bool `json:"current"`
}

// sessionRef names a session (by its id_hash) to admins: 64 bits of a hash of the hash, which
// neither is the cookie nor leads to it.
func sessionRef(idHash string) string {
	sum := sha256.Sum256([]byte("sanping-session-ref\x00" + idHash))
	return hex.EncodeToString(sum[:8])
}

// ActiveSessions lists the sessions seen within SessionActive and not past their absolute
// limit, most recently seen first; current is the caller's session secret ("" for none).
func (s *Service) ActiveSessions(ctx context.Context, current string) ([]ActiveSession, error) {
	list, _, err := s.activeSessions(ctx, current)
	return list, err
}

// activeSessions is ActiveSessions and each one's id_hash.
func (s *Service) activeSessions(ctx context.Context, current string) ([]ActiveSession, []string, error) {
	now := s.now()
	rows, err := s.db.QueryContext(ctx, `SELECT s.id_hash, s.user_pk, u.username, u.display_name, u.roles, u.institution_id,
		s.ip, s.user_agent, s.created_at, s.last_seen
		FROM sessions s JOIN users u ON u.pk = s.user_pk
		WHERE s.last_seen >= ? AND s.created_at >= ? ORDER BY s.last_seen DESC, s.created_at DESC`,
		now.Add(-SessionActive).UnixMilli(), now.Add(-SessionAbsolute).UnixMilli())
	if err != nil {
		return nil, nil, fmt.Errorf("listing sessions: %w", err)
	}
	defer rows.Close()
	mine := ""
	if current != "" {
		mine = hashSecret(current)
	}
	out, hashes := []ActiveSession{}, []string{}
	for rows.Next() {
		var a ActiveSession
		var idHash, roles string
		var created, seen int64
		if err := rows.Scan(&idHash, &a.UserID, &a.Username, &a.DisplayName, &roles, &a.InstitutionID,
			&a.IP, &a.UserAgent, &created, &seen); err != nil {
			return nil, nil, fmt.Errorf("listing sessions: %w", err)
		}
		a.ID, a.Roles, a.Current = sessionRef(idHash), splitRoles(roles), idHash == mine
		a.CreatedAt, a.LastSeen = time.UnixMilli(created).UTC(), time.UnixMilli(seen).UTC()
		out, hashes = append(out, a), append(hashes, idHash)
	}
	return out, hashes, rows.Err()
}

// ErrOwnSession: an admin tried to end their own session through the list (logout does that).
var ErrOwnSession = fmt.Errorf("%w: this is your own session; sign out instead", ErrConflict)

// EndSession ends the active session named id (ActiveSession.ID) at once: its next request is
// answered 401. current is the caller's session secret, which cannot be ended this way.
func (s *Service) EndSession(ctx context.Context, id, current string) (*ActiveSession, error) {
	list, hashes, err := s.activeSessions(ctx, current)
	if err != nil {
		return nil, err
	}
	for i, a := range list {
		if a.ID != id {
			continue
		}
		if a.Current {
			return nil, ErrOwnSession
		}
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, hashes[i]); err != nil {
			return nil, fmt.Errorf("ending session: %w", err)
		}
		return &a, nil
	}
	return nil, fmt.Errorf("session %s: %w", id, ErrHidden)
}
