package recording

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

const (
	testVideo = "../../client/live/testdata/video.ivf" // VP8 320x240, 15 fps, 2 s
	testAudio = "../../client/live/testdata/audio.ogg" // Opus mono, 20 ms pages, 2 s
)

type parsedWebM struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment webm.Segment    `ebml:"Segment"`
}

// block is a parsed SimpleBlock with its absolute time.
type block struct {
	track uint64
	ms    int64
	key   bool
	size  int
}

func parseWebM(t *testing.T, path string) (parsedWebM, []block) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m parsedWebM
	if err := ebml.Unmarshal(f, &m); err != nil {
		t.Fatalf("WebM does not parse: %v", err)
	}
	var blocks []block
	for _, c := range m.Segment.Cluster {
		for _, b := range c.SimpleBlock {
			n := 0
			for _, d := range b.Data {
				n += len(d)
			}
			blocks = append(blocks, block{b.TrackNumber, int64(c.Timecode) + int64(b.Timecode), b.Keyframe, n})
		}
	}
	return m, blocks
}

// counts reads every frame of an IVF and every packet of an Ogg.
func countFrames(t *testing.T, path string) (n int, last time.Duration) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var next func() ([]byte, time.Duration, error)
	if filepath.Ext(path) == ".ivf" {
		v, err := newIVFReader(f)
		if err != nil {
			t.Fatal(err)
		}
		next = v.next
	} else {
		o, err := newOggSource(f)
		if err != nil {
			t.Fatal(err)
		}
		next = o.next
	}
	for {
		_, tm, err := next()
		if errors.Is(err, io.EOF) {
			return n, last
		}
		if err != nil {
			t.Fatal(err)
		}
		n, last = n+1, tm
	}
}

func TestWriteWebM(t *testing.T) {
	frames, _ := countFrames(t, testVideo)
	packets, _ := countFrames(t, testAudio)
	if frames != 30 || packets != 101 {
		t.Fatalf("test media: %d frames, %d packets; want 30 and 101", frames, packets)
	}
	t0 := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		video, audio string
		audioLater   time.Duration
		wantTracks   []string
	}{
		{"video and audio together", testVideo, testAudio, 0, []string{"V_VP8", "A_OPUS"}},
		{"audio 700 ms later", testVideo, testAudio, 700 * time.Millisecond, []string{"V_VP8", "A_OPUS"}},
		{"audio 450 ms earlier", testVideo, testAudio, -450 * time.Millisecond, []string{"V_VP8", "A_OPUS"}},
		{"video alone", testVideo, "", 0, []string{"V_VP8"}},
		{"audio alone", "", testAudio, 0, []string{"A_OPUS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.webm")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			video, audio := Source{Path: tc.video, Start: t0}, Source{Path: tc.audio, Start: t0.Add(tc.audioLater)}
			st, err := WriteWebM(f, video, audio)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			m, blocks := parseWebM(t, out)
			if m.Header.DocType != "webm" {
				t.Errorf("DocType %q", m.Header.DocType)
			}
			var codecs []string
			byCodec := map[uint64]string{}
			for _, te := range m.Segment.Tracks.TrackEntry {
				codecs = append(codecs, te.CodecID)
				byCodec[te.TrackNumber] = te.CodecID
				switch te.CodecID {
				case "V_VP8":
					if te.Video == nil || te.Video.PixelWidth != 320 || te.Video.PixelHeight != 240 {
						t.Errorf("video track %+v: want 320x240 from the keyframe", te.Video)
					}
				case "A_OPUS":
					if !bytes.HasPrefix(te.CodecPrivate, []byte("OpusHead")) || te.Audio == nil || te.Audio.Channels != 1 {
						t.Errorf("audio track: private %q, %+v", te.CodecPrivate, te.Audio)
					}
					if ps := binary.LittleEndian.Uint16(te.CodecPrivate[10:12]); ps != 0 || te.CodecDelay != 0 {
						t.Errorf("pre-skip %d, codec delay %d: want 0", ps, te.CodecDelay)
					}
				}
			}
			if !equal(codecs, tc.wantTracks) {
				t.Fatalf("tracks %v, want %v", codecs, tc.wantTracks)
			}
			if m.Segment.Cues == nil || len(m.Segment.Cues.CuePoint) == 0 {
				t.Error("no Cues: the browser could not seek")
			}
			if m.Segment.Info.Duration < 1500 {
				t.Errorf("Duration %v ms", m.Segment.Info.Duration)
			}
			count := map[string]int{}
			first := map[string]int64{}
			last := map[string]int64{}
			var prev int64 = -1
			for _, b := range blocks {
				c := byCodec[b.track]
				if _, ok := first[c]; !ok {
					first[c] = b.ms
				}
				if b.ms < last[c] {
					t.Fatalf("%s block at %d ms after one at %d ms", c, b.ms, last[c])
				}
				if b.ms < prev-40 {
					t.Fatalf("blocks out of order across tracks: %d ms after %d ms", b.ms, prev)
				}
				prev = max(prev, b.ms)
				last[c] = b.ms
				count[c]++
				if c == "V_VP8" && count[c] == 1 && !b.key {
					t.Error("the first video block is not a keyframe")
				}
			}
			if tc.video != "" && (count["V_VP8"] != frames || st.VideoFrames != frames) {
				t.Errorf("%d video blocks (stats %d), want %d", count["V_VP8"], st.VideoFrames, frames)
			}
			if tc.audio != "" && (count["A_OPUS"] != packets || st.AudioPackets != packets) {
				t.Errorf("%d audio blocks (stats %d), want %d", count["A_OPUS"], st.AudioPackets, packets)
			}
			if tc.video != "" && tc.audio != "" {
				if got := time.Duration(first["A_OPUS"]-first["V_VP8"]) * time.Millisecond; got != tc.audioLater {
					t.Errorf("audio starts %v after the video, want %v", got, tc.audioLater)
				}
				// 15 fps over 2 s: the last frame at 1933 ms; 101 packets of 20 ms (2 s and the pre-skip): the last at 2000 ms.
				if got := last["V_VP8"] - first["V_VP8"]; got < 1900 || got > 1970 {
					t.Errorf("video spans %d ms, want about 1933", got)
				}
				if got := last["A_OPUS"] - first["A_OPUS"]; got != 2000 {
					t.Errorf("audio spans %d ms, want 2000", got)
				}
			}
		})
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestIVFTime checks the two time bases a recording can have: a 90 kHz one (the SFU now) read
// per the IVF format, and pion's old 1/30 header over millisecond/30 timestamps.
func TestIVFTime(t *testing.T) {
	for _, tc := range []struct {
		rate, scale uint32
		pts         uint64
		want        time.Duration
	}{
		{90000, 1, 90000, time.Second},
		{90000, 1, 3003, 33366666 * time.Nanosecond},
		{15, 1, 1, 66666666 * time.Nanosecond},
		{1000, 1, 40, 40 * time.Millisecond},
		{30, 1, 33, 990 * time.Millisecond}, // pion's writer: 1000 ms -> pts 33
	} {
		h := ivfHeader{rate: tc.rate, scale: tc.scale}
		if got := h.time(tc.pts); got != tc.want {
			t.Errorf("%d/%d pts %d: %v, want %v", tc.scale, tc.rate, tc.pts, got, tc.want)
		}
	}
}

func TestProbe(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Info
	}{
		{testVideo, Info{"video", "VP8", true}},
		{testAudio, Info{"audio", "opus", true}},
		{"../../client/live/testdata/video.h264", Info{"video", "H264", false}},
		{"missing.ivf", Info{Kind: "video"}},
		{"notes.txt", Info{}},
	} {
		if got := Probe(tc.path); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.path, got, tc.want)
		}
	}
}

func TestCache(t *testing.T) {
	dir := t.TempDir()
	video := filepath.Join(dir, "p-v.ivf")
	audio := filepath.Join(dir, "p-a.ogg")
	for src, dst := range map[string]string{testVideo: video, testAudio: audio} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var c Cache
	t0 := time.Now()
	alone, err := c.WebM(Source{Path: video, Start: t0}, Source{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.WebM(Source{Path: video, Start: t0}, Source{})
	if err != nil || again != alone {
		t.Fatalf("second request: %s, %v; want the cached %s", again, err, alone)
	}
	paired, err := c.WebM(Source{Path: video, Start: t0}, Source{Path: audio, Start: t0})
	if err != nil {
		t.Fatal(err)
	}
	if paired == alone {
		t.Fatal("pairing the audio kept the video-only WebM")
	}
	if _, err := os.Stat(alone); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale WebM is still there: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v; want the two recordings and one WebM", names)
	}
	_, blocks := parseWebM(t, paired)
	if len(blocks) != 131 {
		t.Errorf("%d blocks, want 131", len(blocks))
	}
}

func FuzzIVF(f *testing.F) {
	b, err := os.ReadFile(testVideo)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b[:min(len(b), 600)])
	f.Add([]byte("DKIF\x00\x00\x20\x00VP80"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := newIVFReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		for range 1000 {
			frame, _, err := v.next()
			if err != nil {
				return
			}
			vp8Size(frame)
			keyframe("VP80", frame)
			keyframe("VP90", frame)
		}
	})
}
