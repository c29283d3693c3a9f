package sfu

import (
	"sort"
	"time"

	"sanping/protocol"
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
)

// nominalRate guesses the rate of a layer that has not been measured yet, by its place
// from the top: full, half, quarter resolution.
func nominalRate(ut *upTrack, idx int) int64 {
	if !ut.video() {
		return audioRate
	}
	switch len(ut.layers) - 1 - idx {
	case 0:
		return 1_200_000
	case 1:
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
	now := p.s.nanotime()
	worst := 0.0
	for _, d := range downs {
		if at := d.rrAt.Load(); at != 0 && now-at < int64(3*time.Second) {
			worst = max(worst, float64(d.rrLoss.Load())/256)
		}
	}
	if worst > lossCut {
		est = int64(float64(est) * (1 - worst))
	}
	return est
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
	for _, d := range downs {
		ut := d.up
		if !ut.video() || !ut.simulcast() {
			// Audio, and video without simulcast, is always forwarded; NACK and PLI deal
			// with what the link loses.
			budget -= layerRate(ut.layers[0])
			if cur, _ := d.layers(); cur < 0 && ut.video() {
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
		if want < 0 && (ut.label == protocol.LabelImaging || budget >= pauseBelow) {
			want = active[0] // keep the motion at low resolution rather than drop it
		}
		prevActive := target >= 0 && ut.layers[target].active(nowNs)
		switch {
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
				if now.Sub(d.upSince) >= p.s.cfg.upHold {
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
			if cur != want {
				ut.requestKeyframe(want) // throttled; repeats if the last PLI was lost
			}
		}
	}
}
