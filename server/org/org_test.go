package org

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sanping/sanping/server/store"
)

func newService(t *testing.T) *Service {
	t.Helper()
	db, err := store.OpenDB(filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTree(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	county, err := s.Add(ctx, Institution{Code: "dahua-rmyy", Name: "大化瑶族自治县人民医院", Kind: Hospital})
	if err != nil {
		t.Fatal(err)
	}
	town, err := s.Add(ctx, Institution{Code: "duyang", Name: "都阳镇卫生院", Kind: Township, ParentID: county.ID})
	if err != nil {
		t.Fatal(err)
	}
	village, err := s.Add(ctx, Institution{Code: "longshan", Name: "龙山村卫生室", Kind: Clinic, ParentID: town.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		in   Institution
		want error
	}{
		{Institution{Code: "", Name: "x", Kind: Hospital}, ErrInvalid},
		{Institution{Code: "a b", Name: "x", Kind: Hospital}, ErrInvalid},
		{Institution{Code: "x", Name: "", Kind: Hospital}, ErrInvalid},
		{Institution{Code: "x", Name: "line\nbreak", Kind: Hospital}, ErrInvalid},
		{Institution{Code: "x", Name: "x", Kind: "pharmacy"}, ErrInvalid},
		{Institution{Code: "x", Name: "x", Kind: Clinic}, ErrInvalid},                         // no parent
		{Institution{Code: "x", Name: "x", Kind: Township, ParentID: village.ID}, ErrInvalid}, // upside down
		{Institution{Code: "x", Name: "x", Kind: Clinic, ParentID: village.ID}, ErrInvalid},   // clinic under clinic
		{Institution{Code: "x", Name: "x", Kind: Clinic, ParentID: 999}, ErrInvalid},
		{Institution{Code: "longshan", Name: "x", Kind: Clinic, ParentID: town.ID}, ErrConflict},
	} {
		if _, err := s.Add(ctx, bad.in); !errors.Is(err, bad.want) {
			t.Errorf("Add(%+v): %v, want %v", bad.in, err, bad.want)
		}
	}
	if _, err := s.AddDepartment(ctx, county.ID, "放射科"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddDepartment(ctx, county.ID, "放射科"); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate department: %v", err)
	}
	if _, err := s.AddDepartment(ctx, village.ID, "放射科"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("department of a clinic: %v", err)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != county.ID || list[1].ID != town.ID || list[2].ID != village.ID {
		t.Fatalf("list order: %+v", list)
	}
	if len(list[0].Departments) != 1 || list[0].Departments[0].Name != "放射科" {
		t.Fatalf("departments: %+v", list[0].Departments)
	}
	got, err := s.ByCode(ctx, "longshan")
	if err != nil || got.ParentID != town.ID || got.Kind != Clinic {
		t.Fatalf("ByCode: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(999): %v", err)
	}
	if _, err := s.db.Exec(`DELETE FROM institutions WHERE id = ?`, village.ID); err == nil {
		t.Fatal("an institution was deleted")
	}
	if _, err := s.Rename(ctx, village.ID, "龙山村卫生所"); err != nil {
		t.Fatal(err)
	}
}

func TestStations(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	h, _ := s.Add(ctx, Institution{Code: "h", Name: "县医院", Kind: Hospital})
	if _, err := s.AddStation(ctx, Station{InstitutionID: h.ID, Name: "DR-1", AETitle: "DR1_SCU", Modality: "DX"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Station{
		{InstitutionID: h.ID, Name: ""},
		{InstitutionID: h.ID, Name: "x", AETitle: "THIS_AE_TITLE_IS_TOO_LONG"},
		{InstitutionID: h.ID, Name: "x", AETitle: `BACK\SLASH`},
		{InstitutionID: h.ID, Name: "x", Modality: "dx; drop"},
	} {
		if _, err := s.AddStation(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddStation(%+v): %v", bad, err)
		}
	}
	if _, err := s.AddStation(ctx, Station{InstitutionID: 99, Name: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("station of an unknown institution: %v", err)
	}
	list, err := s.Stations(ctx, h.ID)
	if err != nil || len(list) != 1 || list[0].AETitle != "DR1_SCU" {
		t.Fatalf("stations: %+v %v", list, err)
	}
}
