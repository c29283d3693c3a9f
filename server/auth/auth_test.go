package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sanping/server/store"
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
	p, err := s.login(context.Background(), "admin", gen, "test")
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
	if _, err := s.login(context.Background(), "admin", "other", "test"); err == nil {
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
	p, err := s.login(context.Background(), "admin", "county-admin-2026", "test")
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

func TestLockout(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	if _, err := s.AddUser(ctx, NewUser{Username: "admin", Roles: []string{RoleAdmin}}, "right-password"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= maxFailedLogins; i++ {
		_, err := s.login(ctx, "admin", "wrong", "test")
		if i < maxFailedLogins && (!errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrLocked)) {
			t.Fatalf("failure %d: %v", i, err)
		}
		if i == maxFailedLogins && !errors.Is(err, ErrLockedNow) {
			t.Fatalf("failure %d did not lock: %v", i, err)
		}
	}
	if _, err := s.login(ctx, "admin", "right-password", "test"); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked account accepted the right password: %v", err)
	}
	// The lock runs out: the right password works again and the count starts afresh.
	if _, err := s.db.Exec(`UPDATE users SET locked_until = ? WHERE username = 'admin'`, time.Now().Add(-time.Second).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.login(ctx, "admin", "right-password", "test"); err != nil {
		t.Fatalf("after the lock expired: %v", err)
	}
	for i := 1; i < maxFailedLogins; i++ {
		if _, err := s.login(ctx, "admin", "wrong", "test"); errors.Is(err, ErrLocked) {
			t.Fatalf("locked again after %d failures", i)
		}
	}
	// An admin unlocks.
	s.login(ctx, "admin", "wrong", "test")
	if _, err := s.login(ctx, "admin", "right-password", "test"); !errors.Is(err, ErrLocked) {
		t.Fatalf("not locked after %d more failures: %v", maxFailedLogins, err)
	}
	if err := s.Unlock(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.login(ctx, "admin", "right-password", "test"); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	if err := s.Unlock(ctx, "nobody"); err == nil {
		t.Fatal("unlocking an unknown user succeeded")
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
	if _, err := s.login(context.Background(), "nobody", "whatever", "test"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("unknown user: %v", err)
	}
	if !strings.HasPrefix(s.dummy, "$argon2id$") {
		t.Fatalf("after an unknown user's login the dummy hash is %q", s.dummy)
	}
}
