package sfu

import (
	"math"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

// maybeQuality sends the peer's "quality" event every QualityInterval.
func (p *Peer) maybeQuality(now time.Time) {
	if now.Sub(p.qAt) < p.s.cfg.QualityInterval {
		return
	}
	q := p.quality(now)
	if p.isClosed() {
		return
	}
	p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventQuality, Quality: &q})
}

// quality computes the figures since the last call: bitrates both ways, the worse of the
// loss we see on its uplink and the loss it reports on its downlink, RTT, jitter and the
// frame rate of its video.
func (p *Peer) quality(now time.Time) protocol.Quality {
	secs := now.Sub(p.qAt).Seconds()
	p.qAt = now
	if secs <= 0 {
		secs = 1
	}
	ups := p.upTracks()
	downs := p.downList()

	var q protocol.Quality
	var inBytes, expected, lost int64
	for _, ut := range ups {
		clock := float64(ut.codec.ClockRate)
		for _, l := range ut.layers {
			cur := layerSnapshot{bytes: l.bytes.Load(), packets: l.packets.Load(), frames: l.frames.Load(), extSeq: l.extSeq.Load()}
			prev := l.q
			l.q = cur
			inBytes += cur.bytes - prev.bytes
			if prev.packets > 0 && cur.extSeq > prev.extSeq {
				e := cur.extSeq - prev.extSeq
				expected += e
				if r := cur.packets - prev.packets; e > r {
					lost += e - r
				}
			}
			if ut.video() && prev.packets > 0 {
				q.FPS = math.Max(q.FPS, float64(cur.frames-prev.frames)/secs)
			}
			if clock > 0 && cur.packets > prev.packets {
				q.JitterMs = math.Max(q.JitterMs, float64(l.jitter.Load())/clock*1000)
			}
		}
	}
	q.BitrateIn = int64(float64(inBytes) * 8 / secs)
	if expected > 0 {
		q.Loss = float64(lost) / float64(expected)
	}

	var outBytes int64
	var rtt time.Duration
	nowNs := p.s.nanotime()
	for _, d := range downs {
		b := d.bytes.Load()
		outBytes += b - d.qBytes
		d.qBytes = b
		if at := d.rrAt.Load(); at != 0 && nowNs-at < int64(p.s.cfg.QualityInterval+5*time.Second) {
			q.Loss = math.Max(q.Loss, float64(d.rrLoss.Load())/256)
			rtt = max(rtt, time.Duration(d.rtt.Load()))
			if d.clock > 0 {
				q.JitterMs = math.Max(q.JitterMs, float64(d.rrJitter.Load())/float64(d.clock)*1000)
			}
		}
	}
	q.BitrateOut = int64(float64(outBytes) * 8 / secs)
	if rtt == 0 {
		rtt = max(iceRTT(p.pub), iceRTT(p.sub))
	}
	q.RTTms = float64(rtt) / float64(time.Millisecond)
	return q
}

// iceRTT is the RTT of a connection's selected candidate pair, from ICE consent checks.
func iceRTT(pc *webrtc.PeerConnection) time.Duration {
	if pc == nil {
		return 0
	}
	st, ok := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats()
	if !ok {
		return 0
	}
	return time.Duration(st.CurrentRoundTripTime * float64(time.Second))
}
