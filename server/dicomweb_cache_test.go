package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestImageCaching: frames, renderings and thumbnails of an instance are cached privately
// for a session's lifetime, metadata and a series' or study's images are revalidated; a
// revalidation is answered 304 only to a user who may see the study, and is recorded as a
// read.
func TestImageCaching(t *testing.T) {
	f := newAuthzFixture(t)
	clinic, doctor, other := f.users["clinic"], f.users["doctor"], f.users["clinic2"]
	f.signIn(other)
	a := f.studyA
	study := "/dicom-web/studies/" + a.Study
	series := study + "/series/" + a.Series
	inst := series + "/instances/" + a.SOP
	get := func(u *fixtureUser, path, accept, inm string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		res, err := u.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	const (
		fixed   = "private, max-age=43200"
		changes = "private, no-cache"
		octet   = `multipart/related; type="application/octet-stream"; transfer-syntax=*`
	)
	etags := map[string]string{}
	for _, c := range []struct{ name, path, accept, policy string }{
		{"frame", inst + "/frames/1", octet, fixed},
		{"frame, single part", inst + "/frames/1", "application/octet-stream; transfer-syntax=*", fixed},
		{"pixel data bulk data", inst + "/bulkdata/7FE00010", octet, fixed},
		{"rendered frame", inst + "/frames/1/rendered", "image/jpeg", fixed},
		{"rendered frame as PNG", inst + "/frames/1/rendered", "image/png", fixed},
		{"rendered instance", inst + "/rendered?viewport=16,16", "", fixed},
		{"thumbnail", inst + "/thumbnail", "image/jpeg", fixed},
		{"series thumbnail", series + "/thumbnail", "image/jpeg", changes},
		{"study thumbnail", study + "/thumbnail", "image/jpeg", changes},
		{"series metadata", series + "/metadata", "application/dicom+json", changes},
		{"study metadata", study + "/metadata", "", changes},
		{"instance metadata", inst + "/metadata", "application/dicom+json", changes},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, body := get(clinic, c.path, c.accept, "")
			tag := res.Header.Get("ETag")
			if res.StatusCode != 200 || len(body) == 0 || tag == "" {
				t.Fatalf("%d ETag %q: %.200s", res.StatusCode, tag, body)
			}
			if cc := res.Header.Get("Cache-Control"); cc != c.policy {
				t.Errorf("Cache-Control %q, want %q", cc, c.policy)
			}
			vary := strings.Join(res.Header.Values("Vary"), ",")
			if !strings.Contains(vary, "Accept") || !strings.Contains(vary, "Cookie") {
				t.Errorf("Vary %q, want Accept and Cookie", vary)
			}
			for prev, other := range etags {
				if other == tag {
					t.Errorf("same ETag as %s", prev)
				}
			}
			etags[c.name] = tag

			// The browser revalidates: 304, nothing sent, the same validators.
			res, body = get(clinic, c.path, c.accept, `W/"other", `+tag)
			if res.StatusCode != http.StatusNotModified || len(body) != 0 || res.Header.Get("ETag") != tag || res.Header.Get("Cache-Control") != c.policy {
				t.Errorf("revalidation: %d ETag %q Cache-Control %q, %d bytes", res.StatusCode, res.Header.Get("ETag"), res.Header.Get("Cache-Control"), len(body))
			}
			// Another clinic's user with the clinic's ETag (a browser profile shared at a PC):
			// the authorization check answers first, and nothing of the entry is confirmed.
			res, _ = get(other, c.path, c.accept, tag)
			if res.StatusCode != http.StatusNotFound || res.Header.Get("ETag") != "" || res.Header.Get("Cache-Control") != "" {
				t.Errorf("another clinic's user: %d ETag %q Cache-Control %q", res.StatusCode, res.Header.Get("ETag"), res.Header.Get("Cache-Control"))
			}
			// The county doctor may see the study: the clinic's ETag is as good as the doctor's own.
			if res, _ = get(doctor, c.path, c.accept, tag); res.StatusCode != http.StatusNotModified {
				t.Errorf("the doctor's revalidation: %d", res.StatusCode)
			}
		})
	}
	// The doctor only ever revalidated: those were reads all the same.
	entries, err := f.app.trail.List(f.ctx, auditFilter("doctor", "study:"+a.Study))
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action)
	}
	for _, want := range []string{"image.read", "study.read"} {
		if !slices.Contains(actions, want) {
			t.Errorf("the doctor's revalidations recorded as %q, want %s among them", actions, want)
		}
	}

	// An instance arrives: the study's metadata changes, an instance's frame does not.
	f.upload(clinic.p, a.Study)
	if res, _ := get(clinic, study+"/metadata", "", etags["study metadata"]); res.StatusCode != 200 || res.Header.Get("ETag") == etags["study metadata"] {
		t.Errorf("study metadata after a new instance: %d ETag %q", res.StatusCode, res.Header.Get("ETag"))
	}
	if res, _ := get(clinic, inst+"/frames/1", octet, etags["frame"]); res.StatusCode != http.StatusNotModified {
		t.Errorf("frame after a new instance in its study: %d", res.StatusCode)
	}
	// Errors are not cached.
	if res, _ := get(clinic, inst+"/frames/2", octet, ""); res.StatusCode != 404 || res.Header.Get("Cache-Control") != "" || res.Header.Get("ETag") != "" {
		t.Errorf("missing frame: %d Cache-Control %q ETag %q", res.StatusCode, res.Header.Get("Cache-Control"), res.Header.Get("ETag"))
	}
	if res, _ := get(clinic, inst+"/frames/1", "image/jp2", ""); res.StatusCode != http.StatusNotAcceptable || res.Header.Get("ETag") != "" {
		t.Errorf("frame in a syntax it is not stored in: %d ETag %q", res.StatusCode, res.Header.Get("ETag"))
	}
}

// TestBrowserCachesImages: in Chromium, a frame fetched again comes from the HTTP cache without
// a request, metadata is revalidated, and another user signed in on the same browser profile
// (a shared clinic PC) does not get the first user's cached frame: the request reaches the
// server, which answers that user 404.
func TestBrowserCachesImages(t *testing.T) {
	f := newAuthzFixture(t)
	clinic, other := f.users["clinic"], f.users["clinic2"]
	f.signIn(other)
	ctx := f.browser(t, clinic)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	a := f.studyA
	frame := "/dicom-web/studies/" + a.Study + "/series/" + a.Series + "/instances/" + a.SOP + "/frames/1"
	meta := "/dicom-web/studies/" + a.Study + "/series/" + a.Series + "/metadata"
	// fetch fetches path (as Cornerstone does: same-origin credentials, an Accept) and
	// reports each answer's status and bytes on the wire (0: from the cache, no request).
	fetch := func(path, accept string) string {
		t.Helper()
		got, err := eval[string](ctx, fmt.Sprintf(`(async () => {
			const r = await fetch(%q, {headers: {Accept: %q}, credentials: 'same-origin'});
			await r.arrayBuffer();
			const e = performance.getEntriesByName(location.origin + %q);
			return r.status + ':' + (e[e.length - 1].transferSize > 0 ? 'network' : 'cache');
		})()`, path, accept, path))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	octet := `multipart/related; type="application/octet-stream"; transfer-syntax=*`
	for _, c := range []struct{ what, path, accept, want string }{
		{"first frame fetch", frame, octet, "200:network"},
		{"frame again", frame, octet, "200:cache"},
		{"first metadata fetch", meta, "application/dicom+json", "200:network"},
		{"metadata again (revalidated)", meta, "application/dicom+json", "200:network"},
	} {
		if got := fetch(c.path, c.accept); got != c.want {
			t.Errorf("%s: %s, want %s", c.what, got, c.want)
		}
	}
	// Another clinic's user signs in on the same browser: the cached frame is not theirs.
	base, _ := url.Parse(f.srv.URL)
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, c := range other.client.Jar.Cookies(base) {
			if _, err := cdp.Call(ctx, t, network.SetCookie, network.SetCookieParams{Name: c.Name, Value: c.Value, URL: f.srv.URL, HTTPOnly: new(true)}); err != nil {
				return err
			}
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := fetch(frame, octet); got != "404:network" {
		t.Errorf("another clinic's user on the same browser: %s, want 404:network", got)
	}
}
