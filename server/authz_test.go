package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/textproto"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/internal/dicomtest"
	"github.com/sanping/sanping/server/org"
	"github.com/sanping/sanping/server/store"
)

// authzFixture is a county with two hospitals, each with a township centre and a village
// clinic, their people, a study at each clinic, and a signed-in browser session per role.
type authzFixture struct {
	t     testing.TB
	app   *app
	st    *store.Store
	srv   *testServer
	ctx   context.Context
	inst  map[string]int64 // H, T, A (own side); H2, T2, B (other side)
	users map[string]*fixtureUser
	// Studies: A's and B's, each with one 32x32 image instance.
	studyA, studyB dicomtest.UIDs
	seq            atomic.Int64
}

// testServer is where a fixture's server listens.
type testServer struct{ URL string }

type fixtureUser struct {
	name, password string
	p              *auth.Principal
	client         *http.Client
	csrf           string
}

const fixturePDF = "%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"

func newAuthzFixture(t testing.TB) *authzFixture {
	t.Helper()
	return newAuthzFixtureWith(t, Config{})
}

func newAuthzFixtureWith(t testing.TB, cfg Config) *authzFixture {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The fixture runs serve() itself, as `make run` does: the same handler chain (security
	// headers, CORS, access log, authorization), bootstrap and shutdown.
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.AdminPassword == "" {
		cfg.AdminPassword = "admin-password"
	}
	var a *app
	var st *store.Store
	cfg.started = func(started *app, s *store.Store) {
		a, st = started, s
		// The first admin's password is temporary: the fixture's admin has changed it.
		if err := started.auth.SetPassword(ctx, "admin", cfg.AdminPassword, false); err != nil {
			t.Errorf("settling the admin's password: %v", err)
		}
	}
	sctx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(sctx, cfg, io.Discard, log, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		stop()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("server did not start in 30 s")
	}
	srv := &testServer{URL: "http://" + addr}
	t.Cleanup(func() {
		stop()
		if err := <-errc; err != nil {
			t.Errorf("server stopped with: %v", err)
		}
	})
	f := &authzFixture{t: t, app: a, st: st, srv: srv, ctx: ctx, inst: map[string]int64{}, users: map[string]*fixtureUser{}}

	add := func(key, code, name string, kind org.Kind, parent string) {
		in, err := a.org.Add(ctx, org.Institution{Code: code, Name: name, Kind: kind, ParentID: f.inst[parent]})
		if err != nil {
			t.Fatal(err)
		}
		f.inst[key] = in.ID
	}
	add("H", "dahua", "大化县人民医院", org.Hospital, "")
	add("T", "duyang", "都阳镇卫生院", org.Township, "H")
	add("A", "longshan", "龙山村卫生室", org.Clinic, "T")
	add("H2", "bama", "巴马县人民医院", org.Hospital, "")
	add("T2", "jiazhuan", "甲篆镇卫生院", org.Township, "H2")
	add("B", "poyue", "坡月村卫生室", org.Clinic, "T2")

	user := func(key string, roles []string, inst string, title string, years int) {
		u, err := a.auth.AddUser(ctx, auth.NewUser{Username: key, DisplayName: key, Roles: roles, InstitutionID: f.inst[inst],
			Title: title, PracticeYears: years}, key+"-password")
		if err != nil {
			t.Fatal(err)
		}
		f.users[key] = &fixtureUser{name: key, password: key + "-password",
			p: &auth.Principal{UserID: u.ID, Username: key, Roles: roles, InstitutionID: f.inst[inst]}}
	}
	f.users["admin"] = &fixtureUser{name: "admin", password: "admin-password", p: &auth.Principal{UserID: 1, Username: "admin", Roles: []string{auth.RoleAdmin}}}
	user("doctor", []string{auth.RoleDoctor}, "H", "主治医师", 8)
	user("doctor2", []string{auth.RoleDoctor}, "H2", "副主任医师", 15)
	user("clinic", []string{auth.RoleClinic}, "A", "", 0)
	user("clinic2", []string{auth.RoleClinic}, "B", "", 0)
	user("township", []string{auth.RoleClinic}, "T", "", 0)
	for _, key := range []string{"admin", "doctor", "clinic"} {
		f.signIn(f.users[key])
	}
	f.studyA = f.upload(f.users["clinic"].p, "")
	f.studyB = f.upload(f.users["clinic2"].p, "")
	// The doctor's hospital has A's study on its worklist; B's goes to the other hospital.
	f.consultation(false, "requested")
	return f
}

// signIn logs a user in through the API, keeping the cookie in its client.
func (f *authzFixture) signIn(u *fixtureUser) {
	jar, _ := cookiejar.New(nil)
	u.client = &http.Client{Jar: jar}
	body, _ := json.Marshal(map[string]string{"username": u.name, "password": u.password})
	res, err := u.client.Post(f.srv.URL+"/api/login", "application/json", bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	var v struct {
		CSRFToken string `json:"csrfToken"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&v) != nil || v.CSRFToken == "" {
		f.t.Fatalf("login %s: %d", u.name, res.StatusCode)
	}
	u.csrf = v.CSRFToken
}

// instance is a 32x32 8-bit image; an empty study makes a new one.
func (f *authzFixture) instance(study string) (dicomtest.UIDs, []byte) {
	n := f.seq.Add(1)
	if study == "" {
		study = fmt.Sprintf("1.2.826.0.1.3680043.10.1.%d", n)
	}
	u := dicomtest.UIDs{Study: study, Series: fmt.Sprintf("1.2.826.0.1.3680043.10.2.%d", n), SOP: fmt.Sprintf("1.2.826.0.1.3680043.10.3.%d", n)}
	elems := append(dicomtest.BaseElems(u, "1.2.840.10008.5.1.4.1.1.7"),
		dicomtest.Str(dicomtest.TagOf(0x0010, 0x0010), "PN", "Wei^Dongping"), dicomtest.Str(dicomtest.TagOf(0x0010, 0x0020), "LO", fmt.Sprint("P", n)))
	elems = append(elems, dicomtest.ImageElems(32, 32, 8, 0, "MONOCHROME2")...)
	px := make([]byte, 32*32)
	for i := range px {
		px[i] = byte(i)
	}
	elems = append(elems, dicomtest.RawE(dicomtest.TagOf(0x7FE0, 0x0010), "OB", px))
	return u, dicomtest.File{TS: "1.2.840.10008.1.2.1", Elems: elems}.Bytes()
}

func (f *authzFixture) upload(p *auth.Principal, study string) dicomtest.UIDs {
	u, b := f.instance(study)
	if _, err := f.st.IngestFor(f.ctx, bytes.NewReader(b), store.Target{InstitutionID: p.InstitutionID}); err != nil {
		f.t.Fatal(err)
	}
	return u
}

// consultation makes a consultation in the given state: A's asking H (own) or B's asking H2
// (other), each assigned to that hospital's doctor once accepted. Extra states: "consent"
// (requested with a consent form), "draft" (live with a report draft); "reporting" has a draft.
func (f *authzFixture) consultation(other bool, state string) int64 {
	t, ctx, c := f.t, f.ctx, f.app.consult
	clinic, doctor, target, study := f.users["clinic"], f.users["doctor"], f.inst["H"], f.studyA
	if other {
		clinic, doctor, target, study = f.users["clinic2"], f.users["doctor2"], f.inst["H2"], f.studyB
	}
	co, err := c.Create(ctx, clinic.p, consult.Request{Patient: consult.Patient{ID: "P1", Name: "韦东平", Sex: "M"},
		StudyUIDs: []string{study.Study}, ClinicalQuestion: "右下肺阴影？", Purpose: "明确诊断", Urgency: "routine",
		TargetInstitutionID: target, ConsentConfirmed: true})
	if err != nil {
		t.Fatal(err)
	}
	id := co.ID
	steps := map[string][]string{
		"requested": nil,
		"consent":   {"consent"},
		"accepted":  {"accept"},
		"scheduled": {"schedule"},
		"live":      {"schedule", "start"},
		"draft":     {"schedule", "start", "draft"},
		"reporting": {"schedule", "start", "draft", "finish"},
		"signed":    {"schedule", "start", "draft", "finish", "sign"},
	}[state]
	for _, step := range steps {
		var err error
		switch step {
		case "consent":
			_, err = c.SetConsentForm(ctx, clinic.p, id, "consent.pdf", "application/pdf", strings.NewReader(fixturePDF), 1<<20)
		case "accept":
			_, err = c.Accept(ctx, doctor.p, id, doctor.p.UserID, time.Time{})
		case "schedule":
			_, err = c.Accept(ctx, doctor.p, id, doctor.p.UserID, time.Now().Add(time.Hour))
		case "start":
			_, err = c.Start(ctx, doctor.p, id)
		case "draft":
			_, err = c.SaveDraft(ctx, doctor.p, id, "右下肺见斑片影", "右下肺炎", "抗感染治疗后复查")
		case "finish":
			_, err = c.Finish(ctx, doctor.p, id)
		case "sign":
			_, err = c.Sign(ctx, doctor.p, id, doctor.password)
		}
		if err != nil {
			t.Fatalf("consultation %d to %s: %s: %v", id, state, step, err)
		}
	}
	return id
}

// routeCase says how to call one route and what each role gets.
type routeCase struct {
	path string // with {placeholders}: id, study, series, instance, iid, uid, tid, sid
	// pre is the consultation state {id}/{sid} starts in ("" = requested).
	pre string
	// body returns the request body for role on the own (other=false) or other side.
	body func(f *authzFixture, role string, other bool) (contentType string, b []byte)
	// fresh: sign in anew for this call (logout ends the session).
	fresh bool
	// headers are added to the request (tus).
	headers map[string]string
	// want per role: anon, admin, doctor, clinic. "200" for both sides, "200/404" own/other.
	anon, admin, doctor, clinic string
}

func jsonBody(v any) func(*authzFixture, string, bool) (string, []byte) {
	return func(*authzFixture, string, bool) (string, []byte) {
		b, _ := json.Marshal(v)
		return "application/json", b
	}
}

func jsonOf(fn func(f *authzFixture, role string, other bool) any) func(*authzFixture, string, bool) (string, []byte) {
	return func(f *authzFixture, role string, other bool) (string, []byte) {
		b, _ := json.Marshal(fn(f, role, other))
		return "application/json", b
	}
}

func stowBody(intoStudy bool) func(*authzFixture, string, bool) (string, []byte) {
	return func(f *authzFixture, role string, other bool) (string, []byte) {
		study := ""
		if other {
			study = f.studyB.Study
		} else if intoStudy {
			study = f.studyA.Study
		}
		_, inst := f.instance(study)
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		pw.Write(inst)
		mw.Close()
		return `multipart/related; type="application/dicom"; boundary=` + mw.Boundary(), buf.Bytes()
	}
}

func (f *authzFixture) unique(prefix string) string { return fmt.Sprintf("%s%d", prefix, f.seq.Add(1)) }

// routeTable has an entry for every route the server serves (TestEveryRouteHasAnEntry).
func routeTable() map[string]routeCase {
	const (
		signedIn  = "200"
		adminOnly = "403"
	)
	own := func(f *authzFixture, other bool) (string, dicomtest.UIDs) {
		if other {
			return "other", f.studyB
		}
		return "own", f.studyA
	}
	_ = own
	doctorFor := func(f *authzFixture, other bool) int64 {
		if other {
			return f.users["doctor2"].p.UserID
		}
		return f.users["doctor"].p.UserID
	}
	inst := "/dicom-web/studies/{study}/series/{series}/instances/{instance}"
	read := routeCase{anon: "401", admin: "200", doctor: "200/404", clinic: "200/404"}
	at := func(path string) routeCase { rc := read; rc.path = path; return rc }
	_ = signedIn
	_ = adminOnly
	return map[string]routeCase{
		"GET /healthz": {path: "/healthz", anon: "200", admin: "200", doctor: "200", clinic: "200"},
		"/":            {path: "/", anon: "200", admin: "200", doctor: "200", clinic: "200"},
		"POST /api/login": {path: "/api/login", fresh: true, body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]string{"username": "township", "password": "township-password"}
		}), anon: "200", admin: "200", doctor: "200", clinic: "200"},
		"POST /api/logout": {path: "/api/logout", fresh: true, anon: "401", admin: "204", doctor: "204", clinic: "204"},
		"GET /api/session": {path: "/api/session", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"POST /api/session/password": {path: "/api/session/password", body: jsonOf(func(f *authzFixture, role string, _ bool) any {
			pw := "x"
			if u := f.users[role]; u != nil {
				pw = u.password
			}
			return map[string]string{"currentPassword": pw, "newPassword": pw}
		}), anon: "401", admin: "422", doctor: "422", clinic: "422"},

		"GET /api/institutions": {path: "/api/institutions", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"POST /api/institutions": {path: "/api/institutions", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]any{"code": f.unique("h"), "name": "新医院", "kind": "hospital"}
		}), anon: "401", admin: "201", doctor: "403", clinic: "403"},
		"GET /api/institutions/{iid}": {path: "/api/institutions/{iid}", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"PUT /api/institutions/{iid}": {path: "/api/institutions/{iid}", body: jsonBody(map[string]string{"name": "龙山村卫生室"}), anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"POST /api/institutions/{iid}/departments": {path: "/api/institutions/{hid}/departments", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]string{"name": f.unique("科室")}
		}), anon: "401", admin: "201", doctor: "403", clinic: "403"},
		"GET /api/institutions/{iid}/stations": {path: "/api/institutions/{iid}/stations", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"POST /api/institutions/{iid}/stations": {path: "/api/institutions/{iid}/stations", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]string{"name": f.unique("DR-"), "aeTitle": "DR1", "modality": "DX"}
		}), anon: "401", admin: "201", doctor: "403", clinic: "403"},
		"GET /api/doctors": {path: "/api/doctors", anon: "401", admin: "200", doctor: "200", clinic: "200"},

		"GET /api/users": {path: "/api/users", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"POST /api/users": {path: "/api/users", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]any{"username": f.unique("u"), "roles": []string{"clinic"}, "institutionId": f.inst["A"], "password": "first-password"}
		}), anon: "401", admin: "201", doctor: "403", clinic: "403"},
		"GET /api/users/{uid}": {path: "/api/users/{uid}", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"PUT /api/users/{uid}": {path: "/api/users/{uid}", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]any{"displayName": "韦小宝", "roles": []string{"clinic"}, "institutionId": f.inst["A"]}
		}), anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"POST /api/users/{uid}/password": {path: "/api/users/{uid}/password", body: jsonBody(map[string]string{"password": "reset-password"}), anon: "401", admin: "204", doctor: "403", clinic: "403"},
		"POST /api/users/{uid}/lock":     {path: "/api/users/{uid}/lock", anon: "401", admin: "204", doctor: "403", clinic: "403"},
		"POST /api/users/{uid}/unlock":   {path: "/api/users/{uid}/unlock", anon: "401", admin: "204", doctor: "403", clinic: "403"},

		"GET /api/tokens": {path: "/api/tokens", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"POST /api/tokens": {path: "/api/tokens", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]any{"name": "龙山DR", "institutionId": f.inst["A"], "role": "clinic"}
		}), anon: "401", admin: "201", doctor: "403", clinic: "403"},
		"DELETE /api/tokens/{tid}": {path: "/api/tokens/{tid}", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		// A station's own report: its API token only (TestStationStatus), never a person's session.
		"POST /api/station/status": {path: "/api/station/status", body: jsonBody(map[string]any{"queue": map[string]int{"bundles": 1, "files": 3, "bytes": 9000}}),
			anon: "401", admin: "403", doctor: "403", clinic: "403"},
		"GET /api/sessions":             {path: "/api/sessions", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"DELETE /api/sessions/{sessid}": {path: "/api/sessions/{sess}", anon: "401", admin: "204", doctor: "403", clinic: "403"},

		"GET /api/consultations": {path: "/api/consultations", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"GET /api/worklist":      {path: "/api/worklist", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"POST /api/consultations": {path: "/api/consultations", body: jsonOf(func(f *authzFixture, _ string, other bool) any {
			study, target := f.studyA.Study, f.inst["H"]
			if other {
				study = f.studyB.Study
			}
			return map[string]any{"patient": map[string]string{"id": "P9", "name": "韦东平"}, "studyUIDs": []string{study},
				"clinicalQuestion": "肺部阴影", "purpose": "诊断", "urgency": "urgent", "targetInstitutionId": target, "consentConfirmed": true}
		}), anon: "401", admin: "403/403", doctor: "403/403", clinic: "201/422"},
		"GET /api/consultations/{id}": {path: "/api/consultations/{id}", anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},
		"POST /api/consultations/{id}/accept": {path: "/api/consultations/{id}/accept", body: jsonOf(func(f *authzFixture, _ string, other bool) any {
			return map[string]any{"doctorId": doctorFor(f, other)}
		}), anon: "401", admin: "200/200", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/decline": {path: "/api/consultations/{id}/decline", body: jsonBody(map[string]string{"reason": "无相关专科"}),
			anon: "401", admin: "200/200", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/schedule": {path: "/api/consultations/{id}/schedule", pre: "accepted",
			body: jsonBody(map[string]any{"scheduledAt": time.Now().Add(2 * time.Hour)}), anon: "401", admin: "200/200", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/start":  {path: "/api/consultations/{id}/start", pre: "scheduled", anon: "401", admin: "200/200", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/finish": {path: "/api/consultations/{id}/finish", pre: "live", anon: "401", admin: "200/200", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/close":  {path: "/api/consultations/{id}/close", pre: "signed", anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},
		"POST /api/consultations/{id}/cancel": {path: "/api/consultations/{id}/cancel", body: jsonBody(map[string]string{"reason": "患者已转诊"}),
			anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},
		"POST /api/consultations/{id}/participants": {path: "/api/consultations/{id}/participants", pre: "accepted", body: jsonOf(func(f *authzFixture, _ string, _ bool) any {
			return map[string]any{"userId": f.users["township"].p.UserID}
		}), anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},
		"PUT /api/consultations/{id}/consent-form": {path: "/api/consultations/{id}/consent-form?filename=consent.pdf", body: func(*authzFixture, string, bool) (string, []byte) {
			return "application/pdf", []byte(fixturePDF)
		}, anon: "401", admin: "200/200", doctor: "403/404", clinic: "200/404"},
		"GET /api/consultations/{id}/consent-form": {path: "/api/consultations/{id}/consent-form", pre: "consent", anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},
		"GET /api/consultations/{id}/report":       {path: "/api/consultations/{id}/report", pre: "draft", anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},
		"PUT /api/consultations/{id}/report": {path: "/api/consultations/{id}/report", pre: "live",
			body: jsonBody(map[string]string{"findings": "右下肺见斑片影", "impression": "右下肺炎", "recommendations": "复查"}),
			anon: "401", admin: "403/403", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/report/sign": {path: "/api/consultations/{id}/report/sign", pre: "reporting",
			body: jsonBody(map[string]string{"password": "doctor-password"}), anon: "401", admin: "403/403", doctor: "200/404", clinic: "403/404"},
		"POST /api/consultations/{id}/report/addenda": {path: "/api/consultations/{id}/report/addenda", pre: "signed",
			body: jsonBody(map[string]string{"text": "补充：建议两周后复查CT", "password": "doctor-password"}), anon: "401", admin: "403/403", doctor: "201/404", clinic: "403/404"},
		"GET /api/consultations/{id}/report/print": {path: "/api/consultations/{id}/report/print", pre: "draft", anon: "401", admin: "200/200", doctor: "200/404", clinic: "200/404"},

		"GET /api/consultations/{id}/live": {path: "/api/consultations/{id}/live", pre: "live", anon: "401", admin: "400/400", doctor: "400/404", clinic: "400/404"},
		"GET /api/ice-servers":             {path: "/api/ice-servers", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"POST /api/consultations/{id}/whip": {path: "/api/consultations/{id}/whip", pre: "live", body: func(*authzFixture, string, bool) (string, []byte) {
			return "application/sdp", []byte("v=0\r\n")
		}, anon: "401", admin: "400/400", doctor: "400/404", clinic: "400/404"},
		"DELETE /api/consultations/{id}/whip/{peer}": {path: "/api/consultations/{id}/whip/p-nobody", pre: "live", anon: "401", admin: "404/404", doctor: "404/404", clinic: "404/404"},
		"OPTIONS /api/consultations/{id}/whip":       {path: "/api/consultations/{id}/whip", anon: "204", admin: "204", doctor: "204", clinic: "204"},

		"POST /api/uploads/":     {path: "/api/uploads/", headers: tusHeaders("Upload-Length", "10"), anon: "401", admin: "201", doctor: "201", clinic: "201"},
		"HEAD /api/uploads/{id}": {path: "/api/uploads/{upid}", headers: tusHeaders(), anon: "401", admin: "200/404", doctor: "200/404", clinic: "200/404"},
		"PATCH /api/uploads/{id}": {path: "/api/uploads/{upid}", headers: tusHeaders("Upload-Offset", "0"), body: func(*authzFixture, string, bool) (string, []byte) {
			return "application/offset+octet-stream", []byte("not dicom!")
		}, anon: "401", admin: "204/404", doctor: "204/404", clinic: "204/404"},
		"DELETE /api/uploads/{id}":     {path: "/api/uploads/{upid}", headers: tusHeaders(), anon: "401", admin: "204/404", doctor: "204/404", clinic: "204/404"},
		"GET /api/uploads/{id}/result": {path: "/api/uploads/{upid}/result", pre: "complete", anon: "401", admin: "200/404", doctor: "200/404", clinic: "200/404"},
		"OPTIONS /api/uploads/":        {path: "/api/uploads/", anon: "200", admin: "200", doctor: "200", clinic: "200"},

		"POST /api/local-grants": {path: "/api/local-grants", body: jsonOf(func(f *authzFixture, _ string, other bool) any {
			_, study := own(f, other)
			return map[string]string{"study": study.Study}
		}), anon: "401", admin: "201/201", doctor: "201/404", clinic: "201/404"},
		// Station tokens only (server/localgrant_test.go); sessions are refused before the grant is read.
		"POST /api/local-grants/verify": {path: "/api/local-grants/verify", body: jsonBody(map[string]string{"token": "spg_unknown"}),
			anon: "401", admin: "403", doctor: "403", clinic: "403"},
		"GET /api/audit":              {path: "/api/audit", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"GET /api/audit/verify":       {path: "/api/audit/verify", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"GET /api/audit/export":       {path: "/api/audit/export", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"GET /api/session-logs":       {path: "/api/session-logs?format=csv", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"GET /api/session-logs/{sid}": {path: "/api/session-logs/{sid}", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		// No recordings in the table's consultation: 404 for the admin (TestSessionRecordingPlayback plays one).
		"GET /api/session-logs/{sid}/recordings/{n}": {path: "/api/session-logs/{sid}/recordings/0", anon: "401", admin: "404", doctor: "403", clinic: "403"},
		"GET /api/dashboard":                         {path: "/api/dashboard", anon: "401", admin: "200", doctor: "403", clinic: "403"},
		"/api/":                                      {path: "/api/nothing-here", anon: "401", admin: "404", doctor: "404", clinic: "404"},

		"POST /dicom-web/studies":                                  {path: "/dicom-web/studies", body: stowBody(false), anon: "401", admin: "200/200", doctor: "200/409", clinic: "200/409"},
		"POST /dicom-web/studies/{study}":                          {path: "/dicom-web/studies/{study}", body: stowBody(true), anon: "401", admin: "200/200", doctor: "409/409", clinic: "200/409"},
		"GET /dicom-web/studies":                                   {path: "/dicom-web/studies", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"GET /dicom-web/series":                                    {path: "/dicom-web/series", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"GET /dicom-web/instances":                                 {path: "/dicom-web/instances", anon: "401", admin: "200", doctor: "200", clinic: "200"},
		"GET /dicom-web/studies/{study}/series":                    at("/dicom-web/studies/{study}/series"),
		"GET /dicom-web/studies/{study}/instances":                 at("/dicom-web/studies/{study}/instances"),
		"GET /dicom-web/studies/{study}/series/{series}/instances": at("/dicom-web/studies/{study}/series/{series}/instances"),
		"GET /dicom-web/studies/{study}":                           at("/dicom-web/studies/{study}"),
		"GET /dicom-web/studies/{study}/series/{series}":           at("/dicom-web/studies/{study}/series/{series}"),
		"GET " + inst: at(inst),
		"GET /dicom-web/studies/{study}/metadata":                  at("/dicom-web/studies/{study}/metadata"),
		"GET /dicom-web/studies/{study}/series/{series}/metadata":  at("/dicom-web/studies/{study}/series/{series}/metadata"),
		"GET " + inst + "/metadata":                                at(inst + "/metadata"),
		"GET " + inst + "/frames/{frames}":                         at(inst + "/frames/1"),
		"GET " + inst + "/bulkdata/{path...}":                      at(inst + "/bulkdata/7FE00010"),
		"GET " + inst + "/rendered":                                at(inst + "/rendered"),
		"GET " + inst + "/frames/{frames}/rendered":                at(inst + "/frames/1/rendered"),
		"GET /dicom-web/studies/{study}/series/{series}/rendered":  at("/dicom-web/studies/{study}/series/{series}/rendered"),
		"GET " + inst + "/thumbnail":                               at(inst + "/thumbnail"),
		"GET " + inst + "/frames/{frames}/thumbnail":               at(inst + "/frames/1/thumbnail"),
		"GET /dicom-web/studies/{study}/series/{series}/thumbnail": at("/dicom-web/studies/{study}/series/{series}/thumbnail"),
		"GET /dicom-web/studies/{study}/thumbnail":                 at("/dicom-web/studies/{study}/thumbnail"),
		"/dicom-web/": {path: "/dicom-web/nothing-here", anon: "401", admin: "404", doctor: "404", clinic: "404"},
	}
}

// TestEveryRouteHasAnEntry: a new route without an entry in the authorization table fails.
func TestEveryRouteHasAnEntry(t *testing.T) {
	f := newAuthzFixture(t)
	table := routeTable()
	seen := map[string]bool{}
	for _, rt := range f.app.routes {
		if _, ok := table[rt.Pattern]; !ok {
			t.Errorf("route %q has no entry in routeTable: say what each role gets", rt.Pattern)
		}
		if rt.Handler == nil || rt.Action == "" {
			t.Errorf("route %q has no handler or action", rt.Pattern)
		}
		seen[rt.Pattern] = true
	}
	for pattern := range table {
		if !seen[pattern] {
			t.Errorf("routeTable has %q, which the server does not serve", pattern)
		}
	}
}

// TestAuthorizationTable walks every route x every role x own/other institution and checks
// the status: 401 without credentials, 403 for a role that may not, 404 (never 403) for
// another institution's patient data.
func TestAuthorizationTable(t *testing.T) {
	f := newAuthzFixture(t)
	table := routeTable()
	for _, rt := range f.app.routes {
		rc, ok := table[rt.Pattern]
		if !ok {
			continue // TestEveryRouteHasAnEntry reports it
		}
		method, _, found := strings.Cut(rt.Pattern, " ")
		if !found || strings.HasPrefix(method, "/") {
			method = "GET"
		}
		for _, role := range []string{"anon", "admin", "doctor", "clinic"} {
			want := map[string]string{"anon": rc.anon, "admin": rc.admin, "doctor": rc.doctor, "clinic": rc.clinic}[role]
			wantOwn, wantOther, scoped := strings.Cut(want, "/")
			sides := []bool{false}
			if scoped {
				sides = append(sides, true)
			}
			for _, other := range sides {
				w := wantOwn
				side := "own"
				if other {
					w, side = wantOther, "other"
				}
				t.Run(fmt.Sprintf("%s/%s/%s", rt.Pattern, role, side), func(t *testing.T) {
					got, body := f.call(method, rc, role, other)
					if fmt.Sprint(got) != w {
						t.Errorf("status %d, want %s: %s", got, w, body)
					}
				})
			}
		}
	}
}

// call makes one request as role.
func (f *authzFixture) call(method string, rc routeCase, role string, other bool) (int, string) {
	path := rc.path
	study := f.studyA
	if other {
		study = f.studyB
	}
	repl := map[string]string{"{study}": study.Study, "{series}": study.Series, "{instance}": study.SOP,
		"{iid}": fmt.Sprint(f.inst["A"]), "{hid}": fmt.Sprint(f.inst["H"])}
	if strings.Contains(path, "{id}") || strings.Contains(path, "{sid}") {
		pre := rc.pre
		if pre == "" {
			pre = "requested"
		}
		id := fmt.Sprint(f.consultation(other, pre))
		repl["{id}"], repl["{sid}"] = id, id
	}
	if strings.Contains(path, "{uid}") {
		u, err := f.app.auth.AddUser(f.ctx, auth.NewUser{Username: f.unique("tmp"), Roles: []string{auth.RoleClinic}, InstitutionID: f.inst["A"]}, "temp-password")
		if err != nil {
			f.t.Fatal(err)
		}
		repl["{uid}"] = fmt.Sprint(u.ID)
	}
	if strings.Contains(path, "{tid}") {
		tok, _, err := f.app.auth.CreateToken(f.ctx, "tmp", f.inst["A"], auth.RoleClinic, "admin")
		if err != nil {
			f.t.Fatal(err)
		}
		repl["{tid}"] = fmt.Sprint(tok.ID)
	}
	if strings.Contains(path, "{sess}") {
		// Someone else's session, signed in for this call.
		u := &fixtureUser{name: "township", password: "township-password"}
		f.signIn(u)
		list, err := f.app.auth.ActiveSessions(f.ctx, "")
		i := slices.IndexFunc(list, func(a auth.ActiveSession) bool { return a.Username == "township" }) // the newest first
		if err != nil || i < 0 {
			f.t.Fatalf("sessions: %+v, %v", list, err)
		}
		repl["{sess}"] = list[i].ID
	}
	if strings.Contains(path, "{upid}") {
		// An upload of the caller's (own) or of another institution's clinic (other).
		owner := f.users[role]
		if owner == nil || other {
			owner = f.users["clinic2"]
		}
		repl["{upid}"] = f.tusUpload(owner, rc.pre == "complete")
	}
	for k, v := range repl {
		path = strings.ReplaceAll(path, k, v)
	}
	var body io.Reader
	ct := ""
	if rc.body != nil {
		var b []byte
		ct, b = rc.body(f, role, other)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range rc.headers {
		req.Header.Set(k, v)
	}
	client := http.DefaultClient
	if u := f.users[role]; u != nil {
		if rc.fresh {
			u = &fixtureUser{name: u.name, password: u.password}
			f.signIn(u)
		}
		client = u.client
		req.Header.Set(auth.CSRFHeader, u.csrf)
	}
	res, err := client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 300))
	return res.StatusCode, string(b)
}

// TestScopedSearch: QIDO and the consultation list return only what the caller may see, and
// reads of patient data are in the audit trail with the reader's role and institution.
func TestScopedSearch(t *testing.T) {
	f := newAuthzFixture(t)
	f.consultation(true, "requested") // B's, asking the other hospital
	get := func(role, path string, v any) {
		t.Helper()
		res, err := f.users[role].client.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", role, path, res.StatusCode)
		}
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	studies := func(role string) []string {
		var out []map[string]json.RawMessage
		get(role, "/dicom-web/studies", &out)
		var uids []string
		for _, o := range out {
			var uid struct{ Value []string }
			json.Unmarshal(o["0020000D"], &uid)
			uids = append(uids, uid.Value...)
		}
		return uids
	}
	has := func(list []string, uid string) bool {
		for _, v := range list {
			if v == uid {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		role         string
		seeA, seeB   bool
		consultCount int
	}{
		{"admin", true, true, 2},
		{"doctor", true, false, 1}, // A's study through the consultation on the hospital's worklist
		{"clinic", true, false, 1},
	} {
		got := studies(c.role)
		if has(got, f.studyA.Study) != c.seeA || has(got, f.studyB.Study) != c.seeB {
			t.Errorf("%s QIDO studies: %v (A %s, B %s)", c.role, got, f.studyA.Study, f.studyB.Study)
		}
		var instances []map[string]any
		get(c.role, "/dicom-web/instances", &instances)
		if want := len(got); len(instances) != want {
			t.Errorf("%s QIDO instances: %d, want %d (one per visible study)", c.role, len(instances), want)
		}
		var list []consult.Consultation
		get(c.role, "/api/consultations", &list)
		if len(list) != c.consultCount {
			t.Errorf("%s sees %d consultations, want %d", c.role, len(list), c.consultCount)
		}
	}
	// A doctor's read of the study is recorded with role and institution.
	var meta []map[string]any
	get("doctor", "/dicom-web/studies/"+f.studyA.Study+"/metadata", &meta)
	entries, err := f.app.trail.List(f.ctx, auditFilter("doctor", "study:"+f.studyA.Study))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 || entries[0].Role != "doctor" || entries[0].Institution != "dahua" || entries[0].IP == "" {
		t.Fatalf("doctor's read not audited as expected: %+v", entries)
	}
	// An attempt on another clinic's study is recorded as denied.
	res, err := f.users["clinic"].client.Get(f.srv.URL + "/dicom-web/studies/" + f.studyB.Study + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	denied, err := f.app.trail.List(f.ctx, auditFilter("clinic", "study:"+f.studyB.Study))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusNotFound || len(denied) != 1 || denied[0].Outcome != "denied" {
		t.Fatalf("other clinic's study: %d, audit %+v", res.StatusCode, denied)
	}
}

func auditFilter(actor, object string) audit.Filter {
	return audit.Filter{Actor: actor, ObjectPrefix: object}
}

// BenchmarkAuthorizedRead is the cost the authorization adds to a read: the same series
// metadata request by an admin (no scope query) and by clinic staff through a session (session
// lookup, principal, EXISTS over the study scope), both over loopback HTTP.
func BenchmarkAuthorizedRead(b *testing.B) {
	f := newAuthzFixture(b)
	for _, role := range []string{"admin", "clinic", "doctor"} {
		b.Run(role, func(b *testing.B) {
			u := f.users[role]
			url := f.srv.URL + "/dicom-web/studies/" + f.studyA.Study + "/series/" + f.studyA.Series + "/metadata"
			for b.Loop() {
				res, err := u.client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Fatalf("status %d", res.StatusCode)
				}
			}
		})
	}
}

func tusHeaders(kv ...string) map[string]string {
	h := map[string]string{"Tus-Resumable": "1.0.0"}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// tusUpload creates a 10-byte tus upload as u (and sends its bytes when complete) and returns
// its ID.
func (f *authzFixture) tusUpload(u *fixtureUser, complete bool) string {
	if u.client == nil {
		f.signIn(u)
	}
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/uploads/", nil)
	for k, v := range tusHeaders("Upload-Length", "10") {
		req.Header.Set(k, v)
	}
	req.Header.Set(auth.CSRFHeader, u.csrf)
	res, err := u.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusCreated || loc == "" {
		f.t.Fatalf("creating an upload as %s: %d", u.name, res.StatusCode)
	}
	id := loc[strings.LastIndex(strings.TrimSuffix(loc, "/"), "/")+1:]
	if complete {
		req, _ := http.NewRequest("PATCH", f.srv.URL+"/api/uploads/"+id, strings.NewReader("not dicom!"))
		for k, v := range tusHeaders("Upload-Offset", "0") {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.Header.Set(auth.CSRFHeader, u.csrf)
		res, err := u.client.Do(req)
		if err != nil {
			f.t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			f.t.Fatalf("completing an upload as %s: %d", u.name, res.StatusCode)
		}
	}
	return id
}
