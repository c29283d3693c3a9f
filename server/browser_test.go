package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// browser is one headless Debian Chromium with fake camera and microphone, signed in as u.
func (f *authzFixture) browser(t *testing.T, u *fixtureUser) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s not installed (apt-get install chromium; .ci/run does)", chromiumPath)
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
	diag, _ := eval[string](ctx, `JSON.stringify({me: sanping.me, seq: sanping.seq, errors: sanping.errors, remote: [...sanping.remote.keys()], participants: [...sanping.participants.keys()], status: document.querySelector('#status').textContent})`)
	t.Fatalf("%s: not within %v (%s) %s", what, within, last, diag)
}

// TestBrowsersInOneRoom: three headless Chromium browsers (fake media devices) join one room
// through the SFU: each decodes the other two's video, a view operation from one shows on the
// other two, and one reloads and comes back as the same participant with the same view.
func TestBrowsersInOneRoom(t *testing.T) {
	f := newAuthzFixture(t)
	id := f.consultation(false, "live")
	township := f.users["township"]
	if _, err := f.app.consult.AddParticipant(context.Background(), f.users["clinic"].p, id, township.p.UserID); err != nil {
		t.Fatal(err)
	}
	page := fmt.Sprintf("%s/live.html?c=%d&auto=1", f.srv.URL, id)
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
		waitJS(t, tabs[n], n+" sees three participants", `sanping.participants.size === 3 && sanping.me !== ''`, 20*time.Second)
	}
	// Each decodes the other two's video, and keeps decoding.
	decoding := `(async () => { const f = await sanping.framesDecoded(); const v = Object.values(f); return v.length === 2 && v.every((n) => n > 20); })()`
	for _, n := range names {
		waitJS(t, tabs[n], n+" decodes both others' video", decoding, 30*time.Second)
	}
	// The doctor (the driver) changes the window; the other two apply it.
	if _, err := eval[bool](tabs["doctor"], `sanping.sendOp({kind: 'window', window: {center: 123, width: 456}}), true`); err != nil {
		t.Fatal(err)
	}
	for _, n := range names[1:] {
		waitJS(t, tabs[n], n+" applies the doctor's window", `sanping.view.window.center === 123 && sanping.view.window.width === 456`, 5*time.Second)
	}
	// The clinic reloads: same participant, same view, video again.
	before, err := eval[string](tabs["clinic"], `sanping.me`)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tabs["clinic"], chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tabs["clinic"], "the clinic is back as the same participant", fmt.Sprintf(`sanping.me === %q && sanping.view && sanping.view.window.center === 123`, before), 20*time.Second)
	waitJS(t, tabs["clinic"], "the clinic decodes video again", decoding, 30*time.Second)
	waitJS(t, tabs["doctor"], "the doctor decodes the clinic again", fmt.Sprintf(`(async () => (await sanping.framesDecoded())[%q] > 20)()`, before), 30*time.Second)
}
