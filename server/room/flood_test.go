package room

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
)

func TestGarbage(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	if err := doc.Handle(opMsg(1, windowOp(40, 400))); err != nil {
		t.Fatal(err)
	}
	queued(t, doc)
	queued(t, cli)
	before := jsonOf(t, f.r.Snapshot())

	points := make([]protocol.Point, protocol.MaxAnnotationPoints+1)
	huge := lineOp(protocol.OpAnnotationAdd, "huge")
	huge.Annotation.Points = points
	longText := lineOp(protocol.OpAnnotationAdd, "long")
	longText.Annotation.Text = strings.Repeat("长", protocol.MaxAnnotationText+1)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 512)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	cases := []struct {
		msg  protocol.Message
		code string
	}{
		{protocol.Message{Type: protocol.TypeOp, Data: random}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeChat, Data: random}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeControl, Data: random}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeQuality, Data: random}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeOp}, protocol.ErrBadMessage},
		{protocol.Message{Type: "op.applied"}, protocol.ErrBadMessage},
		{protocol.Message{Type: "hello"}, protocol.ErrBadMessage},
		{protocol.Message{Type: ""}, protocol.ErrBadMessage},
		{protocol.Message{Type: strings.Repeat("x", 10000)}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"window","window":{"center":1e999,"width":1}}`)}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"window","window":{"center":1,"width":1},"extra":1}`)}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"window","window":{"center":1,"width":1}} {}`)}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"teleport"}`)}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"window","window":{"center":1,"width":-1}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"window"}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"window","window":{},"pointer":{}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"transform","transform":{"zoom":1,"rotation":45}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"image","image":{"study":"x; DROP TABLE"}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"pointer","pointer":{"x":1e308,"y":0}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"cine","cine":{"fps":1000}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"reset","window":{}}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`{"kind":"annotation.delete"}`)}, protocol.ErrInvalid},
		{opMsg(1, huge), protocol.ErrInvalid},
		{opMsg(1, longText), protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeOp, Data: json.RawMessage(`"` + strings.Repeat("a", protocol.MaxMessageBytes) + `"`)}, protocol.ErrBadMessage},
		{protocol.Message{Type: protocol.TypeQuality, Data: json.RawMessage(`{"rttMs":-1}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeControl, Data: json.RawMessage(`{"action":""}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeChat, Data: json.RawMessage(`{"text":"\u0000"}`)}, protocol.ErrInvalid},
		{protocol.Message{Type: protocol.TypeChat, Data: json.RawMessage(`{"text":"\xff\xfe"}`)}, protocol.ErrBadMessage},
	}
	for i, c := range cases {
		for _, mb := range []*Member{doc, cli} {
			err := mb.Handle(c.msg)
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != c.code {
				t.Fatalf("case %d (%.60s): %v, want %s", i, c.msg.Data, err, c.code)
			}
			ms := queued(t, mb)
			if len(ms) != 1 || ms[0].Type != protocol.TypeError || len(payload[protocol.Error](t, ms[0]).Message) > 200 {
				t.Fatalf("case %d: got %v", i, ms)
			}
		}
	}
	if after := jsonOf(t, f.r.Snapshot()); after != before {
		t.Fatalf("garbage changed the state:\n%s\n%s", before, after)
	}
	if err := doc.Handle(opMsg(1, windowOp(1, 1))); err != nil {
		t.Fatalf("the driver after garbage: %v", err)
	}
	if oa := payload[protocol.OpApplied](t, recv(t, cli)); oa.Seq != 2 {
		t.Fatalf("seq %d after garbage, want 2", oa.Seq)
	}
}

func TestFlooding(t *testing.T) {
	clk := newClock()
	f := newFixture(t, Config{Now: clk.Now})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	twn, _ := f.join(township)
	var ok, limited, gone int
	for i := range 10000 {
		err := doc.Handle(opMsg(uint64(i), windowOp(float64(i), 100)))
		var pe *ProtocolError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &pe) && pe.Code == protocol.ErrRateLimit:
			limited++
		case errors.Is(err, ErrGone):
			gone++
		default:
			t.Fatalf("op %d: %v", i, err)
		}
	}
	// 120 (the burst) applied, 60 refused, then the 181st gets the member kicked.
	if ok != 120 || limited != 61 || gone != 10000-181 {
		t.Fatalf("%d applied, %d limited, %d after the kick", ok, limited, gone)
	}
	if bye := closedAfter(t, doc); payload[protocol.Bye](t, bye).Reason != "flooding" {
		t.Fatalf("last message %+v", bye)
	}
	f.waitGone(doc.ID())
	if got := f.events.details("live.leave"); len(got) != 1 || got[0] != "kicked: flooding" {
		t.Fatalf("live.leave %q", got)
	}
	// The others go on: the clinic, longest present, drives now.
	queued(t, twn)
	if err := cli.Handle(opMsg(1, windowOp(5, 5))); err != nil {
		t.Fatal(err)
	}
	if oa := payload[protocol.OpApplied](t, recvType(t, twn, protocol.TypeOpApplied)); oa.Seq != 121 || oa.By != cli.ID() {
		t.Fatalf("after the flood %+v", oa)
	}

	// The limit refills with time.
	clk.Add(2 * time.Second)
	for i := range 100 {
		if err := twn.Handle(opMsg(0, pointerOp(float64(i)/100, 0))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestErrorsInARow(t *testing.T) {
	clk := newClock()
	f := newFixture(t, Config{Now: clk.Now})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	bad := protocol.Message{Type: "nonsense"}
	for range maxErrorsInARow - 1 {
		wantCode(t, cli.Handle(bad), protocol.ErrBadMessage)
	}
	if err := cli.Handle(protocol.Message{Type: protocol.TypePing}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	for range maxErrorsInARow - 1 {
		wantCode(t, cli.Handle(opMsg(1, windowOp(1, 1))), protocol.ErrNotDriver)
	}
	if q := queued(t, cli); len(q) != 2*maxErrorsInARow-1 {
		t.Fatalf("%d messages, want %d", len(q), 2*maxErrorsInARow-1)
	}
	wantCode(t, cli.Handle(bad), protocol.ErrBadMessage)
	if bye := closedAfter(t, cli); payload[protocol.Bye](t, bye).Reason != "flooding" {
		t.Fatalf("last %+v", bye)
	}
	if ps := f.r.Participants(); len(ps) != 1 || ps[0].ID != doc.ID() {
		t.Fatalf("participants %+v", ps)
	}
}

// A member nobody reads is dropped; the others never wait for it.
func TestSlowMember(t *testing.T) {
	f := newFixture(t, Config{OutboxSize: 16})
	doc, _ := f.join(doctor)
	twn, _ := f.join(township)
	slow, _ := f.join(clinic)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			if err := doc.Handle(opMsg(uint64(i), windowOp(float64(i), 1))); err != nil {
				t.Errorf("op %d: %v", i, err)
				return
			}
			queued(t, doc)
			queued(t, twn)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the room blocked on a slow member")
	}
	n := 0
	var last protocol.Message
	for b := range slow.Outbox() {
		n++
		last = decode(t, b)
	}
	if n != 17 || payload[protocol.Bye](t, last).Reason != "slow" {
		t.Fatalf("slow member got %d messages, the last %+v", n, last)
	}
	f.waitGone(slow.ID())
	if got := f.events.details("live.leave"); len(got) != 1 || got[0] != "kicked: slow" {
		t.Fatalf("live.leave %q", got)
	}
	if s := f.r.Snapshot(); s.Seq != 100 {
		t.Fatalf("seq %d", s.Seq)
	}
}
