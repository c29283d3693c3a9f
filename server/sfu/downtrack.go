package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// downTrack is one upTrack as one subscriber receives it: a webrtc.TrackLocal on the
// subscriber's "sub" connection. It forwards one layer of the upTrack at a time and rewrites
// SSRC, payload type, sequence numbers and timestamps, so the subscriber sees a single
// continuous stream across layer switches, pauses and publisher restarts.
type downTrack struct {
	up       *upTrack
	sub      *Peer
	id       string
	streamID string
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecCapability
	video    bool
	clock    int64
	sender   *webrtc.RTPSender

	mu     sync.Mutex
	bound  bool
	closed bool
	writer webrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8
	hdr    rtp.Header       // the outgoing header, rewritten in place for every packet
	ext    [4]rtp.Extension // backing for hdr.Extensions (TWCC is added on the way out)

	delivered bool // a packet has gone out (pion had SRTP keys)
	current   int  // layer being forwarded, -1 none
	target    int  // layer wanted, -1 paused
	srcSSRC   uint32
	started   bool
	// out = in + offset, for the source being forwarded
	seqOffset uint16
	tsOffset  uint32
	baseSeq   uint16 // first outgoing sequence number of the current source
	lastSeq   uint16 // highest outgoing sequence number
	lastTS    uint32
	lastAt    int64  // nanotime of lastSeq
	lastInSeq uint16 // incoming sequence number of lastSeq

	packets, bytes atomic.Int64
	ssrcOut        atomic.Uint32
	rrLoss         atomic.Uint32 // fraction lost from the subscriber's last receiver report, /256
	rrJitter       atomic.Uint32 // interarrival jitter it reported, RTP units
	rtt            atomic.Int64  // ns, from LSR/DLSR of its receiver reports
	rrAt           atomic.Int64  // nanotime of the last receiver report

	// Owned by the peer's allocation (allocMu) and quality (tick goroutine).
	upSince  time.Time // since when the estimate allows the next layer up
	qBytes   int64
	qPackets int64 // forwarded as of the last tick (the level's silence check)
	// A camera paused for lack of bandwidth: since when, when its lowest layer was last
	// tried again, and how long to wait before the next try.
	pausedAt, probeAt time.Time
	probeWait         time.Duration
}

func newDownTrack(up *upTrack, sub *Peer) *downTrack {
	d := &downTrack{
		up:       up,
		sub:      sub,
		id:       up.id,
		streamID: up.pub.id,
		kind:     up.kind,
		codec:    up.codec.RTPCodecCapability,
		video:    up.video(),
		clock:    int64(up.codec.ClockRate),
		current:  -1,
		target:   0,
	}
	if !d.video {
		d.current = 0
	}
	return d
}

// Bind is called by pion when the subscriber's answer has been applied.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, ok := matchCodec(d.codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	d.mu.Lock()
	d.ssrc = uint32(ctx.SSRC())
	d.pt = uint8(c.PayloadType)
	d.writer = ctx.WriteStream()
	d.bound = true
	target := d.target
	d.mu.Unlock()
	d.ssrcOut.Store(uint32(ctx.SSRC()))
	if d.video {
		// A new subscriber can decode nothing before a keyframe. Asked for once here, so that
		// on a new connection it is on its way as DTLS completes, and again when the
		// connection comes up (Peer.requestKeyframes) if the first came too early.
		go d.up.requestKeyframe(target)
	}
	return c, nil
}

// ready reports whether what is forwarded reaches the subscriber: its answer bound the track
// and its connection is up. Keyframes are asked for only on behalf of such a subscriber.
func (d *downTrack) ready() bool {
	if !d.sub.subConnected.Load() {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bound && !d.closed
}

// Unbind is called by pion when the sender stops.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.bound = false
	d.mu.Unlock()
	return nil
}

func (d *downTrack) ID() string                { return d.id }
func (d *downTrack) RID() string               { return "" }
func (d *downTrack) StreamID() string          { return d.streamID }
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.kind }

func (d *downTrack) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
}

// forward writes one packet of layer l if this down-track forwards that layer, switching to
// the target layer at its keyframe. It never blocks on the network for long: UDP writes do
// not wait, and a TCP subscriber's packets go through its bounded queue.
func (d *downTrack) forward(l *layer, p *rtp.Packet, keyframe bool, now int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.bound || d.closed {
		return false
	}
	if l.idx != d.current || p.SSRC != d.srcSSRC {
		if l.idx != d.target || (d.video && !keyframe) {
			return false
		}
		d.switchTo(l, p, now)
	}
	if len(p.Payload) == 0 {
		// A padding-only probe: not forwarded, and when it is next in line the following
		// packets move up one so the subscriber sees no gap.
		if p.SequenceNumber == d.lastInSeq+1 {
			d.seqOffset--
			d.lastInSeq = p.SequenceNumber
		}
		return false
	}
	seq := p.SequenceNumber + d.seqOffset
	ts := p.Timestamp + d.tsOffset
	if seqNewer(seq, d.lastSeq) {
		d.lastSeq, d.lastTS, d.lastAt, d.lastInSeq = seq, ts, now, p.SequenceNumber
		if d.lastSeq-d.baseSeq > 0x4000 {
			d.baseSeq = d.lastSeq - 0x4000 // keep the switch point within reach of the comparison
		}
	} else if seq-d.baseSeq >= 0x8000 || d.lastSeq-seq >= 0x4000 {
		// Late, and from before the switch point: that number belongs to the old source.
		return false
	}
	h := &d.hdr
	*h = p.Header
	h.SSRC = d.ssrc
	h.PayloadType = d.pt
	h.SequenceNumber = seq
	h.Timestamp = ts
	h.Padding = false
	h.PaddingSize = 0
	// Extension IDs are negotiated per connection: the publisher's mean nothing here.
	h.Extension = false
	h.ExtensionProfile = 0
	h.Extensions = d.ext[:0]
	d.packets.Add(1)
	d.bytes.Add(int64(12 + len(p.Payload)))
	if q := d.sub.queue.Load(); q != nil {
		if !q.push(d, h, p.Payload) {
			d.sub.s.stats.dropped.Add(1)
			return false
		}
		return true
	}
	return d.write(h, p.Payload)
}

// write hands one packet to pion; d.mu is held.
func (d *downTrack) write(h *rtp.Header, payload []byte) bool {
	n, err := d.writer.WriteRTP(h, payload)
	if err != nil {
		d.sub.s.stats.dropped.Add(1)
		return false
	}
	if n == 0 {
		// pion drops packets silently until the connection's DTLS handshake has given it
		// SRTP keys. A video subscriber that has received nothing yet must then start again
		// from a keyframe, or it would begin mid-frame.
		// Its keyframe is asked for once the connection is up (Peer.requestKeyframes), not
		// here for every packet: a subscriber whose connection never comes up must not make
		// the publisher send keyframes to the whole room.
		if d.video && !d.delivered {
			d.current = -1
			d.started = false
		}
		return false
	}
	d.delivered = true
	return true
}

// switchTo starts forwarding p's stream: the first packet continues the outgoing sequence
// numbers, and its timestamp continues by the wall-clock time since the last packet.
func (d *downTrack) switchTo(l *layer, p *rtp.Packet, now int64) {
	if d.started {
		d.seqOffset = d.lastSeq + 1 - p.SequenceNumber
		// Layers are read by their own goroutines: now may be a little before lastAt.
		delta := uint32(1)
		if el := now - d.lastAt; el > 0 {
			delta = max(uint32(rtpTime(el, d.clock)), 1)
		}
		d.tsOffset = d.lastTS + delta - p.Timestamp
	}
	d.started = true
	from := d.current
	d.current = l.idx
	d.srcSSRC = p.SSRC
	d.baseSeq = p.SequenceNumber + d.seqOffset
	d.lastSeq = d.baseSeq - 1
	d.lastInSeq = p.SequenceNumber - 1
	if from >= 0 && from != l.idx {
		d.sub.s.stats.switched(l.rid, l.idx > from)
	}
}

// writeQueued writes a packet that waited in the subscriber's queue.
func (d *downTrack) writeQueued(h *rtp.Header, payload []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.bound || d.closed {
		return
	}
	d.write(h, payload)
}

// setTarget chooses the layer to forward (-1 pauses). Going down or up waits for a keyframe
// of the new layer, which is asked for here; pausing is immediate.
func (d *downTrack) setTarget(t int) {
	d.mu.Lock()
	if d.target == t {
		d.mu.Unlock()
		return
	}
	d.target = t
	if t < 0 && d.current >= 0 {
		d.current = -1
		d.sub.s.stats.pauses.Add(1)
	}
	cur := d.current
	d.mu.Unlock()
	if t >= 0 && t != cur {
		d.up.requestKeyframe(t)
	}
}

func (d *downTrack) layers() (current, target int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current, d.target
}

// state adds whether anything was forwarded yet: until then the layer choice is free.
func (d *downTrack) state() (current, target int, started bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current, d.target, d.started
}

// readRTCP handles the subscriber's feedback on this track. Reading it also drives pion's
// NACK responder and the GCC estimator, which see the packets on the way.
func (d *downTrack) readRTCP() {
	buf := make([]byte, 1500)
	for {
		n, attr, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		d.sub.heardAt.Store(d.sub.s.nanotime())
		// The interceptors have parsed the packets already and left them in attr.
		pkts, err := attr.GetRTCPPackets(buf[:n])
		if err != nil {
			continue
		}
		for _, pk := range pkts {
			d.onRTCP(pk)
		}
	}
}

func (d *downTrack) onRTCP(pk rtcp.Packet) {
	switch pk := pk.(type) {
	case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
		cur, target := d.layers()
		if cur < 0 {
			cur = target
		}
		d.up.requestKeyframe(cur)
	case *rtcp.ReceiverReport:
		for _, r := range pk.Reports {
			d.onReport(r)
		}
	case *rtcp.TransportLayerNack:
		d.sub.s.stats.nacksReceived.Add(int64(nackCount(pk)))
	}
}

func (d *downTrack) onReport(r rtcp.ReceptionReport) {
	if r.SSRC != d.ssrcOut.Load() {
		return
	}
	d.rrLoss.Store(uint32(r.FractionLost))
	d.rrJitter.Store(r.Jitter)
	if r.LastSenderReport != 0 {
		// RFC 3550 6.4.1: RTT = arrival - LSR - DLSR, in 1/65536 s.
		rtt := ntp32(time.Now()) - r.LastSenderReport - r.Delay
		if rtt < 1<<31 {
			d.rtt.Store(int64(rtt) * int64(time.Second) / 65536)
		}
	}
	d.rrAt.Store(d.sub.s.nanotime())
}

// ntp32 is the middle 32 bits of the NTP timestamp of t (RFC 3550 4).
func ntp32(t time.Time) uint32 {
	const ntpEpochOffset = 2208988800 // 1900 to 1970
	sec := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / uint64(time.Second)
	return uint32(sec<<16 | frac>>16)
}

// sendQueue holds a TCP subscriber's packets so a full TCP window stalls only its own
// goroutine, never a publisher's read loop; when it is full, packets are dropped.
type sendQueue struct {
	mu    sync.Mutex
	slots []queuedPacket
	head  int
	n     int
	wake  chan struct{}
}

type queuedPacket struct {
	d       *downTrack
	hdr     rtp.Header
	ext     [4]rtp.Extension
	payload [1500]byte
	size    int
}

func newSendQueue(n int) *sendQueue {
	return &sendQueue{slots: make([]queuedPacket, n), wake: make(chan struct{}, 1)}
}

func (q *sendQueue) push(d *downTrack, h *rtp.Header, payload []byte) bool {
	q.mu.Lock()
	if q.n == len(q.slots) || len(payload) > len(q.slots[0].payload) {
		q.mu.Unlock()
		return false
	}
	s := &q.slots[(q.head+q.n)%len(q.slots)]
	s.d = d
	s.hdr = *h
	s.hdr.Extensions = s.ext[:0]
	s.hdr.CSRC = nil
	s.size = copy(s.payload[:], payload)
	q.n++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// run writes queued packets until done. A slot is only reused after its write returned.
func (q *sendQueue) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-q.wake:
		}
		for {
			q.mu.Lock()
			if q.n == 0 {
				q.mu.Unlock()
				break
			}
			s := &q.slots[q.head]
			q.mu.Unlock()
			s.d.writeQueued(&s.hdr, s.payload[:s.size])
			q.mu.Lock()
			s.d = nil
			q.head = (q.head + 1) % len(q.slots)
			q.n--
			q.mu.Unlock()
		}
	}
}
