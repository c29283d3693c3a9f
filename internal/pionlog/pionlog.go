// Package pionlog sends pion's logs (github.com/pion/logging) to log/slog, for the SFU, the
// TURN server and the Go participant.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory is a pion LoggerFactory writing to Log. pion's Info is connection bookkeeping and
// goes to Debug. Quiet lowers Warn to Debug and Error to Warn as well: in a client and in the
// TURN server pion's warnings are mostly routine (sockets closing, checks before any pair).
type Factory struct {
	Log   *slog.Logger
	Quiet bool
}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	warn, errl := slog.LevelWarn, slog.LevelError
	if f.Quiet {
		warn, errl = slog.LevelDebug, slog.LevelWarn
	}
	return logger{log: f.Log.With("pion", scope), warn: warn, err: errl}
}

type logger struct {
	log       *slog.Logger
	warn, err slog.Level
}

func (l logger) logf(level slog.Level, format string, args ...any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l logger) Trace(string)                   {}
func (l logger) Tracef(string, ...any)          {}
func (l logger) Debug(msg string)               { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Debugf(format string, a ...any) { l.logf(slog.LevelDebug, format, a...) }
func (l logger) Info(msg string)                { l.logf(slog.LevelDebug, "%s", msg) }
func (l logger) Infof(format string, a ...any)  { l.logf(slog.LevelDebug, format, a...) }
func (l logger) Warn(msg string)                { l.logf(l.warn, "%s", msg) }
func (l logger) Warnf(format string, a ...any)  { l.logf(l.warn, format, a...) }
func (l logger) Error(msg string)               { l.logf(l.err, "%s", msg) }
func (l logger) Errorf(format string, a ...any) { l.logf(l.err, format, a...) }
