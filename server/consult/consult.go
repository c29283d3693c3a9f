// Package consult holds teleconsultations: a village clinic's request for a remote opinion from
// a county hospital's doctor, the request's state machine, and the consultation report (draft,
// signature, addenda, printable page).
//
// The package is HTTP-free and decides no permissions beyond the data rules of the domain (an
// assigned doctor must be qualified; only the assigned doctor writes and signs the report); the
// caller checks who may call what. Each change is one SQLite transaction, written to the audit
// trail after it commits.
//
// Medical records are kept at least 15 years and never purged silently: triggers refuse DELETE
// on consultations, reports and addenda, any change to a signed report or an addendum, and any
// change to the clinic's request (patient, studies, question) once stored. A signed report and
// each addendum carry a SHA-256 over a canonical encoding (see reportHash, addendumHash), so a
// change made behind the triggers' back shows in VerifyReport.
package consult

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sanping/sanping/server/auth"
)

// State is where a consultation stands.
type State string

// States of a consultation.
const (
	Requested State = "requested"
	Accepted  State = "accepted"
	Declined  State = "declined"
	Scheduled State = "scheduled"
	Live      State = "live"
	Reporting State = "reporting"
	Signed    State = "signed"
	Closed    State = "closed"
	Cancelled State = "cancelled"
)

// transitions is the one table of allowed state changes. Declined, closed and cancelled are
// final. The database enforces the same table with a trigger generated from it.
var transitions = map[State][]State{
	Requested: {Accepted, Declined, Cancelled},
	Accepted:  {Scheduled, Cancelled},
	Scheduled: {Live, Cancelled},
	Live:      {Reporting},
	Reporting: {Signed},
	Signed:    {Closed},
}

// States returns every state, in the order a consultation usually passes through them.
func States() []State {
	return []State{Requested, Accepted, Declined, Scheduled, Live, Reporting, Signed, Closed, Cancelled}
}

// CanTransition reports whether a consultation may go from one state to the other.
func CanTransition(from, to State) bool { return slices.Contains(transitions[from], to) }

// Valid reports whether s is one of the states.
func (s State) Valid() bool { return slices.Contains(States(), s) }

// Final reports whether nothing can follow s.
func (s State) Final() bool { return s.Valid() && len(transitions[s]) == 0 }

// Errors with one meaning each for the API layer.
var (
	// ErrInvalid: the input breaks a rule (HTTP 422 or 400). Validation errors are
	// *FieldError values, which wrap it.
	ErrInvalid = errors.New("invalid input")
	// ErrConflict: the consultation's state does not allow the operation (HTTP 409).
	// *TransitionError wraps it.
	ErrConflict = errors.New("conflict")
	// ErrNotFound: no such consultation, report or consent form (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrForbidden is auth.ErrForbidden, so one mapping to HTTP 403 serves both packages:
	// here it means the caller is not the consultation's assigned doctor.
	ErrForbidden = auth.ErrForbidden
	// ErrBadPassword: the password given to sign did not match (HTTP 403).
	ErrBadPassword = errors.New("wrong password")
	// ErrTampered: a signed report or addendum no longer matches its SHA-256.
	ErrTampered = errors.New("report does not match its signature")
	// ErrNotAudited: the change was committed but its audit entry could not be written
	// (HTTP 500). The change stays (a commit cannot be taken back), so the method returns
	// its result along with this error.
	ErrNotAudited = errors.New("committed but not written to the audit trail")
)

// TransitionError is a state change the table does not allow.
type TransitionError struct{ From, To State }

func (e *TransitionError) Error() string {
	return fmt.Sprintf("cannot go from %q to %q", e.From, e.To)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *TransitionError) Unwrap() error { return ErrConflict }

// FieldError is a validation failure of one input field (JSON name).
type FieldError struct{ Field, Problem string }

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Urgency is how soon the clinic needs the opinion.
type Urgency string

// Urgencies.
const (
	Routine   Urgency = "routine"
	Urgent    Urgency = "urgent"
	Emergency Urgency = "emergency"
)

// Patient identifies the patient as the clinic knows them (DICOM Patient module terms).
type Patient struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Sex       string `json:"sex"`       // "M", "F", "O" or ""
	BirthDate string `json:"birthDate"` // YYYYMMDD or ""
}

// Request is what a clinic sends to ask for a consultation.
type Request struct {
	Patient             Patient   `json:"patient"`
	StudyUIDs           []string  `json:"studyUIDs"`
	ClinicalQuestion    string    `json:"clinicalQuestion"`
	Purpose             string    `json:"purpose"`
	Urgency             Urgency   `json:"urgency"`
	Specialty           string    `json:"specialty,omitempty"`
	RequestedDoctorID   int64     `json:"requestedDoctorId,omitempty"`
	TargetInstitutionID int64     `json:"targetInstitutionId"`
	ProposedAt          time.Time `json:"proposedAt,omitzero"`
	ConsentConfirmed    bool      `json:"consentConfirmed"`
	// RecordingConsent: the patient agreed to audio/video recording of the live session.
	RecordingConsent bool `json:"recordingConsent"`
}

// Limits on request fields, in characters (runes).
const (
	maxStudies          = 20
	maxUIDLen           = 64 // PS3.5 9.1
	maxPatientIDLen     = 64 // LO
	maxPatientNameLen   = 200
	maxQuestionLen      = 4000
	maxPurposeLen       = 1000
	maxSpecialtyLen     = 100
	maxReasonLen        = 1000
	maxReportFieldLen   = 20000
	maxAttachmentName   = 255
	maxConsultationList = 1000
)

// normalize trims single-line fields and checks every rule that needs no database.
func (r *Request) normalize(now time.Time) error {
	p := &r.Patient
	p.ID = strings.TrimSpace(p.ID)
	p.Name = strings.TrimSpace(p.Name)
	r.Specialty = strings.TrimSpace(r.Specialty)
	if err := checkLine("patient.id", p.ID, maxPatientIDLen, false); err != nil {
		return err
	}
	if err := checkLine("patient.name", p.Name, maxPatientNameLen, true); err != nil {
		return err
	}
	switch p.Sex {
	case "M", "F", "O", "":
	default:
		return invalid("patient.sex", "must be M, F, O or empty")
	}
	if p.BirthDate != "" {
		d, err := time.Parse("20060102", p.BirthDate)
		if err != nil || len(p.BirthDate) != 8 {
			return invalid("patient.birthDate", "must be a date as YYYYMMDD")
		}
		if d.After(now) {
			return invalid("patient.birthDate", "is in the future")
		}
	}
	if len(r.StudyUIDs) == 0 || len(r.StudyUIDs) > maxStudies {
		return invalid("studyUIDs", "between 1 and %d studies are needed", maxStudies)
	}
	for i, uid := range r.StudyUIDs {
		if !validUID(uid) {
			return invalid("studyUIDs", "%q is not a Study Instance UID (digits and dots, at most 64)", uid)
		}
		if slices.Contains(r.StudyUIDs[:i], uid) {
			return invalid("studyUIDs", "%s is listed twice", uid)
		}
	}
	if err := checkText("clinicalQuestion", r.ClinicalQuestion, maxQuestionLen, true); err != nil {
		return err
	}
	if err := checkText("purpose", r.Purpose, maxPurposeLen, true); err != nil {
		return err
	}
	switch r.Urgency {
	case Routine, Urgent, Emergency:
	case "":
		return invalid("urgency", "required")
	default:
		return invalid("urgency", "must be routine, urgent or emergency")
	}
	if err := checkLine("specialty", r.Specialty, maxSpecialtyLen, false); err != nil {
		return err
	}
	if r.RequestedDoctorID < 0 {
		return invalid("requestedDoctorId", "must not be negative")
	}
	if r.TargetInstitutionID <= 0 {
		return invalid("targetInstitutionId", "required")
	}
	if !r.ConsentConfirmed {
		return invalid("consentConfirmed", "informed consent must be confirmed")
	}
	return nil
}

// validUID accepts dot-separated digit components (PS3.5 9.1). Leading zeros, which the
// standard forbids, are let through: some modalities in the field produce them.
func validUID(uid string) bool {
	if uid == "" || len(uid) > maxUIDLen {
		return false
	}
	for part := range strings.SplitSeq(uid, ".") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return true
}

// checkText checks free text: valid UTF-8, no NUL or other control characters but line
// breaks and tabs, at most limit runes, and not blank when required.
func checkText(field, v string, limit int, required bool) error {
	if !utf8.ValidString(v) {
		return invalid(field, "not valid UTF-8")
	}
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) {
		return invalid(field, "contains control characters")
	}
	if required && strings.TrimSpace(v) == "" {
		return invalid(field, "required")
	}
	if n := utf8.RuneCountInString(v); n > limit {
		return invalid(field, "%d characters, at most %d allowed", n, limit)
	}
	return nil
}

// checkLine is checkText for single-line values.
func checkLine(field, v string, limit int, required bool) error {
	if strings.ContainsAny(v, "\r\n\t") {
		return invalid(field, "must be one line")
	}
	return checkText(field, v, limit, required)
}

// Attachment describes a stored file.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

// LiveSession is one period of live consultation; End is zero while it runs.
type LiveSession struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// Consultation is a request and where it stands.
type Consultation struct {
	ID    int64 `json:"id"`
	State State `json:"state"`
	Request
	RequestingInstitutionID int64  `json:"requestingInstitutionId"`
	RequestedBy             int64  `json:"requestedBy"` // user id
	RequestedByName         string `json:"requestedByName"`
	AssignedDoctorID        int64  `json:"assignedDoctorId,omitempty"`
	// ScheduledAt is zero when no time is set.
	ScheduledAt   time.Time   `json:"scheduledAt,omitzero"`
	DeclineReason string      `json:"declineReason,omitempty"`
	CancelReason  string      `json:"cancelReason,omitempty"`
	ConsentForm   *Attachment `json:"consentForm,omitempty"`
	// Participants are invited users besides the requesting institution's staff and the
	// assigned doctor, in user id order.
	Participants []int64       `json:"participants"`
	CreatedAt    time.Time     `json:"createdAt"`
	UpdatedAt    time.Time     `json:"updatedAt"`
	Sessions     []LiveSession `json:"sessions"`
}

// Doctor is a user as the consultation rules see them.
type Doctor struct {
	ID            int64  `json:"id"`
	Username      string `json:"username"`
	DisplayName   string `json:"displayName"`
	Title         string `json:"title"` // professional title (职称), e.g. 主治医师
	Specialty     string `json:"specialty"`
	PracticeYears int    `json:"practiceYears"`
	InstitutionID int64  `json:"institutionId"`
	IsDoctor      bool   `json:"isDoctor"` // holds role doctor
}

// minPracticeYears: the telemedicine rules ask for an invited doctor with a professional
// title and at least this many years of practice.
const minPracticeYears = 3

// CheckQualification says why d may not be assigned to a consultation asked of the given
// institution, or returns nil.
func (d *Doctor) CheckQualification(institutionID int64) error {
	switch {
	case !d.IsDoctor:
		return invalid("doctorId", "user %d is not a doctor", d.ID)
	case d.InstitutionID != institutionID:
		return invalid("doctorId", "doctor %d does not belong to the institution asked (%d)", d.ID, institutionID)
	case strings.TrimSpace(d.Title) == "":
		return invalid("doctorId", "doctor %d has no professional title on record; one is required to consult", d.ID)
	case d.PracticeYears < minPracticeYears:
		return invalid("doctorId", "doctor %d has %d years of practice; at least %d are required to consult",
			d.ID, d.PracticeYears, minPracticeYears)
	}
	return nil
}

// name is how the doctor signs: the display name, else the username.
func (d *Doctor) name() string {
	if d.DisplayName != "" {
		return d.DisplayName
	}
	return d.Username
}
