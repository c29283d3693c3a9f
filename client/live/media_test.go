package live

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/sanping/sanping/protocol"
)

// The test files (testdata/README.md): 2 s each, 15 fps video with a keyframe every second,
// Opus in 20 ms packets, one per Ogg page.
const (
	testVideo = "testdata/video.ivf"
	testH264  = "testdata/video.h264"
	testAudio = "testdata/audio.ogg"
)

func readAll(t *testing.T, path string, open func(io.Reader) (frameReader, error)) []frame {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var frames []frame
	for {
		f, err := r.next()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", len(frames), err)
		}
		frames = append(frames, f)
	}
}

func TestIVFReader(t *testing.T) {
	frames := readAll(t, testVideo, newIVFReader)
	if len(frames) != 30 {
		t.Fatalf("%d frames, want 30", len(frames))
	}
	for i, f := range frames {
		if want := time.Duration(i) * time.Second / 15; f.pts < want-time.Millisecond || f.pts > want+time.Millisecond {
			t.Errorf("frame %d at %v, want %v", i, f.pts, want)
		}
		// VP8 frame tag, RFC 6386 9.1: bit 0 clear on key frames.
		if key := f.data[0]&1 == 0; key != (i%15 == 0) {
			t.Errorf("frame %d: keyframe %v", i, key)
		}
	}
}

func TestH264Reader(t *testing.T) {
	frames := readAll(t, testH264, newH264Reader)
	if len(frames) != 30 {
		t.Fatalf("%d access units, want 30", len(frames))
	}
	for i, f := range frames {
		var types []byte
		for _, nal := range bytes.Split(f.data, []byte{0, 0, 0, 1})[1:] {
			types = append(types, nal[0]&0x1f)
		}
		// x264 with -tune zerolatency writes two slices per picture.
		want := "\x01\x01"
		if i%15 == 0 {
			want = "\x07\x08\x05\x05"
		}
		if string(types) != want {
			t.Errorf("access unit %d: NAL unit types %v, want %v", i, types, []byte(want))
		}
		if f.pts != time.Duration(i)*h264Interval {
			t.Errorf("access unit %d at %v", i, f.pts)
		}
	}
}

func TestOggReader(t *testing.T) {
	frames := readAll(t, testAudio, newOggReader)
	if len(frames) != 101 {
		t.Fatalf("%d packets, want 101", len(frames))
	}
	for i, f := range frames {
		if f.pts != time.Duration(i)*20*time.Millisecond {
			t.Errorf("packet %d at %v", i, f.pts)
		}
		if n := opusSamples(f.data); n != 960 {
			t.Errorf("packet %d of %d samples", i, n)
		}
	}
}

func TestOggReaderRefusesPagesOfSeveralPackets(t *testing.T) {
	packet := []byte{31 << 3, 1, 2, 3} // CELT, 20 ms, one frame (code 0)
	one := oggFile([][][]byte{{packet}, {packet}})
	if frames := readAll(t, writeTemp(t, "one.ogg", one), newOggReader); len(frames) != 2 {
		t.Errorf("%d packets from a file of two pages of one packet", len(frames))
	}
	two := oggFile([][][]byte{{packet, packet}})
	r, err := newOggReader(bytes.NewReader(two))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.next(); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("page of two packets: %v", err)
	}
}

func TestOpusSamples(t *testing.T) {
	for _, tt := range []struct {
		packet []byte
		want   int
	}{
		{[]byte{0 << 3}, 480},              // SILK 10 ms
		{[]byte{3<<3 | 1}, 2 * 2880},       // SILK 60 ms, two frames
		{[]byte{13 << 3}, 960},             // hybrid 20 ms
		{[]byte{16<<3 | 3, 3}, 3 * 120},    // CELT 2.5 ms, three frames
		{[]byte{31<<3 | 2, 0xff, 0}, 1920}, // CELT 20 ms, two frames of different sizes
		{[]byte{31<<3 | 3}, 0},             // code 3 without its frame count
		{nil, 0},
	} {
		if got := opusSamples(tt.packet); got != tt.want {
			t.Errorf("opusSamples(%x) = %d, want %d", tt.packet, got, tt.want)
		}
	}
}

func TestOpenSource(t *testing.T) {
	empty := writeTemp(t, "empty.ivf", nil)
	headerOnly := writeTemp(t, "header.ivf", mustRead(t, testVideo)[:32])
	vp9 := mustRead(t, testVideo)
	vp9 = append(append(append([]byte{}, vp9[:8]...), "VP90"...), vp9[12:]...)
	for _, tt := range []struct {
		path, label, err string
	}{
		{testVideo, protocol.LabelCamera, ""},
		{testH264, protocol.LabelImaging, ""},
		{testAudio, protocol.LabelMicrophone, ""},
		{testAudio, protocol.LabelCamera, "wrong kind"},
		{testVideo, protocol.LabelMicrophone, "wrong kind"},
		{"testdata/README.md", protocol.LabelCamera, "not .ivf"},
		{"testdata/missing.ivf", protocol.LabelCamera, "no such file"},
		{empty, protocol.LabelCamera, "IVF header"},
		{headerOnly, protocol.LabelCamera, "no frames"},
		{writeTemp(t, "vp9.ivf", vp9), protocol.LabelCamera, "only VP8"},
		{writeTemp(t, "bad.ogg", []byte("OggS but not really")), protocol.LabelMicrophone, "bad.ogg"},
	} {
		_, err := openSource(tt.path, tt.label, nil)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s as %s: %v", tt.path, tt.label, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s as %s: error %v, want one saying %q", tt.path, tt.label, err, tt.err)
		}
	}
}

// TestLoop: the timeline runs on across passes, each sample lasting until the next.
func TestLoop(t *testing.T) {
	for _, tt := range []struct {
		path     string
		open     func(io.Reader) (frameReader, error)
		frames   int
		interval time.Duration
	}{
		{testVideo, newIVFReader, 30, time.Second / 15},
		{testH264, newH264Reader, 30, h264Interval},
		{testAudio, newOggReader, 101, 20 * time.Millisecond},
	} {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			l, err := newLoop(bytes.NewReader(mustRead(t, tt.path)), tt.open)
			if err != nil {
				t.Fatal(err)
			}
			var first [][]byte
			for i := range 3 * tt.frames {
				s, due, err := l.next()
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				if want := time.Duration(i) * tt.interval; due < want-time.Millisecond || due > want+time.Millisecond {
					t.Fatalf("sample %d due at %v, want %v", i, due, want)
				}
				if d := s.Duration - tt.interval; d < -time.Millisecond || d > time.Millisecond {
					t.Fatalf("sample %d lasts %v", i, s.Duration)
				}
				if i < tt.frames {
					first = append(first, s.Data)
				} else if !bytes.Equal(s.Data, first[i%tt.frames]) {
					t.Fatalf("sample %d is not frame %d again", i, i%tt.frames)
				}
			}
		})
	}
}

// TestPace: samples go out in real time, each when it is due and never before. On synctest's
// clock, where a sample is late only if pace made it so.
func TestPace(t *testing.T) { synctest.Test(t, testPace) }

func testPace(t *testing.T) {
	l, err := newLoop(bytes.NewReader(mustRead(t, testAudio)), newOggReader)
	if err != nil {
		t.Fatal(err)
	}
	// Not a whole second: the sample due at 1 s would race the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 990*time.Millisecond)
	defer cancel()
	var late []time.Duration
	var start time.Time
	var due time.Duration
	next := func() (media.Sample, time.Duration, error) {
		s, d, err := l.next()
		due = d
		return s, d, err
	}
	err = pace(ctx, next, func(media.Sample) error {
		if start.IsZero() {
			start = time.Now()
		}
		late = append(late, time.Since(start.Add(due)))
		return nil
	}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	if len(late) != 50 { // 20 ms packets
		t.Errorf("%d samples in 990 ms, want 50", len(late))
	}
	for i, d := range late {
		if d != 0 {
			t.Fatalf("sample %d went out %v from when it was due", i, d)
		}
	}
}

func FuzzMediaReaders(f *testing.F) {
	for _, path := range []string{testVideo, testH264, testAudio} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 4000)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, open := range []func(io.Reader) (frameReader, error){newIVFReader, newH264Reader, newOggReader} {
			r, err := open(bytes.NewReader(b))
			if err != nil {
				continue
			}
			for range 1000 {
				if _, err := r.next(); err != nil {
					break
				}
			}
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// oggFile makes an Ogg Opus file: the two header pages, then one page per element of pages
// holding those packets, 20 ms (960 samples) each.
func oggFile(pages [][][]byte) []byte {
	head := append([]byte("OpusHead"), 1, 1, 0x38, 1, 0x80, 0xbb, 0, 0, 0, 0, 0)
	tags := append([]byte("OpusTags"), 0, 0, 0, 0, 0, 0, 0, 0)
	var out []byte
	out = append(out, oggPage(0x02, 0, 0, [][]byte{head})...)
	out = append(out, oggPage(0, 0, 1, [][]byte{tags})...)
	var granule uint64
	for i, packets := range pages {
		granule += uint64(960 * len(packets))
		out = append(out, oggPage(0, granule, uint32(i+2), packets)...)
	}
	return out
}

func oggPage(typ byte, granule uint64, seq uint32, packets [][]byte) []byte {
	var lacing, data []byte
	for _, p := range packets {
		for n := len(p); ; n -= 255 {
			if n < 255 {
				lacing = append(lacing, byte(n))
				break
			}
			lacing = append(lacing, 255)
		}
		data = append(data, p...)
	}
	h := []byte{'O', 'g', 'g', 'S', 0, typ}
	h = binary.LittleEndian.AppendUint64(h, granule)
	h = binary.LittleEndian.AppendUint32(h, 1) // serial
	h = binary.LittleEndian.AppendUint32(h, seq)
	h = append(h, 0, 0, 0, 0, byte(len(lacing))) // checksum, filled in below
	page := append(append(h, lacing...), data...)
	// Ogg's CRC-32 (RFC 3533 6): polynomial 0x04c11db7, not reflected, initial value 0.
	var crc uint32
	for _, b := range page {
		crc ^= uint32(b) << 24
		for range 8 {
			if crc&0x80000000 != 0 {
				crc = crc<<1 ^ 0x04c11db7
			} else {
				crc <<= 1
			}
		}
	}
	binary.LittleEndian.PutUint32(page[22:], crc)
	return page
}
