//go:build windows

package client

import (
	"syscall"
	"testing"
)

// TestWindowsQuoteEscapeArg: the command line install shows is the one the service manager
// gets (mgr.CreateService quotes with syscall.EscapeArg).
func TestWindowsQuoteEscapeArg(t *testing.T) {
	for _, tt := range windowsQuoteCases {
		if got, want := windowsQuote(tt[0]), syscall.EscapeArg(tt[0]); got != want {
			t.Errorf("%s: %s, EscapeArg %s", tt[0], got, want)
		}
	}
}
