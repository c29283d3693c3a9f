package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

// recordWriter keeps what a down-track writes.
type recordWriter struct{ hdrs []rtp.Header }

func (w *recordWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	w.hdrs = append(w.hdrs, *h)
	return len(p), nil
}
func (w *recordWriter) Write(b []byte) (int, error) { return len(b), nil }

// source is one simulcast layer's RTP stream.
type source struct {
	l   *layer
	pkt rtp.Packet
}

func (s *source) next(key bool, ts uint32) *rtp.Packet {
	s.pkt.SequenceNumber++
	s.pkt.Timestamp = ts
	s.pkt.Payload = []byte{0x10, 0x01, 0xaa}
	if key {
		s.pkt.Payload[1] = 0x00
	}
	return &s.pkt
}

// TestDownTrackRewrite follows a down-track through a start, a switch to another layer, a
// late packet of the old layer, a padding probe, a pause and a resume, and a long run: the
// subscriber must see one stream with contiguous sequence numbers and monotonic timestamps.
func TestDownTrackRewrite(t *testing.T) {
	w := &recordWriter{}
	d, l0 := benchDown(w)
	l1 := &layer{ut: l0.ut, idx: 1, rid: "f"}
	l0.ut.layers = append(l0.ut.layers, l1)
	q := &source{l: l0, pkt: rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 111, SequenceNumber: 100}}}
	f := &source{l: l1, pkt: rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 222, SequenceNumber: 60000}}}
	ms := int64(time.Millisecond)
	now := int64(0)
	tsQ, tsF := uint32(5000), uint32(900000)
	step := func(s *source, key bool, ts uint32) bool {
		now += 10 * ms
		p := s.next(key, ts)
		return d.forward(s.l, p, key && isKeyframeStart(codecVP8, p.Payload), now)
	}

	if step(q, false, tsQ) {
		t.Fatal("forwarded before a keyframe")
	}
	for i := range 5 {
		if !step(q, i == 0, tsQ+uint32(i*3000)) {
			t.Fatalf("q packet %d not forwarded", i)
		}
	}
	d.setTarget(1)
	if step(f, false, tsF) {
		t.Fatal("switched before f's keyframe")
	}
	if !step(q, false, tsQ+15000) {
		t.Fatal("q stopped before the switch")
	}
	for i := range 5 {
		if !step(f, i == 0, tsF+uint32(i*3000)) {
			t.Fatalf("f packet %d not forwarded", i)
		}
	}
	if step(q, false, tsQ+18000) {
		t.Fatal("q forwarded after the switch")
	}
	// A padding-only probe next in line is dropped without leaving a gap.
	now += ms
	probe := f.next(false, tsF+12000)
	probe.Payload = nil
	if d.forward(l1, probe, false, now) {
		t.Fatal("padding forwarded")
	}
	if !step(f, false, tsF+15000) {
		t.Fatal("f packet after the probe not forwarded")
	}
	// Pause, then resume on q.
	d.setTarget(-1)
	if step(f, true, tsF+18000) {
		t.Fatal("forwarded while paused")
	}
	now += int64(time.Second)
	d.setTarget(0)
	if !step(q, true, tsQ+100000) {
		t.Fatal("no resume at q's keyframe")
	}
	// A long run crosses the 16-bit sequence space more than once.
	for i := range 70000 {
		if !step(q, false, tsQ+100000+uint32(i)) {
			t.Fatalf("long run: packet %d not forwarded", i)
		}
	}

	for i := 1; i < len(w.hdrs); i++ {
		a, b := w.hdrs[i-1], w.hdrs[i]
		if b.SequenceNumber != a.SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, b.SequenceNumber, a.SequenceNumber)
		}
		if int32(b.Timestamp-a.Timestamp) < 0 {
			t.Fatalf("packet %d: timestamp %d after %d", i, b.Timestamp, a.Timestamp)
		}
		if b.SSRC != 1234 || b.PayloadType != 96 || b.Extension || len(b.Extensions) != 0 {
			t.Fatalf("packet %d: header not rewritten: %+v", i, b)
		}
	}
	// The resume after a second of pause moves the timestamp on by about a second.
	for i := 1; i < len(w.hdrs); i++ {
		if gap := w.hdrs[i].Timestamp - w.hdrs[i-1].Timestamp; gap > 80000 && gap < 100000 {
			return
		}
	}
	t.Errorf("no ~1 s timestamp step at the resume")
}

// TestDownTrackLate: a late packet of the current layer (a retransmission) still goes out,
// under its own rewritten sequence number.
func TestDownTrackLate(t *testing.T) {
	w := &recordWriter{}
	d, l := benchDown(w)
	s := &source{l: l, pkt: rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 7, SequenceNumber: 10}}}
	d.forward(l, s.next(true, 0), true, 1)
	d.forward(l, s.next(false, 0), false, 2)
	s.pkt.SequenceNumber++ // 13 is lost
	d.forward(l, s.next(false, 3000), false, 3)
	late := s.pkt
	late.SequenceNumber--
	late.Payload = []byte{0x00, 0x01}
	if !d.forward(l, &late, false, 4) {
		t.Fatal("retransmission dropped")
	}
	got := []uint16{}
	for _, h := range w.hdrs {
		got = append(got, h.SequenceNumber-w.hdrs[0].SequenceNumber)
	}
	if want := []uint16{0, 1, 3, 2}; len(got) != 4 || got[2] != want[2] || got[3] != want[3] {
		t.Errorf("relative sequence numbers %v, want %v", got, want)
	}
}

// TestDownTrackSwitchEarlyClock: the packet that completes a switch may carry a read time a
// little before the last forwarded packet's (each layer has its own goroutine); the
// timestamp must still move forward.
func TestDownTrackSwitchEarlyClock(t *testing.T) {
	w := &recordWriter{}
	d, l0 := benchDown(w)
	l1 := &layer{ut: l0.ut, idx: 1, rid: "f"}
	l0.ut.layers = append(l0.ut.layers, l1)
	q := &source{l: l0, pkt: rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1}}}
	f := &source{l: l1, pkt: rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 2}}}
	d.forward(l0, q.next(true, 1000), true, 1_000_000)
	d.setTarget(1)
	if !d.forward(l1, f.next(true, 50), true, 999_000) {
		t.Fatal("no switch")
	}
	if a, b := w.hdrs[0].Timestamp, w.hdrs[1].Timestamp; int32(b-a) <= 0 {
		t.Errorf("timestamp %d after %d", b, a)
	}
}
