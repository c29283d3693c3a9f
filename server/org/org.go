// Package org holds the institutions Sanping serves: a tree of county hospital -> township
// health centres -> village clinics, hospital departments, and the imaging stations each
// institution runs.
package org

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the level of an institution in the county's tree.
type Kind string

// Institution kinds, from the top of the tree down.
const (
	Hospital Kind = "hospital" // county hospital: has departments and doctors
	Township Kind = "township" // township health centre
	Clinic   Kind = "clinic"   // village clinic
)

// rank orders kinds: a parent ranks above its children.
func (k Kind) rank() int {
	switch k {
	case Hospital:
		return 3
	case Township:
		return 2
	case Clinic:
		return 1
	}
	return 0
}

// Errors with one HTTP meaning each.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("conflict")
)

// Institution is one node of the tree.
type Institution struct {
	ID          int64        `json:"id"`
	ParentID    int64        `json:"parentId,omitempty"`
	Code        string       `json:"code"`
	Name        string       `json:"name"`
	Kind        Kind         `json:"kind"`
	Departments []Department `json:"departments,omitempty"`
	CreatedAt   time.Time    `json:"createdAt"`
}

// Department is a hospital department (放射科, 超声科, ...).
type Department struct {
	ID            int64  `json:"id"`
	InstitutionID int64  `json:"institutionId"`
	Name          string `json:"name"`
}

// Station is an imaging station (DR, ultrasound, CT) at an institution.
type Station struct {
	ID            int64     `json:"id"`
	InstitutionID int64     `json:"institutionId"`
	Name          string    `json:"name"`
	AETitle       string    `json:"aeTitle,omitempty"`
	Modality      string    `json:"modality,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
}

const schema = `
CREATE TABLE IF NOT EXISTS institutions (
	id         INTEGER PRIMARY KEY,
	parent_id  INTEGER REFERENCES institutions(id),
	code       TEXT NOT NULL UNIQUE,
	name       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS departments (
	id             INTEGER PRIMARY KEY,
	institution_id INTEGER NOT NULL REFERENCES institutions(id),
	name           TEXT NOT NULL,
	UNIQUE (institution_id, name)
) STRICT;
CREATE TABLE IF NOT EXISTS stations (
	id             INTEGER PRIMARY KEY,
	institution_id INTEGER NOT NULL REFERENCES institutions(id),
	name           TEXT NOT NULL,
	ae_title       TEXT NOT NULL DEFAULT '',
	modality       TEXT NOT NULL DEFAULT '',
	created_at     INTEGER NOT NULL,
	UNIQUE (institution_id, name)
) STRICT;
CREATE TRIGGER IF NOT EXISTS institutions_no_delete BEFORE DELETE ON institutions
BEGIN SELECT RAISE(ABORT, 'institutions are kept: records refer to them'); END;
`

// Service keeps institutions in the shared SQLite database.
type Service struct {
	db *sql.DB
}

// New prepares the tables.
func New(ctx context.Context, db *sql.DB) (*Service, error) {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("creating institution tables: %w", err)
	}
	return &Service{db: db}, nil
}

var codeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// aeTitleRE: PS3.5 AE VR, up to 16 characters of the default repertoire, no backslash.
var aeTitleRE = regexp.MustCompile(`^[\x20-\x5B\x5D-\x7E]{1,16}$`)

func checkName(field, v string, maxRunes int) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxRunes || strings.ContainsAny(v, "\x00\r\n") {
		return "", fmt.Errorf("%w: %s must be one line of at most %d characters", ErrInvalid, field, maxRunes)
	}
	return v, nil
}

// Add creates an institution. A hospital has no parent or a hospital parent; a township
// centre's parent is a hospital; a clinic's parent is a township centre or a hospital.
func (s *Service) Add(ctx context.Context, in Institution) (*Institution, error) {
	if !codeRE.MatchString(in.Code) {
		return nil, fmt.Errorf("%w: code must be 1-32 letters, digits, '.', '_' or '-'", ErrInvalid)
	}
	name, err := checkName("name", in.Name, 100)
	if err != nil {
		return nil, err
	}
	if in.Kind.rank() == 0 {
		return nil, fmt.Errorf("%w: kind must be hospital, township or clinic", ErrInvalid)
	}
	var parent sql.NullInt64
	if in.ParentID != 0 {
		p, err := s.Get(ctx, in.ParentID)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: parent institution %d does not exist", ErrInvalid, in.ParentID)
		}
		if err != nil {
			return nil, err
		}
		if p.Kind.rank() < in.Kind.rank() || (p.Kind == in.Kind && in.Kind != Hospital) {
			return nil, fmt.Errorf("%w: a %s cannot be under a %s", ErrInvalid, in.Kind, p.Kind)
		}
		parent = sql.NullInt64{Int64: p.ID, Valid: true}
	} else if in.Kind != Hospital {
		return nil, fmt.Errorf("%w: a %s needs a parent institution", ErrInvalid, in.Kind)
	}
	now := time.Now().UTC()
	var id int64
	err = s.db.QueryRowContext(ctx, `INSERT INTO institutions (parent_id, code, name, kind, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		parent, in.Code, name, string(in.Kind), now.UnixMilli()).Scan(&id)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return nil, fmt.Errorf("%w: an institution with code %q exists", ErrConflict, in.Code)
		}
		return nil, fmt.Errorf("adding institution %s: %w", in.Code, err)
	}
	return s.Get(ctx, id)
}

// Rename changes an institution's name.
func (s *Service) Rename(ctx context.Context, id int64, name string) (*Institution, error) {
	name, err := checkName("name", name, 100)
	if err != nil {
		return nil, err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE institutions SET name = ? WHERE id = ?`, name, id)
	if err != nil {
		return nil, fmt.Errorf("renaming institution %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("institution %d: %w", id, ErrNotFound)
	}
	return s.Get(ctx, id)
}

const instCols = `id, coalesce(parent_id, 0), code, name, kind, created_at`

func scanInstitution(sc interface{ Scan(...any) error }) (*Institution, error) {
	var in Institution
	var kind string
	var created int64
	if err := sc.Scan(&in.ID, &in.ParentID, &in.Code, &in.Name, &kind, &created); err != nil {
		return nil, err
	}
	in.Kind = Kind(kind)
	in.CreatedAt = time.UnixMilli(created).UTC()
	return &in, nil
}

// Get returns an institution with its departments.
func (s *Service) Get(ctx context.Context, id int64) (*Institution, error) {
	in, err := scanInstitution(s.db.QueryRowContext(ctx, `SELECT `+instCols+` FROM institutions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("institution %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading institution %d: %w", id, err)
	}
	in.Departments, err = s.departments(ctx, id)
	return in, err
}

// ByCode returns the institution with this code.
func (s *Service) ByCode(ctx context.Context, code string) (*Institution, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM institutions WHERE code = ?`, code).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("institution %q: %w", code, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading institution %q: %w", code, err)
	}
	return s.Get(ctx, id)
}

// List returns every institution, parents before children.
func (s *Service) List(ctx context.Context) ([]Institution, error) {
	rows, err := s.db.QueryContext(ctx, `WITH RECURSIVE tree(id, depth, path) AS (
			SELECT id, 0, printf('%010d', id) FROM institutions WHERE parent_id IS NULL
			UNION ALL SELECT i.id, t.depth + 1, t.path || '/' || printf('%010d', i.id)
			FROM institutions i JOIN tree t ON i.parent_id = t.id)
		SELECT `+instCols+` FROM institutions JOIN tree USING (id) ORDER BY tree.path`)
	if err != nil {
		return nil, fmt.Errorf("listing institutions: %w", err)
	}
	defer rows.Close()
	var out []Institution
	for rows.Next() {
		in, err := scanInstitution(rows)
		if err != nil {
			return nil, fmt.Errorf("listing institutions: %w", err)
		}
		out = append(out, *in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing institutions: %w", err)
	}
	deps, err := s.departments(ctx, 0)
	if err != nil {
		return nil, err
	}
	for i := range out {
		for _, d := range deps {
			if d.InstitutionID == out[i].ID {
				out[i].Departments = append(out[i].Departments, d)
			}
		}
	}
	return out, nil
}

// departments of one institution, or of all when id is 0.
func (s *Service) departments(ctx context.Context, id int64) ([]Department, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, institution_id, name FROM departments WHERE ?1 = 0 OR institution_id = ?1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("listing departments: %w", err)
	}
	defer rows.Close()
	var out []Department
	for rows.Next() {
		var d Department
		if err := rows.Scan(&d.ID, &d.InstitutionID, &d.Name); err != nil {
			return nil, fmt.Errorf("listing departments: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// AddDepartment adds a department to a hospital.
func (s *Service) AddDepartment(ctx context.Context, institutionID int64, name string) (*Department, error) {
	name, err := checkName("name", name, 100)
	if err != nil {
		return nil, err
	}
	in, err := s.Get(ctx, institutionID)
	if err != nil {
		return nil, err
	}
	if in.Kind != Hospital {
		return nil, fmt.Errorf("%w: departments belong to hospitals, %s is a %s", ErrInvalid, in.Code, in.Kind)
	}
	d := Department{InstitutionID: institutionID, Name: name}
	err = s.db.QueryRowContext(ctx, `INSERT INTO departments (institution_id, name) VALUES (?, ?) RETURNING id`, institutionID, name).Scan(&d.ID)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return nil, fmt.Errorf("%w: department %q exists", ErrConflict, name)
		}
		return nil, fmt.Errorf("adding department: %w", err)
	}
	return &d, nil
}

// AddStation registers an imaging station of an institution.
func (s *Service) AddStation(ctx context.Context, st Station) (*Station, error) {
	name, err := checkName("name", st.Name, 100)
	if err != nil {
		return nil, err
	}
	st.Name = name
	if st.AETitle != "" && !aeTitleRE.MatchString(st.AETitle) {
		return nil, fmt.Errorf("%w: aeTitle must be 1-16 printable ASCII characters without a backslash", ErrInvalid)
	}
	if len(st.Modality) > 16 || strings.Trim(st.Modality, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
		return nil, fmt.Errorf("%w: modality must be a DICOM modality code such as DX, US or CT", ErrInvalid)
	}
	if _, err := s.Get(ctx, st.InstitutionID); err != nil {
		return nil, err
	}
	st.CreatedAt = time.UnixMilli(time.Now().UnixMilli()).UTC()
	err = s.db.QueryRowContext(ctx, `INSERT INTO stations (institution_id, name, ae_title, modality, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		st.InstitutionID, st.Name, st.AETitle, st.Modality, st.CreatedAt.UnixMilli()).Scan(&st.ID)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return nil, fmt.Errorf("%w: station %q exists", ErrConflict, st.Name)
		}
		return nil, fmt.Errorf("adding station: %w", err)
	}
	return &st, nil
}

// Stations lists the stations of an institution.
func (s *Service) Stations(ctx context.Context, institutionID int64) ([]Station, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, institution_id, name, ae_title, modality, created_at FROM stations WHERE institution_id = ? ORDER BY id`, institutionID)
	if err != nil {
		return nil, fmt.Errorf("listing stations: %w", err)
	}
	defer rows.Close()
	var out []Station
	for rows.Next() {
		var st Station
		var created int64
		if err := rows.Scan(&st.ID, &st.InstitutionID, &st.Name, &st.AETitle, &st.Modality, &created); err != nil {
			return nil, fmt.Errorf("listing stations: %w", err)
		}
		st.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, st)
	}
	return out, rows.Err()
}
