// Package auth knows who is asking. Today: users with argon2id password hashes and HTTP Basic
// on DICOMweb. The accounts issue extends Authenticate (sessions, Bearer tokens) and Authorize
// (roles, institutions, consultation membership); every handler goes through Middleware.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"sanping/server/audit"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sync/singleflight"
)

// Role names.
const (
	RoleAdmin  = "admin"
	RoleDoctor = "doctor"
	RoleClinic = "clinic"
)

// Principal is an authenticated caller.
type Principal struct {
	UserID      int64 // 0 for an API token
	Username    string
	DisplayName string
	Roles       []string
	// InstitutionID is the institution the caller acts for (0: none, e.g. the bootstrap admin).
	InstitutionID   int64
	InstitutionCode string
	Method          string // "basic", "session" or "token"
	TokenID         int64  // the API token used (Method "token")
	// MustChangePassword: an admin reset the password; until it is changed, only the password
	// change, the session and logout are allowed.
	MustChangePassword bool
}

// AuditEntry is an audit entry with the actor's fields filled in; the IP and user agent come
// from the request context (audit.WithOrigin).
func (p *Principal) AuditEntry(action, object, outcome string) audit.Entry {
	e := audit.Entry{Action: action, Object: object, Outcome: outcome}
	if p != nil {
		e.Actor = p.Username
		e.Role = strings.Join(p.Roles, ",")
		e.Institution = p.InstitutionCode
	}
	return e
}

// HasRole reports whether the principal holds role.
func (p *Principal) HasRole(role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// FromContext returns the principal of an authenticated request.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (tests, internal calls).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// Errors with one HTTP meaning each.
var (
	ErrUnauthenticated = errors.New("authentication required")
	ErrForbidden       = errors.New("not allowed")
	// ErrLocked: the account is locked after repeated failed logins; ErrLockedNow: this
	// failure locked it. Both are ErrUnauthenticated to callers that only ask that.
	ErrLocked    = fmt.Errorf("%w: account locked after %d failed logins", ErrUnauthenticated, maxFailedLogins)
	ErrLockedNow = fmt.Errorf("%w: too many failed logins", ErrLocked)
)

// Service authenticates users kept in the shared SQLite database.
type Service struct {
	db  *sql.DB
	log *slog.Logger

	mu    sync.Mutex
	cache map[[32]byte]cachedCredential // verified Basic credentials: argon2id costs ~50 ms a check
	// checks makes concurrent requests with the same credentials share one argon2id check
	// (a PACS peer opening 8 connections at once would otherwise pay it 8 times).
	checks singleflight.Group
	trail  *audit.Log
}

// SetAudit makes logins and failed logins go to the audit trail. Successful checks are
// recorded when the password is verified (not on every request the cache answers); failures
// are coalesced per user and minute, so guessing cannot flood the trail.
func (s *Service) SetAudit(l *audit.Log) { s.trail = l }

func (s *Service) audit(r *http.Request, user, action, outcome string, p *Principal) {
	if s.trail == nil {
		return
	}
	e := audit.Entry{Actor: user, Action: action, Object: "user:" + user, Outcome: outcome, IP: r.RemoteAddr, UserAgent: r.UserAgent(), Detail: "HTTP Basic"}
	if p != nil {
		e.Role = strings.Join(p.Roles, ",")
	}
	if _, err := s.trail.Read(context.WithoutCancel(r.Context()), e); err != nil {
		s.log.Error("audit trail: login entry not written", "user", user, "err", err)
	}
}

type cachedCredential struct {
	p       *Principal
	expires time.Time
}

const credentialCacheTTL = 2 * time.Minute

const schema = `
CREATE TABLE IF NOT EXISTS users (
	pk            INTEGER PRIMARY KEY,
	username      TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	roles         TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	failed_logins INTEGER NOT NULL DEFAULT 0,
	locked_until  INTEGER NOT NULL DEFAULT 0
);`

// Lockout policy: this many failed logins in a row lock an account for lockDuration.
const (
	maxFailedLogins = 5
	lockDuration    = 30 * time.Minute
)

// New prepares the users table in db.
func New(ctx context.Context, db *sql.DB, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.Default()
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("creating users table: %w", err)
	}
	// Databases made before the lockout columns existed get them.
	for _, col := range []string{"failed_logins INTEGER NOT NULL DEFAULT 0", "locked_until INTEGER NOT NULL DEFAULT 0"} {
		if _, err := db.ExecContext(ctx, `ALTER TABLE users ADD COLUMN `+col); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			return nil, fmt.Errorf("adding users column: %w", err)
		}
	}
	return &Service{db: db, log: log, cache: map[[32]byte]cachedCredential{}}, nil
}

// Bootstrap creates user admin on an empty database. The password is the given one, or a
// generated one that is returned so the caller can print it once.
func (s *Service) Bootstrap(ctx context.Context, password string) (generated string, err error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return "", fmt.Errorf("counting users: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	if password == "" {
		b := make([]byte, 15)
		rand.Read(b)
		password = base64.RawURLEncoding.EncodeToString(b)
		generated = password
	}
	if err := s.AddUser(ctx, "admin", password, []string{RoleAdmin}); err != nil {
		return "", err
	}
	return generated, nil
}

// AddUser creates a user.
func (s *Service) AddUser(ctx context.Context, username, password string, roles []string) error {
	if username == "" || password == "" {
		return fmt.Errorf("username and password are required")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (username, password_hash, roles, created_at) VALUES (?, ?, ?, ?)`,
		username, HashPassword(password), strings.Join(roles, ","), time.Now().UnixMilli())
	if err != nil {
		return fmt.Errorf("adding user %s: %w", username, err)
	}
	return nil
}

// argon2id parameters: OWASP's password storage recommendation (19 MiB, 2 passes, 1 lane).
// About 40 ms of one core here; RFC 9106's 64 MiB option would let a burst of logins on a
// 2-core county server exhaust memory and stall uploads. Stored hashes carry their parameters,
// so raising them later keeps old hashes valid.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an encoded argon2id hash (PHC string format).
func HashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// CheckPassword verifies password against an encoded argon2id hash.
func CheckPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// Login checks a username and password.
func (s *Service) Login(ctx context.Context, username, password string) (*Principal, error) {
	var pk, lockedUntil int64
	var failed int
	var hash, roles string
	err := s.db.QueryRowContext(ctx, `SELECT pk, password_hash, roles, failed_logins, locked_until FROM users WHERE username = ?`,
		username).Scan(&pk, &hash, &roles, &failed, &lockedUntil)
	if errors.Is(err, sql.ErrNoRows) {
		CheckPassword(HashPassword("timing"), password) // same work whether or not the user exists
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("looking up user: %w", err)
	}
	now := time.Now()
	if lockedUntil > now.UnixMilli() {
		return nil, ErrLocked
	}
	if !CheckPassword(hash, password) {
		// The count and the lock are one statement, so concurrent guesses cannot slip past it.
		var failed int
		// After an expired lock the count starts again.
		const next = `CASE WHEN locked_until > 0 AND locked_until <= :now THEN 1 ELSE failed_logins + 1 END`
		err := s.db.QueryRowContext(ctx, `UPDATE users SET failed_logins = `+next+`,
			locked_until = CASE WHEN `+next+` >= :max THEN :until ELSE 0 END
			WHERE pk = :pk RETURNING failed_logins`,
			sql.Named("now", now.UnixMilli()), sql.Named("max", maxFailedLogins),
			sql.Named("until", now.Add(lockDuration).UnixMilli()), sql.Named("pk", pk)).Scan(&failed)
		if err != nil {
			return nil, fmt.Errorf("counting failed login: %w", err)
		}
		if failed >= maxFailedLogins {
			s.forget(username)
			return nil, ErrLockedNow
		}
		return nil, ErrUnauthenticated
	}
	if failed > 0 || lockedUntil > 0 {
		if _, err := s.db.ExecContext(ctx, `UPDATE users SET failed_logins = 0, locked_until = 0 WHERE pk = ?`, pk); err != nil {
			return nil, fmt.Errorf("resetting failed logins: %w", err)
		}
	}
	return &Principal{UserID: pk, Username: username, Roles: strings.Split(roles, ","), Method: "basic"}, nil
}

// Unlock clears a lockout (admins; the CLI comes with the accounts issue).
func (s *Service) Unlock(ctx context.Context, username string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET failed_logins = 0, locked_until = 0 WHERE username = ?`, username)
	if err != nil {
		return fmt.Errorf("unlocking %s: %w", username, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("unlocking %s: no such user", username)
	}
	return nil
}

// User is an account as the admin CLI lists it.
type User struct {
	Username    string
	Roles       []string
	LockedUntil time.Time // zero when not locked
	Failed      int
}

// Users lists the accounts.
func (s *Service) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT username, roles, locked_until, failed_logins FROM users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var roles string
		var locked int64
		if err := rows.Scan(&u.Username, &roles, &locked, &u.Failed); err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		u.Roles = strings.Split(roles, ",")
		if locked > time.Now().UnixMilli() {
			u.LockedUntil = time.UnixMilli(locked).UTC()
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetPassword replaces a user's password and clears a lockout.
func (s *Service) SetPassword(ctx context.Context, username, password string) error {
	if password == "" {
		return fmt.Errorf("a password is required")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = 0 WHERE username = ?`,
		HashPassword(password), username)
	if err != nil {
		return fmt.Errorf("setting the password of %s: %w", username, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("setting the password of %s: no such user", username)
	}
	s.forget(username)
	return nil
}

// Lock locks an account until an admin unlocks it.
func (s *Service) Lock(ctx context.Context, username string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET locked_until = ? WHERE username = ?`, int64(math.MaxInt64), username)
	if err != nil {
		return fmt.Errorf("locking %s: %w", username, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("locking %s: no such user", username)
	}
	s.forget(username)
	return nil
}

// forget drops a user's cached credentials (after a lockout).
func (s *Service) forget(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.cache {
		if c.p.Username == username {
			delete(s.cache, k)
		}
	}
}

// Authenticate finds the principal of a request (HTTP Basic for now).
func (s *Service) Authenticate(r *http.Request) (*Principal, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return nil, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	now := time.Now()
	s.mu.Lock()
	c, hit := s.cache[key]
	s.mu.Unlock()
	if hit && now.Before(c.expires) {
		return c.p, nil
	}
	v, err, _ := s.checks.Do(string(key[:]), func() (any, error) {
		p, err := s.Login(context.WithoutCancel(r.Context()), user, pass)
		switch {
		case errors.Is(err, ErrLockedNow):
			s.audit(r, user, "login.lockout", "failure", nil)
		case errors.Is(err, ErrLocked):
			s.audit(r, user, "login.locked", "denied", nil)
		case errors.Is(err, ErrUnauthenticated):
			s.audit(r, user, "login.failed", "failure", nil)
		}
		if err != nil {
			return nil, err
		}
		s.audit(r, user, "login", "success", p)
		s.mu.Lock()
		if len(s.cache) > 10000 {
			clear(s.cache)
		}
		s.cache[key] = cachedCredential{p: p, expires: time.Now().Add(credentialCacheTTL)}
		s.mu.Unlock()
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Principal), nil
}

// Authorize is the one authorization check. Until roles and institutions land, only admins
// reach patient data.
func (s *Service) Authorize(p *Principal, r *http.Request) error {
	if p.HasRole(RoleAdmin) {
		return nil
	}
	return ErrForbidden
}

// Middleware authenticates and authorizes every request before next sees it.
func (s *Service) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.Authenticate(r)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				s.log.Error("authentication failed", "err", err)
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			w.Header().Set("WWW-Authenticate", `Basic realm="Sanping", charset="UTF-8"`)
			writeProblem(w, http.StatusUnauthorized, "authentication required")
			return
		}
		if err := s.Authorize(p, r); err != nil {
			writeProblem(w, http.StatusForbidden, "not allowed")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"about:blank","title":%q,"status":%d,"detail":%q}`, http.StatusText(status), status, detail)
}
