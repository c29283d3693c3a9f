package api

import (
	"context"
	"net/http"
	"time"

	"github.com/sanping/sanping/protocol"
	"github.com/sanping/sanping/server/consult"
	"github.com/sanping/sanping/server/signal"
	"github.com/sanping/sanping/server/store"
)

// Storage is what the API reads of the DICOM store (store.Store): the dashboard's usage, and
// a study's owner and patient for local read grants.
type Storage interface {
	Usage(ctx context.Context, loc *time.Location) (*store.Usage, error)
	StudyInstitution(ctx context.Context, studyUID string) (int64, error)
	StudyPatient(ctx context.Context, studyUID string) (id, name string, err error)
}

// Dashboard window and the age past which a station counts as not seen.
const (
	dashboardDays = 30
	stationStale  = 24 * time.Hour
)

// staleStation is an API token not used for a day.
type staleStation struct {
	TokenID       int64     `json:"tokenId"`
	Name          string    `json:"name"`
	InstitutionID int64     `json:"institutionId"`
	Institution   string    `json:"institution"`
	LastSeen      time.Time `json:"lastSeen,omitzero"` // zero: never used
	// LastUpload is its last upload (zero: none).
	LastUpload time.Time `json:"lastUpload,omitzero"`
	// Queue is what waited on the station at its last report (nil: it never reported).
	Queue      *protocol.StationQueue `json:"queue,omitempty"`
	ReportedAt time.Time              `json:"reportedAt,omitzero"`
}

type dashboard struct {
	// Consultations are the last 30 days' (China Standard Time days).
	Consultations *consult.Stats    `json:"consultations"`
	Storage       *store.Usage      `json:"storage"`
	LiveRooms     []signal.LiveRoom `json:"liveRooms"`
	StaleStations []staleStation    `json:"staleStations"`
}

// getDashboard is the admin console's overview: consultations per day, institution and
// doctor, median times to start and to a signed report, storage and its growth, live rooms
// and stations not seen for a day.
func (s *Service) getDashboard(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := time.Now()
	stats, err := s.cons.Stats(ctx, now, dashboardDays, chinaTime)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d := dashboard{Consultations: stats, Storage: &store.Usage{PerMonth: []store.MonthUsage{}}, LiveRooms: []signal.LiveRoom{},
		StaleStations: []staleStation{}}
	if s.cfg.Storage != nil {
		if d.Storage, err = s.cfg.Storage.Usage(ctx, chinaTime); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if s.cfg.Live != nil {
		d.LiveRooms = s.cfg.Live.LiveRooms()
	}
	tokens, err := s.auth.Tokens(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	insts, err := s.org.List(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	instName := map[int64]string{}
	for _, in := range insts {
		instName[in.ID] = in.Name
	}
	for _, t := range tokens {
		// A token never used counts from its creation.
		if !t.RevokedAt.IsZero() || now.Sub(t.LastUsedAt) < stationStale || now.Sub(t.CreatedAt) < stationStale {
			continue
		}
		st := staleStation{TokenID: t.ID, Name: t.Name, InstitutionID: t.InstitutionID, Institution: instName[t.InstitutionID], LastSeen: t.LastUsedAt}
		if st.LastUpload, err = s.lastUpload(ctx, t); err != nil {
			s.fail(w, r, err)
			return
		}
		if t.Status != nil {
			st.Queue, st.ReportedAt = &t.Status.Queue, t.Status.ReportedAt
		}
		d.StaleStations = append(d.StaleStations, st)
	}
	writeJSON(w, http.StatusOK, d)
}
