// Package signal is the live consultation's websocket protocol (docs/protocol.md): it admits
// participants of a live consultation into its room (server/room), connects their media to
// the SFU (server/sfu), and writes what happens to the audit trail and the session log.
package signal

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/room"
	"github.com/sanping/sanping/server/sfu"
	"github.com/sanping/sanping/server/turnserver"
)

// Config wires the live side.
type Config struct {
	DB      *sql.DB // chat and quality samples
	Consult *consult.Service
	Trail   *audit.Log
	SFU     sfu.Config // OnEvent is set by New
	Room    room.Config
	// TURN, when not nil, issues each participant short-lived relay credentials.
	TURN *turnserver.Server
	// AllowedOrigins are other browser origins (besides the server's own) allowed to open the
	// websocket with a session cookie (cross-site websocket hijacking is refused otherwise).
	AllowedOrigins []string
	// FirstImage finds where a study opens (its first series with pixels, first instance); a
	// room opens there. Nil, or ErrNotFound for every study: the room opens on no image.
	FirstImage func(ctx context.Context, study string) (series, instance string, err error)
	Logger     *slog.Logger
}

// Service serves the live protocol.
type Service struct {
	cfg     Config
	log     *slog.Logger
	db      *sql.DB
	cons    *consult.Service
	trail   *audit.Log
	rooms   *room.Manager
	sfu     *sfu.SFU
	events  chan auditEvent
	wg      sync.WaitGroup
	dropped int64 // audit events dropped because the writer fell behind (logged)

	mu       sync.Mutex
	sessions map[sessionKey]*session
	closed   bool
}

type sessionKey struct {
	consultation int64
	participant  string
}

// session is one participant: its room member, its SFU peer, and the connection it is on now.
type session struct {
	key    sessionKey
	info   room.Info
	member *room.Member

	mu   sync.Mutex
	peer *sfu.Peer
	out  chan []byte // the current connection's direct queue (signals, errors); nil while away
}

// sendDirect queues a frame on the participant's current connection; while it is away, or if
// the queue is full, the frame is dropped (signals are renegotiated on resume).
func (se *session) sendDirect(b []byte) {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.out == nil {
		return
	}
	select {
	case se.out <- b:
	default:
	}
}

const schema = `
CREATE TABLE IF NOT EXISTS live_chat (
	id              INTEGER PRIMARY KEY,
	consultation_id INTEGER NOT NULL,
	participant     TEXT NOT NULL,
	user_id         INTEGER NOT NULL,
	name            TEXT NOT NULL,
	text            TEXT NOT NULL,
	time_ms         INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS live_chat_consultation ON live_chat(consultation_id, id);
CREATE TRIGGER IF NOT EXISTS live_chat_no_update BEFORE UPDATE ON live_chat
BEGIN SELECT RAISE(ABORT, 'chat is kept as said'); END;
CREATE TRIGGER IF NOT EXISTS live_chat_no_delete BEFORE DELETE ON live_chat
BEGIN SELECT RAISE(ABORT, 'chat is kept at least 3 years'); END;
CREATE TABLE IF NOT EXISTS live_quality (
	id              INTEGER PRIMARY KEY,
	consultation_id INTEGER NOT NULL,
	participant     TEXT NOT NULL,
	username        TEXT NOT NULL,
	time_ms         INTEGER NOT NULL,
	source          TEXT NOT NULL, -- server (RTCP) or client
	sample          TEXT NOT NULL  -- protocol.Quality as JSON
) STRICT;
CREATE INDEX IF NOT EXISTS live_quality_consultation ON live_quality(consultation_id, time_ms);
-- One row per participant per room visit (join to leave; a resume keeps the row), and one per
-- finalized recording: the session log list reads these instead of the whole audit trail.
CREATE TABLE IF NOT EXISTS live_attendance (
	id              INTEGER PRIMARY KEY,
	consultation_id INTEGER NOT NULL,
	participant     TEXT NOT NULL,
	username        TEXT NOT NULL,
	joined_ms       INTEGER NOT NULL,
	left_ms         INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS live_attendance_consultation ON live_attendance(consultation_id, participant);
CREATE TABLE IF NOT EXISTS live_recordings (
	id              INTEGER PRIMARY KEY,
	consultation_id INTEGER NOT NULL,
	participant     TEXT NOT NULL,
	file            TEXT NOT NULL,
	time_ms         INTEGER NOT NULL, -- finalized
	start_ms        INTEGER           -- first frame written (NULL: recorded before it was kept)
) STRICT;
CREATE INDEX IF NOT EXISTS live_recordings_consultation ON live_recordings(consultation_id);
CREATE TRIGGER IF NOT EXISTS live_quality_no_delete BEFORE DELETE ON live_quality
BEGIN SELECT RAISE(ABORT, 'session logs are kept'); END;
`

// New prepares the tables and starts the SFU.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, err := cfg.DB.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("creating live tables: %w", err)
	}
	var n int
	if err := cfg.DB.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('live_recordings') WHERE name = 'start_ms'`).Scan(&n); err != nil {
		return nil, fmt.Errorf("creating live tables: %w", err)
	}
	if n == 0 {
		if _, err := cfg.DB.ExecContext(ctx, `ALTER TABLE live_recordings ADD COLUMN start_ms INTEGER`); err != nil {
			return nil, fmt.Errorf("creating live tables: %w", err)
		}
	}
	// No room is open yet: a visit without a leave was cut short by a crash or a kill. It ended
	// at its participant's last quality sample, or as far as anyone can tell, when it began.
	if _, err := cfg.DB.ExecContext(ctx, `UPDATE live_attendance SET left_ms = coalesce((SELECT max(q.time_ms) FROM live_quality q
		WHERE q.consultation_id = live_attendance.consultation_id AND q.participant = live_attendance.participant
		AND q.time_ms >= live_attendance.joined_ms), joined_ms) WHERE left_ms IS NULL`); err != nil {
		return nil, fmt.Errorf("closing cut-short room visits: %w", err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, db: cfg.DB, cons: cfg.Consult, trail: cfg.Trail,
		events: make(chan auditEvent, 8192), sessions: map[sessionKey]*session{}}
	sc := cfg.SFU
	sc.OnEvent = s.sfuEvent
	if sc.Logger == nil {
		sc.Logger = cfg.Logger
	}
	var err error
	if s.sfu, err = sfu.New(sc); err != nil {
		return nil, fmt.Errorf("starting the SFU: %w", err)
	}
	rc := cfg.Room
	rc.Chat, rc.Sink, rc.OnGone = s, s, s.gone
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	s.rooms = room.NewManager(rc)
	s.wg.Add(1)
	go s.writeEvents()
	return s, nil
}

// SFU is the media server (benchmarks and tests).
func (s *Service) SFU() *sfu.SFU { return s.sfu }

// Rooms is the room manager (tests).
func (s *Service) Rooms() *room.Manager { return s.rooms }

// Close ends every room and stops the SFU; events already queued are written.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.rooms.CloseAll("server shutting down")
	err := s.sfu.Close()
	close(s.events)
	s.wg.Wait()
	return err
}

// OnTransition opens a consultation's room when it goes live and closes it when it leaves
// live (consult.Service.SetOnTransition).
func (s *Service) OnTransition(id int64, from, to consult.State) {
	switch {
	case to == consult.Live:
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := s.cons.Get(ctx, id); err == nil {
			s.openRoom(ctx, c)
		} else {
			s.log.Warn("live: opening the room", "consultation", id, "err", err)
		}
	case from == consult.Live:
		s.rooms.Close(id, "the consultation is no longer live ("+string(to)+")")
		s.sfu.CloseRoom(id)
	}
}

// openRoom returns the consultation's room, opening it on the first image of its first
// study that has one.
func (s *Service) openRoom(ctx context.Context, c *consult.Consultation) *room.Room {
	if r, ok := s.rooms.Get(c.ID); ok {
		return r
	}
	return s.rooms.OpenAt(c.ID, s.firstImage(ctx, c))
}

func (s *Service) firstImage(ctx context.Context, c *consult.Consultation) protocol.ImageRef {
	if s.cfg.FirstImage == nil {
		return protocol.ImageRef{}
	}
	for _, study := range c.StudyUIDs {
		series, instance, err := s.cfg.FirstImage(ctx, study)
		if err == nil {
			return protocol.ImageRef{Study: study, Series: series, Instance: instance}
		}
		s.log.Debug("live: no image to open", "consultation", c.ID, "study", study, "err", err)
	}
	return protocol.ImageRef{}
}

// Routes are the live routes: the websocket and WHIP ingest.
func (s *Service) Routes() []auth.Route {
	cons := auth.ConsultationParam("id")
	return []auth.Route{
		{Pattern: "GET /api/consultations/{id}/live", Action: auth.ActConsultRead, Object: cons, Handler: http.HandlerFunc(s.serveLive)},
		{Pattern: "POST /api/consultations/{id}/whip", Action: auth.ActConsultRead, Object: cons, Handler: http.HandlerFunc(s.whipPost)},
		{Pattern: "DELETE /api/consultations/{id}/whip/{peer}", Action: auth.ActConsultRead, Object: cons, Handler: http.HandlerFunc(s.whipDelete)},
		{Pattern: "OPTIONS /api/consultations/{id}/whip", Action: auth.ActPublic, Handler: http.HandlerFunc(whipOptions)},
		// The browser's check before a call: can it reach the SFU, directly or through TURN?
		{Pattern: "GET /api/ice-servers", Action: auth.ActSelf, Handler: http.HandlerFunc(s.serveICEServers)},
	}
}

// iceServers are what a client's peer connections may use, as the welcome gives them: TURN
// on each configured transport, with credentials valid an hour and issued to who.
func (s *Service) iceServers(who string) []protocol.ICEServer {
	servers := []protocol.ICEServer{}
	if s.cfg.TURN != nil {
		servers = append(servers, s.cfg.TURN.Credentials(who))
	}
	return servers
}

// ICEServersAnswer is the body of GET /api/ice-servers.
type ICEServersAnswer struct {
	ICEServers []protocol.ICEServer `json:"iceServers"`
}

// serveICEServers answers the ICE servers of a pre-call check, with TURN credentials issued
// to the caller: "user-ID" or "token-ID", never a name, since TURN over UDP and TCP carries
// the username in clear.
func (s *Service) serveICEServers(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	who := fmt.Sprintf("user-%d", p.UserID)
	if p.Method == "token" {
		who = fmt.Sprintf("token-%d", p.TokenID)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // credentials
	json.NewEncoder(w).Encode(ICEServersAnswer{ICEServers: s.iceServers(who)})
}

// liveConsultation returns the consultation if it is live; else it answers 409.
func (s *Service) liveConsultation(w http.ResponseWriter, r *http.Request) (*consult.Consultation, bool) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	c, err := s.cons.Get(r.Context(), id)
	if err != nil {
		auth.WriteProblem(w, http.StatusNotFound, "not found")
		return nil, false
	}
	if c.State != consult.Live {
		auth.WriteProblem(w, http.StatusConflict, fmt.Sprintf("the consultation is %s, not live: its room is closed", c.State))
		return nil, false
	}
	return c, true
}

// info describes the caller to the room.
func info(p *auth.Principal, c *consult.Consultation, r *http.Request) room.Info {
	role := auth.RoleClinic
	switch {
	case p.HasRole(auth.RoleDoctor) && (c.AssignedDoctorID == p.UserID || c.TargetInstitutionID == p.InstitutionID):
		role = auth.RoleDoctor
	case p.HasRole(auth.RoleAdmin) && !p.HasRole(auth.RoleClinic):
		role = auth.RoleAdmin
	case p.HasRole(auth.RoleDoctor) && !p.HasRole(auth.RoleClinic):
		role = auth.RoleDoctor
	}
	name := p.DisplayName
	if name == "" {
		name = p.Username
	}
	assigned := p.UserID != 0 && c.AssignedDoctorID == p.UserID
	return room.Info{UserID: p.UserID, Username: p.Username, Name: name, Role: role, Institution: p.InstitutionCode,
		IP: auth.ClientIP(r), UserAgent: r.UserAgent(), DefaultDriver: assigned, CanTake: assigned || p.HasRole(auth.RoleAdmin)}
}

// checkOrigin refuses a cross-site websocket carrying a session cookie: browsers send cookies
// on websocket handshakes from any site, and the handshake is not subject to CORS.
func (s *Service) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser (stations, the Go participant): authenticated by token
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.Contains(s.cfg.AllowedOrigins, origin)
}

// Connection timing: pings keep NAT bindings open on 4G and find dead peers.
const (
	helloTimeout = 10 * time.Second
	pingEvery    = 10 * time.Second
	readTimeout  = 30 * time.Second // no frame, not even a pong, for this long: the peer is gone
	writeTimeout = 10 * time.Second
	maxBadInARow = 3
)

func (s *Service) serveLive(w http.ResponseWriter, r *http.Request) {
	c, ok := s.liveConsultation(w, r)
	if !ok {
		return
	}
	p, _ := auth.FromContext(r.Context())
	up := websocket.Upgrader{CheckOrigin: s.checkOrigin, ReadBufferSize: 4096, WriteBufferSize: 16384}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	defer conn.Close()
	conn.SetReadLimit(protocol.MaxMessageBytes)
	conn.SetReadDeadline(time.Now().Add(helloTimeout))
	var first protocol.Message
	var hello protocol.Hello
	if err := conn.ReadJSON(&first); err != nil || first.Type != protocol.TypeHello || protocol.Decode(first.Data, &hello) != nil || hello.Protocol != protocol.Version {
		closeWith(conn, websocket.ClosePolicyViolation, fmt.Sprintf("the first message must be hello with protocol %d", protocol.Version))
		return
	}
	in := info(p, c, r)
	in.Client = truncate(hello.Client, 200)
	rm := s.openRoom(r.Context(), c)
	member, welcome, err := rm.Join(r.Context(), in, hello.Resume)
	if errors.Is(err, room.ErrResume) {
		member, welcome, err = rm.Join(r.Context(), in, "") // an expired resume joins afresh
	}
	if err != nil {
		closeWith(conn, websocket.CloseTryAgainLater, "cannot join: "+err.Error())
		return
	}
	// The connection's direct queue exists before the SFU can make an offer: a subscriber
	// joining a room with publishers is offered their tracks at once, and an offer sent with
	// nowhere to go was lost. What is queued goes out after the welcome.
	direct := make(chan []byte, 256)
	se, fresh, err := s.attach(c, member, in, welcome.Resumed && hello.KeepMedia, direct)
	if err != nil {
		s.log.Error("live: connecting media failed", "consultation", c.ID, "err", err)
		member.Leave()
		closeWith(conn, websocket.CloseInternalServerErr, "media unavailable")
		return
	}
	if fresh && welcome.Resumed {
		member.SetQuality("") // new peer connections: not measured yet
	}
	welcome.ICEServers = s.iceServers(member.ID())
	b, err := protocol.Encode(protocol.TypeWelcome, first.ID, welcome)
	if err != nil {
		member.Leave()
		return
	}
	done := make(chan closing, 1)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop(conn, b, member.Outbox(), direct, done)
	}()
	left, why := s.readLoop(conn, se)
	// The writer closes the connection first (flushing what explains the close); only then
	// does the room hear of the drop, which closes the member's outbox.
	done <- why
	<-writerDone
	se.mu.Lock()
	if se.out == direct {
		se.out = nil
	}
	se.mu.Unlock()
	if !left {
		member.Disconnected()
	}
}

// closing is how the reader asks the writer to end the connection: after the frames already
// queued (the errors that explain the close), a close frame with code and text.
type closing struct {
	code int
	text string
}

// readLoop handles the client's messages until the connection ends; it reports whether the
// client left for good, and the close frame to send (code 0: the connection is already gone).
func (s *Service) readLoop(conn *websocket.Conn, se *session) (left bool, c closing) {
	conn.SetReadDeadline(time.Now().Add(readTimeout))
	conn.SetPongHandler(func(string) error { conn.SetReadDeadline(time.Now().Add(readTimeout)); return nil })
	bad := 0
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return false, closing{}
		}
		conn.SetReadDeadline(time.Now().Add(readTimeout))
		var msg protocol.Message
		if err := json.Unmarshal(data, &msg); err != nil || msg.Type == "" {
			bad++
			se.sendError(protocol.ErrBadMessage, "not a protocol message", 0)
			if bad >= maxBadInARow {
				return false, closing{websocket.ClosePolicyViolation, "too many malformed messages"}
			}
			continue
		}
		switch msg.Type {
		case protocol.TypeLeave:
			se.member.Leave()
			return true, closing{websocket.CloseNormalClosure, "left"}
		case protocol.TypeHello:
			err = &room.ProtocolError{Code: protocol.ErrBadMessage, Message: "hello was already sent"}
			se.sendError(protocol.ErrBadMessage, err.Error(), msg.ID)
		case protocol.TypeSignal:
			var sig protocol.Signal
			if err = protocol.Decode(msg.Data, &sig); err != nil {
				err = &room.ProtocolError{Code: protocol.ErrBadMessage, Message: "signal: " + err.Error()}
				se.sendError(protocol.ErrBadMessage, err.Error(), msg.ID)
				break
			}
			if err = se.signal(sig); err != nil {
				se.sendError(protocol.ErrInvalid, "signal: "+err.Error(), msg.ID)
				err = nil // a refused SDP is not a malformed message
			}
		default:
			err = se.member.Handle(msg)
		}
		var pe *room.ProtocolError
		if errors.As(err, &pe) && pe.Code == protocol.ErrBadMessage {
			bad++
			if bad >= maxBadInARow {
				return false, closing{websocket.ClosePolicyViolation, "too many malformed messages"}
			}
		} else {
			bad = 0
		}
	}
}

func (se *session) sendError(code, message string, ref uint64) {
	if b, err := protocol.Encode(protocol.TypeError, 0, protocol.Error{Code: code, Message: message, Ref: ref}); err == nil {
		se.sendDirect(b)
	}
}

func (se *session) signal(sig protocol.Signal) error {
	se.mu.Lock()
	peer := se.peer
	se.mu.Unlock()
	if peer == nil {
		return errors.New("no media session")
	}
	if sig.PC != protocol.PCPublish && sig.PC != protocol.PCSubscribe {
		return fmt.Errorf("pc must be %q or %q", protocol.PCPublish, protocol.PCSubscribe)
	}
	return peer.Signal(sig)
}

// writeLoop writes the welcome, then room messages and direct frames in arrival order, and
// pings; it ends when the member's outbox closes (left, kicked, replaced) or done closes.
func (s *Service) writeLoop(conn *websocket.Conn, welcome []byte, outbox <-chan []byte, direct <-chan []byte, done <-chan closing) {
	write := func(b []byte) bool {
		conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		return conn.WriteMessage(websocket.TextMessage, b) == nil
	}
	if !write(welcome) {
		conn.Close()
		return
	}
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	for {
		select {
		case b, ok := <-outbox:
			if !ok {
				closeWith(conn, websocket.CloseNormalClosure, "")
				return
			}
			if !write(b) {
				conn.Close()
				return
			}
		case b := <-direct:
			if !write(b) {
				conn.Close()
				return
			}
		case <-ping.C:
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)) != nil {
				conn.Close()
				return
			}
		case c := <-done:
			if c.code == 0 {
				conn.Close()
				return
			}
			// What is queued already (the errors that explain the close) goes first.
			for drained := false; !drained; {
				select {
				case b := <-direct:
					if !write(b) {
						conn.Close()
						return
					}
				case b, ok := <-outbox:
					if ok && !write(b) {
						conn.Close()
						return
					}
					if !ok {
						outbox = nil
					}
				default:
					drained = true
				}
			}
			closeWith(conn, c.code, c.text)
			return
		}
	}
}

func closeWith(conn *websocket.Conn, code int, text string) {
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, truncate(text, 120)), time.Now().Add(time.Second))
	conn.Close()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// attach finds or makes the participant's session and its SFU peer. keepMedia keeps the peer
// of a resumed participant; otherwise a fresh one replaces it (fresh).
func (s *Service) attach(c *consult.Consultation, member *room.Member, in room.Info, keepMedia bool, out chan []byte) (se *session, fresh bool, err error) {
	key := sessionKey{c.ID, member.ID()}
	s.mu.Lock()
	se, ok := s.sessions[key]
	if !ok {
		se = &session{key: key}
		s.sessions[key] = se
	}
	se.member, se.info = member, in
	s.mu.Unlock()
	se.mu.Lock()
	defer se.mu.Unlock()
	se.out = out
	if se.peer != nil && keepMedia {
		return se, false, nil
	}
	if se.peer != nil {
		se.peer.Close()
		se.peer = nil
	}
	peer, err := s.sfu.Join(c.ID, member.ID(), func(sig protocol.Signal) {
		if b, err := protocol.Encode(protocol.TypeSignal, 0, sig); err == nil {
			se.sendDirect(b)
		}
	}, sfu.PeerOptions{Record: c.RecordingConsent})
	if err != nil {
		return nil, false, err
	}
	se.peer = peer
	return se, true, nil
}

// gone is the room telling that a participant left for good: its media ends.
func (s *Service) gone(consultation int64, participant string) {
	key := sessionKey{consultation, participant}
	s.mu.Lock()
	se := s.sessions[key]
	delete(s.sessions, key)
	s.mu.Unlock()
	if se == nil {
		return
	}
	se.mu.Lock()
	peer := se.peer
	se.peer, se.out = nil, nil
	se.mu.Unlock()
	if peer != nil {
		peer.Close()
	}
}

func (s *Service) session(consultation int64, participant string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sessionKey{consultation, participant}]
}

// sfuEvent takes the SFU's news to the room (tracks, connection type) and the session log.
func (s *Service) sfuEvent(e sfu.Event) {
	se := s.session(e.Room, e.Peer)
	switch e.Kind {
	case "tracks":
		if se != nil {
			se.member.SetTracks(e.Tracks)
		}
	case "connection":
		if se != nil {
			se.member.SetConnection(e.Connection)
		}
	case sfu.EventLevel:
		if se != nil {
			se.member.SetQuality(e.Detail)
		}
	case "quality":
		if e.Quality != nil {
			name := ""
			if se != nil {
				name = se.info.Username
			}
			s.queue(auditEvent{quality: &qualitySample{consultation: e.Room, participant: e.Peer, username: name, q: *e.Quality, source: "server"}})
		}
	case "recording":
		ev := room.Event{Consultation: e.Room, Participant: e.Peer, Action: "live.recording", Detail: e.File + " " + e.Detail, Time: time.Now()}
		if se != nil {
			ev.Username = se.info.Username
		}
		s.roomEvent(ev, e.Start)
	case "state":
		if e.Detail == "failed" {
			s.log.Warn("live: media connection failed", "consultation", e.Room, "participant", e.Peer)
		}
	}
}
