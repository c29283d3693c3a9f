package sfu

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/webrtc/v4"
)

func newTestSFU(t testing.TB, cfg Config) *SFU {
	t.Helper()
	if cfg.UDPAddr == "" && cfg.Net == nil {
		cfg.UDPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
		if os.Getenv("SFU_TEST_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eventLog collects the SFU's events.
type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) find(fn func(Event) bool) (Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.ev {
		if fn(e) {
			return e, true
		}
	}
	return Event{}, false
}

// receivesFrom reports whether c gets media on both of from's tracks.
func receivesFrom(c, from *testClient, minPackets int) bool {
	for _, id := range []string{from.videoID(), from.audioID()} {
		rt, ok := c.track(id)
		if !ok || rt.packets < minPackets || rt.stream != from.id {
			return false
		}
		if rt.kind == "video" && (rt.keyframes == 0 || rt.frames < minPackets/4) {
			return false
		}
	}
	return true
}

func selectedPort(t *testing.T, pc *webrtc.PeerConnection) (int, webrtc.ICEProtocol) {
	t.Helper()
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected candidate pair: %v", err)
	}
	return int(pair.Local.Port), pair.Local.Protocol
}

// TestRoom: three participants see and hear each other; a fourth joins late and gets a
// keyframe quickly; one leaves and the others' sub connections drop its tracks. All media
// goes through the one UDP port. On synctest's clock (see virtualLAN): how soon the late
// joiner gets keyframes is the SFU's keyframe requests and their spacing, not the machine's load.
func TestRoom(t *testing.T) { synctest.Test(t, testRoom) }

func testRoom(t *testing.T) {
	var events eventLog
	lan := newVirtualLAN(t)
	s := lan.sfu(Config{OnEvent: events.add, QualityInterval: time.Second})
	const room = 7
	a := lan.client(s, room, "a", clientOptions{publish: true})
	b := lan.client(s, room, "b", clientOptions{publish: true})
	c := lan.client(s, room, "c", clientOptions{publish: true})
	all := []*testClient{a, b, c}
	waitFor(t, 15*time.Second, "everyone to receive everyone", func() bool {
		for _, x := range all {
			for _, y := range all {
				if x != y && !receivesFrom(x, y, 40) {
					return false
				}
			}
		}
		return true
	})

	d := lan.client(s, room, "d", clientOptions{publish: true})
	waitFor(t, 10*time.Second, "the late joiner to receive everyone", func() bool {
		return receivesFrom(d, a, 20) && receivesFrom(d, b, 20) && receivesFrom(d, c, 20)
	})
	d.mu.Lock()
	subUp := d.subUp
	d.mu.Unlock()
	for _, y := range all {
		rt, _ := d.track(y.videoID())
		wait := rt.firstKeyAt.Sub(subUp)
		t.Logf("late joiner: %s's first keyframe %v after its sub connection came up", y.id, wait.Round(time.Millisecond))
		if wait > time.Second {
			t.Errorf("late joiner waited %v for %s's first keyframe", wait, y.id)
		}
		if !rt.firstKeyAt.Equal(rt.firstAt) {
			t.Errorf("late joiner got %s's video before a keyframe", y.id)
		}
	}

	port := s.UDPAddr().(*net.UDPAddr).Port
	for _, id := range []string{"a", "b", "c", "d"} {
		p, ok := s.Peer(room, id)
		if !ok {
			t.Fatalf("peer %s not found", id)
		}
		for _, pc := range []*webrtc.PeerConnection{p.pub, p.sub} {
			if got, proto := selectedPort(t, pc); got != port || proto != webrtc.ICEProtocolUDP {
				t.Errorf("peer %s: media on %s port %d, want the shared UDP port %d", id, proto, got, port)
			}
		}
	}

	a.close()
	rest := []*testClient{b, c, d}
	waitFor(t, 10*time.Second, "a's tracks to end for the others", func() bool {
		for _, x := range rest {
			for _, id := range []string{a.videoID(), a.audioID()} {
				if rt, ok := x.track(id); !ok || !rt.ended {
					return false
				}
			}
		}
		return true
	})
	for _, x := range rest {
		for _, tr := range x.sub.GetTransceivers() {
			if r := tr.Receiver(); r != nil && r.Track() != nil && r.Track().StreamID() == "a" &&
				tr.Direction() != webrtc.RTPTransceiverDirectionInactive && tr.Direction() != webrtc.RTPTransceiverDirectionRecvonly {
				t.Errorf("%s: a's m-line %s is still %s", x.id, tr.Mid(), tr.Direction())
			}
		}
		// b, c and d still hear each other.
		for _, y := range rest {
			if x == y {
				continue
			}
			before, _ := x.track(y.audioID())
			waitFor(t, 5*time.Second, x.id+" to keep hearing "+y.id, func() bool {
				now, _ := x.track(y.audioID())
				return now.packets > before.packets+10
			})
		}
	}
	if st := s.Stats(); st.PacketsForwarded == 0 || st.KeyframeRequests == 0 {
		t.Errorf("stats: %+v", st)
	}
	for _, kind := range []string{EventTracks, EventConnection, EventQuality, EventState} {
		e, ok := events.find(func(e Event) bool { return e.Kind == kind && e.Peer == "b" })
		if !ok {
			t.Errorf("no %q event for b", kind)
			continue
		}
		switch kind {
		case EventConnection:
			if e.Connection != "udp" {
				t.Errorf("b's connection: %q", e.Connection)
			}
		case EventTracks:
			if len(e.Tracks) == 0 {
				t.Errorf("b's tracks event lists nothing")
			}
		}
	}
	if _, ok := events.find(func(e Event) bool {
		return e.Kind == EventQuality && e.Peer == "b" && e.Quality.BitrateIn > 50_000 && e.Quality.BitrateOut > 50_000 && e.Quality.FPS > 5
	}); !ok {
		t.Errorf("no quality event for b with media both ways")
	}
}

// TestICETCP: a client that can only use TCP connects through the ICE-TCP port.
func TestICETCP(t *testing.T) {
	s := newTestSFU(t, Config{TCPAddr: "127.0.0.1:0"})
	const room = 8
	pub := newTestClient(t, s, room, "udp", clientOptions{publish: true})
	sub := newTestClient(t, s, room, "tcp", clientOptions{publish: true, tcp: true})
	waitFor(t, 30*time.Second, "media both ways over TCP", func() bool {
		return receivesFrom(sub, pub, 30) && receivesFrom(pub, sub, 30)
	})
	p, _ := s.Peer(room, "tcp")
	port := s.TCPAddr().(*net.TCPAddr).Port
	for _, pc := range []*webrtc.PeerConnection{p.pub, p.sub} {
		if got, proto := selectedPort(t, pc); got != port || proto != webrtc.ICEProtocolTCP {
			t.Errorf("TCP client on %s port %d, want TCP port %d", proto, got, port)
		}
	}
	if c := p.Connection(); c != "tcp" {
		t.Errorf("connection %q, want tcp", c)
	}
}

// TestPublicIPs: behind 1:1 NAT the SFU advertises the public address, with the shared
// port, instead of the private one.
func TestPublicIPs(t *testing.T) {
	s := newTestSFU(t, Config{PublicIPs: []string{"203.0.113.7"}})
	c := newTestClient(t, s, 14, "nat", clientOptions{publish: true})
	port := s.UDPAddr().(*net.UDPAddr).Port
	waitFor(t, 30*time.Second, "the public candidate", func() bool {
		desc := c.pub.RemoteDescription()
		if desc != nil && strings.Contains(desc.SDP, "203.0.113.7 "+strconv.Itoa(port)) {
			return true
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.sawCandidate("203.0.113.7 " + strconv.Itoa(port))
	})
}
