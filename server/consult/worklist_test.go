package consult_test

import (
	"slices"
	"testing"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/consult"
)

func TestWorklist(t *testing.T) {
	e := newEnv(t)
	requested := e.inState(consult.Requested)
	scheduled := e.inState(consult.Scheduled)
	reporting := e.inState(consult.Reporting)
	req := request()
	req.Urgency = consult.Emergency
	emergency, err := e.svc.Create(e.ctx, e.clinic, req)
	e.must(err)
	// Asked of another hospital: not in this doctor's scope.
	req.TargetInstitutionID = 3
	_, err = e.svc.Create(e.ctx, e.clinic, req)
	e.must(err)

	scope, args := auth.ConsultationScope(e.doctor)
	wl, err := e.svc.Worklist(e.ctx, consult.WorklistFilter{Scope: scope, ScopeArgs: args})
	e.must(err)
	var ids []int64
	for _, it := range wl.Items {
		ids = append(ids, it.ID)
	}
	// The emergency first, then the urgent ones newest first.
	if want := []int64{emergency.ID, reporting, scheduled, requested}; !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v", ids, want)
	}
	if wl.Counts[consult.Requested] != 2 || wl.Counts[consult.Scheduled] != 1 || wl.Counts[consult.Reporting] != 1 ||
		wl.Counts[consult.Signed] != 0 || wl.Total != 4 {
		t.Errorf("counts %v total %d", wl.Counts, wl.Total)
	}
	it := wl.Items[1]
	if it.RequestingInstitutionName != "平果市新安镇卫生院" || it.AssignedDoctorName != "黄志强" || it.Modalities == nil {
		t.Errorf("row names: %+v", it)
	}

	// States narrow the items, not the counts.
	wl, err = e.svc.Worklist(e.ctx, consult.WorklistFilter{Scope: scope, ScopeArgs: args,
		States: []consult.State{consult.Scheduled, consult.Live}})
	e.must(err)
	if len(wl.Items) != 1 || wl.Items[0].ID != scheduled || wl.Total != 1 || wl.Counts[consult.Requested] != 2 {
		t.Errorf("scheduled or live: %d items, total %d, counts %v", len(wl.Items), wl.Total, wl.Counts)
	}
	// Urgency narrows both.
	wl, err = e.svc.Worklist(e.ctx, consult.WorklistFilter{Scope: scope, ScopeArgs: args, Urgency: consult.Emergency})
	e.must(err)
	if len(wl.Items) != 1 || wl.Counts[consult.Requested] != 1 {
		t.Errorf("emergencies: %d items, counts %v", len(wl.Items), wl.Counts)
	}
	// A clinic of another institution sees nothing.
	other := &auth.Principal{UserID: 99, Roles: []string{"clinic"}, InstitutionID: 3}
	scope, args = auth.ConsultationScope(other)
	wl, err = e.svc.Worklist(e.ctx, consult.WorklistFilter{Scope: scope, ScopeArgs: args})
	e.must(err)
	if len(wl.Items) != 0 || wl.Total != 0 {
		t.Errorf("another clinic sees %d", len(wl.Items))
	}
	if _, err := e.svc.Worklist(e.ctx, consult.WorklistFilter{States: []consult.State{"bogus"}}); err == nil {
		t.Error("an unknown state was taken")
	}
}
