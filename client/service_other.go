//go:build !windows

package client

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/sanping/sanping/client/msg"
)

// serviceWindowsOnly is the answer of `service` where there is no Windows service manager.
func serviceWindowsOnly(p *msg.Printer) error {
	return errors.New(p.Tr("the service commands are for Windows; on Linux run the station under systemd with the unit in docs/deployment.md (sanping-station.service), after sanping-station login -machine"))
}

func runningAsService() bool { return false }

// requireAdmin leaves it to the file system: /etc and /var/lib are root's.
func requireAdmin() error { return nil }

// machineDir makes /etc/sanping-station; the login in it is 0600 (saveStationConfig).
func machineDir(dir string) error { return os.MkdirAll(dir, 0o755) }

func installService(p *msg.Printer, exe string, args []string, m machinePaths, stdout io.Writer) error {
	return serviceWindowsOnly(p)
}

func uninstallService(ctx context.Context, p *msg.Printer, m machinePaths, stdout io.Writer) error {
	return serviceWindowsOnly(p)
}

func startService(p *msg.Printer, m machinePaths, stdout io.Writer) error {
	return serviceWindowsOnly(p)
}

func stopService(ctx context.Context, p *msg.Printer, timeout time.Duration, stdout io.Writer) error {
	return serviceWindowsOnly(p)
}

func serviceStatus(ctx context.Context, p *msg.Printer, m machinePaths, stdout, stderr io.Writer) error {
	return serviceWindowsOnly(p)
}

func runService(ctx context.Context, p *msg.Printer, m machinePaths, args []string, stdout, stderr io.Writer) error {
	return serviceWindowsOnly(p)
}
