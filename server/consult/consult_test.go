package consult_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/store"
)

// clock advances a second on every reading, so each change gets its own time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

var t0 = time.Date(2025, 3, 14, 9, 26, 5, 358_979_323, time.UTC)

const password = "correct horse battery staple"

// passwordHash is computed once: argon2id costs tens of milliseconds, more under -race.
var passwordHash = sync.OnceValue(func() string { return auth.HashPassword(password) })

// The users and institutions tables belong to other packages; these have the columns
// consult reads.
const othersSchema = `
CREATE TABLE users (
	pk INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
	roles TEXT NOT NULL DEFAULT '', display_name TEXT, title TEXT, specialty TEXT,
	practice_years INTEGER, institution_id INTEGER);
CREATE TABLE institutions (id INTEGER PRIMARY KEY, name TEXT, code TEXT);
INSERT INTO institutions (id, name, code) VALUES
	(1, '平果市新安镇卫生院', 'XA'), (2, '平果市人民医院', 'PGRM'), (3, '百色市人民医院', 'BSRM');
`

// Users, by id.
const (
	clinicUser   = 1 // clinic staff at institution 1
	doctorUser   = 2 // qualified doctor at institution 2
	juniorUser   = 3 // 2 years of practice
	untitledUser = 4 // no title
	awayUser     = 5 // doctor at institution 3
	nurseUser    = 6 // not a doctor, at institution 2
	adminUser    = 7 // admin and qualified doctor at institution 2
)

type env struct {
	t     *testing.T
	ctx   context.Context
	db    *sql.DB
	svc   *consult.Service
	trail *audit.Log
	dir   string
	clock *clock

	clinic, doctor, admin *auth.Principal
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := store.OpenDB(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, othersSchema); err != nil {
		t.Fatal(err)
	}
	users := []struct {
		id                    int64
		username, roles, name string
		title                 string
		years, institution    int
	}{
		{clinicUser, "lan", "clinic", "蓝秀英", "", 0, 1},
		{doctorUser, "huang", "doctor", "黄志强", "主任医师", 22, 2},
		{juniorUser, "li", "doctor", "李明", "住院医师", 2, 2},
		{untitledUser, "zhao", "doctor", "赵刚", "", 10, 2},
		{awayUser, "chen", "doctor", "陈静", "主治医师", 8, 3},
		{nurseUser, "wu", "clinic", "吴芳", "主管护师", 15, 2},
		{adminUser, "root", "admin, doctor", "覃海", "副主任医师", 18, 2},
	}
	for _, u := range users {
		if _, err := db.ExecContext(ctx, `INSERT INTO users (pk, username, password_hash, roles, display_name,
			title, specialty, practice_years, institution_id) VALUES (?, ?, ?, ?, ?, ?, '放射科', ?, ?)`,
			u.id, u.username, passwordHash(), u.roles, u.name, u.title, u.years, u.institution); err != nil {
			t.Fatal(err)
		}
	}
	c := &clock{t: t0}
	trail, err := audit.Open(ctx, db, c.now)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := consult.New(ctx, db, trail, dir, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return &env{
		t: t, ctx: ctx, db: db, svc: svc, trail: trail, dir: dir, clock: c,
		clinic: &auth.Principal{UserID: clinicUser, Username: "lan", DisplayName: "蓝秀英", Roles: []string{"clinic"},
			InstitutionID: 1, InstitutionCode: "XA"},
		doctor: &auth.Principal{UserID: doctorUser, Username: "huang", DisplayName: "黄志强", Roles: []string{"doctor"},
			InstitutionID: 2, InstitutionCode: "PGRM"},
		admin: &auth.Principal{UserID: adminUser, Username: "root", Roles: []string{"admin", "doctor"},
			InstitutionID: 2, InstitutionCode: "PGRM"},
	}
}

func request() consult.Request {
	return consult.Request{
		Patient:             consult.Patient{ID: "GX0451203", Name: "韦东平", Sex: "M", BirthDate: "19650302"},
		StudyUIDs:           []string{"1.2.840.113619.2.55.3.604688119.2", "1.2.840.113619.2.55.3.604688119.1"},
		ClinicalQuestion:    "右下肺结节，性质待定。\n既往吸烟史三十年。",
		Purpose:             "明确诊断，指导治疗",
		Urgency:             consult.Urgent,
		Specialty:           "放射科",
		TargetInstitutionID: 2,
		ConsentConfirmed:    true,
		RecordingConsent:    true,
	}
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) create() int64 {
	e.t.Helper()
	c, err := e.svc.Create(e.ctx, e.clinic, request())
	e.must(err)
	return c.ID
}

// inState makes a consultation and walks it to st through the service.
func (e *env) inState(st consult.State) int64 {
	e.t.Helper()
	id := e.create()
	path := map[consult.State][]consult.State{
		consult.Requested: {},
		consult.Accepted:  {consult.Accepted},
		consult.Declined:  {consult.Declined},
		consult.Cancelled: {consult.Cancelled},
		consult.Scheduled: {consult.Accepted, consult.Scheduled},
		consult.Live:      {consult.Accepted, consult.Scheduled, consult.Live},
		consult.Reporting: {consult.Accepted, consult.Scheduled, consult.Live, consult.Reporting},
		consult.Signed:    {consult.Accepted, consult.Scheduled, consult.Live, consult.Reporting, consult.Signed},
		consult.Closed:    {consult.Accepted, consult.Scheduled, consult.Live, consult.Reporting, consult.Signed, consult.Closed},
	}[st]
	for _, step := range path {
		var err error
		switch step {
		case consult.Accepted:
			_, err = e.svc.Accept(e.ctx, e.admin, id, doctorUser, time.Time{})
		case consult.Declined:
			_, err = e.svc.Decline(e.ctx, e.admin, id, "超出本院诊疗范围")
		case consult.Cancelled:
			_, err = e.svc.Cancel(e.ctx, e.clinic, id, "患者已转院")
		case consult.Scheduled:
			_, err = e.svc.Schedule(e.ctx, e.admin, id, t0.Add(24*time.Hour))
		case consult.Live:
			_, err = e.svc.Start(e.ctx, e.doctor, id)
		case consult.Reporting:
			_, err = e.svc.Finish(e.ctx, e.doctor, id)
		case consult.Signed:
			if _, err = e.svc.SaveDraft(e.ctx, e.doctor, id, "右下肺见8mm实性结节。", "考虑良性结节可能大。", "三个月后复查CT。"); err == nil {
				_, err = e.svc.Sign(e.ctx, e.doctor, id, password)
			}
		case consult.Closed:
			_, err = e.svc.Close(e.ctx, e.clinic, id)
		}
		if err != nil {
			e.t.Fatalf("walking consultation %d to %s: step %s: %v", id, st, step, err)
		}
	}
	return id
}

func (e *env) entries(id int64) []audit.Entry {
	e.t.Helper()
	all, err := e.trail.List(e.ctx, audit.Filter{})
	e.must(err)
	object := fmt.Sprintf("consultation:%d", id)
	var out []audit.Entry
	for _, en := range all {
		if en.Object == object {
			out = append(out, en)
		}
	}
	return out
}

func (e *env) auditLen() int {
	e.t.Helper()
	all, err := e.trail.List(e.ctx, audit.Filter{})
	e.must(err)
	return len(all)
}

func (e *env) get(id int64) *consult.Consultation {
	e.t.Helper()
	c, err := e.svc.Get(e.ctx, id)
	e.must(err)
	return c
}

func TestCanTransition(t *testing.T) {
	allowed := map[string]bool{
		"requested>accepted": true, "requested>declined": true, "requested>cancelled": true,
		"accepted>scheduled": true, "accepted>cancelled": true,
		"scheduled>live": true, "scheduled>cancelled": true,
		"live>reporting": true, "reporting>signed": true, "signed>closed": true,
	}
	for _, from := range consult.States() {
		for _, to := range consult.States() {
			want := allowed[string(from)+">"+string(to)]
			if got := consult.CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	for _, st := range consult.States() {
		want := st == consult.Declined || st == consult.Closed || st == consult.Cancelled
		if st.Final() != want {
			t.Errorf("%s.Final() = %v", st, st.Final())
		}
	}
	if consult.CanTransition("bogus", consult.Accepted) || consult.State("bogus").Valid() {
		t.Error("an unknown state is accepted")
	}
	err := error(&consult.TransitionError{From: consult.Requested, To: consult.Live})
	if err.Error() != `cannot go from "requested" to "live"` || !errors.Is(err, consult.ErrConflict) {
		t.Errorf("TransitionError: %q, Is(ErrConflict) %v", err, errors.Is(err, consult.ErrConflict))
	}
}

// Every transition method, called in a state it does not leave from, fails with a
// TransitionError naming both states and changes nothing.
func TestWrongStateChangesNothing(t *testing.T) {
	e := newEnv(t)
	ops := []struct {
		name string
		to   consult.State
		from []consult.State // the states it works from
		call func(id int64) error
	}{
		{"Accept", consult.Accepted, []consult.State{consult.Requested}, func(id int64) error {
			_, err := e.svc.Accept(e.ctx, e.admin, id, doctorUser, t0.Add(time.Hour))
			return err
		}},
		{"Decline", consult.Declined, []consult.State{consult.Requested}, func(id int64) error {
			_, err := e.svc.Decline(e.ctx, e.admin, id, "no")
			return err
		}},
		{"Schedule", consult.Scheduled, []consult.State{consult.Accepted, consult.Scheduled}, func(id int64) error {
			_, err := e.svc.Schedule(e.ctx, e.admin, id, t0.Add(time.Hour))
			return err
		}},
		{"Start", consult.Live, []consult.State{consult.Scheduled}, func(id int64) error {
			_, err := e.svc.Start(e.ctx, e.doctor, id)
			return err
		}},
		{"Finish", consult.Reporting, []consult.State{consult.Live}, func(id int64) error {
			_, err := e.svc.Finish(e.ctx, e.doctor, id)
			return err
		}},
		{"Sign", consult.Signed, []consult.State{consult.Reporting}, func(id int64) error {
			_, err := e.svc.Sign(e.ctx, e.doctor, id, password)
			return err
		}},
		{"Close", consult.Closed, []consult.State{consult.Signed}, func(id int64) error {
			_, err := e.svc.Close(e.ctx, e.clinic, id)
			return err
		}},
		{"Cancel", consult.Cancelled, []consult.State{consult.Requested, consult.Accepted, consult.Scheduled}, func(id int64) error {
			_, err := e.svc.Cancel(e.ctx, e.clinic, id, "no")
			return err
		}},
	}
	for _, st := range consult.States() {
		id := e.inState(st)
		for _, op := range ops {
			if slices.Contains(op.from, st) {
				continue
			}
			t.Run(op.name+"/"+string(st), func(t *testing.T) {
				before, n := e.get(id), e.auditLen()
				err := op.call(id)
				var te *consult.TransitionError
				if !errors.As(err, &te) || te.From != st || te.To != op.to {
					t.Fatalf("got %v, want a TransitionError from %s to %s", err, st, op.to)
				}
				if !errors.Is(err, consult.ErrConflict) || !strings.Contains(err.Error(), string(st)) ||
					!strings.Contains(err.Error(), string(op.to)) {
					t.Errorf("error %q: not ErrConflict or does not name both states", err)
				}
				after := e.get(id)
				if after.State != st || !after.UpdatedAt.Equal(before.UpdatedAt) || after.AssignedDoctorID != before.AssignedDoctorID ||
					!after.ScheduledAt.Equal(before.ScheduledAt) || len(after.Sessions) != len(before.Sessions) {
					t.Errorf("consultation changed: %+v -> %+v", before, after)
				}
				if got := e.auditLen(); got != n {
					t.Errorf("audit entries: %d -> %d", n, got)
				}
			})
		}
	}
}

func TestFullPath(t *testing.T) {
	e := newEnv(t)
	c, err := e.svc.Create(e.ctx, e.clinic, request())
	e.must(err)
	if c.State != consult.Requested || c.RequestingInstitutionID != 1 || c.RequestedBy != clinicUser ||
		c.RequestedByName != "蓝秀英" || c.Patient.Name != "韦东平" || c.TargetInstitutionID != 2 || !c.RecordingConsent {
		t.Fatalf("created: %+v", c)
	}
	if want := []string{"1.2.840.113619.2.55.3.604688119.1", "1.2.840.113619.2.55.3.604688119.2"}; !slices.Equal(c.StudyUIDs, want) {
		t.Errorf("studies %v, want %v", c.StudyUIDs, want)
	}
	at := time.Date(2025, 3, 15, 2, 30, 0, 123_456_789, time.UTC)
	c, err = e.svc.Accept(e.ctx, e.admin, c.ID, doctorUser, at)
	e.must(err)
	if c.State != consult.Scheduled || c.AssignedDoctorID != doctorUser || !c.ScheduledAt.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("accepted: state %s doctor %d at %v", c.State, c.AssignedDoctorID, c.ScheduledAt)
	}
	c, err = e.svc.Start(e.ctx, e.doctor, c.ID)
	e.must(err)
	if c.State != consult.Live || len(c.Sessions) != 1 || !c.Sessions[0].End.IsZero() {
		t.Fatalf("started: %s %+v", c.State, c.Sessions)
	}
	c, err = e.svc.Finish(e.ctx, e.doctor, c.ID)
	e.must(err)
	if c.State != consult.Reporting || len(c.Sessions) != 1 || !c.Sessions[0].End.After(c.Sessions[0].Start) {
		t.Fatalf("finished: %s %+v", c.State, c.Sessions)
	}
	r, err := e.svc.SaveDraft(e.ctx, e.doctor, c.ID, "右下肺见8mm实性结节，边缘光整。", "考虑良性结节。", "三个月后复查。")
	e.must(err)
	if r.Signed() || r.DoctorName != "黄志强" || r.DoctorTitle != "主任医师" || r.InstitutionName != "平果市人民医院" {
		t.Fatalf("draft: %+v", r)
	}
	r, err = e.svc.Sign(e.ctx, e.doctor, c.ID, password)
	e.must(err)
	if !r.Signed() || len(r.SHA256) != 64 || r.SignedAt.IsZero() {
		t.Fatalf("signed: %+v", r)
	}
	if c = e.get(c.ID); c.State != consult.Signed {
		t.Fatalf("after signing: %s", c.State)
	}
	c, err = e.svc.Close(e.ctx, e.clinic, c.ID)
	e.must(err)
	if c.State != consult.Closed {
		t.Fatalf("closed: %s", c.State)
	}
	e.must(e.svc.VerifyReport(e.ctx, c.ID))

	want := []struct{ action, actor string }{
		{"consultation.request", "lan"},
		{"consultation.accept", "root"},
		{"consultation.schedule", "root"},
		{"consultation.start", "huang"},
		{"consultation.finish", "huang"},
		{"report.draft", "huang"},
		{"report.sign", "huang"},
		{"consultation.sign", "huang"},
		{"consultation.close", "lan"},
	}
	got := e.entries(c.ID)
	if len(got) != len(want) {
		t.Fatalf("%d audit entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Action != w.action || g.Actor != w.actor || g.Outcome != "success" || g.Object != fmt.Sprintf("consultation:%d", c.ID) {
			t.Errorf("entry %d: %s by %s (%s) on %s, want %s by %s", i, g.Action, g.Actor, g.Outcome, g.Object, w.action, w.actor)
		}
		if g.PatientID != "GX0451203" || g.PatientName != "韦东平" {
			t.Errorf("entry %d (%s) names patient %q %q", i, g.Action, g.PatientID, g.PatientName)
		}
	}
	if d := got[1].Detail; !strings.Contains(d, "from=requested to=accepted") || !strings.Contains(d, "doctor=2") {
		t.Errorf("accept detail %q", d)
	}
	if d := got[6].Detail; !strings.Contains(d, r.SHA256) {
		t.Errorf("report.sign detail %q lacks the SHA-256", d)
	}
	if got[0].Institution != "XA" || got[1].Role != "admin,doctor" {
		t.Errorf("actor fields: %+v %+v", got[0], got[1])
	}
	e.must(e.trail.Verify(e.ctx))
}

func TestDoctorQualification(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		doctor int64
		want   string
	}{
		{"two years", juniorUser, "at least 3"},
		{"no title", untitledUser, "title"},
		{"other institution", awayUser, "institution"},
		{"not a doctor", nurseUser, "not a doctor"},
		{"no such user", 999, "no user"},
		{"zero", 0, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.create()
			n := e.auditLen()
			_, err := e.svc.Accept(e.ctx, e.admin, id, tc.doctor, t0.Add(time.Hour))
			var fe *consult.FieldError
			if !errors.Is(err, consult.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "doctorId" || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrInvalid on doctorId mentioning %q", err, tc.want)
			}
			if c := e.get(id); c.State != consult.Requested || c.AssignedDoctorID != 0 || !c.ScheduledAt.IsZero() {
				t.Errorf("consultation changed: %+v", c)
			}
			if e.auditLen() != n {
				t.Error("audited a refused accept")
			}
		})
	}
	d, err := e.svc.Doctor(e.ctx, adminUser)
	e.must(err)
	if !d.IsDoctor || d.CheckQualification(2) != nil {
		t.Errorf("admin,doctor: %+v %v", d, d.CheckQualification(2))
	}
	ds, err := e.svc.Doctors(e.ctx, 2)
	e.must(err)
	var ids []int64
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	if want := []int64{doctorUser, juniorUser, untitledUser, adminUser}; !slices.Equal(ids, want) {
		t.Errorf("doctors of institution 2: %v, want %v", ids, want)
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("肺", 4001)
	uids := make([]string, 21)
	for i := range uids {
		uids[i] = fmt.Sprintf("1.2.3.%d", i)
	}
	for _, tc := range []struct {
		name, field string
		edit        func(r *consult.Request)
	}{
		{"no consent", "consentConfirmed", func(r *consult.Request) { r.ConsentConfirmed = false }},
		{"no patient name", "patient.name", func(r *consult.Request) { r.Patient.Name = "  " }},
		{"bad sex", "patient.sex", func(r *consult.Request) { r.Patient.Sex = "X" }},
		{"bad birth date", "patient.birthDate", func(r *consult.Request) { r.Patient.BirthDate = "19651302" }},
		{"future birth date", "patient.birthDate", func(r *consult.Request) { r.Patient.BirthDate = "20990101" }},
		{"no studies", "studyUIDs", func(r *consult.Request) { r.StudyUIDs = nil }},
		{"21 studies", "studyUIDs", func(r *consult.Request) { r.StudyUIDs = uids }},
		{"letters in UID", "studyUIDs", func(r *consult.Request) { r.StudyUIDs = []string{"1.2.abc"} }},
		{"empty UID component", "studyUIDs", func(r *consult.Request) { r.StudyUIDs = []string{"1..2"} }},
		{"long UID", "studyUIDs", func(r *consult.Request) { r.StudyUIDs = []string{"1." + strings.Repeat("9", 63)} }},
		{"duplicate UID", "studyUIDs", func(r *consult.Request) { r.StudyUIDs = []string{"1.2.3", "1.2.3"} }},
		{"no question", "clinicalQuestion", func(r *consult.Request) { r.ClinicalQuestion = "\n" }},
		{"long question", "clinicalQuestion", func(r *consult.Request) { r.ClinicalQuestion = long }},
		{"control character", "clinicalQuestion", func(r *consult.Request) { r.ClinicalQuestion = "a\x00b" }},
		{"no purpose", "purpose", func(r *consult.Request) { r.Purpose = "" }},
		{"no urgency", "urgency", func(r *consult.Request) { r.Urgency = "" }},
		{"bad urgency", "urgency", func(r *consult.Request) { r.Urgency = "asap" }},
		{"long specialty", "specialty", func(r *consult.Request) { r.Specialty = strings.Repeat("科", 101) }},
		{"no target", "targetInstitutionId", func(r *consult.Request) { r.TargetInstitutionID = 0 }},
		{"unknown target", "targetInstitutionId", func(r *consult.Request) { r.TargetInstitutionID = 99 }},
		{"requested doctor elsewhere", "requestedDoctorId", func(r *consult.Request) { r.RequestedDoctorID = awayUser }},
		{"requested non-doctor", "requestedDoctorId", func(r *consult.Request) { r.RequestedDoctorID = nurseUser }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request()
			tc.edit(&r)
			_, err := e.svc.Create(e.ctx, e.clinic, r)
			var fe *consult.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, consult.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid on %s", err, tc.field)
			}
		})
	}
	r := request()
	r.ConsentConfirmed = false
	if _, err := e.svc.Create(e.ctx, e.clinic, r); err == nil || !strings.Contains(err.Error(), "informed consent must be confirmed") {
		t.Errorf("consent error: %v", err)
	}
	noInstitution := *e.clinic
	noInstitution.InstitutionID = 0
	if _, err := e.svc.Create(e.ctx, &noInstitution, request()); !errors.Is(err, consult.ErrInvalid) {
		t.Errorf("requester without institution: %v", err)
	}
	if cs, err := e.svc.List(e.ctx, consult.ListFilter{}); err != nil || len(cs) != 0 || e.auditLen() != 0 {
		t.Errorf("refused requests left %d consultations, %d audit entries (%v)", len(cs), e.auditLen(), err)
	}
	r = request()
	r.RequestedDoctorID = doctorUser
	r.Patient = consult.Patient{Name: "无名氏"}
	if c, err := e.svc.Create(e.ctx, e.clinic, r); err != nil || c.RequestedDoctorID != doctorUser {
		t.Errorf("minimal patient with a requested doctor: %v", err)
	}

	id := e.create()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"decline without reason", func() error { _, err := e.svc.Decline(e.ctx, e.admin, id, " "); return err }},
		{"cancel without reason", func() error { _, err := e.svc.Cancel(e.ctx, e.clinic, id, ""); return err }},
		{"schedule without time", func() error { _, err := e.svc.Schedule(e.ctx, e.admin, id, time.Time{}); return err }},
		{"list unknown state", func() error { _, err := e.svc.List(e.ctx, consult.ListFilter{State: "done"}); return err }},
		{"list negative offset", func() error { _, err := e.svc.List(e.ctx, consult.ListFilter{Offset: -1}); return err }},
	} {
		if err := tc.call(); !errors.Is(err, consult.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
		}
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	for name, call := range map[string]func() error{
		"Get":    func() error { _, err := e.svc.Get(e.ctx, 42); return err },
		"Accept": func() error { _, err := e.svc.Accept(e.ctx, e.admin, 42, doctorUser, time.Time{}); return err },
		"Start":  func() error { _, err := e.svc.Start(e.ctx, e.doctor, 42); return err },
		"Sign":   func() error { _, err := e.svc.Sign(e.ctx, e.doctor, 42, password); return err },
		"Report": func() error { _, err := e.svc.Report(e.ctx, 42); return err },
		"Print":  func() error { return e.svc.PrintHTML(e.ctx, &strings.Builder{}, 42) },
		"AddParticipant": func() error {
			_, err := e.svc.AddParticipant(e.ctx, e.admin, 42, nurseUser)
			return err
		},
		"ConsentForm": func() error { _, _, err := e.svc.ConsentForm(e.ctx, 42); return err },
	} {
		if err := call(); !errors.Is(err, consult.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	id := e.create()
	if _, err := e.svc.Report(e.ctx, id); !errors.Is(err, consult.ErrNotFound) {
		t.Errorf("Report before any draft: %v", err)
	}
}

func TestConcurrentAccept(t *testing.T) {
	e := newEnv(t)
	id := e.create()
	const n = 8
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			_, errs[i] = e.svc.Accept(e.ctx, e.admin, id, doctorUser, t0.Add(time.Hour))
		})
	}
	start.Done()
	done.Wait()
	won := 0
	for _, err := range errs {
		var te *consult.TransitionError
		switch {
		case err == nil:
			won++
		case !errors.As(err, &te):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d accepts succeeded, want 1: %v", won, errs)
	}
	accepts := 0
	for _, en := range e.entries(id) {
		if en.Action == "consultation.accept" {
			accepts++
		}
	}
	if accepts != 1 {
		t.Errorf("%d accept audit entries", accepts)
	}
}

func TestScheduleAndParticipants(t *testing.T) {
	e := newEnv(t)
	id := e.inState(consult.Accepted)
	first, second := t0.Add(48*time.Hour), t0.Add(72*time.Hour)
	c, err := e.svc.Schedule(e.ctx, e.admin, id, first)
	e.must(err)
	if c.State != consult.Scheduled || !c.ScheduledAt.Equal(first.Truncate(time.Millisecond)) {
		t.Fatalf("scheduled: %s %v", c.State, c.ScheduledAt)
	}
	c, err = e.svc.Schedule(e.ctx, e.admin, id, second)
	e.must(err)
	if c.State != consult.Scheduled || !c.ScheduledAt.Equal(second.Truncate(time.Millisecond)) {
		t.Fatalf("rescheduled: %s %v", c.State, c.ScheduledAt)
	}
	got := e.entries(id)
	if last := got[len(got)-1]; last.Action != "consultation.reschedule" {
		t.Errorf("last entry %s, want consultation.reschedule", last.Action)
	}

	if _, err := e.svc.AddParticipant(e.ctx, e.admin, id, 999); !errors.Is(err, consult.ErrInvalid) {
		t.Errorf("unknown user: %v", err)
	}
	n := e.auditLen()
	for range 2 {
		c, err = e.svc.AddParticipant(e.ctx, e.admin, id, nurseUser)
		e.must(err)
		if !slices.Contains(c.Participants, nurseUser) {
			t.Errorf("participants %v lack %d", c.Participants, nurseUser)
		}
	}
	c, err = e.svc.AddParticipant(e.ctx, e.admin, id, awayUser)
	e.must(err)
	if !slices.Equal(c.Participants, []int64{awayUser, nurseUser}) {
		t.Errorf("participants %v", c.Participants)
	}
	if got := e.auditLen() - n; got != 2 {
		t.Errorf("%d audit entries for 3 adds of 2 users, want 2", got)
	}
	closed := e.inState(consult.Cancelled)
	if _, err := e.svc.AddParticipant(e.ctx, e.admin, closed, nurseUser); !errors.Is(err, consult.ErrConflict) {
		t.Errorf("participant on a cancelled consultation: %v", err)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t)
	away := &auth.Principal{UserID: awayUser, Username: "chen", InstitutionID: 3}
	a := e.create()                  // 1 -> 2
	b := e.inState(consult.Accepted) // 1 -> 2, doctor 2
	r := request()
	r.TargetInstitutionID = 3
	c3, err := e.svc.Create(e.ctx, e.clinic, r) // 1 -> 3
	e.must(err)
	r.TargetInstitutionID = 2
	d3, err := e.svc.Create(e.ctx, away, r) // 3 -> 2
	e.must(err)
	ids := func(cs []consult.Consultation) []int64 {
		var out []int64
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	mid := e.get(c3.ID).CreatedAt
	for _, tc := range []struct {
		name string
		f    consult.ListFilter
		want []int64
	}{
		{"all, newest first", consult.ListFilter{}, []int64{d3.ID, c3.ID, b, a}},
		{"state", consult.ListFilter{State: consult.Accepted}, []int64{b}},
		{"institution 3", consult.ListFilter{InstitutionID: 3}, []int64{d3.ID, c3.ID}},
		{"doctor", consult.ListFilter{DoctorID: doctorUser}, []int64{b}},
		{"since", consult.ListFilter{Since: mid}, []int64{d3.ID, c3.ID}},
		{"until", consult.ListFilter{Until: mid}, []int64{b, a}},
		{"limit and offset", consult.ListFilter{Limit: 2, Offset: 1}, []int64{c3.ID, b}},
		{"scope", consult.ListFilter{Scope: "c.requesting_institution_id = ? AND c.target_institution_id = ?",
			ScopeArgs: []any{1, 2}, State: consult.Requested}, []int64{a}},
		{"scope by study", consult.ListFilter{Scope: `EXISTS (SELECT 1 FROM consultation_studies s
			WHERE s.consultation_id = c.id AND s.study_uid = ?)`, ScopeArgs: []any{"1.2.840.113619.2.55.3.604688119.1"},
			InstitutionID: 3}, []int64{d3.ID, c3.ID}},
	} {
		cs, err := e.svc.List(e.ctx, tc.f)
		if err != nil || !slices.Equal(ids(cs), tc.want) {
			t.Errorf("%s: %v (%v), want %v", tc.name, ids(cs), err, tc.want)
		}
	}
	cs, err := e.svc.List(e.ctx, consult.ListFilter{State: consult.Accepted})
	e.must(err)
	if len(cs[0].StudyUIDs) != 2 || cs[0].AssignedDoctorID != doctorUser {
		t.Errorf("listed consultation lacks details: %+v", cs[0])
	}
}

// The database keeps records whatever the application does.
func TestRetentionTriggers(t *testing.T) {
	e := newEnv(t)
	id := e.inState(consult.Signed)
	for _, q := range []string{
		`DELETE FROM consultations WHERE id = ?`,
		`DELETE FROM reports WHERE consultation_id = ?`,
		`DELETE FROM consultation_studies WHERE consultation_id = ?`,
		`UPDATE consultations SET patient_name = '某某' WHERE id = ?`,
		`UPDATE consultations SET state = 'reporting' WHERE id = ?`,
		`UPDATE reports SET impression = '恶性' WHERE consultation_id = ?`,
		`INSERT OR REPLACE INTO reports (consultation_id, findings, impression, recommendations, doctor_id, doctor_name,
			doctor_title, institution_id, institution_name, drafted_at) SELECT ?, '', '', '', 0, '', '', 0, '', 0`,
	} {
		if _, err := e.db.ExecContext(e.ctx, q, id); err == nil {
			t.Errorf("%s: allowed", q)
		}
	}
	if err := e.svc.VerifyReport(e.ctx, id); err != nil {
		t.Errorf("after refused changes: %v", err)
	}
	// New again on the same database: the schema is kept, the state trigger recreated.
	if _, err := consult.New(e.ctx, e.db, e.trail, e.dir, e.clock.now); err != nil {
		t.Fatal(err)
	}
	if c := e.get(id); c.State != consult.Signed {
		t.Errorf("state %s after New", c.State)
	}
}
