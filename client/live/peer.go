package live

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/internal/pionlog"
	"github.com/sanping/sanping/protocol"
)

const (
	iceGrace     = 2 * time.Second // a connection disconnected or failed this long gets an ICE restart
	restartEvery = 5 * time.Second // and another one this often until it is back
	watchEvery   = 500 * time.Millisecond
)

// H.264 as browsers offer it, constrained baseline first (what the station's files are).
const (
	fmtpH264Baseline            = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"
	fmtpH264ConstrainedBaseline = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
)

// newAPI builds what both peer connections are made with: VP8, H.264 (packetization-mode 1)
// and Opus, and pion's default interceptors (NACK, RTCP reports, TWCC).
func newAPI(cfg Config, log *slog.Logger, loopback bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	// No RTX: pion reads an RTX repair stream through interceptors of its own, so its NACK
	// generator never sees a packet repaired over RTX and asks for it again up to its limit.
	// Retransmissions on the media SSRC (RFC 4585) are seen, and the SFU sends those to a
	// receiver that does not take RTX.
	video := func(mime, fmtp string, pt webrtc.PayloadType) []webrtc.RTPCodecParameters {
		return []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: fb}, PayloadType: pt},
		}
	}
	var codecs []webrtc.RTPCodecParameters
	codecs = append(codecs, video(webrtc.MimeTypeVP8, "", 96)...)
	codecs = append(codecs, video(webrtc.MimeTypeH264, fmtpH264Baseline, 102)...)
	codecs = append(codecs, video(webrtc.MimeTypeH264, fmtpH264ConstrainedBaseline, 106)...)
	for _, c := range codecs {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opus, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	// A missing packet is asked for every 100 ms up to 10 times (libwebrtc's kMaxNackRetries),
	// which covers three repair rounds at a 300 ms 4G round trip.
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir, webrtc.WithNackGeneratorOptions(nack.GeneratorMaxNacksPerPacket(10))); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{LoggerFactory: pionlog.Factory{Log: log, Quiet: true}}
	// SRTP's replay window is 64 packets by default: a repair arriving a round trip late on a
	// fast stream falls out of it and is dropped as a replay. libwebrtc keeps 1024.
	se.SetSRTPReplayProtectionWindow(1024)
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
	} else if loopback {
		se.SetIncludeLoopbackCandidate(true) // a server on this machine
	}
	if cfg.NetworkTypes != nil {
		se.SetNetworkTypes(cfg.NetworkTypes)
	}
	// The other end is always the server, whose candidates are addresses, never mDNS names.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

var opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}

// peer is one of the two peer connections. Everything that negotiates runs as a task on its
// own goroutine, so that there is one negotiation at a time and in the order signals came.
type peer struct {
	role   string // protocol.PCPublish or protocol.PCSubscribe
	pc     *webrtc.PeerConnection
	ctx    context.Context
	cancel context.CancelFunc
	tasks  chan func()

	// Owned by the task goroutine.
	remote   []webrtc.ICECandidateInit // arrived before the remote description
	offering bool                      // pub: an offer waits for its answer
	again    bool                      // pub: offer again once it is answered
	restart  bool                      // pub: ... with an ICE restart

	mu        sync.Mutex
	described bool                    // the description went out: candidates may follow it
	gathered  []protocol.ICECandidate // local candidates found before that
	badSince  time.Time               // ICE disconnected or failed since; zero when fine
	restarted time.Time
}

// do queues a task; it is dropped once the peer is closed.
func (pe *peer) do(f func()) {
	select {
	case pe.tasks <- f:
	case <-pe.ctx.Done():
	}
}

func (pe *peer) work() {
	for {
		select {
		case <-pe.ctx.Done():
			return
		case f := <-pe.tasks:
			f()
		}
	}
}

func (pe *peer) close() {
	pe.cancel()
	pe.pc.Close() //nolint:errcheck // closing: nothing to do about it
}

func (pe *peer) setState(s webrtc.ICEConnectionState) {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	switch s {
	case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
		if pe.badSince.IsZero() {
			pe.badSince = time.Now()
		}
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
		pe.badSince = time.Time{}
	}
}

// stuck says whether an ICE restart is due now.
func (pe *peer) stuck(now time.Time) bool {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	if pe.badSince.IsZero() || now.Sub(pe.badSince) < iceGrace || now.Sub(pe.restarted) < restartEvery {
		return false
	}
	pe.restarted = now
	return true
}

// spawn runs f on a goroutine that Close waits for, unless the participant has stopped.
func (p *Participant) spawn(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// connectPeers makes the sub peer connection and, when there are files, the pub one, which
// it then offers.
func (p *Participant) connectPeers() error {
	sub, err := p.newPeer(protocol.PCSubscribe)
	if err != nil {
		return err
	}
	var pub *peer
	if len(p.local) > 0 {
		if pub, err = p.newPeer(protocol.PCPublish); err != nil {
			sub.close()
			return err
		}
		for _, lt := range p.local {
			tr, err := pub.pc.AddTransceiverFromTrack(lt.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				sub.close()
				pub.close()
				return err
			}
			// RTCP must be read for the interceptors (NACK, reports) to see it.
			sender := tr.Sender()
			p.spawn(func() {
				for {
					pkts, _, err := sender.ReadRTCP()
					if err != nil {
						return
					}
					for _, pkt := range pkts {
						switch pkt.(type) {
						case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
							lt.wantKey.Store(true)
						}
					}
				}
			})
		}
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		sub.close()
		if pub != nil {
			pub.close()
		}
		return ErrClosed
	}
	p.pub, p.sub = pub, sub
	p.mu.Unlock()
	p.spawn(sub.work)
	if pub != nil {
		p.spawn(pub.work)
		pub.do(func() { p.offer(pub, false) })
	}
	return nil
}

func (p *Participant) newPeer(role string) (*peer, error) {
	p.mu.Lock()
	servers := p.iceServers
	p.mu.Unlock()
	pc, err := p.api.NewPeerConnection(webrtc.Configuration{ICEServers: servers})
	if err != nil {
		return nil, err
	}
	pe := &peer{role: role, pc: pc, tasks: make(chan func(), 64)}
	pe.ctx, pe.cancel = context.WithCancel(p.ctx)
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			p.candidate(pe, c.ToJSON())
		}
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		p.log.Debug("live: ICE", "pc", role, "state", s.String())
		pe.setState(s)
		if role == protocol.PCPublish && s == webrtc.ICEConnectionStateConnected {
			p.pubUpOnce.Do(func() { close(p.pubUp) })
		}
	})
	if role == protocol.PCSubscribe {
		pc.OnTrack(p.onTrack)
	}
	return pe, nil
}

// current says whether pe is still one of the participant's peer connections.
func (p *Participant) current(pe *peer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return pe == p.pub || pe == p.sub
}

// candidate trickles a local candidate, or holds it until the description has gone out.
func (p *Participant) candidate(pe *peer, init webrtc.ICECandidateInit) {
	c := protocol.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}
	pe.mu.Lock()
	if !pe.described {
		pe.gathered = append(pe.gathered, c)
		pe.mu.Unlock()
		return
	}
	pe.mu.Unlock()
	p.sendCandidate(pe, c)
}

func (p *Participant) sendCandidate(pe *peer, c protocol.ICECandidate) {
	if !p.current(pe) {
		return
	}
	if _, err := p.send(protocol.TypeSignal, protocol.Signal{PC: pe.role, Candidate: &c}); err != nil {
		p.log.Debug("live: candidate not sent", "pc", pe.role, "err", err)
	}
}

// describe sets a local description and sends it, then the candidates gathered meanwhile.
func (p *Participant) describe(pe *peer, d webrtc.SessionDescription) error {
	pe.mu.Lock()
	pe.described = false
	pe.mu.Unlock()
	if err := pe.pc.SetLocalDescription(d); err != nil {
		return err
	}
	p.sendDescription(pe, d)
	pe.mu.Lock()
	pe.described = true
	held := pe.gathered
	pe.gathered = nil
	pe.mu.Unlock()
	for _, c := range held {
		p.sendCandidate(pe, c)
	}
	return nil
}

func (p *Participant) sendDescription(pe *peer, d webrtc.SessionDescription) {
	s := protocol.Signal{PC: pe.role, SDP: &protocol.SessionDesc{Type: d.Type.String(), SDP: d.SDP}}
	if pe.role == protocol.PCPublish {
		s.Tracks = map[string]protocol.Track{}
		for _, lt := range p.local {
			s.Tracks[lt.info.ID] = lt.info
		}
	}
	if _, err := p.send(protocol.TypeSignal, s); err != nil {
		// Not lost for good: an unanswered pub offer is sent again on resume, and a sub
		// answer the server misses shows as a connection the watchdog restarts.
		p.log.Debug("live: description not sent", "pc", pe.role, "err", err)
	}
}

// offer makes and sends a pub offer, unless one is already waiting for its answer; then the
// new one follows that answer.
func (p *Participant) offer(pe *peer, restart bool) {
	if pe.offering {
		pe.again = true
		pe.restart = pe.restart || restart
		return
	}
	offer, err := pe.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err == nil {
		err = p.describe(pe, offer)
	}
	if err != nil {
		p.log.Warn("live: pub offer", "err", err)
		return
	}
	pe.offering = true
}

// resendOffer sends the waiting pub offer again after a resume: its answer may have been lost
// with the old connection. The local description now holds every candidate gathered.
func (p *Participant) resendOffer(pe *peer) {
	if !pe.offering {
		return
	}
	if d := pe.pc.LocalDescription(); d != nil {
		p.sendDescription(pe, *d)
	}
}

// signal hands a signal to its peer connection's task goroutine.
func (p *Participant) signal(s protocol.Signal) {
	p.mu.Lock()
	pub, sub := p.pub, p.sub
	p.mu.Unlock()
	switch {
	case s.PC == protocol.PCPublish && pub != nil:
		pub.do(func() { p.pubSignal(pub, s) })
	case s.PC == protocol.PCSubscribe && sub != nil:
		sub.do(func() { p.subSignal(sub, s) })
	default:
		p.log.Warn("live: signal for no peer connection", "pc", s.PC)
	}
}

func (p *Participant) pubSignal(pe *peer, s protocol.Signal) {
	if s.SDP != nil {
		if s.SDP.Type != webrtc.SDPTypeAnswer.String() || !pe.offering {
			p.log.Warn("live: unexpected pub description", "type", s.SDP.Type)
			return
		}
		pe.offering = false
		if err := pe.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP.SDP}); err != nil {
			p.log.Warn("live: pub answer", "err", err)
			return
		}
		p.addHeldCandidates(pe)
		if pe.again {
			restart := pe.restart
			pe.again, pe.restart = false, false
			p.offer(pe, restart)
		}
	}
	if s.Candidate != nil {
		p.addCandidate(pe, *s.Candidate)
	}
}

func (p *Participant) subSignal(pe *peer, s protocol.Signal) {
	if s.SDP != nil {
		if s.SDP.Type != webrtc.SDPTypeOffer.String() {
			p.log.Warn("live: unexpected sub description", "type", s.SDP.Type)
			return
		}
		// Before the remote description: tracks fire OnTrack as soon as it is set.
		p.mu.Lock()
		p.subTracks = s.Tracks
		p.mu.Unlock()
		if err := pe.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.SDP.SDP}); err != nil {
			p.log.Warn("live: sub offer", "err", err)
			return
		}
		p.addHeldCandidates(pe)
		answer, err := pe.pc.CreateAnswer(nil)
		if err == nil {
			err = p.describe(pe, answer)
		}
		if err != nil {
			p.log.Warn("live: sub answer", "err", err)
			return
		}
	}
	if s.Candidate != nil {
		p.addCandidate(pe, *s.Candidate)
	}
}

// addCandidate adds a remote candidate, or holds it while it cannot belong to the remote
// description: there is none yet, a pub answer is still to come, or its ufrag is not the
// description's (the server's candidates of an ICE restart can overtake the offer or answer
// that starts it). Held candidates are added with the next remote description.
func (p *Participant) addCandidate(pe *peer, c protocol.ICECandidate) {
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment}
	rd := pe.pc.RemoteDescription()
	if rd == nil || pe.offering || !sameUfrag(rd.SDP, c.Candidate) {
		if len(pe.remote) < maxHeldCandidates {
			pe.remote = append(pe.remote, init)
		}
		return
	}
	if err := pe.pc.AddICECandidate(init); err != nil {
		p.log.Debug("live: remote candidate", "pc", pe.role, "err", err)
	}
}

const maxHeldCandidates = 200

func (p *Participant) addHeldCandidates(pe *peer) {
	held := pe.remote
	pe.remote = nil
	for _, c := range held {
		if err := pe.pc.AddICECandidate(c); err != nil {
			p.log.Debug("live: remote candidate", "pc", pe.role, "err", err)
		}
	}
}

// sameUfrag says whether a candidate line's ufrag extension (pion and browsers add it) is
// the description's ice-ufrag; true when either is missing.
func sameUfrag(sdp, candidate string) bool {
	_, after, ok := strings.Cut(candidate, " ufrag ")
	if !ok {
		return true
	}
	ufrag, _, _ := strings.Cut(after, " ")
	_, after, ok = strings.Cut(sdp, "a=ice-ufrag:")
	if !ok {
		return true
	}
	want, _, _ := strings.Cut(after, "\n")
	return strings.TrimSpace(want) == ufrag
}

// watch restarts ICE on a peer connection that stays disconnected or failed: pub by offering
// with an ICE restart, sub by asking the server for such an offer.
func (p *Participant) watch() {
	defer p.wg.Done()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		var now time.Time
		select {
		case <-p.ctx.Done():
			return
		case now = <-t.C:
		}
		p.mu.Lock()
		pub, sub, up := p.pub, p.sub, p.ws != nil
		p.mu.Unlock()
		if !up {
			continue // nothing can be signalled now; the timers keep running
		}
		if pub != nil && pub.stuck(now) {
			p.log.Info("live: ICE restart", "pc", pub.role)
			pub.do(func() { p.offer(pub, true) })
		}
		if sub != nil && sub.stuck(now) {
			p.log.Info("live: ICE restart", "pc", sub.role)
			p.restartSub()
		}
	}
}

func (p *Participant) restartSub() {
	if _, err := p.send(protocol.TypeSignal, protocol.Signal{PC: protocol.PCSubscribe, Restart: true}); err != nil {
		p.log.Debug("live: sub restart not sent", "err", err)
	}
}
