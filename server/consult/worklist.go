package consult

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// WorklistItem is a consultation as a doctor's worklist shows it: the request with the names
// a row needs, so the list is one request over a slow link.
type WorklistItem struct {
	Consultation
	RequestingInstitutionName string `json:"requestingInstitutionName"`
	AssignedDoctorName        string `json:"assignedDoctorName,omitempty"`
	// Modalities of the attached studies the server holds (CT, MR, DX...), sorted, distinct.
	Modalities []string `json:"modalities"`
}

// Worklist is one page of a worklist and the number of consultations in each state that
// match the filter apart from its states, so tabs can show their counts.
type Worklist struct {
	Items  []WorklistItem `json:"items"`
	Counts map[State]int  `json:"counts"`
	// Total matches the filter including its states; Items may hold fewer (Limit).
	Total int `json:"total"`
}

// WorklistFilter selects a worklist. Zero values do not filter.
type WorklistFilter struct {
	// Scope and ScopeArgs: as in ListFilter (trusted SQL from the authorization code).
	Scope     string
	ScopeArgs []any
	// States: any of these (none: all).
	States  []State
	Urgency Urgency
	// InstitutionID matches the requesting institution.
	InstitutionID int64
	// Since (inclusive) and Until (exclusive) bound CreatedAt.
	Since, Until time.Time
	// Limit 0 means 500; at most 1000.
	Limit, Offset int
}

// urgencyRank orders a worklist: emergencies, then urgent, then routine.
const urgencyRank = `CASE c.urgency WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END`

// Worklist returns the consultations matching f, the most urgent first and within an urgency
// the newest first, with per-state counts. Three queries in one read transaction: counts, the
// page, and the page's names and modalities.
func (s *Service) Worklist(ctx context.Context, f WorklistFilter) (*Worklist, error) {
	var conds []string
	var args []any
	if f.Scope != "" {
		conds = append(conds, "("+f.Scope+")")
		args = append(args, f.ScopeArgs...)
	}
	switch f.Urgency {
	case "":
	case Routine, Urgent, Emergency:
		conds = append(conds, "c.urgency = ?")
		args = append(args, string(f.Urgency))
	default:
		return nil, invalid("urgency", "must be routine, urgent or emergency")
	}
	if f.InstitutionID != 0 {
		conds = append(conds, "c.requesting_institution_id = ?")
		args = append(args, f.InstitutionID)
	}
	if !f.Since.IsZero() {
		conds = append(conds, "c.created_at >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "c.created_at < ?")
		args = append(args, f.Until.UnixMilli())
	}
	for _, st := range f.States {
		if !st.Valid() {
			return nil, invalid("state", "unknown state %q", st)
		}
	}
	where, limit, err := page(conds, f.Limit, f.Offset, 500)
	if err != nil {
		return nil, err
	}
	pageWhere, pageArgs := where, slices.Clone(args)
	if len(f.States) > 0 {
		pageWhere += ` AND c.state IN (?` + strings.Repeat(`, ?`, len(f.States)-1) + `)`
		for _, st := range f.States {
			pageArgs = append(pageArgs, string(st))
		}
	}

	wl := &Worklist{Counts: map[State]int{}}
	for _, st := range States() {
		wl.Counts[st] = 0
	}
	err = s.read(ctx, func(tx *sql.Tx) error {
		err := eachRow(ctx, tx, `SELECT c.state, COUNT(*) FROM consultations c WHERE `+where+` GROUP BY c.state`, args,
			func(rows *sql.Rows) error {
				var st State
				var n int
				if err := rows.Scan(&st, &n); err != nil {
					return err
				}
				wl.Counts[st] = n
				return nil
			})
		if err != nil {
			return err
		}
		for _, st := range States() {
			if len(f.States) == 0 || slices.Contains(f.States, st) {
				wl.Total += wl.Counts[st]
			}
		}
		cs, err := load(ctx, tx, pageWhere, ` ORDER BY `+urgencyRank+`, c.created_at DESC, c.id DESC LIMIT ? OFFSET ?`,
			append(pageArgs, limit, f.Offset)...)
		if err != nil {
			return err
		}
		wl.Items = make([]WorklistItem, len(cs))
		for i := range cs {
			wl.Items[i] = WorklistItem{Consultation: cs[i], Modalities: []string{}}
		}
		return worklistDetails(ctx, tx, wl.Items)
	})
	if err != nil {
		return nil, err
	}
	return wl, nil
}

// worklistDetails fills in institution and doctor names and the studies' modalities.
func worklistDetails(ctx context.Context, q queryer, items []WorklistItem) error {
	if len(items) == 0 {
		return nil
	}
	insts, docs, ids := map[int64]string{}, map[int64]string{}, make([]any, len(items))
	byID := make(map[int64]*WorklistItem, len(items))
	for i := range items {
		it := &items[i]
		insts[it.RequestingInstitutionID] = ""
		if it.AssignedDoctorID != 0 {
			docs[it.AssignedDoctorID] = ""
		}
		ids[i] = it.ID
		byID[it.ID] = it
	}
	names := func(table, key, col string, m map[int64]string) error {
		if len(m) == 0 {
			return nil
		}
		keys := make([]any, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		return eachRow(ctx, q, `SELECT `+key+`, COALESCE(`+col+`, '') FROM `+table+` WHERE `+key+
			` IN (?`+strings.Repeat(`, ?`, len(keys)-1)+`)`, keys, func(rows *sql.Rows) error {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				return err
			}
			m[id] = name
			return nil
		})
	}
	if err := names("institutions", "id", "name", insts); err != nil {
		return err
	}
	if err := names("users", "pk", "COALESCE(NULLIF(display_name, ''), username)", docs); err != nil {
		return err
	}
	for i := range items {
		it := &items[i]
		it.RequestingInstitutionName = insts[it.RequestingInstitutionID]
		it.AssignedDoctorName = docs[it.AssignedDoctorID]
	}
	// The studies table belongs to the store; a database without it (tests of this package
	// alone) has no modalities to show.
	var hasStudies int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'studies'`).Scan(&hasStudies); err != nil {
		return fmt.Errorf("consult: %w", err)
	}
	if hasStudies == 0 {
		return nil
	}
	in := ` IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
	return eachRow(ctx, q, `SELECT cs.consultation_id, st.modalities FROM consultation_studies cs
		JOIN studies st ON st.study_uid = cs.study_uid WHERE cs.consultation_id`+in, ids, func(rows *sql.Rows) error {
		var id int64
		var mods string
		if err := rows.Scan(&id, &mods); err != nil {
			return err
		}
		it := byID[id]
		for m := range strings.SplitSeq(mods, `\`) {
			if m = strings.TrimSpace(m); m != "" && !slices.Contains(it.Modalities, m) {
				it.Modalities = append(it.Modalities, m)
			}
		}
		slices.Sort(it.Modalities)
		return nil
	})
}
