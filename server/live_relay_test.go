package server

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/internal/udprelay"
)

// TestLiveBadNetworkRelay: the server's media port behind the UDP relay (internal/udprelay),
// on the real network stack rather than pion's vnet. The relay listens on 127.0.0.2:P, the
// server answers on 127.0.0.1:P and advertises 127.0.0.2 (-public-ip), so what a participant
// sends to the server crosses the relay's up direction: here 3% loss and 40 ms each way.
// The clinic's media reaches the doctor through it and the relay's counters show the loss.
// (The server's own connection to each participant for what it forwards may pair directly
// with the participant's loopback address: the server is ICE-controlling there.)
func TestLiveBadNetworkRelay(t *testing.T) {
	const loss = 0.03
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
	doctor, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["doctor"])})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { doctor.Close() })
	clinic, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["clinic"]), Video: testVideo, Audio: testAudio})
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
	t.Logf("relay up: %d datagrams through, %d lost (%.1f%%); the doctor got %d of %d of the clinic's audio packets",
		through, lost, share*100, g1-g0, e1-e0)
	// Binomial: 3% of ~2000 is 60, sd 7.6; about four sd either way.
	if share < loss*0.5 || share > loss*1.5 {
		t.Errorf("%.1f%% lost on the relay, want about %.0f%%", share*100, loss*100)
	}
	// The doctor's receiver sees the loss: audio is not repaired (no NACK for Opus).
	if got := float64(g1-g0) / float64(e1-e0); e1 == e0 || got < 0.9 || got > 0.99 {
		t.Errorf("the doctor got %d of %d of the clinic's audio packets across 3%% loss", g1-g0, e1-e0)
	}
	if d := relay.Down(); d.Packets == 0 {
		t.Errorf("nothing came back through the relay: %+v", d)
	}
}
