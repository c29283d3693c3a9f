package client

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/client/msg"
)

// errNeedAdmin: the command changes the machine (the service, the machine-wide login) and the
// prompt is not an administrator's.
var errNeedAdmin = errors.New("this needs an administrator prompt (right-click Command Prompt, Run as administrator)")

// serviceUsage is service's help (a message key; the service's name is serviceName).
const serviceUsage = `usage: sanping-station service install [scp flags...] | uninstall | start | stop [-timeout 2m] | status | run [scp flags...]

Runs the DICOM receiver (sanping-station scp -forward) as the Windows service SanpingStation, started
with Windows, as SYSTEM. Its login, spool and journal are machine-wide: save the login first
with "sanping-station login -machine" from an administrator prompt. install takes scp's flags
(-aet, -addr, -allow, ...); -forward, and the machine-wide -dir, -journal and -config, are added
unless given. "run" is what the service manager starts; run from a prompt it receives in the
foreground.
`

// serviceCommand is `sanping-station service`: install, control and run the station as a Windows
// service.
func serviceCommand(ctx context.Context, p *msg.Printer, args []string, stdout, stderr io.Writer) error {
	return service(ctx, p, currentPaths().Machine, args, stdout, stderr)
}

func service(ctx context.Context, p *msg.Printer, m machinePaths, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("service: install, uninstall, start, stop, status or run?")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		p.Trf(stdout, serviceUsage)
		return flag.ErrHelp
	case "install":
		for _, a := range rest {
			if a == "-h" || a == "-help" || a == "--help" {
				p.Trf(stdout, serviceUsage)
				return flag.ErrHelp
			}
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		if exe, err = filepath.Abs(exe); err != nil {
			return err
		}
		return installService(p, exe, serviceArgs(m, rest), m, stdout)
	case "run":
		return runService(ctx, p, m, scpArgs(m, rest), stdout, stderr)
	case "stop":
		fs := flag.NewFlagSet("service stop", flag.ContinueOnError)
		fs.SetOutput(stderr)
		timeout := fs.Duration("timeout", 2*time.Minute, p.Tr("how long to wait for images being received to finish"))
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("service stop: unexpected argument %q", fs.Arg(0))
		}
		if *timeout <= 0 {
			return usagef("service stop: -timeout must be more than 0")
		}
		return stopService(ctx, p, *timeout, stdout)
	case "uninstall", "start", "status":
		if len(rest) > 0 {
			return usagef("service %s: unexpected argument %q", sub, rest[0])
		}
		switch sub {
		case "uninstall":
			return uninstallService(ctx, p, m, stdout)
		case "start":
			return startService(p, m, stdout)
		default:
			return serviceStatus(ctx, p, m, stdout, stderr)
		}
	}
	return usagef("service: unknown subcommand %q (install, uninstall, start, stop, status or run)", sub)
}

// serviceArgs is the service's command line after the executable: "service run" and scp's flags.
func serviceArgs(m machinePaths, given []string) []string {
	return append([]string{"service", "run"}, scpArgs(m, given)...)
}

// scpArgs are the flags the service runs scp with: -forward and the machine-wide spool, journal
// and login, then the ones given. A flag given is not added; were it added anyway, the given
// one, coming later, would win (package flag keeps the last).
func scpArgs(m machinePaths, given []string) []string {
	var args []string
	if _, ok := lastFlag(given, "forward", true); !ok {
		args = append(args, "-forward")
	}
	for _, f := range []struct{ name, value string }{{"dir", m.Spool}, {"journal", m.Journal}, {"config", m.Config}} {
		if _, ok := lastFlag(given, f.name, false); !ok {
			args = append(args, "-"+f.name, f.value)
		}
	}
	return append(args, given...)
}

// lastFlag is the value of the last -name (or --name, -name=value) among args, as package flag
// would read it; a bool flag without "=" is "true".
func lastFlag(args []string, name string, isBool bool) (value string, ok bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		n, v, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if n != name {
			continue
		}
		switch {
		case hasValue:
			value, ok = v, true
		case isBool:
			value, ok = "true", true
		case i+1 < len(args):
			i++
			value, ok = args[i], true
		}
	}
	return value, ok
}

// forwards tells whether scp with these flags uploads, and then which login it reads.
func forwards(args []string) (config string, ok bool) {
	v, set := lastFlag(args, "forward", true)
	if on, err := strconv.ParseBool(v); !set || err != nil || !on {
		return "", false
	}
	config, _ = lastFlag(args, "config", false)
	return config, true
}

// serviceLogin is an error unless the service will find a login: with -forward it uploads, and
// uploads with the login its -config names.
func serviceLogin(args []string) error {
	config, ok := forwards(args)
	if !ok || exists(config) {
		return nil
	}
	return fmt.Errorf("no login in %s: save it first with sanping-station login -machine -server URL -token spt_... "+
		"(or install with -forward=false to receive only)", config)
}

// windowsCommandLine is args as one Windows command line, each quoted as CommandLineToArgvW
// reads it back (the rules of syscall.EscapeArg, which the service manager's copy goes through):
// what `service install` shows.
func windowsCommandLine(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(windowsQuote(a))
	}
	return b.String()
}

func windowsQuote(s string) string {
	if s == "" {
		return `""`
	}
	if !strings.ContainsAny(s, "\" \t\\") {
		return s
	}
	space := strings.ContainsAny(s, " \t")
	var b strings.Builder
	if space {
		b.WriteByte('"')
	}
	slashes := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			slashes++
		case '"':
			// Backslashes before a quote are doubled, and the quote escaped.
			b.WriteString(strings.Repeat(`\`, slashes+1))
			slashes = 0
		default:
			slashes = 0
		}
		b.WriteByte(s[i])
	}
	if space {
		// Backslashes before the closing quote are doubled so that it stays a quote.
		b.WriteString(strings.Repeat(`\`, slashes))
		b.WriteByte('"')
	}
	return b.String()
}
