package consult

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
)

// Service keeps consultations and reports in the shared SQLite database. It is safe for
// concurrent use.
type Service struct {
	db         *sql.DB
	trail      *audit.Log
	consentDir string
	now        func() time.Time
	// verifyPassword re-checks a signer's password (SetPasswordCheck); nil: the hash in users.
	verifyPassword func(ctx context.Context, userID int64, password string) error
	// onTransition hears of start, finish, close and cancel once committed (SetOnTransition).
	onTransition func(id int64, from, to State)
}

// SetOnTransition makes fn hear of every state change made by Start, Finish, Close, Cancel,
// Decline and Schedule after it is committed: the live side opens and closes rooms by it.
func (s *Service) SetOnTransition(fn func(id int64, from, to State)) { s.onTransition = fn }

// SetPasswordCheck makes signing re-check passwords through check (the server passes
// auth.Service.VerifyPassword, so wrong signing passwords count towards the account lockout
// like failed logins). check returns nil when the password is right.
func (s *Service) SetPasswordCheck(check func(ctx context.Context, userID int64, password string) error) {
	s.verifyPassword = check
}

// schema creates the tables this package owns. It reads two tables owned by others: users
// (pk, username, password_hash, roles, display_name, title, specialty, practice_years,
// institution_id) and institutions (id, name, code).
const schema = `
CREATE TABLE IF NOT EXISTS consultations (
	id                        INTEGER PRIMARY KEY,
	state                     TEXT NOT NULL CHECK (state IN ({{states}})),
	requesting_institution_id INTEGER NOT NULL,
	target_institution_id     INTEGER NOT NULL,
	requested_by              INTEGER NOT NULL,
	requested_by_name         TEXT NOT NULL,
	assigned_doctor_id        INTEGER NOT NULL DEFAULT 0,
	patient_id                TEXT NOT NULL,
	patient_name              TEXT NOT NULL,
	patient_sex               TEXT NOT NULL CHECK (patient_sex IN ('M', 'F', 'O', '')),
	patient_birth_date        TEXT NOT NULL,
	clinical_question         TEXT NOT NULL,
	purpose                   TEXT NOT NULL,
	urgency                   TEXT NOT NULL CHECK (urgency IN ('routine', 'urgent', 'emergency')),
	specialty                 TEXT NOT NULL,
	requested_doctor_id       INTEGER NOT NULL DEFAULT 0,
	proposed_at               INTEGER,
	consent_confirmed         INTEGER NOT NULL CHECK (consent_confirmed = 1),
	recording_consent         INTEGER NOT NULL,
	scheduled_at              INTEGER,
	decline_reason            TEXT NOT NULL DEFAULT '',
	cancel_reason             TEXT NOT NULL DEFAULT '',
	consent_name              TEXT,
	consent_content_type      TEXT,
	consent_size              INTEGER,
	consent_sha256            TEXT,
	created_at                INTEGER NOT NULL,
	updated_at                INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS consultations_created ON consultations(created_at);
CREATE INDEX IF NOT EXISTS consultations_requesting ON consultations(requesting_institution_id, created_at);
CREATE INDEX IF NOT EXISTS consultations_target ON consultations(target_institution_id, created_at);
CREATE INDEX IF NOT EXISTS consultations_doctor ON consultations(assigned_doctor_id, created_at);
CREATE INDEX IF NOT EXISTS consultations_state ON consultations(state, created_at);

CREATE TABLE IF NOT EXISTS consultation_studies (
	consultation_id INTEGER NOT NULL REFERENCES consultations(id),
	study_uid       TEXT NOT NULL,
	PRIMARY KEY (consultation_id, study_uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consultation_studies_uid ON consultation_studies(study_uid);

CREATE TABLE IF NOT EXISTS consultation_participants (
	consultation_id INTEGER NOT NULL REFERENCES consultations(id),
	user_id         INTEGER NOT NULL,
	added_by        INTEGER NOT NULL,
	added_at        INTEGER NOT NULL,
	PRIMARY KEY (consultation_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS consultation_participants_user ON consultation_participants(user_id);

CREATE TABLE IF NOT EXISTS consultation_sessions (
	id              INTEGER PRIMARY KEY,
	consultation_id INTEGER NOT NULL REFERENCES consultations(id),
	started_at      INTEGER NOT NULL,
	ended_at        INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS consultation_sessions_consultation ON consultation_sessions(consultation_id);

CREATE TABLE IF NOT EXISTS reports (
	consultation_id  INTEGER PRIMARY KEY REFERENCES consultations(id),
	findings         TEXT NOT NULL,
	impression       TEXT NOT NULL,
	recommendations  TEXT NOT NULL,
	doctor_id        INTEGER NOT NULL,
	doctor_name      TEXT NOT NULL,
	doctor_title     TEXT NOT NULL,
	institution_id   INTEGER NOT NULL,
	institution_name TEXT NOT NULL,
	drafted_at       INTEGER NOT NULL,
	signed_at        INTEGER,
	sha256           TEXT,
	CHECK ((signed_at IS NULL) = (sha256 IS NULL))
) STRICT;

CREATE TABLE IF NOT EXISTS report_addenda (
	id              INTEGER PRIMARY KEY,
	consultation_id INTEGER NOT NULL REFERENCES reports(consultation_id),
	text            TEXT NOT NULL,
	doctor_id       INTEGER NOT NULL,
	doctor_name     TEXT NOT NULL,
	doctor_title    TEXT NOT NULL,
	signed_at       INTEGER NOT NULL,
	prev_sha256     TEXT NOT NULL,
	sha256          TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS report_addenda_consultation ON report_addenda(consultation_id, id);

-- Retention. INSERT OR REPLACE deletes without firing DELETE triggers, hence the no_replace
-- triggers.
CREATE TRIGGER IF NOT EXISTS consultations_no_delete BEFORE DELETE ON consultations
BEGIN SELECT RAISE(ABORT, 'consultations are medical records and are kept'); END;
CREATE TRIGGER IF NOT EXISTS consultations_no_replace BEFORE INSERT ON consultations
WHEN EXISTS (SELECT 1 FROM consultations WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'consultations are medical records and are kept'); END;
CREATE TRIGGER IF NOT EXISTS consultations_request_fixed BEFORE UPDATE OF
	id, requesting_institution_id, target_institution_id, requested_by, requested_by_name,
	patient_id, patient_name, patient_sex, patient_birth_date, clinical_question, purpose,
	urgency, specialty, requested_doctor_id, proposed_at, consent_confirmed, recording_consent,
	created_at ON consultations
BEGIN SELECT RAISE(ABORT, 'a consultation request cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS consultation_studies_no_update BEFORE UPDATE ON consultation_studies
BEGIN SELECT RAISE(ABORT, 'a consultation request cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS consultation_studies_no_delete BEFORE DELETE ON consultation_studies
BEGIN SELECT RAISE(ABORT, 'a consultation request cannot be changed'); END;

CREATE TRIGGER IF NOT EXISTS reports_no_delete BEFORE DELETE ON reports
BEGIN SELECT RAISE(ABORT, 'reports are medical records and are kept'); END;
CREATE TRIGGER IF NOT EXISTS reports_no_replace BEFORE INSERT ON reports
WHEN EXISTS (SELECT 1 FROM reports WHERE consultation_id = NEW.consultation_id)
BEGIN SELECT RAISE(ABORT, 'reports are medical records and are kept'); END;
CREATE TRIGGER IF NOT EXISTS reports_key_fixed BEFORE UPDATE OF consultation_id ON reports
BEGIN SELECT RAISE(ABORT, 'a report stays with its consultation'); END;
CREATE TRIGGER IF NOT EXISTS reports_signed_fixed BEFORE UPDATE ON reports
WHEN OLD.signed_at IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'the report is signed; add an addendum'); END;

CREATE TRIGGER IF NOT EXISTS report_addenda_no_update BEFORE UPDATE ON report_addenda
BEGIN SELECT RAISE(ABORT, 'addenda cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS report_addenda_no_delete BEFORE DELETE ON report_addenda
BEGIN SELECT RAISE(ABORT, 'addenda are medical records and are kept'); END;
CREATE TRIGGER IF NOT EXISTS report_addenda_no_replace BEFORE INSERT ON report_addenda
WHEN EXISTS (SELECT 1 FROM report_addenda WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'addenda are medical records and are kept'); END;

-- Recreated on every start so it follows the transitions table in the code.
DROP TRIGGER IF EXISTS consultations_state_machine;
CREATE TRIGGER consultations_state_machine BEFORE UPDATE OF state ON consultations
WHEN NEW.state <> OLD.state AND OLD.state || '>' || NEW.state NOT IN ({{transitions}})
BEGIN SELECT RAISE(ABORT, 'state change not allowed'); END;
`

func sqlList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = "'" + s + "'" // our own constants, which hold no quote
	}
	return strings.Join(quoted, ", ")
}

func schemaSQL() string {
	var states, moves []string
	for _, from := range States() {
		states = append(states, string(from))
		for _, to := range transitions[from] {
			moves = append(moves, string(from)+">"+string(to))
		}
	}
	return strings.NewReplacer("{{states}}", sqlList(states), "{{transitions}}", sqlList(moves)).Replace(schema)
}

// New prepares the consultation tables in db and returns the service. db should come from
// store.OpenDB, whose write transactions begin IMMEDIATE: then concurrent changes wait for
// each other instead of failing with SQLITE_BUSY. Consent forms are kept in dataDir/consent.
// A nil trail means no auditing (tests); now is the clock (time.Now when nil).
func New(ctx context.Context, db *sql.DB, trail *audit.Log, dataDir string, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	if dataDir == "" {
		return nil, errors.New("consult: a data directory is required")
	}
	dir := filepath.Join(dataDir, "consent")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("consult: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("consult: preparing tables: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schemaSQL()); err != nil {
		return nil, fmt.Errorf("consult: preparing tables: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("consult: preparing tables: %w", err)
	}
	return &Service{db: db, trail: trail, consentDir: dir, now: now}, nil
}

// clock is the current time at the precision stored (milliseconds), in UTC.
func (s *Service) clock() time.Time { return time.UnixMilli(s.now().UnixMilli()).UTC() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func nullTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMillis(v.Int64)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn in one write transaction.
func (s *Service) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	return nil
}

// read runs fn in one read transaction, so what it reads is one snapshot. ReadOnly makes
// the driver begin DEFERRED, so reads do not take the write lock.
func (s *Service) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// event is an audit entry to write once the change is committed.
type event struct{ action, outcome, detail string }

func object(id int64) string { return "consultation:" + strconv.FormatInt(id, 10) }

// audit appends entries after the change they record is committed. If that fails, the change
// stays and the caller gets ErrNotAudited.
func (s *Service) audit(ctx context.Context, by *auth.Principal, id int64, events ...event) error {
	if s.trail == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx) // the change is made; record it even if the caller left
	var errs []error
	// The patient makes the entries findable by patient in the trail (audit.Query.Patient). It
	// is an aid to search: if it cannot be read the entries are still written, without it.
	var pid, pname string
	_ = s.db.QueryRowContext(ctx, `SELECT patient_id, patient_name FROM consultations WHERE id = ?`, id).Scan(&pid, &pname)
	for _, ev := range events {
		e := by.AuditEntry(ev.action, object(id), ev.outcome)
		e.Detail = ev.detail
		e.PatientID, e.PatientName = pid, pname
		if _, err := s.trail.Append(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("consult: %s: %w: %w", events[0].action, ErrNotAudited, errors.Join(errs...))
	}
	return nil
}

// detail formats audit details as key=value pairs; strings are quoted.
func detail(kv ...any) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%v=", kv[i])
		switch v := kv[i+1].(type) {
		case string:
			b.WriteString(strconv.Quote(v))
		case State:
			b.WriteString(string(v))
		case time.Time:
			b.WriteString(v.UTC().Format(time.RFC3339))
		default:
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

func transitionEvent(action string, from, to State, kv ...any) event {
	return event{action, "success", detail(append([]any{"from", from, "to", to}, kv...)...)}
}

var errNoActor = fmt.Errorf("consult: %w", auth.ErrUnauthenticated)

const consultationColumns = `c.id, c.state, c.requesting_institution_id, c.target_institution_id,
	c.requested_by, c.requested_by_name, c.assigned_doctor_id, c.patient_id, c.patient_name,
	c.patient_sex, c.patient_birth_date, c.clinical_question, c.purpose, c.urgency, c.specialty,
	c.requested_doctor_id, c.proposed_at, c.consent_confirmed, c.recording_consent,
	c.scheduled_at, c.decline_reason, c.cancel_reason, c.consent_name, c.consent_content_type,
	c.consent_size, c.consent_sha256, c.created_at, c.updated_at`

func scanConsultation(rows *sql.Rows) (Consultation, error) {
	var c Consultation
	var proposed, scheduled, size sql.NullInt64
	var name, ctype, sha sql.NullString
	var created, updated int64
	err := rows.Scan(&c.ID, &c.State, &c.RequestingInstitutionID, &c.TargetInstitutionID,
		&c.RequestedBy, &c.RequestedByName, &c.AssignedDoctorID, &c.Patient.ID, &c.Patient.Name,
		&c.Patient.Sex, &c.Patient.BirthDate, &c.ClinicalQuestion, &c.Purpose, &c.Urgency, &c.Specialty,
		&c.RequestedDoctorID, &proposed, &c.ConsentConfirmed, &c.RecordingConsent,
		&scheduled, &c.DeclineReason, &c.CancelReason, &name, &ctype,
		&size, &sha, &created, &updated)
	if err != nil {
		return c, err
	}
	c.ProposedAt = nullTime(proposed)
	c.ScheduledAt = nullTime(scheduled)
	if sha.Valid {
		c.ConsentForm = &Attachment{Name: name.String, ContentType: ctype.String, Size: size.Int64, SHA256: sha.String}
	}
	c.CreatedAt, c.UpdatedAt = fromMillis(created), fromMillis(updated)
	c.StudyUIDs, c.Participants, c.Sessions = []string{}, []int64{}, []LiveSession{}
	return c, nil
}

// load returns the consultations matching where (over alias c), with their studies,
// participants and sessions.
func load(ctx context.Context, q queryer, where, tail string, args ...any) ([]Consultation, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+consultationColumns+` FROM consultations c WHERE `+where+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("consult: %w", err)
	}
	defer rows.Close()
	cs := []Consultation{}
	for rows.Next() {
		c, err := scanConsultation(rows)
		if err != nil {
			return nil, fmt.Errorf("consult: %w", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("consult: %w", err)
	}
	rows.Close()
	if len(cs) == 0 {
		return cs, nil
	}

	byID := make(map[int64]*Consultation, len(cs))
	ids := make([]any, len(cs))
	for i := range cs {
		byID[cs[i].ID] = &cs[i]
		ids[i] = cs[i].ID
	}
	in := ` IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
	details := []struct {
		query string
		scan  func(rows *sql.Rows) error
	}{
		{`SELECT consultation_id, study_uid FROM consultation_studies WHERE consultation_id` + in +
			` ORDER BY consultation_id, study_uid`,
			func(rows *sql.Rows) error {
				var id int64
				var uid string
				if err := rows.Scan(&id, &uid); err != nil {
					return err
				}
				byID[id].StudyUIDs = append(byID[id].StudyUIDs, uid)
				return nil
			}},
		{`SELECT consultation_id, user_id FROM consultation_participants WHERE consultation_id` + in +
			` ORDER BY consultation_id, user_id`,
			func(rows *sql.Rows) error {
				var id, user int64
				if err := rows.Scan(&id, &user); err != nil {
					return err
				}
				byID[id].Participants = append(byID[id].Participants, user)
				return nil
			}},
		{`SELECT consultation_id, started_at, ended_at FROM consultation_sessions WHERE consultation_id` + in +
			` ORDER BY id`,
			func(rows *sql.Rows) error {
				var id, start int64
				var end sql.NullInt64
				if err := rows.Scan(&id, &start, &end); err != nil {
					return err
				}
				byID[id].Sessions = append(byID[id].Sessions, LiveSession{Start: fromMillis(start), End: nullTime(end)})
				return nil
			}},
	}
	for _, d := range details {
		if err := eachRow(ctx, q, d.query, ids, d.scan); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

func eachRow(ctx context.Context, q queryer, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("consult: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	return nil
}
