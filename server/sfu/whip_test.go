package sfu

import (
	"testing"
	"time"

	"github.com/sanping/sanping/protocol"
)

// TestWHIP: an encoder publishes through WHIP; a participant receives its video as imaging.
func TestWHIP(t *testing.T) {
	var events eventLog
	s := newTestSFU(t, Config{OnEvent: events.add})
	const room = 12
	viewer := newTestClient(t, s, room, "doctor", clientOptions{})
	enc := newTestClient(t, s, room, "ultrasound", clientOptions{publish: true, whip: true})
	waitFor(t, 30*time.Second, "the doctor to receive the WHIP feed", func() bool {
		return receivesFrom(viewer, enc, 30)
	})
	tracks := enc.peer.Tracks()
	labels := map[string]string{}
	for _, tr := range tracks {
		labels[tr.Kind] = tr.Label
	}
	if labels["video"] != protocol.LabelImaging || labels["audio"] != protocol.LabelMicrophone {
		t.Errorf("WHIP labels: %v", labels)
	}
	enc.close()
	waitFor(t, 30*time.Second, "the feed to end", func() bool {
		rt, _ := viewer.track(enc.videoID())
		return rt.ended
	})
}
