package sfu

import (
	"sort"
	"time"

	"github.com/sanping/sanping/protocol"
)

const (
	// pauseBelow: under this much bandwidth left for it, a camera is paused rather than sent
	// at its lowest layer. Imaging is never paused.
	pauseBelow = 100_000
	// upMargin: the estimate must exceed the next layer's rate by this factor to step up.
	upMargin = 1.25
	// audioRate is assumed for an audio track not yet measured (Opus voice with FEC).
	audioRate = 40_000
	// lossCut: above this fraction lost (receiver reports), the estimate is scaled down.
	lossCut = 0.1
	// cleanLoss: at most this fraction lost, by the estimator and by the receiver reports, for
	// a link to count as clean (steps up without upHold).
	cleanLoss = 0.02
	// A camera paused for lack of bandwidth is tried again at its lowest layer after
	// probeFirst on a clean link, then after twice as long each time the link could not
	// carry it, up to probeMax. A layer tried is kept probeHold while the link stays clean,
	// for the estimate to rise with what is sent.
	probeFirst = 2 * time.Second
	probeMax   = 30 * time.Second
	probeHold  = 3 * time.Second
)

// nominalRate guesses the rate of a layer that has not been measured yet: by its RID when
// it follows the q/h/f convention (a browser may send q and f only), else by its place from
// the top: full, half, quarter resolution.
func nominalRate(ut *upTrack, idx int) int64 {
	if !ut.video() {
		return audioRate
	}
	rid := ut.layers[idx].rid
	switch {
	case rid == "f", rid != "h" && rid != "q" && idx == len(ut.layers)-1:
		return 1_200_000
	case rid == "h", rid != "q" && idx == len(ut.layers)-2:
		return 400_000
	}
	return 150_000
}

func layerRate(l *layer) int64 {
	if r := l.bitrate.Load(); r > 0 {
		return r
	}
	return nominalRate(l.ut, l.idx)
}

// updateRates measures each published layer's bitrate (smoothed over ~2 s).
func (p *Peer) updateRates(now time.Time) {
	ups := p.upTracks()
	for _, ut := range ups {
		for _, l := range ut.layers {
			b := l.bytes.Load()
			if !l.rateAt.IsZero() {
				if dt := now.Sub(l.rateAt).Seconds(); dt > 0 {
					r := int64(float64(b-l.rateBytes) * 8 / dt)
					old := l.bitrate.Load()
					if old > 0 {
						r = old + (r-old)/4
					}
					l.bitrate.Store(r)
				}
			}
			l.rateBytes, l.rateAt = b, now
		}
	}
}

// estimate is the bandwidth this subscriber can take: its GCC estimate, capped by
// SetMaxBitrate, reduced when its receiver reports show heavy loss.
func (p *Peer) estimate(downs []*downTrack) int64 {
	est := int64(bweMax)
	if p.bwe != nil {
		est = int64(p.bwe.GetTargetBitrate())
	}
	if m := p.maxBitrate.Load(); m > 0 && m < est {
		est = m
	}
	if worst := p.reportedLoss(downs); worst > lossCut {
		est = int64(float64(est) * (1 - worst))
	}
	return est
}

// reportedLoss is the worst fraction lost in the subscriber's recent receiver reports.
func (p *Peer) reportedLoss(downs []*downTrack) float64 {
	now := p.s.nanotime()
	worst := 0.0
	for _, d := range downs {
		if at := d.rrAt.Load(); at != 0 && now-at < int64(3*time.Second) {
			worst = max(worst, float64(d.rrLoss.Load())/256)
		}
	}
	return worst
}

// cleanLink reports whether the subscriber's link shows no sign of trouble: its estimator has
// had feedback and sees no queue building (usage not overuse, state increase) and little loss,
// and neither do its receiver reports. pion's GCC does not probe: its estimate grows ~8% a
// second from bweInitial whatever the link could carry, so on such a link the estimate is a
// floor, and waiting upHold more before each step up only kept a new subscriber low longer.
func (p *Peer) cleanLink(downs []*downTrack) bool {
	if p.bwe == nil {
		return false
	}
	st := p.bwe.GetStats()
	loss, _ := st["averageLoss"].(float64)
	return st["state"] == "increase" && st["usage"] != "overuse" && loss <= cleanLoss &&
		p.reportedLoss(downs) <= cleanLoss
}

func (p *Peer) downList() []*downTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	ds := make([]*downTrack, 0, len(p.downs))
	for _, d := range p.downs {
		ds = append(ds, d)
	}
	return ds
}

// allocate chooses, every allocation period, which layer of each video track this
// subscriber gets.
func (p *Peer) allocate(now time.Time) {
	if p.sub == nil {
		return
	}
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	p.allocateLocked(p.downList(), now)
}

// allocateOne runs the allocation as a new down-track is added, so it starts on a layer
// that fits without waiting for the next period.
func (p *Peer) allocateOne(*downTrack) {
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	p.allocateLocked(p.downList(), time.Now())
}

// priority orders tracks for the budget: audio first (always forwarded), then imaging (the
// clinical picture), then cameras.
func priority(ut *upTrack) int {
	switch {
	case !ut.video():
		return 0
	case ut.label == protocol.LabelImaging:
		return 1
	case ut.label == protocol.LabelCamera:
		return 2
	}
	return 3
}

func (p *Peer) allocateLocked(downs []*downTrack, now time.Time) {
	sort.Slice(downs, func(i, j int) bool {
		pi, pj := priority(downs[i].up), priority(downs[j].up)
		if pi != pj {
			return pi < pj
		}
		return downs[i].up.pub.id+"/"+downs[i].id < downs[j].up.pub.id+"/"+downs[j].id
	})
	budget := p.estimate(downs)
	nowNs := p.s.nanotime()
	hold := p.s.cfg.upHold
	clean := p.cleanLink(downs)
	if clean {
		hold = 0
	}
	// A limit the subscriber set is not probed past.
	probe := clean && (p.maxBitrate.Load() <= 0 || p.maxBitrate.Load() > budget)
	for _, d := range downs {
		ut := d.up
		if !ut.video() || !ut.simulcast() {
			// Audio, and video without simulcast, is always forwarded; NACK and PLI deal
			// with what the link loses.
			budget -= layerRate(ut.layers[0])
			if cur, _ := d.layers(); cur < 0 && ut.video() && d.ready() {
				ut.requestKeyframe(0) // still waiting for the first keyframe (throttled)
			}
			continue
		}
		var active []int
		for _, l := range ut.layers {
			if l.active(nowNs) {
				active = append(active, l.idx)
			}
		}
		if len(active) == 0 {
			continue // nothing arrives: keep the choice until something does
		}
		cur, target, started := d.state()
		best := -1
		for _, i := range active {
			if layerRate(ut.layers[i]) <= budget {
				best = i
			}
		}
		want := best
		probing := false
		switch {
		case want < 0 && ut.label != protocol.LabelImaging && budget < pauseBelow:
			want = d.pauseOrProbe(active[0], target, probe, now)
			probing = want >= 0
		case want < 0:
			want = active[0] // keep the motion at low resolution rather than drop it
			fallthrough
		default:
			d.pausedAt, d.probeAt = time.Time{}, time.Time{}
		}
		prevActive := target >= 0 && ut.layers[target].active(nowNs)
		switch {
		case probing:
			d.upSince = time.Time{}
		case started && want > target && target >= 0 && prevActive && cur != target:
			// The last step up waits for its keyframe: no further step before it lands.
			want = target
			d.upSince = time.Time{}
		case started && want > target && (target < 0 || prevActive):
			// Step up one layer at a time, once the estimate has allowed it for upHold.
			next := active[0]
			for _, i := range active {
				if i > target {
					next = i
					break
				}
			}
			want = target
			if float64(layerRate(ut.layers[next]))*upMargin <= float64(budget) {
				if d.upSince.IsZero() {
					d.upSince = now
				}
				if now.Sub(d.upSince) >= hold {
					want = next
					d.upSince = time.Time{}
				}
			} else {
				d.upSince = time.Time{}
			}
		default:
			d.upSince = time.Time{}
		}
		d.setTarget(want)
		if want >= 0 {
			budget -= layerRate(ut.layers[want])
			if cur != want && d.ready() {
				// Throttled; repeats if the last PLI was lost. Never for a subscriber that
				// cannot receive yet (its offer unanswered, its connection not up): every
				// keyframe costs the whole room.
				ut.requestKeyframe(want)
			}
		}
	}
}

// pauseOrProbe decides for a camera the budget has no room for: paused, or its lowest layer
// low tried again. pion's GCC does not probe, and once it has backed off it holds its
// estimate within 1.5 times what it sees arrive: with the camera paused that is the audio,
// so the estimate would never make room for the camera again, however good the link
// (three browsers on a loaded 2-core machine: estimates of 105-127 kbit/s, GCC increasing,
// no loss, and every camera paused for the last 90 s of the test).
// On a clean link the lowest layer is sent again, so the estimate can follow it up; where
// the link cannot carry it, congestion shows, the camera is paused again, and the next try
// waits twice as long.
func (d *downTrack) pauseOrProbe(low, target int, probe bool, now time.Time) int {
	if target >= 0 {
		if probe && !d.probeAt.IsZero() && now.Sub(d.probeAt) < probeHold {
			return low
		}
		switch {
		case d.probeAt.IsZero() || d.probeWait == 0:
			d.probeWait = probeFirst
		default:
			d.probeWait = min(2*d.probeWait, probeMax) // the last try did not hold
		}
		d.pausedAt, d.probeAt = now, time.Time{}
		return -1
	}
	if d.pausedAt.IsZero() {
		d.pausedAt, d.probeWait = now, probeFirst
	}
	if probe && now.Sub(d.pausedAt) >= d.probeWait {
		d.probeAt = now
		return low
	}
	return -1
}
