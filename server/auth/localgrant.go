package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Local read grants: a signed-in user who may read a study gets a short-lived opaque token
// that the village station's local DICOMweb accepts for that study alone (the browser's
// session cookie is HttpOnly and never reaches 127.0.0.1). The station checks a grant with the
// county (VerifyLocalGrant) using its own API token. Stored as SHA-256, like tokens.
const localGrantSchema = `
CREATE TABLE IF NOT EXISTS local_grants (
	token_hash TEXT PRIMARY KEY,
	user_pk    INTEGER NOT NULL,
	username   TEXT NOT NULL,
	study_uid  TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS local_grants_expiry ON local_grants(expires_at);
`

// LocalGrantTTL is how long a local read grant lasts: long enough for a study's opening and
// its background fetch, short enough that a copied grant is soon worthless.
const LocalGrantTTL = 10 * time.Minute

// localGrantPrefix marks grants, so that they are told from API tokens at a glance.
const localGrantPrefix = "spg_"

// ErrGrantUnknown: the grant does not exist or has expired.
var ErrGrantUnknown = errors.New("unknown or expired local read grant")

// LocalGrant is a verified grant: who may read which study until when.
type LocalGrant struct {
	User      string    `json:"user"`
	Study     string    `json:"study"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// IssueLocalGrant makes a grant for p to read study; the caller has checked ActStudyRead.
func (s *Service) IssueLocalGrant(ctx context.Context, p *Principal, study string) (token string, expires time.Time, err error) {
	now := s.now()
	expires = now.Add(LocalGrantTTL)
	token = localGrantPrefix + randomString(32)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM local_grants WHERE expires_at < ?`, now.UnixMilli()); err != nil {
		return "", time.Time{}, fmt.Errorf("local grants: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO local_grants (token_hash, user_pk, username, study_uid, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?)`, hashSecret(token), p.UserID, p.Username, study, now.UnixMilli(), expires.UnixMilli()); err != nil {
		return "", time.Time{}, fmt.Errorf("local grants: %w", err)
	}
	return token, expires, nil
}

// VerifyLocalGrant returns the grant named by token, or ErrGrantUnknown.
func (s *Service) VerifyLocalGrant(ctx context.Context, token string) (*LocalGrant, error) {
	if !strings.HasPrefix(token, localGrantPrefix) {
		return nil, ErrGrantUnknown
	}
	var g LocalGrant
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT username, study_uid, expires_at FROM local_grants WHERE token_hash = ?`,
		hashSecret(token)).Scan(&g.User, &g.Study, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrGrantUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("local grants: %w", err)
	}
	g.ExpiresAt = time.UnixMilli(expires).UTC()
	if !s.now().Before(g.ExpiresAt) {
		return nil, ErrGrantUnknown
	}
	return &g, nil
}
