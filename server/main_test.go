package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	go func() { errc <- serve(ctx, cfg, stdout, log, ready) }()
	select {
	case addr = <-ready:
	case err := <-errc:
		t.Fatalf("server did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start in 10 s")
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
	if res.StatusCode != http.StatusOK {
		t.Fatalf("QIDO with the printed password: %d", res.StatusCode)
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
	addr, _, _ := startServer(t, Config{DataDir: dir, TLSCert: cert, TLSKey: key, AdminPassword: "pw"})
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
	if err := run(context.Background(), []string{"-tls-cert", "x"}, io.Discard, slog.Default()); err == nil ||
		!strings.Contains(err.Error(), "go together") {
		t.Fatalf("-tls-cert without -tls-key: %v", err)
	}
	if err := run(context.Background(), []string{"bogus"}, io.Discard, slog.Default()); err == nil {
		t.Fatal("unknown subcommand accepted")
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
