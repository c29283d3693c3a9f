package client

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sanping/sanping/client/msg"
	"golang.org/x/text/language"

	"github.com/sanping/sanping/client/upload/uploadtest"
)

func TestLogin(t *testing.T) {
	srv := uploadtest.Start(t, nil)
	config := filepath.Join(t.TempDir(), "sanping", "client.json")
	var out, errs strings.Builder
	err := loginCommand(context.Background(), msg.New(language.English), []string{"-server", srv.URL + "/", "-token", "-", "-config", config},
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

func TestMachinePaths(t *testing.T) {
	for _, tt := range []struct {
		goos, programData string
		want              machinePaths
	}{
		{"windows", `C:\ProgramData`, machinePaths{Config: `C:\ProgramData\Sanping\station\client.json`,
			Spool: `C:\ProgramData\Sanping\station\spool`, Journal: `C:\ProgramData\Sanping\station\journal`,
			Log: `C:\ProgramData\Sanping\station\station.log`}},
		{"windows", `D:\Program Data\`, machinePaths{Config: `D:\Program Data\Sanping\station\client.json`,
			Spool: `D:\Program Data\Sanping\station\spool`, Journal: `D:\Program Data\Sanping\station\journal`,
			Log: `D:\Program Data\Sanping\station\station.log`}},
		{"windows", "", machinePathsFor("windows", `C:\ProgramData`)},
		{"linux", "", machinePaths{Config: "/etc/sanping-station/client.json",
			Spool: "/var/lib/sanping-station/spool", Journal: "/var/lib/sanping-station/journal"}},
	} {
		if got := machinePathsFor(tt.goos, tt.programData); got != tt.want {
			t.Errorf("%s %q: %+v, want %+v", tt.goos, tt.programData, got, tt.want)
		}
	}
}

// TestConfigLookup: without -config the user's own login wins, unless this is a service; then
// the machine-wide one; with neither, the user's (where a plain login saves it).
func TestConfigLookup(t *testing.T) {
	dir := t.TempDir()
	user, machine := filepath.Join(dir, "user", "client.json"), filepath.Join(dir, "machine", "client.json")
	for _, tt := range []struct {
		user, machine, service bool
		want                   string
	}{
		{user: true, machine: true, want: user},
		{user: true, want: user},
		{machine: true, want: machine},
		{want: user},
		{user: true, machine: true, service: true, want: machine},
		{user: true, service: true, want: machine},
	} {
		for path, present := range map[string]bool{user: tt.user, machine: tt.machine} {
			os.Remove(path)
			if present {
				if err := saveStationConfig(path, stationConfig{Server: "https://x", Token: "spt_x"}); err != nil {
					t.Fatal(err)
				}
			}
		}
		p := stationPaths{UserConfig: user, Machine: machinePaths{Config: machine}, Service: tt.service}
		if got := p.config(); got != tt.want {
			t.Errorf("user %v, machine %v, service %v: %s, want %s", tt.user, tt.machine, tt.service, got, tt.want)
		}
	}
	// No user configuration directory at all: the machine-wide one.
	if got := (stationPaths{Machine: machinePaths{Config: machine}}).config(); got != machine {
		t.Errorf("no user directory: %s", got)
	}
}

// TestLoginMachine: login -machine saves in the machine-wide place, not the user's.
func TestLoginMachine(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the machine-wide folder's ACL needs an administrator prompt")
	}
	srv := uploadtest.Start(t, nil)
	dir := t.TempDir()
	paths := stationPaths{UserConfig: filepath.Join(dir, "user", "client.json"),
		Machine: machinePathsFor(runtime.GOOS, "")}
	paths.Machine.Config = filepath.Join(dir, "etc", "sanping-station", "client.json")
	var out, errs strings.Builder
	err := login(context.Background(), msg.New(language.English), paths, []string{"-machine", "-server", srv.URL, "-token", srv.Token},
		strings.NewReader(""), &out, &errs)
	if err != nil {
		t.Fatalf("%v (%s)", err, errs.String())
	}
	c, err := readStationConfig(paths.Machine.Config)
	if err != nil || c.Server != srv.URL || c.Token != srv.Token {
		t.Fatalf("saved %+v, %v", c, err)
	}
	if fi, err := os.Stat(paths.Machine.Config); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%v %v", fi.Mode(), err)
	}
	if _, err := os.Stat(paths.UserConfig); !os.IsNotExist(err) {
		t.Fatalf("the user's login was written: %v", err)
	}
	if !strings.Contains(out.String(), paths.Machine.Config) {
		t.Errorf("output does not say where: %q", out.String())
	}
	// The next command finds it, there being no login of the user's.
	if got := paths.config(); got != paths.Machine.Config {
		t.Errorf("lookup: %s", got)
	}
}

func TestLoginMachineAndConfig(t *testing.T) {
	config := filepath.Join(t.TempDir(), "client.json")
	var out, errs strings.Builder
	args := []string{"login", "-machine", "-config", config, "-server", "http://127.0.0.1:1", "-token", "spt_x"}
	if code := run(context.Background(), args, &out, &errs); code != 2 {
		t.Fatalf("exit %d, want 2 (%s)", code, errs.String())
	}
}
