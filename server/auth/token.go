package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// API tokens (Bearer) for stations and scripts: created by admins, scoped to one institution
// and one role, revocable, stored as SHA-256 (they are 256-bit random, so a slow hash adds
// nothing), with the last time each was used.
const tokenSchema = `
CREATE TABLE IF NOT EXISTS api_tokens (
	id             INTEGER PRIMARY KEY,
	name           TEXT NOT NULL,
	token_hash     TEXT NOT NULL UNIQUE,
	institution_id INTEGER NOT NULL,
	role           TEXT NOT NULL,
	created_by     TEXT NOT NULL,
	created_at     INTEGER NOT NULL,
	last_used_at   INTEGER NOT NULL DEFAULT 0,
	revoked_at     INTEGER NOT NULL DEFAULT 0
) STRICT;
`

// tokenPrefix marks Sanping tokens, so secret scanners and people recognise them.
const tokenPrefix = "spt_"

// Token is an API token as admins see it (never its secret, except once on creation).
type Token struct {
	ID            int64     `json:"id"`
	Name          string    `json:"name"`
	InstitutionID int64     `json:"institutionId"`
	Role          string    `json:"role"`
	CreatedBy     string    `json:"createdBy"`
	CreatedAt     time.Time `json:"createdAt"`
	LastUsedAt    time.Time `json:"lastUsedAt,omitzero"`
	RevokedAt     time.Time `json:"revokedAt,omitzero"`
	// LastUpload is the token's last upload in the audit trail (filled by the API; zero: none).
	LastUpload time.Time `json:"lastUpload,omitzero"`
	// Status is the station's last report of itself (nil: none).
	Status *StationReport `json:"status,omitempty"`
}

// TokenRoles are the roles a token may carry: admin work needs a person, not a script.
var TokenRoles = []string{RoleClinic, RoleDoctor}

// CreateToken makes a token and returns its secret, shown once.
func (s *Service) CreateToken(ctx context.Context, name string, institutionID int64, role, createdBy string) (*Token, string, error) {
	name, err := oneLine("name", name, 100, true)
	if err != nil {
		return nil, "", err
	}
	if !slices.Contains(TokenRoles, role) {
		return nil, "", fmt.Errorf("%w: a token's role is clinic or doctor", ErrInvalid)
	}
	if institutionID == 0 {
		return nil, "", fmt.Errorf("%w: a token is scoped to an institution (institutionId)", ErrInvalid)
	}
	if err := s.checkInstitution(ctx, institutionID, 0); err != nil {
		return nil, "", err
	}
	secret := tokenPrefix + randomString(32)
	now := s.now().UnixMilli()
	var id int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO api_tokens (name, token_hash, institution_id, role, created_by, created_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`, name, hashSecret(secret), institutionID, role, createdBy, now).Scan(&id)
	if err != nil {
		return nil, "", fmt.Errorf("creating token: %w", err)
	}
	t, err := s.Token(ctx, id)
	return t, secret, err
}

const tokenCols = `id, name, institution_id, role, created_by, created_at, last_used_at, revoked_at`

func scanToken(sc interface{ Scan(...any) error }) (*Token, error) {
	var t Token
	var created, used, revoked int64
	if err := sc.Scan(&t.ID, &t.Name, &t.InstitutionID, &t.Role, &t.CreatedBy, &created, &used, &revoked); err != nil {
		return nil, err
	}
	t.CreatedAt = time.UnixMilli(created).UTC()
	if used > 0 {
		t.LastUsedAt = time.UnixMilli(used).UTC()
	}
	if revoked > 0 {
		t.RevokedAt = time.UnixMilli(revoked).UTC()
	}
	return &t, nil
}

// Token returns one token.
func (s *Service) Token(ctx context.Context, id int64) (*Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("token %d: %w", id, ErrHidden)
	}
	if err != nil {
		return nil, fmt.Errorf("reading token %d: %w", id, err)
	}
	if t.Status, err = s.StationReport(ctx, id); err != nil {
		return nil, err
	}
	return t, nil
}

// Tokens lists every token, revoked ones included (they stay for the record), each with its
// station's last report.
func (s *Service) Tokens(ctx context.Context) ([]Token, error) {
	reports, err := s.stationReports(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenCols+` FROM api_tokens ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("listing tokens: %w", err)
		}
		t.Status = reports[t.ID]
		out = append(out, *t)
	}
	return out, rows.Err()
}

// RevokeToken revokes a token; it stops working at once. Revoking twice is an error.
func (s *Service) RevokeToken(ctx context.Context, id int64) (*Token, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at = 0`, s.now().UnixMilli(), id)
	if err != nil {
		return nil, fmt.Errorf("revoking token %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Token(ctx, id); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: token %d is already revoked", ErrConflict, id)
	}
	return s.Token(ctx, id)
}

// tokenPrincipal authenticates a Bearer token.
func (s *Service) tokenPrincipal(ctx context.Context, secret string) (*Principal, error) {
	if !strings.HasPrefix(secret, tokenPrefix) {
		return nil, ErrUnauthenticated
	}
	var p Principal
	var name, role string
	var used, revoked int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, institution_id, role, last_used_at, revoked_at,
		coalesce((SELECT code FROM institutions i WHERE i.id = t.institution_id), '') FROM api_tokens t WHERE token_hash = ?`,
		hashSecret(secret)).Scan(&p.TokenID, &name, &p.InstitutionID, &role, &used, &revoked, &p.InstitutionCode)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("reading token: %w", err)
	}
	if revoked != 0 {
		return nil, fmt.Errorf("%w: the token was revoked", ErrUnauthenticated)
	}
	p.Username, p.DisplayName, p.Roles, p.Method = "token:"+name, name, []string{role}, "token"
	now := s.now()
	if now.Sub(time.UnixMilli(used)) > lastSeenEvery {
		if _, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET last_used_at = ? WHERE id = ?`, now.UnixMilli(), p.TokenID); err != nil {
			return nil, fmt.Errorf("recording token use: %w", err)
		}
	}
	return &p, nil
}
