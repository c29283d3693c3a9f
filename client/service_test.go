package client

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

var testMachine = machinePathsFor("windows", `C:\ProgramData`)

func TestServiceArgs(t *testing.T) {
	const (
		spool   = `C:\ProgramData\Sanping\station\spool`
		journal = `C:\ProgramData\Sanping\station\journal`
		config  = `C:\ProgramData\Sanping\station\client.json`
	)
	for _, tt := range []struct {
		given, want []string
	}{
		{nil, []string{"service", "run", "-forward", "-dir", spool, "-journal", journal, "-config", config}},
		{[]string{"-aet", "CT1", "-allow", "DR_ROOM,US_ROOM"},
			[]string{"service", "run", "-forward", "-dir", spool, "-journal", journal, "-config", config,
				"-aet", "CT1", "-allow", "DR_ROOM,US_ROOM"}},
		// Flags given are not added again, in any of package flag's spellings.
		{[]string{"-dir", `D:\sanping spool`, "--journal=D:\\journal", "-forward=false"},
			[]string{"service", "run", "-config", config, "-dir", `D:\sanping spool`, "--journal=D:\\journal", "-forward=false"}},
		{[]string{"--forward", "-config", `E:\login.json`},
			[]string{"service", "run", "-dir", spool, "-journal", journal, "--forward", "-config", `E:\login.json`}},
	} {
		if got := serviceArgs(testMachine, tt.given); !slices.Equal(got, tt.want) {
			t.Errorf("%q:\n got %q\nwant %q", tt.given, got, tt.want)
		}
	}
	// service run fills in what the command line lacks, and nothing once it has it.
	once := scpArgs(testMachine, []string{"-aet", "CT1"})
	if twice := scpArgs(testMachine, once); !slices.Equal(once, twice) {
		t.Errorf("not idempotent: %q then %q", once, twice)
	}
}

// TestServiceCommandLine: what the service manager stores, paths with spaces quoted.
func TestServiceCommandLine(t *testing.T) {
	args := append([]string{`C:\Program Files\Sanping\sanping-station.exe`},
		serviceArgs(machinePathsFor("windows", `C:\Program Data`), []string{"-dir", `D:\My Images\`, "-aet", "CT1"})...)
	want := `"C:\Program Files\Sanping\sanping-station.exe" service run -forward -journal "C:\Program Data\Sanping\station\journal" ` +
		`-config "C:\Program Data\Sanping\station\client.json" -dir "D:\My Images\\" -aet CT1`
	if got := windowsCommandLine(args); got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestWindowsQuote(t *testing.T) {
	for _, tt := range windowsQuoteCases {
		if got := windowsQuote(tt[0]); got != tt[1] {
			t.Errorf("%s: %s, want %s", tt[0], got, tt[1])
		}
	}
}

// windowsQuoteCases are arguments and how CommandLineToArgvW must see them written.
var windowsQuoteCases = [][2]string{
	{"", `""`},
	{"CT1", `CT1`},
	{`C:\Sanping\sanping-station.exe`, `C:\Sanping\sanping-station.exe`},
	{`C:\Program Files\Sanping\sanping-station.exe`, `"C:\Program Files\Sanping\sanping-station.exe"`},
	{`D:\My Images\`, `"D:\My Images\\"`},
	{`D:\images\`, `D:\images\`},
	{`a"b`, `a\"b`},
	{`a\"b c`, `"a\\\"b c"`},
	{"tab\there", "\"tab\there\""},
}

func TestServiceLogin(t *testing.T) {
	dir := t.TempDir()
	saved, missing := filepath.Join(dir, "client.json"), filepath.Join(dir, "none.json")
	if err := saveStationConfig(saved, stationConfig{Server: "https://x", Token: "spt_x"}); err != nil {
		t.Fatal(err)
	}
	m := machinePaths{Config: missing, Spool: dir, Journal: dir}
	for _, tt := range []struct {
		given []string
		ok    bool
	}{
		{nil, false},
		{[]string{"-config", saved}, true},
		{[]string{"-forward=false"}, true},
		{[]string{"-forward=0", "-forward"}, false},
	} {
		if err := serviceLogin(serviceArgs(m, tt.given)); (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.given, err)
		}
	}
}

func TestServiceUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"service"}, 2},
		{[]string{"service", "bogus"}, 2},
		{[]string{"service", "start", "now"}, 2},
		{[]string{"service", "uninstall", "-f"}, 2},
		{[]string{"service", "status", "x"}, 2},
		{[]string{"service", "stop", "-timeout", "0"}, 2},
		{[]string{"service", "stop", "extra"}, 2},
		{[]string{"service", "-h"}, 0},
		{[]string{"service", "install", "-aet", "CT1", "-h"}, 0},
	} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), tt.args, &out, &errs); code != tt.code {
			t.Errorf("%q: exit %d, want %d (%s)", tt.args, code, tt.code, errs.String())
		}
	}
}

// TestServiceNotHere: elsewhere than Windows the service commands point to systemd.
func TestServiceNotHere(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has the service manager")
	}
	for _, sub := range []string{"install", "uninstall", "start", "stop", "status", "run"} {
		var out, errs bytes.Buffer
		if code := run(context.Background(), []string{"-lang", "en", "service", sub}, &out, &errs); code != 1 ||
			!strings.Contains(errs.String(), "systemd") || !strings.Contains(errs.String(), "docs/deployment.md") {
			t.Errorf("%s: exit %d: %s", sub, code, errs.String())
		}
	}
}

func TestLogFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "station.log")
	f, err := openLogFile(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 39) + "\n"
	for range 7 {
		if _, err := f.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// 2 lines fit in 100 bytes: 7 lines are 2 dropped, 2 in station.log.1, 1 in station.log...
	// after rotations at the 3rd, 5th and 7th.
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(cur) != line || string(old) != line+line {
		t.Errorf("station.log %q, station.log.1 %q", cur, old)
	}
	// Opened again, it goes on where it was.
	f, err = openLogFile(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(line))
	f.Close()
	if cur, _ := os.ReadFile(path); string(cur) != line+line {
		t.Errorf("reopened: %q", cur)
	}
}

// recorder is a slog.Handler that keeps the records.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// TestLogLines: what scp prints becomes records, slog's text lines at their own level.
func TestLogLines(t *testing.T) {
	rec := &recorder{}
	w := &logLines{log: slog.New(rec), level: slog.LevelWarn}
	text := slog.New(slog.NewTextHandler(w, nil))
	text.Error("association rejected", "calling", "CT 1", "called", "SANPING")
	text.Info("plain")
	w.Write([]byte("stored 1.2.3 from CT1 (10 bytes)\r\npart"))
	w.Write([]byte("ial line\n\n"))
	w.Write([]byte("no newline"))
	w.Flush()
	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelError, `association rejected calling="CT 1" called=SANPING`},
		{slog.LevelInfo, "plain"},
		{slog.LevelWarn, "stored 1.2.3 from CT1 (10 bytes)"},
		{slog.LevelWarn, "partial line"},
		{slog.LevelWarn, "no newline"},
	}
	if len(rec.records) != len(want) {
		t.Fatalf("%d records, want %d", len(rec.records), len(want))
	}
	for i, r := range rec.records {
		if r.Level != want[i].level || r.Message != want[i].msg {
			t.Errorf("record %d: %v %q, want %v %q", i, r.Level, r.Message, want[i].level, want[i].msg)
		}
	}
}

// TestLineHandler: a record for the event log is one line, its attributes and groups in
// slog's text format, without time and level.
func TestLineHandler(t *testing.T) {
	type event struct {
		level slog.Level
		text  string
	}
	var got []event
	h := newLineHandler(slog.LevelInfo, func(level slog.Level, text string) error {
		got = append(got, event{level, text})
		return nil
	})
	log := slog.New(h)
	log.Debug("not shown")
	log.Info("started", "command", "service run -forward")
	log.With("service", "SanpingStation").WithGroup("scp").Error("stopped", "err", "listen tcp :11112: bind")
	want := []event{
		{slog.LevelInfo, `started command="service run -forward"`},
		{slog.LevelError, `stopped service=SanpingStation scp.err="listen tcp :11112: bind"`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("\n got %v\nwant %v", got, want)
	}
}
