package server

import (
	"bytes"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/server/auth"
)

// do sends a request as a fixture user (nil: anonymous) and decodes a JSON answer into out.
func (f *authzFixture) do(u *fixtureUser, method, path, contentType string, body []byte, out any) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	client := http.DefaultClient
	if u != nil {
		client = u.client
		req.Header.Set(auth.CSRFHeader, u.csrf)
	}
	res, err := client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
	return res.StatusCode, string(b)
}

func (f *authzFixture) json(u *fixtureUser, method, path string, in, out any) (int, string) {
	f.t.Helper()
	var b []byte
	if in != nil {
		b, _ = json.Marshal(in)
	}
	return f.do(u, method, path, "application/json", b, out)
}

// TestConsultationOverHTTP walks a consultation from request to closed through the REST API,
// as the clinic and the county doctor would, then reads its session log as an admin.
func TestConsultationOverHTTP(t *testing.T) {
	f := newAuthzFixture(t)
	clinic, doctor, admin := f.users["clinic"], f.users["doctor"], f.users["admin"]
	must := func(want int) func(int, string) {
		return func(got int, body string) {
			t.Helper()
			if got != want {
				t.Fatalf("status %d, want %d: %s", got, want, body)
			}
		}
	}
	var c struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
	}
	must(201)(f.json(clinic, "POST", "/api/consultations", map[string]any{
		"patient":   map[string]string{"id": "450000199001011234", "name": "韦东平", "sex": "M", "birthDate": "19900101"},
		"studyUIDs": []string{f.studyA.Study}, "clinicalQuestion": "胸片示右下肺阴影，性质？", "purpose": "明确诊断并指导治疗",
		"urgency": "urgent", "specialty": "放射科", "targetInstitutionId": f.inst["H"], "consentConfirmed": true,
	}, &c))
	id := fmt.Sprint(c.ID)
	base := "/api/consultations/" + id
	// The consent form scan.
	must(200)(f.do(clinic, "PUT", base+"/consent-form?filename=知情同意书.pdf", "application/pdf", []byte(fixturePDF), nil))
	code, body := f.do(doctor, "GET", base+"/consent-form", "", nil, nil)
	if code != 200 || body != fixturePDF {
		t.Fatalf("consent form read back: %d %q", code, body)
	}
	// A doctor without the qualification cannot be assigned.
	weak, err := f.app.auth.AddUser(f.ctx, auth.NewUser{Username: "junior", Roles: []string{"doctor"}, InstitutionID: f.inst["H"], Title: "住院医师", PracticeYears: 1}, "junior-password")
	if err != nil {
		t.Fatal(err)
	}
	must(422)(f.json(doctor, "POST", base+"/accept", map[string]any{"doctorId": weak.ID}, nil))
	must(200)(f.json(doctor, "POST", base+"/accept", map[string]any{"doctorId": doctor.p.UserID, "scheduledAt": time.Now().Add(time.Hour)}, &c))
	if c.State != "scheduled" {
		t.Fatalf("accepted with a time: state %s", c.State)
	}
	// An invalid transition names both states.
	code, body = f.json(doctor, "POST", base+"/accept", map[string]any{"doctorId": doctor.p.UserID}, nil)
	if code != http.StatusConflict || !strings.Contains(body, "scheduled") || !strings.Contains(body, "accepted") {
		t.Fatalf("accept twice: %d %s", code, body)
	}
	code, body = f.json(doctor, "POST", base+"/close", nil, nil)
	if code != http.StatusConflict || !strings.Contains(body, `\"scheduled\" to \"closed\"`) {
		t.Fatalf("close while scheduled: %d %s", code, body)
	}
	must(200)(f.json(doctor, "POST", base+"/start", nil, &c))
	must(200)(f.json(doctor, "PUT", base+"/report", map[string]string{"findings": "右下肺野见斑片状模糊影<script>", "impression": "右下肺炎", "recommendations": "抗感染治疗，两周后复查"}, nil))
	must(200)(f.json(doctor, "POST", base+"/finish", nil, &c))
	must(403)(f.json(doctor, "POST", base+"/report/sign", map[string]string{"password": "wrong"}, nil))
	var rep struct {
		SHA256   string    `json:"sha256"`
		SignedAt time.Time `json:"signedAt"`
	}
	must(200)(f.json(doctor, "POST", base+"/report/sign", map[string]string{"password": doctor.password}, &rep))
	if len(rep.SHA256) != 64 || rep.SignedAt.IsZero() {
		t.Fatalf("signed report: %+v", rep)
	}
	// Signed is frozen: an edit is refused, an addendum is added.
	must(409)(f.json(doctor, "PUT", base+"/report", map[string]string{"findings": "改", "impression": "改", "recommendations": ""}, nil))
	must(201)(f.json(doctor, "POST", base+"/report/addenda", map[string]string{"text": "补充：建议CT进一步检查", "password": doctor.password}, nil))
	code, page := f.do(clinic, "GET", base+"/report/print", "", nil, nil)
	if code != 200 || !strings.Contains(page, "韦东平") || !strings.Contains(page, rep.SHA256) || strings.Contains(page, "<script>") {
		t.Fatalf("printable report: %d", code)
	}
	f.do(doctor, "GET", "/dicom-web/studies/"+f.studyA.Study+"/metadata", "", nil, nil)
	must(200)(f.json(clinic, "POST", base+"/close", nil, &c))
	if c.State != "closed" {
		t.Fatalf("state %s", c.State)
	}
	// The session log: the timeline has every transition, the report and the study reads.
	var log struct {
		Timeline []struct {
			Action, Actor, Object string
		} `json:"timeline"`
	}
	must(200)(f.json(admin, "GET", "/api/session-logs/"+id, nil, &log))
	var actions []string
	for _, e := range log.Timeline {
		actions = append(actions, e.Action)
	}
	joined := strings.Join(actions, " ")
	for _, want := range []string{"consultation.request", "consultation.consent.upload", "consultation.accept", "consultation.schedule",
		"consultation.start", "report.draft", "consultation.finish", "report.sign", "report.addendum", "consultation.close", "study.read"} {
		if !strings.Contains(joined, want) {
			t.Errorf("timeline lacks %s: %s", want, joined)
		}
	}
	code, csvBody := f.do(admin, "GET", "/api/session-logs/"+id+"?format=csv", "", nil, nil)
	rows, err := csv.NewReader(strings.NewReader(csvBody)).ReadAll()
	// +1 header, +1 the admin's read of the log just before, which is part of the record.
	if code != 200 || err != nil || len(rows) != len(log.Timeline)+2 || rows[0][0] != "seq" {
		t.Fatalf("CSV export: %d %v, %d rows for %d entries", code, err, len(rows), len(log.Timeline))
	}
	code, csvBody = f.do(admin, "GET", "/api/session-logs?format=csv&state=closed", "", nil, nil)
	if code != 200 || !strings.Contains(csvBody, "韦东平") {
		t.Fatalf("session log list as CSV: %d %s", code, csvBody)
	}
	var verify struct {
		Holds   bool  `json:"holds"`
		Entries int64 `json:"entries"`
	}
	must(200)(f.json(admin, "GET", "/api/audit/verify", nil, &verify))
	if !verify.Holds || verify.Entries < 10 {
		t.Fatalf("audit verify: %+v", verify)
	}
}

// TestBadInput: unknown fields, wrong types, oversized bodies, wrong media types, another
// institution's IDs: each a clear 4xx problem document, nothing changed.
func TestBadInput(t *testing.T) {
	f := newAuthzFixture(t)
	clinic, doctor, admin := f.users["clinic"], f.users["doctor"], f.users["admin"]
	own := fmt.Sprint(f.consultation(false, "requested"))
	valid := map[string]any{"patient": map[string]string{"id": "P1", "name": "韦东平"}, "studyUIDs": []string{f.studyA.Study},
		"clinicalQuestion": "q", "purpose": "p", "urgency": "routine", "targetInstitutionId": f.inst["H"], "consentConfirmed": true}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range valid {
			m[kk] = vv
		}
		m[k] = v
		return m
	}
	countConsultations := func() int {
		var n int
		f.st.DB().QueryRow(`SELECT count(*) FROM consultations`).Scan(&n)
		return n
	}
	before := countConsultations()
	for _, c := range []struct {
		name string
		u    *fixtureUser
		ct   string
		body string
		want int
	}{
		{"unknown field", clinic, "application/json", mustJSON(with("dosage", "x")), 400},
		{"wrong type", clinic, "application/json", mustJSON(with("urgency", 3)), 400},
		{"not JSON", clinic, "application/json", "{", 400},
		{"two JSON values", clinic, "application/json", mustJSON(valid) + "{}", 400},
		{"form post", clinic, "application/x-www-form-urlencoded", "a=b", 415},
		{"oversized", clinic, "application/json", `{"clinicalQuestion":"` + strings.Repeat("x", 300<<10) + `"}`, 413},
		{"no consent", clinic, "application/json", mustJSON(with("consentConfirmed", false)), 422},
		{"bad urgency", clinic, "application/json", mustJSON(with("urgency", "whenever")), 422},
		{"another clinic's study", clinic, "application/json", mustJSON(with("studyUIDs", []string{f.studyB.Study})), 422},
		{"unknown study", clinic, "application/json", mustJSON(with("studyUIDs", []string{"1.2.3.4"})), 422},
		{"doctor cannot request", doctor, "application/json", mustJSON(valid), 403},
	} {
		code, body := f.do(c.u, "POST", "/api/consultations", c.ct, []byte(c.body), nil)
		if code != c.want || !strings.Contains(body, `"status":`) {
			t.Errorf("%s: %d, want %d: %.200s", c.name, code, c.want, body)
		}
	}
	if n := countConsultations(); n != before {
		t.Fatalf("bad requests created %d consultations", n-before)
	}
	for _, c := range []struct {
		name, method, path string
		u                  *fixtureUser
		body               string
		want               int
	}{
		{"transition takes no body", "POST", "/api/consultations/" + own + "/start", admin, `{"x":1}`, 400},
		{"non-numeric ID", "GET", "/api/consultations/abc", clinic, "", 404},
		{"negative ID", "GET", "/api/consultations/-1", clinic, "", 404},
		{"huge ID", "GET", "/api/consultations/99999999999999999999", clinic, "", 404},
		{"decline without a reason", "POST", "/api/consultations/" + own + "/decline", doctor, `{"reason":""}`, 422},
		{"accept an unknown doctor", "POST", "/api/consultations/" + own + "/accept", doctor, `{"doctorId":999}`, 422},
		{"accept another hospital's doctor", "POST", "/api/consultations/" + own + "/accept", doctor, fmt.Sprintf(`{"doctorId":%d}`, f.users["doctor2"].p.UserID), 422},
		{"invite an unknown user", "POST", "/api/consultations/" + own + "/participants", clinic, `{"userId":999}`, 422},
		{"user with an unknown role", "POST", "/api/users", admin, `{"username":"x1","roles":["root"],"password":"long-enough"}`, 422},
		{"user in an unknown institution", "POST", "/api/users", admin, `{"username":"x2","roles":["clinic"],"institutionId":999,"password":"long-enough"}`, 422},
		{"duplicate username", "POST", "/api/users", admin, `{"username":"clinic","roles":["clinic"],"institutionId":1,"password":"long-enough"}`, 409},
		{"short password", "POST", "/api/users", admin, `{"username":"x3","roles":["admin"],"password":"short"}`, 422},
		{"admin token", "POST", "/api/tokens", admin, fmt.Sprintf(`{"name":"x","institutionId":%d,"role":"admin"}`, f.inst["A"]), 422},
		{"institution kind", "POST", "/api/institutions", admin, `{"code":"x","name":"x","kind":"pharmacy"}`, 422},
		{"unknown user ID", "GET", "/api/users/999", admin, "", 404},
		{"revoke unknown token", "DELETE", "/api/tokens/999", admin, "", 404},
		{"bad date filter", "GET", "/api/consultations?from=yesterday", clinic, "", 400},
		{"bad export format", "GET", "/api/session-logs?format=xml", admin, "", 400},
		{"POST to the app", "POST", "/index.html", nil, "", 405},
	} {
		ct := ""
		if c.body != "" {
			ct = "application/json"
		}
		code, body := f.do(c.u, c.method, c.path, ct, []byte(c.body), nil)
		if code != c.want {
			t.Errorf("%s: %d, want %d: %.200s", c.name, code, c.want, body)
		}
	}
	// Consent forms: only PDF, JPEG, PNG, whose bytes must match; bounded.
	for _, c := range []struct {
		name, ct string
		body     []byte
		want     int
	}{
		{"an executable", "application/x-msdownload", []byte("MZ\x90\x00"), 415},
		{"an executable called a PDF", "application/pdf", []byte("MZ\x90\x00"), 422},
		{"21 MiB", "application/pdf", append([]byte("%PDF-1.4\n"), make([]byte, 21<<20)...), 413},
	} {
		code, body := f.do(clinic, "PUT", "/api/consultations/"+own+"/consent-form", c.ct, c.body, nil)
		if code != c.want {
			t.Errorf("consent form, %s: %d, want %d: %.200s", c.name, code, c.want, body)
		}
	}
	var state string
	var consent sql.NullString
	f.st.DB().QueryRow(`SELECT consent_sha256 FROM consultations WHERE id = ?`, own).Scan(&consent)
	if consent.Valid {
		t.Fatal("a refused consent form was recorded")
	}
	f.st.DB().QueryRow(`SELECT state FROM consultations WHERE id = ?`, own).Scan(&state)
	if state != "requested" {
		t.Fatalf("bad requests moved the consultation to %s", state)
	}
}

// TestLoginOverHTTP: wrong passwords, the hold after five, the per-address rate limit, and a
// session without the CSRF header refused on a state change.
func TestLoginOverHTTP(t *testing.T) {
	f := newAuthzFixture(t)
	login := func(user, pw string) (int, string) {
		return f.json(nil, "POST", "/api/login", map[string]string{"username": user, "password": pw}, nil)
	}
	// Five wrong passwords hold the account back from this address, and an unknown name
	// the same way: the answers do not tell which exists.
	for _, name := range []string{"township", "nobody"} {
		for i := range 4 {
			if code, body := login(name, "wrong"); code != 401 || !strings.Contains(body, "wrong username or password") {
				t.Fatalf("%s failure %d: %d %s", name, i+1, code, body)
			}
		}
		for _, pw := range []string{"wrong", "township-password"} {
			if code, body := login(name, pw); code != http.StatusTooManyRequests || !strings.Contains(body, "too many failed sign-ins") {
				t.Fatalf("%s held back: %d %s", name, code, body)
			}
		}
	}
	limited := false
	for i := range 30 {
		if code, _ := login(fmt.Sprint("guess", i), "x"); code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 after 35 failed logins from one address")
	}
	// The CSRF token is required on state changes made with the session cookie.
	u := f.users["clinic"]
	req, _ := http.NewRequest("POST", f.srv.URL+"/api/logout", nil)
	res, err := u.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the CSRF token: %d", res.StatusCode)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
