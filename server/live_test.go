package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
)

const (
	testVideo = "../client/live/testdata/video.ivf"
	testAudio = "../client/live/testdata/audio.ogg"
)

// liveURL is the websocket of a consultation's room.
func (f *authzFixture) liveURL(id int64) string {
	return "ws" + strings.TrimPrefix(f.srv.URL, "http") + fmt.Sprintf("/api/consultations/%d/live", id)
}

// header carries a signed-in user's session cookie, as a browser would send it.
func (f *authzFixture) header(u *fixtureUser) http.Header {
	if u.client == nil {
		f.signIn(u)
	}
	base, _ := url.Parse(f.srv.URL)
	h := http.Header{}
	for _, c := range u.client.Jar.Cookies(base) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	return h
}

func (f *authzFixture) join(ctx context.Context, t *testing.T, u *fixtureUser, id int64, media bool) *live.Participant {
	t.Helper()
	cfg := live.Config{URL: f.liveURL(id), Header: f.header(u), Name: u.name}
	if media {
		cfg.Video, cfg.Audio = testVideo, testAudio
	}
	p, err := live.Join(ctx, cfg)
	if err != nil {
		t.Fatalf("%s joining: %v", u.name, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestLiveThreeParticipants: three pion participants in a room over loopback: media flows every
// way, view operations reach everyone in one order, a late joiner gets the snapshot, and the
// room's events are in the audit trail.
func TestLiveThreeParticipants(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := f.consultation(false, "live")
	township := f.users["township"]
	if _, err := f.app.consult.AddParticipant(ctx, f.users["clinic"].p, id, township.p.UserID); err != nil {
		t.Fatal(err)
	}
	doctor := f.join(ctx, t, f.users["doctor"], id, true)
	clinic := f.join(ctx, t, f.users["clinic"], id, true)
	town := f.join(ctx, t, township, id, true)
	all := []*live.Participant{doctor, clinic, town}
	for _, p := range all {
		for _, q := range all {
			if p == q {
				continue
			}
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			if err := p.WaitFrames(wctx, q.ID(), 15); err != nil {
				t.Fatalf("%s did not get 15 video frames from %s: %v (stats %+v)", p.ID(), q.ID(), err, p.Stats())
			}
			wcancel()
		}
	}
	// The assigned doctor drives: its ops reach all three in one order.
	const n = 30
	for i := range n {
		op := protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: float64(i), Width: 400}}
		if i%3 == 0 {
			op = protocol.Op{Kind: protocol.OpImage, Image: &protocol.ImageRef{Study: f.studyA.Study, Series: f.studyA.Series, Instance: f.studyA.SOP, Frame: i}}
		}
		if _, err := doctor.SendOp(op); err != nil {
			t.Fatal(err)
		}
	}
	// A pointer from a participant who does not drive is fine; a window change is refused.
	if _, err := clinic.SendOp(protocol.Op{Kind: protocol.OpPointer, Pointer: &protocol.Pointer{X: .5, Y: .5, Visible: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := clinic.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: 1, Width: 1}}); err != nil {
		t.Fatal(err)
	}
	orders := make([][]string, len(all))
	for i, p := range all {
		deadline := time.After(30 * time.Second)
		for len(orders[i]) < n+1 {
			select {
			case a := <-p.Ops():
				orders[i] = append(orders[i], fmt.Sprintf("%d:%s:%s", a.Seq, a.By, a.Op.Kind))
			case <-deadline:
				t.Fatalf("participant %d got %d of %d ops", i, len(orders[i]), n+1)
			}
		}
	}
	for i := 1; i < len(all); i++ {
		if strings.Join(orders[i], " ") != strings.Join(orders[0], " ") {
			t.Fatalf("ops in different orders:\n%v\n%v", orders[0], orders[i])
		}
	}
	for _, o := range orders[0] {
		if strings.Contains(o, clinic.ID()+":window") {
			t.Fatalf("a non-driver's window op was applied: %v", orders[0])
		}
	}
	// A late joiner gets the snapshot the others have reached.
	late := f.join(ctx, t, f.users["admin"], id, false)
	seq, view := late.View()
	dseq, dview := doctor.View()
	if seq != dseq || mustJSON(view) != mustJSON(dview) {
		t.Fatalf("late joiner: seq %d view %s\ndriver: seq %d view %s", seq, mustJSON(view), dseq, mustJSON(dview))
	}
	if err := doctor.Chat("请看右下肺 / look at the right lower lobe"); err != nil {
		t.Fatal(err)
	}
	// Everyone leaves once the room has taken the chat in: the others have it.
	waitMessage(t, clinic, protocol.TypeChatMessage, 30*time.Second)
	for _, p := range all {
		p.Close()
	}
	late.Close()
	// The room's events reach the audit trail (written by one goroutine: give it a moment).
	want := []string{"live.join", "live.view", "live.chat", "live.leave"}
	var seen map[string]int
	defer func() {
		if t.Failed() {
			t.Logf("audit trail: %v", seen)
		}
	}()
	waitUntil(t, 30*time.Second, "the room's events in the audit trail", func() bool {
		entries, err := f.app.trail.List(ctx, audit.Filter{ObjectPrefix: fmt.Sprintf("consultation:%d", id)})
		if err != nil {
			t.Fatal(err)
		}
		seen = map[string]int{}
		for _, e := range entries {
			seen[e.Action]++
			// Live entries name the consultation's patient (f.consultation's), for the search.
			if strings.HasPrefix(e.Action, "live.") && (e.PatientID != "P1" || e.PatientName != "韦东平") {
				t.Fatalf("%s names patient %q %q", e.Action, e.PatientID, e.PatientName)
			}
		}
		for _, a := range want {
			if seen[a] == 0 {
				return false
			}
		}
		return seen["live.join"] >= 4
	})
}

// waitMessage waits for a message of a type to reach p.
func waitMessage(t *testing.T, p *live.Participant, typ string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-p.Events():
			if m.Type == typ {
				return
			}
		case <-deadline:
			t.Fatalf("no %s message for %s within %v", typ, p.ID(), within)
		}
	}
}

// rawConn opens the room's websocket without the Go participant, for hostile messages.
func (f *authzFixture) rawConn(t *testing.T, u *fixtureUser, id int64) *websocket.Conn {
	t.Helper()
	c, res, err := websocket.DefaultDialer.Dial(f.liveURL(id), f.header(u))
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial: %v (%d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readUntilClose(c *websocket.Conn, within time.Duration) (closeCode int, msgs []protocol.Message) {
	c.SetReadDeadline(time.Now().Add(within))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code, msgs
			}
			return -1, msgs
		}
		var m protocol.Message
		json.Unmarshal(data, &m)
		msgs = append(msgs, m)
	}
}

// TestLiveHostileClients: malformed messages, a missing hello, flooding, a wrong role or a
// consultation that is not live: a protocol error or a close, and the room unharmed.
func TestLiveHostileClients(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := f.consultation(false, "live")
	doctor := f.join(ctx, t, f.users["doctor"], id, false)

	// Not live, another institution's, no credentials: refused before the upgrade.
	notLive := f.consultation(false, "scheduled")
	for _, c := range []struct {
		name string
		url  string
		hdr  http.Header
		want int
	}{
		{"not live", f.liveURL(notLive), f.header(f.users["clinic"]), http.StatusConflict},
		{"other institution", f.liveURL(f.consultation(true, "live")), f.header(f.users["clinic"]), http.StatusNotFound},
		{"anonymous", f.liveURL(id), nil, http.StatusUnauthorized},
		{"cross-site origin", f.liveURL(id), func() http.Header {
			h := f.header(f.users["clinic"])
			h.Set("Origin", "https://evil.example")
			return h
		}(), http.StatusForbidden},
	} {
		_, res, err := websocket.DefaultDialer.Dial(c.url, c.hdr)
		if err == nil || res == nil || res.StatusCode != c.want {
			code := 0
			if res != nil {
				code = res.StatusCode
			}
			t.Errorf("%s: %v, status %d, want %d", c.name, err, code, c.want)
		}
	}

	// No hello first: closed with a policy violation.
	c := f.rawConn(t, f.users["clinic"], id)
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"op","data":{"kind":"reset"}}`))
	if code, _ := readUntilClose(c, 5*time.Second); code != websocket.ClosePolicyViolation {
		t.Errorf("op before hello: close %d", code)
	}
	// Garbage after hello: errors, then closed after three in a row.
	c = f.rawConn(t, f.users["clinic"], id)
	c.WriteJSON(protocol.Message{Type: protocol.TypeHello, Data: json.RawMessage(`{"protocol":1}`)})
	for _, g := range []string{"garbage", `{"type":"op","data":"x"}`, `{"type":"nonsense"}`, `{"type":"op","data":{"kind":"window","window":{"center":1,"width":1}}}`} {
		c.WriteMessage(websocket.TextMessage, []byte(g))
	}
	code, msgs := readUntilClose(c, 5*time.Second)
	errs := 0
	for _, m := range msgs {
		if m.Type == protocol.TypeError {
			errs++
		}
	}
	if code != websocket.ClosePolicyViolation || errs < 3 {
		t.Errorf("garbage: close %d after %d errors", code, errs)
	}
	// Flooding: rate-limit errors, then a close; the room keeps working.
	c = f.rawConn(t, f.users["clinic"], id)
	c.WriteJSON(protocol.Message{Type: protocol.TypeHello, Data: json.RawMessage(`{"protocol":1}`)})
	go func() {
		for i := range 5000 {
			if c.WriteJSON(protocol.Message{Type: protocol.TypeChat, ID: uint64(i + 1), Data: json.RawMessage(`{"text":"刷屏"}`)}) != nil {
				return
			}
		}
	}()
	code, msgs = readUntilClose(c, 10*time.Second)
	limited := 0
	for _, m := range msgs {
		if m.Type == protocol.TypeError && strings.Contains(string(m.Data), protocol.ErrRateLimit) {
			limited++
		}
	}
	if limited == 0 || code == -1 {
		t.Errorf("flooding: %d rate-limit errors, close %d", limited, code)
	}
	if _, err := doctor.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: 40, Width: 400}}); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-doctor.Ops():
		if a.Op.Kind != protocol.OpWindow {
			t.Fatalf("after the hostile clients the driver got %+v", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the room stopped applying the driver's ops")
	}
}

// TestLiveSubscribersJoinTogether: many subscribers join a room with a publisher at the same
// moment, through the server's websocket; each is offered the publisher's tracks, answers,
// and receives its video. (An offer made before a new participant's websocket queue existed
// was lost, and the subscriber stayed without media.)
func TestLiveSubscribersJoinTogether(t *testing.T) {
	const n = 16
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	id := f.consultation(false, "live")
	clinic := f.join(ctx, t, f.users["clinic"], id, true)
	subs := make([]*live.Participant, n)
	errs := make(chan error, n)
	hdr := f.header(f.users["admin"])
	for i := range n {
		go func() {
			p, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: hdr, Name: fmt.Sprint("viewer ", i)})
			subs[i] = p
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range subs {
		t.Cleanup(func() { p.Close() })
	}
	for i, p := range subs {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		if err := p.WaitFrames(wctx, clinic.ID(), 5); err != nil {
			t.Fatalf("subscriber %d of %d joining together got no video: %v (%+v)", i+1, n, err, p.Stats())
		}
		wcancel()
	}
}

// TestLiveQualityLevel: once the server has measured a participant's media, the others hear of
// its quality level in a participant event, and the session log has it.
func TestLiveQualityLevel(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := f.consultation(false, "live")
	doctor := f.join(ctx, t, f.users["doctor"], id, true)
	clinic := f.join(ctx, t, f.users["clinic"], id, true)
	deadline := time.After(30 * time.Second)
	for level := ""; level != protocol.QualityGood; {
		select {
		case m := <-doctor.Events():
			var e protocol.ParticipantEvent
			if m.Type == protocol.TypeParticipant && json.Unmarshal(m.Data, &e) == nil && e.Participant.ID == clinic.ID() {
				level = e.Participant.Quality
			}
		case <-deadline:
			t.Fatalf("the doctor heard of no quality level of the clinic's over loopback")
		}
	}
	waitUntil(t, 10*time.Second, "the quality level in the session log", func() bool {
		entries, err := f.app.trail.List(ctx, audit.Filter{ObjectPrefix: fmt.Sprintf("consultation:%d", id), Action: "live.quality.level"})
		return err == nil && len(entries) > 0
	})
}
