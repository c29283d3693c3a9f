// Package sfu forwards a consultation's media between its participants. Every participant
// publishes once on its "pub" peer connection (it offers, the SFU answers) and receives every
// other participant's tracks on its "sub" peer connection (the SFU offers, again whenever the
// set of forwarded tracks changes). Signaling is the caller's: Signals go in through
// Peer.Signal and come out through the send function given to Join.
//
// Per subscriber, a GCC estimate (from TWCC feedback) picks which simulcast layer of each
// video track to forward; down-tracks rewrite SSRC, sequence numbers and timestamps so a
// layer switch looks like one continuous stream.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/internal/pionlog"
	"github.com/sanping/sanping/protocol"
)

// Errors.
var (
	ErrClosed     = errors.New("sfu: closed")
	ErrPeerExists = errors.New("sfu: participant already in the room")
	ErrBadSignal  = errors.New("sfu: bad signal")
)

// Config configures an SFU.
type Config struct {
	// UDPAddr, e.g. ":8443": all media of all peers on this one UDP port. "" = an
	// ephemeral port per peer connection.
	UDPAddr string
	// TCPAddr: ICE-TCP (passive) on this one TCP port; "" = no ICE-TCP.
	TCPAddr string
	// PublicIPs are advertised as host candidates, for a server behind 1:1 NAT.
	PublicIPs []string
	// Net replaces the real network (vnet in tests). UDPAddr is then an address on Net (e.g.
	// "10.0.0.1:8443"; "" = a port per peer connection) and TCPAddr is unused.
	Net transport.Net
	// RecordDir is where recordings go: <RecordDir>/<room>/<peer>-<trackID>.ogg|.ivf|.h264.
	RecordDir string
	// QualityInterval is how often a "quality" event comes for each peer (default 5 s).
	QualityInterval time.Duration
	// OnEvent receives events in order, from one goroutine; it must not block for long.
	OnEvent func(Event)
	Logger  *slog.Logger

	// Tests shorten these: how often layers are re-chosen (500 ms) and how long the estimate
	// must allow a higher layer before stepping up (2 s).
	allocEvery, upHold time.Duration
}

// Event kinds.
const (
	EventTracks     = "tracks"     // Tracks: the peer's published set changed
	EventConnection = "connection" // Connection: udp, tcp or relay
	EventQuality    = "quality"    // Quality
	EventLevel      = "level"      // Detail: protocol.QualityGood, QualityWeak or QualityLost, when it changes
	EventRecording  = "recording"  // File, Detail: a recording was finalized
	EventState      = "state"      // PC, Detail: connected, disconnected, failed, closed
)

// Event tells the caller what happened to a peer.
type Event struct {
	Room       int64
	Peer       string
	Kind       string
	Tracks     []protocol.Track
	Connection string
	Quality    *protocol.Quality
	File       string
	Start      time.Time // for "recording": when the file's first frame was written
	Detail     string
	PC         string // for "state": which peer connection (pub or sub)
}

// PeerOptions are a participant's options.
type PeerOptions struct {
	// Record: the consultation has consent; every track this peer publishes is written to
	// RecordDir.
	Record bool
}

// SFU is a selective forwarding unit for many rooms.
type SFU struct {
	cfg      Config
	log      *slog.Logger
	pionLog  pionlog.Factory
	se       webrtc.SettingEngine
	udpConn  net.PacketConn
	udpMux   ice.UDPMux
	udpAddrs []net.Addr // the sockets of a mux on every interface
	tcpLn    net.Listener
	tcpMux   ice.TCPMux
	epoch    time.Time // monotonic base for packet times

	mu     sync.Mutex
	rooms  map[int64]*room
	closed bool

	events eventQueue
	stats  counters
	done   chan struct{}
	wg     sync.WaitGroup
}

type room struct {
	id     int64
	mu     sync.Mutex
	peers  map[string]*Peer
	tracks map[*upTrack]struct{}
}

// New starts an SFU: it opens the shared UDP and TCP ports.
func New(cfg Config) (*SFU, error) {
	if cfg.QualityInterval <= 0 {
		cfg.QualityInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.allocEvery <= 0 {
		cfg.allocEvery = 500 * time.Millisecond
	}
	if cfg.upHold <= 0 {
		cfg.upHold = 2 * time.Second
	}
	s := &SFU{
		cfg:     cfg,
		log:     cfg.Logger,
		pionLog: pionlog.Factory{Log: cfg.Logger},
		epoch:   time.Now(),
		rooms:   map[int64]*room{},
		done:    make(chan struct{}),
	}
	s.events.init()
	if err := s.settingEngine(); err != nil {
		s.closeMuxes()
		return nil, err
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.events.run(cfg.OnEvent, s.done) }()
	go func() { defer s.wg.Done(); s.tick() }()
	return s, nil
}

func (s *SFU) closeMuxes() {
	if s.udpMux != nil {
		_ = s.udpMux.Close()
	}
	if s.udpConn != nil {
		_ = s.udpConn.Close()
	}
	if s.tcpMux != nil {
		_ = s.tcpMux.Close()
	}
	if s.tcpLn != nil {
		_ = s.tcpLn.Close()
	}
}

// Close closes every peer (finalizing recordings), then the shared ports.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var peers []*Peer
	for _, r := range s.rooms {
		r.mu.Lock()
		for _, p := range r.peers {
			peers = append(peers, p)
		}
		r.mu.Unlock()
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(p.Close)
	}
	wg.Wait()
	close(s.done)
	s.wg.Wait()
	s.closeMuxes()
	return nil
}

// nanotime is monotonic nanoseconds since the SFU started.
func (s *SFU) nanotime() int64 { return int64(time.Since(s.epoch)) }

func (s *SFU) emit(e Event) { s.events.push(e) }

// Join adds a participant. send receives the Signals for the client, in order, from a
// goroutine of the peer's own; the first "sub" offer comes as soon as someone else publishes.
func (s *SFU) Join(room int64, peer string, send func(protocol.Signal), opts PeerOptions) (*Peer, error) {
	if send == nil {
		return nil, fmt.Errorf("sfu: Join needs a send function")
	}
	return s.join(room, peer, send, opts, false)
}

func (s *SFU) join(roomID int64, id string, send func(protocol.Signal), opts PeerOptions, whip bool) (*Peer, error) {
	if id == "" {
		return nil, fmt.Errorf("sfu: empty participant ID")
	}
	p, err := s.newPeer(roomID, id, send, opts, whip)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.closePCs()
		return nil, ErrClosed
	}
	r := s.rooms[roomID]
	if r == nil {
		r = &room{id: roomID, peers: map[string]*Peer{}, tracks: map[*upTrack]struct{}{}}
		s.rooms[roomID] = r
	}
	r.mu.Lock()
	if _, ok := r.peers[id]; ok {
		r.mu.Unlock()
		s.mu.Unlock()
		p.closePCs()
		return nil, fmt.Errorf("%w: %s", ErrPeerExists, id)
	}
	p.room = r
	r.peers[id] = p
	existing := make([]*upTrack, 0, len(r.tracks))
	for ut := range r.tracks {
		existing = append(existing, ut)
	}
	r.mu.Unlock()
	s.mu.Unlock()
	p.start()
	for _, ut := range existing {
		p.subscribe(ut)
	}
	return p, nil
}

// Peer finds a participant.
func (s *SFU) Peer(room int64, peer string) (*Peer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[room]
	if r == nil {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[peer]
	return p, ok
}

// CloseRoom closes every peer of a room.
func (s *SFU) CloseRoom(room int64) {
	s.mu.Lock()
	r := s.rooms[room]
	s.mu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	peers := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(p.Close)
	}
	wg.Wait()
}

// leave removes p from its room, and the room once empty.
func (s *SFU) leave(p *Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := p.room
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.peers[p.id] == p {
		delete(r.peers, p.id)
	}
	empty := len(r.peers) == 0
	r.mu.Unlock()
	if empty && s.rooms[r.id] == r {
		delete(s.rooms, r.id)
	}
}

// publish makes ut visible in the room and returns the peers that should subscribe to it.
// Join takes the same lock, so a peer joining meanwhile either is in the list or sees ut.
func (r *room) publish(ut *upTrack) []*Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tracks[ut] = struct{}{}
	var subs []*Peer
	for _, p := range r.peers {
		if p != ut.pub && p.sub != nil {
			subs = append(subs, p)
		}
	}
	return subs
}

func (r *room) unpublish(ut *upTrack) {
	r.mu.Lock()
	delete(r.tracks, ut)
	r.mu.Unlock()
}

func (r *room) peerList() []*Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
	return ps
}

// tick re-chooses layers for every subscriber and sends quality events.
func (s *SFU) tick() {
	t := time.NewTicker(s.cfg.allocEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			rooms := make([]*room, 0, len(s.rooms))
			for _, r := range s.rooms {
				rooms = append(rooms, r)
			}
			s.mu.Unlock()
			for _, r := range rooms {
				peers := r.peerList()
				for _, p := range peers {
					p.updateRates(now)
				}
				for _, p := range peers {
					p.allocate(now)
					p.maybeQuality(now)
					p.checkOffer(now)
				}
			}
		}
	}
}

// eventQueue delivers events in order without making the code that raises them wait.
type eventQueue struct {
	mu   sync.Mutex
	q    []Event
	wake chan struct{}
}

func (e *eventQueue) init() { e.wake = make(chan struct{}, 1) }

func (e *eventQueue) push(ev Event) {
	e.mu.Lock()
	e.q = append(e.q, ev)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *eventQueue) run(fn func(Event), done <-chan struct{}) {
	for {
		stop := false
		select {
		case <-e.wake:
		case <-done:
			stop = true
		}
		e.mu.Lock()
		q := e.q
		e.q = nil
		e.mu.Unlock()
		if fn != nil {
			for _, ev := range q {
				fn(ev)
			}
		}
		if stop {
			return
		}
	}
}

// counters are the SFU-wide statistics.
type counters struct {
	packetsIn, bytesIn               atomic.Int64
	packetsForwarded, bytesForwarded atomic.Int64
	dropped                          atomic.Int64
	keyframeRequests                 atomic.Int64
	nacksReceived, nacksSent         atomic.Int64
	retransmits                      atomic.Int64
	layerUp, layerDown, pauses       atomic.Int64
	switchesMu                       sync.Mutex
	switchesTo                       map[string]int64
}

func (c *counters) switched(rid string, up bool) {
	if up {
		c.layerUp.Add(1)
	} else {
		c.layerDown.Add(1)
	}
	c.switchesMu.Lock()
	if c.switchesTo == nil {
		c.switchesTo = map[string]int64{}
	}
	c.switchesTo[rid]++
	c.switchesMu.Unlock()
}

// Stats are counters since New, for monitoring and benchmarks.
type Stats struct {
	Rooms, Peers     int
	PacketsIn        int64 // RTP packets received from publishers
	BytesIn          int64
	PacketsForwarded int64 // RTP packets written to down-tracks
	BytesForwarded   int64
	Dropped          int64 // packets for a subscriber whose write failed or whose queue was full
	KeyframeRequests int64 // PLIs sent to publishers (after throttling)
	NACKsReceived    int64 // packets subscribers asked to have resent
	NACKsSent        int64 // packets the SFU asked publishers to resend
	Retransmits      int64 // packets resent to subscribers from the NACK cache
	LayerUp          int64 // simulcast switches to a higher layer
	LayerDown        int64 // ... to a lower one
	Pauses           int64 // camera video paused for lack of bandwidth
	SwitchesTo       map[string]int64
}

// Stats returns the counters.
func (s *SFU) Stats() Stats {
	c := &s.stats
	st := Stats{
		PacketsIn:        c.packetsIn.Load(),
		BytesIn:          c.bytesIn.Load(),
		PacketsForwarded: c.packetsForwarded.Load(),
		BytesForwarded:   c.bytesForwarded.Load(),
		Dropped:          c.dropped.Load(),
		KeyframeRequests: c.keyframeRequests.Load(),
		NACKsReceived:    c.nacksReceived.Load(),
		NACKsSent:        c.nacksSent.Load(),
		Retransmits:      c.retransmits.Load(),
		LayerUp:          c.layerUp.Load(),
		LayerDown:        c.layerDown.Load(),
		Pauses:           c.pauses.Load(),
		SwitchesTo:       map[string]int64{},
	}
	c.switchesMu.Lock()
	for k, v := range c.switchesTo {
		st.SwitchesTo[k] = v
	}
	c.switchesMu.Unlock()
	s.mu.Lock()
	st.Rooms = len(s.rooms)
	for _, r := range s.rooms {
		r.mu.Lock()
		st.Peers += len(r.peers)
		r.mu.Unlock()
	}
	s.mu.Unlock()
	return st
}
