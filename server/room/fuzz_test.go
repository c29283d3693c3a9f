package room

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/sanping/sanping/protocol"
)

// FuzzHandle sends arbitrary messages, as a driver and as another participant: no panic, every
// frame out is a message, Seq has no gaps, and replaying what was sent gives the snapshot.
func FuzzHandle(f *testing.F) {
	seeds := []struct {
		typ  string
		data string
	}{
		{protocol.TypeOp, `{"kind":"image","image":{"study":"1.2","series":"1.2.3","instance":"1.2.3.4","frame":2}}`},
		{protocol.TypeOp, `{"kind":"window","window":{"center":40,"width":400},"sent":1700000000000}`},
		{protocol.TypeOp, `{"kind":"transform","transform":{"zoom":2,"panX":0.5,"panY":-0.5,"rotation":270,"flipH":true,"flipV":false,"invert":true}}`},
		{protocol.TypeOp, `{"kind":"cine","cine":{"playing":true,"fps":30}}`},
		{protocol.TypeOp, `{"kind":"pointer","pointer":{"x":0.5,"y":0.5,"visible":true,"by":"me"}}`},
		{protocol.TypeOp, `{"kind":"annotation.add","annotation":{"id":"a","kind":"text","points":[{"x":0,"y":0}],"text":"x"}}`},
		{protocol.TypeOp, `{"kind":"annotation.update","annotation":{"id":"seed","kind":"arrow","points":[{"x":0,"y":0},{"x":1,"y":1}]}}`},
		{protocol.TypeOp, `{"kind":"annotation.delete","annotationId":"seed"}`},
		{protocol.TypeOp, `{"kind":"reset"}`},
		{protocol.TypeOp, `{"kind":"window","window":{"center":1e999,"width":1}}`},
		{protocol.TypeControl, `{"action":"give","to":"p-aaaaaaaaaaaa"}`},
		{protocol.TypeControl, `{"action":"request"}`},
		{protocol.TypeControl, `{"action":"release"}`},
		{protocol.TypeControl, `{"action":"take"}`},
		{protocol.TypeChat, `{"text":"你好"}`},
		{protocol.TypeQuality, `{"bitrateIn":1,"bitrateOut":2,"loss":0.1,"rttMs":3,"jitterMs":4,"fps":5}`},
		{protocol.TypeMedia, `{"muted":["microphone","camera"]}`},
		{protocol.TypePing, ``},
		{"leave", ``},
		{"bogus", `{]`},
		{protocol.TypeOp, `null`},
	}
	for _, s := range seeds {
		f.Add(s.typ, []byte(s.data), uint8(1))
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte, from uint8) {
		clk := newClock()
		m := NewManager(Config{Now: clk.Now, Logger: slog.New(slog.DiscardHandler), OpsPerSecond: 1000, OpsBurst: 1000})
		defer m.CloseAll("done")
		r := m.Open(1)
		var members []*Member
		for _, in := range []Info{doctor, clinic, township} {
			mb, _, err := r.Join(context.Background(), in, "")
			if err != nil {
				t.Fatal(err)
			}
			members = append(members, mb)
		}
		if err := members[1].Handle(opMsg(1, lineOp(protocol.OpAnnotationAdd, "seed"))); err != nil {
			t.Fatal(err)
		}
		msg := protocol.Message{Type: typ, ID: 42, Data: json.RawMessage(data)}
		for _, mb := range []*Member{members[int(from)%3], members[0]} {
			mb.Handle(msg)
		}
		end := r.Snapshot()
		present := map[string]bool{}
		for _, p := range r.Participants() {
			present[p.ID] = true
		}
		for _, mb := range members {
			c := replica{state: protocol.DefaultViewState()}
			for _, m := range queued(t, mb) {
				if m.Type == protocol.TypeOpApplied {
					c.apply(t, m)
				}
			}
			if present[mb.ID()] { // one that left sees the view up to its leaving
				sameSnapshot(t, end, c)
			}
		}
	})
}
