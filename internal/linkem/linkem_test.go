package linkem

import (
	"testing"
	"time"
)

// TestReserve: the bucket spaces chunks at the rate and refuses what would overfill the
// queue, saying how long until there is room. The clock is the test's.
func TestReserve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPath(Direction{RateBitsPerSecond: 8000, Queue: 1000}, 1) // 1000 bytes a second
	for _, step := range []struct {
		at   time.Duration
		n    int
		sent time.Duration // when it has left, from t0; 0 with wait
		wait time.Duration
		what string
	}{
		{0, 500, 500 * time.Millisecond, 0, "an idle link sends at once"},
		{0, 500, time.Second, 0, "behind the first: 500 bytes queued, room for 500"},
		{0, 500, 0, 500 * time.Millisecond, "the queue is full: room in half a second"},
		{500 * time.Millisecond, 500, 1500 * time.Millisecond, 0, "half a second later there is room"},
		{5 * time.Second, 2000, 7 * time.Second, 0, "an idle link takes a chunk larger than the queue"},
	} {
		sent, wait := p.Reserve(t0.Add(step.at), step.n)
		var got time.Duration
		if wait == 0 {
			got = sent.Sub(t0)
		}
		if got != step.sent || wait != step.wait {
			t.Errorf("%s: sent at %v, wait %v; want %v, %v", step.what, got, wait, step.sent, step.wait)
		}
	}
	if sent, wait := NewPath(Direction{}, 1).Reserve(t0, 1<<20); !sent.Equal(t0) || wait != 0 {
		t.Errorf("an unlimited link: sent %v, wait %v", sent, wait)
	}
}

// TestSetRate: a path's rate changes while it is in use, and 0 lifts the limit.
func TestSetRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPath(Direction{RateBitsPerSecond: 8000, Queue: 1000}, 1)
	if sent, _ := p.Reserve(t0, 500); sent.Sub(t0) != 500*time.Millisecond {
		t.Errorf("at 8 kbit/s: 500 bytes sent after %v", sent.Sub(t0))
	}
	p.SetRate(16000)
	if sent, _ := p.Reserve(t0.Add(time.Second), 500); sent.Sub(t0) != 1250*time.Millisecond {
		t.Errorf("at 16 kbit/s: 500 bytes sent at %v", sent.Sub(t0))
	}
	p.SetRate(0)
	if sent, wait := p.Reserve(t0.Add(time.Second), 1<<20); !sent.Equal(t0.Add(time.Second)) || wait != 0 {
		t.Errorf("unlimited again: sent %v, wait %v", sent.Sub(t0), wait)
	}
}

// TestLoss: over many draws the share lost is the configured mean, and Gilbert-Elliott's
// losses come in longer runs than Bernoulli's at the same mean.
func TestLoss(t *testing.T) {
	const draws = 200_000
	ge := Direction{Burst: &GilbertElliott{Enter: 0.01, Leave: 0.25, LossBad: 0.5}}
	for _, tc := range []struct {
		name   string
		d      Direction
		minRun float64 // mean length of a run of losses
		maxRun float64
	}{
		{"none", Direction{}, 0, 0},
		{"bernoulli 2%", Direction{Loss: 0.02}, 1, 1.1},
		{"gilbert-elliott", ge, 1.4, 2.5}, // runs in the bad state: 1/(1-(1-Leave)*LossBad) = 1.6
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPath(tc.d, 7)
			lost, runs, prev := 0, 0, false
			for range draws {
				l := p.Lost()
				if l {
					lost++
					if !prev {
						runs++
					}
				}
				prev = l
			}
			share, want := float64(lost)/draws, tc.d.MeanLoss()
			if share < want*0.9 || share > want*1.1 {
				t.Errorf("%.3f%% lost, want %.3f%%", share*100, want*100)
			}
			if runs > 0 {
				if run := float64(lost) / float64(runs); run < tc.minRun || run > tc.maxRun {
					t.Errorf("losses in runs of %.2f, want %.1f to %.1f", run, tc.minRun, tc.maxRun)
				}
			}
		})
	}
}

// TestLatency: jitter stays within [Delay, Delay+Jitter).
func TestLatency(t *testing.T) {
	p := NewPath(Direction{Delay: 50 * time.Millisecond, Jitter: 20 * time.Millisecond}, 3)
	lo, hi := time.Hour, time.Duration(0)
	for range 10_000 {
		d := p.Latency()
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 50*time.Millisecond || hi >= 70*time.Millisecond || hi-lo < 19*time.Millisecond {
		t.Errorf("latency from %v to %v, want 50 ms to 70 ms", lo, hi)
	}
}
