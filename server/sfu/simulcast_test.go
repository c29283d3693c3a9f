package sfu

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"
)

// downFor finds the down-track carrying track id to a peer.
func downFor(t *testing.T, s *SFU, room int64, peer, id string) *downTrack {
	t.Helper()
	p, ok := s.Peer(room, peer)
	if !ok {
		t.Fatalf("no peer %s", peer)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for ut, d := range p.downs {
		if ut.id == id {
			return d
		}
	}
	return nil
}

// TestSimulcast: a subscriber held to a low bitrate gets layer q; when the limit is lifted
// it steps up to f; when the publisher stops sending f (as a browser does when its uplink
// is short) it moves down to h. Its sequence numbers stay continuous and timestamps
// monotonic across all the switches.
//
// It runs on synctest's clock (see virtualLAN): the holds and the allocator's ticks are the
// subject, and the machine's load must not decide whether a layer was measured in time.
func TestSimulcast(t *testing.T) { synctest.Test(t, testSimulcast) }

func testSimulcast(t *testing.T) {
	lan := newVirtualLAN(t)
	s := lan.sfu(Config{allocEvery: 200 * time.Millisecond, upHold: 600 * time.Millisecond})
	const room = 9
	sub := lan.client(s, room, "viewer", clientOptions{})
	sub.peer.SetMaxBitrate(110_000)
	pub := lan.client(s, room, "probe", clientOptions{publish: true, simulcast: true})

	var d *downTrack
	waitFor(t, 10*time.Second, "the viewer to get video", func() bool {
		rt, ok := sub.track(pub.videoID())
		if d == nil {
			d = downFor(t, s, room, "viewer", pub.videoID())
		}
		return ok && rt.frames >= 15
	})
	// Let all three layers run and be measured; the viewer must stay on q.
	time.Sleep(1500 * time.Millisecond)
	if cur, _ := d.layers(); cur != 0 {
		t.Fatalf("held to 110 kbit/s, the viewer gets layer %d, want q", cur)
	}
	low, _ := sub.track(pub.videoID())

	sub.peer.SetMaxBitrate(0)
	waitFor(t, 10*time.Second, "the viewer to step up to f", func() bool {
		cur, _ := d.layers()
		return cur == 2
	})
	time.Sleep(700 * time.Millisecond)
	high, _ := sub.track(pub.videoID())

	pub.dropF.Store(true)
	waitFor(t, 5*time.Second, "the viewer to move down to h", func() bool {
		cur, _ := d.layers()
		return cur == 1
	})
	time.Sleep(700 * time.Millisecond)
	rt, _ := sub.track(pub.videoID())
	if rt.frames < high.frames+5 {
		t.Errorf("%d frames after moving down", rt.frames-high.frames)
	}

	// Layer f sends whole frames, q a sixth: the bytes per frame show which one arrived.
	perFrame := func(sizes []int, frames int) int {
		n := 0
		for _, s := range sizes {
			n += s
		}
		return n / max(frames, 1)
	}
	qBytes := perFrame(low.sizes, low.frames)
	fBytes := perFrame(high.sizes[len(low.sizes):], high.frames-low.frames)
	if fBytes < 2*qBytes {
		t.Errorf("bytes per frame: %d on q, %d after stepping up", qBytes, fBytes)
	}
	for i := 1; i < len(rt.seqs); i++ {
		if rt.seqs[i] != rt.seqs[i-1]+1 {
			t.Fatalf("sequence jumps from %d to %d at packet %d of %d", rt.seqs[i-1], rt.seqs[i], i, len(rt.seqs))
		}
		if int32(rt.tss[i]-rt.tss[i-1]) < 0 {
			t.Fatalf("timestamp goes back from %d to %d at packet %d", rt.tss[i-1], rt.tss[i], i)
		}
	}
	st := s.Stats()
	if st.LayerUp < 2 || st.LayerDown < 1 || st.SwitchesTo["h"] < 2 || st.SwitchesTo["f"] == 0 {
		t.Errorf("switches: up %d, to %v", st.LayerUp, st.SwitchesTo)
	}
	t.Logf("%d packets, q %d B/frame, f %d B/frame, stats %+v", len(rt.seqs), qBytes, fBytes, st)
}

// TestSimulcastStepsUpOnCleanLink: with a hold far longer than the test, a subscriber whose
// limit is lifted still climbs from q to f: its link is clean, so each step waits only for
// the estimate and the new layer's keyframe.
// On synctest's clock, as TestSimulcast.
func TestSimulcastStepsUpOnCleanLink(t *testing.T) { synctest.Test(t, testSimulcastStepsUpOnCleanLink) }

func testSimulcastStepsUpOnCleanLink(t *testing.T) {
	lan := newVirtualLAN(t)
	s := lan.sfu(Config{allocEvery: 200 * time.Millisecond, upHold: time.Minute})
	const room = 10
	sub := lan.client(s, room, "viewer", clientOptions{})
	sub.peer.SetMaxBitrate(110_000)
	pub := lan.client(s, room, "probe", clientOptions{publish: true, simulcast: true})
	var d *downTrack
	waitFor(t, 10*time.Second, "the viewer to get q", func() bool {
		if d == nil {
			if d = downFor(t, s, room, "viewer", pub.videoID()); d == nil {
				return false
			}
		}
		rt, ok := sub.track(pub.videoID())
		cur, _ := d.layers()
		return ok && rt.frames >= 15 && cur == 0
	})
	sub.peer.SetMaxBitrate(0)
	lifted := time.Now()
	waitFor(t, 10*time.Second, "the viewer to step up to f", func() bool {
		cur, _ := d.layers()
		return cur == 2
	})
	t.Logf("q to f in %v", time.Since(lifted).Round(10*time.Millisecond))
}

// TestPausedCameraResumes: a subscriber whose estimate, as pion's GCC's once it has backed
// off, never exceeds 1.5 times what the SFU sends it starts with the camera paused (the
// estimate has room for the audio only). On a clean link the SFU tries the camera's lowest
// layer again, and the estimate follows it up. Before, the camera stayed paused for good:
// with audio alone arriving, the estimate never made room for it.
// On synctest's clock, as TestSimulcast.
func TestPausedCameraResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lan := newVirtualLAN(t)
		s := lan.sfu(Config{allocEvery: 200 * time.Millisecond})
		const room = 11
		sub := lan.client(s, room, "viewer", clientOptions{})
		est := &sendCappedEstimator{p: sub.peer}
		sub.peer.allocMu.Lock()
		sub.peer.bwe = est
		sub.peer.allocMu.Unlock()
		pub := lan.client(s, room, "clinic", clientOptions{publish: true, simulcast: true})
		waitFor(t, 10*time.Second, "the viewer to get the audio", func() bool {
			rt, ok := sub.track(pub.audioID())
			return ok && rt.packets > 50
		})
		if d := downFor(t, s, room, "viewer", pub.videoID()); d == nil || func() bool { _, target := d.layers(); return target >= 0 }() {
			t.Fatalf("the camera is not paused with audio alone estimated")
		}
		paused := time.Now()
		waitFor(t, 10*time.Second, "the camera to resume", func() bool {
			rt, ok := sub.track(pub.videoID())
			return ok && rt.frames >= 30
		})
		t.Logf("the camera resumed %v after it was found paused; estimate %d bit/s", time.Since(paused).Round(100*time.Millisecond), est.GetTargetBitrate())
		// And stays: the estimate has followed what is sent (15 fps).
		before, _ := sub.track(pub.videoID())
		time.Sleep(5 * time.Second)
		after, _ := sub.track(pub.videoID())
		if n := after.frames - before.frames; n < 60 {
			t.Errorf("%d frames in the 5 s after resuming, want the camera kept", n)
		}
	})
}

// sendCappedEstimator estimates as pion's GCC does in additive increase, after it has backed
// off: never more than 1.5 times the rate the SFU sends the subscriber (rate_controller.go),
// on a link that shows no congestion.
type sendCappedEstimator struct {
	cc.BandwidthEstimator
	p *Peer

	mu    sync.Mutex
	bytes int64
	at    time.Time
	rate  int
}

func (e *sendCappedEstimator) GetTargetBitrate() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b int64
	for _, d := range e.p.downList() {
		b += d.bytes.Load()
	}
	now := time.Now()
	switch dt := now.Sub(e.at); {
	case e.at.IsZero():
		e.bytes, e.at = b, now
	case dt >= 500*time.Millisecond:
		e.rate = int(float64(b-e.bytes) * 8 / dt.Seconds())
		e.bytes, e.at = b, now
	}
	return e.rate * 3 / 2
}

func (e *sendCappedEstimator) GetStats() map[string]any {
	return map[string]any{"state": "increase", "usage": "normal", "averageLoss": 0.0}
}

// fakeEstimator reports fixed GCC statistics.
type fakeEstimator struct {
	cc.BandwidthEstimator
	stats map[string]any
}

func (f fakeEstimator) GetStats() map[string]any { return f.stats }

func TestCleanLink(t *testing.T) {
	s := newTestSFU(t, Config{})
	gcc := func(state, usage string, loss float64) map[string]any {
		return map[string]any{"state": state, "usage": usage, "averageLoss": loss}
	}
	for _, c := range []struct {
		name   string
		stats  map[string]any // nil: no estimator yet
		rrLoss uint32         // fraction lost in the receiver report, /256
		want   bool
	}{
		{"no estimator", nil, 0, false},
		{"no feedback yet", gcc("increase", "overuse", 0), 0, false},
		{"growing", gcc("increase", "normal", 0), 0, true},
		{"queue draining", gcc("increase", "underuse", 0.01), 0, true},
		{"backing off", gcc("decrease", "overuse", 0), 0, false},
		{"holding", gcc("hold", "normal", 0), 0, false},
		{"lossy by feedback", gcc("increase", "normal", 0.05), 0, false},
		{"lossy by receiver report", gcc("increase", "normal", 0), 20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &Peer{s: s}
			if c.stats != nil {
				p.bwe = fakeEstimator{stats: c.stats}
			}
			d := &downTrack{}
			d.rrLoss.Store(c.rrLoss)
			d.rrAt.Store(s.nanotime())
			if got := p.cleanLink([]*downTrack{d}); got != c.want {
				t.Errorf("cleanLink = %v, want %v", got, c.want)
			}
		})
	}
}

func TestNominalRate(t *testing.T) {
	for _, c := range []struct {
		rids []string
		want []int64
	}{
		{[]string{"q", "h", "f"}, []int64{150_000, 400_000, 1_200_000}},
		{[]string{"q", "f"}, []int64{150_000, 1_200_000}}, // live.js for a 640x480 camera
		{[]string{"h", "f"}, []int64{400_000, 1_200_000}},
		{[]string{"0", "1", "2"}, []int64{150_000, 400_000, 1_200_000}},
		{[]string{"lo", "hi"}, []int64{400_000, 1_200_000}},
	} {
		ut := &upTrack{kind: webrtc.RTPCodecTypeVideo}
		for i, rid := range c.rids {
			ut.layers = append(ut.layers, &layer{ut: ut, idx: i, rid: rid})
		}
		for i, want := range c.want {
			if got := nominalRate(ut, i); got != want {
				t.Errorf("%v: layer %s: %d, want %d", c.rids, c.rids[i], got, want)
			}
		}
	}
}
