package server

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/consult"
)

// TestAdminReadsASessionLog: a clinic and a doctor (Go participants) hold a recorded
// consultation over an emulated 4G link with 5% loss on the clinic's side, whose network is
// cut for 3 s mid-session; afterwards an admin in headless Chromium finds the session in the
// session logs by patient, opens its page (attendees with connection types, timeline, the
// quality charts with the clinic's reconnect, chat, report), exports JSON and CSV, which
// parse and agree with the API, and prints it.
func TestAdminReadsASessionLog(t *testing.T) {
	w := newWAN4G(t)
	f := newAuthzFixtureWith(t, Config{mediaNet: w.server})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	clinicU, doctorU, admin := f.users["clinic"], f.users["doctor"], f.users["admin"]
	bctx := f.browser(t, admin) // first: it skips when the app or Chromium is missing
	c, err := f.app.consult.Create(ctx, clinicU.p, consult.Request{Patient: consult.Patient{ID: "P-SL-7", Name: "韦秀兰", Sex: "F"},
		StudyUIDs: []string{f.studyA.Study}, ClinicalQuestion: "咳嗽两周，右下肺阴影？", Purpose: "DR 会诊", Urgency: "routine",
		TargetInstitutionID: f.inst["H"], ConsentConfirmed: true, RecordingConsent: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.consult.Accept(ctx, doctorU.p, c.ID, doctorU.p.UserID, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.consult.Start(ctx, doctorU.p, c.ID); err != nil {
		t.Fatal(err)
	}
	// A consultation live without a session, which the log must not list.
	f.consultation(false, "live")

	clinicLink, doctorLink := w.proxy(f), w.proxy(f)
	doctor, err := live.Join(ctx, live.Config{URL: f.liveURL(c.ID), Header: f.header(doctorU), Net: w.doctor, Dialer: wsVia(doctorLink),
		Reconnect: true, Name: "sessionlog-test doctor"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { doctor.Close() })
	clinic, err := live.Join(ctx, live.Config{URL: f.liveURL(c.ID), Header: f.header(clinicU), Net: w.clinic, Dialer: wsVia(clinicLink),
		Video: testVideo, Audio: testAudio, Reconnect: true, Name: "sessionlog-test station"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clinic.Close() })
	if err := doctor.WaitFrames(ctx, clinic.ID(), 10); err != nil {
		t.Fatal(err)
	}
	w.lf.mu.Lock()
	w.lf.loss["10.9.0.2"] = 5
	w.lf.mu.Unlock()

	// The doctor reports what it receives every second, as the browser app does every 2 s:
	// bitrate, loss and frame rate of the clinic's tracks.
	stop := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		type count struct{ bytes, packets, expected, frames uint64 }
		sum := func() (n count) {
			for _, tr := range doctor.Stats().Tracks {
				if tr.Participant == clinic.ID() {
					n.bytes, n.packets, n.expected = n.bytes+tr.Bytes, n.packets+tr.Packets, n.expected+tr.Expected
					if tr.Kind == "video" {
						n.frames += tr.Frames
					}
				}
			}
			return n
		}
		last, at := sum(), time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				cur, dt := sum(), now.Sub(at).Seconds()
				q := protocol.Quality{BitrateIn: int64(float64(cur.bytes-last.bytes) * 8 / dt), FPS: float64(cur.frames-last.frames) / dt}
				if e := cur.expected - last.expected; e > 0 && cur.packets-last.packets <= e {
					q.Loss = 1 - float64(cur.packets-last.packets)/float64(e)
				}
				doctor.ReportQuality(q)
				last, at = cur, now
			}
		}
	}()

	if _, err := doctor.SendOp(protocol.Op{Kind: protocol.OpImage, Image: &protocol.ImageRef{Study: f.studyA.Study, Series: f.studyA.Series, Instance: f.studyA.SOP, Frame: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := doctor.Chat("请看右下肺野"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		doctor.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: float64(40 + i), Width: 400}})
		time.Sleep(300 * time.Millisecond)
	}
	// The clinic's network goes away for 3 s; it comes back as the same participant.
	w.lf.cut.Store(new("10.9.0.2"))
	clinicLink.Cut()
	time.Sleep(3 * time.Second)
	w.lf.cut.Store(nil)
	clinicLink.Restore()
	waitUntil(t, 60*time.Second, "the clinic to reconnect", func() bool { return clinic.Stats().Reconnects > 0 })
	f1 := clinicFrames(doctor, clinic.ID())
	waitUntil(t, 60*time.Second, "the clinic's video after the cut", func() bool { return clinicFrames(doctor, clinic.ID()) >= f1+10 })
	time.Sleep(6 * time.Second) // a server quality sample (every 5 s) after the reconnect
	close(stop)
	<-reported
	clinic.Close()
	doctor.Close()
	must := func(code int, body string) {
		t.Helper()
		if code != 200 {
			t.Fatalf("status %d: %s", code, body)
		}
	}
	must(f.json(doctorU, "PUT", fmt.Sprintf("/api/consultations/%d/report", c.ID),
		map[string]string{"findings": "右下肺野斑片状模糊影", "impression": "右下肺炎", "recommendations": "抗感染治疗，两周后复查"}, nil))

	var api sessionPageJSON
	path := fmt.Sprintf("/api/session-logs/%d", c.ID)
	waitUntil(t, 100*time.Second, "the session in the log", func() bool {
		api = sessionPageJSON{}
		must(f.json(admin, "GET", path, nil, &api))
		n := map[string]int{}
		for _, e := range api.Timeline {
			n[e.Type]++
		}
		resumes := 0
		for _, q := range api.Quality {
			resumes += len(q.Resumes)
		}
		return n["join"] >= 2 && n["leave"] >= 2 && n["resume"] >= 1 && n["chat"] == 1 && resumes >= 1 && len(api.Recordings) >= 2
	})
	samples := 0
	for _, q := range api.Quality {
		samples += len(q.T)
	}
	t.Logf("session: %d events, %d quality samples in %d series, %d recordings", len(api.Timeline), samples, len(api.Quality), len(api.Recordings))

	// The admin's browser.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1400, 1000), chromedp.Navigate(f.srv.URL+"/admin/session-logs")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, bctx, "the session log list", `document.querySelectorAll('.session-logs .rows tbody tr').length >= 1`, 30*time.Second)
	// Search by the patient's name, as an admin asked about "韦秀兰's consultation" would.
	if _, err := eval[bool](bctx, `(() => { const el = document.querySelector('[data-testid=filter-patient]'); const i = el.matches('input') ? el : el.querySelector('input'); i.value = '韦秀兰';
		i.dispatchEvent(new Event('input', {bubbles: true})); document.querySelector('.filters button[type=submit]').click(); return true; })()`); err != nil {
		t.Fatal(err)
	}
	link := fmt.Sprintf(`a[href$="/admin/session-logs/%d"]`, c.ID)
	waitJS(t, bctx, "the one row for the patient", `(() => { const rows = document.querySelectorAll('.session-logs .rows tbody tr');
		return rows.length === 1 && rows[0].textContent.includes('韦秀兰') && !!rows[0].querySelector('`+link+`'); })()`, 30*time.Second)
	shot(t, bctx, "admin-session-logs.png")
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(link))); err != nil {
		t.Fatal(err)
	}
	// Errors the page meets from here on are in the failure's message.
	eval[bool](bctx, `(() => { window.__errors = []; addEventListener('error', (e) => __errors.push(String(e.message)));
		addEventListener('unhandledrejection', (e) => __errors.push(String(e.reason))); return true; })()`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if ok, _ := eval[bool](bctx, `!!document.querySelector('.quality-charts[data-drawn-ms]')`); ok {
			break
		}
		if time.Now().After(deadline) {
			diag, _ := eval[string](bctx, `JSON.stringify({url: location.href, errors: window.__errors, charts: document.querySelectorAll('.quality-charts .chart').length,
				canvases: document.querySelectorAll('.quality-charts canvas').length, root: (document.querySelector('.quality-charts') || {outerHTML: 'none'}).outerHTML.slice(0, 200)})`)
			shot(t, bctx, "admin-session-log-failed.png")
			t.Fatalf("the quality charts were not drawn within 30 s: %s", diag)
		}
	}
	charts, err := eval[int](bctx, `document.querySelectorAll('.quality-charts .chart canvas').length`)
	if err != nil || charts != 7 {
		t.Errorf("quality charts: %d canvases (%v), want 7", charts, err)
	}
	drawn, _ := eval[string](bctx, `document.querySelector('.quality-charts').dataset.drawnMs`)
	t.Logf("quality charts drawn %s ms after the data arrived", drawn)
	// The charts plot something: the bitrate chart's legend names both participants, and its
	// canvas is not blank.
	inked, err := eval[bool](bctx, `(() => { const c = document.querySelector('.chart[data-metric=bitrateIn] canvas');
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let ink = 0;
		for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++; return ink > 500; })()`)
	if err != nil || !inked {
		t.Errorf("the bitrate chart is blank (%v)", err)
	}
	attendees, err := eval[string](bctx, `document.querySelector('[data-testid=attendees]').innerText`)
	if err != nil || !strings.Contains(attendees, clinicU.name) || !strings.Contains(attendees, doctorU.name) {
		t.Errorf("attendees: %q (%v)", attendees, err)
	}
	timeline, _ := eval[string](bctx, `document.querySelector('[data-testid=timeline]').innerText`)
	for _, want := range []string{"请看右下肺野", "重连"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("the timeline has no %q", want)
		}
	}
	chat, _ := eval[string](bctx, `document.querySelector('[data-testid=chat]').innerText`)
	report, _ := eval[string](bctx, `document.querySelector('.session-log').innerText`)
	if !strings.Contains(chat, "请看右下肺野") || !strings.Contains(report, "右下肺炎") {
		t.Errorf("chat %q; the report's impression not on the page", chat)
	}
	// The recording plays in the page: the clinic's camera with its microphone muxed in.
	waitJS(t, bctx, "a recording player", `!!document.querySelector('[data-testid=recording] video')`, 10*time.Second)
	if _, err := eval[bool](bctx, `(() => { const v = document.querySelector('[data-testid=recording] video'); v.muted = true; v.play(); return true; })()`); err != nil {
		t.Fatal(err)
	}
	waitJS(t, bctx, "the recording playing", `(() => { const v = document.querySelector('[data-testid=recording] video');
		return v.videoWidth > 0 && v.currentTime > 0.3 && !v.error; })()`, 30*time.Second)
	shot(t, bctx, "admin-session-log.png")

	// The exports, fetched from the page's own links.
	fetch := func(testid string) []byte {
		t.Helper()
		s, err := eval[string](bctx, `fetch(document.querySelector('[data-testid=`+testid+`]').href).then((r) => r.ok ? r.text() : 'HTTP ' + r.status)`)
		if err != nil {
			t.Fatalf("%s: %v", testid, err)
		}
		return []byte(s)
	}
	var exported sessionPageJSON
	if err := json.Unmarshal(fetch("export-json"), &exported); err != nil {
		t.Fatalf("the JSON export does not parse: %v", err)
	}
	timelineCSV, err := csv.NewReader(bytes.NewReader(fetch("export-csv"))).ReadAll()
	if err != nil {
		t.Fatalf("the timeline CSV does not parse: %v", err)
	}
	qualityCSV, err := csv.NewReader(bytes.NewReader(fetch("export-quality-csv"))).ReadAll()
	if err != nil {
		t.Fatalf("the quality CSV does not parse: %v", err)
	}
	// They agree with the API. Reading the log is itself audited under the consultation, so
	// the later reads have more timeline entries: what the API said is in each export, the same.
	bySeq := func(evs []pageEvent) map[int64]pageEvent {
		m := map[int64]pageEvent{}
		for _, e := range evs {
			m[e.Seq] = e
		}
		return m
	}
	exp := bySeq(exported.Timeline)
	for _, e := range api.Timeline {
		if g, ok := exp[e.Seq]; !ok || g.Type != e.Type || g.Action != e.Action || g.Detail != e.Detail || !g.Time.Equal(e.Time) {
			t.Errorf("JSON export, seq %d: %+v, API %+v", e.Seq, g, e)
		}
	}
	if len(timelineCSV) < 1 || !slices.Equal(timelineCSV[0][:4], []string{"seq", "time", "type", "action"}) {
		t.Fatalf("timeline CSV header: %v", timelineCSV[:1])
	}
	csvSeq := map[int64][]string{}
	for _, r := range timelineCSV[1:] {
		n, _ := strconv.ParseInt(r[0], 10, 64)
		csvSeq[n] = r
	}
	for _, e := range api.Timeline {
		if r, ok := csvSeq[e.Seq]; !ok || r[2] != e.Type || r[3] != e.Action {
			t.Errorf("timeline CSV, seq %d: %v, API %+v", e.Seq, r, e)
		}
	}
	expSamples := 0
	for _, q := range exported.Quality {
		expSamples += len(q.T)
	}
	if len(qualityCSV)-1 != expSamples || expSamples < samples {
		t.Errorf("quality CSV: %d rows, the JSON export %d samples, the API %d", len(qualityCSV)-1, expSamples, samples)
	}
	if len(exported.Chat) != 1 || exported.Chat[0].Text != "请看右下肺野" || exported.Report.State != "draft" {
		t.Errorf("JSON export: chat %+v, report %+v", exported.Chat, exported.Report)
	}

	// The print view: the console's bar and tabs and the players are not printed.
	if err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	hidden, _ := eval[bool](bctx, `getComputedStyle(document.querySelector('.shell > .bar')).display === 'none' &&
		!document.querySelector('[data-testid=export-json]').checkVisibility()`)
	if !hidden {
		t.Errorf("the print view still shows the console's bar or the export links")
	}
	shot(t, bctx, "admin-session-log-print.png")
	var pdf []byte
	if err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, page.PrintToPDF, page.PrintToPDFParams{PrintBackground: new(true)})
		pdf = res.Data
		return err
	})); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF")) || len(pdf) < 20_000 {
		t.Errorf("printed: %d bytes", len(pdf))
	}
}

// clinicFrames counts the video frames p received from participant id.
func clinicFrames(p *live.Participant, id string) uint64 {
	var n uint64
	for _, tr := range p.Stats().Tracks {
		if tr.Participant == id && tr.Kind == "video" {
			n += tr.Frames
		}
	}
	return n
}
