package room

import (
	"errors"
	"strings"
	"testing"

	"github.com/sanping/sanping/protocol"
)

func TestChat(t *testing.T) {
	f := newFixture(t, Config{})
	doc, _ := f.join(doctor)
	cli, _ := f.join(clinic)
	queued(t, doc)
	if err := cli.Handle(message(protocol.TypeChat, 5, protocol.ChatSend{Text: "  请看右下肺\r\n第三张  "})); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []*Member{doc, cli} {
		cm := payload[protocol.ChatMessage](t, recvType(t, mb, protocol.TypeChatMessage))
		if cm.ID != 1 || cm.Participant != cli.ID() || cm.Name != "李村医" || cm.Text != "请看右下肺\n第三张" || cm.Time.IsZero() {
			t.Fatalf("chat %+v", cm)
		}
	}
	if got := f.events.details("live.chat"); len(got) != 1 || got[0] != "请看右下肺\n第三张" {
		t.Errorf("live.chat %q", got)
	}
	_, w := f.join(township)
	if len(w.Chat) != 1 || w.Chat[0].Text != "请看右下肺\n第三张" {
		t.Fatalf("history %+v", w.Chat)
	}

	for _, bad := range []string{"", " \n\t ", "a\x00b", "bell\a", strings.Repeat("字", protocol.MaxChatRunes+1), "\u0085"} {
		wantCode(t, cli.Handle(message(protocol.TypeChat, 6, protocol.ChatSend{Text: bad})), protocol.ErrInvalid)
	}
	if err := cli.Handle(message(protocol.TypeChat, 7, protocol.ChatSend{Text: strings.Repeat("字", protocol.MaxChatRunes)})); err != nil {
		t.Fatalf("longest message: %v", err)
	}

	// A message the store refuses reaches nobody; its sender is told.
	queued(t, doc)
	queued(t, cli)
	f.chat.mu.Lock()
	f.chat.fail = errors.New("disk full")
	f.chat.mu.Unlock()
	err := cli.Handle(message(protocol.TypeChat, 8, protocol.ChatSend{Text: "lost?"}))
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != codeUnavailable || pe.Unwrap() == nil {
		t.Fatalf("store failure: %v", err)
	}
	if e := payload[protocol.Error](t, recv(t, cli)); e.Ref != 8 || e.Code != codeUnavailable {
		t.Fatalf("error %+v", e)
	}
	if q := queued(t, doc); len(q) != 0 {
		t.Fatalf("broadcast although not stored: %v", q)
	}
	if q := queued(t, cli); len(q) != 0 {
		t.Fatalf("sender got more: %v", q)
	}
	if got := f.events.details("live.chat"); len(got) != 2 {
		t.Errorf("live.chat %d events", len(got))
	}
}
