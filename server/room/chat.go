package room

import (
	"context"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sanping/sanping/protocol"
)

// saveTimeout bounds a chat store that hangs.
const saveTimeout = 10 * time.Second

// chatText is a chat message's text as stored: CRLF as LF, trimmed, 1..MaxChatRunes runes, no
// control characters but newlines.
func chatText(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", refuse(protocol.ErrInvalid, "chat: text is not UTF-8")
	}
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	n := 0
	for _, c := range s {
		if c != '\n' && unicode.IsControl(c) {
			return "", refuse(protocol.ErrInvalid, "chat: control character U+%04X", c)
		}
		n++
	}
	if n == 0 || n > protocol.MaxChatRunes {
		return "", refuse(protocol.ErrInvalid, "chat: text of 1-%d characters", protocol.MaxChatRunes)
	}
	return s, nil
}

// chat stores a message, then broadcasts it. chatMu keeps messages in stored order without
// holding the room while the store writes.
func (mb *Member) chat(ref uint64, text string) error {
	r := mb.room
	p := mb.p
	r.chatMu.Lock()
	defer r.chatMu.Unlock()
	name := p.info.Name
	if name == "" {
		name = p.info.Username
	}
	m := protocol.ChatMessage{Participant: p.id, Name: name, Text: text, Time: r.stamp()}
	var err error
	if r.cfg.Chat != nil {
		ctx, cancel := context.WithTimeout(r.ctx, saveTimeout)
		m.ID, err = r.cfg.Chat.SaveChat(ctx, r.consultation, p.info.UserID, m)
		cancel()
	} else {
		r.chatID++
		m.ID = r.chatID
	}
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return ErrClosed
	}
	if err != nil {
		r.log.Error("room: chat message not stored", "participant", p.id, "err", err)
		pe := &ProtocolError{Code: codeUnavailable, Message: "the message could not be stored; send it again", Err: err}
		r.answer(mb, ref, pe)
		return pe
	}
	r.broadcast(protocol.TypeChatMessage, m, nil)
	r.event(p, "live.chat", text)
	return nil
}
