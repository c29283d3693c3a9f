package server

import (
	"context"
	"math/rand"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/logging"
	"github.com/pion/transport/v5/vnet"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/internal/tcpproxy"
	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/protocol"
)

// linkFilter impairs a virtual network: random loss on chunks to or from some addresses, and
// cutting one address off entirely.
type linkFilter struct {
	mu   sync.Mutex
	rng  *rand.Rand
	loss map[string]int // percent, by IP
	cut  atomic.Pointer[string]
}

func (l *linkFilter) pass(c vnet.Chunk) bool {
	src, dst := hostOf(c.SourceAddr()), hostOf(c.DestinationAddr())
	if ip := l.cut.Load(); ip != nil && (src == *ip || dst == *ip) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, pct := range l.loss {
		if src == ip || dst == ip {
			return l.rng.Intn(100) >= pct
		}
	}
	return true
}

func hostOf(a net.Addr) string {
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

// TestLiveBadNetwork: a consultation over an emulated 4G link (pion vnet): 150 ms round trip,
// 3% loss on the clinic's link and its uplink limited to 1 Mbit/s; the websockets cross a
// TCP proxy adding the same delay. Audio and the view sync keep going; when the clinic's
// network is cut for 3 s (media and websocket), it comes back within 5 s of the link
// returning, as the same participant with the same view, and its media flows again.
func TestLiveBadNetwork(t *testing.T) {
	w := newWAN4G(t)
	lf, clinicNet, doctorNet := w.lf, w.clinic, w.doctor
	f := newAuthzFixtureWith(t, Config{mediaNet: w.server})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := f.consultation(false, "live")
	clinicLink, doctorLink := w.proxy(f), w.proxy(f)
	via := wsVia
	doctor, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["doctor"]), Net: doctorNet, Dialer: via(doctorLink), Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { doctor.Close() })
	clinic, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["clinic"]), Net: clinicNet, Dialer: via(clinicLink),
		Video: testVideo, Audio: testAudio, Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clinic.Close() })
	if err := doctor.WaitFrames(ctx, clinic.ID(), 10); err != nil {
		t.Fatal(err)
	}
	lf.mu.Lock()
	lf.loss["10.9.0.2"] = 3
	lf.mu.Unlock()

	audio := func() (got, expected uint64) {
		for _, tr := range doctor.Stats().Tracks {
			if tr.Participant == clinic.ID() && tr.Kind == "audio" {
				return tr.Packets, tr.Expected
			}
		}
		return 0, 0
	}
	frames := func() uint64 {
		var n uint64
		for _, tr := range doctor.Stats().Tracks {
			if tr.Participant == clinic.ID() && tr.Kind == "video" {
				n += tr.Frames
			}
		}
		return n
	}
	// Five seconds under loss, the doctor driving at 5 ops/s: audio arrives (>= 90% with the
	// loss both ways: a share of what was sent, however fast the machine sends), video keeps
	// coming, and the doctor's ops reach the clinic.
	g0, e0 := audio()
	f0 := frames()
	for i := range 25 {
		if _, err := doctor.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: float64(i), Width: 400}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	g1, e1 := audio()
	if e1 == e0 || float64(g1-g0)/float64(e1-e0) < 0.9 {
		t.Errorf("audio under 3%% loss: %d of %d packets", g1-g0, e1-e0)
	}
	waitUntil(t, 30*time.Second, "15 video frames under loss", func() bool { return frames()-f0 >= 15 })
	waitView(t, clinic, doctor, 30*time.Second)

	// The clinic's network goes away for 3 s, media and websocket alike.
	lf.cut.Store(new("10.9.0.2"))
	clinicLink.Cut()
	time.Sleep(time.Second)
	// Meanwhile the doctor goes on driving.
	for i := range 5 {
		doctor.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: float64(100 + i), Width: 800}})
	}
	time.Sleep(2 * time.Second)
	lf.cut.Store(nil)
	clinicLink.Restore()
	back := time.Now()
	waitView(t, clinic, doctor, 30*time.Second)
	if clinic.Stats().Reconnects == 0 {
		t.Errorf("the clinic never reconnected")
	}
	f1 := frames()
	waitUntil(t, 30*time.Second, "the clinic's video to resume", func() bool { return frames() >= f1+5 })
	took := time.Since(back)
	t.Logf("back in sync and sending %v after the link returned", took.Round(10*time.Millisecond))
	// The target is 5 s. Under the race detector, beside other packages' tests on two cores,
	// pion's ICE restart alone can take longer: there the test holds to the recovery itself.
	if took > 5*time.Second && !testtool.RaceEnabled {
		t.Errorf("the clinic was back %v after the link returned, want within 5 s", took.Round(10*time.Millisecond))
	}
}

// waitView waits until a's copy of the view equals b's.
func waitView(t *testing.T, a, b *live.Participant, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		sa, va := a.View()
		sb, vb := b.View()
		if sa == sb && sa > 0 && mustJSON(va) == mustJSON(vb) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("views differ after %v: seq %d vs %d", within, sa, sb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wan4G is an emulated 4G network (pion vnet): the server at 10.9.0.1, the clinic at
// 10.9.0.2 and the doctor at 10.9.0.3, 150 ms round trip, what reaches the server through a
// 1 Mbit/s bucket (in effect the clinic's uplink), and a filter for loss and cuts.
type wan4G struct {
	lf                     *linkFilter
	server, clinic, doctor *vnet.Net
	t                      *testing.T
}

func newWAN4G(t *testing.T) *wan4G {
	t.Helper()
	lf := &linkFilter{rng: rand.New(rand.NewSource(7)), loss: map[string]int{}}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.9.0.0/24", MinDelay: 75 * time.Millisecond, LoggerFactory: quiet})
	if err != nil {
		t.Fatal(err)
	}
	wan.AddChunkFilter(lf.pass)
	serverNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.9.0.1"}})
	clinicNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.9.0.2"}})
	doctorNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.9.0.3"}})
	shaped, err := vnet.NewQueue(serverNet, vnet.NewTBFQueue(1_000_000, 10_000, 50_000))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shaped.Close() })
	for _, n := range []vnet.NIC{shaped, clinicNet, doctorNet} {
		if err := wan.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wan.Stop() })
	return &wan4G{lf: lf, server: serverNet, clinic: clinicNet, doctor: doctorNet, t: t}
}

// proxy is a TCP proxy to f's server adding the same 75 ms each way, for a websocket.
func (w *wan4G) proxy(f *authzFixture) *tcpproxy.Proxy {
	p, err := tcpproxy.Start(strings.TrimPrefix(f.srv.URL, "http://"), 75*time.Millisecond)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { p.Close() })
	return p
}

// wsVia dials websockets through p.
func wsVia(p *tcpproxy.Proxy) *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", p.Addr())
	}}
}
