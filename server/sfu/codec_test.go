package sfu

import (
	"slices"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestKeyframeStart(t *testing.T) {
	tests := []struct {
		name    string
		kind    codecKind
		payload []byte
		want    bool
	}{
		{"vp8 keyframe, no extensions", codecVP8, []byte{0x10, 0x00, 0x9d}, true},
		{"vp8 inter frame", codecVP8, []byte{0x10, 0x01}, false},
		{"vp8 keyframe continuation", codecVP8, []byte{0x00, 0x00}, false},
		{"vp8 second partition", codecVP8, []byte{0x11, 0x00}, false},
		{"vp8 keyframe, 15-bit picture ID", codecVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 inter, 7-bit picture ID, TL0PICIDX, TID", codecVP8, []byte{0x90, 0xe0, 0x12, 0x05, 0x40, 0x01}, false},
		{"vp8 keyframe, 7-bit picture ID, TL0PICIDX, TID", codecVP8, []byte{0x90, 0xe0, 0x12, 0x05, 0x40, 0x00}, true},
		{"vp8 truncated descriptor", codecVP8, []byte{0x90, 0x80}, false},
		{"vp8 empty", codecVP8, nil, false},
		{"h264 IDR", codecH264, []byte{0x65, 0x88}, true},
		{"h264 SPS", codecH264, []byte{0x67, 0x42}, true},
		{"h264 non-IDR slice", codecH264, []byte{0x41, 0x9a}, false},
		{"h264 STAP-A with SPS", codecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 STAP-A without", codecH264, []byte{0x78, 0x00, 0x02, 0x06, 0x05}, false},
		{"h264 STAP-A truncated", codecH264, []byte{0x78, 0x00, 0x09, 0x41}, false},
		{"h264 FU-A IDR start", codecH264, []byte{0x7c, 0x85, 0x88}, true},
		{"h264 FU-A IDR middle", codecH264, []byte{0x7c, 0x05, 0x88}, false},
		{"h264 FU-A non-IDR start", codecH264, []byte{0x7c, 0x81, 0x9a}, false},
		{"vp9 keyframe start", codecVP9, []byte{0x08}, true},
		{"vp9 inter", codecVP9, []byte{0x48}, false},
		{"opus", codecOther, []byte{0x78}, false},
	}
	for _, tt := range tests {
		if got := isKeyframeStart(tt.kind, tt.payload); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func FuzzKeyframeStart(f *testing.F) {
	f.Add([]byte{0x90, 0xe0, 0x12, 0x05, 0x40, 0x00})
	f.Add([]byte{0x78, 0x00, 0x02, 0x67, 0x42})
	f.Add([]byte{0x7c, 0x85})
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, k := range []codecKind{codecVP8, codecH264, codecVP9} {
			isKeyframeStart(k, p)
			frameStart(k, p)
		}
	})
}

func TestRIDRank(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"f", "h", "q"}, []string{"q", "h", "f"}},
		{[]string{"q", "f"}, []string{"q", "f"}},
		{[]string{"hi", "lo"}, []string{"hi", "lo"}}, // unknown names keep the offer's order
		{nil, nil},
	}
	for _, tt := range tests {
		if got := ridRank(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("ridRank(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

const chromeOffer = `v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=msid:stream mic-1
a=rtpmap:111 opus/48000/2
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=msid:stream cam-1
a=rtpmap:96 VP8/90000
a=rid:f send
a=rid:h send
a=rid:q send
a=simulcast:send f;h;q
m=video 9 UDP/TLS/RTP/SAVPF 96
c=IN IP4 0.0.0.0
a=mid:2
a=inactive
a=rtpmap:96 VP8/90000
`

func TestParseOffer(t *testing.T) {
	got, err := parseOffer(chromeOffer)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("tracks %v, want the microphone and the camera", got)
	}
	if cam := got["cam-1"]; cam.kind != "video" || cam.mid != "1" || !slices.Equal(cam.rids, []string{"q", "h", "f"}) {
		t.Errorf("camera: %+v", cam)
	}
	if mic := got["mic-1"]; mic.kind != "audio" || len(mic.rids) != 0 {
		t.Errorf("microphone: %+v", mic)
	}
	if _, err := parseOffer("not sdp"); err == nil {
		t.Errorf("garbage parsed")
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add(chromeOffer)
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseOffer(s)
	})
}

func TestMatchCodec(t *testing.T) {
	h264 := func(pt webrtc.PayloadType, fmtp string) webrtc.RTPCodecParameters {
		return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: fmtp}, PayloadType: pt}
	}
	have := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
		h264(102, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
		h264(106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
		h264(108, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
	}
	tests := []struct {
		want   webrtc.RTPCodecCapability
		pt     webrtc.PayloadType
		absent bool
	}{
		{want: webrtc.RTPCodecCapability{MimeType: "video/vp8"}, pt: 96},
		{want: h264(0, "packetization-mode=1;profile-level-id=42e01f").RTPCodecCapability, pt: 108},
		{want: h264(0, "packetization-mode=1;profile-level-id=42e029").RTPCodecCapability, pt: 108},
		{want: h264(0, "packetization-mode=1;profile-level-id=4d001f").RTPCodecCapability, pt: 106},
		{want: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9}, absent: true},
	}
	for _, tt := range tests {
		got, ok := matchCodec(tt.want, have)
		if ok == tt.absent || (ok && got.PayloadType != tt.pt) {
			t.Errorf("%s %s: got %d (%v), want %d", tt.want.MimeType, tt.want.SDPFmtpLine, got.PayloadType, ok, tt.pt)
		}
	}
}

// TestAnswerMismatch: the answer to a sub offer, and answers to the offer before it (the
// copies of a resent offer a slow client answers late), told apart.
func TestAnswerMismatch(t *testing.T) {
	// sd builds an SDP: one m-line per "mid:direction", all with the ICE ufrag.
	sd := func(ufrag string, lines ...string) string {
		s := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
		for _, l := range lines {
			mid, dir, _ := strings.Cut(l, ":")
			port := "9"
			if dir == "rejected" {
				port, dir = "0", "inactive"
			}
			s += "m=video " + port + " UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:" + ufrag + "\r\na=mid:" + mid + "\r\na=" + dir + "\r\n"
		}
		return s
	}
	one := sd("sfu1", "0:sendonly")
	oneAnswered := sd("cli1", "0:recvonly")
	for _, c := range []struct {
		name                  string
		offer, answer         string
		prevOffer, prevAnswer string
		ok                    bool
	}{
		{"first answer", one, oneAnswered, "", "", true},
		{"a track added", sd("sfu1", "0:sendonly", "1:sendonly"), sd("cli1", "0:recvonly", "1:recvonly"), one, oneAnswered, true},
		{"a track added, the answer before", sd("sfu1", "0:sendonly", "1:sendonly"), oneAnswered, one, oneAnswered, false},
		{"other mids", sd("sfu1", "0:sendonly", "1:sendonly"), sd("cli1", "0:recvonly", "2:recvonly"), one, oneAnswered, false},
		{"a track removed", sd("sfu1", "0:inactive"), sd("cli1", "0:inactive"), one, oneAnswered, true},
		{"a track removed, rejected", sd("sfu1", "0:inactive"), sd("cli1", "0:rejected"), one, oneAnswered, true},
		{"a track removed, the answer before", sd("sfu1", "0:inactive"), oneAnswered, one, oneAnswered, false},
		{"ICE restart", sd("sfu2", "0:sendonly"), sd("cli2", "0:recvonly"), one, oneAnswered, true},
		{"ICE restart, the answer before", sd("sfu2", "0:sendonly"), oneAnswered, one, oneAnswered, false},
		{"the same offer again", one, sd("cli1", "0:recvonly"), one, oneAnswered, true},
		{"not SDP", one, "answer", "", "", false},
	} {
		err := answerMismatch(c.offer, c.answer, c.prevOffer, c.prevAnswer)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}
