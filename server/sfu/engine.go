package sfu

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Bandwidth estimator bounds for a subscriber's peer connection (bit/s).
const (
	bweInitial = 600_000
	bweMin     = 30_000
	bweMax     = 3_000_000
)

// udpBuffer is the kernel buffer of each media socket: a burst of 100 participants' video
// must not overflow the default ~200 KB while a read loop is descheduled.
const udpBuffer = 4 << 20

// srtpReplayWindow is how far behind the newest packet an SRTP packet is still accepted
// (RFC 3711 3.3.2), as in libwebrtc. pion's default, 64 packets, drops a publisher's
// retransmission that arrives a 4G round trip late on a 300-packet/s simulcast layer.
const srtpReplayWindow = 1024

// nackTries is how many times the SFU asks a publisher for one lost packet, and nackWindow
// how far back (in packets: ~1-2 s of video) it asks at all.
const (
	nackTries  = 5
	nackWindow = 128
)

// OpusFmtp asks for in-band FEC and DTX: on lossy 4G, FEC recovers single lost packets
// without a retransmission round trip and DTX saves uplink during silence.
const OpusFmtp = "minptime=10;useinbandfec=1;usedtx=1"

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBTransportCC},
}

// sfuCodecs are the codecs both peer connections of every participant offer or accept.
func sfuCodecs() []struct {
	params webrtc.RTPCodecParameters
	kind   webrtc.RTPCodecType
} {
	video := func(pt webrtc.PayloadType, mime, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 90000, SDPFmtpLine: fmtp, RTCPFeedback: videoFeedback},
			PayloadType:        pt,
		}
	}
	type c = struct {
		params webrtc.RTPCodecParameters
		kind   webrtc.RTPCodecType
	}
	return []c{
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: OpusFmtp,
				RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}},
			PayloadType: 111,
		}, webrtc.RTPCodecTypeAudio},
		{video(96, webrtc.MimeTypeVP8, ""), webrtc.RTPCodecTypeVideo},
		{video(102, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"), webrtc.RTPCodecTypeVideo},
		{video(108, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"), webrtc.RTPCodecTypeVideo},
		{video(98, webrtc.MimeTypeVP9, "profile-id=0"), webrtc.RTPCodecTypeVideo},
	}
}

// newMediaEngine registers sfuCodecs, and on a subscriber's connection an RTX format
// (RFC 4588) for each video codec: Chrome then takes retransmissions apart from the media
// stream. Publishers get none: pion's NACK generator, which the pub connection uses, binds
// only the media SSRC and would go on asking for packets repaired over RTX.
func newMediaEngine(pc string) (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range sfuCodecs() {
		if err := me.RegisterCodec(c.params, c.kind); err != nil {
			return nil, err
		}
		if pc == pcSubscribe && c.kind == webrtc.RTPCodecTypeVideo {
			if err := me.RegisterCodec(rtxFor(c.params), c.kind); err != nil {
				return nil, err
			}
		}
	}
	exts := []struct {
		uri   string
		kinds []webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
		{sdp.SDESRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{sdp.SDESRepairRTPStreamIDURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
		{sdp.TransportCCURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},
	}
	for _, e := range exts {
		for _, k := range e.kinds {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k); err != nil {
				return nil, err
			}
		}
	}
	return me, nil
}

// rtxFor is the RTX format of a video codec, with the next payload type (free in sfuCodecs).
func rtxFor(c webrtc.RTPCodecParameters) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: c.ClockRate, SDPFmtpLine: "apt=" + strconv.Itoa(int(c.PayloadType))},
		PayloadType:        c.PayloadType + 1,
	}
}

// codecPreferences is what a subscriber's transceiver for a track offers: the track's
// codec and its RTX format. pion drops an RTX preference whose apt names no payload type in
// the list, so the codec goes in with the SFU's payload type.
func codecPreferences(c webrtc.RTPCodecCapability) []webrtc.RTPCodecParameters {
	for _, sc := range sfuCodecs() {
		if sc.kind == webrtc.RTPCodecTypeVideo && strings.EqualFold(sc.params.MimeType, c.MimeType) && sc.params.SDPFmtpLine == c.SDPFmtpLine {
			return []webrtc.RTPCodecParameters{{RTPCodecCapability: c, PayloadType: sc.params.PayloadType}, rtxFor(sc.params)}
		}
	}
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: c}}
}

// newPeerConnection builds one peer connection with the interceptors its direction needs:
// a publisher's ("pub") gets NACK generation, receiver reports and TWCC feedback; a
// subscriber's ("sub") gets a GCC estimator (handed to onBWE), TWCC sequence numbers, the NACK
// responder (nack.go) and sender reports. Each gets its own registry so the estimator is known to
// belong to this connection without matching pion's connection IDs.
// newPeerConnection makes one of a participant's connections. sent (sub only; nil: a log of its
// own) is where the connection logs what it sends and counts what TWCC feedback says arrived.
func (s *SFU) newPeerConnection(pc string, onBWE func(cc.BandwidthEstimator), sent *transportLog) (*webrtc.PeerConnection, error) {
	me, err := newMediaEngine(pc)
	if err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	lf := s.pionLog
	// Registration order matters: the first registered is innermost (nearest the network).
	switch pc {
	case pcPublish:
		// pion NACKs a missing packet every 100 ms until it arrives or leaves its window; at
		// 4G's 100-300 ms RTT a few requests cover the useful life of a retransmission, and
		// a short window keeps an outage from ending in a burst of stale resends.
		gen, err := nack.NewGeneratorInterceptor(
			nack.GeneratorSize(nackWindow), nack.GeneratorMaxNacksPerPacket(nackTries), nack.WithGeneratorLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		reg.Add(&countingFactory{s: s})
		reg.Add(gen)
		rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		reg.Add(rr)
		tw, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		reg.Add(tw)
	case pcSubscribe:
		// The leaky-bucket pacer that GCC uses by default queues without bound and copies
		// every packet; layer selection keeps each subscriber under its estimate instead.
		ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
			return gcc.NewSendSideBWE(
				gcc.SendSideBWEInitialBitrate(bweInitial),
				gcc.SendSideBWEMinBitrate(bweMin),
				gcc.SendSideBWEMaxBitrate(bweMax),
				gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
				gcc.WithLoggerFactory(lf),
			)
		})
		if err != nil {
			return nil, err
		}
		ccf.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { onBWE(e) })
		reg.Add(rtxPacerFactory{ccf})
		reg.Add(&countingFactory{s: s})
		// One log per connection of what went out under each transport-wide sequence number,
		// written by the sequencer and read by the responder on TWCC feedback.
		if sent == nil {
			sent = &transportLog{}
		}
		reg.Add(twccSeqFactory{log: sent})
		reg.Add(nackResponderFactory{retransmits: &s.stats.retransmits, now: s.nanotime, log: sent})
		sr, err := report.NewSenderInterceptor(report.WithSenderLoggerFactory(lf))
		if err != nil {
			return nil, err
		}
		reg.Add(sr)
	default:
		return nil, fmt.Errorf("sfu: unknown peer connection %q", pc)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s.se))
	return api.NewPeerConnection(webrtc.Configuration{
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	})
}

const (
	pcPublish   = "pub"
	pcSubscribe = "sub"
)

// settingEngine configures ICE for the SFU's network: one UDP port and one TCP port for all
// peers, timeouts for 4G, advertised public addresses.
func (s *SFU) settingEngine() error {
	cfg := &s.cfg
	se := webrtc.SettingEngine{LoggerFactory: s.pionLog}
	se.SetSRTPReplayProtectionWindow(srtpReplayWindow)
	// 4G drops out for seconds at a time: call it disconnected after 5 s, give up after 25 s.
	se.SetICETimeouts(5*time.Second, 25*time.Second, 2*time.Second)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if len(cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return fmt.Errorf("sfu: public IPs: %w", err)
		}
	}
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4}) // vnet has no IPv6 or TCP
		if cfg.UDPAddr != "" {
			// One port on Net (vnet needs a concrete address: its IP on the virtual network).
			conn, err := cfg.Net.ListenPacket("udp4", cfg.UDPAddr)
			if err != nil {
				return fmt.Errorf("sfu: UDP %s: %w", cfg.UDPAddr, err)
			}
			s.udpConn = conn
			s.udpMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: s.pionLog.NewLogger("udpmux"), UDPConn: conn, Net: cfg.Net})
			se.SetICEUDPMux(s.udpMux)
			if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.IsLoopback() {
				se.SetIncludeLoopbackCandidate(true) // as without Net: a test's real loopback
			}
		}
		s.se = se
		return nil
	}
	if host, port, err := net.SplitHostPort(cfg.UDPAddr); err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
		// Every interface on one port: a socket per address, so each host candidate is
		// answered from the address it names (one socket on 0.0.0.0 may answer from another).
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("sfu: UDP %s: %w", cfg.UDPAddr, err)
		}
		mux, err := ice.NewMultiUDPMuxFromPort(p, ice.UDPMuxFromPortWithLogger(s.pionLog.NewLogger("udpmux")),
			ice.UDPMuxFromPortWithReadBufferSize(udpBuffer), ice.UDPMuxFromPortWithWriteBufferSize(udpBuffer),
			ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6))
		if err != nil {
			return fmt.Errorf("sfu: UDP %s: %w", cfg.UDPAddr, err)
		}
		s.udpMux, s.udpAddrs = mux, mux.GetListenAddresses()
		se.SetICEUDPMux(mux)
	} else if cfg.UDPAddr != "" {
		conn, err := net.ListenPacket("udp", cfg.UDPAddr)
		if err != nil {
			return fmt.Errorf("sfu: UDP %s: %w", cfg.UDPAddr, err)
		}
		if uc, ok := conn.(*net.UDPConn); ok {
			uc.SetReadBuffer(udpBuffer)
			uc.SetWriteBuffer(udpBuffer)
		}
		s.udpConn = conn
		s.udpMux = webrtc.NewICEUDPMux(s.pionLog.NewLogger("udpmux"), conn)
		se.SetICEUDPMux(s.udpMux)
		if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.IsLoopback() {
			se.SetIncludeLoopbackCandidate(true)
		}
	}
	if cfg.TCPAddr != "" {
		ln, err := net.Listen("tcp", cfg.TCPAddr)
		if err != nil {
			return fmt.Errorf("sfu: TCP %s: %w", cfg.TCPAddr, err)
		}
		s.tcpLn = ln
		s.tcpMux = webrtc.NewICETCPMux(s.pionLog.NewLogger("tcpmux"), ln, 8)
		se.SetICETCPMux(s.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
			se.SetIncludeLoopbackCandidate(true)
		}
	}
	se.SetNetworkTypes(types)
	s.se = se
	return nil
}

// UDPAddr is the address of the shared media UDP port, nil without one.
func (s *SFU) UDPAddr() net.Addr {
	if s.udpConn == nil && len(s.udpAddrs) > 0 {
		return s.udpAddrs[0]
	}
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// TCPAddr is the address of the ICE-TCP port, nil without one.
func (s *SFU) TCPAddr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// countingFactory builds the interceptor that counts the NACKs pion's generator sends to
// publishers (the responder counts its own retransmissions). On the send path it also hands
// each stream one reused attributes map, so the GCC writer does not allocate one per packet.
type countingFactory struct{ s *SFU }

func (f *countingFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &countingInterceptor{s: f.s}, nil
}

type countingInterceptor struct {
	interceptor.NoOp
	s *SFU
}

func (c *countingInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	// Original packets arrive with nil attributes and one at a time per stream (the
	// down-track holds its lock across the write); retransmissions carry the responder's own
	// map.
	attrs := interceptor.Attributes{}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if a == nil {
			return w.Write(h, payload, attrs)
		}
		return w.Write(h, payload, a)
	})
}

func (c *countingInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if n, ok := p.(*rtcp.TransportLayerNack); ok {
				c.s.stats.nacksSent.Add(int64(nackCount(n)))
			}
		}
		return w.Write(pkts, a)
	})
}

func nackCount(n *rtcp.TransportLayerNack) int {
	c := 0
	for _, p := range n.Nacks {
		c += len(p.PacketList())
	}
	return c
}

// twccSeqFactory adds transport-wide sequence numbers (the TWCC header extension) to every
// packet a subscriber's connection sends, like pion's HeaderExtensionInterceptor but writing
// the two bytes into a per-stream buffer instead of allocating them per packet.
type twccSeqFactory struct{ log *transportLog }

func (f twccSeqFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccSeq{log: f.log}, nil
}

type twccSeq struct {
	interceptor.NoOp
	next atomic.Uint32
	log  *transportLog // nil: not kept
}

func (t *twccSeq) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			id = uint8(e.ID)
		}
	}
	if id == 0 {
		return w
	}
	// Originals (nil attributes) are serialized by the down-track, retransmissions (the
	// responder's attributes) by the responder: each kind has its buffer.
	var buf, rbuf [2]byte
	media, rtx := info.SSRC, info.SSRCRetransmission
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		seq := uint16(t.next.Add(1) - 1)
		if t.log != nil {
			switch {
			case h.SSRC == media:
				t.log.record(seq, media, h.SequenceNumber)
			case rtx != 0 && h.SSRC == rtx && len(payload) >= 2:
				// RFC 4588 4: the original sequence number leads an RTX payload.
				t.log.record(seq, media, uint16(payload[0])<<8|uint16(payload[1]))
			}
		}
		b := buf[:]
		if a != nil {
			b = rbuf[:]
		}
		b[0], b[1] = byte(seq>>8), byte(seq)
		if err := h.SetExtension(id, b); err != nil {
			return 0, err
		}
		return w.Write(h, payload, a)
	})
}

// rtxPacerFactory wraps the GCC interceptor so that its pacer knows each stream's RTX SSRC:
// pion's pacers route a packet by its SSRC to the writer of a bound stream, and refuse the
// RTX packets of a stream bound under its media SSRC (ErrUnknownStream).
type rtxPacerFactory struct{ interceptor.Factory }

func (f rtxPacerFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return rtxPacer{i}, nil
}

type rtxPacer struct{ interceptor.Interceptor }

func (p rtxPacer) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if info.SSRCRetransmission != 0 {
		rtx := *info
		rtx.SSRC, rtx.PayloadType = info.SSRCRetransmission, info.PayloadTypeRetransmission
		rtx.SSRCRetransmission, rtx.PayloadTypeRetransmission = 0, 0
		p.Interceptor.BindLocalStream(&rtx, w)
	}
	return p.Interceptor.BindLocalStream(info, w)
}
