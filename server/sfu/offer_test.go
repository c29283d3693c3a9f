package sfu

import (
	"testing"
	"time"
)

// TestLostOffersRecover: a subscriber whose first two sub offers are lost on the way (its
// websocket dropped them) gets the publisher's media once the SFU takes the unanswered offer
// back and offers again; before, pion refused the rollback and the subscriber never received
// anything.
func TestLostOffersRecover(t *testing.T) {
	s := newTestSFU(t, Config{})
	const room = 21
	pub := newTestClient(t, s, room, "clinic", clientOptions{publish: true})
	sub := newTestClient(t, s, room, "doctor", clientOptions{dropOffers: 2})
	start := time.Now()
	waitFor(t, 3*offerTimeout+10*time.Second, "the subscriber to receive after two lost offers", func() bool {
		return receivesFrom(sub, pub, 30)
	})
	if lost := sub.offersLost.Load(); lost < 3 {
		t.Fatalf("%d offers reached the subscriber, want the two lost and one more", lost)
	}
	t.Logf("receiving %v after joining, with two offers lost", time.Since(start).Round(10*time.Millisecond))
}

// TestStuckSubscriberSparesPublisher: a subscriber that never answers receives nothing, and
// the SFU does not ask the publisher for keyframes on its behalf (each costs every
// subscriber of the room several frames' worth of bandwidth).
func TestStuckSubscriberSparesPublisher(t *testing.T) {
	s := newTestSFU(t, Config{allocEvery: 100 * time.Millisecond})
	const room = 22
	pub := newTestClient(t, s, room, "clinic", clientOptions{publish: true})
	watcher := newTestClient(t, s, room, "township", clientOptions{})
	waitFor(t, 15*time.Second, "the first subscriber to receive", func() bool { return receivesFrom(watcher, pub, 30) })
	stuck := newTestClient(t, s, room, "doctor", clientOptions{dropOffers: 1 << 30})
	time.Sleep(time.Second) // its first offer is out and unanswered
	before := s.Stats().KeyframeRequests
	time.Sleep(3 * time.Second)
	asked := s.Stats().KeyframeRequests - before
	if stuck.offersLost.Load() == 0 {
		t.Fatal("the stuck subscriber was never offered anything")
	}
	// The publisher's own keyframe interval and the watcher's loss-free link need none.
	if asked > 1 {
		t.Errorf("%d keyframe requests in 3 s while one subscriber was stuck", asked)
	}
	t.Logf("%d keyframe requests in 3 s with a stuck subscriber", asked)
}
