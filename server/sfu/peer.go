package sfu

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

const (
	// negotiationDelay gathers track changes that come together (a new publisher's audio and
	// video) into one sub offer.
	negotiationDelay = 30 * time.Millisecond
	// offerTimeout: a sub offer unanswered this long is sent again. An answer
	// takes one round trip (300 ms on a bad 4G link) plus the client's work; an offer lost on
	// the way (a dropped websocket) must not leave a subscriber without media for long.
	offerTimeout = 3 * time.Second
	// tcpQueueSize is a TCP subscriber's send queue, in packets (~0.5 s of 4 Mbit/s).
	tcpQueueSize = 256
)

// Peer is a participant: its "pub" connection (what it publishes) and its "sub" connection
// (everyone else's tracks). A WHIP peer only publishes and has no sub connection.
type Peer struct {
	s      *SFU
	room   *room
	roomID int64
	id     string
	opts   PeerOptions
	whip   bool
	log    *slog.Logger

	pub *webrtc.PeerConnection
	sub *webrtc.PeerConnection // nil for WHIP
	bwe cc.BandwidthEstimator  // the sub connection's estimator
	// sent counts, from TWCC feedback, what the sub connection's packets did (quality).
	sent *transportLog
	// maxBitrate caps the estimate used for layer choice (0 = none).
	maxBitrate atomic.Int64
	queue      atomic.Pointer[sendQueue] // set while the sub connection runs over TCP
	// subConnected: the sub connection is up (ICE and DTLS), so forwarded packets reach it;
	// subWasUp: it has been, so media to it can stop (quality).
	subConnected, subWasUp atomic.Bool

	sendMu sync.Mutex
	send   func(protocol.Signal)
	outMu  sync.Mutex
	out    []protocol.Signal
	outC   chan struct{}

	negMu       sync.Mutex // serializes SDP work on both connections; guards the fields below
	offering    bool       // a sub offer awaits its answer
	offerAt     time.Time
	offerSig    protocol.Signal // that offer, to send again
	pending     bool            // tracks changed while offering: offer again after the answer
	restart     bool            // the next sub offer restarts ICE
	pendingCand map[string][]webrtc.ICECandidateInit
	negC        chan struct{}

	mu       sync.Mutex
	closed   bool
	offered  map[string]offeredTrack // the last pub offer's tracks, by track ID
	ups      map[string]*upTrack
	downs    map[*upTrack]*downTrack
	conn     map[string]string // connection type by pc
	lastConn string

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	allocMu sync.Mutex // layer allocation
	qAt     time.Time  // last quality event (tick goroutine)

	// heardAt is the nanotime of the last RTCP from the participant, on either connection
	// (its RTP is in its layers' lastPacket); client is its own last quality report.
	heardAt atomic.Int64
	client  atomic.Pointer[clientReport]
	// Owned by the tick goroutine: the quality level and what was last said of it.
	level       levelState
	levelSent   string
	qRecv       int64 // p.sent's counts at the last sample
	qLost       int64
	expectSince int64 // nanotime since when media should be arriving, 0 = none expected
}

func (s *SFU) newPeer(roomID int64, id string, send func(protocol.Signal), opts PeerOptions, whip bool) (*Peer, error) {
	p := &Peer{
		s:           s,
		roomID:      roomID,
		id:          id,
		opts:        opts,
		whip:        whip,
		log:         s.log.With("room", roomID, "peer", id),
		send:        send,
		outC:        make(chan struct{}, 1),
		negC:        make(chan struct{}, 1),
		pendingCand: map[string][]webrtc.ICECandidateInit{},
		offered:     map[string]offeredTrack{},
		ups:         map[string]*upTrack{},
		downs:       map[*upTrack]*downTrack{},
		conn:        map[string]string{},
		done:        make(chan struct{}),
		qAt:         time.Now(),
	}
	var err error
	p.pub, err = s.newPeerConnection(pcPublish, nil, nil)
	if err != nil {
		return nil, err
	}
	p.watch(p.pub, pcPublish)
	p.pub.OnTrack(p.onTrack)
	if !whip {
		p.sent = &transportLog{}
		p.sub, err = s.newPeerConnection(pcSubscribe, func(e cc.BandwidthEstimator) { p.bwe = e }, p.sent)
		if err != nil {
			_ = p.pub.Close()
			return nil, err
		}
		p.watch(p.sub, pcSubscribe)
	}
	return p, nil
}

// watch reports a connection's state, trickles its candidates and follows its selected pair.
func (p *Peer) watch(pc *webrtc.PeerConnection, name string) {
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil || p.whip {
			return
		}
		init := c.ToJSON()
		p.enqueue(protocol.Signal{PC: name, Candidate: &protocol.ICECandidate{
			Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex,
		}})
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected, webrtc.PeerConnectionStateDisconnected,
			webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		default:
			return
		}
		if name == pcSubscribe {
			p.subConnected.Store(st == webrtc.PeerConnectionStateConnected)
			if st == webrtc.PeerConnectionStateConnected {
				p.subWasUp.Store(true)
				// SRTP keys at last: what it receives can start, from a keyframe.
				go p.requestKeyframes()
			}
		}
		p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventState, PC: name, Detail: st.String()})
		if st == webrtc.PeerConnectionStateFailed && name == pcSubscribe && !p.isClosed() {
			// We offer on sub, so the restart is ours to start; the client restarts pub.
			p.negMu.Lock()
			p.restart = true
			p.negMu.Unlock()
			p.requestNegotiation()
		}
	})
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(pair *webrtc.ICECandidatePair) {
		p.onPair(name, pair)
	})
}

// start runs the peer's goroutines once it is in its room.
func (p *Peer) start() {
	// Not waited for by Close: the caller's send function may itself close the peer.
	go p.sendLoop()
	if p.sub != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.negotiator() }()
	}
}

// ID is the participant ID.
func (p *Peer) ID() string { return p.id }

// Room is the room ID.
func (p *Peer) Room() int64 { return p.roomID }

// SetSend replaces the function Signals go out through (a client that reconnected its
// signaling keeps its peer connections).
func (p *Peer) SetSend(send func(protocol.Signal)) {
	p.sendMu.Lock()
	p.send = send
	p.sendMu.Unlock()
}

// SetMaxBitrate caps what this subscriber receives, in bit/s (0 = only its estimate limits).
func (p *Peer) SetMaxBitrate(bps int64) { p.maxBitrate.Store(bps) }

// Tracks lists what the peer publishes.
func (p *Peer) Tracks() []protocol.Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := make([]protocol.Track, 0, len(p.ups))
	for _, ut := range p.ups {
		ts = append(ts, ut.info())
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].ID < ts[j].ID })
	return ts
}

func (p *Peer) upTracks() []*upTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	ups := make([]*upTrack, 0, len(p.ups))
	for _, ut := range p.ups {
		ups = append(ups, ut)
	}
	return ups
}

func (p *Peer) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Peer) enqueue(sig protocol.Signal) {
	p.outMu.Lock()
	p.out = append(p.out, sig)
	p.outMu.Unlock()
	select {
	case p.outC <- struct{}{}:
	default:
	}
}

// sendLoop hands Signals to the caller in order, from one goroutine, so a slow signaling
// connection holds up nothing else.
func (p *Peer) sendLoop() {
	for {
		select {
		case <-p.done:
			return
		case <-p.outC:
		}
		p.outMu.Lock()
		q := p.out
		p.out = nil
		p.outMu.Unlock()
		p.sendMu.Lock()
		send := p.send
		p.sendMu.Unlock()
		for _, sig := range q {
			if send != nil {
				send(sig)
			}
		}
	}
}

// Signal takes a client's Signal: a pub offer, a sub answer, a candidate for either, or a
// request for an ICE-restarting sub offer.
func (p *Peer) Signal(sig protocol.Signal) error {
	if p.isClosed() {
		return ErrClosed
	}
	var pc *webrtc.PeerConnection
	switch sig.PC {
	case protocol.PCPublish:
		pc = p.pub
	case protocol.PCSubscribe:
		pc = p.sub
	}
	if pc == nil {
		return fmt.Errorf("%w: unknown peer connection %q", ErrBadSignal, sig.PC)
	}
	switch {
	case sig.SDP != nil && sig.PC == protocol.PCPublish:
		if sig.SDP.Type != webrtc.SDPTypeOffer.String() {
			return fmt.Errorf("%w: pub takes offers, not %q", ErrBadSignal, sig.SDP.Type)
		}
		_, err := p.answer(sig.SDP.SDP, sig.Tracks)
		return err
	case sig.SDP != nil:
		if sig.SDP.Type != webrtc.SDPTypeAnswer.String() {
			return fmt.Errorf("%w: sub takes answers, not %q", ErrBadSignal, sig.SDP.Type)
		}
		return p.acceptAnswer(sig.SDP.SDP)
	case sig.Candidate != nil:
		return p.addCandidate(pc, sig.PC, webrtc.ICECandidateInit{
			Candidate: sig.Candidate.Candidate, SDPMid: sig.Candidate.SDPMid, SDPMLineIndex: sig.Candidate.SDPMLineIndex,
			UsernameFragment: sig.Candidate.UsernameFragment,
		})
	case sig.Restart && sig.PC == protocol.PCSubscribe:
		p.negMu.Lock()
		p.restart = true
		if p.offering {
			// The client dropped the offer it had. pion cannot take back a local offer (no
			// rollback from have-local-offer), so the same offer goes again, and the
			// restarting one follows its answer.
			p.pending = true
			p.resendOfferLocked()
			p.negMu.Unlock()
			return nil
		}
		p.negMu.Unlock()
		p.requestNegotiation()
		return nil
	}
	return fmt.Errorf("%w: nothing in it", ErrBadSignal)
}

// answer applies a pub offer and sends (or, for WHIP, returns) the answer.
func (p *Peer) answer(offerSDP string, tracks map[string]protocol.Track) (webrtc.SessionDescription, error) {
	offered, err := parseOffer(offerSDP)
	if err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("%w: %v", ErrBadSignal, err)
	}
	for id, o := range offered {
		o.label = defaultLabel(o.kind, p.whip)
		if t, ok := tracks[id]; ok && t.Label != "" {
			o.label = t.Label
		}
		offered[id] = o
	}
	p.mu.Lock()
	p.offered = offered
	var gone []*upTrack
	for id, ut := range p.ups {
		if _, ok := offered[id]; !ok {
			gone = append(gone, ut)
		}
	}
	p.mu.Unlock()

	p.negMu.Lock()
	ans, err := p.answerLocked(offerSDP)
	p.negMu.Unlock()
	if err != nil {
		return ans, err
	}
	for _, ut := range gone {
		p.unpublish(ut)
	}
	return ans, nil
}

func (p *Peer) answerLocked(offerSDP string) (webrtc.SessionDescription, error) {
	if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("%w: pub offer: %v", ErrBadSignal, err)
	}
	p.flushCandidates(p.pub, pcPublish)
	ans, err := p.pub.CreateAnswer(nil)
	if err != nil {
		return ans, fmt.Errorf("sfu: pub answer: %w", err)
	}
	if !p.whip {
		// Queued before SetLocalDescription starts gathering, so it goes out before any
		// candidate of this generation.
		p.enqueue(protocol.Signal{PC: pcPublish, SDP: &protocol.SessionDesc{Type: ans.Type.String(), SDP: ans.SDP}})
	}
	if err := p.pub.SetLocalDescription(ans); err != nil {
		return ans, fmt.Errorf("sfu: pub answer: %w", err)
	}
	return ans, nil
}

func defaultLabel(kind string, whip bool) string {
	switch {
	case kind == "audio":
		return protocol.LabelMicrophone
	case whip:
		return protocol.LabelImaging // an ultrasound or screen feed pushed by an encoder
	}
	return protocol.LabelCamera
}

func (p *Peer) acceptAnswer(sdp string) error {
	p.negMu.Lock()
	if !p.offering {
		p.negMu.Unlock()
		return fmt.Errorf("%w: no sub offer is waiting for an answer", ErrBadSignal)
	}
	// A client answers every copy of a resent offer, so an answer may be to an offer already
	// answered. pion would take it as the answer to the offer now waiting (it checks nothing
	// against the offer): the new tracks would start before the client has their offer, and
	// the client's real answer would be refused. A pion client (client/live) drops the
	// packets of a stream it does not know yet and never receives those tracks.
	if offer := p.sub.PendingLocalDescription(); offer != nil {
		var prevOffer, prevAnswer string
		if d := p.sub.CurrentLocalDescription(); d != nil {
			prevOffer = d.SDP
		}
		if d := p.sub.CurrentRemoteDescription(); d != nil {
			prevAnswer = d.SDP
		}
		if err := answerMismatch(offer.SDP, sdp, prevOffer, prevAnswer); err != nil {
			p.negMu.Unlock()
			return fmt.Errorf("%w: sub answer to an earlier offer: %v", ErrBadSignal, err)
		}
	}
	err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
	if err != nil {
		p.negMu.Unlock()
		return fmt.Errorf("%w: sub answer: %v", ErrBadSignal, err)
	}
	p.offering = false
	p.flushCandidates(p.sub, pcSubscribe)
	again := p.pending
	p.pending = false
	p.negMu.Unlock()
	if again {
		p.requestNegotiation()
	}
	return nil
}

func (p *Peer) addCandidate(pc *webrtc.PeerConnection, name string, c webrtc.ICECandidateInit) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if pc.RemoteDescription() == nil {
		p.pendingCand[name] = append(p.pendingCand[name], c)
		return nil
	}
	if err := pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("%w: candidate: %v", ErrBadSignal, err)
	}
	return nil
}

// flushCandidates adds candidates that came before the remote description. negMu is held.
func (p *Peer) flushCandidates(pc *webrtc.PeerConnection, name string) {
	for _, c := range p.pendingCand[name] {
		if err := pc.AddICECandidate(c); err != nil {
			p.log.Debug("early candidate", "pc", name, "err", err)
		}
	}
	delete(p.pendingCand, name)
}

func (p *Peer) requestNegotiation() {
	select {
	case p.negC <- struct{}{}:
	default:
	}
}

// negotiator makes sub offers: one at a time, and again when tracks changed meanwhile.
func (p *Peer) negotiator() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-p.negC:
		}
		t.Reset(negotiationDelay)
		select {
		case <-p.done:
			t.Stop()
			return
		case <-t.C:
		}
		p.offer()
	}
}

func (p *Peer) offer() {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.offering {
		p.pending = true
		return
	}
	if p.isClosed() || len(p.sub.GetTransceivers()) == 0 {
		return // nothing to offer yet (an offer needs at least one m-line)
	}
	restart := p.restart
	offer, err := p.sub.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		p.log.Warn("sub offer", "err", err)
		return
	}
	sig := protocol.Signal{
		PC:     pcSubscribe,
		SDP:    &protocol.SessionDesc{Type: offer.Type.String(), SDP: offer.SDP},
		Tracks: p.subTracks(),
	}
	p.enqueue(sig)
	if err := p.sub.SetLocalDescription(offer); err != nil {
		p.log.Warn("sub offer", "err", err)
		return
	}
	p.offerSig = sig
	p.restart = false
	p.offering = true
	p.offerAt = time.Now()
}

// checkOffer takes back a sub offer nobody answered, and offers again.
func (p *Peer) checkOffer(now time.Time) {
	if p.sub == nil {
		return
	}
	p.negMu.Lock()
	if p.offering && now.Sub(p.offerAt) > offerTimeout {
		p.log.Info("sub offer unanswered: sending it again", "after", now.Sub(p.offerAt).Round(time.Millisecond))
		p.resendOfferLocked()
	}
	p.negMu.Unlock()
}

// resendOfferLocked sends the sub offer that awaits its answer once more. A client that lost
// it answers it; one that answered already (its answer lost) is stable and answers it again,
// unchanged. Taking it back instead is not possible: pion refuses a local rollback from
// have-local-offer and a second local offer over the first. negMu is held.
func (p *Peer) resendOfferLocked() {
	p.offerAt = time.Now()
	sig := p.offerSig
	if pending := p.sub.PendingLocalDescription(); pending != nil && sig.SDP != nil {
		// With the candidates gathered since: those trickled after the lost offer were lost
		// with it.
		sig.SDP = &protocol.SessionDesc{Type: sig.SDP.Type, SDP: pending.SDP}
	}
	p.enqueue(sig)
}

// subTracks describes, by track ID, what the sub connection carries.
func (p *Peer) subTracks() map[string]protocol.Track {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]protocol.Track, len(p.downs))
	for ut := range p.downs {
		m[ut.id] = ut.info()
	}
	return m
}

// onTrack is pion's callback for each new incoming stream (each simulcast layer).
func (p *Peer) onTrack(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
	id := tr.ID()
	if id == "" {
		mid := ""
		if t := rcv.RTPTransceiver(); t != nil {
			mid = t.Mid()
		}
		id = trackIDFor(tr.Kind().String(), mid)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	ut := p.ups[id]
	created := false
	if ut == nil {
		o := p.offered[id]
		label := o.label
		if label == "" {
			label = defaultLabel(tr.Kind().String(), p.whip)
		}
		ut = newUpTrack(p, id, tr, label, o.rids)
		p.ups[id] = ut
		created = true
	}
	p.mu.Unlock()
	if created && p.opts.Record && p.s.cfg.RecordDir != "" {
		rec, err := newRecorder(p, ut)
		if err != nil {
			p.log.Warn("recording", "track", id, "err", err)
		} else {
			ut.rec = rec
		}
	}
	if !ut.attach(tr, rcv) {
		p.log.Debug("unexpected stream", "track", id, "rid", tr.RID())
		return
	}
	if created {
		p.log.Debug("publishing", "track", id, "kind", ut.kind, "label", ut.label, "layers", len(ut.layers))
		for _, q := range p.room.publish(ut) {
			q.subscribe(ut)
		}
		p.emitTracks()
	}
}

func (p *Peer) emitTracks() {
	if p.isClosed() {
		return
	}
	p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventTracks, Tracks: p.Tracks()})
}

// unpublish stops forwarding ut: other peers drop it and renegotiate, its recording ends.
func (p *Peer) unpublish(ut *upTrack) {
	p.mu.Lock()
	if p.ups[ut.id] == ut {
		delete(p.ups, ut.id)
	}
	p.mu.Unlock()
	if !ut.markClosed() {
		return
	}
	p.room.unpublish(ut)
	for _, d := range ut.takeDowns() {
		d.sub.unsubscribe(ut)
	}
	if ut.rec != nil {
		ut.rec.close()
	}
	p.emitTracks()
}

// subscribe adds ut to this peer's sub connection.
func (p *Peer) subscribe(ut *upTrack) {
	if p.sub == nil || ut.pub == p {
		return
	}
	p.negMu.Lock()
	p.mu.Lock()
	if p.closed || p.downs[ut] != nil {
		p.mu.Unlock()
		p.negMu.Unlock()
		return
	}
	p.mu.Unlock()
	d := newDownTrack(ut, p)
	tr, err := p.sub.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.negMu.Unlock()
		p.log.Warn("subscribe", "track", ut.id, "err", err)
		return
	}
	// The track's own codec only (a subscriber decodes what the publisher sends), with its
	// RTX where the codec is video: pion drops RTX from an offer whose preferences lack it.
	if err := tr.SetCodecPreferences(codecPreferences(ut.codec.RTPCodecCapability)); err != nil {
		p.log.Debug("codec preferences", "track", ut.id, "err", err)
	}
	d.sender = tr.Sender()
	p.mu.Lock()
	p.downs[ut] = d
	p.mu.Unlock()
	p.negMu.Unlock()

	p.allocateOne(d)
	if !ut.addDown(d) {
		p.unsubscribe(ut) // closed meanwhile
		return
	}
	go d.readRTCP()
	p.requestNegotiation()
}

// unsubscribe removes ut from this peer's sub connection; the m-line goes inactive.
func (p *Peer) unsubscribe(ut *upTrack) {
	p.negMu.Lock()
	p.mu.Lock()
	d := p.downs[ut]
	delete(p.downs, ut)
	closed := p.closed
	p.mu.Unlock()
	if d == nil {
		p.negMu.Unlock()
		return
	}
	ut.removeDown(d)
	d.close()
	if !closed {
		if err := p.sub.RemoveTrack(d.sender); err != nil {
			p.log.Debug("remove track", "track", ut.id, "err", err)
		}
	}
	p.negMu.Unlock()
	if !closed {
		p.requestNegotiation()
	}
}

// Close removes the participant: its tracks stop being forwarded (the others renegotiate),
// its recordings are finalized before Close returns, and its connections close.
func (p *Peer) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		ups := make([]*upTrack, 0, len(p.ups))
		for _, ut := range p.ups {
			ups = append(ups, ut)
		}
		downs := make([]*downTrack, 0, len(p.downs))
		for _, d := range p.downs {
			downs = append(downs, d)
		}
		p.mu.Unlock()
		p.s.leave(p)
		for _, ut := range ups {
			p.unpublish(ut)
		}
		for _, d := range downs {
			d.up.removeDown(d)
			d.close()
		}
		close(p.done)
		p.closePCs()
		p.wg.Wait()
		p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventState, Detail: "closed"})
	})
}

func (p *Peer) closePCs() {
	if p.pub != nil {
		if err := p.pub.Close(); err != nil {
			p.log.Debug("close pub", "err", err)
		}
	}
	if p.sub != nil {
		if err := p.sub.Close(); err != nil {
			p.log.Debug("close sub", "err", err)
		}
	}
}

// onPair follows the selected candidate pair of one connection: the peer's connection type
// is relay if either connection relays, else tcp if either is TCP, else udp.
func (p *Peer) onPair(name string, pair *webrtc.ICECandidatePair) {
	if pair == nil || pair.Local == nil || pair.Remote == nil {
		return
	}
	typ := "udp"
	switch {
	case pair.Local.Typ == webrtc.ICECandidateTypeRelay || pair.Remote.Typ == webrtc.ICECandidateTypeRelay:
		typ = "relay"
	case pair.Local.Protocol == webrtc.ICEProtocolTCP:
		typ = "tcp"
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if name == pcSubscribe {
		if typ == "tcp" {
			if p.queue.Load() == nil {
				q := newSendQueue(tcpQueueSize)
				p.wg.Add(1) // under mu and not closed: Close has not started waiting
				go func() { defer p.wg.Done(); q.run(p.done) }()
				p.queue.Store(q)
			}
		} else {
			p.queue.Store(nil)
		}
	}
	p.conn[name] = typ
	overall := "udp"
	for _, t := range p.conn {
		if t == "relay" || (t == "tcp" && overall == "udp") {
			overall = t
		}
	}
	changed := overall != p.lastConn
	p.lastConn = overall
	p.mu.Unlock()
	if changed {
		p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventConnection, Connection: overall})
	}
}

// requestKeyframes asks for a keyframe of every video layer this subscriber waits for.
func (p *Peer) requestKeyframes() {
	for _, d := range p.downList() {
		if cur, target := d.layers(); d.video && target >= 0 && cur != target {
			d.up.requestKeyframe(target)
		}
	}
}

// Connection is udp, tcp or relay once a connection is up, else "".
func (p *Peer) Connection() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastConn
}
