package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
)

// bearer sends a request with an API token and returns the status and body.
func (f *authzFixture) bearer(token, method, path, contentType string, body []byte) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(res.Body)
	return res.StatusCode, b.String()
}

// TestStationStatus: a station posts its report with its token; the admin sees it, with the
// last upload, in the token list and on the dashboard; people's sessions are refused, and bad
// reports are 400 or 422.
func TestStationStatus(t *testing.T) {
	f := newAuthzFixture(t)
	tok, secret, err := f.app.auth.CreateToken(f.ctx, "龙山DR", f.inst["A"], auth.RoleClinic, "admin")
	if err != nil {
		t.Fatal(err)
	}
	failedAt := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Millisecond)
	report := protocol.StationStatus{
		Queue:       protocol.StationQueue{Bundles: 2, Files: 37, Bytes: 31_500_000},
		LastSuccess: failedAt.Add(-time.Hour),
		LastError:   &protocol.StationError{Time: failedAt, Message: "Post \"https://county/api/uploads/\": dial tcp: i/o timeout"},
		Spool:       &protocol.StationSpool{WaitingImages: 3, WaitingBytes: 1_200_000, DiskFree: 8 << 30},
	}
	b, _ := json.Marshal(report)
	before := time.Now()
	if code, body := f.bearer(secret, "POST", "/api/station/status", "application/json", b); code != http.StatusNoContent {
		t.Fatalf("report: %d %s", code, body)
	}
	// An upload with the token (STOW-RS), which the trail records under the token's name.
	ct, inst := stowBody(false)(f, "clinic", false)
	if code, body := f.bearer(secret, "POST", "/dicom-web/studies", ct, inst); code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, body)
	}

	var tokens []auth.Token
	if code, body := f.json(f.users["admin"], "GET", "/api/tokens", nil, &tokens); code != 200 {
		t.Fatalf("tokens: %d %s", code, body)
	}
	var got *auth.Token
	for i := range tokens {
		if tokens[i].ID == tok.ID {
			got = &tokens[i]
		}
	}
	if got == nil || got.Status == nil {
		t.Fatalf("token %d without status: %+v", tok.ID, tokens)
	}
	st := got.Status
	if st.ReportedAt.Before(before.Add(-time.Second)) || st.Queue != report.Queue || !st.LastSuccess.Equal(report.LastSuccess) ||
		st.LastError == nil || st.LastError.Message != report.LastError.Message || !st.LastError.Time.Equal(failedAt) ||
		st.Spool == nil || *st.Spool != *report.Spool {
		t.Errorf("status %+v, want %+v", st, report)
	}
	if got.LastUpload.IsZero() || got.LastUpload.Before(before.Add(-time.Second)) || got.LastUsedAt.IsZero() {
		t.Errorf("last upload %v, last used %v", got.LastUpload, got.LastUsedAt)
	}

	// A later report replaces the first.
	b, _ = json.Marshal(protocol.StationStatus{})
	if code, body := f.bearer(secret, "POST", "/api/station/status", "application/json", b); code != http.StatusNoContent {
		t.Fatalf("second report: %d %s", code, body)
	}
	if r, err := f.app.auth.StationReport(f.ctx, tok.ID); err != nil || r == nil || r.Queue.Files != 0 || r.LastError != nil || r.Spool != nil {
		t.Errorf("second report kept as %+v, %v", r, err)
	}

	// People, whatever their role, cannot post a station's report.
	for _, role := range []string{"admin", "doctor", "clinic"} {
		if code, body := f.do(f.users[role], "POST", "/api/station/status", "application/json", b, nil); code != http.StatusForbidden {
			t.Errorf("%s's session: %d %s", role, code, body)
		}
	}
	// Nor can a doctor or clinic session read the reports.
	for _, role := range []string{"doctor", "clinic"} {
		if code, _ := f.do(f.users[role], "GET", "/api/tokens", "", nil, nil); code != http.StatusForbidden {
			t.Errorf("%s lists tokens: %d", role, code)
		}
	}

	for _, tt := range []struct {
		name, contentType, body string
		want                    int
	}{
		{"not JSON", "application/json", "queue", 400},
		{"unknown field", "application/json", `{"queue":{"bundles":1},"colour":"red"}`, 400},
		{"unknown nested field", "application/json", `{"queue":{"bundles":1,"mb":3}}`, 400},
		{"wrong type", "application/json", `{"queue":{"bundles":"two"}}`, 400},
		{"two values", "application/json", `{}{}`, 400},
		{"negative queue", "application/json", `{"queue":{"bundles":-1,"files":0,"bytes":0}}`, 422},
		{"error without time", "application/json", `{"queue":{},"lastError":{"message":"x"}}`, 422},
		{"long error", "application/json", `{"queue":{},"lastError":{"time":"2026-12-08T01:00:00Z","message":"` + strings.Repeat("x", protocol.MaxStationErrorLen+1) + `"}}`, 422},
		{"negative disk", "application/json", `{"queue":{},"spool":{"waitingImages":0,"waitingBytes":0,"diskFree":-2,"refusing":false}}`, 422},
		{"form", "application/x-www-form-urlencoded", `queue=1`, 415},
		{"too large", "application/json", `{"queue":{},"lastError":{"time":"2026-12-08T01:00:00Z","message":"` + strings.Repeat("x", 300<<10) + `"}}`, 413},
	} {
		if code, body := f.bearer(secret, "POST", "/api/station/status", tt.contentType, []byte(tt.body)); code != tt.want {
			t.Errorf("%s: %d, want %d: %s", tt.name, code, tt.want, body)
		}
	}
	if code, _ := f.bearer("spt_nothing", "POST", "/api/station/status", "application/json", b); code != http.StatusUnauthorized {
		t.Errorf("unknown token: %d", code)
	}
	if _, err := f.app.auth.RevokeToken(f.ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := f.bearer(secret, "POST", "/api/station/status", "application/json", b); code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", code)
	}
}

// TestSignedInNow: two people sign in; the admin lists both, signs one out (that one's next
// request is 401, and the trail says who did it), and cannot sign out their own session.
func TestSignedInNow(t *testing.T) {
	f := newAuthzFixture(t)
	admin, doctor, clinic := f.users["admin"], f.users["doctor"], f.users["clinic"]
	type session struct {
		ID, Username, DisplayName, IP, UserAgent string
		UserID, InstitutionID                    int64
		Roles                                    []string
		CreatedAt, LastSeen                      time.Time
		Current                                  bool
	}
	var list []session
	if code, body := f.json(admin, "GET", "/api/sessions", nil, &list); code != 200 {
		t.Fatalf("sessions: %d %s", code, body)
	}
	find := func(name string) *session {
		for i := range list {
			if list[i].Username == name {
				return &list[i]
			}
		}
		return nil
	}
	d, c, me := find("doctor"), find("clinic"), find("admin")
	if d == nil || c == nil || me == nil {
		t.Fatalf("sessions: %+v", list)
	}
	if !me.Current || d.Current || d.UserID != doctor.p.UserID || d.InstitutionID != f.inst["H"] || d.Roles[0] != "doctor" ||
		d.IP == "" || d.UserAgent == "" || d.CreatedAt.IsZero() || d.LastSeen.IsZero() || len(d.ID) != 16 {
		t.Errorf("doctor's session %+v, admin's %+v", d, me)
	}
	// Neither the cookie nor the hash the database keeps is shown.
	raw, _ := json.Marshal(list)
	var hashes []string
	rows, err := f.st.DB().Query(`SELECT id_hash FROM sessions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		rows.Scan(&h)
		hashes = append(hashes, h)
	}
	rows.Close()
	base, _ := url.Parse(f.srv.URL)
	for _, u := range []*fixtureUser{admin, doctor, clinic} {
		for _, ck := range u.client.Jar.Cookies(base) {
			if strings.Contains(string(raw), ck.Value) {
				t.Errorf("the list shows %s's cookie", u.name)
			}
		}
	}
	for _, h := range hashes {
		if strings.Contains(string(raw), h[:16]) {
			t.Errorf("the list shows a session's hash")
		}
	}

	for _, role := range []string{"doctor", "clinic"} {
		if code, _ := f.do(f.users[role], "GET", "/api/sessions", "", nil, nil); code != http.StatusForbidden {
			t.Errorf("%s lists sessions: %d", role, code)
		}
		if code, _ := f.do(f.users[role], "DELETE", "/api/sessions/"+d.ID, "", nil, nil); code != http.StatusForbidden {
			t.Errorf("%s ends a session: %d", role, code)
		}
	}

	if code, body := f.do(admin, "DELETE", "/api/sessions/"+d.ID, "", nil, nil); code != http.StatusNoContent {
		t.Fatalf("ending the doctor's session: %d %s", code, body)
	}
	if code, _ := f.do(doctor, "GET", "/api/session", "", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("the doctor's next request: %d, want 401", code)
	}
	if code, _ := f.do(clinic, "GET", "/api/session", "", nil, nil); code != http.StatusOK {
		t.Errorf("the clinic's session ended too: %d", code)
	}
	if code, _ := f.do(admin, "DELETE", "/api/sessions/"+d.ID, "", nil, nil); code != http.StatusNotFound {
		t.Errorf("ending it again: %d, want 404", code)
	}
	if code, body := f.do(admin, "DELETE", "/api/sessions/"+me.ID, "", nil, nil); code != http.StatusConflict {
		t.Errorf("ending one's own session: %d, want 409: %s", code, body)
	}
	if code, _ := f.do(admin, "GET", "/api/session", "", nil, nil); code != http.StatusOK {
		t.Errorf("the admin was signed out")
	}
	entries, err := f.app.trail.List(f.ctx, audit.Filter{Action: "session.end"})
	if err != nil || len(entries) != 1 || entries[0].Actor != "admin" || entries[0].Object != "user:doctor" || !strings.Contains(entries[0].Detail, d.ID) {
		t.Errorf("audit: %+v, %v", entries, err)
	}
}
