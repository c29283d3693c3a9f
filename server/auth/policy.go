package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Action is what a route does, as far as authorization is concerned. Every route names one
// (Route.Action); Check decides it for a principal and the route's object.
type Action string

// Actions.
const (
	ActPublic    Action = "public"    // no sign-in: the login page, health check, static files
	ActSelf      Action = "self"      // any signed-in caller about itself: session, logout, password
	ActDirectory Action = "directory" // any signed-in caller: institution and doctor lists (no patient data)

	ActStudySearch Action = "study.search" // QIDO: results scoped by StudyScope
	ActStudyRead   Action = "study.read"   // WADO, metadata, rendered: the study must be visible
	ActStudyUpload Action = "study.upload" // STOW: stored as the caller's institution's

	ActConsultList    Action = "consultation.list"    // scoped by ConsultationScope
	ActConsultCreate  Action = "consultation.create"  // clinic staff of an institution
	ActConsultRead    Action = "consultation.read"    // a visible consultation, its report, consent form
	ActConsultRespond Action = "consultation.respond" // accept, decline, schedule: the asked hospital's doctors
	ActConsultRun     Action = "consultation.run"     // start and finish the live session: the assigned doctor
	ActConsultCancel  Action = "consultation.cancel"  // requesting clinic, asked hospital's doctors
	ActConsultClose   Action = "consultation.close"   // requesting clinic, assigned doctor
	ActConsultInvite  Action = "consultation.invite"  // requesting clinic, assigned doctor
	ActConsentUpload  Action = "consultation.consent" // requesting clinic
	ActReportWrite    Action = "report.write"         // draft, sign, addendum: the assigned doctor only

	ActLocalGrantVerify Action = "localgrant.verify" // a station's API token checks a local read grant (its study's institution: the handler)

	ActAdmin Action = "admin" // users, institutions, tokens, the audit trail, session logs

	// ActStationReport: a station reporting its queue and spool, with its own API token; no
	// person's session, whatever the role.
	ActStationReport Action = "station.report"
)

// Object is what a route acts on, from its path.
type Object struct {
	Kind string // "study", "consultation", or "" for none
	ID   int64
	UID  string
}

// Study and Consultation name objects.
func Study(uid string) Object      { return Object{Kind: "study", UID: uid} }
func Consultation(id int64) Object { return Object{Kind: "consultation", ID: id} }
func (o Object) String() string {
	switch o.Kind {
	case "study":
		return "study:" + o.UID
	case "consultation":
		return fmt.Sprintf("consultation:%d", o.ID)
	}
	return ""
}

// ConsultationFacts is what the policy needs to know about a consultation.
type ConsultationFacts struct {
	RequestingInstitution, TargetInstitution, AssignedDoctor int64
	Participant                                              bool // the principal is an invited participant
}

// Check is the one authorization check. It returns nil, ErrForbidden (the role may not do
// this: 403), or ErrHidden (the object is not visible to the caller, or does not exist: 404,
// so another institution's patient data is never confirmed to exist).
func (s *Service) Check(ctx context.Context, p *Principal, act Action, obj Object) error {
	if act == ActPublic {
		return nil
	}
	if p == nil {
		return ErrUnauthenticated
	}
	admin, doctor, clinic := p.HasRole(RoleAdmin), p.HasRole(RoleDoctor), p.HasRole(RoleClinic)
	switch act {
	case ActSelf, ActDirectory:
		return nil
	case ActAdmin:
		return allow(admin)
	case ActStationReport:
		return allow(p.Method == "token" && p.TokenID != 0)
	case ActStudySearch, ActStudyUpload, ActConsultList:
		return allow(admin || doctor || clinic)
	case ActConsultCreate:
		return allow(clinic && p.InstitutionID != 0)
	case ActLocalGrantVerify:
		return allow(p.Method == "token" && clinic && p.InstitutionID != 0)
	case ActStudyRead:
		if admin {
			return nil
		}
		return s.studyVisible(ctx, p, obj.UID)
	}
	if obj.Kind != "consultation" {
		return fmt.Errorf("authorization: action %s needs a consultation", act)
	}
	f, err := s.consultationFacts(ctx, p, obj.ID)
	if err != nil {
		return err
	}
	return DecideConsultation(p, act, f)
}

func allow(ok bool) error {
	if ok {
		return nil
	}
	return ErrForbidden
}

// DecideConsultation is the rule for actions on one consultation, given the facts.
func DecideConsultation(p *Principal, act Action, f ConsultationFacts) error {
	admin, doctor, clinic := p.HasRole(RoleAdmin), p.HasRole(RoleDoctor), p.HasRole(RoleClinic)
	inst := p.InstitutionID
	requester := clinic && inst != 0 && f.RequestingInstitution == inst
	worklist := doctor && inst != 0 && f.TargetInstitution == inst
	assigned := doctor && p.UserID != 0 && f.AssignedDoctor == p.UserID
	if !(admin || requester || worklist || assigned || f.Participant) {
		return ErrHidden
	}
	switch act {
	case ActConsultRead:
		return nil
	case ActConsultRespond:
		return allow(admin || worklist)
	case ActConsultRun:
		return allow(admin || assigned)
	case ActConsultCancel:
		return allow(admin || requester || worklist)
	case ActConsultClose, ActConsultInvite:
		return allow(admin || requester || assigned)
	case ActConsentUpload:
		return allow(admin || requester)
	case ActReportWrite:
		return allow(assigned) // a report is the assigned doctor's, not an admin's
	}
	return ErrForbidden
}

func (s *Service) consultationFacts(ctx context.Context, p *Principal, id int64) (ConsultationFacts, error) {
	var f ConsultationFacts
	err := s.db.QueryRowContext(ctx, `SELECT requesting_institution_id, target_institution_id, assigned_doctor_id,
		EXISTS (SELECT 1 FROM consultation_participants WHERE consultation_id = c.id AND user_id = ?2 AND ?2 != 0)
		FROM consultations c WHERE id = ?1`, id, p.UserID).
		Scan(&f.RequestingInstitution, &f.TargetInstitution, &f.AssignedDoctor, &f.Participant)
	if errors.Is(err, sql.ErrNoRows) {
		return f, ErrHidden
	}
	if err != nil {
		return f, fmt.Errorf("authorization: reading consultation %d: %w", id, err)
	}
	return f, nil
}

// ConsultationScope is the SQL condition (over consultations aliased c) that selects the
// consultations p may see; the same rule as DecideConsultation's visibility.
func ConsultationScope(p *Principal) (string, []any) {
	if p.HasRole(RoleAdmin) {
		return "1 = 1", nil
	}
	cond := `(c.id IN (SELECT consultation_id FROM consultation_participants WHERE user_id = ? AND user_id != 0)`
	args := []any{p.UserID}
	if p.HasRole(RoleClinic) && p.InstitutionID != 0 {
		cond += ` OR c.requesting_institution_id = ?`
		args = append(args, p.InstitutionID)
	}
	if p.HasRole(RoleDoctor) {
		if p.InstitutionID != 0 {
			cond += ` OR c.target_institution_id = ?`
			args = append(args, p.InstitutionID)
		}
		if p.UserID != 0 {
			cond += ` OR c.assigned_doctor_id = ?`
			args = append(args, p.UserID)
		}
	}
	return cond + ")", args
}

// StudyScope is the SQL condition (over studies aliased st) that selects the studies p may
// see: its institution's own, and those attached to consultations it may see.
func StudyScope(p *Principal) (string, []any) {
	if p.HasRole(RoleAdmin) {
		return "1 = 1", nil
	}
	cc, ca := ConsultationScope(p)
	cond := `(st.study_uid IN (SELECT cs.study_uid FROM consultation_studies cs JOIN consultations c ON c.id = cs.consultation_id WHERE ` + cc + `)`
	args := ca
	if p.InstitutionID != 0 && (p.HasRole(RoleClinic) || p.HasRole(RoleDoctor)) {
		cond += ` OR st.institution_id = ?`
		args = append(args, p.InstitutionID)
	}
	return cond + ")", args
}

// studyVisible is StudyScope for one study, written so each branch is an index lookup on the
// study UID (the IN form of StudyScope would list a whole worklist's studies per request).
func (s *Service) studyVisible(ctx context.Context, p *Principal, uid string) error {
	cc, ca := ConsultationScope(p)
	q := `SELECT EXISTS (SELECT 1 FROM consultation_studies cs JOIN consultations c ON c.id = cs.consultation_id
		WHERE cs.study_uid = ? AND ` + cc + `)`
	args := append([]any{uid}, ca...)
	if p.InstitutionID != 0 && (p.HasRole(RoleClinic) || p.HasRole(RoleDoctor)) {
		q += ` OR EXISTS (SELECT 1 FROM studies st WHERE st.study_uid = ? AND st.institution_id = ?)`
		args = append(args, uid, p.InstitutionID)
	}
	var ok bool
	if err := s.db.QueryRowContext(ctx, q, args...).Scan(&ok); err != nil {
		return fmt.Errorf("authorization: study %s: %w", uid, err)
	}
	if !ok {
		return ErrHidden
	}
	return nil
}
