package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// schema is the index. Files are the record; the index can be rebuilt from them (recovery).
const schema = `
CREATE TABLE IF NOT EXISTS patients (
	pk          INTEGER PRIMARY KEY,
	patient_id  TEXT NOT NULL,
	issuer      TEXT NOT NULL DEFAULT '',
	name        TEXT NOT NULL DEFAULT '',
	birth_date  TEXT NOT NULL DEFAULT '',
	sex         TEXT NOT NULL DEFAULT '',
	UNIQUE (patient_id, issuer)
);
CREATE TABLE IF NOT EXISTS studies (
	pk            INTEGER PRIMARY KEY,
	study_uid     TEXT NOT NULL UNIQUE,
	patient_pk    INTEGER NOT NULL REFERENCES patients(pk),
	patient_name  TEXT NOT NULL DEFAULT '',
	name_a        TEXT NOT NULL DEFAULT '',
	name_i        TEXT NOT NULL DEFAULT '',
	name_p        TEXT NOT NULL DEFAULT '',
	study_date    TEXT NOT NULL DEFAULT '',
	study_time    TEXT NOT NULL DEFAULT '',
	accession     TEXT NOT NULL DEFAULT '',
	study_id      TEXT NOT NULL DEFAULT '',
	description   TEXT NOT NULL DEFAULT '',
	referring     TEXT NOT NULL DEFAULT '',
	modalities    TEXT NOT NULL DEFAULT '',
	num_series    INTEGER NOT NULL DEFAULT 0,
	num_instances INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_pk);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession);
CREATE TABLE IF NOT EXISTS series (
	pk              INTEGER PRIMARY KEY,
	series_uid      TEXT NOT NULL UNIQUE,
	study_pk        INTEGER NOT NULL REFERENCES studies(pk),
	modality        TEXT NOT NULL DEFAULT '',
	series_number   INTEGER,
	description     TEXT NOT NULL DEFAULT '',
	series_date     TEXT NOT NULL DEFAULT '',
	series_time     TEXT NOT NULL DEFAULT '',
	body_part       TEXT NOT NULL DEFAULT '',
	pps_start_date  TEXT NOT NULL DEFAULT '',
	pps_start_time  TEXT NOT NULL DEFAULT '',
	num_instances   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_pk);
CREATE TABLE IF NOT EXISTS instances (
	pk               INTEGER PRIMARY KEY,
	sop_uid          TEXT NOT NULL UNIQUE,
	series_pk        INTEGER NOT NULL REFERENCES series(pk),
	sop_class        TEXT NOT NULL DEFAULT '',
	instance_number  INTEGER,
	rows             INTEGER,
	columns          INTEGER,
	frames           INTEGER,
	bits_allocated   INTEGER,
	transfer_syntax  TEXT NOT NULL,
	path             TEXT NOT NULL,
	size             INTEGER NOT NULL,
	sha256           TEXT NOT NULL,
	metadata         BLOB NOT NULL,
	layout           BLOB NOT NULL,
	created_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_pk, instance_number);
CREATE INDEX IF NOT EXISTS instances_sha ON instances(sha256);
`

// migrate adds what later versions added to an index made by an earlier one.
func migrate(ctx context.Context, db *sql.DB) error {
	// The institution that uploaded a study first owns it (authorization scopes by it). Not in
	// the files: an index rebuilt from blobs alone leaves studies unowned (admins only).
	if _, err := db.ExecContext(ctx, `ALTER TABLE studies ADD COLUMN institution_id INTEGER NOT NULL DEFAULT 0`); err != nil &&
		!strings.Contains(err.Error(), "duplicate column") {
		return fmt.Errorf("adding studies.institution_id: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS studies_institution ON studies(institution_id)`); err != nil {
		return fmt.Errorf("indexing studies.institution_id: %w", err)
	}
	return nil
}
