package live

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

func TestSeqCounter(t *testing.T) {
	for _, tt := range []struct {
		name string
		seqs []uint16
		want uint64
	}{
		{"in order", []uint16{10, 11, 12}, 3},
		{"a gap", []uint16{10, 11, 14}, 5},
		{"reordered", []uint16{10, 12, 11, 13}, 4},
		{"late packet from before the first", []uint16{10, 11, 9}, 2},
		{"duplicates", []uint16{10, 10, 11, 11}, 2},
		{"wrap", []uint16{65534, 65535, 0, 1}, 4},
		{"wrap with loss", []uint16{65530, 2}, 9},
		{"reordered across the wrap", []uint16{65535, 1, 0, 2}, 4},
	} {
		var s seqCounter
		for _, q := range tt.seqs {
			s.add(q)
		}
		if got := s.expected(); got != tt.want {
			t.Errorf("%s: expected %d, want %d", tt.name, got, tt.want)
		}
	}
	var s seqCounter
	s.add(100)
	s.add(104)
	s.restart() // a new stream
	s.add(7)
	s.add(8)
	if got := s.expected(); got != 7 {
		t.Errorf("across streams: expected %d, want 7", got)
	}
}

// vp8Packets packetizes VP8 frames as pion's sample tracks do.
func vp8Packets(frames [][]byte, mtu uint16) []*rtp.Packet {
	pay := &codecs.VP8Payloader{EnablePictureID: true}
	return packetize(pay, frames, mtu)
}

func packetize(pay rtp.Payloader, frames [][]byte, mtu uint16) []*rtp.Packet {
	var out []*rtp.Packet
	seq := uint16(65530) // wraps
	for i, f := range frames {
		payloads := pay.Payload(mtu, f)
		for j, b := range payloads {
			out = append(out, &rtp.Packet{
				Header:  rtp.Header{SequenceNumber: seq, Timestamp: uint32(i * 6000), Marker: j == len(payloads)-1},
				Payload: b,
			})
			seq++
		}
	}
	return out
}

func TestFrameCounter(t *testing.T) {
	var vp8 [][]byte
	for _, f := range readAll(t, testVideo, newIVFReader) {
		vp8 = append(vp8, f.data)
	}
	var h264 [][]byte
	for _, f := range readAll(t, testH264, newH264Reader) {
		h264 = append(h264, f.data)
	}
	for _, tt := range []struct {
		name      string
		packets   []*rtp.Packet
		isKey     func([]byte) bool
		drop      func(i int, p *rtp.Packet) bool
		frames    uint64
		keyframes uint64
	}{
		{"VP8", vp8Packets(vp8, 1188), vp8Keyframe, nil, 30, 2},
		{"VP8 small packets", vp8Packets(vp8, 300), vp8Keyframe, nil, 30, 2},
		{"VP8 without the last packets of frames", vp8Packets(vp8, 300), vp8Keyframe,
			func(_ int, p *rtp.Packet) bool { return p.Marker && p.Timestamp%(6000*3) == 0 }, 20, 0},
		{"H.264", packetize(&codecs.H264Payloader{}, h264, 1188), h264Keyframe, nil, 30, 2},
		{"H.264 in FU-A", packetize(&codecs.H264Payloader{}, h264, 200), h264Keyframe, nil, 30, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt := &remoteTrack{}
			var frames uint64
			for i, p := range tt.packets {
				if tt.drop != nil && tt.drop(i, p) {
					continue
				}
				if rt.packet(p, tt.isKey, time.Now()) {
					frames++
				}
			}
			s := rt.stats
			if s.Frames != tt.frames || frames != tt.frames {
				t.Errorf("%d frames (%d reported), want %d", s.Frames, frames, tt.frames)
			}
			if tt.drop == nil && s.Keyframes != tt.keyframes {
				t.Errorf("%d keyframes, want %d", s.Keyframes, tt.keyframes)
			}
			if tt.drop == nil && (s.Expected != uint64(len(tt.packets)) || s.Lost() != 0) {
				t.Errorf("expected %d, lost %d; sent %d", s.Expected, s.Lost(), len(tt.packets))
			}
		})
	}
}

// A retransmitted first packet of a keyframe still marks it as one.
func TestFrameCounterLateKeyframeStart(t *testing.T) {
	frame := readAll(t, testVideo, newIVFReader)[0].data
	ps := vp8Packets([][]byte{frame}, 1188)
	if len(ps) < 3 {
		t.Fatalf("%d packets", len(ps))
	}
	rt := &remoteTrack{}
	order := append(append([]*rtp.Packet{}, ps[1:len(ps)-1]...), ps[0], ps[len(ps)-1])
	for _, p := range order {
		rt.packet(p, vp8Keyframe, time.Now())
	}
	if rt.stats.Frames != 1 || rt.stats.Keyframes != 1 {
		t.Errorf("frames %d, keyframes %d", rt.stats.Frames, rt.stats.Keyframes)
	}
}

func TestH264Keyframe(t *testing.T) {
	for _, tt := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"IDR", []byte{0x65, 0x88}, true},
		{"SPS", []byte{0x67, 0x42}, true},
		{"non-IDR", []byte{0x41, 0x9a}, false},
		{"STAP-A of SPS and PPS", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"STAP-A of SEI", []byte{0x78, 0, 2, 0x06, 0x05}, false},
		{"STAP-A with a bad size", []byte{0x78, 0, 9, 0x67}, false},
		{"FU-A start of IDR", []byte{0x7c, 0x85, 1}, true},
		{"FU-A middle of IDR", []byte{0x7c, 0x05, 1}, false},
		{"FU-A start of non-IDR", []byte{0x7c, 0x81, 1}, false},
		{"empty", nil, false},
	} {
		if got := h264Keyframe(tt.payload); got != tt.want {
			t.Errorf("%s: %v", tt.name, got)
		}
	}
}

func TestSameUfrag(t *testing.T) {
	sdp := "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n"
	for _, tt := range []struct {
		candidate string
		want      bool
	}{
		{"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ufrag abcd", true},
		{"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ufrag abcd generation 0", true},
		{"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host ufrag wxyz", false},
		{"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host", true},
	} {
		if got := sameUfrag(sdp, tt.candidate); got != tt.want {
			t.Errorf("%q: %v", tt.candidate, got)
		}
	}
	if !sameUfrag("v=0\r\n", "candidate:1 1 udp 1 10.0.0.1 5000 typ host ufrag wxyz") {
		t.Error("a description without ice-ufrag holds candidates back")
	}
}
