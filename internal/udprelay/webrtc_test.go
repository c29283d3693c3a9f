package udprelay

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestWebRTCThroughRelay: two pion peers whose ICE can only meet through the relay. The
// answerer answers on one UDP port on 127.0.0.1 and advertises 127.0.0.2, where the relay
// listens on the same port (as the Sanping server does with -media-udp and -public-ip); the
// offer reaches it without candidates, so the answerer knows the offerer only as the relay's
// upstream socket. RTP sent without NACK arrives short by about the relay's loss.
func TestWebRTCThroughRelay(t *testing.T) {
	const loss, packets = 0.05, 1500
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	relay, err := New(Config{Listen: "127.0.0.2:0", Link: Link{
		Up:   Direction{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond, Loss: loss},
		Down: Direction{Delay: 20 * time.Millisecond},
		Seed: 9,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	port := relay.Addr().Port
	relay.SetTarget(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})

	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	se := webrtc.SettingEngine{LoggerFactory: quiet}
	se.SetICEUDPMux(webrtc.NewICEUDPMux(quiet.NewLogger("udpmux"), udp))
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: []string{"127.0.0.2"},
		AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}); err != nil {
		t.Fatal(err)
	}
	answerer := newPeer(t, se)
	se = webrtc.SettingEngine{LoggerFactory: quiet}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	offerer := newPeer(t, se)

	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "relay")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := offerer.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seqs := map[uint16]bool{}
	answerer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			seqs[p.SequenceNumber] = true
			mu.Unlock()
		}
	})
	connected := make(chan struct{})
	var once sync.Once
	offerer.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})

	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	// Without the offerer's candidates the answerer can only answer what reaches it.
	bare := *offerer.LocalDescription()
	var lines []string
	for l := range strings.SplitSeq(bare.SDP, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			lines = append(lines, l)
		}
	}
	bare.SDP = strings.Join(lines, "\r\n")
	if err := answerer.SetRemoteDescription(bare); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if !strings.Contains(answerer.LocalDescription().SDP, "127.0.0.2") {
		t.Fatalf("the answer does not advertise the relay:\n%s", answerer.LocalDescription().SDP)
	}
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("the peers never connected through the relay")
	}

	// 1500 packets of 160 bytes at 500 a second (640 kbit/s).
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := range packets {
		<-tick.C
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: make([]byte, 160)}
		if err := track.WriteRTP(p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // the last ones in flight
	mu.Lock()
	got := len(seqs)
	mu.Unlock()
	lost := 1 - float64(got)/packets
	up, down := relay.Up(), relay.Down()
	t.Logf("received %d of %d RTP packets (%.1f%% lost); relay up %+v, down %+v", got, packets, lost*100, up, down)
	// Binomial: 5% of 1500 is 75, sd 8.4; the bounds are wider for the first packets, which
	// may arrive before the answerer reads the track.
	if lost < loss*0.4 || lost > loss*1.8 {
		t.Errorf("%.1f%% of RTP lost, want about %.0f%%", lost*100, loss*100)
	}
	if up.Packets < packets*8/10 || down.Packets == 0 {
		t.Errorf("the media did not cross the relay: up %+v, down %+v", up, down)
	}
}

func newPeer(t *testing.T, se webrtc.SettingEngine) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	// No interceptors: no NACK, so the receiver sees the link's loss as it is.
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}
