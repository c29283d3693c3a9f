package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

const (
	// pliInterval throttles keyframe requests per publisher layer: a keyframe costs several
	// times a normal frame, and every subscriber joining or switching asks for one.
	pliInterval = 500 * time.Millisecond
	// A layer that has sent nothing for this long is off (the publisher's own congestion
	// control dropped it).
	activeWindow = time.Second
)

// upTrack is a track a participant publishes: one layer, or several simulcast layers.
type upTrack struct {
	pub    *Peer
	id     string
	kind   webrtc.RTPCodecType
	label  string
	codec  webrtc.RTPCodecParameters
	ck     codecKind
	layers []*layer // lowest first; fixed when the track is created
	downs  atomic.Pointer[[]*downTrack]

	mu       sync.Mutex
	closed   bool
	running  int // layers whose read loop runs
	rec      *recorder
	recLayer int
}

// layer is one RTP stream of an upTrack (one simulcast encoding).
type layer struct {
	ut  *upTrack
	idx int
	rid string

	track atomic.Pointer[webrtc.TrackRemote]

	packets, bytes, frames atomic.Int64
	lastPacket             atomic.Int64 // nanotime of the last packet, 0 = none yet
	lastPLI                atomic.Int64
	deferredPLI            atomic.Bool  // a request is waiting for the throttle interval to end
	extSeq                 atomic.Int64 // extended highest sequence number
	jitter                 atomic.Int64 // RFC 3550 interarrival jitter, RTP units
	bitrate                atomic.Int64 // bit/s, smoothed (written by the tick goroutine)

	// Owned by the tick goroutine.
	rateBytes int64
	rateAt    time.Time
	q         layerSnapshot
}

type layerSnapshot struct{ bytes, packets, frames, extSeq int64 }

func newUpTrack(p *Peer, id string, tr *webrtc.TrackRemote, label string, rids []string) *upTrack {
	ut := &upTrack{
		pub:   p,
		id:    id,
		kind:  tr.Kind(),
		label: label,
		codec: tr.Codec(),
		ck:    codecKindOf(tr.Codec().MimeType),
	}
	if len(rids) == 0 || tr.RID() == "" {
		rids = []string{tr.RID()}
	}
	for i, rid := range rids {
		ut.layers = append(ut.layers, &layer{ut: ut, idx: i, rid: rid})
	}
	ut.recLayer = len(ut.layers) - 1
	empty := []*downTrack{}
	ut.downs.Store(&empty)
	return ut
}

func (ut *upTrack) video() bool { return ut.kind == webrtc.RTPCodecTypeVideo }

func (ut *upTrack) simulcast() bool { return len(ut.layers) > 1 }

// info describes the track for signaling and events.
func (ut *upTrack) info() protocol.Track {
	t := protocol.Track{
		ID:          ut.id,
		Participant: ut.pub.id,
		Kind:        ut.kind.String(),
		Label:       ut.label,
		Codec:       mimeName(ut.codec.MimeType),
	}
	if ut.simulcast() {
		for _, l := range ut.layers {
			t.Layers = append(t.Layers, l.rid)
		}
	}
	return t
}

// attach starts reading one layer. It reports false if the layer is unknown or the track
// already closed.
func (ut *upTrack) attach(tr *webrtc.TrackRemote, rcv *webrtc.RTPReceiver) bool {
	var l *layer
	for _, c := range ut.layers {
		if c.rid == tr.RID() {
			l = c
		}
	}
	if l == nil {
		return false
	}
	ut.mu.Lock()
	if ut.closed {
		ut.mu.Unlock()
		return false
	}
	ut.running++
	ut.mu.Unlock()
	l.track.Store(tr)
	go l.readRTP(tr)
	go l.readRTCP(rcv, tr.RID())
	return true
}

// layerDone is called when a layer's read loop ends; the track ends with its last layer.
func (ut *upTrack) layerDone() {
	ut.mu.Lock()
	ut.running--
	last := ut.running == 0
	ut.mu.Unlock()
	if last {
		ut.pub.unpublish(ut)
	}
}

// markClosed closes the track once; it reports whether this call closed it.
func (ut *upTrack) markClosed() bool {
	ut.mu.Lock()
	defer ut.mu.Unlock()
	if ut.closed {
		return false
	}
	ut.closed = true
	return true
}

// addDown starts forwarding to d, unless the track has closed.
func (ut *upTrack) addDown(d *downTrack) bool {
	ut.mu.Lock()
	defer ut.mu.Unlock()
	if ut.closed {
		return false
	}
	old := *ut.downs.Load()
	n := make([]*downTrack, len(old), len(old)+1)
	copy(n, old)
	n = append(n, d)
	ut.downs.Store(&n)
	return true
}

func (ut *upTrack) removeDown(d *downTrack) {
	ut.mu.Lock()
	defer ut.mu.Unlock()
	old := *ut.downs.Load()
	n := make([]*downTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			n = append(n, x)
		}
	}
	ut.downs.Store(&n)
}

// takeDowns removes and returns every down-track (the track is closing).
func (ut *upTrack) takeDowns() []*downTrack {
	ut.mu.Lock()
	defer ut.mu.Unlock()
	old := *ut.downs.Load()
	empty := []*downTrack{}
	ut.downs.Store(&empty)
	return old
}

// requestKeyframe sends a PLI for one layer, at most one per pliInterval.
func (ut *upTrack) requestKeyframe(idx int) {
	if !ut.video() || idx < 0 || idx >= len(ut.layers) {
		return
	}
	l := ut.layers[idx]
	tr := l.track.Load()
	if tr == nil {
		return
	}
	s := ut.pub.s
	now := s.nanotime()
	last := l.lastPLI.Load()
	if last != 0 && now-last < int64(pliInterval) {
		// Not dropped but deferred to the end of the interval: a subscriber that joins just
		// after another would otherwise wait for the allocator's next tick, or the publisher's
		// next natural keyframe.
		if l.deferredPLI.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(int64(pliInterval)-(now-last)), func() {
				l.deferredPLI.Store(false)
				ut.requestKeyframe(idx)
			})
		}
		return
	}
	if !l.lastPLI.CompareAndSwap(last, now) {
		return
	}
	if err := ut.pub.pub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}); err == nil {
		s.stats.keyframeRequests.Add(1)
	}
}

// active reports whether the layer has sent recently.
func (l *layer) active(now int64) bool {
	t := l.lastPacket.Load()
	return t != 0 && now-t < int64(activeWindow)
}

// readRTP is the forwarding loop of one layer: read, inspect, write to every down-track.
// It allocates nothing per packet: one buffer and one rtp.Packet are reused.
func (l *layer) readRTP(tr *webrtc.TrackRemote) {
	defer l.ut.layerDone()
	ut := l.ut
	s := ut.pub.s
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var rx receiveState
	clock := int64(ut.codec.ClockRate)
	video := ut.video()
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		now := s.nanotime()
		l.packets.Add(1)
		l.bytes.Add(int64(n))
		if len(pkt.Payload) > 0 {
			// Padding alone does not make a layer active: a browser probes its uplink with
			// it on a layer it has stopped encoding, and a subscriber switched there would
			// wait for a keyframe that never comes.
			l.lastPacket.Store(now)
		}
		s.stats.packetsIn.Add(1)
		s.stats.bytesIn.Add(int64(n))
		rx.update(l, &pkt, now, clock)

		kf := false
		if video && len(pkt.Payload) > 0 {
			kf = isKeyframeStart(ut.ck, pkt.Payload)
			if frameStart(ut.ck, pkt.Payload) {
				l.frames.Add(1)
			}
		}
		if ut.rec != nil && l.idx == ut.recLayer {
			ut.rec.push(&pkt)
		}
		fwd := int64(0)
		for _, d := range *ut.downs.Load() {
			if d.forward(l, &pkt, kf, now) {
				fwd++
			}
		}
		if fwd > 0 {
			s.stats.packetsForwarded.Add(fwd)
			s.stats.bytesForwarded.Add(fwd * int64(n))
		}
	}
}

// readRTCP drains the layer's RTCP (the publisher's sender reports), which pion's
// interceptors need read to produce receiver reports; each one says the publisher is there.
func (l *layer) readRTCP(rcv *webrtc.RTPReceiver, rid string) {
	buf := make([]byte, 1500)
	for {
		var err error
		if rid != "" {
			_, _, err = rcv.ReadSimulcast(buf, rid)
		} else {
			_, _, err = rcv.Read(buf)
		}
		if err != nil {
			return
		}
		l.ut.pub.heardAt.Store(l.ut.pub.s.nanotime())
	}
}

// receiveState tracks sequence numbers and jitter of one incoming stream (RFC 3550 A.1, A.8).
type receiveState struct {
	started     bool
	maxSeq      uint16
	cycles      int64
	lastTransit uint32
	jitter      float64
	ssrc        uint32
}

func (r *receiveState) update(l *layer, p *rtp.Packet, now, clock int64) {
	if !r.started || p.SSRC != r.ssrc {
		*r = receiveState{started: true, maxSeq: p.SequenceNumber, ssrc: p.SSRC, cycles: r.cycles}
		l.extSeq.Store(r.cycles + int64(p.SequenceNumber))
		r.lastTransit = uint32(rtpTime(now, clock)) - p.Timestamp
		return
	}
	if !seqNewer(p.SequenceNumber, r.maxSeq) {
		return // reordered or retransmitted: counted as received, no jitter sample
	}
	if p.SequenceNumber < r.maxSeq {
		r.cycles += 1 << 16
	}
	r.maxSeq = p.SequenceNumber
	l.extSeq.Store(r.cycles + int64(p.SequenceNumber))
	transit := uint32(rtpTime(now, clock)) - p.Timestamp
	d := int64(int32(transit - r.lastTransit))
	r.lastTransit = transit
	if d < 0 {
		d = -d
	}
	r.jitter += (float64(d) - r.jitter) / 16
	l.jitter.Store(int64(r.jitter))
}

// rtpTime converts nanoseconds to RTP clock units (via microseconds, so it does not overflow).
func rtpTime(ns, clock int64) int64 { return ns / 1000 * clock / 1e6 }
