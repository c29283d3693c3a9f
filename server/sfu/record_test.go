package sfu

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// TestRecording: with consent, a participant's camera and microphone are written to disk;
// the files are complete when it leaves and read back as IVF and Ogg. A second participant
// sends H.264: the other receives it, and its recording reads back as Annex B from an IDR.
// On synctest's clock, so the second recorded after the media arrived is a second of media
// however busy the machine, and the recorder's wait for late packets runs on it too.
func TestRecording(t *testing.T) { synctest.Test(t, testRecording) }

func testRecording(t *testing.T) {
	var events eventLog
	dir := t.TempDir()
	lan := newVirtualLAN(t)
	s := lan.sfu(Config{RecordDir: dir, OnEvent: events.add})
	const room = 11
	c := lan.client(s, room, "clinic", clientOptions{publish: true, record: true})
	h := lan.client(s, room, "station", clientOptions{publish: true, record: true, h264: true})
	waitFor(t, 10*time.Second, "media to arrive", func() bool {
		for _, id := range []string{"clinic", "station"} {
			p, ok := s.Peer(room, id)
			if !ok || len(p.upTracks()) != 2 {
				return false
			}
			for _, ut := range p.upTracks() {
				if ut.layers[0].packets.Load() < 60 {
					return false
				}
			}
		}
		return receivesFrom(c, h, 30)
	})
	time.Sleep(time.Second)
	c.close()
	h.close()
	checkH264(t, &events)

	var files []string
	for _, ext := range []string{".ivf", ".ogg"} {
		e, ok := events.find(func(e Event) bool {
			return e.Kind == EventRecording && e.Peer == "clinic" && strings.HasSuffix(e.File, ext)
		})
		if !ok {
			t.Fatalf("no recording event for a %s file", ext)
		}
		files = append(files, e.File)
		if e.Start.IsZero() {
			t.Errorf("the %s recording's event has no start", ext)
		}
		if want := filepath.Join(dir, "11", "clinic-clinic-"); !strings.HasPrefix(e.File, want) {
			t.Errorf("recording at %s, want under %s", e.File, want)
		}
	}

	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	iv, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	frames, keyframes := 0, 0
	for {
		frame, _, err := iv.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("frame %d: %v", frames, err)
		}
		if frames == 0 && frame[0]&1 != 0 {
			t.Errorf("the recording does not start with a keyframe")
		}
		if frame[0]&1 == 0 {
			keyframes++
		}
		frames++
	}
	if hdr.TimebaseDenominator != 90000 || hdr.TimebaseNumerator != 1 {
		t.Errorf("IVF time base %d/%d, want 1/90000 (the RTP clock)", hdr.TimebaseNumerator, hdr.TimebaseDenominator)
	}
	if frames < 20 || keyframes == 0 || hdr.NumFrames != uint32(frames) {
		t.Errorf("IVF: %d frames (%d keyframes), header says %d", frames, keyframes, hdr.NumFrames)
	}

	a, err := os.Open(files[1])
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	og, head, err := oggreader.NewWith(a)
	if err != nil {
		t.Fatal(err)
	}
	pages := 0
	for {
		_, _, err := og.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		pages++
	}
	if pages < 50 || head.SampleRate != 48000 {
		t.Errorf("Ogg: %d pages, %d Hz", pages, head.SampleRate)
	}
}

func checkH264(t *testing.T, events *eventLog) {
	t.Helper()
	e, ok := events.find(func(e Event) bool { return e.Kind == EventRecording && strings.HasSuffix(e.File, ".h264") })
	if !ok {
		t.Fatal("no recording event for the H.264 camera")
	}
	f, err := os.Open(e.File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var types []h264reader.NalUnitType
	idr, slices := 0, 0
	for {
		nal, err := r.NextNAL()
		if err != nil {
			break
		}
		types = append(types, nal.UnitType)
		switch nal.UnitType {
		case h264reader.NalUnitTypeCodedSliceIdr:
			idr++
			slices++
		case h264reader.NalUnitTypeCodedSliceNonIdr:
			slices++
		}
	}
	if len(types) == 0 || types[0] != h264reader.NalUnitTypeSPS || idr == 0 || slices < 20 {
		t.Errorf("H.264 recording: %d slices, %d IDR, starts with %v", slices, idr, types[:min(len(types), 3)])
	}
}

// TestRecordAudioGap: Opus packets that never arrived are written as empty packets of the same
// frame size, so the Ogg file's granule positions follow the RTP clock.
func TestRecordAudioGap(t *testing.T) {
	var w writtenRTP
	r := &recorder{w: &w}
	toc20ms := byte(15 << 3) // hybrid FB 20 ms, one frame (code 0)
	for _, ts := range []uint32{1000, 1960, 1960 + 3*960, 1960 + 4*960} {
		r.packet(&rtp.Packet{Header: rtp.Header{Timestamp: ts}, Payload: []byte{toc20ms, 1, 2, 3}}, false)
	}
	want := []uint32{1000, 1960, 2920, 3880, 4840, 5800}
	if len(w.ts) != len(want) {
		t.Fatalf("wrote %v, want %v", w.ts, want)
	}
	for i := range want {
		if w.ts[i] != want[i] {
			t.Fatalf("wrote %v, want %v", w.ts, want)
		}
	}
	if w.sizes[2] != 1 || w.sizes[3] != 1 || w.sizes[4] != 4 {
		t.Errorf("payload sizes %v: want TOC-only fillers", w.sizes)
	}
	if r.start.IsZero() {
		t.Error("no start time")
	}
}

func TestOpusPacketSamples(t *testing.T) {
	for _, tc := range []struct {
		payload []byte
		want    uint32
	}{
		{[]byte{1 << 3}, 960},              // SILK NB 20 ms
		{[]byte{3<<3 | 1, 0, 0}, 2 * 2880}, // SILK 60 ms, two frames
		{[]byte{16 << 3}, 120},             // CELT 2.5 ms
		{[]byte{31<<3 | 3, 6}, 6 * 960},    // CELT 20 ms, six frames (code 3)
		{[]byte{31<<3 | 3}, 0},             // code 3 without its count
	} {
		if got := opusPacketSamples(tc.payload); got != tc.want {
			t.Errorf("%x: %d samples, want %d", tc.payload, got, tc.want)
		}
	}
}

type writtenRTP struct {
	ts    []uint32
	sizes []int
}

func (l *writtenRTP) WriteRTP(p *rtp.Packet) error {
	l.ts, l.sizes = append(l.ts, p.Timestamp), append(l.sizes, len(p.Payload))
	return nil
}

func (l *writtenRTP) Close() error { return nil }
