package sfu

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/internal/pionlog"
)

// virtualLAN is a network for a test that runs in a synctest bubble. pion over vnet does no
// real I/O, so everything the SFU and its clients do by the clock (allocation ticks, offer
// resends, keyframe spacing, NACK timing, a publisher's 15 fps) runs on the bubble's fake
// clock: the test does not wait out the seconds it describes, and a busy machine slows it
// down without changing what it sees.
type virtualLAN struct {
	t    testing.TB
	wan  *vnet.Router
	next int
}

func newVirtualLAN(t testing.TB) *virtualLAN {
	t.Helper()
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: pionlog.Factory{Log: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })
	return &virtualLAN{t: t, wan: wan, next: 1}
}

// host adds a machine to the network, with the next free address.
func (l *virtualLAN) host() *vnet.Net {
	l.t.Helper()
	n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{fmt.Sprintf("10.0.0.%d", l.next)}})
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.wan.AddNet(n); err != nil {
		l.t.Fatal(err)
	}
	l.next++
	return n
}

// sfu starts an SFU on its own host, all media on one port.
func (l *virtualLAN) sfu(cfg Config) *SFU {
	l.t.Helper()
	ip := fmt.Sprintf("10.0.0.%d", l.next)
	cfg.Net, cfg.UDPAddr = l.host(), ip+":8443"
	return newTestSFU(l.t, cfg)
}

// client joins a participant from its own host.
func (l *virtualLAN) client(s *SFU, room int64, id string, o clientOptions) *testClient {
	l.t.Helper()
	o.net = l.host()
	return newTestClient(l.t, s, room, id, o)
}

// impairment drops chunks to and from some addresses: a share of them at random positions
// (exactly pct of every hundred, so a short test sees the loss it asks for), or all of them.
type impairment struct {
	mu    sync.Mutex
	rng   *rand.Rand
	loss  map[string]*lossBlock // by IP
	cut   atomic.Bool
	cutIP net.IP
}

type lossBlock struct {
	pct     int
	drop    [100]bool
	i       int
	dropped int
	big     int // dropped chunks of more than 400 bytes: video
}

func (m *impairment) touches(c vnet.Chunk, ip string) bool {
	src, _ := c.SourceAddr().(*net.UDPAddr)
	dst, _ := c.DestinationAddr().(*net.UDPAddr)
	return src != nil && src.IP.String() == ip || dst != nil && dst.IP.String() == ip
}

func (m *impairment) filter(c vnet.Chunk) bool {
	if m.cut.Load() && m.touches(c, m.cutIP.String()) {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ip, b := range m.loss {
		if !m.touches(c, ip) {
			continue
		}
		if b.i%len(b.drop) == 0 {
			for j := range b.drop {
				b.drop[j] = j < b.pct
			}
			m.rng.Shuffle(len(b.drop), func(x, y int) { b.drop[x], b.drop[y] = b.drop[y], b.drop[x] })
		}
		drop := b.drop[b.i%len(b.drop)]
		b.i++
		if drop {
			b.dropped++
			if len(c.UserData()) > 400 {
				b.big++
			}
		}
		return !drop
	}
	return true
}

func (m *impairment) setLoss(ip net.IP, pct int) {
	m.mu.Lock()
	m.loss[ip.String()] = &lossBlock{pct: pct}
	m.mu.Unlock()
}

// TestImpairedNetwork runs a consultation over a virtual 4G-like network: 150 ms RTT, 3%
// loss on the clinic's link (2% on the doctor's), and the clinic's uplink limited to
// ~1 Mbit/s (a token bucket in front of the server) while it sends ~1.3 Mbit/s of simulcast.
// Audio keeps flowing; the clinic's estimate (from the SFU's TWCC feedback) falls and it
// drops its top layer, and the doctor keeps getting a layer that still runs; NACKs repair
// loss both ways. After the clinic's link is cut for 3 s, media resumes.
//
// On synctest's clock: the counts over 5 s are of 5 s of media however busy the machine.
func TestImpairedNetwork(t *testing.T) { synctest.Test(t, testImpairedNetwork) }

func testImpairedNetwork(t *testing.T) {
	lf := pionlog.Factory{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", MinDelay: 75 * time.Millisecond, LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	serverIP, clinicIP, doctorIP := net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2"), net.ParseIP("10.0.0.3")
	imp := &impairment{rng: rand.New(rand.NewSource(1)), loss: map[string]*lossBlock{}, cutIP: clinicIP}
	wan.AddChunkFilter(imp.filter)
	serverNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{serverIP.String()}})
	if err != nil {
		t.Fatal(err)
	}
	// Everything the server receives passes a 1 Mbit/s bucket: in effect the clinic's
	// uplink, since the doctor only sends feedback.
	shaped, err := vnet.NewQueue(serverNet, vnet.NewTBFQueue(1_000_000, 10_000, 50_000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shaped.Close() })
	clinicNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{clinicIP.String()}})
	doctorNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{doctorIP.String()}})
	for _, n := range []vnet.NIC{shaped, clinicNet, doctorNet} {
		if err := wan.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })

	s := newTestSFU(t, Config{Net: serverNet, UDPAddr: serverIP.String() + ":8443", allocEvery: 250 * time.Millisecond, upHold: time.Second})
	const room = 13
	doctor := newTestClient(t, s, room, "doctor", clientOptions{net: doctorNet})
	clinic := newTestClient(t, s, room, "clinic", clientOptions{
		net: clinicNet, publish: true, simulcast: true, bwe: true,
		shares: [3]int{6, 1, 1}, fScale: 3, // q 50, h 300, f 900 kbit/s
	})
	waitFor(t, 15*time.Second, "the doctor to receive the clinic", func() bool {
		return receivesFrom(doctor, clinic, 50)
	})
	d := downFor(t, s, room, "doctor", clinic.videoID())
	docPeer, _ := s.Peer(room, "doctor")
	clinicPeer, _ := s.Peer(room, "clinic")
	// (The doctor publishes nothing, so only its sub and the clinic's pub connect.)
	for _, pc := range []*webrtc.PeerConnection{docPeer.sub, clinicPeer.pub} {
		if port, _ := selectedPort(t, pc); port != 8443 {
			t.Errorf("media on port %d, want the shared 8443", port)
		}
	}

	imp.setLoss(clinicIP, 3)
	imp.setLoss(doctorIP, 2)
	waitFor(t, 15*time.Second, "video to adapt to the uplink", func() bool {
		cur, _ := d.layers()
		return clinic.dropF.Load() && cur >= 0 && cur < 2
	})
	sent0 := clinic.audioSent.Load()
	got0, _ := doctor.track(clinic.audioID())
	vid0, _ := doctor.track(clinic.videoID())
	time.Sleep(5 * time.Second)
	sent1 := clinic.audioSent.Load()
	got1, _ := doctor.track(clinic.audioID())
	vid1, _ := doctor.track(clinic.videoID())
	ratio := float64(got1.packets-got0.packets) / float64(sent1-sent0)
	if ratio < 0.9 {
		t.Errorf("%.0f%% of the clinic's audio reached the doctor", ratio*100)
	}
	if vid1.frames-vid0.frames < 40 {
		t.Errorf("%d video frames in 5 s after adapting", vid1.frames-vid0.frames)
	}
	t.Logf("audio %.1f%% over %d packets", ratio*100, sent1-sent0)

	imp.cut.Store(true)
	time.Sleep(3 * time.Second)
	imp.cut.Store(false)
	restored := time.Now()
	a0, _ := doctor.track(clinic.audioID())
	v0, _ := doctor.track(clinic.videoID())
	waitFor(t, 5*time.Second, "media to resume after the cut", func() bool {
		a, _ := doctor.track(clinic.audioID())
		v, _ := doctor.track(clinic.videoID())
		return a.packets > a0.packets+10 && v.frames > v0.frames+3
	})
	t.Logf("media resumed %v after the link came back", time.Since(restored).Round(10*time.Millisecond))

	// Loss was repaired both ways: the SFU asked the clinic to resend, and resent video the
	// doctor's link lost from its cache.
	st := s.Stats()
	imp.mu.Lock()
	for ip, b := range imp.loss {
		t.Logf("%s: %d of %d chunks dropped (%d video)", ip, b.dropped, b.i, b.big)
	}
	doctorVideoLost := imp.loss[doctorIP.String()].big
	imp.mu.Unlock()
	if st.NACKsSent == 0 || st.NACKsReceived == 0 || (doctorVideoLost >= 2 && st.Retransmits == 0) {
		t.Errorf("no repair counted: %+v", st)
	}
	t.Logf("stats %+v", st)
}
