package api

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/server/signal"
)

// TestRecordingPairs: a video takes its participant's audio whose span overlaps it most; rows
// without starts pair by their finalize times; H.264 and other participants' audio never pair.
func TestRecordingPairs(t *testing.T) {
	at := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	s := func(sec int) time.Time { return at.Add(time.Duration(sec) * time.Second) }
	recs := []signal.Recording{
		{Start: s(0), Time: s(60), Participant: "a", File: "a-cam.ivf"},    // 0
		{Start: s(0), Time: s(30), Participant: "a", File: "a-mic.ogg"},    // 1: overlaps 0 for 30 s
		{Start: s(25), Time: s(90), Participant: "a", File: "a-mic-2.ogg"}, // 2: overlaps 0 for 35 s
		{Start: s(0), Time: s(90), Participant: "b", File: "b-mic.ogg"},    // 3: another participant
		{Start: s(70), Time: s(80), Participant: "a", File: "a-cam-2.ivf"}, // 4: only 2 overlaps
		{Start: s(0), Time: s(60), Participant: "a", File: "a-cam.h264"},   // 5: not playable
		{Time: s(200), Participant: "c", File: "c-cam.ivf"},                // 6: no starts
		{Time: s(203), Participant: "c", File: "c-mic.ogg"},                // 7: ended 3 s later
		{Time: s(300), Participant: "c", File: "c-cam-2.ivf"},              // 8: nothing near
		{Start: s(400), Time: s(410), Participant: "d", File: "d-cam.ivf"}, // 9
		{Start: s(420), Time: s(430), Participant: "d", File: "d-mic.ogg"}, // 10: after it
	}
	dir := t.TempDir()
	for i := range recs {
		src := "../../client/live/testdata/video" + filepath.Ext(recs[i].File)
		if strings.HasSuffix(src, ".ogg") {
			src = "../../client/live/testdata/audio.ogg"
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		recs[i].File = filepath.Join(dir, recs[i].File)
		if err := os.WriteFile(recs[i].File, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := map[int]int{0: 2, 4: 2, 6: 7}
	got := recordingEntries(7, recs)
	for i, e := range got {
		if e.ID != i || e.URL != "/api/session-logs/7/recordings/"+strconv.Itoa(i) {
			t.Errorf("entry %d: id %d, url %s", i, e.ID, e.URL)
		}
		w, ok := want[i]
		switch {
		case ok && (e.AudioID == nil || *e.AudioID != w):
			t.Errorf("%s: audio %v, want %d", e.File, e.AudioID, w)
		case !ok && e.AudioID != nil:
			t.Errorf("%s: audio %d, want none", e.File, *e.AudioID)
		}
	}
	if e := got[5]; e.Kind != "video" || e.Codec != "H264" || e.Playable {
		t.Errorf("H.264 entry %+v", e)
	}
	if e := got[1]; e.Kind != "audio" || e.Codec != "opus" || !e.Playable {
		t.Errorf("audio entry %+v", e)
	}
}

// TestRecordingFileStaysInside: only regular files under the recordings directory are served,
// whatever the database says.
func TestRecordingFileStaysInside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "recordings")
	inside := filepath.Join(dir, "12", "p-cam.ivf")
	outside := filepath.Join(root, "secret.ivf")
	link := filepath.Join(dir, "12", "link.ivf")
	for _, p := range []string{inside, outside} {
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, []byte("DKIF"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	s := New(Config{RecordingDir: dir})
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{inside, true},
		{filepath.Join(dir, "12", "..", "12", "p-cam.ivf"), true},
		{outside, false},
		{filepath.Join(dir, "..", "secret.ivf"), false},
		{link, false},
		{filepath.Join(dir, "12"), false},
		{dir, false},
		{"/etc/passwd", false},
		{filepath.Join(dir, "12", "missing.ivf"), false},
	} {
		if _, ok := s.recordingFile(tc.file); ok != tc.ok {
			t.Errorf("%s: served %v, want %v", tc.file, ok, tc.ok)
		}
	}
}
