package sfu

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestLostOffersRecover: a subscriber whose first two sub offers are lost on the way (its
// websocket dropped them) gets the publisher's media once the SFU takes the unanswered offer
// back and offers again; before, pion refused the rollback and the subscriber never received
// anything. On synctest's clock: the resends come offerTimeout apart, without waiting for them.
func TestLostOffersRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lan := newVirtualLAN(t)
		s := lan.sfu(Config{})
		const room = 21
		pub := lan.client(s, room, "clinic", clientOptions{publish: true})
		sub := lan.client(s, room, "doctor", clientOptions{dropOffers: 2})
		start := time.Now()
		// Each lost offer costs offerTimeout and up to an allocation tick; connecting, under 2 s.
		within := 2*(offerTimeout+s.cfg.allocEvery) + 2*time.Second
		waitFor(t, within, "the subscriber to receive after two lost offers", func() bool {
			return receivesFrom(sub, pub, 30)
		})
		if lost := sub.offersLost.Load(); lost < 3 {
			t.Fatalf("%d offers reached the subscriber, want the two lost and one more", lost)
		}
		t.Logf("receiving %v after joining, with two offers lost", time.Since(start))
	})
}

// TestStuckSubscriberSparesPublisher: a subscriber that never answers receives nothing, and
// the SFU does not ask the publisher for keyframes on its behalf (each costs every
// subscriber of the room several frames' worth of bandwidth). On synctest's clock, so the
// count over 3 s is of 3 s of the SFU's timers, however busy the machine.
func TestStuckSubscriberSparesPublisher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lan := newVirtualLAN(t)
		s := lan.sfu(Config{allocEvery: 100 * time.Millisecond})
		const room = 22
		pub := lan.client(s, room, "clinic", clientOptions{publish: true})
		watcher := lan.client(s, room, "township", clientOptions{})
		waitFor(t, 15*time.Second, "the first subscriber to receive", func() bool { return receivesFrom(watcher, pub, 30) })
		stuck := lan.client(s, room, "doctor", clientOptions{dropOffers: 1 << 30})
		waitFor(t, time.Second, "the stuck subscriber's first offer", func() bool { return stuck.offersLost.Load() > 0 })
		before := s.Stats().KeyframeRequests
		// Long enough for the offer to be resent (offerTimeout) and for the allocator to
		// have asked for the stuck subscriber's layer many times over.
		time.Sleep(offerTimeout + time.Second)
		asked := s.Stats().KeyframeRequests - before
		if n := stuck.offersLost.Load(); n < 2 {
			t.Fatalf("%d offers to the stuck subscriber in %v, want it resent", n, offerTimeout+time.Second)
		}
		// The publisher's own keyframe interval and the watcher's loss-free link need none.
		if asked > 1 {
			t.Errorf("%d keyframe requests in %v while one subscriber was stuck", asked, offerTimeout+time.Second)
		}
		t.Logf("%d keyframe requests with a stuck subscriber", asked)
	})
}

// TestSlowAnswerer: a subscriber slower to answer than offerTimeout (a browser on a busy
// machine) answers the first offer and then its resent copy. By the time that second answer
// arrives the SFU has made its next offer (for a second publisher's tracks): the late answer
// must not be taken as the answer to that offer, or the second publisher's tracks are
// never negotiated with the subscriber and it never receives them.
func TestSlowAnswerer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lan := newVirtualLAN(t)
		s := lan.sfu(Config{})
		const room = 23
		clinic := lan.client(s, room, "clinic", clientOptions{publish: true})
		doctor := lan.client(s, room, "doctor", clientOptions{answerDelay: offerTimeout + time.Second})
		waitFor(t, 5*time.Second, "the doctor's first offer", func() bool { return doctor.offersLost.Load() > 0 })
		township := lan.client(s, room, "township", clientOptions{publish: true})
		waitFor(t, 40*time.Second, "the doctor to receive both publishers", func() bool {
			return receivesFrom(doctor, clinic, 30) && receivesFrom(doctor, township, 30)
		})
	})
}
