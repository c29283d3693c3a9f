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
	"syscall"
)

const usage = `usage: sanping-station <command> [flags]

commands:
  join      join a consultation's live room, publish files, print what happens
  loadtest  join rooms x participants at once and measure joining, media and view sync
  login     check the station token with the server and save both for the other commands
  upload    upload DICOM files and folders in resumable bundles (tus), with a summary
  scp       receive images from the modality by DICOM C-STORE (each fsynced before success)
  watch     upload files as they appear in a folder, once complete
  status    the upload queue, the last success, the link to the server

Run "client <command> -h" for the command's flags.
`

// Main runs the sanping-station command with the process's arguments and exits.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a command line that makes no sense; it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "join":
		err = join(ctx, args[1:], stdout, stderr)
	case "loadtest":
		err = loadtest(ctx, args[1:], stdout, stderr)
	case "scp":
		err = scpCommand(ctx, args[1:], stdout, stderr)
	case "watch":
		err = watchCommand(ctx, args[1:], stdout, stderr)
	case "status":
		err = statusCommand(ctx, args[1:], stdout, stderr)
	case "login":
		err = loginCommand(ctx, args[1:], os.Stdin, stdout, stderr)
	case "upload":
		err = uploadCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sanping-station: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sanping-station %s: %v (-h for help)\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "sanping-station %s: %v\n", args[0], err)
		return 1
	}
}
