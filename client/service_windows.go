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

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
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
		return errors.New("this needs an administrator prompt (right-click Command Prompt, Run as administrator)")
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

func installService(exe string, args []string, m machinePaths, stdout io.Writer) error {
	if err := requireAdmin(); err != nil {
		return err
	}
	if err := serviceLogin(args); err != nil {
		return err
	}
	if err := machineDir(filepath.Dir(m.Config)); err != nil {
		return fmt.Errorf("the machine-wide folder: %w", err)
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("the service manager: %w", err)
	}
	defer sm.Disconnect()
	if s, err := sm.OpenService(serviceName); err == nil {
		s.Close()
		return fmt.Errorf("the service %s is installed already (sanping-station service uninstall removes it)", serviceName)
	}
	s, err := sm.CreateService(serviceName, exe, mgr.Config{DisplayName: serviceDisplayName, Description: serviceDescription,
		StartType: mgr.StartAutomatic, DelayedAutoStart: true}, args...)
	if err != nil {
		return fmt.Errorf("creating the service: %w", err)
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
		return undo(fmt.Errorf("setting restart after failure: %w", err))
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return undo(fmt.Errorf("setting restart after failure: %w", err))
	}
	eventlog.Remove(serviceName) // an earlier install's, if uninstall could not remove it
	if err := eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil {
		return undo(fmt.Errorf("registering the event log source: %w", err))
	}
	fmt.Fprintf(stdout, "installed the service %s (starts with Windows):\n  %s\n"+
		"logs: Event Viewer, Windows Logs > Application, source %s; and %s\n"+
		"start it now: sanping-station service start\n",
		serviceName, windowsCommandLine(append([]string{exe}, args...)), serviceName, m.Log)
	return nil
}

func uninstallService(ctx context.Context, m machinePaths, stdout io.Writer) error {
	if err := requireAdmin(); err != nil {
		return err
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("the service manager: %w", err)
	}
	defer sm.Disconnect()
	s, err := openService(sm)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := stopAndWait(ctx, s, 2*time.Minute, stdout); err != nil {
		return err
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("removing the service: %w", err)
	}
	if err := eventlog.Remove(serviceName); err != nil {
		fmt.Fprintf(stdout, "the event log source %s stays: %v\n", serviceName, err)
	}
	fmt.Fprintf(stdout, "removed the service %s; its login, images and journal stay in %s\n",
		serviceName, filepath.Dir(m.Config))
	return nil
}

func startService(m machinePaths, stdout io.Writer) error {
	if err := requireAdmin(); err != nil {
		return err
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("the service manager: %w", err)
	}
	defer sm.Disconnect()
	s, err := openService(sm)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		return fmt.Errorf("starting the service: %w", err)
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
			fmt.Fprintf(stdout, "the service %s is running\n", serviceName)
			return nil
		case st.State == svc.Stopped:
			return fmt.Errorf("the service %s stopped at once; see why in Event Viewer (source %s) or %s",
				serviceName, serviceName, m.Log)
		case time.Now().After(deadline):
			return fmt.Errorf("the service %s is still %s after 30 s", serviceName, stateName(st.State))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func stopService(ctx context.Context, timeout time.Duration, stdout io.Writer) error {
	if err := requireAdmin(); err != nil {
		return err
	}
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("the service manager: %w", err)
	}
	defer sm.Disconnect()
	s, err := openService(sm)
	if err != nil {
		return err
	}
	defer s.Close()
	return stopAndWait(ctx, s, timeout, stdout)
}

// stopAndWait asks the service to stop and waits until it has: images being received are
// finished first, which may take a while for a large study.
func stopAndWait(ctx context.Context, s *mgr.Service, timeout time.Duration, stdout io.Writer) error {
	st, err := s.Query()
	if err != nil {
		return err
	}
	if st.State == svc.Stopped {
		return nil
	}
	if st.State != svc.StopPending {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("stopping the service: %w", err)
		}
	}
	fmt.Fprintf(stdout, "stopping the service %s...\n", serviceName)
	deadline := time.Now().Add(timeout)
	for {
		if st, err = s.Query(); err != nil {
			return err
		}
		if st.State == svc.Stopped {
			fmt.Fprintf(stdout, "the service %s is stopped\n", serviceName)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the service %s is still %s after %v (finishing images being received?); try again, or look in Event Viewer",
				serviceName, stateName(st.State), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func openService(sm *mgr.Mgr) (*mgr.Service, error) {
	s, err := sm.OpenService(serviceName)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		return nil, fmt.Errorf("the service %s is not installed (sanping-station service install)", serviceName)
	}
	return s, err
}

// serviceStatus shows the service's state and command line, then (for an administrator, who
// may read the machine-wide folder) what sanping-station status shows for its queue, link and spool.
func serviceStatus(ctx context.Context, m machinePaths, stdout, stderr io.Writer) error {
	// Only the rights to look, which every user has: not mgr.Connect's all-access.
	h, err := windows.OpenSCManager(nil, nil, windows.SC_MANAGER_CONNECT)
	if err != nil {
		return fmt.Errorf("the service manager: %w", err)
	}
	defer windows.CloseServiceHandle(h)
	name, _ := windows.UTF16PtrFromString(serviceName)
	sh, err := windows.OpenService(h, name, windows.SERVICE_QUERY_STATUS|windows.SERVICE_QUERY_CONFIG)
	if errors.Is(err, windows.ERROR_SERVICE_DOES_NOT_EXIST) {
		fmt.Fprintf(stdout, "service:      %s is not installed\n", serviceName)
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
	state := stateName(st.State)
	if st.State == svc.Running {
		state += fmt.Sprintf(" (process %d)", st.ProcessId)
	}
	fmt.Fprintf(stdout, "service:      %s %s\n", serviceName, state)
	if c, err := s.Config(); err == nil {
		fmt.Fprintf(stdout, "command:      %s\n", c.BinaryPathName)
	}
	if requireAdmin() != nil {
		fmt.Fprintf(stdout, "(the queue and the link: from an administrator prompt)\n")
		return nil
	}
	return statusCommand(ctx, []string{"-config", m.Config, "-journal", m.Journal, "-spool", m.Spool}, stdout, stderr)
}

func stateName(s svc.State) string {
	switch s {
	case svc.Stopped:
		return "stopped"
	case svc.StartPending:
		return "starting"
	case svc.StopPending:
		return "stopping"
	case svc.Running:
		return "running"
	case svc.ContinuePending, svc.PausePending, svc.Paused:
		return "paused"
	}
	return fmt.Sprintf("in state %d", s)
}

// runService is `service run`: under the service manager the receiver runs as the service,
// logging to the event log and station.log; started from a prompt it runs in the foreground.
func runService(ctx context.Context, m machinePaths, args []string, stdout, stderr io.Writer) error {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return err
	}
	if !isService {
		return scpCommand(ctx, args, stdout, stderr)
	}
	log, fileLog, closeLogs := serviceLogs(m)
	defer closeLogs()
	if err := svc.Run(serviceName, &stationService{ctx: ctx, args: args, log: log, fileLog: fileLog}); err != nil {
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
		err := scpCommand(ctx, s.args, out, errs)
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
