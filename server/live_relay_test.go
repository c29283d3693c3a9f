package server

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/internal/udprelay"
)

// TestLiveBadNetworkRelay: the server's media port behind the UDP relay (internal/udprelay),
// on the real network stack rather than pion's vnet. The relay listens on 127.0.0.2:P, the
// server answers on 127.0.0.1:P and advertises 127.0.0.2 (-public-ip), so what a participant
// sends to the server crosses the relay's up direction: here 3% loss and 40 ms each way.
// The participants sit behind an address-restricted NAT (behindNAT), so that what the server
// forwards crosses the relay's down direction too. The clinic's media reaches the doctor
// through both, and the relay's counters and the doctor's audio show the loss.
func TestLiveBadNetworkRelay(t *testing.T) {
	const loss = 0.03
	if !hasNonLoopbackIPv4() {
		t.Skip("behind the NAT a participant has no loopback candidate; this machine has no other address")
	}
	relay, err := udprelay.New(udprelay.Config{Listen: "127.0.0.2:0", Link: udprelay.Link{
		Up:   udprelay.Direction{Delay: 40 * time.Millisecond, Loss: loss, RateBitsPerSecond: 2e6},
		Down: udprelay.Direction{Delay: 40 * time.Millisecond},
		Seed: 5,
	}})
	if err != nil {
		t.Skipf("no second loopback address for the relay: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	port := relay.Addr().Port
	relay.SetTarget(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	f := newAuthzFixtureWith(t, Config{MediaUDP: fmt.Sprintf("127.0.0.1:%d", port), PublicIP: "127.0.0.2"})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := f.consultation(false, "live")
	behind := behindNAT(t, relay.Addr())
	doctor, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["doctor"]), Net: behind})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { doctor.Close() })
	clinic, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["clinic"]), Net: behind, Video: testVideo, Audio: testAudio})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clinic.Close() })
	if err := doctor.WaitFrames(ctx, clinic.ID(), 10); err != nil {
		t.Fatal(err)
	}
	audio := func() (got, expected uint64) {
		for _, tr := range doctor.Stats().Tracks {
			if tr.Participant == clinic.ID() && tr.Kind == "audio" {
				return tr.Packets, tr.Expected
			}
		}
		return 0, 0
	}
	up0 := relay.Up()
	g0, e0 := audio()
	waitUntil(t, 60*time.Second, "2000 datagrams up through the relay", func() bool { return relay.Up().Packets-up0.Packets >= 2000 })
	g1, e1 := audio()
	up := relay.Up()
	through, lost := up.Packets-up0.Packets, up.Lost-up0.Lost
	share := float64(lost) / float64(through+lost)
	t.Logf("relay up: %d datagrams through, %d lost (%.1f%%); down %+v; the doctor got %d of %d of the clinic's audio packets",
		through, lost, share*100, relay.Down(), g1-g0, e1-e0)
	// Binomial: 3% of ~2000 is 60, sd 7.6; about four sd either way.
	if share < loss*0.5 || share > loss*1.5 {
		t.Errorf("%.1f%% lost on the relay, want about %.0f%%", share*100, loss*100)
	}
	// The doctor's receiver sees the loss: audio is not repaired (no NACK for Opus).
	if got := float64(g1-g0) / float64(e1-e0); e1 == e0 || got < 0.9 || got > 0.99 {
		t.Errorf("the doctor got %d of %d of the clinic's audio packets across 3%% loss", g1-g0, e1-e0)
	}
	// The clinic's video (~300 kbit/s) forwarded to the doctor: well over 100 KB in the time.
	if d := relay.Down(); d.Bytes < 100<<10 {
		t.Errorf("the forwarded media did not come back through the relay: %+v", d)
	}
}

func hasNonLoopbackIPv4() bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return true
		}
	}
	return false
}

// behindNAT is the real network as a participant behind an address-restricted NAT sees it:
// only datagrams from relay come in. The server's checks straight to the participant's
// address then fail (on the connection it forwards on, the server is ICE-controlling and
// would otherwise pick that direct pair), and both peer connections go through the relay.
// With a Net, client/live leaves out loopback candidates: the participant's candidates are
// this machine's other addresses, from which it reaches the relay on 127.0.0.2 all the same.
func behindNAT(t *testing.T, relay *net.UDPAddr) transport.Net {
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	return natNet{n, relay}
}

type natNet struct {
	*stdnet.Net
	relay *net.UDPAddr
}

func (n natNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return natConn{c, n.relay}, nil
}

type natConn struct {
	transport.UDPConn
	relay *net.UDPAddr
}

func (c natConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.UDPConn.ReadFrom(b)
		if ua, ok := a.(*net.UDPAddr); err != nil || ok && ua.IP.Equal(c.relay.IP) && ua.Port == c.relay.Port {
			return n, a, err
		}
	}
}

func (c natConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	for {
		n, a, err := c.UDPConn.ReadFromUDP(b)
		if err != nil || a.IP.Equal(c.relay.IP) && a.Port == c.relay.Port {
			return n, a, err
		}
	}
}
