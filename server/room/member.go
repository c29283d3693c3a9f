package room

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/sanping/sanping/protocol"
)

// Member is one connection of a participant. A participant that resumes gets a new Member;
// the old one's outbox is closed and its Handle, Disconnected and Leave do nothing.
type Member struct {
	room *Room
	p    *participant
	out  chan []byte

	// Under room.mu.
	done     bool // the outbox is closed
	ops      flow
	pointers flow
	chats    flow
	errs     int // protocol errors in a row
}

// maxErrorsInARow protocol errors in a row get a member kicked.
const maxErrorsInARow = 50

// ProtocolError refuses one message. The member has been sent an Error with Ref set to the
// message's ID; its connection stays.
type ProtocolError struct {
	Code    string // a protocol error code (protocol.ErrBadMessage, ...)
	Message string
	Err     error // the cause, when the server rather than the client failed
}

func (e *ProtocolError) Error() string { return e.Code + ": " + e.Message }

func (e *ProtocolError) Unwrap() error { return e.Err }

func refuse(code, format string, args ...any) *ProtocolError {
	return &ProtocolError{Code: code, Message: truncate(fmt.Sprintf(format, args...), 200)}
}

// codeUnavailable refuses a message the server could not carry out (chat not stored).
// protocol has no code for a server-side failure yet.
const codeUnavailable = "unavailable"

// ID is the participant's ID in the room.
func (mb *Member) ID() string { return mb.p.id }

// Outbox yields encoded protocol.Message frames in room order. It closes when this
// connection ends: left, kicked, replaced, disconnected or the room closed.
func (mb *Member) Outbox() <-chan []byte { return mb.out }

// request is a client message decoded and checked for everything that needs no room state.
type request struct {
	op      *protocol.Op
	control *protocol.Control
	chat    string
	quality *protocol.Quality
	media   *protocol.Media
}

func parse(msg protocol.Message) (request, error) {
	var req request
	if len(msg.Data) > protocol.MaxMessageBytes {
		return req, refuse(protocol.ErrBadMessage, "message larger than %d bytes", protocol.MaxMessageBytes)
	}
	switch msg.Type {
	case protocol.TypeOp:
		var op protocol.Op
		if err := protocol.Decode(msg.Data, &op); err != nil {
			return req, refuse(protocol.ErrBadMessage, "op: %v", err)
		}
		if !slices.Contains(opKinds, op.Kind) {
			return req, refuse(protocol.ErrBadMessage, "unknown op kind %q", op.Kind)
		}
		if err := op.Validate(); err != nil {
			return req, refuse(protocol.ErrInvalid, "%v", err)
		}
		req.op = &op
	case protocol.TypeControl:
		var c protocol.Control
		if err := protocol.Decode(msg.Data, &c); err != nil {
			return req, refuse(protocol.ErrBadMessage, "control: %v", err)
		}
		req.control = &c
	case protocol.TypeChat:
		var c protocol.ChatSend
		if err := protocol.Decode(msg.Data, &c); err != nil {
			return req, refuse(protocol.ErrBadMessage, "chat: %v", err)
		}
		text, err := chatText(c.Text)
		if err != nil {
			return req, err
		}
		req.chat = text
	case protocol.TypeQuality:
		var q protocol.Quality
		if err := protocol.Decode(msg.Data, &q); err != nil {
			return req, refuse(protocol.ErrBadMessage, "quality: %v", err)
		}
		if q.BitrateIn < 0 || q.BitrateOut < 0 || q.Loss < 0 || q.Loss > 1 || q.RTTms < 0 || q.JitterMs < 0 || q.FPS < 0 || q.Width < 0 || q.Height < 0 || q.Width > 1<<16 || q.Height > 1<<16 {
			return req, refuse(protocol.ErrInvalid, "quality: figures out of range")
		}
		req.quality = &q
	case protocol.TypeMedia:
		var m protocol.Media
		if err := protocol.Decode(msg.Data, &m); err != nil {
			return req, refuse(protocol.ErrBadMessage, "media: %v", err)
		}
		muted, err := mutedLabels(m.Muted)
		if err != nil {
			return req, err
		}
		m.Muted = muted
		switch m.Uplink {
		case "", protocol.UplinkFull:
			m.Uplink = ""
		case protocol.UplinkReduced, protocol.UplinkAudioOnly:
		default:
			return req, refuse(protocol.ErrInvalid, "media: unknown uplink state %q", m.Uplink)
		}
		req.media = &m
	case protocol.TypePing, protocol.TypeLeave:
	default:
		return req, refuse(protocol.ErrBadMessage, "unknown message type %q", msg.Type)
	}
	return req, nil
}

// Handle applies one message from the client: op, control, chat, quality, ping or leave. A
// message the client got wrong returns a *ProtocolError, and nothing in the room changes.
// After the connection ended it returns ErrGone, after the room closed ErrClosed.
func (mb *Member) Handle(msg protocol.Message) error {
	req, perr := parse(msg) // outside the lock: decoding is the costly part and shares nothing
	r := mb.room
	r.mu.Lock()
	if r.closed {
		r.unlock()
		return ErrClosed
	}
	if mb.done {
		r.unlock()
		return ErrGone
	}
	class := &mb.ops
	switch {
	case req.op != nil && req.op.Kind == protocol.OpPointer:
		class = &mb.pointers
	case msg.Type == protocol.TypeChat:
		// Each chat message is stored durably (an fsync): people type a few a second at most.
		class = &mb.chats
	}
	err := r.admit(mb, class)
	if err == nil {
		err = perr
	}
	if err == nil {
		switch {
		case req.op != nil:
			err = r.applyOp(mb, *req.op)
		case req.control != nil:
			err = r.control(mb, *req.control)
		case req.quality != nil:
			b, _ := json.Marshal(req.quality)
			r.event(mb.p, "live.quality", string(b))
		case req.media != nil:
			r.setMedia(mb.p, *req.media)
		case msg.Type == protocol.TypePing:
			r.sendTo(mb, protocol.TypePong, msg.ID, nil)
		}
	}
	r.answer(mb, msg.ID, err)
	r.unlock()
	if err == nil {
		switch msg.Type {
		case protocol.TypeChat:
			return mb.chat(msg.ID, req.chat)
		case protocol.TypeLeave:
			mb.Leave()
		}
	}
	return err
}

// mutedLabels checks a Media message's labels and puts them in one order, each once.
func mutedLabels(labels []string) ([]string, error) {
	var out []string
	for _, l := range []string{protocol.LabelMicrophone, protocol.LabelCamera, protocol.LabelImaging} {
		if slices.Contains(labels, l) {
			out = append(out, l)
		}
	}
	for _, l := range labels {
		if !slices.Contains(out, l) {
			return nil, refuse(protocol.ErrInvalid, "media: unknown source %q", l)
		}
	}
	return out, nil
}

// setMedia records what the participant turned off and what its uplink lets it send, and
// tells the others when either changed.
func (r *Room) setMedia(p *participant, m protocol.Media) {
	mutedChanged, uplinkChanged := !slices.Equal(p.muted, m.Muted), p.uplink != m.Uplink
	if !mutedChanged && !uplinkChanged {
		return
	}
	p.muted, p.uplink = m.Muted, m.Uplink
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "updated", Participant: r.view(p)}, nil)
	if mutedChanged {
		r.event(p, "live.muted", strings.Join(m.Muted, " "))
	}
	if uplinkChanged {
		r.event(p, "live.uplink", cmp.Or(m.Uplink, protocol.UplinkFull))
	}
}

// answer tells the member its message was refused and kicks one that gets nothing right.
func (r *Room) answer(mb *Member, ref uint64, err error) {
	pe, ok := err.(*ProtocolError)
	if !ok || mb.done {
		if err == nil {
			mb.errs = 0
		}
		return
	}
	r.sendTo(mb, protocol.TypeError, 0, protocol.Error{Code: pe.Code, Message: pe.Message, Ref: ref})
	// Going too fast is not getting things wrong: admit has its own, higher bar for that.
	if pe.Code == codeUnavailable || pe.Code == protocol.ErrRateLimit {
		return
	}
	mb.errs++
	if mb.errs >= maxErrorsInARow {
		r.kick(mb, "flooding")
	}
}

// Chat limits: a burst of 10 messages, then 2 a second.
const (
	chatPerSecond = 2
	chatBurst     = 10
)

// flow is one member's rate limit for one class of messages, and the count past which it is
// flooding rather than merely over the limit.
type flow struct {
	lim   *rate.Limiter
	start time.Time // of the current one-second window
	n     int
	flood int
}

func newFlow(perSecond, burst int) flow {
	// A client within its limit sends at most burst+perSecond in any second.
	return flow{lim: rate.NewLimiter(rate.Limit(perSecond), burst), flood: max(3*perSecond, burst+perSecond)}
}

// admit counts a message against the member's limits: over the limit it is refused, far
// over it the member is kicked.
func (r *Room) admit(mb *Member, f *flow) error {
	now := r.now()
	if d := now.Sub(f.start); d >= time.Second || d < 0 {
		f.start, f.n = now, 0
	}
	f.n++
	if f.n > f.flood {
		r.kick(mb, "flooding")
		return refuse(protocol.ErrRateLimit, "flooding")
	}
	if !f.lim.AllowN(now, 1) {
		return refuse(protocol.ErrRateLimit, "too many messages; slow down")
	}
	return nil
}

// Disconnected tells the room the websocket dropped: the participant keeps its place and
// state for the grace period, in which it may resume.
func (mb *Member) Disconnected() {
	r := mb.room
	r.mu.Lock()
	defer r.unlock()
	if mb.done || r.closed {
		return
	}
	p := mb.p
	r.end(mb, "")
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "disconnected", Participant: r.view(p)}, nil)
	r.event(p, "live.disconnect", "")
	p.graceGen++
	gen := p.graceGen
	p.grace = time.AfterFunc(r.cfg.Grace, func() { r.expire(p, gen) })
}

// Leave takes the participant out of the room for good, also during its grace period; on a
// connection that another has replaced it does nothing.
func (mb *Member) Leave() {
	r := mb.room
	r.mu.Lock()
	defer r.unlock()
	if p := mb.p; p.conn == mb || p.conn == nil {
		r.remove(p, "left", "left")
	}
}

// SetTracks is the media side telling which tracks the participant publishes. It holds for
// the participant, whichever of its connections it is called on.
func (mb *Member) SetTracks(tracks []protocol.Track) {
	r := mb.room
	r.mu.Lock()
	defer r.unlock()
	p := mb.p
	if p.gone || r.closed {
		return
	}
	next := make([]protocol.Track, len(tracks))
	for i, t := range tracks {
		t.Participant = p.id
		t.Layers = slices.Clone(t.Layers)
		next[i] = t
	}
	has := func(ts []protocol.Track, id string) bool {
		return slices.ContainsFunc(ts, func(t protocol.Track) bool { return t.ID == id })
	}
	prev := p.tracks
	p.tracks = next
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "updated", Participant: r.view(p)}, nil)
	for _, t := range next {
		if !has(prev, t.ID) {
			r.event(p, "track.published", t.Kind+" "+t.Label+" "+t.ID)
		}
	}
	for _, t := range prev {
		if !has(next, t.ID) {
			r.event(p, "track.stopped", t.Kind+" "+t.Label+" "+t.ID)
		}
	}
}

// SetConnection is the media side telling how the participant's media flows: udp, tcp or relay.
func (mb *Member) SetConnection(kind string) {
	r := mb.room
	r.mu.Lock()
	defer r.unlock()
	p := mb.p
	if p.gone || r.closed || p.connection == kind {
		return
	}
	p.connection = kind
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "updated", Participant: r.view(p)}, nil)
	r.event(p, "live.connection", kind)
}

// SetQuality is the media side telling how the participant's media gets through:
// protocol.QualityGood, QualityWeak, QualityLost, or "" when not known (new peer connections).
// A change is broadcast while the participant is connected; during its grace period it is
// kept for when it resumes.
func (mb *Member) SetQuality(level string) {
	r := mb.room
	r.mu.Lock()
	defer r.unlock()
	p := mb.p
	if p.gone || r.closed || p.quality == level {
		return
	}
	p.quality = level
	if p.conn == nil {
		return
	}
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "updated", Participant: r.view(p)}, nil)
	if level != "" {
		r.event(p, "live.quality.level", level)
	}
}

// truncate cuts s to at most n bytes at a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
