package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
)

// reportStation keeps a station's report of itself (its queue, last results, spool), sent
// with its API token every minute and after each upload attempt. Not in the audit trail: it
// changes nothing but what the console shows, and would add an entry a minute per station.
func (s *Service) reportStation(w http.ResponseWriter, r *http.Request) {
	var in protocol.StationStatus
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.auth.ReportStation(r.Context(), principal(r).TokenID, in); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// lastUpload is a token's last upload (tus or STOW-RS), from the audit trail, where uploads are
// recorded with the token's name as actor; zero if none.
func (s *Service) lastUpload(ctx context.Context, t auth.Token) (time.Time, error) {
	if s.trail == nil {
		return time.Time{}, nil
	}
	page, _, err := s.trail.Search(ctx, audit.Query{Actor: "token:" + t.Name, Action: "study.upload", Limit: 1})
	if err != nil {
		return time.Time{}, fmt.Errorf("last upload of token %d: %w", t.ID, err)
	}
	if len(page) == 0 {
		return time.Time{}, nil
	}
	return page[0].Time, nil
}

// listSessions lists who is signed in now: browser sessions seen in the last 15 minutes.
func (s *Service) listSessions(w http.ResponseWriter, r *http.Request) {
	list, err := s.auth.ActiveSessions(r.Context(), s.auth.SessionSecret(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// endSession signs someone out: their session ends and their next request is answered 401.
func (s *Service) endSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("sessid")
	a, err := s.auth.EndSession(r.Context(), id, s.auth.SessionSecret(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "session.end", "user:"+a.Username, fmt.Sprintf("session=%s ip=%s signed in %s", a.ID, a.IP, a.CreatedAt.Format(time.RFC3339)))
	w.WriteHeader(http.StatusNoContent)
}
