package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/store"
)

func startServer(t *testing.T, cfg Config) (addr string, stdout *bytes.Buffer, stop func() error) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	stdout = &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.AdminPassword != "" {
		// The first admin's password is temporary; these tests' admin has changed it.
		cfg.started = func(a *app, _ *store.Store) {
			if err := a.auth.SetPassword(ctx, "admin", cfg.AdminPassword, false); err != nil {
				t.Errorf("settling the admin's password: %v", err)
			}
		}
	}
	go func() { errc <- serve(ctx, cfg, stdout, log, ready) }()
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start in 30 s")
	}
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { stop() })
	return addr, stdout, stop
}

func TestServeHealthAndGeneratedAdminPassword(t *testing.T) {
	dir := t.TempDir()
	addr, stdout, stop := startServer(t, Config{DataDir: dir})
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
	out := stdout.String()
	i := strings.Index(out, "password: ")
	if i < 0 {
		t.Fatalf("no generated password printed: %q", out)
	}
	pw := strings.Fields(out[i+len("password: "):])[0]
	req, _ := http.NewRequest("GET", "http://"+addr+"/dicom-web/studies", nil)
	req.SetBasicAuth("admin", pw)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("QIDO with the printed (temporary) password: %d, want 403 until it is changed", res.StatusCode)
	}
	// Signed in, the admin may do one thing: choose a new password.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	res, err = browser.Post("http://"+addr+"/api/login", "application/json", strings.NewReader(`{"username":"admin","password":"`+pw+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		CSRFToken string `json:"csrfToken"`
	}
	json.NewDecoder(res.Body).Decode(&login)
	res.Body.Close()
	change, _ := http.NewRequest("POST", "http://"+addr+"/api/session/password", strings.NewReader(`{"currentPassword":"`+pw+`","newPassword":"county-admin-2026"}`))
	change.Header.Set("Content-Type", "application/json")
	change.Header.Set("X-CSRF-Token", login.CSRFToken)
	if res, err = browser.Do(change); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusNoContent {
		t.Fatalf("changing the temporary password: %d", res.StatusCode)
	}
	pw = "county-admin-2026"
	req.SetBasicAuth("admin", pw)
	if res, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("QIDO with the changed password: %d", res.StatusCode)
	}
	req.SetBasicAuth("admin", pw+"x")
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "clean-shutdown")); err != nil {
		t.Fatalf("clean shutdown marker missing: %v", err)
	}
	// The second start neither creates nor prints a password.
	_, stdout2, _ := startServer(t, Config{DataDir: dir})
	if strings.Contains(stdout2.String(), "password") {
		t.Fatalf("second start printed a password: %q", stdout2.String())
	}
}

func TestServeTLSWithHSTS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	addr, _, _ := startServer(t, Config{DataDir: dir, TLSCert: cert, TLSKey: key, AdminPassword: "admin-pw-1"})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("TLS healthz: %d, HSTS %q", res.StatusCode, res.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP on the TLS port is refused (Go answers 400).
	res, err = http.Get("http://" + addr + "/healthz")
	if err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on the TLS listener")
		}
	}
}

func TestRunFlagsAndEnv(t *testing.T) {
	t.Setenv("SANPING_ADDR", "127.0.0.1:1")
	if err := run(context.Background(), []string{"-tls-cert", "x"}, nil, io.Discard, slog.Default()); err == nil ||
		!strings.Contains(err.Error(), "go together") {
		t.Fatalf("-tls-cert without -tls-key: %v", err)
	}
	if err := run(context.Background(), []string{"bogus"}, nil, io.Discard, slog.Default()); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
	for _, bad := range []string{"pacs.dahua.example", "ftp://pacs.dahua.example", "https://pacs.dahua.example/dicom-web", "https://pacs.dahua.example/?x=1"} {
		if err := run(context.Background(), []string{"-public-url", bad}, nil, io.Discard, slog.Default()); err == nil || !strings.Contains(err.Error(), "-public-url") {
			t.Errorf("-public-url %s: %v", bad, err)
		}
	}
}

func selfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certPath, keyPath
}

// TestAuditTrailOfPatientAccess: uploads and reads through DICOMweb leave entries in the
// hash-chained trail, coalesced per study and minute, and `sanping audit verify` finds the chain
// intact, then names the entry an intruder changed.
func TestAuditTrailOfPatientAccess(t *testing.T) {
	dir := t.TempDir()
	addr, _, stop := startServer(t, Config{DataDir: dir, AdminPassword: "admin-pw-1"})
	data := minimalInstance("1.2.826.0.1.55", "1.2.826.0.1.55.1", "1.2.826.0.1.55.1.1")
	body := "--B\r\nContent-Type: application/dicom\r\n\r\n" + string(data) + "\r\n--B--\r\n"
	req, _ := http.NewRequest("POST", "http://"+addr+"/dicom-web/studies", strings.NewReader(body))
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	req.SetBasicAuth("admin", "admin-pw-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("STOW: %d", res.StatusCode)
	}
	for range 3 { // three reads of one study within a minute: one entry
		req, _ = http.NewRequest("GET", "http://"+addr+"/dicom-web/studies/1.2.826.0.1.55/metadata", nil)
		req.SetBasicAuth("admin", "admin-pw-1")
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	bad, _ := http.NewRequest("GET", "http://"+addr+"/dicom-web/studies", nil)
	bad.SetBasicAuth("admin", "guess")
	if res, err := http.DefaultClient.Do(bad); err == nil {
		res.Body.Close()
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify", "-data", dir}, nil, &out, slog.Default()); err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	// login (verified once, then cached), the upload, one coalesced read, the failed login.
	if !strings.Contains(out.String(), "holds: 4 entries") {
		t.Fatalf("audit verify said %q, want 4 entries", out.String())
	}
	db0, _ := store.OpenDB(filepath.Join(dir, "index.db"))
	trail, err := audit.Open(context.Background(), db0, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := trail.List(context.Background(), audit.Filter{})
	db0.Close()
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+":"+e.Outcome)
	}
	if got := strings.Join(actions, " "); got != "login:success study.upload:success study.read:success login.failed:failure" {
		t.Fatalf("audit entries: %s", got)
	}
	// An intruder edits an entry behind the application's back.
	db, err := sql.Open("sqlite", filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := db.Query(`SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_log'`)
	var triggers []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		triggers = append(triggers, n)
	}
	rows.Close()
	for _, n := range triggers {
		if _, err := db.Exec(`DROP TRIGGER "` + n + `"`); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = run(context.Background(), []string{"audit", "verify", "-data", dir}, nil, &out, slog.Default())
	var broken *audit.BrokenError
	if !errors.As(err, &broken) || broken.Seq != 1 {
		t.Fatalf("audit verify after tampering: %v, want entry 1 named", err)
	}
}

// minimalInstance is a small valid Part 10 file (explicit VR little endian, no pixel data).
func minimalInstance(study, series, sop string) []byte {
	le := func(b []byte, v uint16) []byte { return append(b, byte(v), byte(v>>8)) }
	elem := func(b []byte, g, e uint16, vr, val string) []byte {
		if len(val)%2 == 1 {
			val += "\x00"
		}
		b = le(le(b, g), e)
		b = append(b, vr...)
		return append(le(b, uint16(len(val))), val...)
	}
	var meta []byte
	meta = elem(meta, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7")
	meta = elem(meta, 0x0002, 0x0003, "UI", sop)
	meta = elem(meta, 0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1")
	f := append(make([]byte, 128), "DICM"...)
	f = le(le(f, 0x0002), 0x0000)
	f = append(f, 'U', 'L', 4, 0, byte(len(meta)), byte(len(meta)>>8), 0, 0)
	f = append(f, meta...)
	f = elem(f, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7")
	f = elem(f, 0x0008, 0x0018, "UI", sop)
	f = elem(f, 0x0010, 0x0010, "PN", "Audit^Test")
	f = elem(f, 0x0020, 0x000D, "UI", study)
	f = elem(f, 0x0020, 0x000E, "UI", series)
	return f
}

// TestAdminCLI: the admin CLI adds sites, accounts and tokens in the data directory, lists,
// locks, unlocks and re-passwords accounts (passwords from standard input), and every change
// is in the audit trail.
func TestAdminCLI(t *testing.T) {
	dir := t.TempDir()
	// A first start creates the database and admin.
	_, _, stop := startServer(t, Config{DataDir: dir, AdminPassword: "first-password"})
	stop()
	cmd := func(stdin string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(stdin), &out, slog.Default())
		return out.String(), err
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := cmd(stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	must("", "site", "add", "-data", dir, "-kind", "hospital", "-department", "放射科,超声科", "dahua", "大化县人民医院")
	must("", "site", "add", "-data", dir, "-kind", "township", "-parent", "dahua", "duyang", "都阳镇卫生院")
	must("", "site", "add", "-data", dir, "-kind", "clinic", "-parent", "duyang", "longshan", "龙山村卫生室")
	if _, err := cmd("", "site", "add", "-data", dir, "-kind", "clinic", "orphan", "无上级"); err == nil {
		t.Fatal("a clinic without a parent was added")
	}
	if out := must("", "site", "list", "-data", dir); !strings.Contains(out, "    longshan") || !strings.Contains(out, "放射科,超声科") {
		t.Fatalf("site list:\n%s", out)
	}
	if out := must("village-pw-1\n", "user", "add", "-data", dir, "-roles", "clinic", "-institution", "longshan", "-name", "韦东平", "village1"); !strings.Contains(out, "added") {
		t.Fatalf("add: %s", out)
	}
	must("doctor-pw-1\n", "user", "add", "-data", dir, "-roles", "doctor", "-institution", "dahua", "-title", "主治医师", "-specialty", "放射科", "-years", "8", "doc1")
	if _, err := cmd("village-pw-2\n", "user", "add", "-data", dir, "-roles", "clinic", "village2"); err == nil {
		t.Fatal("a clinic user without an institution was added")
	}
	if _, err := cmd("short\n", "user", "add", "-data", dir, "-institution", "longshan", "village2"); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	must("", "user", "lock", "-data", dir, "village1")
	out := must("", "user", "list", "-data", dir)
	if !strings.Contains(out, "village1") || !strings.Contains(out, "韦东平") || !strings.Contains(out, "locked by an admin") || !strings.Contains(out, "主治医师") {
		t.Fatalf("list:\n%s", out)
	}
	must("", "user", "unlock", "-data", dir, "village1")
	must("second-pw\n", "user", "passwd", "-data", dir, "admin")
	if _, err := cmd("", "user", "unlock", "-data", dir, "nobody"); err == nil {
		t.Fatal("unlocking an unknown user succeeded")
	}
	out = must("", "token", "create", "-data", dir, "-institution", "longshan", "龙山DR")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	secret := lines[len(lines)-1]
	if !strings.HasPrefix(secret, "spt_") {
		t.Fatalf("token create printed:\n%s", out)
	}
	if out := must("", "token", "list", "-data", dir); !strings.Contains(out, "龙山DR") {
		t.Fatalf("token list:\n%s", out)
	}
	// The server takes the new password and the token.
	addr, _, stop := startServer(t, Config{DataDir: dir})
	get := func(auth func(*http.Request)) int {
		req, _ := http.NewRequest("GET", "http://"+addr+"/dicom-web/studies", nil)
		auth(req)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := get(func(r *http.Request) { r.SetBasicAuth("admin", "second-pw") }); got != http.StatusOK {
		t.Fatalf("login with the new password: %d", got)
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }
	if got := get(bearer); got != http.StatusOK {
		t.Fatalf("the station token: %d", got)
	}
	stop()
	must("", "token", "revoke", "-data", dir, "1")
	addr, _, stop = startServer(t, Config{DataDir: dir})
	if got := get(bearer); got != http.StatusUnauthorized {
		t.Fatalf("a revoked token: %d", got)
	}
	stop()
	db, err := store.OpenDB(filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	trail, err := audit.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := trail.List(context.Background(), audit.Filter{Actor: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	want := "institution.create institution.department.create institution.department.create institution.create institution.create " +
		"user.create user.create user.lock user.unlock user.password.reset token.create token.revoke"
	if strings.Join(actions, " ") != want {
		t.Fatalf("audit actions by the CLI:\n%s\nwant\n%s", strings.Join(actions, " "), want)
	}
}

// TestAuditHeadPin: someone with write access rewrites an entry and re-hashes the whole tail;
// the chain then agrees with itself, but a head recorded elsewhere before catches it.
func TestAuditHeadPin(t *testing.T) {
	dir := t.TempDir()
	addr, _, stop := startServer(t, Config{DataDir: dir, AdminPassword: "admin-password"})
	for _, pw := range []string{"admin-password", "guess"} {
		req, _ := http.NewRequest("GET", "http://"+addr+"/dicom-web/studies", nil)
		req.SetBasicAuth("admin", pw)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify", "-data", dir}, nil, &out, slog.Default()); err != nil {
		t.Fatal(err)
	}
	i := strings.Index(out.String(), "-head ")
	if i < 0 {
		t.Fatalf("verify printed no head: %q", out.String())
	}
	pin := strings.TrimSpace(out.String()[i+len("-head "):])
	// The rewrite: change entry 1, re-hash every entry after it and the head record.
	db, err := sql.Open("sqlite", filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.Open(context.Background(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := trail.List(context.Background(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER audit_log_no_update`, `DROP TRIGGER audit_head_forward`,
		`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	entries[0].Actor = "someone-else"
	prev := audit.GenesisHash
	for _, e := range entries {
		e.PrevHash = prev
		e.Hash = audit.ComputeHash(e)
		prev = e.Hash
		if _, err := db.Exec(`UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?`, e.PrevHash, e.Hash, e.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`UPDATE audit_head SET hash = ?`, prev); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := run(context.Background(), []string{"audit", "verify", "-data", dir}, nil, &out, slog.Default()); err != nil {
		t.Fatalf("the rewritten chain should agree with itself: %v", err)
	}
	err = run(context.Background(), []string{"audit", "verify", "-data", dir, "-head", pin}, nil, &out, slog.Default())
	if err == nil || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("verify against the pinned head %s: %v", pin, err)
	}
}
