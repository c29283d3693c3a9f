package live

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/internal/pionlog"
	"github.com/sanping/sanping/protocol"
)

// fakeRoom is just enough of the server's live room for a participant: hello and welcome
// (with resume), an SFU that forwards every published track to everyone (the publisher
// included), op.applied in one order, chat, errors, bye, and dropping a socket.
type fakeRoom struct {
	t     *testing.T
	api   *webrtc.API
	srv   *httptest.Server
	url   string
	grace int

	doubleOffer bool // the first sub negotiation sends two offers, the second before the first is answered
	refuse      int  // answer upgrades with this HTTP status

	opMu  sync.Mutex // op.applied goes out in sequence order
	mu    sync.Mutex
	n     int
	seq   uint64
	state protocol.ViewState
	parts []*fakePart
	// tokens maps resume tokens to participants; forget removes one, as the end of the
	// grace period would.
	tokens map[string]*fakePart
	tracks []*fakeTrack
}

type fakePart struct {
	room      *fakeRoom
	id, token string
	pub, sub  *webrtc.PeerConnection

	wmu sync.Mutex
	ws  *websocket.Conn
	// early holds what was sent to the participant before its welcome went out: a track
	// forwarded between its creation and its welcome must still be offered, after the welcome.
	early    [][]byte
	welcomed bool

	// Sub negotiation, one at a time (but see doubleOffer).
	smu          sync.Mutex
	negotiating  bool
	again        bool
	againRestart bool
	deferred     *webrtc.SessionDescription // doubleOffer: the second offer, set once the first is answered
	offers       int
	answers      int
	restarts     int
	pubOffers    int
	held         map[string][]webrtc.ICECandidateInit // client candidates before the remote description
	pubTracks    map[string]protocol.Track
}

// fakeTrack is a published track as the fake server forwards it, with the arrival times of
// its packets and of the packets ending a frame.
type fakeTrack struct {
	info    protocol.Track
	local   *webrtc.TrackLocalStaticRTP
	mu      sync.Mutex
	packets []time.Time
	markers []time.Time
	clock   uint32   // RTP clock rate
	stamps  []uint32 // RTP timestamp of each packet, as packets
	mstamps []uint32 // of each packet with the marker bit, as markers
}

func newFakeRoom(t *testing.T, n transport.Net) *fakeRoom {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	if n != nil {
		se.SetNet(n)
	}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	r := &fakeRoom{
		t:      t,
		api:    webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)),
		grace:  30,
		state:  protocol.DefaultViewState(),
		tokens: map[string]*fakePart{},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.url = "ws://" + r.srv.Listener.Addr().String() + "/api/consultations/1/live"
	t.Cleanup(func() {
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.mu.Lock()
		parts := r.parts
		r.mu.Unlock()
		for _, fp := range parts {
			fp.pub.Close()
			fp.sub.Close()
		}
	})
	return r
}

// testNets makes a virtual network and returns a function that adds a host to it.
func testNets(t *testing.T) func() transport.Net {
	t.Helper()
	router, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.1.0.0/24", LoggerFactory: pionlog.Factory{Log: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []*vnet.Net
	if err := router.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { router.Stop() }) //nolint:errcheck // test teardown
	return func() transport.Net {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{fmt.Sprintf("10.1.0.%d", len(hosts)+2)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := router.AddNet(n); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, n)
		return n
	}
}

func (r *fakeRoom) serve(w http.ResponseWriter, req *http.Request) {
	if r.refuse != 0 {
		http.Error(w, "refused", r.refuse)
		return
	}
	c, err := (&websocket.Upgrader{}).Upgrade(w, req, nil)
	if err != nil {
		return
	}
	defer c.Close()
	var h protocol.Hello
	if m, ok := readMessage(c); !ok || m.Type != protocol.TypeHello || protocol.Decode(m.Data, &h) != nil || h.Protocol != protocol.Version {
		r.t.Errorf("fake server: bad hello")
		return
	}
	r.mu.Lock()
	fp, resumed := r.tokens[h.Resume]
	if !resumed {
		if fp, err = r.newPart(); err != nil {
			r.mu.Unlock()
			r.t.Error(err)
			return
		}
	}
	welcome := protocol.Welcome{
		Participant: fp.id, ResumeToken: fp.token, Resumed: resumed, GraceSeconds: r.grace, Consultation: 1,
		Snapshot: protocol.Snapshot{Seq: r.seq, State: cloneState(r.state)},
		Control:  protocol.ControlState{Driver: r.parts[0].id},
	}
	for _, q := range r.parts {
		welcome.Participants = append(welcome.Participants, protocol.Participant{ID: q.id, Name: q.id, Role: "doctor", Connected: true})
	}
	tracks := slices.Clone(r.tracks)
	r.mu.Unlock()

	fp.welcome(c, welcome)
	if !resumed && len(tracks) > 0 {
		for _, ft := range tracks {
			fp.subscribe(ft)
		}
		fp.negotiate(false)
	}
	for {
		m, ok := readMessage(c)
		if !ok {
			return
		}
		switch m.Type {
		case protocol.TypeSignal:
			var s protocol.Signal
			if err := protocol.Decode(m.Data, &s); err != nil {
				r.t.Errorf("fake server: signal: %v", err)
				continue
			}
			fp.signal(s)
		case protocol.TypeOp:
			var op protocol.Op
			if err := protocol.Decode(m.Data, &op); err != nil || op.Validate() != nil {
				fp.send(protocol.TypeError, 0, protocol.Error{Code: protocol.ErrInvalid, Message: "bad op", Ref: m.ID})
				continue
			}
			if op.Kind != protocol.OpPointer && fp != welcomeDriver(r) {
				fp.send(protocol.TypeError, 0, protocol.Error{Code: protocol.ErrNotDriver, Message: "not the driver", Ref: m.ID})
				continue
			}
			r.apply(fp.id, op)
		case protocol.TypeChat:
			var cs protocol.ChatSend
			if err := protocol.Decode(m.Data, &cs); err != nil {
				r.t.Errorf("fake server: chat: %v", err)
				continue
			}
			r.broadcast(protocol.TypeChatMessage, protocol.ChatMessage{ID: int64(m.ID), Participant: fp.id, Name: fp.id, Text: cs.Text, Time: time.Now()})
		case protocol.TypePing:
			fp.send(protocol.TypePong, m.ID, nil)
		case protocol.TypeLeave:
			r.mu.Lock()
			delete(r.tokens, fp.token)
			r.mu.Unlock()
			return
		default:
			r.t.Errorf("fake server: unexpected %s", m.Type)
		}
	}
}

func welcomeDriver(r *fakeRoom) *fakePart {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.parts[0]
}

func readMessage(c *websocket.Conn) (protocol.Message, bool) {
	var m protocol.Message
	_, b, err := c.ReadMessage()
	if err != nil {
		return m, false
	}
	return m, json.Unmarshal(b, &m) == nil
}

// newPart makes a participant with its two peer connections (r.mu held).
func (r *fakeRoom) newPart() (*fakePart, error) {
	r.n++
	fp := &fakePart{room: r, id: fmt.Sprintf("p%d", r.n), token: fmt.Sprintf("resume-%d", r.n), held: map[string][]webrtc.ICECandidateInit{}}
	var err error
	if fp.pub, err = r.api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	if fp.sub, err = r.api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	for role, pc := range map[string]*webrtc.PeerConnection{protocol.PCPublish: fp.pub, protocol.PCSubscribe: fp.sub} {
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c != nil {
				init := c.ToJSON()
				fp.send(protocol.TypeSignal, 0, protocol.Signal{PC: role, Candidate: &protocol.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}})
			}
		})
	}
	fp.pub.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { r.forward(fp, remote) })
	r.parts = append(r.parts, fp)
	r.tokens[fp.token] = fp
	return fp, nil
}

// forward sends a published track on to every participant.
func (r *fakeRoom) forward(from *fakePart, remote *webrtc.TrackRemote) {
	local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.ID(), from.id)
	if err != nil {
		r.t.Error(err)
		return
	}
	from.smu.Lock()
	info := from.pubTracks[remote.ID()]
	from.smu.Unlock()
	info.ID, info.Participant = remote.ID(), from.id
	ft := &fakeTrack{info: info, local: local, clock: remote.Codec().ClockRate}
	r.mu.Lock()
	r.tracks = append(r.tracks, ft)
	parts := slices.Clone(r.parts)
	r.mu.Unlock()
	for _, fp := range parts {
		fp.subscribe(ft)
		fp.negotiate(false)
	}
	go func() {
		for {
			p, _, err := remote.ReadRTP()
			if err != nil {
				return
			}
			ft.mu.Lock()
			ft.packets = append(ft.packets, time.Now())
			ft.stamps = append(ft.stamps, p.Timestamp)
			if p.Marker {
				ft.markers = append(ft.markers, time.Now())
				ft.mstamps = append(ft.mstamps, p.Timestamp)
			}
			ft.mu.Unlock()
			local.WriteRTP(p) //nolint:errcheck // a subscriber gone is no matter here
		}
	}()
}

func (fp *fakePart) subscribe(ft *fakeTrack) {
	if fp.sub.ConnectionState() == webrtc.PeerConnectionStateClosed {
		return // the client closed it (DTLS close_notify)
	}
	s, err := fp.sub.AddTrack(ft.local)
	if err != nil {
		fp.room.t.Error(err)
		return
	}
	go func() {
		for {
			if _, _, err := s.ReadRTCP(); err != nil {
				return
			}
		}
	}()
}

// negotiate offers on sub, or notes to offer again when the pending offer is answered.
func (fp *fakePart) negotiate(restart bool) {
	fp.smu.Lock()
	defer fp.smu.Unlock()
	if fp.sub.ConnectionState() == webrtc.PeerConnectionStateClosed {
		return
	}
	if fp.negotiating {
		fp.again = true
		fp.againRestart = fp.againRestart || restart
		return
	}
	fp.offerSub(restart)
	if fp.room.doubleOffer && fp.offers == 1 {
		// A second offer right behind the first, before its answer. Pion cannot set it
		// (have-local-offer to have-local-offer) nor roll back, so it is set once the
		// first is answered.
		offer, err := fp.sub.CreateOffer(nil)
		if err != nil {
			fp.room.t.Errorf("fake server: second sub offer: %v", err)
			return
		}
		fp.deferred = &offer
		fp.offers++
		fp.send(protocol.TypeSignal, 0, protocol.Signal{PC: protocol.PCSubscribe, SDP: &protocol.SessionDesc{Type: "offer", SDP: offer.SDP}, Tracks: fp.room.trackList()})
	}
}

// offerSub sends an offer on sub (fp.smu held).
func (fp *fakePart) offerSub(restart bool) {
	offer, err := fp.sub.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err == nil {
		err = fp.sub.SetLocalDescription(offer)
	}
	if err != nil {
		fp.room.t.Errorf("fake server: sub offer: %v", err)
		return
	}
	fp.negotiating = true
	fp.offers++
	fp.send(protocol.TypeSignal, 0, protocol.Signal{PC: protocol.PCSubscribe, SDP: &protocol.SessionDesc{Type: "offer", SDP: offer.SDP}, Tracks: fp.room.trackList()})
}

func (r *fakeRoom) trackList() map[string]protocol.Track {
	r.mu.Lock()
	defer r.mu.Unlock()
	tracks := map[string]protocol.Track{}
	for _, ft := range r.tracks {
		tracks[ft.info.ID] = ft.info
	}
	return tracks
}

func (fp *fakePart) signal(s protocol.Signal) {
	fp.smu.Lock()
	defer fp.smu.Unlock()
	pc := fp.sub
	if s.PC == protocol.PCPublish {
		pc = fp.pub
	}
	switch {
	case s.Restart && s.PC == protocol.PCSubscribe:
		fp.restarts++
		if fp.negotiating {
			fp.again, fp.againRestart = true, true
		} else {
			fp.offerSub(true)
		}
	case s.SDP != nil && s.PC == protocol.PCPublish && s.SDP.Type == "offer":
		fp.pubOffers++
		fp.pubTracks = s.Tracks
		if err := fp.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: s.SDP.SDP}); err != nil {
			fp.room.t.Errorf("fake server: pub offer: %v", err)
			return
		}
		fp.addHeld(protocol.PCPublish)
		answer, err := fp.pub.CreateAnswer(nil)
		if err == nil {
			err = fp.pub.SetLocalDescription(answer)
		}
		if err != nil {
			fp.room.t.Errorf("fake server: pub answer: %v", err)
			return
		}
		fp.send(protocol.TypeSignal, 0, protocol.Signal{PC: protocol.PCPublish, SDP: &protocol.SessionDesc{Type: "answer", SDP: answer.SDP}})
	case s.SDP != nil && s.PC == protocol.PCSubscribe && s.SDP.Type == "answer":
		fp.answers++
		if err := fp.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: s.SDP.SDP}); err != nil {
			fp.room.t.Errorf("fake server: sub answer: %v", err)
			return
		}
		fp.addHeld(protocol.PCSubscribe)
		if fp.deferred != nil {
			if err := fp.sub.SetLocalDescription(*fp.deferred); err != nil {
				fp.room.t.Errorf("fake server: second sub offer: %v", err)
			}
			fp.deferred = nil
			return // its answer comes next
		}
		fp.negotiating = false
		if fp.again {
			restart := fp.againRestart
			fp.again, fp.againRestart = false, false
			fp.offerSub(restart)
		}
	case s.Candidate != nil:
		init := webrtc.ICECandidateInit{Candidate: s.Candidate.Candidate, SDPMid: s.Candidate.SDPMid, SDPMLineIndex: s.Candidate.SDPMLineIndex}
		if pc.RemoteDescription() == nil {
			fp.held[s.PC] = append(fp.held[s.PC], init)
			return
		}
		if err := pc.AddICECandidate(init); err != nil {
			fp.room.t.Errorf("fake server: candidate: %v", err)
		}
	default:
		fp.room.t.Errorf("fake server: unexpected signal %+v", s)
	}
}

func (fp *fakePart) addHeld(role string) {
	pc := fp.sub
	if role == protocol.PCPublish {
		pc = fp.pub
	}
	for _, c := range fp.held[role] {
		if err := pc.AddICECandidate(c); err != nil {
			fp.room.t.Errorf("fake server: candidate: %v", err)
		}
	}
	delete(fp.held, role)
}

func (fp *fakePart) send(t string, id uint64, data any) {
	b, err := protocol.Encode(t, id, data)
	if err != nil {
		fp.room.t.Error(err)
		return
	}
	fp.wmu.Lock()
	defer fp.wmu.Unlock()
	switch {
	case fp.ws != nil:
		fp.ws.WriteMessage(websocket.TextMessage, b) //nolint:errcheck // a dropped client resumes
	case !fp.welcomed:
		fp.early = append(fp.early, b)
	}
}

// welcome sends the welcome on c, then what was held for the participant before it.
func (fp *fakePart) welcome(c *websocket.Conn, w protocol.Welcome) {
	b, err := protocol.Encode(protocol.TypeWelcome, 0, w)
	if err != nil {
		fp.room.t.Error(err)
		return
	}
	fp.wmu.Lock()
	defer fp.wmu.Unlock()
	fp.ws, fp.welcomed = c, true
	for _, m := range append([][]byte{b}, fp.early...) {
		c.WriteMessage(websocket.TextMessage, m) //nolint:errcheck // a dropped client resumes
	}
	fp.early = nil
}

func (r *fakeRoom) broadcast(t string, data any) {
	r.mu.Lock()
	parts := slices.Clone(r.parts)
	r.mu.Unlock()
	for _, fp := range parts {
		fp.send(t, 0, data)
	}
}

func (r *fakeRoom) apply(by string, op protocol.Op) {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.mu.Lock()
	r.seq++
	a := protocol.OpApplied{Seq: r.seq, By: by, Op: op, Time: time.Now().UTC()}
	ApplyOp(&r.state, a)
	r.mu.Unlock()
	r.broadcast(protocol.TypeOpApplied, a)
}

func (r *fakeRoom) part(id string) *fakePart {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, fp := range r.parts {
		if fp.id == id {
			return fp
		}
	}
	r.t.Fatalf("fake server: no participant %s", id)
	return nil
}

// drop closes a participant's websocket without a word, as a lost link would; ops applied
// meanwhile (missed) do not reach it.
func (r *fakeRoom) drop(id string, missed ...protocol.Op) {
	fp := r.part(id)
	fp.wmu.Lock()
	ws := fp.ws
	fp.ws = nil
	fp.wmu.Unlock()
	ws.Close()
	for _, op := range missed {
		r.apply("p0", op)
	}
}

func (r *fakeRoom) forget(id string) {
	fp := r.part(id)
	r.mu.Lock()
	delete(r.tokens, fp.token)
	r.mu.Unlock()
}

func (r *fakeRoom) track(participant, kind string) *fakeTrack {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ft := range r.tracks {
		if ft.info.Participant == participant && ft.info.Kind == kind {
			return ft
		}
	}
	return nil
}

func join(t *testing.T, cfg Config) *Participant {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := Join(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestPublishAndReceive: two participants publish (VP8 with Opus, and H.264); the fake
// server sees them at the files' pace and forwards them to both; frames are counted.
func TestPublishAndReceive(t *testing.T) {
	nets := testNets(t)
	room := newFakeRoom(t, nets())
	a := join(t, Config{URL: room.url, Video: testVideo, Audio: testAudio, Net: nets(), Name: "a"})
	b := join(t, Config{URL: room.url, Video: testH264, Net: nets(), Name: "b"})
	ctx := testCtx(t, 30*time.Second)
	for _, p := range []*Participant{a, b} {
		for _, from := range []string{a.ID(), b.ID()} {
			if err := p.WaitFrames(ctx, from, 20); err != nil {
				t.Fatalf("%s waiting for frames from %s: %v", p.ID(), from, err)
			}
		}
	}

	// Pace, measured at the server over two passes of the files, after the first second.
	vp8, opus, h264 := room.track(a.ID(), "video"), room.track(a.ID(), "audio"), room.track(b.ID(), "video")
	var want float64 // VP8 packets a second: the file's frames packetized as pion does
	var frames [][]byte
	for _, f := range readAll(t, testVideo, newIVFReader) {
		frames = append(frames, f.data)
	}
	want = float64(len(vp8Packets(frames, 1188))) / 2
	// Counted on the media clock (the RTP timestamps), which a busy machine does not slow;
	// by arrival, over the same 5 s of the machine's clock, a track may fall behind on a
	// loaded machine but never run ahead. pace itself is tested on synctest's clock (TestPace).
	for _, ft := range []*fakeTrack{vp8, opus, h264} {
		for {
			ft.mu.Lock()
			done := len(ft.stamps) > 0 && ft.stamps[len(ft.stamps)-1]-ft.stamps[0] > ft.clock*52/10 &&
				time.Since(ft.packets[0]) > 5200*time.Millisecond
			ft.mu.Unlock()
			if done {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	check := func(what string, ft *fakeTrack, markers bool, want float64) {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		times, stamps := ft.packets, ft.stamps
		if markers {
			times, stamps = ft.markers, ft.mstamps
		}
		n, first, last := 0, -1, -1
		for i, ts := range stamps {
			if d := ts - ft.stamps[0]; d >= ft.clock && d < 5*ft.clock {
				n++
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		if got := float64(n) / 4; got < want*0.9 || got > want*1.1 {
			t.Errorf("%s: %.1f a second of media, want %.1f ±10%%", what, got, want)
		}
		// Sent no faster than the media lasts: the window's packets take at least most of
		// its media time to arrive. A busy machine only makes arrivals later or bunches them
		// after a stall, which shortens the span by no more than the stall; a sender that
		// runs ahead (at twice the pace, say) shortens it by half.
		if first >= 0 && last > first {
			media := time.Duration(float64(stamps[last]-stamps[first]) / float64(ft.clock) * float64(time.Second))
			if arrived := times[last].Sub(times[first]); arrived < media*3/4 {
				t.Errorf("%s: %v of media arrived in %v: sent ahead of the media", what, media, arrived)
			}
		}
	}
	check("VP8 packets", vp8, false, want)
	check("VP8 frames", vp8, true, 15)
	check("Opus packets", opus, false, 50)
	check("H.264 frames", h264, true, 15)

	for _, p := range []*Participant{a, b} {
		st := p.Stats()
		if st.Participant != p.ID() || st.JoinTime <= 0 || st.Reconnects != 0 {
			t.Errorf("%s: stats %+v", p.ID(), st)
		}
		if len(st.Tracks) != 3 {
			t.Fatalf("%s receives %d tracks: %+v", p.ID(), len(st.Tracks), st.Tracks)
		}
		for _, tr := range st.Tracks {
			if tr.Packets == 0 || tr.Bytes == 0 || tr.Lost() > tr.Expected/50 {
				t.Errorf("%s: %+v", p.ID(), tr)
			}
			switch {
			case tr.Participant == a.ID() && tr.Kind == "audio":
				if tr.Label != protocol.LabelMicrophone || tr.Codec != webrtc.MimeTypeOpus || tr.Frames != 0 {
					t.Errorf("%s: audio %+v", p.ID(), tr)
				}
			case tr.Kind == "video":
				codec := webrtc.MimeTypeVP8
				if tr.Participant == b.ID() {
					codec = webrtc.MimeTypeH264
				}
				if tr.Label != protocol.LabelCamera || tr.Codec != codec || tr.Keyframes == 0 || tr.Frames < 20 {
					t.Errorf("%s: video %+v", p.ID(), tr)
				}
				if tr.FirstFrame <= 0 || tr.FirstFrame > 10*time.Second {
					t.Errorf("%s: first frame of %s after %v", p.ID(), tr.Track, tr.FirstFrame)
				}
			default:
				t.Errorf("%s: unexpected track %+v", p.ID(), tr)
			}
		}
	}
}

// TestViewOps: ops go out with their send time, come back in the room's order to everyone,
// and make the same view everywhere; chat and errors arrive as events.
func TestViewOps(t *testing.T) {
	room := newFakeRoom(t, nil)
	a := join(t, Config{URL: room.url})
	b := join(t, Config{URL: room.url})
	img := protocol.ImageRef{Study: "1.2.3", Series: "1.2.3.4", Instance: "1.2.3.4.5"}
	line := protocol.Annotation{ID: "a1", Kind: "line", Points: []protocol.Point{{X: 0.1, Y: 0.1}, {X: 0.2, Y: 0.2}}}
	arrow := protocol.Annotation{ID: "a2", Kind: "arrow", Points: []protocol.Point{{X: 0.3, Y: 0.3}, {X: 0.4, Y: 0.4}}, Text: "lesion"}
	moved := line
	moved.Points = []protocol.Point{{X: 0.5, Y: 0.5}, {X: 0.6, Y: 0.6}}
	ops := []protocol.Op{
		{Kind: protocol.OpImage, Image: &img},
		{Kind: protocol.OpWindow, Window: &protocol.Window{Center: 40, Width: 400}},
		{Kind: protocol.OpAnnotationAdd, Annotation: &line},
		{Kind: protocol.OpAnnotationAdd, Annotation: &arrow},
		{Kind: protocol.OpAnnotationUpdate, Annotation: &moved},
		{Kind: protocol.OpAnnotationDelete, AnnotationID: "a2"},
		{Kind: protocol.OpTransform, Transform: &protocol.Transform{Zoom: 2, Rotation: 90}},
		{Kind: protocol.OpReset},
		{Kind: protocol.OpPointer, Pointer: &protocol.Pointer{X: 0.5, Y: 0.5, Visible: true}},
	}
	for _, op := range ops {
		if _, err := a.SendOp(op); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.SendOp(protocol.Op{Kind: protocol.OpWindow}); err == nil {
		t.Error("an op without its field was sent")
	}
	ctx := testCtx(t, 10*time.Second)
	for _, p := range []*Participant{a, b} {
		for i := range ops {
			select {
			case got := <-p.Ops():
				if got.Seq != uint64(i+1) || got.By != a.ID() || got.Op.Kind != ops[i].Kind || got.Op.Sent == 0 {
					t.Errorf("%s: op %d: %+v", p.ID(), i, got)
				}
			case <-ctx.Done():
				t.Fatalf("%s: %d ops of %d", p.ID(), i, len(ops))
			}
		}
	}
	want := protocol.DefaultViewState()
	want.Image = img
	wantLine := moved
	wantLine.Author = a.ID()
	for _, p := range []*Participant{a, b} {
		seq, got := p.View()
		if seq != uint64(len(ops)) || got.Image != want.Image || got.Window != want.Window || got.Transform != want.Transform ||
			got.Pointer == nil || got.Pointer.By != a.ID() || len(got.Annotation) != 1 {
			t.Fatalf("%s: view at %d: %+v", p.ID(), seq, got)
		}
		an := got.Annotation["a1"]
		if an.Author != a.ID() || !slices.Equal(an.Points, moved.Points) || an.Created.IsZero() || an.Updated.Before(an.Created) {
			t.Errorf("%s: annotation %+v", p.ID(), an)
		}
	}
	if n := len(a.Stats().OwnOpLatency); n != len(ops) {
		t.Errorf("a has %d latency samples of its own ops", n)
	}
	if st := b.Stats(); len(st.OpLatency) != len(ops) || len(st.OwnOpLatency) != 0 {
		t.Errorf("b has %d latency samples of others' ops, %d of its own", len(st.OpLatency), len(st.OwnOpLatency))
	}

	// b does not drive: its window op is refused, naming the request.
	ref, err := b.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Width: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Chat("你好"); err != nil {
		t.Fatal(err)
	}
	var refused, chat bool
	for !refused || !chat {
		select {
		case m := <-b.Events():
			switch m.Type {
			case protocol.TypeError:
				var e protocol.Error
				if err := json.Unmarshal(m.Data, &e); err != nil || e.Code != protocol.ErrNotDriver || e.Ref != ref {
					t.Errorf("error %s, want not-driver for %d", m.Data, ref)
				}
				refused = true
			case protocol.TypeChatMessage:
				var c protocol.ChatMessage
				if err := json.Unmarshal(m.Data, &c); err != nil || c.Text != "你好" || c.Participant != a.ID() {
					t.Errorf("chat %s", m.Data)
				}
				chat = true
			}
		case <-ctx.Done():
			t.Fatalf("refused %v, chat %v", refused, chat)
		}
	}
}

// TestResume: after the socket drops, the participant resumes as itself, its view catches up
// with what it missed, and media goes on over the same peer connections.
func TestResume(t *testing.T) {
	nets := testNets(t)
	room := newFakeRoom(t, nets())
	p := join(t, Config{URL: room.url, Video: testVideo, Net: nets(), Reconnect: true})
	ctx := testCtx(t, 30*time.Second)
	id := p.ID()
	if err := p.WaitFrames(ctx, id, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SendOp(protocol.Op{Kind: protocol.OpCine, Cine: &protocol.Cine{Playing: true, FPS: 10}}); err != nil {
		t.Fatal(err)
	}
	waitSeq(ctx, t, p, 1)

	room.drop(id, protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: 50, Width: 350}})
	waitWelcome(ctx, t, p, true)
	if p.ID() != id {
		t.Errorf("resumed as %s, was %s", p.ID(), id)
	}
	seq, view := p.View()
	if seq != 2 || view.Window != (protocol.Window{Center: 50, Width: 350}) || !view.Cine.Playing {
		t.Errorf("view after resume at %d: %+v", seq, view)
	}
	if st := p.Stats(); st.Reconnects != 1 {
		t.Errorf("%d reconnects", st.Reconnects)
	}
	frames := framesFrom(p, id)
	if err := p.WaitFrames(ctx, id, frames+15); err != nil {
		t.Fatal(err)
	}
	if n := room.part(id).pubOffers; n != 1 {
		t.Errorf("%d pub offers: the peer connection should have carried on", n)
	}
	// Ops flow again.
	if _, err := p.SendOp(protocol.Op{Kind: protocol.OpReset}); err != nil {
		t.Fatal(err)
	}
	waitSeq(ctx, t, p, 3)
}

// TestRejoin: when the server no longer knows the participant (grace period over), it joins
// afresh and publishes again on new peer connections.
func TestRejoin(t *testing.T) {
	nets := testNets(t)
	room := newFakeRoom(t, nets())
	p := join(t, Config{URL: room.url, Video: testVideo, Net: nets(), Reconnect: true})
	ctx := testCtx(t, 30*time.Second)
	id := p.ID()
	if err := p.WaitFrames(ctx, id, 5); err != nil {
		t.Fatal(err)
	}
	room.forget(id)
	room.drop(id)
	waitWelcome(ctx, t, p, false)
	if p.ID() == id {
		t.Fatalf("still %s", id)
	}
	if err := p.WaitFrames(ctx, p.ID(), 10); err != nil {
		t.Fatal(err)
	}
}

// TestSubOfferWhilePending: a second sub offer arrives before the first is answered; both
// are answered in order and media flows.
func TestSubOfferWhilePending(t *testing.T) {
	nets := testNets(t)
	room := newFakeRoom(t, nets())
	room.doubleOffer = true
	p := join(t, Config{URL: room.url, Video: testVideo, Audio: testAudio, Net: nets()})
	ctx := testCtx(t, 30*time.Second)
	if err := p.WaitFrames(ctx, p.ID(), 15); err != nil {
		t.Fatal(err)
	}
	fp := room.part(p.ID())
	fp.smu.Lock()
	offers, answers := fp.offers, fp.answers
	fp.smu.Unlock()
	if offers < 3 || answers != offers {
		t.Errorf("%d sub offers, %d answers", offers, answers)
	}
	if n := len(p.Stats().Tracks); n != 2 {
		t.Errorf("%d tracks received", n)
	}
}

// TestICERestart: restarting ICE on both peer connections keeps media flowing; a pub restart
// asked for while an offer waits for its answer follows that answer.
func TestICERestart(t *testing.T) {
	nets := testNets(t)
	room := newFakeRoom(t, nets())
	p := join(t, Config{URL: room.url, Video: testVideo, Net: nets()})
	ctx := testCtx(t, 30*time.Second)
	if err := p.WaitFrames(ctx, p.ID(), 10); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	pub := p.pub
	p.mu.Unlock()
	pub.do(func() {
		p.offer(pub, true)
		p.offer(pub, true)
	})
	p.restartSub()
	fp := room.part(p.ID())
	for {
		fp.smu.Lock()
		done := fp.pubOffers == 3 && fp.restarts == 1 && !fp.negotiating
		fp.smu.Unlock()
		if done {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no ICE restart offers")
		case <-time.After(50 * time.Millisecond):
		}
	}
	frames := framesFrom(p, p.ID())
	if err := p.WaitFrames(ctx, p.ID(), frames+15); err != nil {
		t.Fatal(err)
	}
}

func TestRefused(t *testing.T) {
	room := newFakeRoom(t, nil)
	room.refuse = http.StatusUnauthorized
	_, err := Join(testCtx(t, 5*time.Second), Config{URL: room.url})
	var de *DialError
	if !errors.As(err, &de) || de.StatusCode != http.StatusUnauthorized {
		t.Errorf("refused join: %v", err)
	}
	for _, cfg := range []Config{
		{URL: "http://example.com/live"},
		{URL: room.url, Video: testAudio},
		{URL: room.url, Audio: "testdata/missing.ogg"},
	} {
		if _, err := Join(testCtx(t, 5*time.Second), cfg); err == nil {
			t.Errorf("joined with %+v", cfg)
		}
	}
}

// TestBye: the server's bye stops the participant for good, even with Reconnect.
func TestBye(t *testing.T) {
	room := newFakeRoom(t, nil)
	p := join(t, Config{URL: room.url, Reconnect: true})
	room.part(p.ID()).send(protocol.TypeBye, 0, protocol.Bye{Reason: "consultation closed"})
	ctx := testCtx(t, 10*time.Second)
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("still running after bye")
	}
	var bye *ByeError
	if !errors.As(p.Err(), &bye) || bye.Reason != "consultation closed" {
		t.Errorf("Err() = %v", p.Err())
	}
	var types []string
	for m := range p.Events() { // closed once the participant has stopped
		types = append(types, m.Type)
	}
	if !slices.Equal(types, []string{protocol.TypeWelcome, protocol.TypeBye}) {
		t.Errorf("events %v", types)
	}
	if _, err := p.SendOp(protocol.Op{Kind: protocol.OpReset}); !errors.Is(err, ErrClosed) {
		t.Errorf("op after bye: %v", err)
	}
	if err := p.WaitFrames(ctx, "p9", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitFrames after bye: %v", err)
	}
}

func waitSeq(ctx context.Context, t *testing.T, p *Participant, seq uint64) {
	t.Helper()
	for {
		if s, _ := p.View(); s >= seq {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("view never reached seq %d", seq)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitWelcome waits for the welcome of a reconnect.
func waitWelcome(ctx context.Context, t *testing.T, p *Participant, resumed bool) {
	t.Helper()
	for {
		select {
		case m := <-p.Events():
			if m.Type != protocol.TypeWelcome {
				continue
			}
			var w protocol.Welcome
			if err := json.Unmarshal(m.Data, &w); err != nil {
				t.Fatal(err)
			}
			if w.Resumed == resumed && (resumed || w.Participant != "") && p.Stats().Reconnects > 0 {
				return
			}
		case <-ctx.Done():
			t.Fatal("no welcome after the drop")
		}
	}
}

func framesFrom(p *Participant, id string) int {
	n := 0
	for _, tr := range p.Stats().Tracks {
		if tr.Participant == id {
			n += int(tr.Frames)
		}
	}
	return n
}

// testLogger logs to the test until it ends (pion may log a little later).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

// TestPublishLive: a live VP8 stream on standard input (as `ffmpeg ... -f ivf - | sanping-station join
// -video -` gives) is published as it comes, starting at a keyframe, and ends with its source.
func TestPublishLive(t *testing.T) {
	nets := testNets(t)
	room := newFakeRoom(t, nets())
	data, err := os.ReadFile(testVideo)
	if err != nil {
		t.Fatal(err)
	}
	frames := readAll(t, testVideo, newIVFReader)
	pr, pw := io.Pipe()
	ctx := testCtx(t, 30*time.Second)
	// The producer: the IVF header, then the file's frames again and again at their pace,
	// as a capture device would give them.
	go func() {
		defer pw.Close()
		if _, err := pw.Write(data[:32]); err != nil {
			return
		}
		var pts uint64
		for {
			for _, f := range frames {
				var h [12]byte
				binary.LittleEndian.PutUint32(h[:], uint32(len(f.data)))
				binary.LittleEndian.PutUint64(h[4:], pts)
				pts++
				if _, err := pw.Write(append(h[:], f.data...)); err != nil {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second / 15):
				}
			}
		}
	}()
	a := join(t, Config{URL: room.url, Video: "-", Stdin: pr, Net: nets(), Name: "live"})
	b := join(t, Config{URL: room.url, Net: nets(), Name: "viewer"})
	if err := b.WaitFrames(ctx, a.ID(), 30); err != nil {
		t.Fatalf("frames of the live source: %v", err)
	}
	var kf bool
	for _, tr := range b.Stats().Tracks {
		if tr.Participant == a.ID() {
			kf = tr.Keyframes > 0 && tr.Codec == webrtc.MimeTypeVP8
		}
	}
	if !kf {
		t.Errorf("no VP8 keyframe from the live source: %+v", b.Stats().Tracks)
	}
	pw.Close() // the source ends: the participant stays, its track stops

	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: room.url, Audio: "-", Stdin: strings.NewReader("")}, "video only"},
		{Config{URL: room.url, Video: "-", Imaging: "h264:-", Stdin: strings.NewReader("")}, "only one source"},
		{Config{URL: room.url, Video: "-", Stdin: strings.NewReader("this is not an IVF stream at all, no")}, "not an IVF"},
		{Config{URL: room.url, Video: "vp9:-", Stdin: strings.NewReader("")}, "not .ivf"},
	} {
		if _, err := Join(ctx, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
