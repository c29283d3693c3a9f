package client

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

func TestLogin(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := filepath.Join(t.TempDir(), "sanping", "client.json")
	var out, errs strings.Builder
	err := loginCommand(context.Background(), []string{"-server", srv.URL + "/", "-token", "-", "-config", config},
		strings.NewReader(srv.Token+"\n"), &out, &errs)
	if err != nil {
		t.Fatalf("%v (%s)", err, errs.String())
	}
	c, err := readStationConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != srv.URL || c.Token != srv.Token {
		t.Fatalf("saved %+v", c)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(config)
		di, _ := os.Stat(filepath.Dir(config))
		if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Fatalf("modes %v %v", fi.Mode(), di.Mode())
		}
	}
}

// TestLoginDefaultPath: without -config the login goes to the user's configuration directory,
// where upload finds it.
func TestLoginDefaultPath(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("HOME", home)
	t.Setenv("AppData", home)
	var out, errs strings.Builder
	if code := run(context.Background(), []string{"login", "-server", srv.URL, "-token", srv.Token}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	data, err := os.ReadFile(defaultConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	var c stationConfig
	if err := json.Unmarshal(data, &c); err != nil || c.Token != srv.Token {
		t.Fatalf("%s %v", data, err)
	}
}

func TestLoginRefused(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := filepath.Join(t.TempDir(), "client.json")
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"-server", srv.URL, "-token", "spt_wrong"}, 1},
		{[]string{"-server", srv.URL}, 2},
		{[]string{"-server", "ftp://x", "-token", srv.Token}, 2},
		{[]string{"-server", srv.URL, "-token", "not-a-token"}, 2},
	} {
		var out, errs strings.Builder
		args := append([]string{"login", "-config", config}, tt.args...)
		if code := run(context.Background(), args, &out, &errs); code != tt.code {
			t.Errorf("%v: exit %d, want %d (%s)", tt.args, code, tt.code, errs.String())
		}
	}
	if _, err := os.Stat(config); !os.IsNotExist(err) {
		t.Fatalf("a refused login was saved: %v", err)
	}
}
