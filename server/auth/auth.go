// Package auth knows who is asking and decides what they may do: users (argon2id), browser
// sessions with CSRF tokens, API tokens for stations and scripts, HTTP Basic for DICOMweb peers,
// and the one authorization check every route passes (policy.go, guard.go).
package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sanping/sanping/server/audit"

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

// LogName names the caller in the access log: "token:ID" for an API token, else the user
// name. Never a secret.
func (p *Principal) LogName() string {
	if p.Method == "token" {
		return fmt.Sprintf("token:%d", p.TokenID)
	}
	return p.Username
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
	// ErrLocked: an administrator locked the account (told only to the right password).
	// ErrThrottled: this name from this source failed too often and is held back for a
	// while, whether or not the account exists; ErrThrottledNow: this failure did it. All are
	// ErrUnauthenticated to callers that only ask that.
	ErrLocked       = fmt.Errorf("%w: the account is locked; an administrator can unlock it", ErrUnauthenticated)
	ErrThrottled    = fmt.Errorf("%w: too many failed sign-ins for this account from this address; try again in %d minutes", ErrUnauthenticated, int(lockDuration/time.Minute))
	ErrThrottledNow = fmt.Errorf("%w (this attempt)", ErrThrottled)
	// ErrHidden: the object does not exist for this caller (answered 404, never 403, so
	// another institution's patient data is not confirmed to exist).
	ErrHidden   = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("conflict")
	// ErrPasswordChange: an admin reset the password; the user must choose a new one first.
	ErrPasswordChange = fmt.Errorf("%w: the password must be changed first", ErrForbidden)
	ErrCSRF           = fmt.Errorf("%w: missing or wrong CSRF token", ErrForbidden)
	ErrRateLimited    = errors.New("too many login attempts from this address; try again later")
)

// Service authenticates users kept in the shared SQLite database and holds the one
// authorization check (policy.go).
type Service struct {
	db  *sql.DB
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedCredential // verified Basic credentials: argon2id costs ~50 ms a check
	// checks makes concurrent requests with the same credentials share one argon2id check
	// (a PACS peer opening 8 connections at once would otherwise pay it 8 times).
	checks singleflight.Group
	trail  *audit.Log
	// limiter bounds password attempts per client IP (accounts have their own lockout).
	limiter *ipLimiter
	// failures holds back a name from a source after repeated failures.
	failures *failureLock
	// secureCookies marks session cookies Secure (set when the server runs TLS).
	secureCookies bool
	// dummyHash is checked against for an unknown username, so a login costs the same whether
	// or not the account exists; made on the first such login, not at start (argon2id, ~40 ms).
	dummyOnce sync.Once
	dummy     string
	// passwordChecks counts argon2id verifications (what the cache and singleflight save).
	passwordChecks atomic.Int64
}

// dummyHash is the hash an unknown username's password is checked against.
func (s *Service) dummyHash() string {
	s.dummyOnce.Do(func() { s.dummy = HashPassword("timing") })
	return s.dummy
}

// SetAudit makes logins and failed logins go to the audit trail. Successful checks are
// recorded when the password is verified (not on every request the cache answers); failures
// are coalesced per user and minute, so guessing cannot flood the trail.
func (s *Service) SetAudit(l *audit.Log) { s.trail = l }

// SetSecureCookies marks session cookies Secure: the server runs TLS.
func (s *Service) SetSecureCookies(on bool) { s.secureCookies = on }

// Trail returns the audit trail (nil when none is set).
func (s *Service) Trail() *audit.Log { return s.trail }

// record appends an audit entry; failures are logged (the caller's action has happened).
func (s *Service) record(ctx context.Context, e audit.Entry) {
	if s.trail == nil {
		return
	}
	if _, err := s.trail.Append(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("audit trail: entry not written", "action", e.Action, "object", e.Object, "err", err)
	}
}

// recordRead is record coalesced per actor, action and object per minute (failed logins).
func (s *Service) recordRead(ctx context.Context, e audit.Entry) {
	if s.trail == nil {
		return
	}
	if _, err := s.trail.Read(context.WithoutCancel(ctx), e); err != nil {
		s.log.Error("audit trail: entry not written", "action", e.Action, "object", e.Object, "err", err)
	}
}

func (s *Service) auditLogin(r *http.Request, user, action, outcome, method string, p *Principal) {
	e := p.AuditEntry(action, "user:"+user, outcome)
	e.Actor, e.Detail = user, method
	e.IP, e.UserAgent = ClientIP(r), r.UserAgent()
	if outcome == "success" {
		s.record(r.Context(), e)
	} else {
		s.recordRead(r.Context(), e)
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

// Columns added since the first release; databases made before get them on open.
var userColumns = []string{
	"failed_logins INTEGER NOT NULL DEFAULT 0",
	"locked_until INTEGER NOT NULL DEFAULT 0",
	"display_name TEXT NOT NULL DEFAULT ''",
	"phone TEXT NOT NULL DEFAULT ''",
	"institution_id INTEGER NOT NULL DEFAULT 0",
	"department_id INTEGER NOT NULL DEFAULT 0",
	"title TEXT NOT NULL DEFAULT ''",
	"specialty TEXT NOT NULL DEFAULT ''",
	"practice_years INTEGER NOT NULL DEFAULT 0",
	"must_change_password INTEGER NOT NULL DEFAULT 0",
	"updated_at INTEGER NOT NULL DEFAULT 0",
}

// Failed sign-ins: this many of one name from one source within lockDuration hold that
// combination back for lockDuration (failureLock).
const (
	maxFailedLogins = 5
	lockDuration    = 30 * time.Minute
)

// New prepares the users, sessions, token and local grant tables in db.
func New(ctx context.Context, db *sql.DB, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.Default()
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("creating users table: %w", err)
	}
	for _, col := range userColumns {
		if _, err := db.ExecContext(ctx, `ALTER TABLE users ADD COLUMN `+col); err != nil && !strings.Contains(err.Error(), "duplicate column") {
			return nil, fmt.Errorf("adding users column: %w", err)
		}
	}
	if _, err := db.ExecContext(ctx, sessionSchema+tokenSchema+stationReportSchema+localGrantSchema); err != nil {
		return nil, fmt.Errorf("creating session, token, station report and local grant tables: %w", err)
	}
	return &Service{db: db, log: log, now: time.Now, cache: map[[32]byte]cachedCredential{}, limiter: newIPLimiter(), failures: newFailureLock()}, nil
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
		password = randomString(15)
		generated = password
	}
	if err := checkPasswordPolicy(password); err != nil {
		return "", fmt.Errorf("the first admin's password (SANPING_ADMIN_PASSWORD): %w", err)
	}
	u, err := s.AddUser(ctx, NewUser{Username: "admin", DisplayName: "系统管理员", Roles: []string{RoleAdmin}}, password)
	if err != nil {
		return "", err
	}
	// Whether printed to a terminal or set in an environment file, the first password has been
	// seen by more than its owner: it must be changed at the first login.
	if _, err := s.db.ExecContext(ctx, `UPDATE users SET must_change_password = 1 WHERE pk = ?`, u.ID); err != nil {
		return "", fmt.Errorf("marking the first admin's password temporary: %w", err)
	}
	return generated, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
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
