package sfu

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/sanping/sanping/protocol"
)

// testMedia is client/live's test clip: 2 s of VP8 at 15 fps (keyframe every second) and
// Opus in 20 ms packets.
type testMedia struct {
	video [][]byte
	audio [][]byte
	h264  [][]byte // access units in Annex B, 15 fps, an IDR every second
}

var (
	mediaOnce sync.Once
	mediaClip testMedia
	mediaErr  error
)

func loadMedia(t testing.TB) *testMedia {
	t.Helper()
	mediaOnce.Do(func() {
		dir := filepath.Join("..", "..", "client", "live", "testdata")
		f, err := os.Open(filepath.Join(dir, "video.ivf"))
		if err != nil {
			mediaErr = err
			return
		}
		defer f.Close()
		iv, _, err := ivfreader.NewWith(f)
		if err != nil {
			mediaErr = err
			return
		}
		for {
			frame, _, err := iv.ParseNextFrame()
			if err != nil {
				break
			}
			mediaClip.video = append(mediaClip.video, frame)
		}
		h, err := os.Open(filepath.Join(dir, "video.h264"))
		if err != nil {
			mediaErr = err
			return
		}
		defer h.Close()
		hr, err := h264reader.NewReader(h)
		if err != nil {
			mediaErr = err
			return
		}
		var au []byte
		for {
			nal, err := hr.NextNAL()
			if err != nil {
				break
			}
			au = append(append(au, 0, 0, 0, 1), nal.Data...)
			if t := nal.UnitType; t == h264reader.NalUnitTypeCodedSliceNonIdr || t == h264reader.NalUnitTypeCodedSliceIdr {
				mediaClip.h264 = append(mediaClip.h264, au)
				au = nil
			}
		}
		a, err := os.Open(filepath.Join(dir, "audio.ogg"))
		if err != nil {
			mediaErr = err
			return
		}
		defer a.Close()
		og, _, err := oggreader.NewWith(a)
		if err != nil {
			mediaErr = err
			return
		}
		for {
			page, _, err := og.ParseNextPage()
			if err != nil {
				break
			}
			if len(page) >= 8 && string(page[:8]) == "OpusTags" {
				continue
			}
			mediaClip.audio = append(mediaClip.audio, page)
		}
	})
	if mediaErr != nil {
		t.Fatalf("test media: %v", mediaErr)
	}
	if len(mediaClip.video) == 0 || len(mediaClip.audio) == 0 || len(mediaClip.h264) == 0 {
		t.Fatalf("test media: %d VP8 frames, %d H.264 frames, %d audio packets", len(mediaClip.video), len(mediaClip.h264), len(mediaClip.audio))
	}
	return &mediaClip
}

// clientOptions says how a test participant connects and what it sends.
type clientOptions struct {
	publish   bool   // VP8 camera + Opus microphone
	simulcast bool   // the camera in three layers q, h, f (built here from the clip)
	label     string // of the video track (default camera)
	tcp       bool   // ICE over TCP only
	net       transport.Net
	bwe       bool   // the publisher runs GCC on its pub connection and drops layer f when short
	fScale    int    // layer f, or the camera without simulcast, sends frames padded to this many times their size
	h264      bool   // the camera sends H.264 instead of VP8
	shares    [3]int // simulcast: layer q, h, f sends 1/share of each frame (default 6, 2, 1)
	record    bool   // PeerOptions.Record
	whip      bool   // publish through SFU.WHIP (no sub connection, no trickle)

	// noRTX: the client does not take RTX (client/live does not), so repairs come on the
	// media SSRC where pion's NACK generator sees them, as Chrome sees RTX repairs.
	noRTX bool
	// dropOffers: the first this many sub offers are lost on the way (a dropped websocket).
	dropOffers int32
	// answerDelay: the client takes this long to answer each sub offer (a browser on a busy
	// machine), and answers every offer it gets, in order, resent copies included.
	answerDelay time.Duration

	// nack configures the receiving NACK generator (pion's defaults without).
	nack []nack.GeneratorOption
}

// testClient is a participant as client/live will be: a pion "pub" connection that offers
// and a "sub" connection that answers the SFU's offers, signaling straight into the SFU.
type testClient struct {
	t    testing.TB
	id   string
	room int64
	s    *SFU
	opts clientOptions
	peer *Peer
	pub  *webrtc.PeerConnection
	sub  *webrtc.PeerConnection

	sigs chan protocol.Signal
	stop chan struct{}
	wg   sync.WaitGroup

	video, audio *webrtc.TrackLocalStaticSample
	layers       []*webrtc.TrackLocalStaticRTP // simulcast q, h, f
	videoSender  *webrtc.RTPSender
	keyframeReq  atomic.Bool
	audioSent    atomic.Int64
	pubBWE       atomic.Pointer[cc.BandwidthEstimator]
	dropF        atomic.Bool // simulcast publisher stopped sending layer f
	offersLost   atomic.Int32

	mu         sync.Mutex
	remote     map[string]*remoteTrack
	pending    map[string][]webrtc.ICECandidateInit
	subUp      time.Time // sub connection connected
	candidates []string  // the SFU's, as signaled
	pubUp      bool
	pubStates  []webrtc.PeerConnectionState
}

// remoteTrack counts what a client receives on one track.
type remoteTrack struct {
	id, stream, kind string
	packets          int
	frames           int
	keyframes        int
	bytes            int
	firstAt          time.Time
	firstKeyAt       time.Time
	ended            bool
	seqs             []uint16
	tss              []uint32
	sizes            []int
	rx               []rxPacket // video, in order of arrival
}

// rxPacket is one received video packet, for judging frames after the fact.
type rxPacket struct {
	seq        uint16
	ts         uint32
	at         time.Time
	marker     bool
	frameStart bool // first packet of a frame (VP8: S set, partition 0)
	keyframe   bool
}

func newClientAPI(t testing.TB, o clientOptions, onBWE func(cc.BandwidthEstimator)) *webrtc.API {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if o.noRTX {
		// As client/live: pion's NACK generator cannot see repairs that come over RTX.
		fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
		for _, c := range []webrtc.RTPCodecParameters{
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: 96},
			{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: fb,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
		} {
			if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
				t.Fatal(err)
			}
		}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	} else if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if onBWE != nil {
		ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
			return gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(1_000_000), gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))
		})
		if err != nil {
			t.Fatal(err)
		}
		ccf.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { onBWE(e) })
		reg.Add(ccf)
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
			t.Fatal(err)
		}
	}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(me, reg, webrtc.WithNackGeneratorOptions(o.nack...)); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// As libwebrtc does (pion keeps 64 packets): a repair arriving 1 s late at 500 kbit/s is
	// ~60 packets behind and would be dropped as a replay.
	se.SetSRTPReplayProtectionWindow(srtpReplayWindow)
	if o.net != nil {
		se.SetNet(o.net)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetICETimeouts(3*time.Second, 10*time.Second, time.Second)
	} else {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil })
		if o.tcp {
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
		} else {
			se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
}

func newTestClient(t testing.TB, s *SFU, room int64, id string, o clientOptions) *testClient {
	t.Helper()
	c := &testClient{
		t: t, id: id, room: room, s: s, opts: o,
		sigs:    make(chan protocol.Signal, 256),
		stop:    make(chan struct{}),
		remote:  map[string]*remoteTrack{},
		pending: map[string][]webrtc.ICECandidateInit{},
	}
	var err error
	var onBWE func(cc.BandwidthEstimator)
	if o.bwe {
		onBWE = func(e cc.BandwidthEstimator) { c.pubBWE.Store(&e) }
	}
	c.pub, err = newClientAPI(t, o, onBWE).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if o.whip {
		c.publish()
		t.Cleanup(c.close)
		return c
	}
	c.sub, err = newClientAPI(t, o, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c.pub.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		c.mu.Lock()
		c.pubStates = append(c.pubStates, st)
		c.pubUp = st == webrtc.PeerConnectionStateConnected
		c.mu.Unlock()
	})
	c.pub.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		if st == webrtc.ICEConnectionStateFailed && o.publish {
			// The client restarts pub by offering again; the SFU restarts sub on request.
			go func() {
				c.offerPub(true)
				c.signal(protocol.Signal{PC: protocol.PCSubscribe, Restart: true})
			}()
		}
	})
	c.sub.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			c.mu.Lock()
			c.subUp = time.Now()
			c.mu.Unlock()
		}
	})
	for name, pc := range map[string]*webrtc.PeerConnection{protocol.PCPublish: c.pub, protocol.PCSubscribe: c.sub} {
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			if cand == nil {
				return
			}
			init := cand.ToJSON()
			c.signal(protocol.Signal{PC: name, Candidate: &protocol.ICECandidate{
				Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex,
			}})
		})
	}
	c.sub.OnTrack(c.onTrack)

	c.peer, err = s.Join(room, id, func(sig protocol.Signal) {
		select {
		case c.sigs <- sig:
		case <-c.stop:
		}
	}, PeerOptions{Record: o.record})
	if err != nil {
		t.Fatal(err)
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.loop() }()
	if o.publish {
		c.publish()
	}
	t.Cleanup(c.close)
	return c
}

func (c *testClient) signal(sig protocol.Signal) {
	if err := c.peer.Signal(sig); err != nil && !errors.Is(err, ErrClosed) {
		c.t.Logf("%s: signal %s: %v", c.id, sig.PC, err)
	}
}

// loop applies the SFU's signals.
func (c *testClient) loop() {
	for {
		select {
		case <-c.stop:
			return
		case sig := <-c.sigs:
			c.handle(sig)
		}
	}
}

func (c *testClient) handle(sig protocol.Signal) {
	pc := c.pub
	if sig.PC == protocol.PCSubscribe {
		pc = c.sub
	}
	switch {
	case sig.SDP != nil && sig.SDP.Type == "answer":
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sig.SDP.SDP}); err != nil {
			c.t.Logf("%s: pub answer: %v", c.id, err)
			return
		}
		c.flush(sig.PC, pc)
	case sig.SDP != nil && sig.SDP.Type == "offer":
		if c.offersLost.Add(1) <= c.opts.dropOffers {
			return
		}
		if c.opts.answerDelay > 0 {
			select {
			case <-time.After(c.opts.answerDelay):
			case <-c.stop:
				return
			}
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sig.SDP.SDP}); err != nil {
			c.t.Logf("%s: sub offer: %v", c.id, err)
			return
		}
		c.flush(sig.PC, pc)
		ans, err := pc.CreateAnswer(nil)
		if err != nil {
			c.t.Logf("%s: sub answer: %v", c.id, err)
			return
		}
		c.signal(protocol.Signal{PC: sig.PC, SDP: &protocol.SessionDesc{Type: "answer", SDP: ans.SDP}})
		if err := pc.SetLocalDescription(ans); err != nil {
			c.t.Logf("%s: sub answer: %v", c.id, err)
		}
	case sig.Candidate != nil:
		c.mu.Lock()
		c.candidates = append(c.candidates, sig.Candidate.Candidate)
		c.mu.Unlock()
		init := webrtc.ICECandidateInit{Candidate: sig.Candidate.Candidate, SDPMid: sig.Candidate.SDPMid, SDPMLineIndex: sig.Candidate.SDPMLineIndex}
		if pc.RemoteDescription() == nil {
			c.mu.Lock()
			c.pending[sig.PC] = append(c.pending[sig.PC], init)
			c.mu.Unlock()
			return
		}
		if err := pc.AddICECandidate(init); err != nil {
			c.t.Logf("%s: candidate: %v", c.id, err)
		}
	}
}

// sawCandidate reports a signaled SFU candidate containing s; c.mu is held.
func (c *testClient) sawCandidate(s string) bool {
	for _, cand := range c.candidates {
		if strings.Contains(cand, s) {
			return true
		}
	}
	return false
}

func (c *testClient) flush(name string, pc *webrtc.PeerConnection) {
	c.mu.Lock()
	cands := c.pending[name]
	delete(c.pending, name)
	c.mu.Unlock()
	for _, init := range cands {
		if err := pc.AddICECandidate(init); err != nil {
			c.t.Logf("%s: candidate: %v", c.id, err)
		}
	}
}

func (c *testClient) videoID() string { return c.id + "-cam" }
func (c *testClient) audioID() string { return c.id + "-mic" }

// publish adds a camera and a microphone and offers them.
func (c *testClient) publish() {
	t := c.t
	label := c.opts.label
	if label == "" {
		label = protocol.LabelCamera
	}
	var err error
	sendonly := webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}
	if c.opts.simulcast {
		for _, rid := range []string{"q", "h", "f"} {
			tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, c.videoID(), c.id, webrtc.WithRTPStreamID(rid))
			if err != nil {
				t.Fatal(err)
			}
			c.layers = append(c.layers, tr)
		}
		tr, err := c.pub.AddTransceiverFromTrack(c.layers[0], sendonly)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range c.layers[1:] {
			if err := tr.Sender().AddEncoding(l); err != nil {
				t.Fatal(err)
			}
		}
		c.videoSender = tr.Sender()
	} else {
		mime := webrtc.MimeTypeVP8
		if c.opts.h264 {
			mime = webrtc.MimeTypeH264
		}
		c.video, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: mime}, c.videoID(), c.id)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := c.pub.AddTransceiverFromTrack(c.video, sendonly)
		if err != nil {
			t.Fatal(err)
		}
		c.videoSender = tr.Sender()
	}
	c.audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, c.audioID(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	atr, err := c.pub.AddTransceiverFromTrack(c.audio, sendonly)
	if err != nil {
		t.Fatal(err)
	}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); drainRTCP(atr.Sender(), nil) }()
	go func() {
		defer c.wg.Done()
		drainRTCP(c.videoSender, func(p rtcp.Packet) {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				c.keyframeReq.Store(true)
			}
		})
	}()
	c.offerPub(false)
	if c.opts.bwe && c.opts.simulcast {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.adapt() }()
	}
	c.wg.Add(2)
	go func() { defer c.wg.Done(); c.sendVideo() }()
	go func() { defer c.wg.Done(); c.sendAudio() }()
}

func (c *testClient) offerPub(restart bool) {
	offer, err := c.pub.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
	if err != nil {
		c.t.Fatal(err)
	}
	if c.opts.whip {
		c.whipOffer(offer)
		return
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		c.t.Fatal(err)
	}
	label := c.opts.label
	if label == "" {
		label = protocol.LabelCamera
	}
	c.signal(protocol.Signal{PC: protocol.PCPublish, SDP: &protocol.SessionDesc{Type: "offer", SDP: offer.SDP}, Tracks: map[string]protocol.Track{
		c.videoID(): {ID: c.videoID(), Kind: "video", Label: label},
		c.audioID(): {ID: c.audioID(), Kind: "audio", Label: protocol.LabelMicrophone},
	}})
}

// whipOffer publishes the way an encoder does over WHIP: one complete offer, one complete
// answer.
func (c *testClient) whipOffer(offer webrtc.SessionDescription) {
	gathered := webrtc.GatheringCompletePromise(c.pub)
	if err := c.pub.SetLocalDescription(offer); err != nil {
		c.t.Fatal(err)
	}
	<-gathered
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answer, p, err := c.s.WHIP(ctx, c.room, c.id, c.pub.LocalDescription().SDP, PeerOptions{Record: c.opts.record})
	if err != nil {
		c.t.Fatal(err)
	}
	c.peer = p
	if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatal(err)
	}
}

// adapt does what a browser does when its uplink estimate falls: it stops sending the top
// simulcast layer.
func (c *testClient) adapt() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		if e := c.pubBWE.Load(); e != nil && (*e).GetTargetBitrate() < 900_000 {
			if !c.dropF.Swap(true) {
				c.t.Logf("%s: uplink estimate %d bit/s: dropping layer f", c.id, (*e).GetTargetBitrate())
			}
		}
	}
}

func drainRTCP(s *webrtc.RTPSender, fn func(rtcp.Packet)) {
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		if fn != nil {
			for _, p := range pkts {
				fn(p)
			}
		}
	}
}

const frameInterval = time.Second / 15

// sendVideo plays the clip in a loop in real time, going on from its next keyframe when
// asked for one (the clips have a keyframe every 15 frames).
func (c *testClient) sendVideo() {
	m := loadMedia(c.t)
	frames := m.video
	if c.opts.h264 {
		frames = m.h264
	}
	tick := time.NewTicker(frameInterval)
	defer tick.Stop()
	var sim *simulcastSender
	if c.opts.simulcast {
		sim = newSimulcastSender(c)
	}
	i := 0
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		if c.keyframeReq.Swap(false) {
			i = (i + 14) / 15 * 15 % len(frames)
		}
		frame := frames[i%len(frames)]
		i = (i + 1) % len(frames)
		if sim != nil {
			sim.send(frame)
			continue
		}
		if c.opts.fScale > 1 {
			frame = append(append([]byte(nil), frame...), make([]byte, len(frame)*(c.opts.fScale-1))...)
		}
		if err := c.video.WriteSample(media.Sample{Data: frame, Duration: frameInterval}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return
		}
	}
}

func (c *testClient) sendAudio() {
	m := loadMedia(c.t)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		if err := c.audio.WriteSample(media.Sample{Data: m.audio[i%len(m.audio)], Duration: 20 * time.Millisecond}); err != nil {
			return
		}
		c.audioSent.Add(1)
	}
}

// simulcastSender packetizes each frame three times, at three sizes (the lower layers are
// the frame cut short: not decodable, but with real VP8 keyframe headers and distinct
// bitrates), with the mid and rid header extensions a browser sends.
type simulcastSender struct {
	c          *testClient
	payloaders [3]*codecs.VP8Payloader
	seq        [3]uint16
	ts         uint32
	midID      uint8
	ridID      uint8
	mid        string
}

// layerShare is the part of each frame a layer sends: q ~1/6, h ~1/2, f all.
var layerShare = [3]int{6, 2, 1}

func newSimulcastSender(c *testClient) *simulcastSender {
	s := &simulcastSender{c: c}
	for i := range s.payloaders {
		s.payloaders[i] = &codecs.VP8Payloader{EnablePictureID: true}
		s.seq[i] = uint16(i * 10000)
	}
	return s
}

func (s *simulcastSender) send(frame []byte) {
	if s.midID == 0 {
		for _, e := range s.c.videoSender.GetParameters().HeaderExtensions {
			switch e.URI {
			case sdp.SDESMidURI:
				s.midID = uint8(e.ID)
			case sdp.SDESRTPStreamIDURI:
				s.ridID = uint8(e.ID)
			}
		}
		for _, tr := range s.c.pub.GetTransceivers() {
			if tr.Sender() == s.c.videoSender {
				s.mid = tr.Mid()
			}
		}
		if s.midID == 0 || s.ridID == 0 || s.mid == "" {
			return // not negotiated yet
		}
	}
	s.ts += 90000 / 15
	for i, l := range s.c.layers {
		if i == 2 && s.c.dropF.Load() {
			continue
		}
		share := layerShare[i]
		if s.c.opts.shares[i] > 0 {
			share = s.c.opts.shares[i]
		}
		data := frame[:max(len(frame)/share, min(20, len(frame)))]
		if i == 2 && s.c.opts.fScale > 1 {
			data = append(append([]byte(nil), frame...), make([]byte, len(frame)*(s.c.opts.fScale-1))...)
		}
		payloads := s.payloaders[i].Payload(1200, data)
		for j, pl := range payloads {
			p := &rtp.Packet{Header: rtp.Header{
				Version: 2, SequenceNumber: s.seq[i], Timestamp: s.ts + uint32(i)*1000, Marker: j == len(payloads)-1,
			}, Payload: pl}
			s.seq[i]++
			_ = p.Header.SetExtension(s.midID, []byte(s.mid))
			_ = p.Header.SetExtension(s.ridID, []byte(l.RID()))
			if err := l.WriteRTP(p); err != nil {
				return
			}
		}
	}
}

// onTrack counts a received track's packets, frames and keyframes until it ends.
func (c *testClient) onTrack(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) {
	// The SFU's sender reports reach pion's report interceptor only when read: without
	// them the receiver reports carry no LSR and the SFU measures no RTT (RFC 3550 6.4.1).
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := rcv.Read(buf); err != nil {
				return
			}
		}
	}()
	rt := &remoteTrack{id: tr.ID(), stream: tr.StreamID(), kind: tr.Kind().String()}
	c.mu.Lock()
	c.remote[tr.ID()] = rt
	c.mu.Unlock()
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	ck := codecKindOf(tr.Codec().MimeType)
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			c.mu.Lock()
			rt.ended = true
			c.mu.Unlock()
			return
		}
		now := time.Now()
		c.mu.Lock()
		if rt.packets == 0 {
			rt.firstAt = now
		}
		rt.packets++
		rt.bytes += len(p.Payload)
		if video {
			if isKeyframeStart(ck, p.Payload) {
				rt.keyframes++
				if rt.firstKeyAt.IsZero() {
					rt.firstKeyAt = now
				}
			}
			if p.Marker {
				rt.frames++
			}
			if len(rt.seqs) < 20000 {
				rt.seqs = append(rt.seqs, p.SequenceNumber)
				rt.tss = append(rt.tss, p.Timestamp)
				rt.sizes = append(rt.sizes, len(p.Payload))
				rt.rx = append(rt.rx, rxPacket{
					seq: p.SequenceNumber, ts: p.Timestamp, at: now, marker: p.Marker,
					frameStart: ck == codecVP8 && len(p.Payload) > 0 && p.Payload[0]&0x17 == 0x10,
					keyframe:   isKeyframeStart(ck, p.Payload),
				})
			}
		}
		c.mu.Unlock()
	}
}

// track returns a copy of what was received on a track.
func (c *testClient) track(id string) (remoteTrack, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.remote[id]
	if !ok {
		return remoteTrack{}, false
	}
	cp := *rt
	cp.seqs = append([]uint16(nil), rt.seqs...)
	cp.tss = append([]uint32(nil), rt.tss...)
	cp.sizes = append([]int(nil), rt.sizes...)
	cp.rx = append([]rxPacket(nil), rt.rx...)
	return cp, true
}

func (c *testClient) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	if c.peer != nil {
		c.peer.Close()
	}
	_ = c.pub.Close()
	if c.sub != nil {
		_ = c.sub.Close()
	}
	c.wg.Wait()
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
