package room

import (
	"testing"

	"github.com/sanping/sanping/protocol"
)

func TestControl(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	twn, _ := f.join(township)
	adm, _ := f.join(admin)
	who := map[string]*Member{"doc": doc, "cli": cli, "twn": twn, "adm": adm}
	id := func(name string) string {
		if name == "" {
			return ""
		}
		return who[name].ID()
	}

	steps := []struct {
		by, action, to string
		code           string   // refused with this code
		driver         string   // then drives
		requests       []string // then ask
	}{
		{by: "cli", action: "request", driver: "doc", requests: []string{"cli"}},
		{by: "twn", action: "request", driver: "doc", requests: []string{"cli", "twn"}},
		{by: "twn", action: "cancel", driver: "doc", requests: []string{"cli"}},
		{by: "cli", action: "give", to: "twn", code: protocol.ErrNotDriver, driver: "doc", requests: []string{"cli"}},
		{by: "cli", action: "take", code: protocol.ErrForbidden, driver: "doc", requests: []string{"cli"}},
		{by: "doc", action: "give", to: "nobody", code: protocol.ErrNotFound, driver: "doc", requests: []string{"cli"}},
		{by: "doc", action: "sit", code: protocol.ErrInvalid, driver: "doc", requests: []string{"cli"}},
		{by: "doc", action: "give", to: "cli", driver: "cli"},
		{by: "doc", action: "release", code: protocol.ErrNotDriver, driver: "cli"},
		{by: "cli", action: "release", driver: "doc"},
		{by: "doc", action: "give", to: "twn", driver: "twn"},
		{by: "adm", action: "take", driver: "adm"},
		{by: "adm", action: "release", driver: "doc"},
		{by: "doc", action: "release", driver: "doc"}, // the default driver releasing keeps the seat
	}
	for i, s := range steps {
		for _, mb := range who {
			queued(t, mb)
		}
		before := f.r.controlStateLocked()
		to := s.to
		if m, ok := who[to]; ok {
			to = m.ID()
		}
		err := who[s.by].Handle(message(protocol.TypeControl, uint64(i+1), protocol.Control{Action: s.action, To: to}))
		if s.code != "" {
			wantCode(t, err, s.code)
			if m := recv(t, who[s.by]); m.Type != protocol.TypeError || payload[protocol.Error](t, m).Ref != uint64(i+1) {
				t.Fatalf("step %d: got %+v", i, m)
			}
		} else if err != nil {
			t.Fatalf("step %d %s %s: %v", i, s.by, s.action, err)
		}
		got := f.r.controlStateLocked()
		want := protocol.ControlState{Driver: id(s.driver), Requests: []string{}}
		for _, r := range s.requests {
			want.Requests = append(want.Requests, id(r))
		}
		if jsonOf(t, got) != jsonOf(t, want) {
			t.Fatalf("step %d %s %s: control %+v, want driver %s requests %v", i, s.by, s.action, got, s.driver, s.requests)
		}
		// Every change reaches everyone, once.
		for name, mb := range who {
			ms := ofType(queued(t, mb), protocol.TypeControlled)
			switch {
			case jsonOf(t, got) == jsonOf(t, before):
				if len(ms) != 0 {
					t.Fatalf("step %d: %s got %v without a change", i, name, ms)
				}
			case len(ms) != 1 || jsonOf(t, payload[protocol.ControlState](t, ms[0])) != jsonOf(t, got):
				t.Fatalf("step %d: %s got %v", i, name, ms)
			}
		}
	}
	details := f.events.details("live.control")
	for _, want := range []string{
		"from 王医生 (" + doc.ID() + ") to 李村医 (" + cli.ID() + ")",
		"from 李村医 (" + cli.ID() + ") to 王医生 (" + doc.ID() + ")",
		"from 赵医生 (" + twn.ID() + ") to 管理员 (" + adm.ID() + ")",
		"requested control", "cancelled the request",
	} {
		if !hasPrefix(details, want) {
			t.Errorf("no live.control %q in %q", want, details)
		}
	}
}

// controlStateLocked is the control state for tests.
func (r *Room) controlStateLocked() protocol.ControlState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.controlState()
}

// When the driver leaves, the seat goes to the default driver even if others came first.
func TestDriverLeaves(t *testing.T) {
	f := newFixture(t, Config{})
	cli, _ := f.join(clinic)
	doc, _ := f.join(doctor)
	twn, _ := f.join(township)
	if err := doc.Handle(message(protocol.TypeControl, 1, protocol.Control{Action: "give", To: twn.ID()})); err != nil {
		t.Fatal(err)
	}
	// Given control holds against the default driver joining again (a second device).
	doc2, w := f.join(doctor)
	if w.Control.Driver != twn.ID() {
		t.Fatalf("given seat taken by a joining default driver: %+v", w.Control)
	}
	doc2.Leave()
	if err := cli.Handle(message(protocol.TypeControl, 2, protocol.Control{Action: "request"})); err != nil {
		t.Fatal(err)
	}
	twn.Leave()
	if cs := f.r.controlStateLocked(); cs.Driver != doc.ID() || len(cs.Requests) != 1 {
		t.Fatalf("after the driver left: %+v", cs)
	}
	doc.Leave()
	if cs := f.r.controlStateLocked(); cs.Driver != cli.ID() || len(cs.Requests) != 0 {
		t.Fatalf("after the default driver left: %+v", cs)
	}
	cli.Leave()
	if cs := f.r.controlStateLocked(); cs.Driver != "" {
		t.Fatalf("empty room: %+v", cs)
	}
	_, w = f.join(township)
	if w.Control.Driver != w.Participant {
		t.Fatalf("joiner of an empty room does not drive: %+v", w.Control)
	}
}
