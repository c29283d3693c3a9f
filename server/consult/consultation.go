package consult

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sanping/sanping/server/auth"
)

// Create stores a clinic's request in state requested. The requesting institution is the one
// by acts for.
func (s *Service) Create(ctx context.Context, by *auth.Principal, req Request) (*Consultation, error) {
	if by == nil {
		return nil, errNoActor
	}
	if by.InstitutionID == 0 {
		return nil, invalid("requestingInstitutionId", "the requester acts for no institution")
	}
	now := s.clock()
	if err := req.normalize(now); err != nil {
		return nil, err
	}
	name := by.DisplayName
	if name == "" {
		name = by.Username
	}
	var c *Consultation
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM institutions WHERE id = ?`, req.TargetInstitutionID).Scan(new(int))
		if errors.Is(err, sql.ErrNoRows) {
			return invalid("targetInstitutionId", "no institution %d", req.TargetInstitutionID)
		}
		if err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		if req.RequestedDoctorID != 0 {
			d, err := lookupDoctor(ctx, tx, req.RequestedDoctorID)
			if errors.Is(err, ErrNotFound) || err == nil && (!d.IsDoctor || d.InstitutionID != req.TargetInstitutionID) {
				return invalid("requestedDoctorId", "user %d is not a doctor of institution %d",
					req.RequestedDoctorID, req.TargetInstitutionID)
			}
			if err != nil {
				return err
			}
		}
		p := req.Patient
		var id int64
		err = tx.QueryRowContext(ctx, `INSERT INTO consultations (state, requesting_institution_id,
			target_institution_id, requested_by, requested_by_name, patient_id, patient_name,
			patient_sex, patient_birth_date, clinical_question, purpose, urgency, specialty,
			requested_doctor_id, proposed_at, consent_confirmed, recording_consent, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			string(Requested), by.InstitutionID, req.TargetInstitutionID, by.UserID, name, p.ID, p.Name,
			p.Sex, p.BirthDate, req.ClinicalQuestion, req.Purpose, string(req.Urgency), req.Specialty,
			req.RequestedDoctorID, nullMillis(req.ProposedAt), req.ConsentConfirmed, req.RecordingConsent,
			now.UnixMilli(), now.UnixMilli()).Scan(&id)
		if err != nil {
			return fmt.Errorf("consult: storing request: %w", err)
		}
		for _, uid := range req.StudyUIDs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO consultation_studies (consultation_id, study_uid) VALUES (?, ?)`,
				id, uid); err != nil {
				return fmt.Errorf("consult: storing request: %w", err)
			}
		}
		c, err = get(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, s.audit(ctx, by, c.ID, event{"consultation.request", "success", detail(
		"target", req.TargetInstitutionID, "urgency", string(req.Urgency), "studies", len(req.StudyUIDs))})
}

// Get returns a consultation.
func (s *Service) Get(ctx context.Context, id int64) (*Consultation, error) {
	var c *Consultation
	err := s.read(ctx, func(tx *sql.Tx) (err error) {
		c, err = get(ctx, tx, id)
		return err
	})
	return c, err
}

func get(ctx context.Context, q queryer, id int64) (*Consultation, error) {
	cs, err := load(ctx, q, `c.id = ?`, "", id)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w: consultation %d", ErrNotFound, id)
	}
	return &cs[0], nil
}

// ListFilter selects consultations. Zero values do not filter.
type ListFilter struct {
	// Scope is an SQL boolean expression over alias c (the consultations table), with its
	// arguments, from the authorization code: it limits the list to what the caller may
	// see. It is trusted SQL and must never be built from user input.
	Scope     string
	ScopeArgs []any
	State     State
	// Since (inclusive) and Until (exclusive) bound CreatedAt.
	Since, Until time.Time
	// InstitutionID matches the requesting or the target institution.
	InstitutionID int64
	// DoctorID matches the assigned doctor.
	DoctorID int64
	// Patient matches a substring of the patient's ID or name.
	Patient string
	// Live keeps consultations that have had a live session; Since and Until then bound
	// the start of one of their sessions instead of CreatedAt.
	Live bool
	// Limit 0 means 100; at most 1000 are returned.
	Limit, Offset int
}

// page is a list's WHERE clause (its conditions joined, "1" for none) and its limit (def when
// 0, at most maxConsultationList); a negative limit or offset is refused.
func page(conds []string, limit, offset, def int) (string, int, error) {
	if limit < 0 || offset < 0 {
		return "", 0, invalid("limit", "limit and offset must not be negative")
	}
	if limit == 0 {
		limit = def
	}
	where := "1"
	if len(conds) > 0 {
		where = strings.Join(conds, " AND ")
	}
	return where, min(limit, maxConsultationList), nil
}

// List returns consultations, newest first.
func (s *Service) List(ctx context.Context, f ListFilter) ([]Consultation, error) {
	var conds []string
	var args []any
	if f.Scope != "" {
		conds = append(conds, "("+f.Scope+")")
		args = append(args, f.ScopeArgs...)
	}
	if f.State != "" {
		if !f.State.Valid() {
			return nil, invalid("state", "unknown state %q", f.State)
		}
		conds = append(conds, "c.state = ?")
		args = append(args, string(f.State))
	}
	if f.Live {
		live := "EXISTS (SELECT 1 FROM consultation_sessions s WHERE s.consultation_id = c.id"
		if !f.Since.IsZero() {
			live += " AND s.started_at >= ?"
			args = append(args, f.Since.UnixMilli())
		}
		if !f.Until.IsZero() {
			live += " AND s.started_at < ?"
			args = append(args, f.Until.UnixMilli())
		}
		conds = append(conds, live+")")
	} else {
		if !f.Since.IsZero() {
			conds = append(conds, "c.created_at >= ?")
			args = append(args, f.Since.UnixMilli())
		}
		if !f.Until.IsZero() {
			conds = append(conds, "c.created_at < ?")
			args = append(args, f.Until.UnixMilli())
		}
	}
	if f.Patient != "" {
		// instr, not LIKE: a % or _ in the search is literal.
		conds = append(conds, "(instr(lower(c.patient_id), lower(?)) > 0 OR instr(lower(c.patient_name), lower(?)) > 0)")
		args = append(args, f.Patient, f.Patient)
	}
	if f.InstitutionID != 0 {
		conds = append(conds, "(c.requesting_institution_id = ? OR c.target_institution_id = ?)")
		args = append(args, f.InstitutionID, f.InstitutionID)
	}
	if f.DoctorID != 0 {
		conds = append(conds, "c.assigned_doctor_id = ?")
		args = append(args, f.DoctorID)
	}
	where, limit, err := page(conds, f.Limit, f.Offset, 100)
	if err != nil {
		return nil, err
	}
	var cs []Consultation
	err = s.read(ctx, func(tx *sql.Tx) (err error) {
		cs, err = load(ctx, tx, where, ` ORDER BY c.created_at DESC, c.id DESC LIMIT ? OFFSET ?`,
			append(args, limit, f.Offset)...)
		return err
	})
	return cs, err
}

// snapshot is what the state rules need of a consultation row.
type snapshot struct {
	state       State
	target      int64
	assigned    int64
	scheduledAt time.Time
}

func current(ctx context.Context, q queryer, id int64) (snapshot, error) {
	var r snapshot
	var at sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT state, target_institution_id, assigned_doctor_id, scheduled_at
		FROM consultations WHERE id = ?`, id).Scan(&r.state, &r.target, &r.assigned, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%w: consultation %d", ErrNotFound, id)
	}
	if err != nil {
		return r, fmt.Errorf("consult: %w", err)
	}
	r.scheduledAt = nullTime(at)
	return r, nil
}

// setState moves consultation id from one state to another if the table allows it, setting
// the extra columns of set (", col = ?" pairs) from args. The WHERE on the old state makes
// the change conditional on the state the caller read, whatever the transaction mode.
func setState(ctx context.Context, tx *sql.Tx, id int64, from, to State, now time.Time, set string, args ...any) error {
	if !CanTransition(from, to) {
		return &TransitionError{From: from, To: to}
	}
	args = append([]any{string(to), now.UnixMilli()}, args...)
	res, err := tx.ExecContext(ctx, `UPDATE consultations SET state = ?, updated_at = ?`+set+
		` WHERE id = ? AND state = ?`, append(args, id, string(from))...)
	if err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("consult: %w", err)
	} else if n != 1 {
		return &TransitionError{From: from, To: to}
	}
	return nil
}

// move is one transition to state to, with then run in the same transaction after it.
func (s *Service) move(ctx context.Context, by *auth.Principal, id int64, to State, action string,
	then func(tx *sql.Tx, now time.Time) error, kv ...any) (*Consultation, error) {
	if by == nil {
		return nil, errNoActor
	}
	var c *Consultation
	var from State
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		from = cur.state
		now := s.clock()
		if err := setState(ctx, tx, id, from, to, now, ""); err != nil {
			return err
		}
		if then != nil {
			if err := then(tx, now); err != nil {
				return err
			}
		}
		c, err = get(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.onTransition != nil {
		s.onTransition(id, from, to)
	}
	return c, s.audit(ctx, by, id, transitionEvent(action, from, to, kv...))
}

// Accept assigns a qualified doctor of the target institution (requested -> accepted) and,
// when scheduledAt is set, schedules the session in the same transaction (-> scheduled).
func (s *Service) Accept(ctx context.Context, by *auth.Principal, id, doctorID int64, scheduledAt time.Time) (*Consultation, error) {
	if by == nil {
		return nil, errNoActor
	}
	if doctorID <= 0 {
		return nil, invalid("doctorId", "required")
	}
	var c *Consultation
	var events []event
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		if !CanTransition(cur.state, Accepted) {
			return &TransitionError{From: cur.state, To: Accepted}
		}
		d, err := lookupDoctor(ctx, tx, doctorID)
		if errors.Is(err, ErrNotFound) {
			return invalid("doctorId", "no user %d", doctorID)
		}
		if err != nil {
			return err
		}
		if err := d.CheckQualification(cur.target); err != nil {
			return err
		}
		now := s.clock()
		if err := setState(ctx, tx, id, cur.state, Accepted, now, `, assigned_doctor_id = ?`, doctorID); err != nil {
			return err
		}
		events = append(events, transitionEvent("consultation.accept", cur.state, Accepted, "doctor", doctorID))
		if !scheduledAt.IsZero() {
			at := fromMillis(scheduledAt.UnixMilli())
			if err := setState(ctx, tx, id, Accepted, Scheduled, now, `, scheduled_at = ?`, at.UnixMilli()); err != nil {
				return err
			}
			events = append(events, transitionEvent("consultation.schedule", Accepted, Scheduled, "at", at))
		}
		c, err = get(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, s.audit(ctx, by, id, events...)
}

// Decline refuses a request (requested -> declined); the reason is required.
func (s *Service) Decline(ctx context.Context, by *auth.Principal, id int64, reason string) (*Consultation, error) {
	if err := checkText("reason", reason, maxReasonLen, true); err != nil {
		return nil, err
	}
	return s.move(ctx, by, id, Declined, "consultation.decline", func(tx *sql.Tx, _ time.Time) error {
		_, err := tx.ExecContext(ctx, `UPDATE consultations SET decline_reason = ? WHERE id = ?`, reason, id)
		return err
	}, "reason", reason)
}

// Cancel ends a consultation before it goes live; the reason is required.
func (s *Service) Cancel(ctx context.Context, by *auth.Principal, id int64, reason string) (*Consultation, error) {
	if err := checkText("reason", reason, maxReasonLen, true); err != nil {
		return nil, err
	}
	return s.move(ctx, by, id, Cancelled, "consultation.cancel", func(tx *sql.Tx, _ time.Time) error {
		_, err := tx.ExecContext(ctx, `UPDATE consultations SET cancel_reason = ? WHERE id = ?`, reason, id)
		return err
	}, "reason", reason)
}

// Schedule sets the session time (accepted -> scheduled), or changes it while scheduled
// (audited as consultation.reschedule).
func (s *Service) Schedule(ctx context.Context, by *auth.Principal, id int64, at time.Time) (*Consultation, error) {
	if by == nil {
		return nil, errNoActor
	}
	if at.IsZero() {
		return nil, invalid("scheduledAt", "required")
	}
	at = fromMillis(at.UnixMilli())
	var c *Consultation
	var ev event
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		now := s.clock()
		if cur.state == Scheduled {
			res, err := tx.ExecContext(ctx, `UPDATE consultations SET scheduled_at = ?, updated_at = ?
				WHERE id = ? AND state = ?`, at.UnixMilli(), now.UnixMilli(), id, string(Scheduled))
			if err != nil {
				return fmt.Errorf("consult: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return fmt.Errorf("consult: rescheduling %d: %d rows, %v", id, n, err)
			}
			ev = event{"consultation.reschedule", "success", detail("from", cur.scheduledAt, "to", at)}
		} else {
			if err := setState(ctx, tx, id, cur.state, Scheduled, now, `, scheduled_at = ?`, at.UnixMilli()); err != nil {
				return err
			}
			ev = transitionEvent("consultation.schedule", cur.state, Scheduled, "at", at)
		}
		c, err = get(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, s.audit(ctx, by, id, ev)
}

// Start opens the live session (scheduled -> live).
func (s *Service) Start(ctx context.Context, by *auth.Principal, id int64) (*Consultation, error) {
	return s.move(ctx, by, id, Live, "consultation.start", func(tx *sql.Tx, now time.Time) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO consultation_sessions (consultation_id, started_at) VALUES (?, ?)`,
			id, now.UnixMilli())
		return err
	})
}

// Finish ends the live session (live -> reporting).
func (s *Service) Finish(ctx context.Context, by *auth.Principal, id int64) (*Consultation, error) {
	return s.move(ctx, by, id, Reporting, "consultation.finish", func(tx *sql.Tx, now time.Time) error {
		_, err := tx.ExecContext(ctx, `UPDATE consultation_sessions SET ended_at = ?
			WHERE consultation_id = ? AND ended_at IS NULL`, now.UnixMilli(), id)
		return err
	})
}

// Close files a consultation whose report is signed (signed -> closed).
func (s *Service) Close(ctx context.Context, by *auth.Principal, id int64) (*Consultation, error) {
	return s.move(ctx, by, id, Closed, "consultation.close", nil)
}

// AddParticipant invites a user to the consultation. Adding someone already invited changes
// nothing and writes no audit entry. A consultation that is over (declined, cancelled,
// closed) takes no new participants: being one gives access to the patient's studies.
func (s *Service) AddParticipant(ctx context.Context, by *auth.Principal, id, userID int64) (*Consultation, error) {
	if by == nil {
		return nil, errNoActor
	}
	if userID <= 0 {
		return nil, invalid("userId", "required")
	}
	var c *Consultation
	var added bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := current(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur.state.Final() {
			return fmt.Errorf("%w: the consultation is %s and takes no new participants", ErrConflict, cur.state)
		}
		err = tx.QueryRowContext(ctx, `SELECT 1 FROM users WHERE pk = ?`, userID).Scan(new(int))
		if errors.Is(err, sql.ErrNoRows) {
			return invalid("userId", "no user %d", userID)
		}
		if err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		now := s.clock()
		res, err := tx.ExecContext(ctx, `INSERT INTO consultation_participants (consultation_id, user_id, added_by, added_at)
			VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, id, userID, by.UserID, now.UnixMilli())
		if err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("consult: %w", err)
		}
		if added = n == 1; added {
			if _, err := tx.ExecContext(ctx, `UPDATE consultations SET updated_at = ? WHERE id = ?`, now.UnixMilli(), id); err != nil {
				return fmt.Errorf("consult: %w", err)
			}
		}
		c, err = get(ctx, tx, id)
		return err
	})
	if err != nil || !added {
		return c, err
	}
	return c, s.audit(ctx, by, id, event{"consultation.participant.add", "success", detail("user", userID)})
}

// The users table belongs to auth; columns it may lack values for read as empty.
const doctorColumns = `pk, COALESCE(username, ''), COALESCE(display_name, ''), COALESCE(title, ''),
	COALESCE(specialty, ''), COALESCE(practice_years, 0), COALESCE(institution_id, 0), COALESCE(roles, '')`

type scanner interface{ Scan(dest ...any) error }

func scanDoctor(sc scanner) (*Doctor, error) {
	var d Doctor
	var roles string
	if err := sc.Scan(&d.ID, &d.Username, &d.DisplayName, &d.Title, &d.Specialty, &d.PracticeYears,
		&d.InstitutionID, &roles); err != nil {
		return nil, err
	}
	d.IsDoctor = slices.ContainsFunc(strings.Split(roles, ","), func(r string) bool {
		return strings.TrimSpace(r) == auth.RoleDoctor
	})
	return &d, nil
}

func lookupDoctor(ctx context.Context, q queryer, id int64) (*Doctor, error) {
	d, err := scanDoctor(q.QueryRowContext(ctx, `SELECT `+doctorColumns+` FROM users WHERE pk = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: user %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("consult: looking up user %d: %w", id, err)
	}
	return d, nil
}

// Doctor returns user id as the consultation rules see them (IsDoctor false for a user
// without role doctor).
func (s *Service) Doctor(ctx context.Context, id int64) (*Doctor, error) {
	return lookupDoctor(ctx, s.db, id)
}

// Doctors lists the users with role doctor of an institution, qualified or not (see
// CheckQualification), by name.
func (s *Service) Doctors(ctx context.Context, institutionID int64) ([]Doctor, error) {
	ds := []Doctor{}
	err := eachRow(ctx, s.db, `SELECT `+doctorColumns+` FROM users WHERE institution_id = ?
		ORDER BY display_name, pk`, []any{institutionID}, func(rows *sql.Rows) error {
		d, err := scanDoctor(rows)
		if err == nil && d.IsDoctor {
			ds = append(ds, *d)
		}
		return err
	})
	return ds, err
}
