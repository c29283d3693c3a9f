package api

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sanping/sanping/server/audit"
)

// listAudit is the audit search: filters, newest first, one page per request; next is the
// cursor (before) of the following page, absent on the last.
func (s *Service) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	aq := audit.Query{Actor: q.Get("actor"), Patient: q.Get("patient"), Action: q.Get("action"), Institution: q.Get("institution")}
	var err error
	var limit, before int64
	if aq.From, err = queryTime(r, "from"); err == nil {
		aq.To, err = queryTime(r, "to")
	}
	if err == nil {
		before, err = queryInt(r, "before")
	}
	if err == nil {
		limit, err = queryInt(r, "limit")
	}
	if err == nil && q.Has("limit") && (limit < 1 || limit > audit.MaxSearchLimit) {
		err = fmt.Errorf("%w: limit must be 1 to %d", errBadRequest, audit.MaxSearchLimit)
	}
	if err == nil && q.Has("before") && before < 1 {
		err = fmt.Errorf("%w: before must be a sequence number (1 or more)", errBadRequest)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !q.Has("limit") {
		limit = 100
	}
	aq.Limit, aq.Before = int(limit), before
	entries, next, err := s.trail.Search(r.Context(), aq)
	if errors.Is(err, audit.ErrBadQuery) {
		err = errors.Join(errBadRequest, err)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The trail names patients and who read their data: searching it is recorded too, with
	// the search (whose trail an admin looked at is itself worth knowing).
	s.recordRead(r, "audit.read", "audit?"+r.URL.RawQuery)
	out := map[string]any{"entries": entriesJSON(entries)}
	if next > 0 {
		out["next"] = next
	}
	writeJSON(w, http.StatusOK, out)
}

// headJSON is the chain head on the wire.
type headJSON struct {
	Seq  int64      `json:"seq"`
	Hash string     `json:"hash"`
	Time *time.Time `json:"time,omitempty"`
}

func toHeadJSON(h audit.HeadEntry) headJSON {
	out := headJSON{Seq: h.Seq, Hash: h.Hash}
	if !h.Time.IsZero() {
		out.Time = &h.Time
	}
	return out
}

func (s *Service) verifyAudit(w http.ResponseWriter, r *http.Request) {
	st, err := s.trail.State(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"holds": st.Broken == nil, "entries": st.Head.Seq, "headHash": st.Head.Hash, "head": toHeadJSON(st.Head)}
	if st.Broken != nil {
		out["brokenAt"] = st.Broken.Seq
		out["reason"] = st.Broken.Reason
	}
	writeJSON(w, http.StatusOK, out)
}

// exportAudit streams the entries of a time range in trail order with the chain head of the
// same snapshot, so a reader can recompute every hash, follow the links and compare the last
// with the head (or with a head recorded elsewhere). Nothing is buffered: a year's trail goes
// out as it is read.
func (s *Service) exportAudit(w http.ResponseWriter, r *http.Request) {
	from, err := queryTime(r, "from")
	var to time.Time
	if err == nil {
		to, err = queryTime(r, "to")
	}
	if err == nil && !from.IsZero() && !to.IsZero() && !from.Before(to) {
		err = fmt.Errorf("%w: from must be before to", errBadRequest)
	}
	form, ferr := format(r)
	if err == nil {
		err = ferr
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "audit.export", "audit", fmt.Sprintf("from=%q to=%q format=%s", r.URL.Query().Get("from"), r.URL.Query().Get("to"), form))

	var (
		cw    *csv.Writer
		enc   *json.Encoder
		first = true
	)
	head := func(h audit.HeadEntry) error {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Audit-Head-Seq", strconv.FormatInt(h.Seq, 10))
		w.Header().Set("Audit-Head-Hash", h.Hash)
		if form == "csv" {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="audit.csv"`)
			hj := toHeadJSON(h)
			line := fmt.Sprintf("# sanping audit export; head seq=%d hash=%s", hj.Seq, hj.Hash)
			if hj.Time != nil {
				line += " time=" + hj.Time.UTC().Format(timeMillis)
			}
			if _, err := io.WriteString(w, line+"\n"); err != nil {
				return err
			}
			cw = csv.NewWriter(w)
			return cw.Write(entryHeader)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="audit.json"`)
		b, err := json.Marshal(toHeadJSON(h))
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, `{"head":%s,"entries":[`, b); err != nil {
			return err
		}
		enc = json.NewEncoder(w)
		return nil
	}
	each := func(e audit.Entry) error {
		if cw != nil {
			return cw.Write(exportSafe(entryRecord(e)))
		}
		if !first {
			if _, err := io.WriteString(w, ","); err != nil {
				return err
			}
		}
		first = false
		return enc.Encode(entriesJSON([]audit.Entry{e})[0])
	}
	err = s.trail.Export(r.Context(), from, to, head, each)
	if err == nil && cw != nil {
		cw.Flush()
		err = cw.Error()
	} else if err == nil {
		_, err = io.WriteString(w, "]}\n")
	}
	if err != nil {
		// The status line has gone out; a cut-off body is all that can tell the client.
		s.log.Error("audit export cut short", "err", err)
		if cw == nil && enc == nil {
			s.fail(w, r, err)
		}
	}
}

// exportSafe defuses spreadsheet formulas reversibly, so the hashes still recompute: a field
// starting with = + - @ tab, CR or a quote is prefixed with a quote; a reader removes one
// leading quote to get the exact value.
func exportSafe(rec []string) []string {
	for i, f := range rec {
		if f != "" && strings.IndexByte("=+-@\t\r'", f[0]) >= 0 {
			rec[i] = "'" + f
		}
	}
	return rec
}

const timeMillis = "2006-01-02T15:04:05.000Z"

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

var entryHeader = []string{"seq", "time", "actor", "role", "institution", "ip", "userAgent", "action", "object", "outcome", "detail",
	"patientId", "patientName", "prevHash", "hash"}

func entryRecord(e audit.Entry) []string {
	return []string{strconv.FormatInt(e.Seq, 10), e.Time.UTC().Format(timeMillis), e.Actor, e.Role, e.Institution,
		e.IP, e.UserAgent, e.Action, e.Object, e.Outcome, e.Detail, e.PatientID, e.PatientName, e.PrevHash, e.Hash}
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
	PatientID   string    `json:"patientId,omitempty"`
	PatientName string    `json:"patientName,omitempty"`
	PrevHash    string    `json:"prevHash"`
	Hash        string    `json:"hash"`
}

func entriesJSON(entries []audit.Entry) []entryJSON {
	out := make([]entryJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, entryJSON{e.Seq, e.Time, e.Actor, e.Role, e.Institution, e.IP, e.UserAgent, e.Action, e.Object, e.Outcome, e.Detail,
			e.PatientID, e.PatientName, e.PrevHash, e.Hash})
	}
	return out
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
