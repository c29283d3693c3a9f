package client

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
)

// logFile is the service's log file. Past maxSize it is renamed to path.1 (dropping the one
// before) and a new one begins: at most twice maxSize on disk, the last day or so at hand.
type logFile struct {
	mu      sync.Mutex
	path    string
	maxSize int64
	f       *os.File
	size    int64
}

func openLogFile(path string, maxSize int64) (*logFile, error) {
	l := &logFile{path: path, maxSize: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *logFile) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return 0, os.ErrClosed
	}
	if l.size > 0 && l.size+int64(len(p)) > l.maxSize {
		// Closed before the rename: Windows renames no open file.
		l.f.Close()
		l.f = nil
		if err := os.Rename(l.path, l.path+".1"); err != nil {
			return 0, err
		}
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// logLines is an io.Writer that logs each line written to it: how what the scp command prints
// reaches the service's log. A line of slog's text format keeps its level (the service's record
// has its own time); any other line has the writer's.
type logLines struct {
	mu    sync.Mutex
	log   *slog.Logger
	level slog.Level
	buf   []byte
}

func (w *logLines) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Flush logs what is left after the last newline.
func (w *logLines) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

func (w *logLines) line(s string) {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return
	}
	level, msg := w.level, s
	if rest, ok := strings.CutPrefix(s, "time="); ok {
		_, rest, _ = strings.Cut(rest, " ")
		if rest, ok = strings.CutPrefix(rest, "level="); ok {
			lv, rest, _ := strings.Cut(rest, " ")
			if level.UnmarshalText([]byte(lv)) != nil {
				level = w.level
			}
			msg = textMsg(rest)
		}
	}
	w.log.Log(context.Background(), level, msg)
}

// textMsg is a text-format record without time and level, its message unquoted:
// `msg="association rejected" calling=CT1` becomes `association rejected calling=CT1`.
func textMsg(s string) string {
	rest, ok := strings.CutPrefix(s, "msg=")
	if !ok {
		return s
	}
	var msg string
	if q, err := strconv.QuotedPrefix(rest); err == nil {
		msg, _ = strconv.Unquote(q)
		rest = rest[len(q):]
	} else {
		msg, rest, _ = strings.Cut(rest, " ")
		rest = " " + rest
	}
	return strings.TrimRight(msg+rest, " ")
}

// lineHandler is a slog.Handler that renders each record as one line of slog's text format
// without time and level (the receiver records both) and hands it to report: how records reach
// the Windows event log.
type lineHandler struct {
	text   slog.Handler // writes into *buf
	mu     *sync.Mutex
	buf    *bytes.Buffer
	report func(slog.Level, string) error
}

func newLineHandler(level slog.Leveler, report func(slog.Level, string) error) *lineHandler {
	buf := new(bytes.Buffer)
	text := slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		}})
	return &lineHandler{text: text, mu: new(sync.Mutex), buf: buf, report: report}
}

func (h *lineHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.text.Enabled(ctx, level)
}

func (h *lineHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.text.Handle(ctx, r); err != nil {
		return err
	}
	return h.report(r.Level, textMsg(strings.TrimRight(h.buf.String(), "\n")))
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.text = h.text.WithAttrs(attrs)
	return &c
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.text = h.text.WithGroup(name)
	return &c
}
