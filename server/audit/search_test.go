package audit_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
)

func TestSearch(t *testing.T) {
	ctx := context.Background()
	l, c, _ := newLog(t)
	add := func(actor, inst, action, pid, pname string) audit.Entry {
		t.Helper()
		c.set(c.now().Add(time.Hour))
		e, err := l.Append(ctx, audit.Entry{Actor: actor, Institution: inst, Action: action,
			Object: "x", Outcome: "success", PatientID: pid, PatientName: pname})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e1 := add("wei", "H1", "study.read", "P1", "韦东平")
	e2 := add("li", "H2", "live.join", "P1", "韦东平")
	e3 := add("wei", "H1", "live.chat", "P2", "李四")
	e4 := add("wei", "H2", "login", "", "")
	e5 := add("li", "H1", "lived", "", "") // not under "live."

	seqs := func(es []audit.Entry) []int64 {
		var s []int64
		for _, e := range es {
			s = append(s, e.Seq)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		q    audit.Query
		want []audit.Entry
		next int64
	}{
		{"all", audit.Query{}, []audit.Entry{e5, e4, e3, e2, e1}, 0},
		{"actor", audit.Query{Actor: "wei"}, []audit.Entry{e4, e3, e1}, 0},
		{"institution", audit.Query{Institution: "H2"}, []audit.Entry{e4, e2}, 0},
		{"patient id", audit.Query{Patient: "P1"}, []audit.Entry{e2, e1}, 0},
		{"patient name", audit.Query{Patient: "李四"}, []audit.Entry{e3}, 0},
		{"action exact", audit.Query{Action: "login"}, []audit.Entry{e4}, 0},
		{"action prefix", audit.Query{Action: "live."}, []audit.Entry{e3, e2}, 0},
		{"time", audit.Query{From: e2.Time, To: e4.Time}, []audit.Entry{e3, e2}, 0},
		{"actor and time", audit.Query{Actor: "wei", From: e2.Time}, []audit.Entry{e4, e3}, 0},
		{"page 1", audit.Query{Limit: 2}, []audit.Entry{e5, e4}, e4.Seq},
		{"page 2", audit.Query{Limit: 2, Before: e4.Seq}, []audit.Entry{e3, e2}, e2.Seq},
		{"page 3", audit.Query{Limit: 2, Before: e2.Seq}, []audit.Entry{e1}, 0},
		{"full last page", audit.Query{Limit: 2, Before: e3.Seq}, []audit.Entry{e2, e1}, 0},
		{"none", audit.Query{Actor: "nobody"}, nil, 0},
	} {
		got, next, err := l.Search(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if next != tc.next {
			t.Errorf("%s: next %d, want %d", tc.name, next, tc.next)
		}
		if g, w := seqs(got), seqs(tc.want); !equal(g, w) {
			t.Errorf("%s: seqs %v, want %v", tc.name, g, w)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: entry %+v, want %+v", tc.name, got[i], tc.want[i])
			}
		}
	}
	for _, q := range []audit.Query{{Limit: 501}, {Limit: -1}, {Before: -1}, {From: e2.Time, To: e1.Time}} {
		if _, _, err := l.Search(ctx, q); !errors.Is(err, audit.ErrBadQuery) {
			t.Errorf("Search(%+v): %v, want ErrBadQuery", q, err)
		}
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSearchPlan checks that every filter, with a time range, is one index range rather than a
// scan of the trail.
func TestSearchPlan(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	for _, a := range []string{"live.join", "live.chat", "login"} {
		if _, err := l.Append(ctx, audit.Entry{Actor: "wei", Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	day := audit.Query{From: t0, To: t0.Add(24 * time.Hour)}
	for _, tc := range []struct {
		q    audit.Query
		want []string
	}{
		{audit.Query{Actor: "wei", From: day.From, To: day.To}, []string{"audit_log_actor_time (actor=? AND time_ms>? AND time_ms<?)"}},
		{audit.Query{Institution: "H1", From: day.From, To: day.To}, []string{"audit_log_institution_time (institution=? AND time_ms>? AND time_ms<?)"}},
		{audit.Query{Action: "login", From: day.From, To: day.To}, []string{"audit_log_action_time (action=? AND time_ms>? AND time_ms<?)"}},
		// The prefix is searched as the list of actions under it, each with the time range.
		{audit.Query{Action: "live.", From: day.From, To: day.To}, []string{"audit_log_action_time (action=? AND time_ms>? AND time_ms<?)"}},
		{audit.Query{Patient: "P1"}, []string{"audit_log_patient_id_time (patient_id=?)", "audit_log_patient_name_time (patient_name=?)"}},
	} {
		plan, err := l.SearchPlan(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(plan, w) {
				t.Errorf("plan for %+v:\n%s\nwant %q", tc.q, plan, w)
			}
		}
		if strings.Contains(plan, "SCAN audit_log") {
			t.Errorf("plan for %+v scans the trail:\n%s", tc.q, plan)
		}
	}
}

// TestPatientColumnsMigrate opens a trail written before the patient columns existed: its
// entries keep their v1 hashes, and entries naming a patient chain on in v2.
func TestPatientColumnsMigrate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	db := openDB(t, path)
	if _, err := db.Exec(`CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,
		actor TEXT NOT NULL, role TEXT NOT NULL, institution TEXT NOT NULL, ip TEXT NOT NULL,
		user_agent TEXT NOT NULL, action TEXT NOT NULL, object TEXT NOT NULL, outcome TEXT NOT NULL,
		detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL) STRICT;
		CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL) STRICT;`); err != nil {
		t.Fatal(err)
	}
	old := audit.Entry{Seq: 1, Time: t0.Truncate(time.Millisecond), Actor: "wei", Action: "login", Object: "user:wei",
		Outcome: "success", PrevHash: audit.GenesisHash}
	old.Hash = audit.ComputeHash(old)
	// Vectors computed apart from this code (Python, from the encoding as documented): an entry
	// without a patient keeps the v1 encoding; one with a patient is v2.
	if want := "a9eee2c9713a6cd286931d0a88bd5124f58ddcd8c8a2208615bc6bffe7f98f13"; old.Hash != want {
		t.Fatalf("v1 hash %s, want %s", old.Hash, want)
	}
	v2 := old
	v2.Action, v2.Object, v2.PatientID, v2.PatientName = "study.read", "study:1.2", "P1", "韦东平"
	if got, want := audit.ComputeHash(v2), "eee26dd12f519612347d4eb2096575b973b7a1dfac107e3990d190ef988999b1"; got != want {
		t.Fatalf("v2 hash %s, want %s", got, want)
	}
	if _, err := db.Exec(`INSERT INTO audit_log VALUES (?, ?, ?, '', '', '', '', ?, ?, ?, '', ?, ?)`,
		old.Seq, old.Time.UnixMilli(), old.Actor, old.Action, old.Object, old.Outcome, old.PrevHash, old.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO audit_head VALUES (1, 1, ?)`, old.Hash); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, db, func() time.Time { return t0.Add(time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("migrated v1 trail: %v", err)
	}
	e, err := l.Append(ctx, audit.Entry{Actor: "wei", Action: "study.read", Object: "study:1.2", PatientID: "P1", PatientName: "韦东平"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("after a v2 entry: %v", err)
	}
	noPatient := e
	noPatient.PatientID, noPatient.PatientName = "", ""
	if audit.ComputeHash(noPatient) == e.Hash {
		t.Error("the patient fields are not covered by the hash")
	}
	got, _, err := l.Search(ctx, audit.Query{Patient: "韦东平"})
	if err != nil || len(got) != 1 || got[0] != e {
		t.Fatalf("search by patient: %v %+v", err, got)
	}
}

// TestReadAboutLooksUpOnlyWhenWritten: the patient lookup runs for written reads, not for the
// coalesced ones.
func TestReadAboutLooksUpOnlyWhenWritten(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	lookups := 0
	patient := func(context.Context) (string, string, error) { lookups++; return "P1", "韦东平", nil }
	for range 3 {
		if _, err := l.ReadAbout(ctx, audit.Entry{Actor: "wei", Action: "image.read", Object: "study:1.2"}, patient); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := l.Search(ctx, audit.Query{Patient: "P1"})
	if err != nil || len(got) != 1 || lookups != 1 {
		t.Fatalf("%d lookups, entries %+v, %v", lookups, got, err)
	}
	if _, err := l.ReadAbout(ctx, audit.Entry{Actor: "li", Action: "image.read", Object: "study:1.3"},
		func(context.Context) (string, string, error) { return "", "", errors.New("gone") }); err != nil {
		t.Fatalf("a failed lookup stops the entry: %v", err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExport(t *testing.T) {
	ctx := context.Background()
	l, c, _ := newLog(t)
	var all []audit.Entry
	for i := range 5 {
		c.set(t0.Add(time.Duration(i) * time.Hour))
		all = append(all, appendN(t, l, 1)...)
	}
	export := func(from, to time.Time) (audit.HeadEntry, []int64) {
		t.Helper()
		var head audit.HeadEntry
		var seqs []int64
		err := l.Export(ctx, from, to, func(h audit.HeadEntry) error { head = h; return nil },
			func(e audit.Entry) error {
				if e != all[e.Seq-1] {
					t.Errorf("exported %+v, stored %+v", e, all[e.Seq-1])
				}
				seqs = append(seqs, e.Seq)
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		return head, seqs
	}
	head, seqs := export(all[1].Time, all[4].Time)
	if !equal(seqs, []int64{2, 3, 4}) || head.Seq != 5 || head.Hash != all[4].Hash || !head.Time.Equal(all[4].Time) {
		t.Errorf("export [1, 4): %v, head %+v", seqs, head)
	}
	if _, seqs := export(time.Time{}, time.Time{}); !equal(seqs, []int64{1, 2, 3, 4, 5}) {
		t.Errorf("whole export: %v", seqs)
	}
	if _, seqs := export(t0.AddDate(1, 0, 0), time.Time{}); len(seqs) != 0 {
		t.Errorf("empty range: %v", seqs)
	}
}
