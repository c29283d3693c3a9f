package server

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sanping/sanping/internal/testtool"
	"github.com/sanping/sanping/web"
)

const chromiumPath = "/usr/bin/chromium"

// browser is one headless Debian Chromium with fake camera and microphone, signed in as u.
func (f *authzFixture) browser(t *testing.T, u *fixtureUser) context.Context {
	t.Helper()
	testtool.Need(t, "apt-get install chromium", chromiumPath)
	// The room is the browser app's: a binary built before the app serves only a page that
	// says how to build it (make test builds the app before the Go tests).
	if _, ok := web.App(); !ok {
		if os.Getenv("CI") != "" {
			t.Fatal("the browser app is not built into this test binary: run `make web` (npm run build in web/) before go test")
		}
		t.Skip("the browser app is not built (make web)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if u.client == nil {
		f.signIn(u)
	}
	base, _ := url.Parse(f.srv.URL)
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, c := range u.client.Jar.Cookies(base) {
			if _, err := cdp.Call(ctx, t, network.SetCookie, network.SetCookieParams{Name: c.Name, Value: c.Value, URL: f.srv.URL, HTTPOnly: new(true)}); err != nil {
				return err
			}
		}
		return nil
	}))
	if err != nil {
		t.Fatalf("starting chromium for %s: %v", u.name, err)
	}
	return ctx
}

// roomPage is the app's live room for consultation id, joining at once with the fake camera
// and microphone (?auto=1 skips the pre-call check). The page exposes window.sanping
// (web/src/views/room/testHooks.ts).
func roomPage(f *authzFixture, id int64) string {
	return fmt.Sprintf("%s/consultations/%d/live?auto=1", f.srv.URL, id)
}

// eval runs a JavaScript expression in the page, awaiting a promise, and decodes its value.
func eval[T any](ctx context.Context, expr string) (T, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// waitJS polls expr (a JavaScript boolean expression, may await) until true.
func waitJS(t *testing.T, ctx context.Context, what, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		ok, err := eval[bool](ctx, expr)
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	diag, _ := eval[string](ctx, `(async () => JSON.stringify({me: sanping.me, seq: sanping.seq, errors: sanping.errors, remote: [...sanping.remote.keys()],
		participants: [...sanping.participants.keys()], status: sanping.status,
		frames: await sanping.framesDecoded(), sub: sanping.sub && sanping.sub.connectionState, pub: sanping.pub && sanping.pub.connectionState,
		sent: sanping.pub && (await sanping.pub.getStats().then((s) => [...s.values()].filter((r) => r.type === 'outbound-rtp' && r.kind === 'video').map((r) => r.rid + ':' + (r.frameWidth || 0) + '@' + (r.framesPerSecond || 0) + ' ' + r.qualityLimitationReason))),
		timeline: sanping.timeline,
		inbound: sanping.sub && (await sanping.sub.getStats().then((s) => [...s.values()].filter((r) => r.type === 'inbound-rtp').map((r) => ({mid: r.mid, kind: r.kind, track: r.trackIdentifier, ssrc: r.ssrc, packets: r.packetsReceived, frames: r.framesDecoded, framesReceived: r.framesReceived, kf: r.keyFramesDecoded, pli: r.pliCount, nack: r.nackCount, lost: r.packetsLost})))),
		transceivers: sanping.sub && sanping.sub.getTransceivers().map((t) => ({mid: t.mid, dir: t.direction, cur: t.currentDirection, track: t.receiver.track.id, muted: t.receiver.track.muted, state: t.receiver.track.readyState})),
		streams: [...sanping.remote].map(([p, r]) => ({p, tracks: r.stream.getTracks().map((t) => t.kind + ':' + t.id + ':' + t.readyState + (t.muted ? ':muted' : ''))})),
		signaling: sanping.sub && sanping.sub.signalingState}))()`)
	t.Fatalf("%s: not within %v (%s) %s", what, within, last, diag)
}

// TestBrowsersInOneRoom: three headless Chromium browsers (fake media devices) join one room
// through the SFU: each decodes the other two's video, a view operation from one shows on the
// other two, and one reloads and comes back as the same participant with the same view.
func TestBrowsersInOneRoom(t *testing.T) {
	testtool.MeasuresTime(t)
	f := newAuthzFixture(t)
	id := f.consultation(false, "live")
	township := f.users["township"]
	if _, err := f.app.consult.AddParticipant(context.Background(), f.users["clinic"].p, id, township.p.UserID); err != nil {
		t.Fatal(err)
	}
	page := roomPage(f, id)
	names := []string{"doctor", "clinic", "township"}
	tabs := map[string]context.Context{}
	for _, n := range names {
		ctx := f.browser(t, f.users[n])
		if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		tabs[n] = ctx
	}
	for _, n := range names {
		waitJS(t, tabs[n], n+" sees three participants", `sanping.participants.size === 3 && sanping.me !== ''`, 60*time.Second)
	}
	// Each decodes the other two's video, and keeps decoding. The deadlines are generous: this
	// test holds to what happens, and three Chromiums encoding on a busy 2-core machine are
	// slow to get there (TestBrowserFirstFrame is the one that times a join).
	decoding := `(async () => { const f = await sanping.framesDecoded(); const v = Object.values(f); return v.length === 2 && v.every((n) => n > 20); })()`
	for _, n := range names {
		waitJS(t, tabs[n], n+" decodes both others' video", decoding, 90*time.Second)
	}
	// The doctor (the driver) changes the window; the other two apply it.
	if _, err := eval[bool](tabs["doctor"], `sanping.sendOp({kind: 'window', window: {center: 123, width: 456}}), true`); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		waitJS(t, tabs[n], n+" applies the doctor's window", `sanping.view.window.center === 123 && sanping.view.window.width === 456`, 30*time.Second)
	}
	// The clinic reloads: same participant, same view, video again.
	before, err := eval[string](tabs["clinic"], `sanping.me`)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tabs["clinic"], chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tabs["clinic"], "the clinic is back as the same participant", fmt.Sprintf(`sanping.me === %q && sanping.view && sanping.view.window.center === 123`, before), 60*time.Second)
	waitJS(t, tabs["clinic"], "the clinic decodes video again", decoding, 90*time.Second)
	// Only the new tracks: the old ones, muted, left the clinic's video.
	waitJS(t, tabs["doctor"], "the doctor decodes the clinic again", fmt.Sprintf(`(async () => (await sanping.framesDecoded())[%q] > 20 &&
		sanping.remote.get(%[1]q).stream.getTracks().length === 2)()`, before), 90*time.Second)
}

// joinTimeline is what the doctor's page recorded of one join: its steps in ms after the join
// started (the live client's mark), the remote video's size at each change, and stats samples.
type joinTimeline struct {
	Steps map[string]int `json:"steps"`
	Sizes []struct {
		T int `json:"t"`
		W int `json:"w"`
		H int `json:"h"`
	} `json:"sizes"`
	Samples []statsSample `json:"samples"`
}

// statsSample is the doctor's inbound video from getStats, polled by the page every 50 ms.
type statsSample struct {
	T         int     `json:"t"`
	Packets   int     `json:"packets"`
	Decoded   int     `json:"decoded"`
	Keyframes int     `json:"keyframes"`
	PLI       int     `json:"pli"`
	Jitter    float64 `json:"jitterMs"`
}

// sentLayer is one simulcast layer as the sending page's getStats reports it.
type sentLayer struct {
	RID   string  `json:"rid"`
	W     int     `json:"w"`
	H     int     `json:"h"`
	FPS   float64 `json:"fps"`
	Kbps  int     `json:"kbps"`
	Limit string  `json:"limit"` // qualityLimitationReason: none, bandwidth, cpu
}

// The targets of issue 11 are a first remote frame within 1 s of joining and 640x480 within
// 3 s, on loopback (measured: 0.67 s without the race detector, 0.82 s median with it; see
// bench/README.md). A test asserts no speed on a shared 2-core machine: it catches a join
// that has become slow (twice the target), and the log says whether a run met the targets.
const (
	firstFrameTarget = time.Second
	fullSizeTarget   = 3 * time.Second
	firstFrameWithin = 2 * time.Second
	fullSizeWithin   = 4 * time.Second
)

// TestBrowserFirstFrame: the clinic publishes its camera (simulcast) and the doctor joins
// afterwards. The doctor's page must present the clinic's first frame within firstFrameWithin
// of starting to join, and 640x480 within fullSizeWithin if the clinic still sends it. The
// page's timeline of the join is logged, so a slow run shows where the time went.
func TestBrowserFirstFrame(t *testing.T) {
	testtool.MeasuresTime(t)
	f := newAuthzFixture(t)
	id := f.consultation(false, "live")
	page := roomPage(f, id)
	clinic := f.browser(t, f.users["clinic"])
	if err := chromedp.Do(clinic, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	// The clinic has been in the room a while: its camera's full-size layer flows.
	waitJS(t, clinic, "the clinic sends 640x480", `(async () => {
		if (!sanping.pub) return false;
		let ok = false;
		(await sanping.pub.getStats()).forEach((r) => { ok ||= r.type === 'outbound-rtp' && r.kind === 'video' && r.frameWidth >= 640 && r.framesEncoded > 30; });
		return ok;
	})()`, 20*time.Second)
	t.Logf("the clinic sends %v", sentLayers(t, clinic))

	doctor := f.browser(t, f.users["doctor"])
	if err := chromedp.Do(doctor, chromedp.Navigate("about:blank")); err != nil { // Chromium is up before the clock starts
		t.Fatal(err)
	}
	if err := chromedp.Do(doctor, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	// Keyframes and PLIs as the doctor's browser counts them.
	_, err := eval[bool](doctor, `(() => {
		window.samples = [];
		setInterval(async () => {
			if (!sanping.sub || !sanping.joinAt) return;
			const t = Math.round(performance.now() - sanping.joinAt);
			(await sanping.sub.getStats()).forEach((r) => {
				if (r.type !== 'inbound-rtp' || r.kind !== 'video') return;
				samples.push({t, packets: r.packetsReceived || 0, decoded: r.framesDecoded || 0, keyframes: r.keyFramesDecoded || 0, pli: r.pliCount || 0,
					jitterMs: r.jitterBufferEmittedCount ? Math.round(1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount) : 0});
			});
		}, 50);
		return true;
	})()`)
	if err != nil {
		t.Fatal(err)
	}
	waitJS(t, doctor, "the doctor shows the clinic's video", `sanping.timeline.frame !== undefined`, 20*time.Second)
	waitJS(t, doctor, "5 s after join", `performance.now() - sanping.joinAt > 5000`, 10*time.Second)
	tl, err := eval[joinTimeline](doctor, `({steps: sanping.timeline, sizes: [...sanping.remote.values()][0].sizes, samples: window.samples})`)
	if err != nil {
		t.Fatal(err)
	}
	sent := sentLayers(t, clinic)
	shot(t, doctor, "first-frame-doctor.png")

	steps := make([]string, 0, len(tl.Steps))
	for k := range tl.Steps {
		steps = append(steps, k)
	}
	sort.Slice(steps, func(i, j int) bool { return tl.Steps[steps[i]] < tl.Steps[steps[j]] })
	var b strings.Builder
	for _, k := range steps {
		fmt.Fprintf(&b, " %s %d", k, tl.Steps[k])
	}
	t.Logf("the doctor's join (ms):%s", b.String())
	b.Reset()
	full := -1
	for _, s := range tl.Sizes {
		fmt.Fprintf(&b, " %d:%dx%d", s.T, s.W, s.H)
		if full < 0 && s.W >= 640 && s.H >= 480 {
			full = s.T
		}
	}
	t.Logf("the clinic's video at the doctor (ms:size):%s", b.String())
	ss := append(tl.Samples, statsSample{})
	t.Logf("the doctor's stats: first packet %d ms, first decoded %d ms, keyframes at %v, PLIs at %v, jitter buffer %v ms",
		firstAt(ss, func(s statsSample) bool { return s.Packets > 0 }), firstAt(ss, func(s statsSample) bool { return s.Decoded > 0 }),
		rises(ss, func(s statsSample) int { return s.Keyframes }), rises(ss, func(s statsSample) int { return s.PLI }), ss[len(ss)-1].Jitter)
	t.Logf("the clinic sends %v", sent)

	first := time.Duration(tl.Steps["frame"]) * time.Millisecond
	t.Logf("first frame %v after join (target %v), 640x480 at %d ms (target %v)", first, firstFrameTarget, full, fullSizeTarget)
	if first > firstFrameWithin {
		t.Errorf("first remote frame %v after join, want <= %v", first, firstFrameWithin)
	}
	fullSent := false
	for _, l := range sent {
		fullSent = fullSent || (l.W >= 640 && l.H >= 480 && l.FPS > 0)
	}
	switch d := time.Duration(full) * time.Millisecond; {
	case !fullSent:
		// Chromium's own estimate of the clinic's uplink (or its CPU) left the top layer dark.
		t.Logf("the clinic no longer sends 640x480: not asserted")
	case full < 0 || d > fullSizeWithin:
		t.Errorf("640x480 at %d ms after join, want <= %v", full, fullSizeWithin)
	}
}

// firstAt is the time of the first sample for which ok holds, -1 if none.
func firstAt(ss []statsSample, ok func(statsSample) bool) int {
	for _, s := range ss {
		if ok(s) {
			return s.T
		}
	}
	return -1
}

// rises lists the times at which a counter went up.
func rises(ss []statsSample, counter func(statsSample) int) []int {
	var at []int
	last := 0
	for _, s := range ss {
		if n := counter(s); n > last {
			at = append(at, s.T)
			last = n
		}
	}
	return at
}

// sentLayers reports the video layers a page sends. Chromium adapts them on its own: to its
// estimate of the uplink, and to the CPU by lowering the resolution.
func sentLayers(t *testing.T, ctx context.Context) []sentLayer {
	ls, err := eval[[]sentLayer](ctx, `(async () => {
		const out = [];
		(await sanping.pub.getStats()).forEach((r) => {
			if (r.type === 'outbound-rtp' && r.kind === 'video') out.push({rid: r.rid || '', w: r.frameWidth || 0, h: r.frameHeight || 0,
				fps: r.framesPerSecond || 0, kbps: Math.round((r.targetBitrate || 0) / 1000), limit: r.qualityLimitationReason || ''});
		});
		return out.sort((a, b) => a.w - b.w);
	})()`)
	if err != nil {
		t.Logf("sent layers: %v", err)
	}
	return ls
}

// shot saves a screenshot of the page for a person to look at: under SANPING_SCREENSHOTS, or
// web/test-output/go-browser (ignored by git, beside the JavaScript e2e tests' screenshots).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SANPING_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "web", "test-output", "go-browser")
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err == nil {
			t.Logf("screenshot %s", p)
		}
	}
}
