package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanping/sanping/server/store"
)

func newService(t *testing.T) *Service {
	t.Helper()
	db, err := store.OpenDB(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPasswordHash(t *testing.T) {
	h := HashPassword("correct horse")
	if !strings.HasPrefix(h, "$argon2id$v=19$") {
		t.Fatalf("hash %q is not an argon2id PHC string", h)
	}
	if h == HashPassword("correct horse") {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for _, c := range []struct {
		encoded, pw string
		want        bool
	}{
		{h, "correct horse", true},
		{h, "correct horsf", false},
		{h, "", false},
		{"", "x", false},
		{"$argon2id$v=19$m=x$salt$key", "x", false},
		{"$bcrypt$...", "x", false},
	} {
		if got := CheckPassword(c.encoded, c.pw); got != c.want {
			t.Errorf("CheckPassword(%.30q, %q) = %v", c.encoded, c.pw, got)
		}
	}
}

func TestBootstrap(t *testing.T) {
	s := newService(t)
	gen, err := s.Bootstrap(context.Background(), "")
	if err != nil || len(gen) < 16 {
		t.Fatalf("generated password %q, %v", gen, err)
	}
	p, err := s.login(context.Background(), "admin", gen, "test", "192.0.2.1")
	if err != nil {
		t.Fatalf("login with generated password: %v", err)
	}
	if !p.MustChangePassword {
		t.Fatal("the generated password is not marked temporary")
	}
	again, err := s.Bootstrap(context.Background(), "other")
	if err != nil || again != "" {
		t.Fatalf("second bootstrap: %q %v", again, err)
	}
	if _, err := s.login(context.Background(), "admin", "other", "test", "192.0.2.1"); err == nil {
		t.Fatal("second bootstrap changed the password")
	}
}

// TestBootstrapPasswordRule: the first admin's password from the environment follows the
// password rule, and is temporary like a generated one.
func TestBootstrapPasswordRule(t *testing.T) {
	s := newService(t)
	if _, err := s.Bootstrap(context.Background(), "a"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SANPING_ADMIN_PASSWORD=a: %v", err)
	}
	if _, err := s.Bootstrap(context.Background(), "county-admin-2026"); err != nil {
		t.Fatal(err)
	}
	p, err := s.login(context.Background(), "admin", "county-admin-2026", "test", "192.0.2.1")
	if err != nil || !p.MustChangePassword {
		t.Fatalf("login: %v, must change %v", err, p != nil && p.MustChangePassword)
	}
}

func TestGuardBasic(t *testing.T) {
	s := newService(t)
	if _, err := s.AddUser(context.Background(), NewUser{Username: "admin", Roles: []string{RoleAdmin}}, "admin-pw-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.addUser(context.Background(), NewUser{Username: "village", Roles: []string{RoleAdmin}}, "pw2-long-enough"); err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			t.Error("handler reached without a principal")
		}
		w.Write([]byte(p.Username))
	})
	mux := http.NewServeMux()
	s.Mount(mux, []Route{
		{Pattern: "GET /dicom-web/studies", Action: ActStudySearch, Basic: true, Handler: handler},
		{Pattern: "GET /api/users", Action: ActAdmin, Handler: handler},
	})
	cases := []struct {
		name, path string
		user, pass string
		basic      bool
		want       int
	}{
		{"no credentials", "/dicom-web/studies", "", "", false, http.StatusUnauthorized},
		{"wrong password", "/dicom-web/studies", "admin", "nope", true, http.StatusUnauthorized},
		{"unknown user", "/dicom-web/studies", "ghost", "admin-pw-1", true, http.StatusUnauthorized},
		{"admin", "/dicom-web/studies", "admin", "admin-pw-1", true, http.StatusOK},
		{"admin again (cached)", "/dicom-web/studies", "admin", "admin-pw-1", true, http.StatusOK},
		{"Basic is refused outside DICOMweb", "/api/users", "admin", "admin-pw-1", true, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", c.path, nil)
			if c.basic {
				req.SetBasicAuth(c.user, c.pass)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d (%s)", rec.Code, c.want, rec.Body.String())
			}
			if c.want == http.StatusUnauthorized && strings.HasPrefix(c.path, "/dicom-web") && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("401 without a Basic challenge")
			}
			if c.want != http.StatusOK && rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("error without a problem document: %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

// TestConcurrentFirstLoginsShareOneCheck: eight requests arriving together with the same
// credentials are all answered, from one password check.
func TestConcurrentFirstLoginsShareOneCheck(t *testing.T) {
	s := newService(t)
	if _, err := s.AddUser(context.Background(), NewUser{Username: "admin", Roles: []string{RoleAdmin}}, "admin-pw-1"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start // all eight before the first check can finish (~40 ms)
			req := httptest.NewRequest("GET", "/", nil)
			req.SetBasicAuth("admin", "admin-pw-1")
			_, err := s.Authenticate(req, true)
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(s.cache) != 1 {
		t.Fatalf("cache holds %d entries", len(s.cache))
	}
	if n := s.passwordChecks.Load(); n != 1 {
		t.Fatalf("%d password checks for eight requests with the same credentials, want 1", n)
	}
}

// TestFailedSignInsHoldBackOneSource: five wrong passwords hold back that account from that
// address only, with the same answers for an account that does not exist; the real user at
// another address signs in; the hold runs out, or an administrator's unlock ends it. An
// administrator's lock is told only to the right password.
func TestFailedSignInsHoldBackOneSource(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	clock := time.Now()
	s.now = func() time.Time { return clock }
	if _, err := s.AddUser(ctx, NewUser{Username: "admin", Roles: []string{RoleAdmin}}, "right-password"); err != nil {
		t.Fatal(err)
	}
	const attacker, office = "198.51.100.7", "192.0.2.1"
	answers := func(name string) []string {
		var got []string
		for range maxFailedLogins + 1 {
			_, err := s.login(ctx, name, "wrong", "test", attacker)
			got = append(got, fmt.Sprint(err))
		}
		_, err := s.login(ctx, name, "right-password", "test", attacker)
		return append(got, fmt.Sprint(err))
	}
	known, unknown := answers("admin"), answers("ghost")
	for i := range known {
		want := strings.ReplaceAll(known[i], "admin", "ghost")
		if unknown[i] != want {
			t.Errorf("attempt %d: a known account answers %q, an unknown one %q", i+1, known[i], unknown[i])
		}
	}
	if !strings.Contains(known[maxFailedLogins-1], ErrThrottled.Error()) || !strings.Contains(known[maxFailedLogins+1], ErrThrottled.Error()) {
		t.Fatalf("not held back after %d failures: %q", maxFailedLogins, known)
	}
	// The real admin, at the county office, is not locked out.
	if _, err := s.login(ctx, "admin", "right-password", "test", office); err != nil {
		t.Fatalf("the admin at another address: %v", err)
	}
	// The hold runs out.
	clock = clock.Add(lockDuration + time.Second)
	if _, err := s.login(ctx, "admin", "right-password", "test", attacker); err != nil {
		t.Fatalf("after the hold: %v", err)
	}
	// An administrator's unlock ends a hold at once.
	for range maxFailedLogins {
		s.login(ctx, "admin", "wrong", "test", attacker)
	}
	if err := s.Unlock(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.login(ctx, "admin", "right-password", "test", attacker); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if err := s.Unlock(ctx, "nobody"); err == nil {
		t.Fatal("unlocking an unknown user succeeded")
	}
	// An administrator's lock: a wrong password answers as for anyone, the right one is told.
	if err := s.Lock(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.login(ctx, "admin", "wrong", "test", office); errors.Is(err, ErrLocked) {
		t.Fatal("a wrong password learned that the account is locked")
	}
	if _, err := s.login(ctx, "admin", "right-password", "test", office); !errors.Is(err, ErrLocked) {
		t.Fatalf("a locked account with the right password: %v", err)
	}
}

// TestDummyHashIsLazy: no argon2id hash is made when the service starts (every binary and
// test that imports auth paid for one at init); the first unknown username makes it, so that
// login still costs what a known one does.
func TestDummyHashIsLazy(t *testing.T) {
	s := newService(t)
	if s.dummy != "" {
		t.Fatal("the dummy hash was made before any login")
	}
	if _, err := s.login(context.Background(), "nobody", "whatever", "test", "192.0.2.1"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("unknown user: %v", err)
	}
	if !strings.HasPrefix(s.dummy, "$argon2id$") {
		t.Fatalf("after an unknown user's login the dummy hash is %q", s.dummy)
	}
}
