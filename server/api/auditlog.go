package api

import (
	"encoding/csv"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/consult"
)

func (s *Service) listAudit(w http.ResponseWriter, r *http.Request) {
	var f audit.Filter
	var err error
	var limit, offset int64
	if f.Since, err = queryTime(r, "from"); err == nil {
		f.Until, err = queryTime(r, "to")
	}
	if err == nil {
		limit, err = queryInt(r, "limit")
	}
	if err == nil {
		offset, err = queryInt(r, "offset")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	f.Actor, f.Action, f.ObjectPrefix = q.Get("actor"), q.Get("action"), q.Get("object")
	f.Limit, f.Offset = int(limit), int(min(offset, 1<<40))
	if f.Limit == 0 || f.Limit > 10000 {
		f.Limit = 1000
	}
	entries, err := s.trail.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The trail names patients' studies and who read them: reading it is recorded too.
	s.recordRead(r, "audit.read", "audit")
	s.writeEntries(w, r, "audit", entries)
}

func (s *Service) verifyAudit(w http.ResponseWriter, r *http.Request) {
	verr := s.trail.Verify(r.Context())
	seq, hash, err := s.trail.Head(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"holds": verr == nil, "entries": seq, "headHash": hash}
	var be *audit.BrokenError
	if errors.As(verr, &be) {
		out["brokenAt"] = be.Seq
		out["reason"] = be.Reason
	} else if verr != nil {
		s.fail(w, r, verr)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// format is the export format asked for: json (default) or csv.
func format(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		return "json", nil
	case "csv":
		return "csv", nil
	}
	return "", errors.Join(errBadRequest, errors.New("format must be json or csv"))
}

var entryHeader = []string{"seq", "time", "actor", "role", "institution", "ip", "userAgent", "action", "object", "outcome", "detail", "prevHash", "hash"}

func entryRecord(e audit.Entry) []string {
	return []string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Actor, e.Role, e.Institution,
		e.IP, e.UserAgent, e.Action, e.Object, e.Outcome, e.Detail, e.PrevHash, e.Hash}
}

// entryJSON is an audit entry on the wire.
type entryJSON struct {
	Seq         int64     `json:"seq"`
	Time        time.Time `json:"time"`
	Actor       string    `json:"actor"`
	Role        string    `json:"role"`
	Institution string    `json:"institution"`
	IP          string    `json:"ip"`
	UserAgent   string    `json:"userAgent"`
	Action      string    `json:"action"`
	Object      string    `json:"object"`
	Outcome     string    `json:"outcome"`
	Detail      string    `json:"detail,omitempty"`
	PrevHash    string    `json:"prevHash"`
	Hash        string    `json:"hash"`
}

func entriesJSON(entries []audit.Entry) []entryJSON {
	out := make([]entryJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, entryJSON{e.Seq, e.Time, e.Actor, e.Role, e.Institution, e.IP, e.UserAgent, e.Action, e.Object, e.Outcome, e.Detail, e.PrevHash, e.Hash})
	}
	return out
}

func (s *Service) writeEntries(w http.ResponseWriter, r *http.Request, name string, entries []audit.Entry) {
	f, err := format(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if f == "json" {
		writeJSON(w, http.StatusOK, entriesJSON(entries))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	cw.Write(entryHeader)
	for _, e := range entries {
		cw.Write(csvSafe(entryRecord(e)))
	}
	cw.Flush()
}

// csvSafe defuses spreadsheet formulas: a field starting with = + - @ (a hostile user agent,
// say) is prefixed with a quote, as OWASP advises for CSV injection.
func csvSafe(rec []string) []string {
	for i, f := range rec {
		if f != "" && (f[0] == '=' || f[0] == '+' || f[0] == '-' || f[0] == '@' || f[0] == '\t' || f[0] == '\r') {
			rec[i] = "'" + f
		}
	}
	return rec
}

// Session logs: consultations with their live sessions, and one consultation's timeline.

func (s *Service) listSessionLogs(w http.ResponseWriter, r *http.Request) {
	f := consult.ListFilter{State: consult.State(r.URL.Query().Get("state"))}
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
	list, err := s.cons.List(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.recordRead(r, "sessionlog.list", "consultations")
	if form == "json" {
		writeJSON(w, http.StatusOK, nonNil(list))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="session-logs.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"consultation", "state", "created", "requestingInstitution", "targetInstitution", "assignedDoctor",
		"patientId", "patientName", "urgency", "sessionStart", "sessionEnd"})
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, c := range list {
		base := []string{strconv.FormatInt(c.ID, 10), string(c.State), ts(c.CreatedAt), strconv.FormatInt(c.RequestingInstitutionID, 10),
			strconv.FormatInt(c.TargetInstitutionID, 10), strconv.FormatInt(c.AssignedDoctorID, 10), c.Patient.ID, c.Patient.Name, string(c.Urgency)}
		if len(c.Sessions) == 0 {
			cw.Write(csvSafe(append(base, "", "")))
		}
		for _, ls := range c.Sessions {
			cw.Write(csvSafe(append(slices.Clone(base), ts(ls.Start), ts(ls.End))))
		}
	}
	cw.Flush()
}

// sessionLog is one consultation's timeline: every audit entry about it (transitions, report,
// joins, chat, control, quality samples once live rooms write them) and every read of its
// studies from its request until it was closed, in trail order.
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
	c, err := s.cons.Get(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	entries, err := s.trail.List(r.Context(), audit.Filter{ObjectPrefix: consultObject(id)})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// consultation:1 is a prefix of consultation:12: keep exact objects and sub-objects.
	obj := consultObject(id)
	entries = slices.DeleteFunc(entries, func(e audit.Entry) bool {
		return e.Object != obj && !(len(e.Object) > len(obj) && e.Object[len(obj)] == '/')
	})
	until := time.Time{}
	if c.State == consult.Closed || c.State == consult.Cancelled || c.State == consult.Declined {
		until = c.UpdatedAt.Add(time.Millisecond)
	}
	for _, uid := range c.StudyUIDs {
		reads, err := s.trail.List(r.Context(), audit.Filter{ObjectPrefix: "study:" + uid, Since: c.CreatedAt, Until: until})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, e := range reads {
			if e.Object == "study:"+uid {
				entries = append(entries, e)
			}
		}
	}
	slices.SortFunc(entries, func(a, b audit.Entry) int { return int(a.Seq - b.Seq) })
	entries = slices.CompactFunc(entries, func(a, b audit.Entry) bool { return a.Seq == b.Seq })
	s.recordRead(r, "sessionlog.read", obj)
	if form == "csv" {
		s.writeEntries(w, r, "consultation-"+strconv.FormatInt(id, 10), entries)
		return
	}
	out := map[string]any{"consultation": c, "timeline": entriesJSON(entries), "quality": []any{}}
	if s.cfg.Quality != nil {
		q, err := s.cfg.Quality(r.Context(), id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out["quality"] = q
	}
	writeJSON(w, http.StatusOK, out)
}
