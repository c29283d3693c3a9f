package consult

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Stats are the consultations created in a window, counted for the admin dashboard.
type Stats struct {
	// PerDay counts consultations by the day (in the caller's zone) they were requested,
	// every day of the window included.
	PerDay []DayCount `json:"perDay"`
	// PerInstitution counts them by institution: requested by it and sent to it.
	PerInstitution []InstitutionCount `json:"perInstitution"`
	// PerDoctor counts them by assigned doctor.
	PerDoctor []DoctorCount `json:"perDoctor"`
	// MedianToStartSeconds is the median time from request to the first live session;
	// MedianToSignedSeconds from that start to the signed report. 0 when there are none.
	MedianToStartSeconds  int64 `json:"medianToStartSeconds"`
	MedianToSignedSeconds int64 `json:"medianToSignedSeconds"`
}

// DayCount is one day's consultations; Day is YYYY-MM-DD.
type DayCount struct {
	Day   string `json:"day"`
	Count int    `json:"count"`
}

// InstitutionCount is one institution's consultations in the window.
type InstitutionCount struct {
	InstitutionID int64 `json:"institutionId"`
	Requested     int   `json:"requested"`
	Received      int   `json:"received"`
}

// DoctorCount is one assigned doctor's consultations in the window.
type DoctorCount struct {
	DoctorID int64 `json:"doctorId"`
	Count    int   `json:"count"`
}

// Stats counts the consultations requested on the days days up to and including now's day in loc.
func (s *Service) Stats(ctx context.Context, now time.Time, days int, loc *time.Location) (*Stats, error) {
	y, m, d := now.In(loc).Date()
	since := time.Date(y, m, d, 0, 0, 0, 0, loc).AddDate(0, 0, 1-days)
	st := &Stats{PerDay: make([]DayCount, days), PerInstitution: []InstitutionCount{}, PerDoctor: []DoctorCount{}}
	for i := range st.PerDay {
		st.PerDay[i].Day = since.AddDate(0, 0, i).Format("2006-01-02")
	}
	inst := map[int64]*InstitutionCount{}
	doc := map[int64]int{}
	var toStart, toSigned []int64
	err := s.read(ctx, func(tx *sql.Tx) error {
		return eachRow(ctx, tx, `SELECT c.created_at, c.requesting_institution_id, c.target_institution_id, c.assigned_doctor_id,
				(SELECT min(started_at) FROM consultation_sessions s WHERE s.consultation_id = c.id),
				(SELECT signed_at FROM reports r WHERE r.consultation_id = c.id)
			FROM consultations c WHERE c.created_at >= ?`, []any{since.UnixMilli()}, func(rows *sql.Rows) error {
			var created, req, target, assigned int64
			var started, signed sql.NullInt64
			if err := rows.Scan(&created, &req, &target, &assigned, &started, &signed); err != nil {
				return err
			}
			day := time.UnixMilli(created).In(loc).Format("2006-01-02")
			if i, ok := slices.BinarySearchFunc(st.PerDay, day, func(dc DayCount, day string) int { return strings.Compare(dc.Day, day) }); ok {
				st.PerDay[i].Count++
			}
			for _, id := range []int64{req, target} {
				if inst[id] == nil {
					inst[id] = &InstitutionCount{InstitutionID: id}
				}
			}
			inst[req].Requested++
			inst[target].Received++
			if assigned != 0 {
				doc[assigned]++
			}
			if started.Valid {
				toStart = append(toStart, started.Int64-created)
				if signed.Valid {
					toSigned = append(toSigned, signed.Int64-started.Int64)
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("consult: %w", err)
	}
	for _, c := range inst {
		st.PerInstitution = append(st.PerInstitution, *c)
	}
	slices.SortFunc(st.PerInstitution, func(a, b InstitutionCount) int { return int(a.InstitutionID - b.InstitutionID) })
	for id, n := range doc {
		st.PerDoctor = append(st.PerDoctor, DoctorCount{id, n})
	}
	slices.SortFunc(st.PerDoctor, func(a, b DoctorCount) int { return int(a.DoctorID - b.DoctorID) })
	st.MedianToStartSeconds, st.MedianToSignedSeconds = median(toStart)/1000, median(toSigned)/1000
	return st, nil
}

// median of ms (sorted in place); the lower middle of an even count; 0 for none.
func median(ms []int64) int64 {
	if len(ms) == 0 {
		return 0
	}
	slices.Sort(ms)
	return ms[(len(ms)-1)/2]
}
