//go:build windows

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sanping/sanping/client/msg"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// The Windows service: its name for sc.exe and the event log, and what services.msc shows.
const (
	serviceName        = "SanpingStation"
	serviceDisplayName = "Sanping 三屏 station (DICOM receiver and uploader)"
	serviceDescription = "Receives images from the modality by DICOM C-STORE and uploads them to the Sanping server " +
		"(sanping-station scp -forward). 接收设备的 DICOM 图像并上传到三屏服务器。"
)

// machineDACL lets SYSTEM and Administrators into the station's folder, and no one else: it
// holds the station token and patients' images. P: not inherited from %ProgramData%, where
// Users may read.
const machineDACL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// logFileSize is where station.log is rotated: a busy day's lines, about.
const logFileSize = 10 << 20

func runningAsService() bool {
	ok, err := svc.IsWindowsService()
	return err == nil && ok
}

func requireAdmin() error {
	if !windows.GetCurrentProcessToken().IsElevated() {
		return errNeedAdmin
	}
	return nil
}

// machineDir makes the station's folder and sets machineDACL on it, which Windows passes on to
// what is in it already.
func machineDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString(machineDACL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
}

func installService(p *msg.Printer, exe string, args []string, m machinePaths, stdout io.Writer) error {
	if err := requireAdmin(); err != nil {
		return err
	}
	if err := serviceLogin(args); err != nil {
		return err
	}
	if err := machineDir(filepath.Dir(m.Config)); err != nil {
		return fmt.Errorf("%s: %w", p.Tr("the machine-wide folder"), err)
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("%s: %w", p.Tr("the service manager"), err)
	}
	defer sm.Disconnect()
	if s, err := sm.OpenService(serviceName); err == nil {
		s.Close()
		return errors.New(p.Tr("the service %s is installed already (sanping-station service uninstall removes it)", serviceName))
	}
	s, err := sm.CreateService(serviceName, exe, mgr.Config{DisplayName: serviceDisplayName, Description: serviceDescription,
		StartType: mgr.StartAutomatic, DelayedAutoStart: true}, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Tr("creating the service"), err)
	}
	defer s.Close()
	undo := func(err error) error {
		s.Delete()
		return err
	}
	// Restarted after any failure, an exit with an error too (the port taken, the disk gone):
	// after 5 s, 30 s, then every minute; the count starts again after a day without one.
	restart := []mgr.RecoveryAction{{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
		{Type: mgr.ServiceRestart, Delay: 30 * time.Second}, {Type: mgr.ServiceRestart, Delay: time.Minute}}
	if err := s.SetRecoveryActions(restart, 24*60*60); err != nil {
		return undo(fmt.Errorf("%s: %w", p.Tr("setting restart after failure"), err))
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return undo(fmt.Errorf("%s: %w", p.Tr("setting restart after failure"), err))
	}
	eventlog.Remove(serviceName) // an earlier install's, if uninstall could not remove it
	if err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		return undo(fmt.Errorf("%s: %w", p.Tr("registering the event log source"), err))
	}
	p.Trf(stdout, "installed the service %s (starts with Windows):\n  %s\nlogs: Event Viewer, Windows Logs > Application, source %s; and %s\nstart it now: sanping-station service start\n",
		serviceName, windowsCommandLine(append([]string{exe}, args...)), serviceName, m.Log)
	return nil
}

func uninstallService(ctx context.Context, p *msg.Printer, m machinePaths, stdout io.Writer) error {
	return withService(p, func(s *mgr.Service) error {
		if err := stopAndWait(ctx, p, s, 2*time.Minute, stdout); err != nil {
			return err
		}
		if err := s.Delete(); err != nil {
			return fmt.Errorf("%s: %w", p.Tr("removing the service"), err)
		}
		if err := eventlog.Remove(serviceName); err != nil {
			p.Trf(stdout, "the event log source %s stays: %v\n", serviceName, err)
		}
		p.Trf(stdout, "removed the service %s; its login, images and journal stay in %s\n",
			serviceName, filepath.Dir(m.Config))
		return nil
	})
}

func startService(p *msg.Printer, m machinePaths, stdout io.Writer) error {
	return withService(p, func(s *mgr.Service) error {
		if err := s.Start(); err != nil {
			return fmt.Errorf("%s: %w", p.Tr("starting the service"), err)
		}
		// A receiver that cannot start (the port taken, no login) stops within a second or two.
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := s.Query()
			if err != nil {
				return err
			}
			switch {
			case st.State == svc.Running:
				p.Trf(stdout, "the service %s is running\n", serviceName)
				return nil
			case st.State == svc.Stopped:
				return errors.New(p.Tr("the service %s stopped at once; see why in Event Viewer (source %s) or %s",
					serviceName, serviceName, m.Log))
			case time.Now().After(deadline):
				return errors.New(p.Tr("the service %s is still %s after 30 s", serviceName, stateName(p, st.State)))
			}
			time.Sleep(300 * time.Millisecond)
		}
	})
}

func stopService(ctx context.Context, p *msg.Printer, timeout time.Duration, stdout io.Writer) error {
	return withService(p, func(s *mgr.Service) error {
		return stopAndWait(ctx, p, s, timeout, stdout)
	})
}

// stopAndWait asks the service to stop and waits until it has: images being received are
// finished first, which may take a while for a large study.
func stopAndWait(ctx context.Context, p *msg.Printer, s *mgr.Service, timeout time.Duration, stdout io.Writer) error {
	st, err := s.Query()
	if err != nil {
		return err
	}
	if st.State == svc.Stopped {
		return nil
	}
	if st.State != svc.StopPending {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("%s: %w", p.Tr("stopping the service"), err)
		}
	}
	p.Trf(stdout, "stopping the service %s...\n", serviceName)
	deadline := time.Now().Add(timeout)
	for {
		if st, err = s.Query(); err != nil {
			return err
		}
		if st.State == svc.Stopped {
			p.Trf(stdout, "the service %s is stopped\n", serviceName)
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(p.Tr("the service %s is still %s after %v (finishing images being received?); try again, or look in Event Viewer",
				serviceName, stateName(p, st.State), timeout))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// withService runs f on the installed service, from an administrator prompt: what uninstall,
// start and stop share.
func withService(p *msg.Printer, f func(*mgr.Service) error) error {
	if err := requireAdmin(); err != nil {
		return err
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("%s: %w", p.Tr("the service manager"), err)
	}
	defer sm.Disconnect()
	s, err := openService(p, sm)
	if err != nil {
		return err
	}
	defer s.Close()
	return f(s)
}

func openService(p *msg.Printer, sm *mgr.Mgr) (*mgr.Service, error) {
	s, err := sm.OpenService(serviceName)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return nil, errors.New(p.Tr("the service %s is not installed (sanping-station service install)", serviceName))
	}
	return s, err
}

// serviceStatus shows the service's state and command line, then (for an administrator, who
// may read the machine-wide folder) what sanping-station status shows for its queue, link and spool.
func serviceStatus(ctx context.Context, p *msg.Printer, m machinePaths, stdout, stderr io.Writer) error {
	// Only the rights to look, which every user has: not mgr.Connect's all-access.
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Tr("the service manager"), err)
	}
	defer windows.CloseServiceHandle(h)
	name, _ := windows.UTF16PtrFromString(serviceName)
	sh, err := windows.OpenService(h, name, windows.SERVICE_QUERY_STATUS|windows.SERVICE_QUERY_CONFIG)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		p.Trf(stdout, "service:      %s is not installed\n", serviceName)
		return nil
	}
	if err != nil {
		return err
	}
	s := &mgr.Service{Name: serviceName, Handle: sh}
	defer s.Close()
	st, err := s.Query()
	if err != nil {
		return err
	}
	state := stateName(p, st.State)
	if st.State == svc.Running {
		state += p.Tr(" (process %d)", st.ProcessId)
	}
	p.Trf(stdout, "service:      %s %s\n", serviceName, state)
	if c, err := s.Config(); err == nil {
		p.Trf(stdout, "command:      %s\n", c.BinaryPathName)
	}
	if requireAdmin() != nil {
		p.Trf(stdout, "(the queue and the link: from an administrator prompt)\n")
		return nil
	}
	return statusCommand(ctx, p, []string{"-config", m.Config, "-journal", m.Journal, "-spool", m.Spool}, stdout, stderr)
}

func stateName(p *msg.Printer, s svc.State) string {
	switch s {
	case svc.Stopped:
		return p.Tr("stopped")
	case svc.StartPending:
		return p.Tr("starting")
	case svc.StopPending:
		return p.Tr("stopping")
	case svc.Running:
		return p.Tr("running")
	case svc.ContinuePending, svc.PausePending, svc.Paused:
		return p.Tr("paused")
	}
	return p.Tr("in state %d", s)
}

// runService is `service run`: under the service manager the receiver runs as the service,
// logging to the event log and station.log; started from a prompt it runs in the foreground.
func runService(ctx context.Context, p *msg.Printer, m machinePaths, args []string, stdout, stderr io.Writer) error {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return err
	}
	if !isService {
		return scpCommand(ctx, p, args, stdout, stderr)
	}
	log, fileLog, closeLogs := serviceLogs(m)
	defer closeLogs()
	if err := svc.Run(serviceName, &stationService{ctx: ctx, p: p, args: args, log: log, fileLog: fileLog}); err != nil {
		log.Error("the service manager", "err", err)
		return err
	}
	return nil
}

// serviceLogs are the service's loggers: log to station.log and the event log, fileLog to
// station.log only (a line for every image received would drown the event log).
func serviceLogs(m machinePaths) (log, fileLog *slog.Logger, closeLogs func()) {
	var handlers []slog.Handler
	fileHandler := slog.DiscardHandler
	f, ferr := openLogFile(m.Log, logFileSize)
	if ferr == nil {
		fileHandler = slog.NewTextHandler(f, nil)
		handlers = append(handlers, fileHandler)
	}
	el, eerr := eventlog.Open(serviceName)
	if eerr == nil {
		handlers = append(handlers, newLineHandler(slog.LevelInfo, func(level slog.Level, msg string) error {
			const eventID = 1
			switch {
			case level >= slog.LevelError:
				return el.Error(eventID, msg)
			case level >= slog.LevelWarn:
				return el.Warning(eventID, msg)
			}
			return el.Info(eventID, msg)
		}))
	}
	log = slog.New(slog.NewMultiHandler(handlers...))
	if ferr != nil {
		log.Warn("no log file", "err", ferr)
	}
	return log, slog.New(fileHandler), func() {
		if f != nil {
			f.Close()
		}
		if el != nil {
			el.Close()
		}
	}
}

// stationService runs the scp command as the service, under a context that Stop and Shutdown
// cancel: as on SIGTERM, associations in progress finish and the upload journal is let go.
type stationService struct {
	p       *msg.Printer
	ctx     context.Context
	args    []string
	log     *slog.Logger
	fileLog *slog.Logger
}

func (s *stationService) Execute(_ []string, changes <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		out := &logLines{log: s.fileLog, level: slog.LevelInfo}
		errs := &logLines{log: s.log, level: slog.LevelWarn}
		err := scpCommand(ctx, s.p, s.args, out, errs)
		out.Flush()
		errs.Flush()
		done <- err
	}()
	running := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- running
	s.log.Info("started", "command", strings.Join(s.args, " "))
	for {
		select {
		case err := <-done:
			// Not asked to stop: a service-specific exit code, which the service manager counts
			// as a failure and answers with a restart (install's recovery actions).
			if err == nil {
				err = errors.New("stopped by itself")
			}
			s.log.Error("the receiver stopped; the service restarts it", "err", err)
			return true, 1
		case c := <-changes:
			switch c.Cmd {
			case svc.Interrogate:
				status <- running
			case svc.Stop, svc.Shutdown:
				s.log.Info("stopping: images being received are finished first")
				cancel()
				return s.stop(done, changes, status)
			}
		}
	}
}

// stop waits for the receiver, telling the service manager every 2 s that it is still stopping.
func (s *stationService) stop(done <-chan error, changes <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	pending := svc.Status{State: svc.StopPending, CheckPoint: 1, WaitHint: 5000}
	status <- pending
	for {
		select {
		case err := <-done:
			if err != nil {
				s.log.Warn("stopped", "err", err)
			} else {
				s.log.Info("stopped")
			}
			return false, 0
		case c := <-changes:
			if c.Cmd == svc.Interrogate {
				status <- pending
			}
		case <-tick.C:
			pending.CheckPoint++
			status <- pending
		}
	}
}
