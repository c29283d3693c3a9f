package consult

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sanping/sanping/server/auth"
)

// Report is the consulting doctor's written opinion. Once signed (SHA256 set) it never
// changes; corrections are addenda.
type Report struct {
	ConsultationID  int64      `json:"consultationId"`
	Findings        string     `json:"findings"`
	Impression      string     `json:"impression"`
	Recommendations string     `json:"recommendations"`
	DoctorID        int64      `json:"doctorId"`
	DoctorName      string     `json:"doctorName"`
	DoctorTitle     string     `json:"doctorTitle"`
	InstitutionID   int64      `json:"institutionId"`
	InstitutionName string     `json:"institutionName"`
	DraftedAt       time.Time  `json:"draftedAt"` // last draft save
	SignedAt        time.Time  `json:"signedAt,omitzero"`
	SHA256          string     `json:"sha256,omitempty"` // see reportHash
	Addenda         []Addendum `json:"addenda"`
}

// Signed reports whether the report is signed.
func (r *Report) Signed() bool { return r.SHA256 != "" }

// Addendum is a signed note added to a signed report.
type Addendum struct {
	ID          int64     `json:"id"`
	Text        string    `json:"text"`
	DoctorID    int64     `json:"doctorId"`
	DoctorName  string    `json:"doctorName"`
	DoctorTitle string    `json:"doctorTitle"`
	SignedAt    time.Time `json:"signedAt"`
	SHA256      string    `json:"sha256"` // see addendumHash

	prev string // SHA-256 of the addendum before, "" for the first
}

// canon builds a canonical encoding: integers as 8 bytes big-endian, text as an 8-byte
// big-endian byte length and the UTF-8 bytes. The length prefixes make it unambiguous, so no
// two different contents share an encoding.
type canon []byte

func (c canon) int(v int64) canon { return binary.BigEndian.AppendUint64(c, uint64(v)) }

func (c canon) text(s string) canon { return append(c.int(int64(len(s))), s...) }

func (c canon) sum() string {
	h := sha256.Sum256(c)
	return hex.EncodeToString(h[:])
}

// reportHash is the hex SHA-256 of a signed report's canonical encoding (see canon): the
// ASCII tag "sanping-report-v1", then consultation id, patient id, patient name, sex, birth
// date, the study UIDs (sorted, joined by "\"), clinical question, findings, impression,
// recommendations, doctor id, doctor name, doctor title, institution id, institution name,
// signed time (Unix ms). The patient and studies are covered so a signed opinion cannot be
// moved to another patient unnoticed.
func reportHash(c *Consultation, r *Report) string {
	uids := slices.Sorted(slices.Values(c.StudyUIDs))
	p := c.Patient
	return canon("sanping-report-v1").int(c.ID).
		text(p.ID).text(p.Name).text(p.Sex).text(p.BirthDate).
		text(strings.Join(uids, `\`)).text(c.ClinicalQuestion).
		text(r.Findings).text(r.Impression).text(r.Recommendations).
		int(r.DoctorID).text(r.DoctorName).text(r.DoctorTitle).
		int(r.InstitutionID).text(r.InstitutionName).
		int(r.SignedAt.UnixMilli()).sum()
}

// addendumHash is the hex SHA-256 of an addendum's canonical encoding (see canon): the
// ASCII tag "sanping-addendum-v1", then consultation id, the report's SHA-256, the previous
// addendum's SHA-256 ("" for the first), text, doctor id, doctor name, doctor title, signed
// time (Unix ms). Each addendum thus seals the report and the addenda before it.
func addendumHash(consultationID int64, reportSHA string, a *Addendum) string {
	return canon("sanping-addendum-v1").int(consultationID).
		text(reportSHA).text(a.prev).text(a.Text).
		int(a.DoctorID).text(a.DoctorName).text(a.DoctorTitle).
		int(a.SignedAt.UnixMilli()).sum()
}

const reportColumns = `consultation_id, findings, impression, recommendations, doctor_id, doctor_name,
	doctor_title, institution_id, institution_name, drafted_at, signed_at, sha256`

func loadReport(ctx context.Context, q queryer, id int64) (*Report, error) {
	var r Report
	var drafted int64
	var signed sql.NullInt64
	var sha sql.NullString
	err := q.QueryRowContext(ctx, `SELECT `+reportColumns+` FROM reports WHERE consultation_id = ?`, id).Scan(
		&r.ConsultationID, &r.Findings, &r.Impression, &r.Recommendations, &r.DoctorID, &r.DoctorName,
		&r.DoctorTitle, &r.InstitutionID, &r.InstitutionName, &drafted, &signed, &sha)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: consultation %d has no report yet", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("consult: %w", err)
	}
	r.DraftedAt, r.SignedAt, r.SHA256 = fromMillis(drafted), nullTime(signed), sha.String
	r.Addenda = []Addendum{}
	err = eachRow(ctx, q, `SELECT id, text, doctor_id, doctor_name, doctor_title, signed_at, prev_sha256, sha256
		FROM report_addenda WHERE consultation_id = ? ORDER BY id`, []any{id}, func(rows *sql.Rows) error {
		var a Addendum
		var at int64
		if err := rows.Scan(&a.ID, &a.Text, &a.DoctorID, &a.DoctorName, &a.DoctorTitle, &at, &a.prev, &a.SHA256); err != nil {
			return err
		}
		a.SignedAt = fromMillis(at)
		r.Addenda = append(r.Addenda, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func institutionName(ctx context.Context, q queryer, id int64) (string, error) {
	var name string
	err := q.QueryRowContext(ctx, `SELECT COALESCE(name, '') FROM institutions WHERE id = ?`, id).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("consult: %w", err)
	}
	return name, nil
}

// Report returns a consultation's report, draft or signed, with its addenda.
func (s *Service) Report(ctx context.Context, id int64) (*Report, error) {
	var r *Report
	err := s.read(ctx, func(tx *sql.Tx) error {
		if _, err := current(ctx, tx, id); err != nil {
			return err
		}
		var err error
		r, err = loadReport(ctx, tx, id)
		return err
	})
	return r, err
}

// author checks that by is the consultation's assigned doctor and still holds role doctor.
func author(ctx context.Context, q queryer, by *auth.Principal, cur snapshot) (*Doctor, error) {
	if by.UserID == 0 || by.UserID != cur.assigned {
		return nil, fmt.Errorf("%w: only the assigned doctor writes and signs the report", ErrForbidden)
	}
	d, err := lookupDoctor(ctx, q, by.UserID)
	if errors.Is(err, ErrNotFound) || err == nil && !d.IsDoctor {
		return nil, fmt.Errorf("%w: user %d no longer holds role doctor", ErrForbidden, by.UserID)
	}
	return d, err
}

// checkPassword re-checks the signer's password; a mismatch is audited as a failure of
// action.
func (s *Service) checkPassword(ctx context.Context, by *auth.Principal, id int64, action, password string) error {
	if s.verifyPassword != nil {
		if err := s.verifyPassword(ctx, by.UserID, password); err == nil {
			return nil
		}
		if err := s.audit(ctx, by, id, event{action, "failure", "wrong password"}); err != nil {
			return fmt.Errorf("%w (%w)", ErrBadPassword, err)
		}
		return ErrBadPassword
	}
	var hash string
	err := s.db.QueryRowContext(ctx, `SELECT password_hash FROM users WHERE pk = ?`, by.UserID).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: user %d not found", ErrForbidden, by.UserID)
	}
	if err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	if auth.CheckPassword(hash, password) {
		return nil
	}
	if err := s.audit(ctx, by, id, event{action, "failure", "wrong password"}); err != nil {
		return fmt.Errorf("%w (%w)", ErrBadPassword, err)
	}
	return ErrBadPassword
}

// SaveDraft writes the report draft, while the consultation is live or reporting, as its
// assigned doctor. Fields may be empty in a draft; signing needs an impression.
func (s *Service) SaveDraft(ctx context.Context, by *auth.Principal, id int64, findings, impression, recommendations string) (*Report, error) {
	if by == nil {
		return nil, errNoActor
	}
	for _, f := range []struct{ name, v string }{
		{"findings", findings}, {"impression", impression}, {"recommendations", recommendations},
	} {
		if err := checkText(f.name, f.v, maxReportFieldLen, false); err != nil {
			return nil, err
		}
	}
	var r *Report
	var created bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		switch cur.state {
		case Live, Reporting:
		case Signed, Closed:
			return fmt.Errorf("%w: the report is signed; add an addendum", ErrConflict)
		default:
			return fmt.Errorf("%w: a report is drafted while the consultation is live or reporting, not %s", ErrConflict, cur.state)
		}
		d, err := author(ctx, tx, by, cur)
		if err != nil {
			return err
		}
		inst, err := institutionName(ctx, tx, cur.target)
		if err != nil {
			return err
		}
		now := s.clock()
		args := []any{findings, impression, recommendations, d.ID, d.name(), d.Title, cur.target, inst, now.UnixMilli(), id}
		res, err := tx.ExecContext(ctx, `UPDATE reports SET findings = ?, impression = ?, recommendations = ?,
			doctor_id = ?, doctor_name = ?, doctor_title = ?, institution_id = ?, institution_name = ?, drafted_at = ?
			WHERE consultation_id = ? AND signed_at IS NULL`, args...)
		if err != nil {
			return fmt.Errorf("consult: saving draft: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("consult: saving draft: %w", err)
		}
		if created = n == 0; created {
			if _, err := tx.ExecContext(ctx, `INSERT INTO reports (findings, impression, recommendations,
				doctor_id, doctor_name, doctor_title, institution_id, institution_name, drafted_at, consultation_id)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...); err != nil {
				return fmt.Errorf("consult: saving draft: %w", err)
			}
		}
		r, err = loadReport(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, s.audit(ctx, by, id, event{"report.draft", "success", detail("created", created)})
}

// Sign signs the report as the assigned doctor, who gives their password again, and moves
// the consultation from reporting to signed. The signed report is frozen with its SHA-256
// (see reportHash).
func (s *Service) Sign(ctx context.Context, by *auth.Principal, id int64, password string) (*Report, error) {
	if by == nil {
		return nil, errNoActor
	}
	// Checked before the password, whose check costs tens of milliseconds, and again in the
	// transaction.
	cur, err := current(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	if cur.state != Reporting {
		return nil, &TransitionError{From: cur.state, To: Signed}
	}
	if _, err := author(ctx, s.db, by, cur); err != nil {
		return nil, err
	}
	if err := s.checkPassword(ctx, by, id, "report.sign", password); err != nil {
		return nil, err
	}
	var r *Report
	err = s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur.state != Reporting {
			return &TransitionError{From: cur.state, To: Signed}
		}
		d, err := author(ctx, tx, by, cur)
		if err != nil {
			return err
		}
		r, err = loadReport(ctx, tx, id)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: there is no report draft to sign", ErrConflict)
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(r.Impression) == "" {
			return invalid("impression", "required to sign the report")
		}
		c, err := get(ctx, tx, id)
		if err != nil {
			return err
		}
		// The signature records the doctor and institution as they are at signing.
		if r.InstitutionName, err = institutionName(ctx, tx, cur.target); err != nil {
			return err
		}
		r.DoctorID, r.DoctorName, r.DoctorTitle, r.InstitutionID = d.ID, d.name(), d.Title, cur.target
		r.SignedAt = s.clock()
		r.SHA256 = reportHash(c, r)
		res, err := tx.ExecContext(ctx, `UPDATE reports SET doctor_id = ?, doctor_name = ?, doctor_title = ?,
			institution_id = ?, institution_name = ?, signed_at = ?, sha256 = ?
			WHERE consultation_id = ? AND signed_at IS NULL`,
			r.DoctorID, r.DoctorName, r.DoctorTitle, r.InstitutionID, r.InstitutionName,
			r.SignedAt.UnixMilli(), r.SHA256, id)
		if err != nil {
			return fmt.Errorf("consult: signing: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("consult: signing report %d: %d rows, %v", id, n, err)
		}
		if err := setState(ctx, tx, id, Reporting, Signed, r.SignedAt, ""); err != nil {
			return err
		}
		r, err = loadReport(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, s.audit(ctx, by, id,
		event{"report.sign", "success", detail("sha256", r.SHA256)},
		transitionEvent("consultation.sign", Reporting, Signed))
}

// AddAddendum adds a signed note to a signed report, as the assigned doctor, who gives their
// password again.
func (s *Service) AddAddendum(ctx context.Context, by *auth.Principal, id int64, text, password string) (*Addendum, error) {
	if by == nil {
		return nil, errNoActor
	}
	if err := checkText("text", text, maxReportFieldLen, true); err != nil {
		return nil, err
	}
	signedOnly := func(st State) error {
		if st != Signed && st != Closed {
			return fmt.Errorf("%w: addenda are added to a signed report; the consultation is %s", ErrConflict, st)
		}
		return nil
	}
	cur, err := current(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	if err := signedOnly(cur.state); err != nil {
		return nil, err
	}
	if _, err := author(ctx, s.db, by, cur); err != nil {
		return nil, err
	}
	if err := s.checkPassword(ctx, by, id, "report.addendum", password); err != nil {
		return nil, err
	}
	var a Addendum
	err = s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := signedOnly(cur.state); err != nil {
			return err
		}
		d, err := author(ctx, tx, by, cur)
		if err != nil {
			return err
		}
		var reportSHA sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT sha256 FROM reports WHERE consultation_id = ?`, id).Scan(&reportSHA); err != nil || !reportSHA.Valid {
			return fmt.Errorf("consult: consultation %d is %s but its report is not signed (%v)", id, cur.state, err)
		}
		err = tx.QueryRowContext(ctx, `SELECT sha256 FROM report_addenda WHERE consultation_id = ?
			ORDER BY id DESC LIMIT 1`, id).Scan(&a.prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("consult: %w", err)
		}
		now := s.clock()
		a.Text, a.DoctorID, a.DoctorName, a.DoctorTitle, a.SignedAt = text, d.ID, d.name(), d.Title, now
		a.SHA256 = addendumHash(id, reportSHA.String, &a)
		err = tx.QueryRowContext(ctx, `INSERT INTO report_addenda (consultation_id, text, doctor_id, doctor_name,
			doctor_title, signed_at, prev_sha256, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			id, a.Text, a.DoctorID, a.DoctorName, a.DoctorTitle, now.UnixMilli(), a.prev, a.SHA256).Scan(&a.ID)
		if err != nil {
			return fmt.Errorf("consult: adding addendum: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE consultations SET updated_at = ? WHERE id = ?`, now.UnixMilli(), id); err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &a, s.audit(ctx, by, id, event{"report.addendum", "success", detail("addendum", a.ID, "sha256", a.SHA256)})
}

// VerifyReport recomputes the SHA-256 of a signed report and its addenda from what is stored
// and returns an error wrapping ErrTampered if any no longer matches (the triggers were
// dropped and the text edited, say). Addenda are chained, so one removed from the middle
// shows; one removed from the end does not. An unsigned report has nothing to verify:
// ErrConflict.
func (s *Service) VerifyReport(ctx context.Context, id int64) error {
	return s.read(ctx, func(tx *sql.Tx) error {
		c, err := get(ctx, tx, id)
		if err != nil {
			return err
		}
		r, err := loadReport(ctx, tx, id)
		if err != nil {
			return err
		}
		if !r.Signed() {
			return fmt.Errorf("%w: the report of consultation %d is not signed", ErrConflict, id)
		}
		if reportHash(c, r) != r.SHA256 {
			return fmt.Errorf("%w: consultation %d: the report differs from what was signed", ErrTampered, id)
		}
		prev := ""
		for i := range r.Addenda {
			a := &r.Addenda[i]
			if a.prev != prev {
				return fmt.Errorf("%w: consultation %d: addendum %d does not follow the one before it", ErrTampered, id, a.ID)
			}
			if addendumHash(id, r.SHA256, a) != a.SHA256 {
				return fmt.Errorf("%w: consultation %d: addendum %d differs from what was signed", ErrTampered, id, a.ID)
			}
			prev = a.SHA256
		}
		return nil
	})
}
