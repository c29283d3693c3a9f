package room

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
)

var (
	doctor   = Info{UserID: 1, Username: "wang", Name: "王医生", Role: "doctor", Institution: "县医院", DefaultDriver: true, CanTake: true, Client: "sanping-web/1", IP: "10.0.0.1", UserAgent: "Mozilla/5.0"}
	clinic   = Info{UserID: 2, Username: "li", Name: "李村医", Role: "clinic", Institution: "村卫生室"}
	township = Info{UserID: 3, Username: "zhao", Name: "赵医生", Role: "doctor", Institution: "乡卫生院"}
	admin    = Info{UserID: 4, Username: "admin", Name: "管理员", Role: "admin", CanTake: true}
)

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (s *recorder) Event(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

// details lists the details of the events of one action, in order.
func (s *recorder) details(action string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		if e.Action == action {
			out = append(out, e.Detail)
		}
	}
	return out
}

type memoryChat struct {
	mu   sync.Mutex
	msgs []protocol.ChatMessage
	fail error
}

func (c *memoryChat) SaveChat(ctx context.Context, consultation, userID int64, m protocol.ChatMessage) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	m.ID = int64(len(c.msgs) + 1)
	c.msgs = append(c.msgs, m)
	return m.ID, nil
}

func (c *memoryChat) LoadChat(ctx context.Context, consultation int64, limit int) ([]protocol.ChatMessage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]protocol.ChatMessage{}, c.msgs[max(0, len(c.msgs)-limit):]...), nil
}

// clock is a fake clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t      *testing.T
	m      *Manager
	r      *Room
	events *recorder
	chat   *memoryChat
	gone   chan string
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, events: &recorder{}, chat: &memoryChat{}, gone: make(chan string, 100)}
	cfg.Sink, cfg.Chat = f.events, f.chat
	cfg.OnGone = func(_ int64, id string) { f.gone <- id }
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f.m = NewManager(cfg)
	f.r = f.m.Open(7)
	t.Cleanup(func() { f.m.CloseAll("test over") })
	return f
}

func (f *fixture) join(in Info) (*Member, protocol.Welcome) {
	f.t.Helper()
	mb, w, err := f.r.Join(context.Background(), in, "")
	if err != nil {
		f.t.Fatalf("join %s: %v", in.Username, err)
	}
	return mb, w
}

// waitGone waits for OnGone for id.
func (f *fixture) waitGone(id string) {
	f.t.Helper()
	timeout := time.After(2 * time.Second)
	for {
		select {
		case g := <-f.gone:
			if g == id {
				return
			}
		case <-timeout:
			f.t.Fatalf("OnGone(%s) not called", id)
		}
	}
}

func message(typ string, id uint64, data any) protocol.Message {
	m := protocol.Message{Type: typ, ID: id}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			panic(err)
		}
		m.Data = b
	}
	return m
}

func opMsg(id uint64, op protocol.Op) protocol.Message { return message(protocol.TypeOp, id, op) }

func windowOp(c, w float64) protocol.Op {
	return protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: c, Width: w}}
}

func pointerOp(x, y float64) protocol.Op {
	return protocol.Op{Kind: protocol.OpPointer, Pointer: &protocol.Pointer{X: x, Y: y, Visible: true}}
}

func imageOp(series string, frame int) protocol.Op {
	return protocol.Op{Kind: protocol.OpImage, Image: &protocol.ImageRef{Study: "1.2.840.1", Series: series, Instance: series + ".1", Frame: frame}}
}

func lineOp(kind, id string) protocol.Op {
	return protocol.Op{Kind: kind, Annotation: &protocol.Annotation{ID: id, Kind: "line", Points: []protocol.Point{{X: 0.1, Y: 0.1}, {X: 0.5, Y: 0.5}}}}
}

func decode(t testing.TB, b []byte) protocol.Message {
	t.Helper()
	var m protocol.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("outbox frame is not a message: %v: %q", err, b)
	}
	return m
}

func payload[T any](t testing.TB, m protocol.Message) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("%s payload: %v: %s", m.Type, err, m.Data)
	}
	return v
}

// queued takes what mb's outbox holds now, without waiting.
func queued(t testing.TB, mb *Member) []protocol.Message {
	t.Helper()
	var out []protocol.Message
	for {
		select {
		case b, ok := <-mb.Outbox():
			if !ok {
				return out
			}
			out = append(out, decode(t, b))
		default:
			return out
		}
	}
}

// recv waits for mb's next message.
func recv(t testing.TB, mb *Member) protocol.Message {
	t.Helper()
	select {
	case b, ok := <-mb.Outbox():
		if !ok {
			t.Fatalf("outbox of %s closed", mb.ID())
		}
		return decode(t, b)
	case <-time.After(2 * time.Second):
		t.Fatalf("nothing for %s", mb.ID())
	}
	return protocol.Message{}
}

// recvType waits for mb's next message of type typ, skipping others.
func recvType(t testing.TB, mb *Member, typ string) protocol.Message {
	t.Helper()
	for {
		if m := recv(t, mb); m.Type == typ {
			return m
		}
	}
}

func ofType(ms []protocol.Message, typ string) []protocol.Message {
	var out []protocol.Message
	for _, m := range ms {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// closedAfter drains mb's outbox until it closes and returns the last message.
func closedAfter(t testing.TB, mb *Member) protocol.Message {
	t.Helper()
	var last protocol.Message
	timeout := time.After(2 * time.Second)
	for {
		select {
		case b, ok := <-mb.Outbox():
			if !ok {
				return last
			}
			last = decode(t, b)
		case <-timeout:
			t.Fatalf("outbox of %s not closed", mb.ID())
		}
	}
}

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

// replica is a client's copy of the view: a snapshot with the ops after it applied.
type replica struct {
	seq   uint64
	state protocol.ViewState
}

func (c *replica) apply(t testing.TB, m protocol.Message) {
	t.Helper()
	oa := payload[protocol.OpApplied](t, m)
	if oa.Seq != c.seq+1 {
		t.Fatalf("seq %d after %d", oa.Seq, c.seq)
	}
	c.seq = oa.Seq
	apply(&c.state, &oa.Op)
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameSnapshot compares as JSON, the form clients see.
func sameSnapshot(t testing.TB, got protocol.Snapshot, c replica) {
	t.Helper()
	if g, w := jsonOf(t, got), jsonOf(t, protocol.Snapshot{Seq: c.seq, State: c.state}); g != w {
		t.Fatalf("snapshot\n%s\nreplayed\n%s", g, w)
	}
}

func hasPrefix(ss []string, prefix string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
