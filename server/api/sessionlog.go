package api

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/signal"
)

// LiveLog is what the session logs read of live rooms (signal.Service).
type LiveLog interface {
	Quality(ctx context.Context, consultation int64) ([]signal.QualitySample, error)
	LoadChat(ctx context.Context, consultation int64, limit int) ([]protocol.ChatMessage, error)
	Attendances(ctx context.Context, ids []int64) (map[int64]signal.Attendance, error)
	Recordings(ctx context.Context, consultation int64) ([]signal.Recording, error)
	LiveRooms() []signal.LiveRoom
}

// Session logs: consultations that had live sessions, and one consultation's page.

// named is an institution or a doctor with its display name.
type named struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// sessionLogRow is one consultation in the session log list.
type sessionLogRow struct {
	ConsultationID        int64           `json:"consultationId"`
	State                 consult.State   `json:"state"`
	Patient               consult.Patient `json:"patient"`
	RequestingInstitution named           `json:"requestingInstitution"`
	TargetInstitution     named           `json:"targetInstitution"`
	Doctor                *named          `json:"doctor,omitempty"`
	FirstJoin             time.Time       `json:"firstJoin,omitzero"`
	// LastLeave is zero while someone is in the room.
	LastLeave       time.Time `json:"lastLeave,omitzero"`
	DurationSeconds int64     `json:"durationSeconds"`
	Participants    int       `json:"participants"`
	HasRecording    bool      `json:"hasRecording"`
	// ReportState is none, draft or signed.
	ReportState string `json:"reportState"`
}

var sessionLogHeader = []string{"consultationId", "state", "patientId", "patientName", "requestingInstitutionId", "requestingInstitution",
	"targetInstitutionId", "targetInstitution", "doctorId", "doctor", "firstJoin", "lastLeave", "durationSeconds", "participants",
	"hasRecording", "reportState"}

func (row sessionLogRow) record() []string {
	var doc, docName string
	if row.Doctor != nil {
		doc, docName = strconv.FormatInt(row.Doctor.ID, 10), row.Doctor.Name
	}
	return []string{strconv.FormatInt(row.ConsultationID, 10), string(row.State), row.Patient.ID, row.Patient.Name,
		strconv.FormatInt(row.RequestingInstitution.ID, 10), row.RequestingInstitution.Name,
		strconv.FormatInt(row.TargetInstitution.ID, 10), row.TargetInstitution.Name, doc, docName,
		csvTime(row.FirstJoin), csvTime(row.LastLeave), strconv.FormatInt(row.DurationSeconds, 10),
		strconv.Itoa(row.Participants), strconv.FormatBool(row.HasRecording), row.ReportState}
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// listSessionLogs lists consultations that had a live session: from and to bound a session's
// start; institutionId (requesting or target), doctorId (assigned), state and patient (a
// substring of the ID or name) filter; limit and offset page.
func (s *Service) listSessionLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := consult.ListFilter{State: consult.State(q.Get("state")), Patient: q.Get("patient"), Live: true}
	var err error
	if f.Since, err = queryTime(r, "from"); err == nil {
		f.Until, err = queryTime(r, "to")
	}
	if err == nil {
		f.InstitutionID, err = queryInt(r, "institutionId")
	}
	if err == nil {
		f.DoctorID, err = queryInt(r, "doctorId")
	}
	var limit, offset int64
	if err == nil {
		limit, err = queryInt(r, "limit")
	}
	if err == nil {
		offset, err = queryInt(r, "offset")
	}
	form, ferr := format(r)
	if err == nil {
		err = ferr
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f.Limit, f.Offset = int(min(limit, 1000)), int(min(offset, 1<<30))
	rows, err := s.sessionLogRows(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.recordRead(r, "sessionlog.list", "consultations")
	if q.Has("format") {
		s.record(r, "sessionlog.export", "consultations", form+" "+r.URL.RawQuery)
		w.Header().Set("Content-Disposition", `attachment; filename="session-logs.`+form+`"`)
	}
	if form == "json" {
		writeJSON(w, http.StatusOK, rows)
		return
	}
	cw := csvWriter(w)
	cw.Write(sessionLogHeader)
	for _, row := range rows {
		cw.Write(csvSafe(row.record()))
	}
	cw.Flush()
}

func csvWriter(w http.ResponseWriter) *csv.Writer {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	return csv.NewWriter(w)
}

func (s *Service) sessionLogRows(ctx context.Context, f consult.ListFilter) ([]sessionLogRow, error) {
	list, err := s.cons.List(ctx, f)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	att := map[int64]signal.Attendance{}
	if s.cfg.Live != nil {
		if att, err = s.cfg.Live.Attendances(ctx, ids); err != nil {
			return nil, err
		}
	}
	insts, err := s.org.List(ctx)
	if err != nil {
		return nil, err
	}
	instName := map[int64]string{}
	for _, in := range insts {
		instName[in.ID] = in.Name
	}
	doctors := map[int64]*named{}
	rows := make([]sessionLogRow, 0, len(list))
	for _, c := range list {
		a := att[c.ID]
		row := sessionLogRow{ConsultationID: c.ID, State: c.State, Patient: c.Patient,
			RequestingInstitution: named{c.RequestingInstitutionID, instName[c.RequestingInstitutionID]},
			TargetInstitution:     named{c.TargetInstitutionID, instName[c.TargetInstitutionID]},
			FirstJoin:             a.FirstJoin, LastLeave: a.LastLeave, Participants: a.Participants, HasRecording: a.Recordings > 0}
		if !a.FirstJoin.IsZero() && !a.LastLeave.IsZero() {
			row.DurationSeconds = int64(a.LastLeave.Sub(a.FirstJoin).Seconds())
		}
		if id := c.AssignedDoctorID; id != 0 {
			d, ok := doctors[id]
			if !ok {
				if doc, err := s.cons.Doctor(ctx, id); err == nil {
					d = &named{id, doc.DisplayName}
				} else if errors.Is(err, consult.ErrNotFound) {
					d = &named{ID: id}
				} else {
					return nil, err
				}
				doctors[id] = d
			}
			row.Doctor = d
		}
		if row.ReportState, _, err = s.reportState(ctx, c.ID); err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// reportState is none, draft or signed, with the report when there is one.
func (s *Service) reportState(ctx context.Context, id int64) (string, *consult.Report, error) {
	rep, err := s.cons.Report(ctx, id)
	switch {
	case errors.Is(err, consult.ErrNotFound):
		return "none", nil, nil
	case err != nil:
		return "", nil, err
	case rep.Signed():
		return "signed", rep, nil
	}
	return "draft", rep, nil
}

// sessionEvent is one typed entry of a session's timeline.
type sessionEvent struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	// Type is join, leave, resume, disconnect, connection, control, view, annotation, chat,
	// muted, quality, recording, track, report, consultation, read or other.
	Type        string `json:"type"`
	Action      string `json:"action"`
	Actor       string `json:"actor"`
	Role        string `json:"role"`
	Institution string `json:"institution"`
	Participant string `json:"participant,omitempty"`
	IP          string `json:"ip,omitempty"`
	UserAgent   string `json:"userAgent,omitempty"`
	// Connection is udp, tcp or relay: on connection events, and on a join or resume once
	// its connection is known.
	Connection string `json:"connection,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

var sessionEventHeader = []string{"seq", "time", "type", "action", "actor", "role", "institution", "participant", "ip", "userAgent", "connection", "detail"}

func (e sessionEvent) record() []string {
	return []string{strconv.FormatInt(e.Seq, 10), csvTime(e.Time), e.Type, e.Action, e.Actor, e.Role, e.Institution, e.Participant,
		e.IP, e.UserAgent, e.Connection, e.Detail}
}

// liveTypes maps the room's audit actions to event types.
var liveTypes = map[string]string{
	"live.join": "join", "live.leave": "leave", "live.resume": "resume", "live.disconnect": "disconnect",
	"live.connection": "connection", "live.control": "control", "live.view": "view", "live.annotation": "annotation",
	"live.chat": "chat", "live.muted": "muted", "live.quality.level": "quality", "live.uplink": "quality", "live.recording": "recording",
	"live.whip": "join",
}

func eventType(action string) string {
	switch {
	case liveTypes[action] != "":
		return liveTypes[action]
	case strings.HasPrefix(action, "live.track"):
		return "track"
	case strings.HasPrefix(action, "report."):
		return "report"
	case strings.HasPrefix(action, "consultation.") && !strings.HasSuffix(action, ".read") && !strings.HasSuffix(action, ".list"):
		return "consultation"
	case strings.HasSuffix(action, ".read") || strings.HasSuffix(action, ".list") || action == "report.print":
		return "read"
	}
	return "other"
}

// sessionEvents types a consultation's trail entries. A room event's detail starts with its
// participant's ID (signal.Service.Event).
func sessionEvents(entries []audit.Entry) []sessionEvent {
	out := make([]sessionEvent, 0, len(entries))
	for _, e := range entries {
		ev := sessionEvent{Seq: e.Seq, Time: e.Time, Type: eventType(e.Action), Action: e.Action, Actor: e.Actor, Role: e.Role,
			Institution: e.Institution, IP: e.IP, UserAgent: e.UserAgent, Detail: e.Detail}
		if strings.HasPrefix(e.Action, "live.") {
			if p, d, ok := strings.Cut(e.Detail, ": "); ok {
				ev.Participant, ev.Detail = p, d
			} else {
				ev.Participant, ev.Detail = strings.TrimSuffix(e.Detail, ":"), ""
			}
		}
		switch ev.Type {
		case "connection":
			ev.Connection = ev.Detail
		case "join", "resume":
			// room.Room.add: "role, client, ip, user agent"; the entry's own fields are empty
			// when the room spoke before the signal session was registered.
			if f := strings.SplitN(ev.Detail, ", ", 4); len(f) == 4 {
				ev.Role = cmp.Or(ev.Role, f[0])
				ev.IP, ev.UserAgent = cmp.Or(ev.IP, f[2]), cmp.Or(ev.UserAgent, f[3])
				ev.Detail = f[1]
			}
		}
		out = append(out, ev)
	}
	// A join's connection type is the next one its participant reports.
	next := map[string]string{}
	for i := len(out) - 1; i >= 0; i-- {
		ev := &out[i]
		switch ev.Type {
		case "connection":
			next[ev.Participant] = ev.Connection
		case "join", "resume":
			ev.Connection = next[ev.Participant]
			delete(next, ev.Participant)
		}
	}
	return out
}

// qualitySeries is one participant's quality samples as columns, ready to plot: the i-th
// sample is (T[i], BitrateIn[i], ...). T is Unix milliseconds.
type qualitySeries struct {
	Participant string    `json:"participant"`
	Username    string    `json:"username"`
	T           []int64   `json:"t"`
	BitrateIn   []int64   `json:"bitrateIn"`
	BitrateOut  []int64   `json:"bitrateOut"`
	Loss        []float64 `json:"loss"`
	RTTms       []float64 `json:"rttMs"`
	JitterMs    []float64 `json:"jitterMs"`
	FPS         []float64 `json:"fps"`
	// Width and Height are 0 where the client did not say.
	Width  []int `json:"width"`
	Height []int `json:"height"`
	// Source is who measured each sample: "client" (the participant's own figures) or
	// "server" (the SFU's, every 5 s, for participants that report none, such as WHIP feeds).
	Source []string `json:"source"`
	// Resumes are the times (Unix milliseconds) the participant reconnected.
	Resumes []int64 `json:"resumes"`
}

func qualityColumns(samples []signal.QualitySample, events []sessionEvent) []*qualitySeries {
	var out []*qualitySeries
	by := map[string]*qualitySeries{}
	series := func(participant, username string) *qualitySeries {
		qs := by[participant]
		if qs == nil {
			qs = &qualitySeries{Participant: participant, Username: username, T: []int64{}, BitrateIn: []int64{}, BitrateOut: []int64{},
				Loss: []float64{}, RTTms: []float64{}, JitterMs: []float64{}, FPS: []float64{}, Width: []int{}, Height: []int{}, Source: []string{}, Resumes: []int64{}}
			by[participant] = qs
			out = append(out, qs)
		}
		return qs
	}
	for _, q := range samples {
		qs := series(q.Participant, q.Username)
		qs.T = append(qs.T, q.Time.UnixMilli())
		qs.BitrateIn = append(qs.BitrateIn, q.Quality.BitrateIn)
		qs.BitrateOut = append(qs.BitrateOut, q.Quality.BitrateOut)
		qs.Loss = append(qs.Loss, q.Quality.Loss)
		qs.RTTms = append(qs.RTTms, q.Quality.RTTms)
		qs.JitterMs = append(qs.JitterMs, q.Quality.JitterMs)
		qs.FPS = append(qs.FPS, q.Quality.FPS)
		qs.Width = append(qs.Width, q.Quality.Width)
		qs.Height = append(qs.Height, q.Quality.Height)
		qs.Source = append(qs.Source, q.Source)
	}
	for _, ev := range events {
		if ev.Type == "resume" {
			qs := series(ev.Participant, ev.Actor)
			qs.Resumes = append(qs.Resumes, ev.Time.UnixMilli())
		}
	}
	if out == nil {
		out = []*qualitySeries{}
	}
	return out
}

var qualityHeader = []string{"participant", "username", "time", "bitrateIn", "bitrateOut", "loss", "rttMs", "jitterMs", "fps", "width", "height", "source"}

// sessionReport is the report's state on the session page.
type sessionReport struct {
	State     string    `json:"state"` // none, draft or signed
	DraftedAt time.Time `json:"draftedAt,omitzero"`
	SignedBy  string    `json:"signedBy,omitempty"`
	SignedAt  time.Time `json:"signedAt,omitzero"`
}

// sessionPage is one consultation's session log.
type sessionPage struct {
	Consultation *consult.Consultation  `json:"consultation"`
	Timeline     []sessionEvent         `json:"timeline"`
	Chat         []protocol.ChatMessage `json:"chat"`
	Report       sessionReport          `json:"report"`
	// Recordings are the recorded tracks, each with its URL (GET .../recordings/{id}).
	Recordings []recordingEntry `json:"recordings"`
	Quality    []*qualitySeries `json:"quality"`
}

// sessionLog is one consultation's session page: its typed timeline (every audit entry about
// it: transitions, report, the room's events; and every read of its studies from its request
// until it ended), chat, report, recordings and per-participant quality. ?format=json or
// ?format=csv download it (the CSV has the timeline, or with part=quality the samples).
func (s *Service) sessionLog(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "sid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	form, err := format(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	part := r.URL.Query().Get("part")
	if part != "" && part != "timeline" && part != "quality" {
		s.fail(w, r, errors.Join(errBadRequest, errors.New("part must be timeline or quality")))
		return
	}
	page, err := s.sessionPage(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	obj := consultObject(id)
	s.recordRead(r, "sessionlog.read", obj)
	if !r.URL.Query().Has("format") {
		writeJSON(w, http.StatusOK, page)
		return
	}
	name := "consultation-" + strconv.FormatInt(id, 10)
	if form == "csv" && part == "quality" {
		name += "-quality"
	}
	s.record(r, "sessionlog.export", obj, form+" "+r.URL.RawQuery)
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.`+form+`"`)
	if form == "json" {
		writeJSON(w, http.StatusOK, page)
		return
	}
	cw := csvWriter(w)
	if part == "quality" {
		cw.Write(qualityHeader)
		for _, qs := range page.Quality {
			for i, t := range qs.T {
				cw.Write(csvSafe([]string{qs.Participant, qs.Username, csvTime(time.UnixMilli(t)),
					strconv.FormatInt(qs.BitrateIn[i], 10), strconv.FormatInt(qs.BitrateOut[i], 10), ftoa(qs.Loss[i]), ftoa(qs.RTTms[i]),
					ftoa(qs.JitterMs[i]), ftoa(qs.FPS[i]), strconv.Itoa(qs.Width[i]), strconv.Itoa(qs.Height[i]), qs.Source[i]}))
			}
		}
	} else {
		cw.Write(sessionEventHeader)
		for _, ev := range page.Timeline {
			cw.Write(csvSafe(ev.record()))
		}
	}
	cw.Flush()
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func (s *Service) sessionPage(ctx context.Context, id int64) (*sessionPage, error) {
	c, err := s.cons.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	obj := consultObject(id)
	entries, err := s.trail.List(ctx, audit.Filter{ObjectPrefix: obj})
	if err != nil {
		return nil, err
	}
	// consultation:1 is a prefix of consultation:12: keep exact objects and sub-objects.
	entries = slices.DeleteFunc(entries, func(e audit.Entry) bool {
		return e.Object != obj && !(len(e.Object) > len(obj) && e.Object[len(obj)] == '/')
	})
	until := time.Time{}
	if c.State == consult.Closed || c.State == consult.Cancelled || c.State == consult.Declined {
		until = c.UpdatedAt.Add(time.Millisecond)
	}
	for _, uid := range c.StudyUIDs {
		reads, err := s.trail.List(ctx, audit.Filter{ObjectPrefix: "study:" + uid, Since: c.CreatedAt, Until: until})
		if err != nil {
			return nil, err
		}
		for _, e := range reads {
			if e.Object == "study:"+uid {
				entries = append(entries, e)
			}
		}
	}
	slices.SortFunc(entries, func(a, b audit.Entry) int { return int(a.Seq - b.Seq) })
	entries = slices.CompactFunc(entries, func(a, b audit.Entry) bool { return a.Seq == b.Seq })
	page := &sessionPage{Consultation: c, Timeline: sessionEvents(entries), Chat: []protocol.ChatMessage{},
		Recordings: []recordingEntry{}}
	state, rep, err := s.reportState(ctx, id)
	if err != nil {
		return nil, err
	}
	page.Report.State = state
	if rep != nil {
		page.Report.DraftedAt = rep.DraftedAt
		if rep.Signed() {
			page.Report.SignedBy, page.Report.SignedAt = rep.DoctorName, rep.SignedAt
		}
	}
	var samples []signal.QualitySample
	if s.cfg.Live != nil {
		if samples, err = s.cfg.Live.Quality(ctx, id); err != nil {
			return nil, err
		}
		// The whole chat: chat is kept as said, and a session's is at most a few thousand lines.
		if page.Chat, err = s.cfg.Live.LoadChat(ctx, id, 1<<20); err != nil {
			return nil, err
		}
		recs, err := s.cfg.Live.Recordings(ctx, id)
		if err != nil {
			return nil, err
		}
		page.Recordings = recordingEntries(id, recs)
	}
	page.Quality = qualityColumns(samples, page.Timeline)
	return page, nil
}
