package sfu

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sentLog records what a responder writes.
type sentLog struct {
	pkts    []rtp.Packet
	discard bool
}

func (l *sentLog) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	if l.discard {
		return len(payload), nil
	}
	p := rtp.Packet{Header: *h, Payload: append([]byte(nil), payload...)}
	p.Header.Extensions = nil
	l.pkts = append(l.pkts, p)
	return len(payload), nil
}

// responderRig is a responder bound to one video stream, on a clock the test moves.
type responderRig struct {
	clock   int64
	count   atomic.Int64
	out     sentLog
	write   interceptor.RTPWriter
	rtcpIn  chan []byte
	read    interceptor.RTCPReader
	sentSeq uint16
}

func newResponderRig(t *testing.T, rtxSSRC uint32, rtxPT uint8) *responderRig {
	return newResponderRigLog(t, rtxSSRC, rtxPT, nil)
}

func newResponderRigLog(t *testing.T, rtxSSRC uint32, rtxPT uint8, log *transportLog) *responderRig {
	t.Helper()
	r := &responderRig{rtcpIn: make(chan []byte, 1)}
	i, err := nackResponderFactory{retransmits: &r.count, now: func() int64 { return r.clock }, log: log}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	info := &interceptor.StreamInfo{
		SSRC: 1, PayloadType: 96, SSRCRetransmission: rtxSSRC, PayloadTypeRetransmission: rtxPT,
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}},
	}
	r.write = i.BindLocalStream(info, &r.out)
	r.read = i.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, <-r.rtcpIn), a, nil
	}))
	return r
}

// send writes n original packets, 10 ms apart.
func (r *responderRig) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		h := &rtp.Header{Version: 2, SSRC: 1, PayloadType: 96, SequenceNumber: r.sentSeq, Timestamp: uint32(r.sentSeq) * 3000}
		if _, err := r.write.Write(h, []byte{byte(r.sentSeq), 0xAA, 0xBB}, nil); err != nil {
			t.Fatal(err)
		}
		r.sentSeq++
		r.clock += int64(10 * time.Millisecond)
	}
}

func (r *responderRig) rtcp(t *testing.T, pkts ...rtcp.Packet) {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	r.rtcpIn <- b
	if _, _, err := r.read.Read(make([]byte, 1500), nil); err != nil {
		t.Fatal(err)
	}
}

// nack asks for seqs and returns what was resent.
func (r *responderRig) nack(t *testing.T, seqs ...uint16) []rtp.Packet {
	t.Helper()
	before := len(r.out.pkts)
	r.rtcp(t, &rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)})
	return r.out.pkts[before:]
}

func TestNACKResponder(t *testing.T) {
	r := newResponderRig(t, 0, 0)
	r.send(t, 20) // seq 0-19, the clock at 200 ms
	got := r.nack(t, 3, 5, 40)
	if len(got) != 2 || got[0].SequenceNumber != 3 || got[1].SequenceNumber != 5 || got[0].SSRC != 1 || got[0].Payload[0] != 3 {
		t.Fatalf("resent %+v, want 3 and 5 as they were", got)
	}
	// Asked again at once: the first answer cannot have arrived yet.
	if got := r.nack(t, 3); len(got) != 0 {
		t.Fatalf("resent %d packets within the hold", len(got))
	}
	// One RTT later (100 ms until measured) the viewer still lacks it: answer again.
	r.clock += int64(resendHold(rttUnknown))
	if got := r.nack(t, 3); len(got) != 1 {
		t.Fatalf("resent %d packets after the hold, want 1", len(got))
	}
	if n := r.count.Load(); n != 3 {
		t.Errorf("%d retransmissions counted, want 3", n)
	}
	// Too old: past resendMaxAge since it was first sent.
	r.clock += int64(resendMaxAge)
	if got := r.nack(t, 4); len(got) != 0 {
		t.Fatalf("resent a packet %v old", time.Duration(r.clock))
	}
}

// TestNACKResponderRTT: the hold follows the smoothed RTT from receiver reports.
func TestNACKResponderRTT(t *testing.T) {
	r := newResponderRig(t, 0, 0)
	r.send(t, 10)
	// A report saying the round trip took 400 ms: LSR 400 ms ago, no delay at the viewer.
	lsr := ntp32(time.Now().Add(-400 * time.Millisecond))
	r.rtcp(t, &rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 1, LastSenderReport: lsr}}})
	r.nack(t, 2)
	r.clock += int64(resendHold(rttUnknown)) // long enough for 100 ms, not for 400
	if got := r.nack(t, 2); len(got) != 0 {
		t.Fatalf("resent within 3/4 of a 400 ms RTT")
	}
	r.clock += int64(resendHold(410*time.Millisecond) - resendHold(rttUnknown)) // (the report's clock is real)
	if got := r.nack(t, 2); len(got) != 1 {
		t.Fatalf("not resent after 3/4 of the RTT")
	}
}

// TestNACKResponderRTX: with an RTX stream, a retransmission goes out on its SSRC and payload
// type, with its own sequence numbers and the original one leading the payload (RFC 4588 4).
func TestNACKResponderRTX(t *testing.T) {
	r := newResponderRig(t, 7, 97)
	r.send(t, 10)
	got := r.nack(t, 4, 6)
	if len(got) != 2 {
		t.Fatalf("resent %d packets, want 2", len(got))
	}
	for i, want := range []uint16{4, 6} {
		p := got[i]
		if p.SSRC != 7 || p.PayloadType != 97 || p.SequenceNumber != uint16(i) || p.Timestamp != uint32(want)*3000 {
			t.Errorf("RTX header %+v", p.Header)
		}
		if len(p.Payload) != 5 || uint16(p.Payload[0])<<8|uint16(p.Payload[1]) != want || p.Payload[2] != byte(want) {
			t.Errorf("RTX payload %x, want OSN %d then the original", p.Payload, want)
		}
	}
}

// TestNACKResponderBudget: retransmissions may spend as many bytes as the stream sent, not
// more, whatever a congestion estimate says.
func TestNACKResponderBudget(t *testing.T) {
	r := newResponderRig(t, 0, 0)
	r.send(t, 4) // 12 bytes of payload
	if got := r.nack(t, 0, 1, 2, 3); len(got) != 4 {
		t.Fatalf("resent %d of 4", len(got))
	}
	r.clock += int64(time.Second / 2)
	if got := r.nack(t, 0); len(got) != 0 {
		t.Fatalf("resent beyond the stream's own bytes")
	}
}

// TestNACKResponderNoAlloc: storing packets reuses the ring's buffers.
func TestNACKResponderNoAlloc(t *testing.T) {
	r := newResponderRig(t, 0, 0)
	r.send(t, 2*resendSlots)
	r.out.discard = true
	h := &rtp.Header{Version: 2, SSRC: 1, PayloadType: 96}
	payload := make([]byte, 3)
	allocs := testing.AllocsPerRun(4000, func() {
		h.SequenceNumber++
		_, _ = r.write.Write(h, payload, nil)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per packet", allocs)
	}
}

// TestRTXNegotiation: a subscriber's offer carries RTX for video (with the codec preferences a
// down-track sets), the publisher's answer does not; both carry Opus in-band FEC (RFC 7587
// 6.1), which repairs single lost audio packets without a round trip.
func TestRTXNegotiation(t *testing.T) {
	s := newTestSFU(t, Config{})
	noBWE := func(cc.BandwidthEstimator) {}
	sub, err := s.newPeerConnection(pcSubscribe, noBWE, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback}
	for _, c := range []webrtc.RTPCodecCapability{vp8, {MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: OpusFmtp}} {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, "t"+c.MimeType, "s")
		if err != nil {
			t.Fatal(err)
		}
		x, err := sub.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		if err := x.SetCodecPreferences(codecPreferences(c)); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := sub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "a=ssrc-group:FID", "a=rtcp-fb:96 nack", "useinbandfec=1"} {
		if !strings.Contains(offer.SDP, want) {
			t.Errorf("subscriber offer lacks %q:\n%s", want, offer.SDP)
		}
	}

	pub, err := s.newPeerConnection(pcPublish, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	client, err := newClientAPI(t, clientOptions{}, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, c := range []webrtc.RTPCodecCapability{vp8, {MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}} {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, "t"+c.MimeType, "s")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.AddTrack(tr); err != nil {
			t.Fatal(err)
		}
	}
	o, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.SetRemoteDescription(o); err != nil {
		t.Fatal(err)
	}
	answer, err := pub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(answer.SDP, "useinbandfec=1") || strings.Contains(answer.SDP, "rtx/") {
		t.Errorf("publisher answer: want Opus FEC and no RTX:\n%s", answer.SDP)
	}
}

// TestTWCCFeedbackResends: what a TWCC feedback reports missing before its last received packet
// is resent at once, as a NACK for it would be; what it reports received is not resent on a
// NACK sent before it arrived; and the hold keeps a NACK and a feedback for the same loss from
// resending twice.
func TestTWCCFeedbackResends(t *testing.T) {
	log := &transportLog{}
	r := newResponderRigLog(t, 0, 0, log)
	r.send(t, 10) // media 0-9 under transport-wide 100-109
	for i := range uint16(10) {
		log.record(100+i, 1, i)
	}
	// 100-102 arrived, 103 and 105 did not, 104 and 106 did; 107-109 not reported yet.
	fb := twccFeedback(100, 7, 5, &rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit,
		SymbolList: []uint16{1, 1, 1, 0, 1, 0, 1}})
	before := len(r.out.pkts)
	r.rtcp(t, fb)
	got := r.out.pkts[before:]
	if len(got) != 2 || got[0].SequenceNumber != 3 || got[1].SequenceNumber != 5 {
		t.Fatalf("feedback resent %v, want 3 and 5", seqsOf(got))
	}
	// The viewer's NACK for 3 crosses the repair: within the hold, nothing more.
	if got := r.nack(t, 3); len(got) != 0 {
		t.Fatalf("a NACK right after the feedback resent %v", seqsOf(got))
	}
	// Media 1 arrived (feedback above): a late NACK for it is not answered, even after the hold.
	r.clock += int64(resendHold(rttUnknown))
	if got := r.nack(t, 1); len(got) != 0 {
		t.Fatalf("resent %v, which the feedback said arrived", seqsOf(got))
	}
	// A run-length feedback: 107 lost, 108 received.
	r.rtcp(t, twccFeedback(107, 2, 1,
		&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1},
		&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1}))
	if last := r.out.pkts[len(r.out.pkts)-1]; last.SequenceNumber != 7 {
		t.Fatalf("run-length feedback resent %d, want 7", last.SequenceNumber)
	}
}

func seqsOf(pkts []rtp.Packet) []uint16 {
	var s []uint16
	for _, p := range pkts {
		s = append(s, p.SequenceNumber)
	}
	return s
}

// twccFeedback is a transport-wide feedback of count statuses from base, received of them
// arrived (each with a small delta), as a receiver marshals it.
func twccFeedback(base, count uint16, received int, chunks ...rtcp.PacketStatusChunk) *rtcp.TransportLayerCC {
	fb := &rtcp.TransportLayerCC{
		Header:             rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback},
		MediaSSRC:          1,
		BaseSequenceNumber: base,
		PacketStatusCount:  count,
		PacketChunks:       chunks,
	}
	for range received {
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250})
	}
	fb.Header.Length = uint16(fb.MarshalSize()/4 - 1)
	return fb
}
