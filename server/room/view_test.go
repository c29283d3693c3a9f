package room

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sanping/sanping/protocol"
)

func TestNonDriver(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	twn, _ := f.join(township)
	for _, mb := range []*Member{doc, cli, twn} {
		queued(t, mb)
	}
	before := f.r.Snapshot()
	for i, op := range []protocol.Op{imageOp("1.2.3", 0), windowOp(1, 2), {Kind: protocol.OpReset},
		{Kind: protocol.OpCine, Cine: &protocol.Cine{Playing: true, FPS: 10}},
		{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 3}}} {
		wantCode(t, cli.Handle(opMsg(uint64(100+i), op)), protocol.ErrNotDriver)
		if e := payload[protocol.Error](t, recv(t, cli)); e.Code != protocol.ErrNotDriver || e.Ref != uint64(100+i) {
			t.Fatalf("error %+v", e)
		}
	}
	for _, mb := range []*Member{doc, cli, twn} {
		if q := queued(t, mb); len(q) != 0 {
			t.Fatalf("%s got %v", mb.ID(), q)
		}
	}
	if jsonOf(t, f.r.Snapshot()) != jsonOf(t, before) {
		t.Fatal("refused ops changed the state")
	}

	// Anyone points; the server says who.
	p := pointerOp(0.25, 0.75)
	p.Pointer.By = doc.ID() // a lie, overwritten
	p.Sent = 1700000000123
	if err := cli.Handle(opMsg(7, p)); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []*Member{doc, cli, twn} {
		oa := payload[protocol.OpApplied](t, recv(t, mb))
		if oa.Seq != 1 || oa.By != cli.ID() || oa.Op.Pointer.By != cli.ID() || oa.Op.Pointer.X != 0.25 || oa.Op.Sent != p.Sent {
			t.Fatalf("pointer as applied %+v %+v", oa, oa.Op.Pointer)
		}
	}
}

func TestAnnotations(t *testing.T) {
	f := newFixture(t, Config{OpsPerSecond: 10000})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	twn, _ := f.join(township)
	must := func(mb *Member, op protocol.Op) {
		t.Helper()
		if err := mb.Handle(opMsg(1, op)); err != nil {
			t.Fatalf("%s: %v", op.Kind, err)
		}
	}
	must(cli, lineOp(protocol.OpAnnotationAdd, "c1"))
	wantCode(t, twn.Handle(opMsg(1, lineOp(protocol.OpAnnotationAdd, "c1"))), protocol.ErrConflict)
	wantCode(t, twn.Handle(opMsg(1, lineOp(protocol.OpAnnotationUpdate, "c1"))), protocol.ErrForbidden)
	wantCode(t, twn.Handle(opMsg(1, protocol.Op{Kind: protocol.OpAnnotationDelete, AnnotationID: "c1"})), protocol.ErrForbidden)
	wantCode(t, twn.Handle(opMsg(1, lineOp(protocol.OpAnnotationUpdate, "zz"))), protocol.ErrNotFound)
	wantCode(t, twn.Handle(opMsg(1, protocol.Op{Kind: protocol.OpAnnotationDelete, AnnotationID: "zz"})), protocol.ErrNotFound)

	created := f.r.Snapshot().State.Annotation["c1"].Created
	up := lineOp(protocol.OpAnnotationUpdate, "c1")
	up.Annotation.Text = "病灶"
	up.Annotation.Author = twn.ID()
	must(cli, up) // its author
	a := f.r.Snapshot().State.Annotation["c1"]
	if a.Author != cli.ID() || a.Text != "病灶" || !a.Created.Equal(created) || a.Updated.Before(created) {
		t.Fatalf("updated %+v", a)
	}
	must(doc, lineOp(protocol.OpAnnotationUpdate, "c1")) // the driver
	must(doc, protocol.Op{Kind: protocol.OpAnnotationDelete, AnnotationID: "c1"})
	if _, ok := f.r.Snapshot().State.Annotation["c1"]; ok {
		t.Fatal("not deleted")
	}
	for i := range protocol.MaxAnnotations {
		must(twn, lineOp(protocol.OpAnnotationAdd, fmt.Sprint(i)))
	}
	wantCode(t, twn.Handle(opMsg(1, lineOp(protocol.OpAnnotationAdd, "one more"))), protocol.ErrInvalid)
	got := f.events.details("live.annotation")
	if len(got) != 4+protocol.MaxAnnotations || got[0] != "add c1 line" || got[1] != "update c1 line" || got[3] != "delete c1 line" {
		t.Fatalf("live.annotation %q", got[:4])
	}
}

func TestReset(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	for _, op := range []protocol.Op{imageOp("1.2.3", 4), windowOp(40, 400),
		{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 2, Rotation: 180}},
		{Kind: protocol.OpCine, Cine: &protocol.Cine{Playing: true, FPS: 30}}, {Kind: protocol.OpReset}} {
		if err := doc.Handle(opMsg(1, op)); err != nil {
			t.Fatal(err)
		}
	}
	s := f.r.Snapshot().State
	d := protocol.DefaultViewState()
	if s.Window != d.Window || s.Transform != d.Transform || s.Cine != d.Cine || s.Image.Frame != 4 {
		t.Fatalf("after reset %+v", s)
	}
}

// Pointer ops are paced: the first goes out at once, then at most one per interval, the
// latest winning. The clock is synctest's: 300 pointer moves over a second, exactly.
func TestPointerCoalescing(t *testing.T) {
	synctest.Test(t, testPointerCoalescing)
}

func testPointerCoalescing(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	queued(t, doc)
	if err := cli.Handle(opMsg(1, pointerOp(0, 0))); err != nil {
		t.Fatal(err)
	}
	if q := queued(t, doc); len(q) != 1 || q[0].Type != protocol.TypeOpApplied {
		t.Fatalf("first pointer not sent at once: %v", q)
	}
	time.Sleep(40 * time.Millisecond)

	const n = 300
	start := time.Now()
	for i := 1; i <= n; i++ {
		if err := cli.Handle(opMsg(uint64(i), pointerOp(float64(i)/n, 1-float64(i)/n))); err != nil {
			t.Fatalf("pointer %d: %v", i, err)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / n)))
	}
	time.Sleep(50 * time.Millisecond) // the last interval
	elapsed := time.Since(start)
	ms := ofType(queued(t, doc), protocol.TypeOpApplied)
	// One broadcast at once, then one per 33 ms interval that saw a move: 1.05 s of moves.
	if want := int(elapsed / (33 * time.Millisecond)); len(ms) < want-1 || len(ms) > want+1 {
		t.Fatalf("%d pointer broadcasts in %v, want %d±1", len(ms), elapsed, want)
	}
	c := replica{seq: 1, state: protocol.DefaultViewState()}
	for _, m := range ms {
		c.apply(t, m)
	}
	if p := c.state.Pointer; p == nil || p.X != 1 || p.Y != 0 {
		t.Fatalf("last pointer %+v, want (1, 0)", p)
	}
	t.Logf("%d pointer ops in %v: %d broadcasts", n, elapsed.Round(time.Millisecond), len(ms))
}
