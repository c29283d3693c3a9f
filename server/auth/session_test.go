package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func signIn(t *testing.T, s *Service, user, pw string) (*http.Cookie, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/login", nil)
	_, csrf, err := s.Login(rec, req, user, pw)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies", len(cookies))
	}
	return cookies[0], csrf
}

func TestSessionCookieAndCSRF(t *testing.T) {
	s := newService(t)
	c := &clock{time.Now()}
	s.now = c.now
	if _, err := s.Bootstrap(context.Background(), "admin-password"); err != nil {
		t.Fatal(err)
	}
	cookie, csrf := signIn(t, s, "admin", "admin-password")
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.Secure {
		t.Fatalf("cookie attributes: %+v", cookie)
	}
	var n int
	s.db.QueryRow(`SELECT count(*) FROM sessions WHERE id_hash = ?`, cookie.Value).Scan(&n)
	if n != 0 {
		t.Fatal("the session secret is stored in clear")
	}
	auth := func(method string, withCookie bool, token string) error {
		req := httptest.NewRequest(method, "/api/x", nil)
		if withCookie {
			req.AddCookie(cookie)
		}
		if token != "" {
			req.Header.Set(CSRFHeader, token)
		}
		_, err := s.Authenticate(req, false)
		return err
	}
	for _, tc := range []struct {
		name   string
		method string
		cookie bool
		csrf   string
		want   error
	}{
		{"GET with the cookie", "GET", true, "", nil},
		{"no cookie", "GET", false, "", ErrUnauthenticated},
		{"POST without a CSRF token", "POST", true, "", ErrCSRF},
		{"POST with a wrong CSRF token", "POST", true, "x" + csrf, ErrCSRF},
		{"POST with the CSRF token", "POST", true, csrf, nil},
		{"DELETE with the CSRF token", "DELETE", true, csrf, nil},
	} {
		if err := auth(tc.method, tc.cookie, tc.csrf); !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Idle timeout: quiet for longer than SessionIdle ends the session.
	c.t = c.t.Add(SessionIdle - time.Minute)
	if err := auth("GET", true, ""); err != nil {
		t.Fatalf("within the idle timeout: %v", err)
	}
	c.t = c.t.Add(SessionIdle - time.Second)
	if err := auth("GET", true, ""); err != nil {
		t.Fatalf("activity extends the session: %v", err)
	}
	c.t = c.t.Add(SessionIdle + time.Second)
	if err := auth("GET", true, ""); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after the idle timeout: %v", err)
	}
	// Absolute timeout: active all day, still ends.
	cookie, _ = signIn(t, s, "admin", "admin-password")
	for i := 0; i < int(SessionAbsolute/(20*time.Minute))-1; i++ {
		c.t = c.t.Add(20 * time.Minute)
		if err := auth("GET", true, ""); err != nil {
			t.Fatalf("active session ended after %v: %v", time.Duration(i+1)*20*time.Minute, err)
		}
	}
	c.t = c.t.Add(20*time.Minute + time.Second)
	if err := auth("GET", true, ""); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after the absolute timeout: %v", err)
	}
}

func TestSecureCookieUnderTLS(t *testing.T) {
	s := newService(t)
	s.SetSecureCookies(true)
	if _, err := s.Bootstrap(context.Background(), "admin-password"); err != nil {
		t.Fatal(err)
	}
	cookie, _ := signIn(t, s, "admin", "admin-password")
	if !cookie.Secure || !strings.HasPrefix(cookie.Name, "__Host-") {
		t.Fatalf("cookie under TLS: %+v", cookie)
	}
}

func TestLogoutAndPasswordChangeEndSessions(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	if _, err := s.Bootstrap(ctx, "admin-password"); err != nil {
		t.Fatal(err)
	}
	a, _ := signIn(t, s, "admin", "admin-password")
	b, _ := signIn(t, s, "admin", "admin-password")
	valid := func(c *http.Cookie) bool {
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(c)
		_, err := s.Authenticate(req, false)
		return err == nil
	}
	p, err := s.principal(ctx, 1, "session")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ChangePassword(ctx, p.UserID, "wrong-password", "new-password-1", a.Value); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("change with a wrong current password: %v", err)
	}
	if err := s.ChangePassword(ctx, p.UserID, "admin-password", "short", a.Value); !errors.Is(err, ErrInvalid) {
		t.Fatalf("change to a short password: %v", err)
	}
	if err := s.ChangePassword(ctx, p.UserID, "admin-password", "new-password-1", a.Value); err != nil {
		t.Fatal(err)
	}
	if !valid(a) || valid(b) {
		t.Fatalf("after a password change: this session valid=%v, the other valid=%v", valid(a), valid(b))
	}
	req := httptest.NewRequest("POST", "/api/logout", nil)
	req.AddCookie(a)
	rec := httptest.NewRecorder()
	if err := s.Logout(rec, req.WithContext(WithPrincipal(ctx, p))); err != nil {
		t.Fatal(err)
	}
	if valid(a) {
		t.Fatal("the session survived logout")
	}
}

func TestAdminResetForcesPasswordChange(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	if _, err := s.Bootstrap(ctx, "admin-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.addUser(ctx, NewUser{Username: "wei", Roles: []string{RoleAdmin}}, "first-password"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "wei", "temporary-pw", true); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	s.Mount(mux, []Route{
		{Pattern: "GET /api/users", Action: ActAdmin, Handler: ok},
		{Pattern: "GET /api/session", Action: ActSelf, DuringPasswordChange: true, Handler: ok},
	})
	cookie, _ := signIn(t, s, "wei", "temporary-pw")
	get := func(path string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Code
	}
	if get("/api/users") != http.StatusForbidden || get("/api/session") != http.StatusOK {
		t.Fatalf("before the change: users %d, session %d", get("/api/users"), get("/api/session"))
	}
	if err := s.ChangePassword(ctx, 2, "temporary-pw", "my-own-password", cookie.Value); err != nil {
		t.Fatal(err)
	}
	if get("/api/users") != http.StatusOK {
		t.Fatalf("after the change: %d", get("/api/users"))
	}
}

func TestTokens(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	c := &clock{time.Now()}
	s.now = c.now
	if _, err := s.db.Exec(`CREATE TABLE institutions (id INTEGER PRIMARY KEY, code TEXT); INSERT INTO institutions VALUES (7, 'longshan')`); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name string
		inst int64
		role string
	}{{"", 7, RoleClinic}, {"dr", 0, RoleClinic}, {"dr", 8, RoleClinic}, {"dr", 7, RoleAdmin}, {"dr", 7, "root"}} {
		if _, _, err := s.CreateToken(ctx, bad.name, bad.inst, bad.role, "admin"); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateToken(%q, %d, %q): %v", bad.name, bad.inst, bad.role, err)
		}
	}
	tok, secret, err := s.CreateToken(ctx, "龙山村卫生室-DR", 7, RoleClinic, "admin")
	if err != nil {
		t.Fatal(err)
	}
	var stored string
	s.db.QueryRow(`SELECT token_hash FROM api_tokens WHERE id = ?`, tok.ID).Scan(&stored)
	if stored == secret || strings.Contains(stored, secret) {
		t.Fatal("token stored in clear")
	}
	bearer := func(v string) (*Principal, error) {
		req := httptest.NewRequest("POST", "/dicom-web/studies", nil)
		req.Header.Set("Authorization", "Bearer "+v)
		return s.Authenticate(req, true)
	}
	p, err := bearer(secret)
	if err != nil {
		t.Fatal(err)
	}
	if p.InstitutionID != 7 || p.InstitutionCode != "longshan" || !p.HasRole(RoleClinic) || p.HasRole(RoleAdmin) || p.Method != "token" || p.UserID != 0 {
		t.Fatalf("token principal: %+v", p)
	}
	got, _ := s.Token(ctx, tok.ID)
	if got.LastUsedAt.IsZero() {
		t.Fatal("last use not recorded")
	}
	if _, err := bearer(secret + "x"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := s.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := bearer(secret); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := s.RevokeToken(ctx, tok.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := s.RevokeToken(ctx, 99); !errors.Is(err, ErrHidden) {
		t.Fatalf("revoking an unknown token: %v", err)
	}
}

func TestLoginRateLimitPerIP(t *testing.T) {
	s := newService(t)
	c := &clock{time.Now()}
	s.now = c.now
	if _, err := s.Bootstrap(context.Background(), "admin-password"); err != nil {
		t.Fatal(err)
	}
	try := func(ip, user string) error {
		req := httptest.NewRequest("POST", "/api/login", nil)
		req.RemoteAddr = ip + ":5555"
		_, _, err := s.Login(httptest.NewRecorder(), req, user, "wrong")
		return err
	}
	// Many accounts guessed from one address: the address is stopped, not only each account.
	limited := 0
	for i := range loginBurst + 5 {
		if errors.Is(try("10.0.0.1", "user"+string(rune('a'+i))), ErrRateLimited) {
			limited++
		}
	}
	if limited != 5 {
		t.Fatalf("%d of %d attempts limited, want 5", limited, loginBurst+5)
	}
	if err := try("10.0.0.2", "admin"); errors.Is(err, ErrRateLimited) {
		t.Fatal("another address was limited")
	}
	c.t = c.t.Add(loginEvery)
	if err := try("10.0.0.1", "admin"); errors.Is(err, ErrRateLimited) {
		t.Fatal("the address stays limited after the bucket refilled")
	}
}

func TestDecideConsultation(t *testing.T) {
	const hospital, clinicA, clinicB = 1, 2, 3
	f := ConsultationFacts{RequestingInstitution: clinicA, TargetInstitution: hospital, AssignedDoctor: 10}
	admin := &Principal{UserID: 1, Roles: []string{RoleAdmin}}
	assigned := &Principal{UserID: 10, Roles: []string{RoleDoctor}, InstitutionID: hospital}
	colleague := &Principal{UserID: 11, Roles: []string{RoleDoctor}, InstitutionID: hospital}
	otherDoctor := &Principal{UserID: 12, Roles: []string{RoleDoctor}, InstitutionID: clinicB}
	requester := &Principal{UserID: 20, Roles: []string{RoleClinic}, InstitutionID: clinicA}
	otherClinic := &Principal{UserID: 21, Roles: []string{RoleClinic}, InstitutionID: clinicB}
	station := &Principal{Roles: []string{RoleClinic}, InstitutionID: clinicA, TokenID: 3}
	township := &Principal{UserID: 30, Roles: []string{RoleClinic}, InstitutionID: clinicB}
	const (
		ok  = "ok"
		no  = "403"
		hid = "404"
	)
	acts := []Action{ActConsultRead, ActConsultRespond, ActConsultRun, ActConsultCancel, ActConsultClose, ActConsultInvite, ActConsentUpload, ActReportWrite}
	table := []struct {
		name string
		p    *Principal
		part bool
		want []string // per action above
	}{
		{"admin", admin, false, []string{ok, ok, ok, ok, ok, ok, ok, no}},
		{"assigned doctor", assigned, false, []string{ok, ok, ok, ok, ok, ok, no, ok}},
		{"doctor of the asked hospital", colleague, false, []string{ok, ok, no, ok, no, no, no, no}},
		{"doctor elsewhere", otherDoctor, false, []string{hid, hid, hid, hid, hid, hid, hid, hid}},
		{"requesting clinic", requester, false, []string{ok, no, no, ok, ok, ok, ok, no}},
		{"requesting clinic's station token", station, false, []string{ok, no, no, ok, ok, ok, ok, no}},
		{"another clinic", otherClinic, false, []string{hid, hid, hid, hid, hid, hid, hid, hid}},
		{"invited township participant", township, true, []string{ok, no, no, no, no, no, no, no}},
	}
	for _, row := range table {
		ff := f
		ff.Participant = row.part
		for i, act := range acts {
			err := DecideConsultation(row.p, act, ff)
			got := ok
			switch {
			case errors.Is(err, ErrHidden):
				got = hid
			case errors.Is(err, ErrForbidden):
				got = no
			case err != nil:
				got = err.Error()
			}
			if got != row.want[i] {
				t.Errorf("%s %s: %s, want %s", row.name, act, got, row.want[i])
			}
		}
	}
}
