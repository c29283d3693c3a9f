package live

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// Stats is what a participant has received and measured so far.
type Stats struct {
	Participant string
	JoinTime    time.Duration // from Join to the first welcome
	Reconnects  int           // welcomes after the first one
	Tracks      []TrackStats  // remote tracks, by participant and track ID
	// OwnOpLatency holds op.applied arrival minus Op.Sent for this participant's own ops,
	// OpLatency the same for other participants' ops (meaningful when their clocks agree,
	// as in a load test run from one machine). The last 5,000 to 10,000 samples of each.
	OwnOpLatency []time.Duration
	OpLatency    []time.Duration
}

// TrackStats counts one remote track.
type TrackStats struct {
	Participant string // who publishes it
	Track       string // track ID
	Kind        string // audio or video
	Label       string // camera, microphone, imaging ("" if the server did not say)
	Codec       string // MIME type, e.g. video/VP8
	Packets     uint64 // RTP packets received, retransmissions included
	Bytes       uint64 // RTP payload bytes
	Expected    uint64 // packets sent, by RTP sequence numbers
	// Frames counts video frames whose last packet (marker bit) arrived; Keyframes those of
	// them that began with a keyframe (VP8 key frame, H.264 IDR or SPS).
	Frames, Keyframes uint64
	FirstFrame        time.Duration // from Join to the first frame; 0 until then
}

// Lost is the number of packets expected but not received.
func (t TrackStats) Lost() uint64 {
	if t.Packets >= t.Expected {
		return 0
	}
	return t.Expected - t.Packets
}

type trackKey struct{ participant, track string }

// remoteTrack counts one remote track across the streams (SSRCs) it arrives on.
type remoteTrack struct {
	mu    sync.Mutex
	stats TrackStats
	seq   seqCounter
	frame frameCounter
}

// Stats returns copies of the counters.
func (p *Participant) Stats() Stats {
	p.mu.Lock()
	s := Stats{
		Participant:  p.id,
		JoinTime:     p.joinTime,
		Reconnects:   p.reconnects,
		OwnOpLatency: slices.Clone(p.ownLatency),
		OpLatency:    slices.Clone(p.latency),
	}
	tracks := make([]*remoteTrack, 0, len(p.tracks))
	for _, rt := range p.tracks {
		tracks = append(tracks, rt)
	}
	p.mu.Unlock()
	for _, rt := range tracks {
		rt.mu.Lock()
		s.Tracks = append(s.Tracks, rt.stats)
		rt.mu.Unlock()
	}
	slices.SortFunc(s.Tracks, func(a, b TrackStats) int {
		return cmp.Or(cmp.Compare(a.Participant, b.Participant), cmp.Compare(a.Track, b.Track))
	})
	return s
}

// WaitFrames waits until n video frames from the participant have arrived (on all its video
// tracks together).
func (p *Participant) WaitFrames(ctx context.Context, from string, n int) error {
	for {
		p.mu.Lock()
		changed := p.frameCh
		var tracks []*remoteTrack
		for k, rt := range p.tracks {
			if k.participant == from {
				tracks = append(tracks, rt)
			}
		}
		p.mu.Unlock()
		var frames uint64
		for _, rt := range tracks {
			rt.mu.Lock()
			frames += rt.stats.Frames
			rt.mu.Unlock()
		}
		if frames >= uint64(max(n, 0)) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return ErrClosed
		}
	}
}

func (p *Participant) frameArrived() {
	p.mu.Lock()
	close(p.frameCh)
	p.frameCh = make(chan struct{})
	p.mu.Unlock()
}

// onTrack starts reading a track the server forwards. Who publishes it comes from the sub
// offer's track list, else from the msid stream ID.
func (p *Participant) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	p.mu.Lock()
	info := p.subTracks[t.ID()]
	who := info.Participant
	if who == "" {
		who = t.StreamID()
	}
	key := trackKey{who, t.ID()}
	rt := p.tracks[key]
	if rt == nil {
		rt = &remoteTrack{stats: TrackStats{Participant: who, Track: t.ID(), Kind: t.Kind().String(), Label: info.Label}}
		p.tracks[key] = rt
	}
	p.mu.Unlock()
	codec := t.Codec().MimeType
	rt.mu.Lock()
	rt.stats.Codec = codec
	rt.seq.restart()
	rt.frame = frameCounter{}
	rt.mu.Unlock()
	p.log.Debug("live: receiving", "participant", who, "track", t.ID(), "codec", codec)

	isKey := keyframeCheck(codec)
	p.spawn(func() {
		for {
			pkt, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			if rt.packet(pkt, isKey, p.joined) {
				p.frameArrived()
			}
		}
	})
	p.spawn(func() {
		for {
			if _, _, err := r.ReadRTCP(); err != nil {
				return
			}
		}
	})
}

// packet counts one packet; it reports whether it completed a video frame.
func (rt *remoteTrack) packet(pkt *rtp.Packet, isKey func([]byte) bool, joined time.Time) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.stats.Packets++
	rt.stats.Bytes += uint64(len(pkt.Payload))
	rt.seq.add(pkt.SequenceNumber)
	rt.stats.Expected = rt.seq.expected()
	if isKey == nil {
		return false
	}
	done, key := rt.frame.packet(pkt, isKey)
	if !done {
		return false
	}
	rt.stats.Frames++
	if key {
		rt.stats.Keyframes++
	}
	if rt.stats.FirstFrame == 0 {
		rt.stats.FirstFrame = time.Since(joined)
	}
	return true
}

// seqCounter works out how many packets were sent from RTP sequence numbers, across
// wrap-arounds and across streams (restart starts a new one).
type seqCounter struct {
	before  uint64 // expected on earlier streams
	started bool
	first   uint64 // extended sequence numbers
	highest uint64
}

func (s *seqCounter) restart() {
	s.before = s.expected()
	s.started = false
}

func (s *seqCounter) add(seq uint16) {
	if !s.started {
		s.started = true
		s.first, s.highest = uint64(seq), uint64(seq)
		return
	}
	last := uint16(s.highest)
	if d := int16(seq - last); d > 0 {
		s.highest += uint64(d)
	}
}

func (s *seqCounter) expected() uint64 {
	if !s.started {
		return s.before
	}
	return s.before + s.highest - s.first + 1
}

// frameCounter finds the ends of video frames: packets of a frame share an RTP timestamp and
// the last one has the marker bit. A frame whose last packet is lost is not counted.
type frameCounter struct {
	started  bool
	ts       uint32 // the current frame's timestamp
	highest  uint16 // highest sequence number seen
	key      bool   // the current frame is a keyframe
	finished bool   // the current frame was counted
}

func (f *frameCounter) packet(p *rtp.Packet, isKey func([]byte) bool) (done, key bool) {
	if f.started && int16(p.SequenceNumber-f.highest) <= 0 {
		// Late (reordered or retransmitted): it can only add to the current frame.
		if p.Timestamp == f.ts && !f.finished && isKey(p.Payload) {
			f.key = true
		}
		return false, false
	}
	f.highest = p.SequenceNumber
	if !f.started || p.Timestamp != f.ts {
		f.started, f.ts, f.key, f.finished = true, p.Timestamp, false, false
	}
	if isKey(p.Payload) {
		f.key = true
	}
	if p.Marker && !f.finished {
		f.finished = true
		return true, f.key
	}
	return false, false
}

// keyframeCheck returns a function that says whether an RTP payload of the codec starts a
// keyframe, or nil for audio and unknown codecs (no frames counted).
func keyframeCheck(mime string) func([]byte) bool {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return vp8Keyframe
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return h264Keyframe
	case strings.HasPrefix(strings.ToLower(mime), "video/"):
		return func([]byte) bool { return false } // frames still count by marker bits
	}
	return nil
}

// vp8Keyframe: the first packet of a frame (S=1, partition 0) whose VP8 payload header has
// P=0 (RFC 7741 section 4.3).
func vp8Keyframe(payload []byte) bool {
	var v codecs.VP8Packet
	b, err := v.Unmarshal(payload)
	return err == nil && v.S == 1 && v.PID == 0 && len(b) > 0 && b[0]&0x01 == 0
}

// h264Keyframe: an IDR slice or SPS, alone, in a STAP-A or starting an FU-A (RFC 6184).
func h264Keyframe(payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	key := func(nalType byte) bool { return nalType == 5 || nalType == 7 }
	switch t := payload[0] & 0x1f; t {
	case 24: // STAP-A: 16-bit sizes, each before its NAL unit
		for b := payload[1:]; len(b) > 2; {
			n := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			if n == 0 || n > len(b) {
				return false
			}
			if key(b[0] & 0x1f) {
				return true
			}
			b = b[n:]
		}
		return false
	case 28: // FU-A: S bit and the fragmented NAL unit's type
		return len(payload) > 1 && payload[1]&0x80 != 0 && key(payload[1]&0x1f)
	default:
		return key(t)
	}
}
