package room

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sanping/sanping/protocol"
)

// Ops sent from many goroutines at once reach every member in one order, Seq 1..N without
// gaps, and replaying them gives the room's snapshot.
func TestOneOrderForAll(t *testing.T) {
	f := newFixture(t, Config{OpsPerSecond: 1 << 20, OpsBurst: 1 << 20})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	twn, _ := f.join(township)
	members := []*Member{doc, cli, twn}

	frames := make([][][]byte, len(members))
	var readers sync.WaitGroup
	for i, mb := range members {
		readers.Go(func() {
			for b := range mb.Outbox() {
				frames[i] = append(frames[i], b)
			}
		})
	}

	const perSender = 300
	var senders sync.WaitGroup
	for g := range 4 { // the driver, from four goroutines
		senders.Go(func() {
			for i := range perSender {
				op := windowOp(float64(g*1000+i), 400)
				if i%3 == 0 {
					op = protocol.Op{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 1 + float64(i%10)/10, Rotation: 90 * (i % 4)}}
				}
				if err := doc.Handle(opMsg(uint64(i+1), op)); err != nil {
					t.Errorf("driver op: %v", err)
					return
				}
			}
		})
	}
	for _, mb := range []*Member{cli, twn} {
		senders.Go(func() {
			for i := range perSender {
				if err := mb.Handle(opMsg(0, pointerOp(float64(i)/perSender, 0.5))); err != nil {
					t.Errorf("pointer: %v", err)
					return
				}
				if i%10 == 0 {
					if err := mb.Handle(opMsg(0, lineOp(protocol.OpAnnotationAdd, fmt.Sprintf("%s-%d", mb.ID(), i)))); err != nil {
						t.Errorf("annotation: %v", err)
						return
					}
				}
			}
		})
	}
	senders.Wait()
	snap := f.r.Snapshot()
	f.m.Close(7, "done")
	readers.Wait()

	var want [][]byte
	for i := range members {
		var applied [][]byte
		for _, b := range frames[i] {
			if decode(t, b).Type == protocol.TypeOpApplied {
				applied = append(applied, b)
			}
		}
		if i == 0 {
			want = applied
			continue
		}
		if !slices.EqualFunc(applied, want, bytes.Equal) {
			t.Fatalf("member %d saw another order (%d ops, %d at member 0)", i, len(applied), len(want))
		}
	}
	c := replica{state: protocol.DefaultViewState()}
	for _, b := range want {
		c.apply(t, decode(t, b))
	}
	if min := uint64(4*perSender + 2*perSender/10); c.seq < min {
		t.Fatalf("%d ops applied, want at least %d", c.seq, min)
	}
	sameSnapshot(t, snap, c)
}

func TestLateJoinerSnapshot(t *testing.T) {
	f := newFixture(t, Config{})
	doc, w := f.join(doctor)
	cli, _ := f.join(clinic)
	queued(t, doc)
	c := replica{seq: w.Snapshot.Seq, state: w.Snapshot.State}
	ops := []protocol.Op{
		imageOp("1.2.840.1.1", 0),
		{Kind: protocol.OpCine, Cine: &protocol.Cine{Playing: true, FPS: 25}},
		imageOp("1.2.840.1.2", 3), // another series: cine stops
		windowOp(40, 400),
		{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 2, PanX: 0.1, Rotation: 90, FlipH: true, Invert: true}},
		lineOp(protocol.OpAnnotationAdd, "a1"),
		pointerOp(0.3, 0.4),
	}
	for i, op := range ops {
		if err := doc.Handle(opMsg(uint64(i+1), op)); err != nil {
			t.Fatalf("op %s: %v", op.Kind, err)
		}
	}
	if err := cli.Handle(opMsg(0, lineOp(protocol.OpAnnotationAdd, "a2"))); err != nil {
		t.Fatal(err)
	}
	if err := cli.Handle(opMsg(0, pointerOp(0.6, 0.7))); err != nil { // within the interval: waits
		t.Fatal(err)
	}
	late, lw := f.join(township)
	got := queued(t, doc)
	for _, m := range ofType(got, protocol.TypeOpApplied) {
		c.apply(t, m)
	}
	sameSnapshot(t, lw.Snapshot, c)
	if lw.Snapshot.State.Cine.Playing {
		t.Error("cine still playing after a series change")
	}
	if p := lw.Snapshot.State.Pointer; p == nil || p.X != 0.6 || p.By != cli.ID() {
		t.Errorf("pointer %+v, want the clinic's last", p)
	}
	if a := lw.Snapshot.State.Annotation["a2"]; a.Author != cli.ID() || a.Created.IsZero() {
		t.Errorf("annotation a2 %+v: author and time are the server's", a)
	}
	if len(lw.Participants) != 3 || lw.Participants[2].ID != late.ID() || !lw.Participants[2].Connected {
		t.Errorf("participants %+v", lw.Participants)
	}
	if lw.Control.Driver != doc.ID() || lw.Consultation != 7 || lw.Resumed || lw.ResumeToken == "" || lw.GraceSeconds != 60 || lw.Limits["opsPerSecond"] != 60 {
		t.Errorf("welcome %+v", lw)
	}
	if got := f.events.details("live.view"); len(got) != 2 || got[1] != "1.2.840.1/1.2.840.1.2/1.2.840.1.2.1 frame 3" {
		t.Errorf("live.view events %q", got)
	}
	// The others hear of the joiner; the joiner's outbox starts empty.
	if ms := ofType(got, protocol.TypeParticipant); len(ms) != 1 || payload[protocol.ParticipantEvent](t, ms[0]).Participant.ID != late.ID() {
		t.Errorf("doctor got %v", ms)
	}
	if q := queued(t, late); len(q) != 0 {
		t.Errorf("joiner's outbox holds %v", q)
	}
}

func TestDriverFromFirstJoiner(t *testing.T) {
	f := newFixture(t, Config{})
	cli, w := f.join(clinic)
	if w.Control.Driver != cli.ID() {
		t.Fatalf("first joiner does not drive: %+v", w.Control)
	}
	twn, _ := f.join(township)
	doc, w := f.join(doctor)
	if w.Control.Driver != doc.ID() {
		t.Fatalf("the assigned doctor does not take the seat on joining: %+v", w.Control)
	}
	// Each joiner learns the seat from its welcome; the change is broadcast.
	for _, mb := range []*Member{cli, twn} {
		ms := ofType(queued(t, mb), protocol.TypeControlled)
		if len(ms) != 1 || payload[protocol.ControlState](t, ms[0]).Driver != doc.ID() {
			t.Fatalf("control states %v", ms)
		}
	}
	if got := f.events.details("live.control"); len(got) != 2 || got[1] != "from 李村医 ("+cli.ID()+") to 王医生 ("+doc.ID()+")" {
		t.Errorf("live.control %q", got)
	}
	if got := f.events.details("live.join"); len(got) != 3 || got[2] != "doctor, sanping-web/1, 10.0.0.1, Mozilla/5.0" {
		t.Errorf("live.join %q", got)
	}
}

// TestResume runs on synctest's clock: the steps that must come within the grace period
// take no time there, however busy the machine, and the grace period ends when it should.
func TestResume(t *testing.T) {
	synctest.Test(t, testResume)
}

func testResume(t *testing.T) {
	f := newFixture(t, Config{Grace: 100 * time.Millisecond})
	cli, _ := f.join(clinic) // drives: first to join
	doc, _ := f.join(doctor)
	// The doctor takes the seat on joining; it gives it to the clinic.
	if err := doc.Handle(message(protocol.TypeControl, 1, protocol.Control{Action: "give", To: cli.ID()})); err != nil {
		t.Fatal(err)
	}
	cli.SetTracks([]protocol.Track{{ID: "cam", Kind: "video", Label: protocol.LabelCamera}})
	if err := cli.Handle(opMsg(2, lineOp(protocol.OpAnnotationAdd, "mark"))); err != nil {
		t.Fatal(err)
	}
	token := tokenOf(t, f, cli)
	queued(t, doc)

	cli.Disconnected()
	closedAfter(t, cli)
	ev := payload[protocol.ParticipantEvent](t, recvType(t, doc, protocol.TypeParticipant))
	if ev.Event != "disconnected" || ev.Participant.Connected || ev.Participant.ID != cli.ID() {
		t.Fatalf("event %+v", ev)
	}
	// A driver who merely dropped keeps the seat.
	if err := doc.Handle(opMsg(3, windowOp(1, 2))); err == nil {
		t.Fatal("the doctor drives while the clinic is in its grace period")
	}

	if _, _, err := f.r.Join(context.Background(), township, token); !errors.Is(err, ErrResume) {
		t.Fatalf("another user's resume: %v", err)
	}
	cli2, w2, err := f.r.Join(context.Background(), clinic, token)
	if err != nil {
		t.Fatal(err)
	}
	if cli2.ID() != cli.ID() || !w2.Resumed || w2.ResumeToken == token || w2.Control.Driver != cli.ID() {
		t.Fatalf("resumed welcome %+v", w2)
	}
	me := w2.Participants[0]
	if me.ID != cli.ID() || !me.Connected || len(me.Tracks) != 1 || me.Tracks[0].ID != "cam" || me.Tracks[0].Participant != cli.ID() {
		t.Fatalf("resumed participant %+v", me)
	}
	if w2.Snapshot.State.Annotation["mark"].Author != cli.ID() {
		t.Fatal("annotation lost its author")
	}
	if _, _, err := f.r.Join(context.Background(), clinic, token); !errors.Is(err, ErrResume) {
		t.Fatalf("a used token resumes: %v", err)
	}
	if ev := payload[protocol.ParticipantEvent](t, recvType(t, doc, protocol.TypeParticipant)); ev.Event != "updated" || !ev.Participant.Connected {
		t.Fatalf("event %+v", ev)
	}
	if err := cli.Handle(opMsg(4, windowOp(1, 2))); !errors.Is(err, ErrGone) {
		t.Fatalf("the old connection still handles: %v", err)
	}

	// A second connection replaces the first.
	cli3, w3, err := f.r.Join(context.Background(), clinic, w2.ResumeToken)
	if err != nil {
		t.Fatal(err)
	}
	if bye := closedAfter(t, cli2); bye.Type != protocol.TypeBye || payload[protocol.Bye](t, bye).Reason != "replaced" {
		t.Fatalf("replaced connection ended with %+v", bye)
	}
	cli2.Disconnected() // the old socket's reader ends late: no effect
	if ps := f.r.Participants(); !ps[0].Connected {
		t.Fatal("the stale Disconnected disconnected the new connection")
	}
	if err := cli3.Handle(opMsg(5, windowOp(1, 2))); err != nil {
		t.Fatalf("resumed driver: %v", err)
	}
	if got := f.events.details("live.resume"); len(got) != 2 {
		t.Errorf("live.resume %q", got)
	}

	// Past the grace period the place is gone; the annotation stays; the seat moves.
	cli3.Disconnected()
	f.waitGone(cli.ID())
	if _, _, err := f.r.Join(context.Background(), clinic, w3.ResumeToken); !errors.Is(err, ErrResume) {
		t.Fatalf("resume after grace: %v", err)
	}
	var left protocol.ParticipantEvent
	for left.Event != "left" {
		left = payload[protocol.ParticipantEvent](t, recvType(t, doc, protocol.TypeParticipant))
	}
	if left.Participant.ID != cli.ID() {
		t.Fatalf("left %+v", left)
	}
	if cs := payload[protocol.ControlState](t, recvType(t, doc, protocol.TypeControlled)); cs.Driver != doc.ID() {
		t.Fatalf("seat after grace %+v", cs)
	}
	if _, ok := f.r.Snapshot().State.Annotation["mark"]; !ok {
		t.Fatal("annotation removed with its author")
	}
	if got := f.events.details("live.leave"); !slices.Equal(got, []string{"grace expired"}) {
		t.Errorf("live.leave %q", got)
	}
}

// tokenOf reads the participant's current resume token (the welcome of a test helper).
func tokenOf(t *testing.T, f *fixture, mb *Member) string {
	t.Helper()
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	return mb.p.token
}

// TestClose runs on synctest's clock: the grace period passes without waiting for it.
func TestClose(t *testing.T) {
	synctest.Test(t, testClose)
}

func testClose(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	f := newFixture(t, Config{Grace: 20 * time.Millisecond})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	if err := cli.Handle(opMsg(1, pointerOp(0.1, 0.1))); err != nil {
		t.Fatal(err)
	}
	if err := cli.Handle(opMsg(2, pointerOp(0.2, 0.2))); err != nil { // waits for the pointer timer
		t.Fatal(err)
	}
	cli.Disconnected()
	f.m.Close(7, "consultation ended")
	if bye := closedAfter(t, doc); payload[protocol.Bye](t, bye).Reason != "consultation ended" {
		t.Fatalf("last message %+v", bye)
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case id := <-f.gone:
			got[id] = true
		case <-time.After(time.Second):
			t.Fatal("OnGone not called for every participant")
		}
	}
	if !got[doc.ID()] || !got[cli.ID()] {
		t.Fatalf("OnGone for %v", got)
	}
	time.Sleep(40 * time.Millisecond) // past the grace period: the timer was stopped
	select {
	case id := <-f.gone:
		t.Fatalf("OnGone(%s) again after close", id)
	default:
	}
	if _, _, err := f.r.Join(context.Background(), township, ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("join a closed room: %v", err)
	}
	if err := doc.Handle(opMsg(1, windowOp(1, 1))); !errors.Is(err, ErrClosed) {
		t.Fatalf("handle in a closed room: %v", err)
	}
	if _, ok := f.m.Get(7); ok {
		t.Fatal("closed room still listed")
	}
	if r := f.m.Open(7); r == f.r {
		t.Fatal("Open returned the closed room")
	}
	if got := f.events.details("live.leave"); len(got) != 2 || got[0] != "room closed" {
		t.Errorf("live.leave %q", got)
	}
	// Nothing of the room runs on.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > goroutines; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before the room", runtime.NumGoroutine(), goroutines)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLeave(t *testing.T) {
	f := newFixture(t, Config{})
	cli, _ := f.join(clinic)
	twn, _ := f.join(township)
	cli.Leave()
	if bye := closedAfter(t, cli); payload[protocol.Bye](t, bye).Reason != "left" {
		t.Fatalf("bye %+v", bye)
	}
	f.waitGone(cli.ID())
	if ev := payload[protocol.ParticipantEvent](t, recvType(t, twn, protocol.TypeParticipant)); ev.Event != "left" {
		t.Fatalf("event %+v", ev)
	}
	// Without a default driver, whoever has been there longest drives.
	if cs := payload[protocol.ControlState](t, recvType(t, twn, protocol.TypeControlled)); cs.Driver != twn.ID() {
		t.Fatalf("control %+v", cs)
	}
	cli.Leave() // twice: nothing
	if ps := f.r.Participants(); len(ps) != 1 {
		t.Fatalf("participants %+v", ps)
	}

	// Leaving during the grace period ends it at once.
	twn.Disconnected()
	twn.Leave()
	f.waitGone(twn.ID())
	if ps := f.r.Participants(); len(ps) != 0 {
		t.Fatalf("participants %+v", ps)
	}
	if got := f.events.details("live.leave"); !slices.Equal(got, []string{"left", "left"}) {
		t.Errorf("live.leave %q", got)
	}
}

func TestTracksAndConnection(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	queued(t, doc)
	mic := protocol.Track{ID: "mic", Kind: "audio", Label: protocol.LabelMicrophone}
	cam := protocol.Track{ID: "cam", Kind: "video", Label: protocol.LabelCamera, Layers: []string{"h", "l"}}
	cli.SetTracks([]protocol.Track{mic, cam})
	cli.SetTracks([]protocol.Track{cam})
	cli.SetConnection("relay")
	cli.SetConnection("relay")
	ms := ofType(queued(t, doc), protocol.TypeParticipant)
	if len(ms) != 3 {
		t.Fatalf("%d participant events, want 3", len(ms))
	}
	last := payload[protocol.ParticipantEvent](t, ms[2]).Participant
	if last.Connection != "relay" || len(last.Tracks) != 1 || last.Tracks[0].Participant != cli.ID() {
		t.Fatalf("participant %+v", last)
	}
	if got := f.events.details("track.published"); !slices.Equal(got, []string{"audio microphone mic", "video camera cam"}) {
		t.Errorf("published %q", got)
	}
	if got := f.events.details("track.stopped"); !slices.Equal(got, []string{"audio microphone mic"}) {
		t.Errorf("stopped %q", got)
	}
	if got := f.events.details("live.connection"); !slices.Equal(got, []string{"relay"}) {
		t.Errorf("connection %q", got)
	}
}

// TestQuality: a change of a participant's quality level reaches the others as "updated",
// once per change; while its websocket is down the level is kept, not shown, and comes back
// with the resume.
func TestQuality(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, w := f.join(clinic)
	queued(t, doc)
	quality := func(ms []protocol.Message) []string {
		var got []string
		for _, m := range ofType(ms, protocol.TypeParticipant) {
			e := payload[protocol.ParticipantEvent](t, m)
			got = append(got, e.Event+":"+e.Participant.Quality)
		}
		return got
	}
	cli.SetQuality(protocol.QualityGood)
	cli.SetQuality(protocol.QualityGood)
	cli.SetQuality(protocol.QualityWeak)
	cli.SetQuality(protocol.QualityLost)
	if got := quality(queued(t, doc)); !slices.Equal(got, []string{"updated:good", "updated:weak", "updated:lost"}) {
		t.Errorf("events %q", got)
	}
	if ps := f.r.Participants(); ps[1].Quality != protocol.QualityLost {
		t.Errorf("participants %+v", ps)
	}
	cli.Disconnected()
	cli.SetQuality(protocol.QualityWeak)
	if got := quality(queued(t, doc)); !slices.Equal(got, []string{"disconnected:"}) {
		t.Errorf("while away: events %q", got)
	}
	cli2, w2, err := f.r.Join(context.Background(), clinic, w.ResumeToken)
	if err != nil {
		t.Fatal(err)
	}
	if got := quality(queued(t, doc)); !slices.Equal(got, []string{"updated:weak"}) {
		t.Errorf("after the resume: events %q", got)
	}
	if w2.Participants[1].Quality != protocol.QualityWeak {
		t.Errorf("welcome after the resume: %+v", w2.Participants)
	}
	cli2.SetQuality("") // new peer connections: not known yet
	if got := quality(queued(t, doc)); !slices.Equal(got, []string{"updated:"}) {
		t.Errorf("unknown again: events %q", got)
	}
	if got := f.events.details("live.quality.level"); !slices.Equal(got, []string{"good", "weak", "lost"}) {
		t.Errorf("recorded %q", got)
	}
}

func TestPing(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	if err := doc.Handle(protocol.Message{Type: protocol.TypePing, ID: 9}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, doc); m.Type != protocol.TypePong || m.ID != 9 {
		t.Fatalf("got %+v", m)
	}
	q := protocol.Quality{BitrateIn: 800000, Loss: 0.02, RTTms: 80}
	if err := doc.Handle(message(protocol.TypeQuality, 10, q)); err != nil {
		t.Fatal(err)
	}
	if got := f.events.details("live.quality"); len(got) != 1 || got[0] != jsonOf(t, q) {
		t.Errorf("live.quality %q", got)
	}
	wantCode(t, doc.Handle(message(protocol.TypeQuality, 11, protocol.Quality{Loss: 2})), protocol.ErrInvalid)
}

func TestMuted(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, w := f.join(clinic)
	queued(t, doc)
	queued(t, cli)
	muted := func(ms []protocol.Message) []string {
		var got []string
		for _, m := range ofType(ms, protocol.TypeParticipant) {
			e := payload[protocol.ParticipantEvent](t, m)
			got = append(got, e.Event+":"+strings.Join(e.Participant.Muted, ","))
		}
		return got
	}
	media := func(labels ...string) error {
		return cli.Handle(message(protocol.TypeMedia, 5, protocol.Media{Muted: labels}))
	}
	// In the room's order, each once; the same again changes nothing.
	for _, m := range [][]string{{"camera", "microphone", "camera"}, {"microphone", "camera"}, {}, nil} {
		if err := media(m...); err != nil {
			t.Fatalf("%q: %v", m, err)
		}
	}
	if got := muted(queued(t, doc)); !slices.Equal(got, []string{"updated:microphone,camera", "updated:"}) {
		t.Errorf("events %q", got)
	}
	// A source the protocol does not know is refused, and nothing changes.
	wantCode(t, media("microphone", "screen"), protocol.ErrInvalid)
	wantCode(t, cli.Handle(protocol.Message{Type: protocol.TypeMedia, Data: []byte(`{"muted":["camera"],"extra":1}`)}), protocol.ErrBadMessage)
	if q := queued(t, doc); len(q) != 0 {
		t.Errorf("refused media messages told the others %v", q)
	}
	// What is muted holds across a resume and shows in the welcome.
	if err := media("camera"); err != nil {
		t.Fatal(err)
	}
	cli.Disconnected()
	_, w2, err := f.r.Join(context.Background(), clinic, w.ResumeToken)
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.Participants[1].Muted; !slices.Equal(got, []string{"camera"}) {
		t.Errorf("welcome after the resume: muted %q", got)
	}
	if got := f.events.details("live.muted"); !slices.Equal(got, []string{"microphone camera", "", "camera"}) {
		t.Errorf("session log %q", got)
	}
}

// TestUplink: a publisher's uplink state (docs/protocol.md "Muted sources") is told to the
// others when it changes, holds across a resume, and "full" or absent is the same thing.
func TestUplink(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, w := f.join(clinic)
	queued(t, doc)
	queued(t, cli)
	uplinks := func(ms []protocol.Message) []string {
		var got []string
		for _, m := range ofType(ms, protocol.TypeParticipant) {
			e := payload[protocol.ParticipantEvent](t, m)
			got = append(got, e.Participant.Uplink+"/"+strings.Join(e.Participant.Muted, ","))
		}
		return got
	}
	media := func(uplink string, muted ...string) error {
		return cli.Handle(message(protocol.TypeMedia, 5, protocol.Media{Muted: muted, Uplink: uplink}))
	}
	for _, u := range []string{protocol.UplinkReduced, protocol.UplinkReduced, protocol.UplinkAudioOnly, protocol.UplinkFull, "", protocol.UplinkAudioOnly} {
		if err := media(u); err != nil {
			t.Fatalf("%q: %v", u, err)
		}
	}
	// An older client's message (no uplink) is "full"; muting keeps to its own field.
	if err := cli.Handle(protocol.Message{Type: protocol.TypeMedia, Data: []byte(`{"muted":["microphone"]}`)}); err != nil {
		t.Fatal(err)
	}
	if got := uplinks(queued(t, doc)); !slices.Equal(got, []string{"reduced/", "audio-only/", "/", "audio-only/", "/microphone"}) {
		t.Errorf("events %q", got)
	}
	wantCode(t, media("slow"), protocol.ErrInvalid)
	if err := media(protocol.UplinkAudioOnly); err != nil {
		t.Fatal(err)
	}
	cli.Disconnected()
	_, w2, err := f.r.Join(context.Background(), clinic, w.ResumeToken)
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.Participants[1].Uplink; got != protocol.UplinkAudioOnly {
		t.Errorf("welcome after the resume: uplink %q", got)
	}
	if got := f.events.details("live.uplink"); !slices.Equal(got, []string{"reduced", "audio-only", "full", "audio-only", "full", "audio-only"}) {
		t.Errorf("session log %q", got)
	}
}
