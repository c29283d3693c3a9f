package server

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/signal"
)

// get fetches path as u and returns the whole response with its body read.
func (f *authzFixture) get(u *fixtureUser, path string) (*http.Response, []byte) {
	f.t.Helper()
	req, err := http.NewRequest("GET", f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set(auth.CSRFHeader, u.csrf)
	res, err := u.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

type pageEvent struct {
	Seq                                                 int64
	Time                                                time.Time
	Type, Action, Actor, Role, Institution, Participant string
	IP, UserAgent, Connection, Detail                   string
}

type pageQuality struct {
	Participant, Username string
	T                     []int64
	BitrateIn, BitrateOut []int64
	Loss, RTTms, JitterMs []float64 `json:"-"`
	FPS                   []float64
	Width, Height         []int
	Source                []string
	Resumes               []int64
}

// clientSamples keeps a series' samples that its participant reported.
func clientSamples(q pageQuality) pageQuality {
	out := pageQuality{Participant: q.Participant, Username: q.Username, Resumes: q.Resumes}
	for i, src := range q.Source {
		if src != "client" {
			continue
		}
		out.T = append(out.T, q.T[i])
		out.BitrateIn, out.BitrateOut = append(out.BitrateIn, q.BitrateIn[i]), append(out.BitrateOut, q.BitrateOut[i])
		out.FPS, out.Width, out.Height = append(out.FPS, q.FPS[i]), append(out.Width, q.Width[i]), append(out.Height, q.Height[i])
		out.Source = append(out.Source, src)
	}
	return out
}

type sessionPageJSON struct {
	Timeline []pageEvent            `json:"timeline"`
	Chat     []protocol.ChatMessage `json:"chat"`
	Report   struct {
		State    string    `json:"state"`
		SignedBy string    `json:"signedBy"`
		SignedAt time.Time `json:"signedAt"`
	} `json:"report"`
	Recordings []struct{ File string } `json:"recordings"`
	Quality    []pageQuality           `json:"quality"`
}

// rawHello opens the room's websocket and says hello (resuming when token is set), and
// returns the welcome.
func (f *authzFixture) rawHello(t *testing.T, u *fixtureUser, id int64, token string) (*websocket.Conn, protocol.Welcome) {
	t.Helper()
	c := f.rawConn(t, u, id)
	hello, _ := json.Marshal(protocol.Hello{Protocol: protocol.Version, Resume: token, Client: "sessionlog-test/1"})
	if err := c.WriteJSON(protocol.Message{Type: protocol.TypeHello, ID: 1, Data: hello}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m protocol.Message
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for welcome: %v", err)
		}
		if m.Type == protocol.TypeWelcome {
			var w protocol.Welcome
			if err := json.Unmarshal(m.Data, &w); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Time{})
			return c, w
		}
	}
}

// TestSessionLogOfALiveSession: Go participants hold a session (media, a view, chat, quality
// figures, a dropped socket resumed); the session log list and page show it, their filters
// work, and the CSV and JSON downloads agree with the API and are audited as exports.
func TestSessionLogOfALiveSession(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin, doctorU := f.users["admin"], f.users["doctor"]
	id := f.consultation(false, "live")
	notLive := f.consultation(false, "requested")
	otherSide := f.consultation(true, "live")

	doctor := f.join(ctx, t, doctorU, id, true)
	clinic := f.join(ctx, t, f.users["clinic"], id, true)
	if _, err := doctor.SendOp(protocol.Op{Kind: protocol.OpImage, Image: &protocol.ImageRef{Study: f.studyA.Study, Series: f.studyA.Series, Instance: f.studyA.SOP, Frame: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := doctor.Chat("看右下肺"); err != nil {
		t.Fatal(err)
	}
	sent := []protocol.Quality{
		{BitrateIn: 800_000, BitrateOut: 1_200_000, Loss: 0.01, RTTms: 40, JitterMs: 5, FPS: 25, Width: 1280, Height: 720},
		{BitrateIn: 600_000, BitrateOut: 1_100_000, Loss: 0.05, RTTms: 90, JitterMs: 12, FPS: 20, Width: 640, Height: 360},
	}
	for _, q := range sent {
		if err := doctor.ReportQuality(q); err != nil {
			t.Fatal(err)
		}
		if err := clinic.ReportQuality(protocol.Quality{BitrateIn: 300_000, FPS: 15}); err != nil {
			t.Fatal(err)
		}
	}
	// The admin's socket drops and resumes: a resume marker on its quality series.
	raw, w := f.rawHello(t, admin, id, "")
	raw.Close()
	raw, w2 := f.rawHello(t, admin, id, w.ResumeToken)
	if !w2.Resumed || w2.Participant != w.Participant {
		t.Fatalf("resume: %+v, was %s", w2, w.Participant)
	}
	q, _ := json.Marshal(protocol.Quality{BitrateIn: 100_000, RTTms: 300})
	raw.WriteJSON(protocol.Message{Type: protocol.TypeQuality, ID: 2, Data: q})
	raw.WriteJSON(protocol.Message{Type: protocol.TypeLeave, ID: 3})
	waitMessage(t, clinic, protocol.TypeChatMessage, 30*time.Second)
	// Leave once both media connections are up, so their types are in the log.
	waitUntil(t, 45*time.Second, "both media connections", func() bool {
		entries, err := f.app.trail.List(ctx, audit.Filter{ObjectPrefix: fmt.Sprintf("consultation:%d", id), Action: "live.connection"})
		return err == nil && len(entries) >= 2
	})
	doctor.Close()
	clinic.Close()
	must := func(want int) func(int, string) {
		return func(code int, body string) {
			t.Helper()
			if code != want {
				t.Fatalf("status %d, want %d: %s", code, want, body)
			}
		}
	}
	must(200)(f.json(doctorU, "PUT", fmt.Sprintf("/api/consultations/%d/report", id),
		map[string]string{"findings": "右下肺野斑片影", "impression": "右下肺炎", "recommendations": ""}, nil))

	// The room's writer is asynchronous: wait for everything to be in. A participant whose
	// leave did not get through (its socket was reconnecting when it closed, as happens on a
	// loaded machine) leaves when its 60 s grace period ends.
	var page sessionPageJSON
	count := map[string]int{}
	waitUntil(t, 90*time.Second, "the session in the log", func() bool {
		page = sessionPageJSON{}
		must(200)(f.json(admin, "GET", fmt.Sprintf("/api/session-logs/%d", id), nil, &page))
		clear(count)
		for _, e := range page.Timeline {
			count[e.Type]++
		}
		samples := 0
		for _, s := range page.Quality {
			samples += len(clientSamples(s).T)
		}
		return count["join"] >= 3 && count["leave"] >= 3 && count["resume"] == 1 && count["chat"] == 1 &&
			count["view"] >= 1 && count["report"] >= 1 && samples == 5 && count["connection"] >= 2
	})
	if count["consultation"] == 0 {
		t.Errorf("timeline types: %v", count)
	}
	for _, e := range page.Timeline {
		if e.Type == "join" && e.Actor == doctorU.name && (e.Participant != doctor.ID() || e.Connection == "" || e.IP == "") {
			t.Errorf("doctor's join: %+v", e)
		}
	}
	if len(page.Chat) != 1 || page.Chat[0].Text != "看右下肺" || page.Report.State != "draft" {
		t.Errorf("chat %+v, report %+v", page.Chat, page.Report)
	}
	series := map[string]pageQuality{}
	for _, s := range page.Quality {
		series[s.Participant] = s
	}
	total := 0
	for _, s := range page.Quality {
		total += len(s.T)
		for _, src := range s.Source {
			if src != "client" && src != "server" {
				t.Errorf("%s's sample source %q", s.Participant, src)
			}
		}
	}
	// The participants' own figures; the SFU adds its own every 5 s, as many as the
	// machine's pace gives.
	d := clientSamples(series[doctor.ID()])
	if len(d.T) != 2 || d.BitrateIn[1] != 600_000 || d.FPS[0] != 25 || d.Width[0] != 1280 || d.Height[1] != 360 || !slices.IsSorted(d.T) {
		t.Errorf("doctor's quality: %+v", d)
	}
	if a := clientSamples(series[w.Participant]); len(a.T) != 1 || len(a.Resumes) != 1 || a.Username != admin.name {
		t.Errorf("admin's quality: %+v", a)
	}

	// The list: this consultation with its attendance; each filter narrows it.
	type row struct {
		ConsultationID  int64     `json:"consultationId"`
		FirstJoin       time.Time `json:"firstJoin"`
		LastLeave       time.Time `json:"lastLeave"`
		DurationSeconds int64     `json:"durationSeconds"`
		Participants    int       `json:"participants"`
		ReportState     string    `json:"reportState"`
		Doctor          struct{ Name string }
		Target          struct{ Name string } `json:"targetInstitution"`
	}
	list := func(query string) []int64 {
		t.Helper()
		var rows []row
		must(200)(f.json(admin, "GET", "/api/session-logs?"+query, nil, &rows))
		var ids []int64
		for _, r := range rows {
			ids = append(ids, r.ConsultationID)
		}
		return ids
	}
	var rows []row
	must(200)(f.json(admin, "GET", "/api/session-logs?patient=P1", nil, &rows))
	i := slices.IndexFunc(rows, func(r row) bool { return r.ConsultationID == id })
	if i < 0 {
		t.Fatalf("session log list lacks %d: %+v", id, rows)
	}
	if r := rows[i]; r.Participants != 3 || r.FirstJoin.IsZero() || r.LastLeave.Before(r.FirstJoin) || r.ReportState != "draft" || r.Doctor.Name == "" || r.Target.Name == "" {
		t.Errorf("row: %+v", r)
	}
	if ids := list(""); slices.Contains(ids, notLive) || !slices.Contains(ids, otherSide) {
		t.Errorf("all: %v (not live %d, other side %d)", ids, notLive, otherSide)
	}
	today := time.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
	tomorrow := time.Now().In(time.FixedZone("CST", 8*3600)).AddDate(0, 0, 1).Format("2006-01-02")
	for _, c := range []struct {
		query string
		want  bool
	}{
		{"patient=东平", true}, {"patient=p1", true}, {"patient=nobody", false},
		{fmt.Sprintf("institutionId=%d", f.inst["H"]), true}, {fmt.Sprintf("institutionId=%d", f.inst["H2"]), false},
		{fmt.Sprintf("doctorId=%d", doctorU.p.UserID), true}, {fmt.Sprintf("doctorId=%d", admin.p.UserID), false},
		{"state=live", true}, {"state=closed", false},
		{"from=" + today + "&to=" + tomorrow, true}, {"from=" + tomorrow, false},
	} {
		if got := slices.Contains(list(c.query), id); got != c.want {
			t.Errorf("%s: listed %v, want %v", c.query, got, c.want)
		}
	}
	if ids := list(fmt.Sprintf("institutionId=%d", f.inst["H"])); slices.Contains(ids, otherSide) {
		t.Errorf("institution filter lets the other side through: %v", ids)
	}

	// Downloads: attachments, agreeing with the API.
	base := fmt.Sprintf("/api/session-logs/%d", id)
	res, body := f.get(admin, base+"?format=json")
	var export sessionPageJSON
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Disposition"), "attachment") || json.Unmarshal(body, &export) != nil {
		t.Fatalf("JSON export: %d %q", res.StatusCode, res.Header.Get("Content-Disposition"))
	}
	res, body = f.get(admin, base+"?format=csv")
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if res.StatusCode != 200 || err != nil || !strings.Contains(res.Header.Get("Content-Disposition"), `.csv"`) || recs[0][2] != "type" {
		t.Fatalf("CSV export: %d %v %q", res.StatusCode, err, res.Header.Get("Content-Disposition"))
	}
	bySeq := map[string][]string{}
	for _, r := range recs[1:] {
		bySeq[r[0]] = r
	}
	// The CSV, made after it, also has the JSON download's read and export entries.
	if len(recs)-1 < len(export.Timeline) {
		t.Errorf("CSV has %d events, JSON %d", len(recs)-1, len(export.Timeline))
	}
	for _, e := range export.Timeline {
		r := bySeq[fmt.Sprint(e.Seq)]
		want := []string{fmt.Sprint(e.Seq), e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Type, e.Action, e.Actor, e.Role, e.Institution,
			e.Participant, e.IP, e.UserAgent, e.Connection, e.Detail}
		if strings.Join(r, "|") != strings.Join(want, "|") {
			t.Errorf("CSV row %v\nJSON event %v", r, want)
		}
	}
	res, body = f.get(admin, base+"?format=csv&part=quality")
	recs, err = csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if res.StatusCode != 200 || err != nil || len(recs) != 1+total {
		t.Fatalf("quality CSV: %d %v %d rows", res.StatusCode, err, len(recs))
	}
	nth := map[string]int{}
	for _, r := range recs[1:] {
		s := series[r[0]]
		k := nth[r[0]]
		nth[r[0]]++
		at, _ := time.Parse(time.RFC3339, r[2])
		if k >= len(s.T) || s.T[k] != at.UnixMilli() || r[3] != fmt.Sprint(s.BitrateIn[k]) || r[4] != fmt.Sprint(s.BitrateOut[k]) || r[8] != fmt.Sprint(s.FPS[k]) || r[9] != fmt.Sprint(s.Width[k]) || r[11] != s.Source[k] {
			t.Errorf("quality CSV row %v, series %+v", r, s)
		}
	}
	res, body = f.get(admin, "/api/session-logs?format=csv&patient=P1")
	recs, err = csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if res.StatusCode != 200 || err != nil || len(recs) != len(rows)+1 || recs[0][0] != "consultationId" {
		t.Fatalf("list CSV: %d %v %d rows for %d", res.StatusCode, err, len(recs), len(rows))
	}
	for k, r := range rows {
		if recs[k+1][0] != fmt.Sprint(r.ConsultationID) || recs[k+1][12] != fmt.Sprint(r.DurationSeconds) || recs[k+1][15] != r.ReportState {
			t.Errorf("list CSV row %v, JSON %+v", recs[k+1], r)
		}
	}
	entries, err := f.app.trail.List(ctx, audit.Filter{Action: "sessionlog.export"})
	if err != nil || len(entries) != 4 {
		t.Errorf("export entries: %d %v", len(entries), err)
	}
}

// TestDashboard: consultations counted by day, institution and doctor with the median
// times, storage, the room live now, and a station not seen for a day with its last upload.
func TestDashboard(t *testing.T) {
	f := newAuthzFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, doctorU := f.users["admin"], f.users["doctor"]
	f.consultation(false, "signed")
	f.consultation(false, "requested")
	live := f.consultation(false, "live")
	p := f.join(ctx, t, doctorU, live, false)

	tok, _, err := f.app.auth.CreateToken(ctx, "DR工作站", f.inst["A"], auth.RoleClinic, "admin")
	if err != nil {
		t.Fatal(err)
	}
	seen := time.Now().Add(-50 * time.Hour).Truncate(time.Millisecond)
	if _, err := f.st.DB().Exec(`UPDATE api_tokens SET last_used_at = ?, created_at = ? WHERE id = ?`, seen.UnixMilli(), seen.Add(-24*time.Hour).UnixMilli(), tok.ID); err != nil {
		t.Fatal(err)
	}
	// A token made now and never used is not stale yet.
	if _, _, err := f.app.auth.CreateToken(ctx, "new", f.inst["A"], auth.RoleClinic, "admin"); err != nil {
		t.Fatal(err)
	}
	// Its last report, before it went quiet, had a queue.
	if err := f.app.auth.ReportStation(ctx, tok.ID, protocol.StationStatus{Queue: protocol.StationQueue{Bundles: 1, Files: 5, Bytes: 4_000_000}}); err != nil {
		t.Fatal(err)
	}
	uploaded := seen.Add(-time.Hour)
	if _, err := f.app.trail.Append(ctx, audit.Entry{Time: uploaded, Actor: "token:DR工作站", Role: "clinic", Action: "study.upload",
		Object: "study:" + f.studyA.Study, Outcome: "success"}); err != nil {
		t.Fatal(err)
	}

	var d struct {
		Consultations struct {
			PerDay []struct {
				Day   string
				Count int
			}
			PerInstitution []struct {
				InstitutionID       int64
				Requested, Received int
			}
			PerDoctor []struct {
				DoctorID int64
				Count    int
			}
			MedianToStartSeconds  *int64
			MedianToSignedSeconds *int64
		}
		Storage struct {
			Bytes    int64
			PerMonth []struct {
				Month string
				Bytes int64
			}
		}
		LiveRooms []struct {
			ConsultationID int64
			Participants   []protocol.Participant
		}
		StaleStations []struct {
			TokenID              int64
			Name, Institution    string
			LastSeen, LastUpload time.Time
			Queue                *protocol.StationQueue
		}
	}
	code, body := f.json(admin, "GET", "/api/dashboard", nil, &d)
	if code != 200 {
		t.Fatalf("dashboard: %d %s", code, body)
	}
	c := d.Consultations
	today := time.Now().In(time.FixedZone("CST", 8*3600)).Format("2006-01-02")
	total := 0
	for _, day := range c.PerDay {
		total += day.Count
	}
	if len(c.PerDay) != 30 || c.PerDay[29].Day != today || c.PerDay[29].Count < 3 || total != c.PerDay[29].Count {
		t.Errorf("per day: %+v", c.PerDay)
	}
	received := 0
	for _, in := range c.PerInstitution {
		if in.InstitutionID == f.inst["H"] {
			received = in.Received
		}
	}
	doctors := 0
	for _, dc := range c.PerDoctor {
		if dc.DoctorID == doctorU.p.UserID {
			doctors = dc.Count
		}
	}
	if received < 3 || doctors < 2 || c.MedianToStartSeconds == nil || c.MedianToSignedSeconds == nil {
		t.Errorf("per institution %+v, per doctor %+v, medians %v %v", c.PerInstitution, c.PerDoctor, c.MedianToStartSeconds, c.MedianToSignedSeconds)
	}
	if d.Storage.Bytes <= 0 || len(d.Storage.PerMonth) == 0 || d.Storage.PerMonth[len(d.Storage.PerMonth)-1].Bytes <= 0 {
		t.Errorf("storage: %+v", d.Storage)
	}
	i := slices.IndexFunc(d.LiveRooms, func(r struct {
		ConsultationID int64
		Participants   []protocol.Participant
	}) bool {
		return r.ConsultationID == live
	})
	if i < 0 || len(d.LiveRooms[i].Participants) != 1 || d.LiveRooms[i].Participants[0].ID != p.ID() {
		t.Errorf("live rooms: %+v", d.LiveRooms)
	}
	if len(d.StaleStations) != 1 || d.StaleStations[0].TokenID != tok.ID || !d.StaleStations[0].LastSeen.Equal(seen) ||
		!d.StaleStations[0].LastUpload.Equal(uploaded) || d.StaleStations[0].Institution == "" ||
		d.StaleStations[0].Queue == nil || d.StaleStations[0].Queue.Files != 5 {
		t.Errorf("stale stations: %+v (seen %v, uploaded %v)", d.StaleStations, seen, uploaded)
	}
}

// TestCutShortVisitsClosed: a room visit with no leave (the server was killed) is closed when
// the live service starts again, at the participant's last quality sample.
func TestCutShortVisitsClosed(t *testing.T) {
	f := newAuthzFixture(t)
	db := f.st.DB()
	if _, err := db.Exec(`INSERT INTO live_attendance (consultation_id, participant, username, joined_ms) VALUES (9, 'p-a', 'doctor', 1000), (9, 'p-b', 'clinic', 2000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO live_quality (consultation_id, participant, username, time_ms, source, sample) VALUES (9, 'p-a', 'doctor', 61000, 'client', '{}')`); err != nil {
		t.Fatal(err)
	}
	live, err := signal.New(f.ctx, signal.Config{DB: db, Consult: f.app.consult})
	if err != nil {
		t.Fatal(err)
	}
	live.Close()
	att, err := f.app.live.Attendances(f.ctx, []int64{9})
	if err != nil {
		t.Fatal(err)
	}
	if a := att[9]; a.Participants != 2 || a.FirstJoin.UnixMilli() != 1000 || a.LastLeave.UnixMilli() != 61000 {
		t.Errorf("attendance: %+v", a)
	}
}
