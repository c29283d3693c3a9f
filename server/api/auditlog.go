package api

import (
	"encoding/csv"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sanping/sanping/server/audit"
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
