// Package client is Sanping's station program, built as the sanping-station command
// (cmd/sanping-station) and run on a village clinic's imaging PC. It receives images from the
// modality (scp), uploads them (upload, watch), joins a consultation's live room (join) and
// load-tests live rooms (loadtest).
package client

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sanping/sanping/client/msg"
)

// usage is the command's help (a message key: see client/msg).
const usage = `usage: sanping-station [-lang zh|en] <command> [flags]

commands:
  join      join a consultation's live room, publish files, print what happens
  loadtest  join rooms x participants at once and measure joining, media and view sync
  login     check the station token with the server and save both for the other commands
  upload    upload DICOM files and folders in resumable bundles (tus), with a summary
  scp       receive images from the modality by DICOM C-STORE (each fsynced before success)
  watch     upload files as they appear in a folder, once complete
  status    the upload queue, the last success, the link to the server
  serve     serve folders of DICOM files read-only to the clinic's browser (local DICOMweb)
  service   install, start, stop or remove the Windows service (scp -forward, started with Windows)

Run "sanping-station <command> -h" for the command's flags. Messages are in Chinese unless
-lang en, SANPING_LANG=en or an English locale (LANG=en_US.UTF-8) says otherwise.
`

// Main runs the sanping-station command with the process's arguments and exits.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a command line that makes no sense; it exits with status 2. Its message is
// a message key (client/msg) with its arguments, said in the technician's language.
type usageError struct {
	key  string
	args []any
}

func usagef(key string, args ...any) usageError { return usageError{key, args} }

func (e usageError) Error() string { return fmt.Sprintf(e.key, e.args...) }

// langFlag takes a leading "-lang X" (or -lang=X, --lang) off args.
func langFlag(args []string) (lang string, rest []string) {
	if len(args) == 0 {
		return "", args
	}
	switch a := args[0]; {
	case (a == "-lang" || a == "--lang") && len(args) > 1:
		return args[1], args[2:]
	case strings.HasPrefix(a, "-lang="), strings.HasPrefix(a, "--lang="):
		_, v, _ := strings.Cut(a, "=")
		return v, args[1:]
	}
	return "", args
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	lang, args := langFlag(args)
	tag, err := msg.Pick(lang, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "sanping-station: %v\n", err)
		return 2
	}
	p := msg.New(tag)
	if len(args) == 0 {
		p.Trf(stderr, usage)
		return 2
	}
	switch args[0] {
	case "join":
		err = join(ctx, args[1:], stdout, stderr)
	case "loadtest":
		err = loadtest(ctx, args[1:], stdout, stderr)
	case "scp":
		err = scpCommand(ctx, p, args[1:], stdout, stderr)
	case "watch":
		err = watchCommand(ctx, p, args[1:], stdout, stderr)
	case "status":
		err = statusCommand(ctx, p, args[1:], stdout, stderr)
	case "login":
		err = loginCommand(ctx, p, args[1:], os.Stdin, stdout, stderr)
	case "upload":
		err = uploadCommand(ctx, p, args[1:], stdout, stderr)
	case "serve":
		err = serveCommand(ctx, p, args[1:], stdout, stderr)
	case "service":
		err = serviceCommand(ctx, p, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		p.Trf(stdout, usage)
		return 0
	default:
		p.Trf(stderr, "sanping-station: unknown command %q\n\n", args[0])
		p.Trf(stderr, usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		p.Trf(stderr, "sanping-station %s: %s (-h for help)\n", args[0], p.Tr(ue.key, ue.args...))
		return 2
	default:
		fmt.Fprintf(stderr, "sanping-station %s: %s\n", args[0], explain(p, err))
		return 1
	}
}
