// Package live is a Go participant of a live consultation room. It speaks the protocol of
// package protocol over the room's websocket, publishes video and audio files on its "pub"
// peer connection as a station's camera and microphone would, receives the room's media on
// its "sub" peer connection, counts what arrives, and keeps a copy of the shared view.
// The station program's join command and its load generator are built on it.
package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

// Config says where to join and what to publish.
type Config struct {
	URL    string      // ws(s)://host/api/consultations/ID/live
	Header http.Header // Cookie or Authorization

	// Files to publish, "" for none: .ivf (VP8) or .h264 (Annex B) video, .ogg (Opus) audio.
	// Each is looped forever, paced in real time by its timestamps (IVF frame headers, 15 fps
	// for H.264, Ogg granule positions), from the moment the pub connection is up.
	//
	// A live video source instead, e.g. a capture card through ffmpeg: "-" reads IVF (VP8)
	// from Stdin, "h264:-" H.264 Annex B; a named pipe (FIFO) is read as it comes too, its
	// format from its extension or an "ivf:" or "h264:" prefix. Frames are sent as they
	// arrive, from the first keyframe once the pub connection is up; the source must make
	// keyframes regularly (ffmpeg -g), as it cannot be asked for one. Its end ends the track.
	Video, Audio string
	Imaging      string    // a second video, published with the label "imaging"
	Stdin        io.Reader // what "-" reads (nil: os.Stdin)

	Net          transport.Net        // nil: the real network; a vnet.Net in tests
	NetworkTypes []webrtc.NetworkType // nil: pion's default (UDP and TCP, IPv4 and IPv6)
	Dialer       *websocket.Dialer    // nil: websocket.DefaultDialer

	Logger *slog.Logger // nil: no logs
	Name   string       // describes this client in hello (the server's session log)

	// Reconnect redials after the websocket drops (backoff 250 ms to 5 s) and resumes the
	// same participant while within the server's grace period, until Close.
	Reconnect bool
}

var (
	// ErrClosed is returned by methods of a participant that has stopped.
	ErrClosed = errors.New("live: participant stopped")
	// ErrDisconnected is returned by sends while the websocket is down (reconnecting).
	ErrDisconnected = errors.New("live: not connected")
)

// DialError is a websocket connection that failed; StatusCode is the server's HTTP answer to
// the upgrade request (401, 403, 404, ...) or 0 when there was none.
type DialError struct {
	StatusCode int
	Err        error
}

func (e *DialError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("live: websocket refused (HTTP %d): %v", e.StatusCode, e.Err)
	}
	return fmt.Sprintf("live: websocket: %v", e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// ServerError is the server's error message answering hello.
type ServerError struct{ Err protocol.Error }

func (e *ServerError) Error() string {
	return fmt.Sprintf("live: server refused: %s: %s", e.Err.Code, e.Err.Message)
}

// ByeError says the server ended this participant (Err after a bye).
type ByeError struct{ Reason string }

func (e *ByeError) Error() string { return "live: server said bye: " + e.Reason }

const (
	helloTimeout   = 15 * time.Second
	writeTimeout   = 10 * time.Second
	pingEvery      = 10 * time.Second
	readTimeout    = 3 * pingEvery // the server answers every ping, so silence this long is a dead link
	readLimit      = 16 << 20      // welcome carries the chat history: far more than a client may send
	backoffMin     = 250 * time.Millisecond
	backoffMax     = 5 * time.Second
	channelBuffer  = 256
	latencySamples = 10000 // kept per kind; older ones are dropped
)

// Participant is one joined participant. Its methods are safe for concurrent use.
type Participant struct {
	cfg    Config
	log    *slog.Logger
	api    *webrtc.API
	joined time.Time     // when Join was called: first-frame times count from here
	local  []*localTrack // published files

	ctx       context.Context // ends when the participant stops
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	nextID    atomic.Uint64
	ops       chan protocol.OpApplied
	events    chan protocol.Message
	pubUp     chan struct{} // closed when pub first connects: the files start playing
	pubUpOnce sync.Once
	done      chan struct{}

	mu          sync.Mutex
	stopped     bool
	err         error
	id          string
	resumeToken string
	grace       time.Duration
	iceServers  []webrtc.ICEServer
	ws          *wsConn // nil while reconnecting
	pub, sub    *peer   // pub is nil when there is nothing to publish
	subTracks   map[string]protocol.Track
	seq         uint64
	state       protocol.ViewState
	tracks      map[trackKey]*remoteTrack
	frameCh     chan struct{} // closed and replaced whenever a video frame arrives
	joinTime    time.Duration
	reconnects  int
	ownLatency  []time.Duration
	latency     []time.Duration
}

// Join connects to the room, says hello, and returns once the server has welcomed this
// participant; publishing and receiving go on in the background until Close. ctx bounds the
// joining only, like net.Dialer.DialContext: once joined, its end does not stop anything.
func Join(ctx context.Context, cfg Config) (*Participant, error) {
	start := time.Now()
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("live: URL %q is not ws:// or wss://", cfg.URL)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var sources []*source
	joined := false
	defer func() {
		for _, s := range sources {
			if s.closer != nil && !joined {
				s.closer.Close() // a named pipe opened for a join that failed
			}
		}
	}()
	stdins := 0
	for _, p := range []string{cfg.Video, cfg.Audio, cfg.Imaging} {
		if p, _, ok := liveSource(p); ok && p == "-" {
			stdins++
		}
	}
	if stdins > 1 {
		return nil, errors.New("live: only one source can read standard input")
	}
	for _, f := range []struct{ path, label string }{
		{cfg.Video, protocol.LabelCamera}, {cfg.Audio, protocol.LabelMicrophone}, {cfg.Imaging, protocol.LabelImaging},
	} {
		if f.path == "" {
			continue
		}
		s, err := openSource(f.path, f.label, cfg.Stdin)
		if err != nil {
			return nil, err
		}
		sources = append(sources, s)
	}
	api, err := newAPI(cfg, log, isLoopback(u.Hostname()))
	if err != nil {
		return nil, err
	}

	p := &Participant{
		cfg:     cfg,
		log:     log,
		api:     api,
		joined:  start,
		ops:     make(chan protocol.OpApplied, channelBuffer),
		events:  make(chan protocol.Message, channelBuffer),
		pubUp:   make(chan struct{}),
		done:    make(chan struct{}),
		tracks:  map[trackKey]*remoteTrack{},
		frameCh: make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	ws, welcome, raw, err := p.dial(ctx, "")
	if err != nil {
		p.cancel()
		return nil, err
	}
	p.mu.Lock()
	p.joinTime = time.Since(start)
	p.welcomed(welcome)
	p.mu.Unlock()
	for _, s := range sources {
		lt, err := newLocalTrack(s, welcome.Participant)
		if err != nil {
			ws.close()
			p.cancel()
			return nil, err
		}
		p.local = append(p.local, lt)
	}
	if err := p.connectPeers(); err != nil {
		ws.close()
		p.stop(err)
		return nil, err
	}
	p.mu.Lock()
	p.ws = ws
	p.mu.Unlock()
	p.push(raw)

	p.wg.Add(2)
	go p.run(ws)
	go p.watch()
	for _, lt := range p.local {
		p.wg.Add(1)
		go p.play(lt)
	}
	joined = true
	return p, nil
}

// ID is this participant's ID in the room (the same after a resume).
func (p *Participant) ID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.id
}

// SendOp sends a view operation, stamped with the time it was sent, and returns its request
// ID (an error from the server names it as Ref). The op takes effect when the server's
// op.applied for it arrives.
func (p *Participant) SendOp(op protocol.Op) (uint64, error) {
	if err := op.Validate(); err != nil {
		return 0, fmt.Errorf("live: %w", err)
	}
	op.Sent = time.Now().UnixMilli()
	return p.send(protocol.TypeOp, op)
}

// Chat sends a chat message.
func (p *Participant) Chat(text string) error {
	_, err := p.send(protocol.TypeChat, protocol.ChatSend{Text: text})
	return err
}

// ReportQuality sends the participant's own figures for its connection; the server keeps them
// as the session log's quality samples.
func (p *Participant) ReportQuality(q protocol.Quality) error {
	_, err := p.send(protocol.TypeQuality, q)
	return err
}

// Control asks for, gives, releases or takes the driver's seat.
func (p *Participant) Control(c protocol.Control) error {
	_, err := p.send(protocol.TypeControl, c)
	return err
}

// View is the local copy of the room's view: the last snapshot with every op.applied since,
// in order. seq is the last op applied.
func (p *Participant) View() (seq uint64, state protocol.ViewState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq, cloneState(p.state)
}

// Ops delivers every op.applied as it arrives. It holds the last 256: a reader that falls
// further behind loses the oldest (View stays exact). Closed when the participant stops.
func (p *Participant) Ops() <-chan protocol.OpApplied { return p.ops }

// Events delivers every other message from the server (welcome, including those of
// resumes, snapshot, participant, control.state, chat.message, error, bye), buffered like
// Ops: the oldest go first when the reader falls behind. Closed when the participant stops.
func (p *Participant) Events() <-chan protocol.Message { return p.events }

// Done is closed when the participant has stopped: Close, a bye, or a lost connection
// without Reconnect (or one the server refuses to take back).
func (p *Participant) Done() <-chan struct{} { return p.done }

// Err says why the participant stopped: nil after Close, *ByeError after a bye, or the
// connection error. It is nil while the participant runs.
func (p *Participant) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close leaves the room for good (no grace period), closes the peer connections and the
// websocket, and waits for the participant's goroutines.
func (p *Participant) Close() error {
	p.send(protocol.TypeLeave, nil) //nolint:errcheck // best effort: the server times out a silent participant anyway
	p.stop(nil)
	p.wg.Wait()
	return nil
}

// stop ends the participant once; err is what Err reports.
func (p *Participant) stop(err error) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.err = err
	ws, pub, sub := p.ws, p.pub, p.sub
	p.ws = nil
	p.mu.Unlock()
	p.cancel()
	if ws != nil {
		ws.close()
	}
	for _, pe := range []*peer{pub, sub} {
		if pe != nil {
			pe.close()
		}
	}
	close(p.done)
}

// send encodes and sends one message with a fresh request ID.
func (p *Participant) send(t string, data any) (uint64, error) {
	id := p.nextID.Add(1)
	b, err := protocol.Encode(t, id, data)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	ws, stopped := p.ws, p.stopped
	p.mu.Unlock()
	switch {
	case stopped:
		return 0, ErrClosed
	case ws == nil:
		return 0, ErrDisconnected
	}
	if err := ws.write(b); err != nil {
		ws.close() // the reader sees it and reconnects
		return 0, fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	return id, nil
}

// push hands a message to a reader channel, dropping the oldest queued one when it is full.
// Only the connection goroutine calls it, so nothing else fills the channel meanwhile.
func push[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

func (p *Participant) push(m protocol.Message) { push(p.events, m) }

// welcomed takes in a welcome (p.mu held).
func (p *Participant) welcomed(w protocol.Welcome) {
	p.id = w.Participant
	p.resumeToken = w.ResumeToken
	p.grace = time.Duration(w.GraceSeconds) * time.Second
	p.iceServers = nil // a new slice: peers may hold the old one
	for _, s := range w.ICEServers {
		is := webrtc.ICEServer{URLs: s.URLs, Username: s.Username}
		if s.Credential != "" {
			is.Credential = s.Credential
		}
		p.iceServers = append(p.iceServers, is)
	}
	p.seq = w.Snapshot.Seq
	p.state = cloneState(w.Snapshot.State)
}

// wsConn is one websocket connection; gorilla allows one writer at a time.
type wsConn struct {
	c    *websocket.Conn
	mu   sync.Mutex
	once sync.Once
	done chan struct{}
}

func (w *wsConn) write(b []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	return w.c.WriteMessage(websocket.TextMessage, b)
}

func (w *wsConn) close() {
	w.once.Do(func() {
		close(w.done)
		w.c.Close()
	})
}

// dial opens a websocket and says hello (resuming with the token unless it is empty); it
// returns once the welcome is in.
func (p *Participant) dial(ctx context.Context, resume string) (*wsConn, protocol.Welcome, protocol.Message, error) {
	var w protocol.Welcome
	d := p.cfg.Dialer
	if d == nil {
		d = websocket.DefaultDialer
	}
	c, resp, err := d.DialContext(ctx, p.cfg.URL, p.cfg.Header)
	if err != nil {
		e := &DialError{Err: err}
		if resp != nil {
			e.StatusCode = resp.StatusCode
		}
		return nil, w, protocol.Message{}, e
	}
	c.SetReadLimit(readLimit)
	ws := &wsConn{c: c, done: make(chan struct{})}
	fail := func(err error) (*wsConn, protocol.Welcome, protocol.Message, error) {
		ws.close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, w, protocol.Message{}, err
	}
	stop := context.AfterFunc(ctx, ws.close)
	defer stop()

	client := "sanping-live/1"
	if p.cfg.Name != "" {
		client += " (" + p.cfg.Name + ")"
	}
	// On a resume the peer connections are still here (only the websocket went): ask the
	// server to keep its side of them.
	p.mu.Lock()
	keep := resume != "" && (p.pub != nil || p.sub != nil)
	p.mu.Unlock()
	b, err := protocol.Encode(protocol.TypeHello, p.nextID.Add(1), protocol.Hello{Protocol: protocol.Version, Resume: resume, Client: client, KeepMedia: keep})
	if err != nil {
		return fail(err)
	}
	if err := ws.write(b); err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(helloTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return fail(err)
	}
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return fail(fmt.Errorf("live: waiting for welcome: %w", err))
		}
		var m protocol.Message
		if err := json.Unmarshal(b, &m); err != nil {
			return fail(fmt.Errorf("live: waiting for welcome: %w", err))
		}
		switch m.Type {
		case protocol.TypeWelcome:
			if err := json.Unmarshal(m.Data, &w); err != nil {
				return fail(fmt.Errorf("live: bad welcome: %w", err))
			}
			if w.Participant == "" {
				return fail(errors.New("live: welcome without a participant ID"))
			}
			return ws, w, m, nil
		case protocol.TypeError:
			var e protocol.Error
			json.Unmarshal(m.Data, &e) //nolint:errcheck // an undecodable error is still a refusal
			return fail(&ServerError{e})
		case protocol.TypeBye:
			var bye protocol.Bye
			json.Unmarshal(m.Data, &bye) //nolint:errcheck // the reason is informative only
			return fail(&ByeError{bye.Reason})
		}
		// Anything else before the welcome belongs to no state yet: skip it.
	}
}

// run reads the websocket, and after a drop reconnects (Config.Reconnect) or stops. It is
// the only writer of the Ops and Events channels, and closes them when it ends.
func (p *Participant) run(ws *wsConn) {
	defer p.wg.Done()
	defer close(p.events)
	defer close(p.ops)
	for {
		err := p.read(ws)
		ws.close()
		p.mu.Lock()
		if p.ws == ws {
			p.ws = nil
		}
		p.mu.Unlock()
		if p.ctx.Err() != nil {
			return
		}
		var bye *ByeError
		if errors.As(err, &bye) || !p.cfg.Reconnect {
			p.stop(err)
			return
		}
		p.log.Info("live: connection lost, reconnecting", "err", err)
		if ws = p.reconnect(); ws == nil {
			return
		}
	}
}

// read handles messages until the connection fails or the server says bye.
func (p *Participant) read(ws *wsConn) error {
	p.wg.Add(1)
	go p.ping(ws)
	for {
		if err := ws.c.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
			return err
		}
		_, b, err := ws.c.ReadMessage()
		if err != nil {
			return err
		}
		var m protocol.Message
		if err := json.Unmarshal(b, &m); err != nil {
			p.log.Warn("live: undecodable message", "err", err)
			continue
		}
		if err := p.handle(m); err != nil {
			return err
		}
	}
}

// ping keeps traffic on the connection so that a dead link shows as a read timeout.
func (p *Participant) ping(ws *wsConn) {
	defer p.wg.Done()
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ws.done:
			return
		case <-t.C:
			b, _ := protocol.Encode(protocol.TypePing, p.nextID.Add(1), nil)
			if err := ws.write(b); err != nil {
				ws.close()
				return
			}
		}
	}
}

// handle acts on one message from the server. Server messages are decoded leniently, so that
// fields added by a newer server do not break this client.
func (p *Participant) handle(m protocol.Message) error {
	switch m.Type {
	case protocol.TypeSignal:
		var s protocol.Signal
		if err := json.Unmarshal(m.Data, &s); err != nil {
			p.log.Warn("live: bad signal", "err", err)
			return nil
		}
		p.signal(s)
	case protocol.TypeOpApplied:
		var a protocol.OpApplied
		if err := json.Unmarshal(m.Data, &a); err != nil {
			p.log.Warn("live: bad op.applied", "err", err)
			return nil
		}
		return p.applied(a)
	case protocol.TypeSnapshot:
		var s protocol.Snapshot
		if err := json.Unmarshal(m.Data, &s); err != nil {
			p.log.Warn("live: bad snapshot", "err", err)
			return nil
		}
		p.mu.Lock()
		p.seq, p.state = s.Seq, cloneState(s.State)
		p.mu.Unlock()
		p.push(m)
	case protocol.TypePong:
	case protocol.TypeBye:
		var bye protocol.Bye
		json.Unmarshal(m.Data, &bye) //nolint:errcheck // the reason is informative only
		p.push(m)
		return &ByeError{bye.Reason}
	default:
		p.push(m)
	}
	return nil
}

// errGap ends a connection whose op.applied sequence skipped: resuming brings a snapshot.
var errGap = errors.New("live: gap in op.applied sequence")

// applied applies one op.applied to the local view.
func (p *Participant) applied(a protocol.OpApplied) error {
	now := time.Now()
	p.mu.Lock()
	if a.Seq <= p.seq {
		p.mu.Unlock()
		return nil // already in the snapshot
	}
	if a.Seq != p.seq+1 && p.cfg.Reconnect {
		p.mu.Unlock()
		return fmt.Errorf("%w: have %d, got %d", errGap, p.seq, a.Seq)
	}
	ApplyOp(&p.state, a)
	p.seq = a.Seq
	if a.Op.Sent != 0 {
		d := now.Sub(time.UnixMilli(a.Op.Sent))
		if a.By == p.id {
			p.ownLatency = appendSample(p.ownLatency, d)
		} else {
			p.latency = appendSample(p.latency, d)
		}
	}
	p.mu.Unlock()
	push(p.ops, a)
	return nil
}

func appendSample(s []time.Duration, d time.Duration) []time.Duration {
	if len(s) >= latencySamples {
		s = append(s[:0], s[len(s)/2:]...)
	}
	return append(s, d)
}

// reconnect dials until it gets a welcome, resuming while the grace period lasts. It returns
// nil when the participant stopped meanwhile.
func (p *Participant) reconnect() *wsConn {
	lost := time.Now()
	delay := backoffMin
	for {
		t := time.NewTimer(delay)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		p.mu.Lock()
		token := p.resumeToken
		if time.Since(lost) >= p.grace {
			token = ""
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(p.ctx, helloTimeout)
		ws, w, raw, err := p.dial(ctx, token)
		cancel()
		if err == nil {
			if err := p.resumed(ws, w, raw); err != nil {
				ws.close()
				p.stop(err)
				return nil
			}
			return ws
		}
		if p.ctx.Err() != nil {
			return nil
		}
		var de *DialError
		if errors.As(err, &de) && (de.StatusCode == http.StatusUnauthorized || de.StatusCode == http.StatusForbidden || de.StatusCode == http.StatusNotFound) {
			p.stop(err) // the session or the room is gone: retrying cannot help
			return nil
		}
		var se *ServerError
		if errors.As(err, &se) && token != "" {
			p.mu.Lock()
			p.resumeToken = "" // refused to resume: join afresh next time
			p.mu.Unlock()
		}
		p.log.Info("live: reconnecting failed", "err", err, "retry", delay)
		delay = min(2*delay, backoffMax)
	}
}

// resumed takes in the welcome after a reconnect. If the server kept this participant, the
// peer connections carry on; otherwise they are built again and the files published anew.
func (p *Participant) resumed(ws *wsConn, w protocol.Welcome, raw protocol.Message) error {
	p.mu.Lock()
	kept := w.Resumed && w.Participant == p.id
	p.reconnects++
	p.welcomed(w)
	p.ws = ws
	pub, sub, servers := p.pub, p.sub, p.iceServers
	p.mu.Unlock()
	p.push(raw)
	if !kept {
		p.log.Info("live: rejoined as a new participant", "participant", w.Participant)
		for _, pe := range []*peer{pub, sub} {
			if pe != nil {
				pe.close()
			}
		}
		return p.connectPeers()
	}
	for _, pe := range []*peer{pub, sub} {
		if pe == nil {
			continue
		}
		// Fresh TURN credentials for the next ICE restart.
		c := pe.pc.GetConfiguration()
		c.ICEServers = servers
		if err := pe.pc.SetConfiguration(c); err != nil {
			p.log.Debug("live: updating ICE servers", "pc", pe.role, "err", err)
		}
	}
	if pub != nil {
		pub.do(func() { p.resendOffer(pub) })
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
