package upload

import (
	"context"
	"log/slog"

	expslog "golang.org/x/exp/slog"
)

// tusLogger hands tusd's log (golang.org/x/exp/slog, not log/slog) to the server's logger,
// warnings and errors only: tusd logs every request and chunk at Info.
func tusLogger(l *slog.Logger) *expslog.Logger {
	return expslog.New(tusHandler{h: l.Handler()})
}

type tusHandler struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (t tusHandler) Enabled(ctx context.Context, level expslog.Level) bool {
	return level >= expslog.LevelWarn && t.h.Enabled(ctx, slog.Level(level))
}

func (t tusHandler) Handle(ctx context.Context, r expslog.Record) error {
	out := slog.NewRecord(r.Time, slog.Level(r.Level), "tusd: "+r.Message, r.PC)
	out.AddAttrs(t.attrs...)
	r.Attrs(func(a expslog.Attr) bool {
		out.AddAttrs(slog.Any(a.Key, a.Value.Any()))
		return true
	})
	return t.h.Handle(ctx, out)
}

func (t tusHandler) WithAttrs(as []expslog.Attr) expslog.Handler {
	attrs := append([]slog.Attr(nil), t.attrs...)
	for _, a := range as {
		attrs = append(attrs, slog.Any(a.Key, a.Value.Any()))
	}
	return tusHandler{h: t.h, attrs: attrs}
}

// WithGroup flattens groups (tusd uses none).
func (t tusHandler) WithGroup(string) expslog.Handler { return t }
