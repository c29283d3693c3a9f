package sfu

import (
	"testing"
	"time"
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
func TestSimulcast(t *testing.T) {
	s := newTestSFU(t, Config{allocEvery: 200 * time.Millisecond, upHold: 600 * time.Millisecond})
	const room = 9
	sub := newTestClient(t, s, room, "viewer", clientOptions{})
	sub.peer.SetMaxBitrate(110_000)
	pub := newTestClient(t, s, room, "probe", clientOptions{publish: true, simulcast: true})

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
