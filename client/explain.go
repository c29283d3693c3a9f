package client

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"

	"github.com/sanping/sanping/client/msg"
	"github.com/sanping/sanping/client/upload"
)

// explain says what went wrong and what to do next, in the technician's language, for an
// error that ends a command. The Go error follows on a second line ("details: ...") for
// whoever supports the clinic: it names the request and the system's words.
func explain(p *msg.Printer, err error) string {
	what := whatWentWrong(p, err)
	if what == "" {
		return err.Error()
	}
	return what + "\n  " + p.Tr("details: %s", err.Error())
}

// whatWentWrongOr is what went wrong and what to do, or the error itself when it is not one
// the station knows how to explain.
func whatWentWrongOr(p *msg.Printer, err error) string {
	if s := whatWentWrong(p, err); s != "" {
		return s
	}
	return err.Error()
}

func whatWentWrong(p *msg.Printer, err error) string {
	var (
		se     *upload.StatusError
		gaveUp *upload.GaveUpError
		pathE  *fs.PathError
		ue     *url.Error
		ne     net.Error
	)
	tries := ""
	if errors.As(err, &gaveUp) {
		tries = p.Tr(" (tried %d times)", gaveUp.Attempts)
	}
	switch {
	case errors.Is(err, errNeedAdmin):
		return p.Tr("This needs an administrator prompt: right-click Command Prompt, choose Run as administrator, and run the same command there.")
	case errors.Is(err, context.Canceled):
		return p.Tr("Interrupted. Run the same command again to go on: what the server has already is not sent again.")
	case errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden):
		return p.Tr("The server refuses this station's token (it may have been revoked). Ask the county hospital's administrator for a new token, then run sanping-station login again.")
	case errors.As(err, &se) && se.Code == http.StatusRequestEntityTooLarge:
		return p.Tr("The server refused a file as too large%s. Tell the county hospital's administrator which study it was.", tries)
	case errors.As(err, &se) && se.Code >= 500:
		return p.Tr("The server has a fault (HTTP %d)%s. Try again later; if it goes on, call the county hospital's administrator.", se.Code, tries)
	case errors.As(err, &se):
		return p.Tr("The server refused the request (HTTP %d)%s. Tell the county hospital's administrator what you were doing.", se.Code, tries)
	case errors.Is(err, syscall.ENOSPC):
		return p.Tr("The disk is full. Free space on this PC's disk (empty the recycle bin, move old files), then run the same command again.")
	case errors.Is(err, fs.ErrPermission):
		return p.Tr("Not allowed to read or write a file%s. Run the command as the user that set up the station, or ask your IT contact.", pathOf(p, pathE, err))
	case errors.Is(err, fs.ErrNotExist) && errors.As(err, &pathE):
		return p.Tr("File or folder not found: %s. Check the path (is the CD in the drive, is the USB disk plugged in?).", pathE.Path)
	case errors.As(err, &ne) && ne.Timeout(), errors.As(err, &ue), isNetwork(err):
		return p.Tr("Cannot reach the server%s. Check this PC's network (4G router, cable), then run the same command again: what the server has already is not sent again.", tries)
	}
	return ""
}

// pathOf is " (PATH)" for the path of a file-system error, else "".
func pathOf(p *msg.Printer, pathE *fs.PathError, err error) string {
	if errors.As(err, &pathE) {
		return p.Tr(" (%s)", pathE.Path)
	}
	return ""
}

// isNetwork: the connection could not be made or broke (refused, reset, no route, DNS).
func isNetwork(err error) bool {
	var (
		op  *net.OpError
		dns *net.DNSError
	)
	return errors.As(err, &op) || errors.As(err, &dns) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, os.ErrDeadlineExceeded)
}
