package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/upload"
)

// stationConfig is what `sanping-station login` saves for the other commands: the server and the
// station token.
type stationConfig struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// stationPaths are where the station looks for its login: the user's own, and the machine-wide
// one that an administrator saves once (login -machine) for the service.
type stationPaths struct {
	UserConfig string // os.UserConfigDir()/sanping/client.json; "" if there is none
	Machine    machinePaths
	Service    bool // running as a service: the account's own config is never looked at
}

// machinePaths are the station's machine-wide files: the login, the scp spool, the upload
// journal and (Windows) the service's log file.
type machinePaths struct {
	Config, Spool, Journal, Log string
}

// currentPaths are this process's stationPaths.
func currentPaths() stationPaths {
	p := stationPaths{Machine: machinePathsFor(runtime.GOOS, os.Getenv("ProgramData")), Service: runningAsService()}
	if d, err := os.UserConfigDir(); err == nil {
		p.UserConfig = filepath.Join(d, "sanping", "client.json")
	}
	return p
}

// machinePathsFor is %ProgramData%\Sanping\station\ on Windows (everything in one folder, which
// only Administrators and SYSTEM may open), /etc/sanping-station and /var/lib/sanping-station
// elsewhere.
func machinePathsFor(goos, programData string) machinePaths {
	if goos == "windows" {
		if programData == "" {
			programData = `C:\ProgramData`
		}
		dir := strings.TrimRight(programData, `\`) + `\Sanping\station\`
		return machinePaths{Config: dir + "client.json", Spool: dir + "spool", Journal: dir + "journal", Log: dir + "station.log"}
	}
	return machinePaths{Config: "/etc/sanping-station/client.json",
		Spool: "/var/lib/sanping-station/spool", Journal: "/var/lib/sanping-station/journal"}
}

// config is the login the commands read when -config is not given: the user's own if there is
// one (and this is not a service), else the machine-wide one if there is one. With neither it
// is where a plain login would save it, so that the help and the errors name that place.
func (p stationPaths) config() string {
	if !p.Service && p.UserConfig != "" && exists(p.UserConfig) {
		return p.UserConfig
	}
	if p.Service || p.UserConfig == "" || exists(p.Machine.Config) {
		return p.Machine.Config
	}
	return p.UserConfig
}

// exists is false only for a file that is surely not there: one that may not be read still
// exists, and reading it says why not.
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// defaultConfigPath is the login read when -config is not given (stationPaths.config).
func defaultConfigPath() string { return currentPaths().config() }

// readStationConfig reads the saved login; a missing file is an empty config.
func readStationConfig(path string) (stationConfig, error) {
	var c stationConfig
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// saveStationConfig writes the config readable by its owner only (it holds the token), whole or not
// at all.
func saveStationConfig(path string, c stationConfig) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "\t")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".client-*.json") // created 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// serverURL checks a server URL and drops a trailing slash.
func serverURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", usagef("server %q is not a URL like https://host:8080", s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// checkSession asks the server who the token is: GET /api/session must answer 200.
func checkSession(ctx context.Context, server, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/api/session", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	default:
		// 401 and 403: the token is refused (explain says so and what to do).
		return &upload.StatusError{Code: resp.StatusCode, Detail: "GET /api/session"}
	}
}

// loginCommand is `sanping-station login`: checks the token with the server and saves both for the
// other commands.
func loginCommand(ctx context.Context, p *msg.Printer, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return login(ctx, p, currentPaths(), args, stdin, stdout, stderr)
}

// loginUsage is login's help (a message key).
const loginUsage = `usage: sanping-station login [-machine] -server URL -token spt_...|-

Checks the station token with the server and saves both (readable by you only) for the other commands.

`

func login(ctx context.Context, p *msg.Printer, paths stationPaths, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", p.Tr("the Sanping server, e.g. https://sanping.example.org:8080"))
	token := fs.String("token", "", p.Tr("station token spt_... (\"-\": read it from standard input)"))
	config := fs.String("config", paths.UserConfig, p.Tr("where to save the login"))
	machine := fs.Bool("machine", false, p.Tr("save it machine-wide, for the service, in %s (readable by administrators only; run from an administrator prompt)", paths.Machine.Config))
	fs.Usage = func() {
		p.Trf(fs.Output(), loginUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("login: unexpected argument %q", fs.Arg(0))
	}
	if *server == "" || *token == "" {
		return usagef("login: -server and -token are required")
	}
	path := *config
	if *machine {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
		if explicit {
			return usagef("login: give -machine or -config, not both")
		}
		path = paths.Machine.Config
	}
	if path == "" {
		return usagef("login: no configuration directory; give -config")
	}
	srv, err := serverURL(*server)
	if err != nil {
		return err
	}
	tok := *token
	if tok == "-" {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		tok = strings.TrimSpace(line)
	}
	if !strings.HasPrefix(tok, "spt_") {
		return usagef("login: a station token starts with spt_")
	}
	if *machine {
		if err := requireAdmin(); err != nil {
			return err
		}
	}
	if err := checkSession(ctx, srv, tok); err != nil {
		return err
	}
	if *machine {
		// The folder is closed to everyone but administrators and SYSTEM before the token
		// is written into it.
		if err := machineDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("%s: %w", p.Tr("the machine-wide folder"), err)
		}
	}
	if err := saveStationConfig(path, stationConfig{Server: srv, Token: tok}); err != nil {
		return fmt.Errorf("%s: %w", p.Tr("saving the login"), err)
	}
	p.Trf(stdout, "logged in to %s; saved in %s\n", srv, path)
	return nil
}
