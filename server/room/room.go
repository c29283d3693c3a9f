// Package room is a live consultation room: the authoritative view state every screen shows
// (三屏联动), the one order in which operations on it apply, who drives, chat, and the
// participants with their reconnect grace period. It does no network I/O: server/signal feeds
// it decoded client messages and writes what each member's outbox holds.
//
// Everything in a room happens under one mutex, so ops are applied and queued to every outbox
// in a single total order (Seq 1, 2, 3, ... with no gaps). Outboxes are buffered channels that
// are never waited on: a member whose outbox is full is removed, so one slow link never holds
// up the others.
package room

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sanping/sanping/protocol"
)

var (
	// ErrResume means the resume token is unknown, expired, or another user's: join afresh.
	ErrResume = errors.New("room: resume token unknown, expired or not yours")
	// ErrClosed means the room was closed.
	ErrClosed = errors.New("room: closed")
	// ErrGone means this connection of the member has ended (left, kicked or replaced).
	ErrGone = errors.New("room: connection ended")
)

// chatHistory is how many chat messages a Welcome carries.
const chatHistory = 200

// Info describes who joins; the signaling layer fills it after authorization.
type Info struct {
	UserID      int64
	Username    string
	Name        string
	Role        string // doctor, clinic, admin
	Institution string
	Client      string
	IP          string
	UserAgent   string
	// DefaultDriver marks the consultation's assigned doctor: it drives when present and
	// nobody else was given control.
	DefaultDriver bool
	// CanTake may take control without asking (the assigned doctor, an admin).
	CanTake bool
}

// Event is something for the audit trail and session log.
type Event struct {
	Consultation int64
	Participant  string
	Username     string
	Action       string // live.join, live.leave, live.control, live.chat, ...
	Detail       string
	Time         time.Time
}

// Sink receives a room's events. Event is called with the room locked: it must not block or
// call back into the room.
type Sink interface {
	Event(Event)
}

// ChatStore keeps chat messages.
type ChatStore interface {
	// SaveChat stores m durably before it returns and gives its ID.
	SaveChat(ctx context.Context, consultation int64, userID int64, m protocol.ChatMessage) (int64, error)
	// LoadChat returns the consultation's last limit messages, oldest first.
	LoadChat(ctx context.Context, consultation int64, limit int) ([]protocol.ChatMessage, error)
}

// Config is shared by all rooms of a Manager. Zero fields take the defaults.
type Config struct {
	Grace           time.Duration // a dropped participant keeps its place and state this long (60s)
	PointerInterval time.Duration // at most one pointer broadcast per room per interval (33ms)
	// OpsPerSecond and OpsBurst limit each member's op, control, chat, quality and ping
	// messages (60 and 120); pointer ops have their own limit, 4 times these.
	OpsPerSecond int
	OpsBurst     int
	// OutboxSize is how many encoded messages a member's outbox holds (1024). A member whose
	// outbox is full is kicked (Bye "slow"): it reconnects and starts from a snapshot.
	OutboxSize int
	Chat       ChatStore // nil: chat is not stored (IDs count from 1)
	Sink       Sink      // nil: no events
	Now        func() time.Time
	Logger     *slog.Logger
	// OnGone is called, on its own goroutine, when a participant leaves, is kicked, its grace
	// period ends or the room closes: the media side closes its peer.
	OnGone func(consultation int64, participant string)
}

func (c Config) withDefaults() Config {
	if c.Grace <= 0 {
		c.Grace = 60 * time.Second
	}
	if c.PointerInterval <= 0 {
		c.PointerInterval = 33 * time.Millisecond
	}
	if c.OpsPerSecond <= 0 {
		c.OpsPerSecond = 60
	}
	if c.OpsBurst <= 0 {
		c.OpsBurst = 2 * c.OpsPerSecond
	}
	if c.OutboxSize <= 0 {
		c.OutboxSize = 1024
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Manager holds the open rooms, one per consultation.
type Manager struct {
	cfg   Config
	mu    sync.Mutex
	rooms map[int64]*Room
}

// NewManager makes a Manager whose rooms use cfg.
func NewManager(cfg Config) *Manager {
	return &Manager{cfg: cfg.withDefaults(), rooms: map[int64]*Room{}}
}

// Open returns the consultation's room, creating it if needed with no image shown.
func (m *Manager) Open(consultation int64) *Room {
	return m.OpenAt(consultation, protocol.ImageRef{})
}

// OpenAt returns the consultation's room, creating it if needed on image, so that every
// screen starts on the same image and the driver can step from it. An open room keeps its view.
func (m *Manager) OpenAt(consultation int64, image protocol.ImageRef) *Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.rooms[consultation]; ok {
		return r
	}
	r := newRoom(&m.cfg, consultation)
	r.state.Image = image
	m.rooms[consultation] = r
	return r
}

// Get returns the consultation's room if it is open.
func (m *Manager) Get(consultation int64) (*Room, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rooms[consultation]
	return r, ok
}

// Consultations lists the consultations whose rooms are open, in ID order.
func (m *Manager) Consultations() []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]int64, 0, len(m.rooms))
	for id := range m.rooms {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Close ends the consultation's room: every member gets Bye{reason}, its outbox closes and
// OnGone is called for each participant.
func (m *Manager) Close(consultation int64, reason string) {
	m.mu.Lock()
	r := m.rooms[consultation]
	delete(m.rooms, consultation)
	m.mu.Unlock()
	if r != nil {
		r.close(reason)
	}
}

// CloseAll closes every room (server shutdown).
func (m *Manager) CloseAll(reason string) {
	m.mu.Lock()
	rooms := m.rooms
	m.rooms = map[int64]*Room{}
	m.mu.Unlock()
	for _, r := range rooms {
		r.close(reason)
	}
}

// Room is one consultation's live room.
type Room struct {
	cfg          *Config
	consultation int64
	log          *slog.Logger
	ctx          context.Context // for SaveChat; cancelled by close
	cancel       context.CancelFunc

	// chatMu orders chat: a message is stored and broadcast before the next is stored, and a
	// joiner's history cannot miss one. Lock order: chatMu, then mu.
	chatMu sync.Mutex
	chatID int64 // message IDs when there is no ChatStore

	mu       sync.Mutex
	closed   bool
	seq      uint64
	state    protocol.ViewState
	members  []*participant // in join order: the first is the longest present
	driver   *participant
	given    bool // the driver was given the seat or took it, rather than having it by default
	requests []*participant
	pointer  pointerQueue
	kicks    []kick // members kicked while the room was busy; removed by unlock
}

// participant is someone in the room; it outlives its connections (Members) while it resumes
// within the grace period.
type participant struct {
	id         string
	info       Info
	joined     time.Time
	token      string
	tracks     []protocol.Track
	connection string
	quality    string // protocol.QualityGood, ...; shown only while connected
	muted      []string
	uplink     string  // protocol.UplinkReduced or UplinkAudioOnly; "" when it sends everything
	conn       *Member // the current connection; nil during the grace period
	grace      *time.Timer
	graceGen   int // tells a stale grace timer from the current one
	gone       bool
}

type kick struct {
	p      *participant
	reason string
}

func newRoom(cfg *Config, consultation int64) *Room {
	ctx, cancel := context.WithCancel(context.Background())
	return &Room{cfg: cfg, consultation: consultation, log: cfg.Logger.With("consultation", consultation),
		ctx: ctx, cancel: cancel, state: protocol.DefaultViewState()}
}

// Consultation is the room's consultation ID.
func (r *Room) Consultation() int64 { return r.consultation }

// Join adds a participant, or with a resume token from an earlier Welcome gives a dropped
// (or still connected) participant of the same user a new connection, keeping its ID, tracks
// and seat. The Welcome is complete except for ICEServers. A resumed connection replaces the
// earlier one, whose outbox gets Bye "replaced" and closes.
func (r *Room) Join(ctx context.Context, info Info, resume string) (*Member, protocol.Welcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, protocol.Welcome{}, err
	}
	r.chatMu.Lock()
	defer r.chatMu.Unlock()
	chat := []protocol.ChatMessage{}
	if r.cfg.Chat != nil {
		c, err := r.cfg.Chat.LoadChat(ctx, r.consultation, chatHistory)
		if err != nil {
			return nil, protocol.Welcome{}, fmt.Errorf("room: loading chat: %w", err)
		}
		if c != nil {
			chat = c
		}
	}
	r.mu.Lock()
	defer r.unlock()
	if r.closed {
		return nil, protocol.Welcome{}, ErrClosed
	}
	// The welcome's snapshot is then exactly the state as of its Seq.
	r.flushPointer()
	var mb *Member
	if resume != "" {
		p := r.byToken(resume)
		if p == nil || p.info.UserID != info.UserID {
			return nil, protocol.Welcome{}, ErrResume
		}
		mb = r.resume(p, info)
	} else {
		mb = r.add(info)
	}
	p := mb.p
	w := protocol.Welcome{
		Participant:  p.id,
		ResumeToken:  p.token,
		Resumed:      resume != "",
		GraceSeconds: int((r.cfg.Grace + time.Second - 1) / time.Second),
		ICEServers:   []protocol.ICEServer{},
		Consultation: r.consultation,
		Participants: r.participants(),
		Snapshot:     r.snapshot(),
		Chat:         chat,
		Control:      r.controlState(),
		Limits:       r.limits(),
	}
	return mb, w, nil
}

func (r *Room) add(info Info) *Member {
	p := &participant{id: r.newID(), info: info, joined: r.stamp(), token: rand.Text(), tracks: []protocol.Track{}}
	mb := r.connect(p)
	r.members = append(r.members, p)
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "joined", Participant: r.view(p)}, mb)
	r.event(p, "live.join", strings.Join([]string{info.Role, info.Client, info.IP, info.UserAgent}, ", "))
	if r.driver == nil || (info.DefaultDriver && !r.given && !r.driver.info.DefaultDriver) {
		r.setDriver(p, p, false, mb)
	}
	return mb
}

func (r *Room) resume(p *participant, info Info) *Member {
	was := p.conn
	if was != nil {
		r.end(was, "replaced")
	}
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	p.graceGen++
	p.info = info
	p.token = rand.Text()
	mb := r.connect(p)
	if was == nil {
		r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "updated", Participant: r.view(p)}, mb)
	}
	r.event(p, "live.resume", strings.Join([]string{info.Role, info.Client, info.IP, info.UserAgent}, ", "))
	if r.driver == nil {
		r.setDriver(p, p, false, mb)
	}
	return mb
}

func (r *Room) connect(p *participant) *Member {
	c := r.cfg
	mb := &Member{room: r, p: p,
		// One slot more than OutboxSize, so a Bye always fits (see send).
		out:      make(chan []byte, c.OutboxSize+1),
		ops:      newFlow(c.OpsPerSecond, c.OpsBurst),
		pointers: newFlow(4*c.OpsPerSecond, 4*c.OpsBurst),
		chats:    newFlow(chatPerSecond, chatBurst),
	}
	p.conn = mb
	return mb
}

// newID is "p-" and 12 base32 characters (60 random bits), unique in the room.
func (r *Room) newID() string {
	for {
		id := "p-" + strings.ToLower(rand.Text()[:12])
		if r.find(id) == nil {
			return id
		}
	}
}

func (r *Room) find(id string) *participant {
	for _, p := range r.members {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (r *Room) byToken(token string) *participant {
	var found *participant
	for _, p := range r.members {
		if subtle.ConstantTimeCompare([]byte(p.token), []byte(token)) == 1 {
			found = p
		}
	}
	return found
}

func (r *Room) limits() map[string]int {
	c := r.cfg
	return map[string]int{
		"opsPerSecond":        c.OpsPerSecond,
		"opsBurst":            c.OpsBurst,
		"pointerPerSecond":    4 * c.OpsPerSecond,
		"pointerBurst":        4 * c.OpsBurst,
		"pointerIntervalMs":   int(c.PointerInterval / time.Millisecond),
		"maxMessageBytes":     protocol.MaxMessageBytes,
		"maxChatRunes":        protocol.MaxChatRunes,
		"maxAnnotations":      protocol.MaxAnnotations,
		"maxAnnotationPoints": protocol.MaxAnnotationPoints,
		"maxAnnotationText":   protocol.MaxAnnotationText,
		"chatHistory":         chatHistory,
	}
}

// Snapshot is the view state as of its Seq: a pointer move still waiting for its broadcast
// goes out first.
func (r *Room) Snapshot() protocol.Snapshot {
	r.mu.Lock()
	defer r.unlock()
	r.flushPointer()
	return r.snapshot()
}

// Participants lists everyone in the room, in the order they joined.
func (r *Room) Participants() []protocol.Participant {
	r.mu.Lock()
	defer r.unlock()
	return r.participants()
}

func (r *Room) participants() []protocol.Participant {
	ps := make([]protocol.Participant, 0, len(r.members))
	for _, p := range r.members {
		ps = append(ps, r.view(p))
	}
	return ps
}

func (r *Room) view(p *participant) protocol.Participant {
	v := protocol.Participant{ID: p.id, UserID: p.info.UserID, Name: p.info.Name, Role: p.info.Role,
		Institution: p.info.Institution, Connected: p.conn != nil, Tracks: slices.Clone(p.tracks),
		Connection: p.connection, Muted: slices.Clone(p.muted), Uplink: p.uplink, JoinedAt: p.joined}
	if p.conn != nil {
		// Without its websocket a participant is "disconnected", which says more; "lost" is
		// for media that stopped while the websocket is up.
		v.Quality = p.quality
	}
	return v
}

// now is the clock for rate limits and pointer pacing; stamp is for times that are sent.
func (r *Room) now() time.Time   { return r.cfg.Now() }
func (r *Room) stamp() time.Time { return r.cfg.Now().Round(0) }

func (r *Room) event(p *participant, action, detail string) {
	if r.cfg.Sink == nil {
		return
	}
	e := Event{Consultation: r.consultation, Action: action, Detail: detail, Time: r.stamp()}
	if p != nil {
		e.Participant, e.Username = p.id, p.info.Username
	}
	r.cfg.Sink.Event(e)
}

// broadcast queues one message to every connected member but except.
func (r *Room) broadcast(typ string, data any, except *Member) bool {
	b, err := protocol.Encode(typ, 0, data)
	if err != nil {
		r.log.Error("room: encoding a broadcast", "type", typ, "err", err)
		return false
	}
	for _, p := range r.members {
		if p.conn != nil && p.conn != except {
			r.send(p.conn, b)
		}
	}
	return true
}

func (r *Room) sendTo(mb *Member, typ string, id uint64, data any) {
	b, err := protocol.Encode(typ, id, data)
	if err != nil {
		r.log.Error("room: encoding a message", "type", typ, "err", err)
		return
	}
	r.send(mb, b)
}

// send queues b without ever waiting. All sends hold r.mu and stop at OutboxSize, so the
// spare slot is free for the Bye of a kick or close.
func (r *Room) send(mb *Member, b []byte) {
	if mb.done {
		return
	}
	if len(mb.out) >= r.cfg.OutboxSize {
		r.kick(mb, "slow")
		return
	}
	mb.out <- b
}

// kick ends mb's connection now; the participant is removed when the room unlocks, since a
// kick can happen in the middle of a broadcast.
func (r *Room) kick(mb *Member, reason string) {
	if mb.done {
		return
	}
	r.log.Warn("room: member kicked", "participant", mb.p.id, "reason", reason)
	r.end(mb, reason)
	r.kicks = append(r.kicks, kick{mb.p, "kicked: " + reason})
}

// end closes mb's outbox, after a Bye unless bye is empty (the socket is already gone).
func (r *Room) end(mb *Member, bye string) {
	if mb.done {
		return
	}
	if bye != "" {
		if b, err := protocol.Encode(protocol.TypeBye, 0, protocol.Bye{Reason: bye}); err == nil {
			select {
			case mb.out <- b:
			default:
			}
		}
	}
	close(mb.out)
	mb.done = true
	if mb.p.conn == mb {
		mb.p.conn = nil
	}
}

// unlock removes the members kicked meanwhile, then unlocks. Every locked section ends here.
func (r *Room) unlock() {
	for len(r.kicks) > 0 {
		k := r.kicks[0]
		r.kicks = r.kicks[1:]
		r.remove(k.p, k.reason, "")
	}
	r.mu.Unlock()
}

// remove takes p out of the room for good. Its annotations stay: they are part of the view.
func (r *Room) remove(p *participant, reason, bye string) {
	if p.gone || r.closed {
		return
	}
	p.gone = true
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	if p.conn != nil {
		r.end(p.conn, bye)
	}
	r.members = slices.DeleteFunc(r.members, func(q *participant) bool { return q == p })
	asked := len(r.requests)
	r.requests = slices.DeleteFunc(r.requests, func(q *participant) bool { return q == p })
	r.broadcast(protocol.TypeParticipant, protocol.ParticipantEvent{Event: "left", Participant: r.view(p)}, nil)
	r.event(p, "live.leave", reason)
	switch {
	case r.driver == p:
		r.setDriver(r.successor(), p, false, nil)
	case len(r.requests) != asked:
		r.broadcast(protocol.TypeControlled, r.controlState(), nil)
	}
	r.gone(p)
}

func (r *Room) gone(p *participant) {
	if r.cfg.OnGone != nil {
		go r.cfg.OnGone(r.consultation, p.id)
	}
}

// expire ends p's grace period, unless p has resumed since the timer was set.
func (r *Room) expire(p *participant, gen int) {
	r.mu.Lock()
	defer r.unlock()
	if r.closed || p.gone || p.conn != nil || p.graceGen != gen {
		return
	}
	p.grace = nil
	r.remove(p, "grace expired", "")
}

func (r *Room) close(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.cancel()
	if r.pointer.timer != nil {
		r.pointer.timer.Stop()
		r.pointer.timer = nil
	}
	for _, p := range r.members {
		p.gone = true
		if p.grace != nil {
			p.grace.Stop()
			p.grace = nil
		}
		if p.conn != nil {
			r.end(p.conn, reason)
		}
		r.event(p, "live.leave", "room closed")
		r.gone(p)
	}
	r.members, r.driver, r.requests, r.kicks = nil, nil, nil, nil
}
