package recording

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sanping/sanping/internal/testtool"
)

const chromiumPath = "/usr/bin/chromium"

// TestChromiumPlaysWebM: Debian's Chromium plays a remuxed recording served with ranges: it
// reads the size from the track, decodes video and audio, plays to the end and seeks.
func TestChromiumPlaysWebM(t *testing.T) {
	testtool.Need(t, "apt-get install chromium", chromiumPath)
	out := filepath.Join(t.TempDir(), "r.webm")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := WriteWebM(f, Source{Path: testVideo, Start: t0}, Source{Path: testAudio, Start: t0.Add(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	page := `<!doctype html><video id="v" src="/r.webm" preload="auto"></video>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/r.webm" {
			w.Header().Set("Content-Type", "video/webm")
			http.ServeFile(w, r, out)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(page))
	}))
	defer srv.Close()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()

	const script = `new Promise((resolve) => {
		const v = document.getElementById('v');
		const done = (why) => resolve(JSON.stringify({why, error: v.error ? v.error.code : 0, duration: v.duration,
			width: v.videoWidth, height: v.videoHeight, audio: v.webkitAudioDecodedByteCount,
			video: v.webkitVideoDecodedByteCount, frames: v.getVideoPlaybackQuality().totalVideoFrames,
			seekable: v.seekable.length ? v.seekable.end(0) : 0, time: v.currentTime}));
		v.onerror = () => done('error');
		v.onended = () => {
			v.onseeked = () => done('seeked');
			v.currentTime = 1.0;
		};
		v.play().catch((e) => done('play: ' + e));
	})`
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Why                  string
		Error                int
		Duration, Seekable   float64
		Time                 float64
		Width, Height        int
		Audio, Video, Frames int
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", raw)
	if got.Why != "seeked" || got.Error != 0 || strings.HasPrefix(got.Why, "play") {
		t.Fatalf("playback: %s", raw)
	}
	// The video is 1.93 s, the audio 2 s from 0.3 s on.
	if got.Duration < 2.2 || got.Duration > 2.4 || got.Width != 320 || got.Height != 240 || got.Audio == 0 || got.Video == 0 ||
		got.Frames < 25 || got.Time != 1.0 {
		t.Errorf("playback: %s", raw)
	}
}
