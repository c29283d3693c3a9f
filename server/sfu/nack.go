package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Retransmission to subscribers (RFC 4585 6.2.1 NACK, RFC 4588 RTX). It replaces pion's
// responder, which at a 4G round trip repaired only half of what a 10%-lossy link lost
// (TestRepairAtRuralRTT): it spends retransmissions from the GCC target, which the
// loss-based controller drives down under random loss (640 kbit/s to 100 kbit/s in 15 s), and
// it refuses a resend within the mean RTT + 5 ms, so a viewer that asks again once per RTT,
// as Chrome does, is answered only every other time.
const (
	// resendSlots packets of each stream are kept: 1 s of a 3 Mbit/s layer (bweMax) in
	// 1200-byte packets, and many seconds of a camera.
	resendSlots = 512
	// resendMaxAge: an older packet is not sent again; at long RTTs the limit is four round
	// trips, room for the first answer and two more if they are lost.
	resendMaxAge = time.Second
	// resendBurst caps the bytes of retransmission a stream may send at once. Over time a
	// stream may resend as many bytes as it sent (it could repair 100% loss), whatever its
	// congestion estimate: the repair is part of the stream the estimate already carries.
	resendBurst = 128 << 10
	// rttUnknown stands in for a stream's RTT until its receiver reports tell it.
	rttUnknown = 100 * time.Millisecond
	// lossyReport: from this fraction lost (receiver reports, /256; about 3%), each resend
	// goes out twice. At 10% loss one resend in ten is lost and its round fails; with two
	// copies, one in a hundred, so a packet almost never needs a third round, which at a
	// 300 ms RTT would freeze the picture near a second (measured: single copies, up to
	// 1.09 s; two, under 0.9 s). TWCC feedback saying a copy arrived keeps the receiver's
	// repeated NACKs from costing more.
	lossyReport = 8
)

// resendHold is how long after a resend the same packet is not sent again: a NACK that
// arrives within one RTT of it was sent before the resend could have arrived. Three
// quarters of the RTT leaves room for jitter, so that a NACK repeated once per RTT is
// answered each time.
func resendHold(rtt time.Duration) time.Duration { return max(rtt*3/4, 10*time.Millisecond) }

// nackResponderFactory builds the responder of a subscriber's peer connection.
type nackResponderFactory struct {
	retransmits *atomic.Int64 // the SFU's counter
	now         func() int64  // monotonic ns
	log         *transportLog // what went out under each transport-wide sequence number
}

func (f nackResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{retransmits: f.retransmits, now: f.now, log: f.log, streams: map[uint32]*sentStream{}}, nil
}

// transportLog maps the transport-wide sequence numbers a connection sent (TWCC, draft-holmer-
// rmcat-transport-wide-cc-extensions-01) to the media stream and sequence number each
// carried, for the last 8192 packets (several seconds of a subscriber's media).
//
// TWCC feedback, which receivers send every 50-100 ms for the bandwidth estimate, also says
// which packets did not arrive. Resending those at once, as well as on NACK, repairs a loss
// whose NACK was lost and starts the next round when a retransmission is lost, without
// waiting for the receiver to ask again one round trip later: at 10% loss each way and a
// 300 ms RTT, what keeps the picture from freezing for a second.
type transportLog struct {
	mu      sync.Mutex
	entries [8192]transportEntry
	// Packets the feedback said arrived and did not: the subscriber's own link loss, which
	// its receiver reports mix with what the publishers lost before the SFU (quality).
	received, lost atomic.Int64
}

type transportEntry struct {
	twcc  uint16
	valid bool
	ssrc  uint32 // media SSRC (a retransmission on RTX is logged under its media stream)
	seq   uint16 // media sequence number
}

func (l *transportLog) record(twcc uint16, ssrc uint32, seq uint16) {
	l.mu.Lock()
	l.entries[int(twcc)%len(l.entries)] = transportEntry{twcc: twcc, valid: true, ssrc: ssrc, seq: seq}
	l.mu.Unlock()
}

func (l *transportLog) lookup(twcc uint16) (transportEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[int(twcc)%len(l.entries)]
	return e, e.valid && e.twcc == twcc
}

// twccStatuses tells, for each transport-wide sequence number a feedback covers up to its
// last received packet, whether it arrived: one not received before that is lost (or late by
// more than the packets after it).
func twccStatuses(fb *rtcp.TransportLayerCC) (received, lost []uint16) {
	seq, left := fb.BaseSequenceNumber, int(fb.PacketStatusCount)
	var pending []uint16 // not received, not yet known to be followed by a received packet
	status := func(got bool) {
		if got {
			received = append(received, seq)
			lost = append(lost, pending...)
			pending = pending[:0]
		} else {
			pending = append(pending, seq)
		}
		seq++
		left--
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range min(int(c.RunLength), left) {
				status(c.PacketStatusSymbol != rtcp.TypeTCCPacketNotReceived)
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range c.SymbolList {
				if left == 0 {
					break
				}
				status(sym != rtcp.TypeTCCPacketNotReceived)
			}
		}
	}
	return received, lost
}

type nackResponder struct {
	interceptor.NoOp
	retransmits *atomic.Int64
	now         func() int64
	log         *transportLog // nil: NACKs only

	mu      sync.Mutex
	streams map[uint32]*sentStream // by media SSRC
}

// sentStream is one stream's cache: a ring of slots indexed by sequence number, whose
// buffers are reused, so storing a packet allocates nothing once the ring has gone round.
type sentStream struct {
	w        interceptor.RTPWriter
	rtxSSRC  uint32
	rtxPT    uint8
	slotMask uint16

	mu     sync.Mutex // slots, credit, rtt
	slots  []sentPacket
	credit int           // bytes of retransmission allowed now
	rtt    time.Duration // smoothed (RFC 6298 2.3, alpha 1/8), 0 until measured
	loss   uint8         // fraction lost in the subscriber's last receiver report, /256

	// Resends are serialized (sendMu, taken before mu) and built in these.
	sendMu sync.Mutex
	hdr    rtp.Header
	ext    [4]rtp.Extension
	csrc   []uint32
	buf    []byte
	attrs  interceptor.Attributes
	rtxSeq uint16
}

type sentPacket struct {
	used     bool
	arrived  bool // TWCC feedback says a transmission of it arrived
	seq      uint16
	sentAt   int64
	resentAt int64 // 0: not resent
	hdr      rtp.Header
	csrc     []uint32
	payload  []byte
}

func supportsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if !supportsNACK(info) {
		return w
	}
	st := &sentStream{
		w:        w,
		rtxSSRC:  info.SSRCRetransmission,
		rtxPT:    info.PayloadTypeRetransmission,
		slotMask: resendSlots - 1,
		slots:    make([]sentPacket, resendSlots),
		attrs:    interceptor.Attributes{},
	}
	if st.rtxPT == 0 {
		st.rtxSSRC = 0
	}
	n.mu.Lock()
	n.streams[info.SSRC] = st
	n.mu.Unlock()
	ssrc := info.SSRC
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == ssrc {
			st.store(h, payload, n.now())
		}
		return w.Write(h, payload, a)
	})
}

func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
}

func (n *nackResponder) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, attr, err := r.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = interceptor.Attributes{}
		}
		pkts, err := attr.GetRTCPPackets(b[:i])
		if err != nil {
			return 0, nil, err
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.ReceiverReport:
				n.onReports(p.Reports)
			case *rtcp.SenderReport:
				n.onReports(p.Reports)
			case *rtcp.TransportLayerNack:
				if st := n.stream(p.MediaSSRC); st != nil {
					st.resend(p, n.now(), n.retransmits)
				}
			case *rtcp.TransportLayerCC:
				n.onFeedback(p)
			}
		}
		return i, attr, nil
	})
}

// onFeedback resends what a TWCC feedback reports lost, as a NACK for it would: each packet
// at most once per hold, so a NACK for the same loss changes nothing.
func (n *nackResponder) onFeedback(fb *rtcp.TransportLayerCC) {
	if n.log == nil {
		return
	}
	received, lost := twccStatuses(fb)
	n.log.received.Add(int64(len(received)))
	n.log.lost.Add(int64(len(lost)))
	// What arrived, first transmission or repair, is not sent again on a NACK the receiver
	// sent before it arrived.
	for _, twcc := range received {
		if e, ok := n.log.lookup(twcc); ok {
			if st := n.stream(e.ssrc); st != nil {
				st.delivered(e.seq)
			}
		}
	}
	if len(lost) == 0 {
		return
	}
	bySSRC := map[uint32][]uint16{}
	for _, twcc := range lost {
		if e, ok := n.log.lookup(twcc); ok {
			bySSRC[e.ssrc] = append(bySSRC[e.ssrc], e.seq)
		}
	}
	now := n.now()
	for ssrc, seqs := range bySSRC {
		if st := n.stream(ssrc); st != nil {
			st.resend(&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}, now, n.retransmits)
		}
	}
}

func (n *nackResponder) stream(ssrc uint32) *sentStream {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.streams[ssrc]
}

func (n *nackResponder) onReports(reports []rtcp.ReceptionReport) {
	now := time.Now()
	for _, r := range reports {
		st := n.stream(r.SSRC)
		if st == nil {
			continue
		}
		st.mu.Lock()
		st.loss = r.FractionLost
		st.mu.Unlock()
		if r.LastSenderReport == 0 {
			continue
		}
		// RFC 3550 6.4.1: RTT = arrival - LSR - DLSR, in 1/65536 s.
		if rtt := ntp32(now) - r.LastSenderReport - r.Delay; rtt < 1<<31 {
			st.sampleRTT(time.Duration(int64(rtt) * int64(time.Second) / 65536))
		}
	}
}

func (st *sentStream) sampleRTT(rtt time.Duration) {
	st.mu.Lock()
	if st.rtt == 0 {
		st.rtt = rtt
	} else {
		st.rtt += (rtt - st.rtt) / 8
	}
	st.mu.Unlock()
}

// delivered marks packet seq as arrived.
func (st *sentStream) delivered(seq uint16) {
	st.mu.Lock()
	if s := &st.slots[seq&st.slotMask]; s.used && s.seq == seq {
		s.arrived = true
	}
	st.mu.Unlock()
}

// store keeps a copy of an outgoing packet. The header's extensions are not kept: the
// layers below this one add them (TWCC) on every write.
func (st *sentStream) store(h *rtp.Header, payload []byte, now int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := &st.slots[h.SequenceNumber&st.slotMask]
	s.used, s.arrived, s.seq, s.sentAt, s.resentAt = true, false, h.SequenceNumber, now, 0
	s.hdr = *h
	s.hdr.Extension, s.hdr.ExtensionProfile, s.hdr.Extensions = false, 0, nil
	s.csrc = append(s.csrc[:0], h.CSRC...)
	s.hdr.CSRC = nil
	s.payload = append(s.payload[:0], payload...)
	st.credit = min(st.credit+len(payload), resendBurst)
}

// resend answers one NACK: each packet still kept, younger than the age limit and not
// resent within the hold, goes out again while the credit lasts.
func (st *sentStream) resend(nack *rtcp.TransportLayerNack, now int64, count *atomic.Int64) {
	st.sendMu.Lock()
	defer st.sendMu.Unlock()
	for i := range nack.Nacks {
		nack.Nacks[i].Range(func(seq uint16) bool {
			copies := st.take(seq, now)
			for c := range copies {
				if c > 0 && !st.again() {
					break
				}
				if _, err := st.w.Write(&st.hdr, st.buf, st.attrs); err == nil {
					count.Add(1)
				}
			}
			return true
		})
	}
}

// again readies the packet taken last for a second copy: it is charged to the credit again,
// and on RTX it takes the next RTX sequence number (an RTX packet repeated under the same
// number would be dropped by SRTP as a replay); st.sendMu is held.
func (st *sentStream) again() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := len(st.buf)
	if st.rtxSSRC != 0 {
		n -= 2
	}
	if st.credit < n {
		return false
	}
	st.credit -= n
	if st.rtxSSRC != 0 {
		st.hdr.SequenceNumber = st.rtxSeq
		st.rtxSeq++
	}
	st.hdr.Extensions = st.ext[:0]
	clear(st.attrs)
	return true
}

// take copies packet seq into the resend header and buffer if it may be resent now, in
// RTX form when the stream has an RTX SSRC (RFC 4588 4: the original sequence number
// leads the payload), and says how many copies to send: 0, 1, or 2 on a lossy link;
// st.sendMu is held.
func (st *sentStream) take(seq uint16, now int64) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := &st.slots[seq&st.slotMask]
	rtt := st.rtt
	if rtt == 0 {
		rtt = rttUnknown
	}
	switch {
	case !s.used || s.seq != seq:
		return 0 // never sent, or overwritten
	case s.arrived:
		return 0 // the NACK was sent before a repair that has arrived since
	case now-s.sentAt > int64(max(resendMaxAge, 4*rtt)):
		return 0
	case s.resentAt != 0 && now-s.resentAt < int64(resendHold(rtt)):
		return 0
	case st.credit < len(s.payload):
		return 0
	}
	s.resentAt = now
	st.credit -= len(s.payload)
	st.hdr = s.hdr
	st.csrc = append(st.csrc[:0], s.csrc...)
	st.hdr.CSRC = st.csrc
	st.hdr.Extensions = st.ext[:0]
	st.buf = st.buf[:0]
	if st.rtxSSRC != 0 {
		st.hdr.SSRC = st.rtxSSRC
		st.hdr.PayloadType = st.rtxPT
		st.hdr.SequenceNumber = st.rtxSeq
		st.rtxSeq++
		st.buf = append(st.buf, byte(seq>>8), byte(seq))
	}
	st.buf = append(st.buf, s.payload...)
	clear(st.attrs)
	if st.loss >= lossyReport {
		return 2
	}
	return 1
}
