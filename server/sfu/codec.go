package sfu

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// codecKind says how a payload is inspected for keyframes.
type codecKind uint8

const (
	codecOther codecKind = iota
	codecVP8
	codecH264
	codecVP9
)

func codecKindOf(mime string) codecKind {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return codecVP8
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return codecH264
	case strings.EqualFold(mime, webrtc.MimeTypeVP9):
		return codecVP9
	}
	return codecOther
}

// isKeyframeStart reports whether an RTP payload is the first packet of a keyframe: the
// packet a subscriber can start decoding from.
func isKeyframeStart(k codecKind, payload []byte) bool {
	switch k {
	case codecVP8:
		return vp8KeyframeStart(payload)
	case codecH264:
		return h264Keyframe(payload)
	case codecVP9:
		return vp9KeyframeStart(payload)
	}
	return false
}

// vp8KeyframeStart parses the VP8 payload descriptor (RFC 7741 section 4.2) and the first
// byte of the VP8 frame header (RFC 6386 section 9.1, P bit 0 = keyframe).
func vp8KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture ID
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 { // M: 15-bit picture ID
				i++
			}
			i++
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// h264Keyframe reports an IDR slice or an SPS (which precedes one) in a single NAL unit,
// STAP-A (RFC 6184 5.7.1) or the first fragment of an FU-A (5.8).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	isKey := func(t byte) bool { return t == 5 || t == 7 }
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		return isKey(t)
	case t == 24: // STAP-A
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			if i+2 >= len(p) {
				break
			}
			if isKey(p[i+2] & 0x1f) {
				return true
			}
			i += 2 + n
		}
	case t == 28: // FU-A
		return len(p) > 1 && p[1]&0x80 != 0 && isKey(p[1]&0x1f)
	}
	return false
}

// vp9KeyframeStart reads the VP9 payload descriptor (draft-ietf-payload-vp9): B (start of a
// frame) set and P (inter-picture predicted) clear.
func vp9KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	return p[0]&0x08 != 0 && p[0]&0x40 == 0
}

// frameStart reports whether a payload begins a new video frame (for frame rates).
func frameStart(k codecKind, p []byte) bool {
	switch k {
	case codecVP8:
		return len(p) > 0 && p[0]&0x10 != 0 && p[0]&0x07 == 0
	case codecVP9:
		return len(p) > 0 && p[0]&0x08 != 0
	case codecH264:
		if len(p) < 1 {
			return false
		}
		switch t := p[0] & 0x1f; {
		case t == 28:
			return len(p) > 1 && p[1]&0x80 != 0 && isSlice(p[1]&0x1f)
		case t >= 1 && t <= 5:
			return true
		case t == 24, t == 7:
			return true
		}
	}
	return false
}

func isSlice(t byte) bool { return t >= 1 && t <= 5 }

// ridRank orders simulcast RIDs from the lowest layer up. The q/h/f (quarter, half, full)
// convention is recognized; other names keep the order of the offer, which by convention
// lists encodings low to high.
func ridRank(rids []string) []string {
	known := map[string]int{"q": 0, "h": 1, "f": 2}
	all := true
	for _, r := range rids {
		if _, ok := known[r]; !ok {
			all = false
		}
	}
	out := append([]string(nil), rids...)
	if all {
		sort.SliceStable(out, func(i, j int) bool { return known[out[i]] < known[out[j]] })
	}
	return out
}

// offeredTrack is one sending m-line of a publisher's offer.
type offeredTrack struct {
	id    string
	mid   string
	kind  string
	rids  []string // low to high
	label string
}

// parseOffer finds the tracks a publisher offers to send, by msid track ID (or, without
// msid, by kind and mid).
func parseOffer(s string) (map[string]offeredTrack, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(s); err != nil {
		return nil, err
	}
	out := map[string]offeredTrack{}
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		if md.MediaName.Port.Value == 0 {
			continue
		}
		dir := "sendrecv"
		var mid, msidTrack string
		var rids []string
		for _, a := range md.Attributes {
			switch a.Key {
			case "sendonly", "recvonly", "inactive", "sendrecv":
				dir = a.Key
			case "mid":
				mid = a.Value
			case "msid":
				if f := strings.Fields(a.Value); len(f) == 2 {
					msidTrack = f[1]
				}
			case "rid":
				if f := strings.Fields(a.Value); len(f) >= 2 && f[1] == "send" {
					rids = append(rids, f[0])
				}
			}
		}
		if dir != "sendonly" && dir != "sendrecv" {
			continue
		}
		id := msidTrack
		if id == "" {
			id = trackIDFor(kind, mid)
		}
		out[id] = offeredTrack{id: id, mid: mid, kind: kind, rids: ridRank(rids)}
	}
	return out, nil
}

// mediaLine is what an answer must mirror of each m-line of the offer it answers.
type mediaLine struct {
	mid, dir, ufrag string
}

// mediaLines lists an SDP's m-lines: mid, direction ("rejected" for port 0 in an answer)
// and ICE ufrag.
func mediaLines(s string) ([]mediaLine, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(s); err != nil {
		return nil, err
	}
	ufrag, _ := sd.Attribute("ice-ufrag")
	out := make([]mediaLine, 0, len(sd.MediaDescriptions))
	for _, md := range sd.MediaDescriptions {
		m := mediaLine{dir: "sendrecv", ufrag: ufrag}
		for _, a := range md.Attributes {
			switch a.Key {
			case "sendonly", "recvonly", "inactive", "sendrecv":
				m.dir = a.Key
			case "mid":
				m.mid = a.Value
			case "ice-ufrag":
				m.ufrag = a.Value
			}
		}
		if _, bundleOnly := md.Attribute("bundle-only"); md.MediaName.Port.Value == 0 && !bundleOnly {
			m.dir = "rejected"
		}
		out = append(out, m)
	}
	return out, nil
}

// answerMismatch tells why answer cannot answer offer (JSEP, RFC 9429 5.3.1), nil if it
// can. prevOffer and prevAnswer are the last completed negotiation ("" before the first).
// Every new sub offer differs from the one before in a way its answer must show: more
// m-lines (a track added), an m-line now inactive (a track removed), or new ICE
// credentials (a restart, which the answerer must follow with its own). An answer to an
// earlier offer fails one of these checks.
func answerMismatch(offer, answer, prevOffer, prevAnswer string) error {
	o, err := mediaLines(offer)
	if err != nil {
		return err
	}
	a, err := mediaLines(answer)
	if err != nil {
		return err
	}
	if len(a) != len(o) {
		return fmt.Errorf("%d m-lines, the offer has %d", len(a), len(o))
	}
	for i := range o {
		if o[i].mid != "" && a[i].mid != "" && o[i].mid != a[i].mid {
			return fmt.Errorf("m-line %d is mid %q, the offer's is %q", i, a[i].mid, o[i].mid)
		}
		if o[i].dir == "inactive" && a[i].dir != "inactive" && a[i].dir != "rejected" {
			return fmt.Errorf("m-line %d (mid %q) is %s, the offer's is inactive", i, o[i].mid, a[i].dir)
		}
	}
	if prevOffer == "" || prevAnswer == "" || len(o) == 0 {
		return nil
	}
	po, err := mediaLines(prevOffer)
	if err != nil || len(po) == 0 {
		return nil
	}
	pa, err := mediaLines(prevAnswer)
	if err != nil || len(pa) == 0 {
		return nil
	}
	if o[0].ufrag != po[0].ufrag && a[0].ufrag == pa[0].ufrag {
		return errors.New("the offer restarts ICE, the answer keeps its credentials")
	}
	return nil
}

// trackIDFor names a track whose m-line has no msid (some WHIP encoders send none).
func trackIDFor(kind, mid string) string { return kind + "-" + mid }

// matchCodec picks the negotiated codec that carries what the publisher sends.
func matchCodec(want webrtc.RTPCodecCapability, have []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var best webrtc.RTPCodecParameters
	found := false
	for _, c := range have {
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if codecKindOf(want.MimeType) == codecH264 {
			if fmtpValue(c.SDPFmtpLine, "packetization-mode") != fmtpValue(want.SDPFmtpLine, "packetization-mode") {
				continue
			}
			// Same profile is best; any other constrained baseline will decode it too.
			if profile(c.SDPFmtpLine) == profile(want.SDPFmtpLine) {
				return c, true
			}
		} else {
			return c, true
		}
		if !found {
			best, found = c, true
		}
	}
	return best, found
}

func fmtpValue(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// profile is the profile_idc and profile-iop part of an H.264 profile-level-id (the level
// does not matter for decoding our forwarded streams).
func profile(fmtp string) string {
	v := strings.ToLower(fmtpValue(fmtp, "profile-level-id"))
	if len(v) < 4 {
		return v
	}
	return v[:4]
}

// mimeName is the codec part of a MIME type: "video/VP8" -> "VP8".
func mimeName(mime string) string {
	if _, n, ok := strings.Cut(mime, "/"); ok {
		return n
	}
	return mime
}

// seqNewer reports whether RTP sequence number a is after b (RFC 3550 wraparound).
func seqNewer(a, b uint16) bool { return a != b && a-b < 0x8000 }
