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
	"strings"
	"time"
)

// stationConfig is what `sanping-station login` saves for the other commands: the server and the
// station token.
type stationConfig struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// defaultConfigPath is os.UserConfigDir()/sanping/client.json.
func defaultConfigPath() string {
	d, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "sanping", "client.json")
}

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
		return "", usageError{fmt.Sprintf("server %q is not a URL like https://host:8080", s)}
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
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("the server refuses the token (%s)", resp.Status)
	default:
		return fmt.Errorf("GET /api/session: %s", resp.Status)
	}
}

// loginCommand is `sanping-station login`: checks the token with the server and saves both for the
// other commands.
func loginCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the Sanping server, e.g. https://sanping.example.org:8080")
	token := fs.String("token", "", `station token spt_... ("-": read it from standard input)`)
	config := fs.String("config", defaultConfigPath(), "where to save the login")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sanping-station login -server URL -token spt_...|-\n\n"+
			"Checks the station token with the server and saves both (readable by you only) for the other commands.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("login: unexpected argument %q", fs.Arg(0))}
	}
	if *server == "" || *token == "" {
		return usageError{"login: -server and -token are required"}
	}
	if *config == "" {
		return usageError{"login: no configuration directory; give -config"}
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
		return usageError{"login: a station token starts with spt_"}
	}
	if err := checkSession(ctx, srv, tok); err != nil {
		return err
	}
	if err := saveStationConfig(*config, stationConfig{Server: srv, Token: tok}); err != nil {
		return fmt.Errorf("saving the login: %w", err)
	}
	fmt.Fprintf(stdout, "logged in to %s; saved in %s\n", srv, *config)
	return nil
}
