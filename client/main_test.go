package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/protocol"
)

func TestLiveURL(t *testing.T) {
	for _, tt := range []struct{ server, id, want string }{
		{"https://sanping.example.org:8080", "12", "wss://sanping.example.org:8080/api/consultations/12/live"},
		{"http://127.0.0.1:8080/", "3", "ws://127.0.0.1:8080/api/consultations/3/live"},
		{"https://example.org/sanping/?x=1", "3", "wss://example.org/sanping/api/consultations/3/live"},
		{"wss://example.org", "3", "wss://example.org/api/consultations/3/live"},
		{"example.org:8080", "3", ""},
		{"ftp://example.org", "3", ""},
		{"https://example.org", "x", ""},
		{"https://example.org", "-1", ""},
		{"https://example.org", "../4", ""},
	} {
		got, err := liveURL(tt.server, tt.id)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("liveURL(%q, %q) = %q, %v; want %q", tt.server, tt.id, got, err, tt.want)
		}
	}
}

func TestCredentialHeader(t *testing.T) {
	h, err := credentialHeader("spt_abc")
	if err != nil || h.Get("Authorization") != "Bearer spt_abc" || h.Get("Cookie") != "" {
		t.Errorf("token: %v %v", h, err)
	}
	h, err = credentialHeader("sanping_session=xyz")
	if err != nil || h.Get("Cookie") != "sanping_session=xyz" || h.Get("Authorization") != "" {
		t.Errorf("cookie: %v %v", h, err)
	}
	if _, err := credentialHeader("password"); err == nil {
		t.Error("a bare word was taken")
	}
}

func TestTokenFile(t *testing.T) {
	slots, err := readTokenFile(strings.NewReader(`# consultation credential
12 spt_a
12   sanping_session=b

13	spt_c
12 spt_d
14 spt_e
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		rooms, participants int
		want                string
	}{
		{1, 3, "[[{12 spt_a} {12 sanping_session=b} {12 spt_d}]]"},
		{3, 1, "[[{12 spt_a}] [{13 spt_c}] [{14 spt_e}]]"},
		{2, 2, ""}, // consultation 13 has one line
		{4, 1, ""},
	} {
		rooms, err := assignRooms(slots, tt.rooms, tt.participants)
		if got := fmt.Sprint(rooms); got != tt.want && !(tt.want == "" && err != nil) {
			t.Errorf("%d rooms x %d participants: %s, %v; want %s", tt.rooms, tt.participants, got, err, tt.want)
		}
	}
	for _, bad := range []string{"12\n", "12 a b\n", "x spt_a\n", "0 spt_a\n"} {
		if _, err := readTokenFile(strings.NewReader(bad)); err == nil {
			t.Errorf("%q was read", bad)
		}
	}
}

func TestDistribution(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := distributionOf(ds)
	if d.N != 100 || d.P50 != 50 || d.P95 != 95 || d.P99 != 99 || d.Max != 100 {
		t.Errorf("%+v", d)
	}
	if d := distributionOf([]time.Duration{7 * time.Millisecond}); d.P50 != 7 || d.P99 != 7 {
		t.Errorf("one sample: %+v", d)
	}
	if d := distributionOf(nil); d != (distribution{}) {
		t.Errorf("none: %+v", d)
	}
}

func TestDescribe(t *testing.T) {
	msg := func(typ string, v any) protocol.Message {
		b, _ := json.Marshal(v)
		return protocol.Message{Type: typ, Data: b}
	}
	for _, tt := range []struct {
		m    protocol.Message
		want string
	}{
		{msg(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "joined", Participant: protocol.Participant{ID: "p2", Name: "Dr. Li", Role: "doctor",
			Tracks: []protocol.Track{{Label: "camera"}, {Label: "microphone"}}}}), `participant joined p2 "Dr. Li" (doctor, publishing camera microphone)`},
		{msg(protocol.TypeControlled, protocol.ControlState{Driver: "p2", Requests: []string{"p3"}}), "control: driver p2, asking p3"},
		{msg(protocol.TypeChatMessage, protocol.ChatMessage{Participant: "p2", Name: "Dr. Li", Text: "请看左肺"}), "chat Dr. Li (p2): 请看左肺"},
		{msg(protocol.TypeError, protocol.Error{Code: "not-driver", Message: "ask for control", Ref: 4}), "error not-driver (request 4): ask for control"},
		{msg(protocol.TypeBye, protocol.Bye{Reason: "closed"}), "bye: closed"},
		{protocol.Message{Type: "future", Data: []byte(`{"a":1}`)}, `future: {"a":1}`},
	} {
		if got := describeEvent(tt.m); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	got := describeOp(protocol.OpApplied{Seq: 3, By: "p1", Op: protocol.Op{Kind: "window", Window: &protocol.Window{Center: 40, Width: 400}, Sent: 99}})
	if want := `op 3 by p1: {"kind":"window","window":{"center":40,"width":400}}`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestUsage(t *testing.T) {
	t.Setenv("SANPING_TOKEN", "")
	for _, tt := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"help"}, 0},
		{[]string{"upload"}, 2},
		{[]string{"join"}, 2},
		{[]string{"join", "-h"}, 0},
		{[]string{"join", "-server", "https://x", "-consultation", "1", "-token", "secret"}, 2},
		{[]string{"join", "-server", "https://x", "-consultation", "one", "-token", "spt_x"}, 2},
		{[]string{"loadtest", "-server", "https://x"}, 2},
		{[]string{"loadtest", "-server", "https://x", "-token-file", "missing.txt"}, 1},
		{[]string{"loadtest", "-server", "https://x", "-token-file", "f", "-rooms", "0"}, 2},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), tt.args, &out, &errOut); code != tt.code {
			t.Errorf("%v: exit %d, want %d (%s)", tt.args, code, tt.code, errOut.String())
		}
	}
}

// fakeServer is a live room server without media: welcome, op.applied to everyone in the
// consultation, pong. It accepts only the credentials it is given.
type fakeServer struct {
	t     *testing.T
	creds map[string]bool
	mu    sync.Mutex
	n     int
	rooms map[string]*fakeRoom
}

type fakeRoom struct {
	mu    sync.Mutex
	seq   uint64
	conns map[*websocket.Conn]*sync.Mutex
}

func (s *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cred := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if cred == "" {
		cred = r.Header.Get("Cookie")
	}
	id, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/api/consultations/"), "/live")
	if !s.creds[cred] || !ok {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	s.mu.Lock()
	s.n++
	me := fmt.Sprintf("p%d", s.n)
	room := s.rooms[id]
	if room == nil {
		room = &fakeRoom{conns: map[*websocket.Conn]*sync.Mutex{}}
		s.rooms[id] = room
	}
	s.mu.Unlock()
	wmu := &sync.Mutex{}
	send := func(c *websocket.Conn, wmu *sync.Mutex, typ string, v any) {
		b, _ := protocol.Encode(typ, 0, v)
		wmu.Lock()
		defer wmu.Unlock()
		c.WriteMessage(websocket.TextMessage, b) //nolint:errcheck // test server
	}
	if _, _, err := c.ReadMessage(); err != nil { // hello
		return
	}
	room.mu.Lock()
	room.conns[c] = wmu
	w0 := protocol.Welcome{Participant: me, ResumeToken: "r-" + me, GraceSeconds: 30, Consultation: 7, Snapshot: protocol.Snapshot{Seq: room.seq, State: protocol.DefaultViewState()}}
	room.mu.Unlock()
	send(c, wmu, protocol.TypeWelcome, w0)
	defer func() {
		room.mu.Lock()
		delete(room.conns, c)
		room.mu.Unlock()
	}()
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		var m protocol.Message
		if json.Unmarshal(b, &m) != nil {
			s.t.Errorf("fake server: %s", b)
			return
		}
		switch m.Type {
		case protocol.TypeOp:
			var op protocol.Op
			if err := protocol.Decode(m.Data, &op); err != nil || op.Validate() != nil || op.Sent == 0 {
				s.t.Errorf("fake server: op %s", m.Data)
				continue
			}
			room.mu.Lock()
			room.seq++
			a := protocol.OpApplied{Seq: room.seq, By: me, Op: op, Time: time.Now()}
			for rc, rmu := range room.conns {
				send(rc, rmu, protocol.TypeOpApplied, a)
			}
			room.mu.Unlock()
		case protocol.TypeChat:
			var cs protocol.ChatSend
			protocol.Decode(m.Data, &cs) //nolint:errcheck // test server
			room.mu.Lock()
			for rc, rmu := range room.conns {
				send(rc, rmu, protocol.TypeChatMessage, protocol.ChatMessage{Participant: me, Name: me, Text: cs.Text})
			}
			room.mu.Unlock()
		case protocol.TypePing:
			send(c, wmu, protocol.TypePong, nil)
		case protocol.TypeLeave:
			return
		}
	}
}

func startFake(t *testing.T, creds ...string) *httptest.Server {
	s := &fakeServer{t: t, creds: map[string]bool{}, rooms: map[string]*fakeRoom{}}
	for _, c := range creds {
		s.creds[c] = true
	}
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// TestLoadtest: two rooms of two participants without media; every op one sends reaches the
// other, and the report says so.
func TestLoadtest(t *testing.T) {
	srv := startFake(t, "spt_a", "spt_b", "spt_c", "sanping_session=d")
	tokens := filepath.Join(t.TempDir(), "tokens.txt")
	if err := os.WriteFile(tokens, []byte("21 spt_a\n21 spt_b\n22 spt_c\n22 sanping_session=d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"loadtest", "-server", srv.URL, "-token-file", tokens, "-rooms", "2", "-participants", "2",
		"-duration", "1s", "-op-interval", "50ms", "-json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Joined != 4 || rep.Failed != 0 || rep.JoinMs.N != 4 || rep.JoinMs.P50 <= 0 {
		t.Errorf("joins: %+v", rep)
	}
	// 2 rooms x 20 ops a second, one other participant each; the last may be in flight.
	if rep.OpsSent < 20 || rep.SyncMs.N < rep.OpsSent-4 || rep.SyncMs.N > rep.OpsSent || rep.SyncMs.P99 <= 0 {
		t.Errorf("%d ops sent, %d latency samples: %+v", rep.OpsSent, rep.SyncMs.N, rep.SyncMs)
	}
	if rep.Loss.Tracks != 0 || rep.FirstFrameMs.N != 0 {
		t.Errorf("media without media: %+v %+v", rep.Loss, rep.FirstFrameMs)
	}

	// A refused participant is reported and fails the run.
	if err := os.WriteFile(tokens, []byte("21 spt_a\n21 spt_unknown\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code = run(context.Background(), []string{"loadtest", "-server", srv.URL, "-token-file", tokens, "-duration", "200ms"}, &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "joined        1 of 2") || !strings.Contains(out.String(), "HTTP 401") {
		t.Errorf("exit %d:\n%s", code, out.String())
	}
}

// TestJoin: join prints the welcome, ops and chat as lines until interrupted.
func TestJoin(t *testing.T) {
	srv := startFake(t, "spt_station", "spt_doctor")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &testtool.Buffer{}
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"join", "-server", srv.URL, "-consultation", "7", "-token", "spt_station"}, out, &testtool.Buffer{})
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "joined consultation 7 as p1") })

	// Another participant drives and chats.
	u, _ := liveURL(srv.URL, "7")
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer spt_doctor"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []struct {
		typ string
		v   any
	}{
		{protocol.TypeHello, protocol.Hello{Protocol: 1}},
		{protocol.TypeOp, protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: 40, Width: 400}, Sent: 1}},
		{protocol.TypeChat, protocol.ChatSend{Text: "hello"}},
	} {
		b, _ := protocol.Encode(m.typ, 1, m.v)
		if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		s := out.String()
		return strings.Contains(s, `op 1 by p2: {"kind":"window","window":{"center":40,"width":400}}`) && strings.Contains(s, "chat p2 (p2): hello")
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	eventually(t, 10*time.Second, "the expected output", ok, func() string { return "" })
}
