package api

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
)

// worklist is a doctor's worklist in one answer: the page, the names a row shows and the
// count of each state, so the screen makes one request over a 4G link.
func (s *Service) worklist(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := consult.WorklistFilter{Urgency: consult.Urgency(q.Get("urgency"))}
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			if st = strings.TrimSpace(st); st != "" {
				f.States = append(f.States, consult.State(st))
			}
		}
	}
	var err error
	var limit, offset int64
	if f.Since, err = queryTime(r, "from"); err == nil {
		f.Until, err = queryTime(r, "to")
	}
	if err == nil {
		f.InstitutionID, err = queryInt(r, "institutionId")
	}
	if err == nil {
		limit, err = queryInt(r, "limit")
	}
	if err == nil {
		offset, err = queryInt(r, "offset")
	}
	if err == nil && len(f.States) > 20 {
		err = fmt.Errorf("%w: at most 20 states", errBadRequest)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f.Limit, f.Offset = int(min(limit, 1000)), int(min(offset, 1<<30))
	f.Scope, f.ScopeArgs = auth.ConsultationScope(principal(r))
	wl, err := s.cons.Worklist(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A worklist names patients: it is a read of patient data.
	s.recordRead(r, "consultation.list", "consultations")
	writeJSON(w, http.StatusOK, wl)
}
