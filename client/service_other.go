//go:build !windows

package client

import (
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// errServiceWindowsOnly is the answer of `service` where there is no Windows service manager.
var errServiceWindowsOnly = errors.New("the service commands are for Windows; on Linux run the station under systemd " +
	"with the unit in docs/deployment.md (sanping-station.service), after sanping-station login -machine")

func runningAsService() bool { return false }

// requireAdmin leaves it to the file system: /etc and /var/lib are root's.
func requireAdmin() error { return nil }

// machineDir makes /etc/sanping-station; the login in it is 0600 (saveStationConfig).
func machineDir(dir string) error { return os.MkdirAll(dir, 0o755) }

func installService(exe string, args []string, m machinePaths, stdout io.Writer) error {
	return errServiceWindowsOnly
}

func uninstallService(ctx context.Context, m machinePaths, stdout io.Writer) error {
	return errServiceWindowsOnly
}

func startService(m machinePaths, stdout io.Writer) error { return errServiceWindowsOnly }

func stopService(ctx context.Context, timeout time.Duration, stdout io.Writer) error {
	return errServiceWindowsOnly
}

func serviceStatus(ctx context.Context, m machinePaths, stdout, stderr io.Writer) error {
	return errServiceWindowsOnly
}

func runService(ctx context.Context, m machinePaths, args []string, stdout, stderr io.Writer) error {
	return errServiceWindowsOnly
}
