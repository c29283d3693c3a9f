package sfu

import (
	"math"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

// The participant's quality level, shown to the room (protocol.Participant.Quality). The
// thresholds are for 4G: beyond weakLoss Opus FEC and NACK stop hiding loss (speech breaks up,
// video stalls for keyframes), beyond weakRTTms people talk over each other, beyond weakJitterMs
// the jitter buffer's delay is felt. Hysteresis keeps it from flapping on a link near them:
// one weak sample makes it weak, only samplesToGood clean samples in a row (15 s), under lower
// thresholds, make it good again; samples in between keep the level it has.
const (
	weakLoss, goodLoss         = 0.03, 0.02
	weakRTTms, goodRTTms       = 400, 300
	weakJitterMs, goodJitterMs = 50, 30
	samplesToGood              = 3
	// lostAfter: nothing from the participant for this long while media should flow (it
	// publishes, or the SFU is sending to it and it should answer with RTCP).
	lostAfter = 5 * time.Second
)

// levelState is a peer's level and how many clean samples in a row it has had.
type levelState struct {
	level string // "" until the first sample
	clean int
}

// sample takes one interval's figures.
func (l *levelState) sample(q protocol.Quality) {
	weak := q.Loss > weakLoss || q.RTTms > weakRTTms || q.JitterMs > weakJitterMs
	clean := q.Loss < goodLoss && q.RTTms < goodRTTms && q.JitterMs < goodJitterMs
	switch {
	case l.level == protocol.QualityLost:
		// Only media arriving again ends it (silence).
	case weak:
		l.level, l.clean = protocol.QualityWeak, 0
	case l.level == "":
		l.level = protocol.QualityGood
	case l.level == protocol.QualityWeak && clean:
		if l.clean++; l.clean >= samplesToGood {
			l.level, l.clean = protocol.QualityGood, 0
		}
	case l.level == protocol.QualityWeak:
		l.clean = 0
	}
}

// media takes whether nothing has come for lostAfter while media should flow (silent), and
// whether something has come within lostAfter (flowing). Lost ends only with media flowing
// again, not with nothing being expected any more; a link that comes back is weak until its
// samples prove it clean.
func (l *levelState) media(silent, flowing bool) {
	switch {
	case silent:
		l.level, l.clean = protocol.QualityLost, 0
	case l.level == protocol.QualityLost && flowing:
		l.level, l.clean = protocol.QualityWeak, 0
	}
}

// clientReport is the participant's own last quality message.
type clientReport struct {
	q  protocol.Quality
	at int64 // nanotime
}

// ReportQuality takes the participant's own view of its connection (the protocol's optional
// quality message). For 2 QualityIntervals its RTT counts where it is higher than the SFU's
// (a client behind a relay measures its whole path). Its loss and jitter do not: a browser
// measures them on what it receives, which carries what the publishers lost before the SFU,
// and the SFU tells its own link's apart (TWCC, jitter less the publisher's).
func (p *Peer) ReportQuality(q protocol.Quality) {
	p.client.Store(&clientReport{q: q, at: p.s.nanotime()})
}

// maybeQuality runs every tick: the level's silence check, every QualityInterval a "quality"
// event (the SFU's own figures) and a sample for the level, and a "level" event when the
// level changed.
func (p *Peer) maybeQuality(now time.Time) {
	nowNs := p.s.nanotime()
	p.level.media(p.silent(nowNs))
	if now.Sub(p.qAt) >= p.s.cfg.QualityInterval {
		q, measured := p.quality(now)
		if p.isClosed() {
			return
		}
		sample := q // the event is read on the event goroutine; q changes below
		p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventQuality, Quality: &sample})
		if measured {
			if c := p.client.Load(); c != nil && nowNs-c.at < int64(2*p.s.cfg.QualityInterval) {
				q.RTTms = max(q.RTTms, c.q.RTTms)
			}
			p.level.sample(q)
		}
	}
	if p.level.level != p.levelSent && !p.isClosed() {
		p.levelSent = p.level.level
		p.s.emit(Event{Room: p.roomID, Peer: p.id, Kind: EventLevel, Detail: p.level.level})
	}
}

// silent reports whether media should be arriving from the participant and nothing has for
// lostAfter: neither RTP on what it publishes nor RTCP on either connection; and whether
// something has within lostAfter (flowing). Media should arrive while it publishes, and
// while the SFU forwards to it over a sub connection that has been up (its receiver reports
// and congestion feedback come back): one still connecting, over a slow relay, has not
// stopped anything.
func (p *Peer) silent(nowNs int64) (silent, flowing bool) {
	heard := p.heardAt.Load()
	expected := false
	for _, ut := range p.upTracks() {
		expected = true
		for _, l := range ut.layers {
			heard = max(heard, l.lastPacket.Load())
		}
	}
	for _, d := range p.downList() {
		if n := d.packets.Load(); n != d.qPackets {
			d.qPackets = n
			expected = expected || p.subWasUp.Load()
		}
	}
	flowing = heard != 0 && nowNs-heard <= int64(lostAfter)
	if !expected {
		p.expectSince = 0
		return false, flowing
	}
	if p.expectSince == 0 {
		p.expectSince = nowNs
	}
	return nowNs-max(heard, p.expectSince) > int64(lostAfter), flowing
}

// quality computes the figures since the last call: bitrates both ways, the worse of the
// loss we see on its uplink and the loss it reports on its downlink, RTT, jitter and the
// frame rate of its video. measured says whether anything was measured (media on its
// uplink, or receiver reports of its downlink): an idle participant's zeros are not "good".
func (p *Peer) quality(now time.Time) (q protocol.Quality, measured bool) {
	secs := now.Sub(p.qAt).Seconds()
	p.qAt = now
	if secs <= 0 {
		secs = 1
	}
	ups := p.upTracks()
	downs := p.downList()

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

	// Its downlink: what it receives from the publishers carries their loss and jitter too.
	// Loss is its own link's from TWCC feedback (every packet the sub connection sent, said
	// arrived or not); receiver reports, which count what the publishers lost before the SFU
	// as well, only for a client without TWCC. Its jitter is what its reports say less the
	// publisher's uplink jitter that came with the stream (independent delays add variances).
	var outBytes int64
	var rtt time.Duration
	nowNs := p.s.nanotime()
	twcc := false
	if p.sent != nil {
		recv, lostDown := p.sent.received.Load(), p.sent.lost.Load()
		if n := recv - p.qRecv + lostDown - p.qLost; n > 0 {
			twcc, measured = true, true
			q.Loss = math.Max(q.Loss, float64(lostDown-p.qLost)/float64(n))
		}
		p.qRecv, p.qLost = recv, lostDown
	}
	for _, d := range downs {
		b := d.bytes.Load()
		outBytes += b - d.qBytes
		d.qBytes = b
		if at := d.rrAt.Load(); at != 0 && nowNs-at < int64(p.s.cfg.QualityInterval+5*time.Second) {
			measured = true
			if !twcc {
				q.Loss = math.Max(q.Loss, float64(d.rrLoss.Load())/256)
			}
			rtt = max(rtt, time.Duration(d.rtt.Load()))
			if d.clock > 0 {
				j := float64(d.rrJitter.Load())
				if cur, _ := d.layers(); cur >= 0 && cur < len(d.up.layers) {
					up := float64(d.up.layers[cur].jitter.Load())
					j = math.Sqrt(max(0, j*j-up*up))
				}
				q.JitterMs = math.Max(q.JitterMs, j/float64(d.clock)*1000)
			}
		}
	}
	q.BitrateOut = int64(float64(outBytes) * 8 / secs)
	if rtt == 0 {
		rtt = max(iceRTT(p.pub), iceRTT(p.sub))
	}
	q.RTTms = float64(rtt) / float64(time.Millisecond)
	return q, measured || expected > 0
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
