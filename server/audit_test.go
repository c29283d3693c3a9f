package server

import (
	"encoding/csv"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
)

type auditPage struct {
	Entries []auditEntryJSON `json:"entries"`
	Next    int64            `json:"next"`
}

type auditEntryJSON struct {
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
	Detail      string    `json:"detail"`
	PatientID   string    `json:"patientId"`
	PatientName string    `json:"patientName"`
	PrevHash    string    `json:"prevHash"`
	Hash        string    `json:"hash"`
}

func (e auditEntryJSON) entry() audit.Entry {
	return audit.Entry{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Role: e.Role, Institution: e.Institution, IP: e.IP,
		UserAgent: e.UserAgent, Action: e.Action, Object: e.Object, Outcome: e.Outcome, Detail: e.Detail,
		PatientID: e.PatientID, PatientName: e.PatientName, PrevHash: e.PrevHash, Hash: e.Hash}
}

// TestAuditSearchOverHTTP searches the trail as the admin console will: by patient, actor,
// action prefix, institution, page by page; bad parameters are 400 problems.
func TestAuditSearchOverHTTP(t *testing.T) {
	f := newAuthzFixture(t)
	admin, clinic := f.users["admin"], f.users["clinic"]
	id := f.consultation(false, "scheduled")
	search := func(query string) auditPage {
		t.Helper()
		var p auditPage
		if code, body := f.do(admin, "GET", "/api/audit?"+query, "", nil, &p); code != 200 {
			t.Fatalf("GET /api/audit?%s: %d %s", query, code, body)
		}
		return p
	}
	object := fmt.Sprintf("consultation:%d", id)
	for _, patient := range []string{"P1", "韦东平"} {
		p := search("patient=" + url.QueryEscape(patient))
		var actions []string
		for _, e := range p.Entries {
			if e.Object == object {
				actions = append(actions, e.Action)
			}
			if e.PatientID != "P1" && e.PatientName != "韦东平" {
				t.Errorf("patient %s: entry %+v", patient, e)
			}
		}
		if strings.Join(actions, " ") != "consultation.schedule consultation.accept consultation.request" {
			t.Errorf("patient %s: actions %v, newest first", patient, actions)
		}
	}
	// A study read names the study's patient, looked up when the entry is written.
	f.do(f.users["doctor"], "GET", "/dicom-web/studies/"+f.studyA.Study+"/metadata", "", nil, nil)
	reads := search("action=study.read")
	if len(reads.Entries) != 1 || reads.Entries[0].PatientID == "" || reads.Entries[0].PatientName != "Wei^Dongping" {
		t.Fatalf("study read: %+v", reads.Entries)
	}
	if got := search("patient=" + reads.Entries[0].PatientID + "&action=study.read").Entries; len(got) != 1 {
		t.Errorf("study read by patient ID: %+v", got)
	}

	p := search("actor=" + clinic.name + "&action=consultation.")
	if len(p.Entries) == 0 {
		t.Fatal("no consultation.* entries by the clinic")
	}
	for _, e := range p.Entries {
		if e.Actor != clinic.name || !strings.HasPrefix(e.Action, "consultation.") {
			t.Errorf("actor and action prefix: %+v", e)
		}
	}
	inst := search("actor=" + clinic.name + "&action=login").Entries[0].Institution
	if inst == "" {
		t.Fatal("the clinic's entries name no institution")
	}
	for _, e := range search("institution=" + inst).Entries {
		if e.Institution != inst {
			t.Errorf("institution %s: %+v", inst, e)
		}
	}

	// Pages of one follow each other without gaps or repeats, newest first.
	all := search("limit=500&before=" + strconv.FormatInt(p.Entries[0].Seq+1, 10))
	var paged []int64
	for before := p.Entries[0].Seq + 1; ; {
		pg := search("limit=3&before=" + strconv.FormatInt(before, 10))
		for _, e := range pg.Entries {
			paged = append(paged, e.Seq)
		}
		if pg.Next == 0 {
			break
		}
		before = pg.Next
	}
	if len(paged) != len(all.Entries) {
		t.Fatalf("%d entries in pages of 3, %d in one", len(paged), len(all.Entries))
	}
	for i, e := range all.Entries {
		if paged[i] != e.Seq || (i > 0 && e.Seq >= all.Entries[i-1].Seq) {
			t.Fatalf("page order: %v vs entry %d = %d", paged, i, e.Seq)
		}
	}

	day := time.Now().UTC().Format("2006-01-02")
	if len(search("from="+day).Entries) == 0 {
		t.Error("nothing from today")
	}
	for _, q := range []string{"limit=501", "limit=0", "limit=x", "before=0", "before=-3", "from=yesterday",
		"from=2026-11-28&to=2026-11-27", "to=2026-11-28T08:00:00"} {
		code, body := f.do(admin, "GET", "/api/audit?"+q, "", nil, nil)
		if code != 400 || !strings.Contains(body, `"status":400`) {
			t.Errorf("GET /api/audit?%s: %d %s, want a 400 problem", q, code, body)
		}
	}
}

// TestAuditExportOverHTTP: the export parses as JSON and CSV, holds the same entries as the
// search, every hash recomputes, the links hold and the last entry is the head.
func TestAuditExportOverHTTP(t *testing.T) {
	f := newAuthzFixture(t)
	admin := f.users["admin"]
	f.consultation(false, "scheduled")
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	range_ := "from=" + url.QueryEscape(from) + "&to=" + url.QueryEscape(to)

	var exp struct {
		Head struct {
			Seq  int64  `json:"seq"`
			Hash string `json:"hash"`
		} `json:"head"`
		Entries []auditEntryJSON `json:"entries"`
	}
	if code, body := f.do(admin, "GET", "/api/audit/export?format=json&"+range_, "", nil, &exp); code != 200 {
		t.Fatalf("JSON export: %d %s", code, body)
	}
	if len(exp.Entries) < 5 {
		t.Fatalf("JSON export: %d entries", len(exp.Entries))
	}
	check := func(kind string, entries []audit.Entry, headSeq int64, headHash string) {
		t.Helper()
		for i, e := range entries {
			if h := audit.ComputeHash(e); h != e.Hash {
				t.Errorf("%s: entry %d: hash %s recomputes as %s", kind, e.Seq, e.Hash, h)
			}
			if i > 0 && (e.Seq != entries[i-1].Seq+1 || e.PrevHash != entries[i-1].Hash) {
				t.Errorf("%s: entry %d does not link to %d", kind, e.Seq, entries[i-1].Seq)
			}
		}
		last := entries[len(entries)-1]
		if last.Seq != headSeq || last.Hash != headHash {
			t.Errorf("%s: last entry %d %s, head %d %s", kind, last.Seq, last.Hash, headSeq, headHash)
		}
	}
	var jsonEntries []audit.Entry
	for _, e := range exp.Entries {
		jsonEntries = append(jsonEntries, e.entry())
	}
	check("JSON", jsonEntries, exp.Head.Seq, exp.Head.Hash)
	if exp.Entries[len(exp.Entries)-1].Action != "audit.export" {
		t.Errorf("the export is not recorded: last entry %+v", exp.Entries[len(exp.Entries)-1])
	}

	// The search's entries up to the export's head are the export's, field for field.
	var listed auditPage
	if code, body := f.do(admin, "GET", fmt.Sprintf("/api/audit?limit=500&before=%d&%s", exp.Head.Seq+1, range_), "", nil, &listed); code != 200 {
		t.Fatalf("search: %d %s", code, body)
	}
	if len(listed.Entries) != len(exp.Entries) {
		t.Fatalf("search has %d entries, export %d", len(listed.Entries), len(exp.Entries))
	}
	for i, e := range listed.Entries {
		if x := exp.Entries[len(exp.Entries)-1-i]; !e.Time.Equal(x.Time) || e.entry().Hash != x.Hash || e.Detail != x.Detail || e.Seq != x.Seq {
			t.Errorf("search entry %+v, export %+v", e, x)
		}
	}

	code, body := f.do(admin, "GET", "/api/audit/export?format=csv&"+range_, "", nil, nil)
	if code != 200 {
		t.Fatalf("CSV export: %d %s", code, body)
	}
	r := csv.NewReader(strings.NewReader(body))
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("CSV export: %v\n%s", err, body)
	}
	var headSeq int64
	var headHash string
	if _, err := fmt.Sscanf(body, "# sanping audit export; head seq=%d hash=%s", &headSeq, &headHash); err != nil {
		t.Fatalf("CSV head line: %v: %.200s", err, body)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	var csvEntries []audit.Entry
	for _, row := range rows[1:] {
		v := func(name string) string { return strings.TrimPrefix(row[col[name]], "'") }
		seq, _ := strconv.ParseInt(v("seq"), 10, 64)
		tm, err := time.Parse(time.RFC3339, v("time"))
		if err != nil {
			t.Fatal(err)
		}
		csvEntries = append(csvEntries, audit.Entry{Seq: seq, Time: tm, Actor: v("actor"), Role: v("role"),
			Institution: v("institution"), IP: v("ip"), UserAgent: v("userAgent"), Action: v("action"), Object: v("object"),
			Outcome: v("outcome"), Detail: v("detail"), PatientID: v("patientId"), PatientName: v("patientName"),
			PrevHash: v("prevHash"), Hash: v("hash")})
	}
	check("CSV", csvEntries, headSeq, headHash)
	// The CSV export has two entries more: the JSON export's own and the search's read.
	if csvEntries[0].Seq != jsonEntries[0].Seq || len(csvEntries) != len(jsonEntries)+2 {
		t.Errorf("CSV export: entries %d.. (%d), JSON %d.. (%d)",
			csvEntries[0].Seq, len(csvEntries), jsonEntries[0].Seq, len(jsonEntries))
	}

	for _, q := range []string{"format=xml", "from=x", "from=2026-11-28&to=2026-11-28"} {
		if code, body := f.do(admin, "GET", "/api/audit/export?"+q, "", nil, nil); code != 400 {
			t.Errorf("export?%s: %d %s, want 400", q, code, body)
		}
	}
}

// TestAuditVerifyTampered edits an entry in the database behind the server's back (as someone
// with the file would, triggers dropped) and reads the broken state through the API.
func TestAuditVerifyTampered(t *testing.T) {
	f := newAuthzFixture(t)
	admin := f.users["admin"]
	f.consultation(false, "accepted")
	type state struct {
		Holds    bool   `json:"holds"`
		BrokenAt int64  `json:"brokenAt"`
		Reason   string `json:"reason"`
		Head     struct {
			Seq  int64     `json:"seq"`
			Hash string    `json:"hash"`
			Time time.Time `json:"time"`
		} `json:"head"`
	}
	var before state
	if code, body := f.do(admin, "GET", "/api/audit/verify", "", nil, &before); code != 200 || !before.Holds {
		t.Fatalf("verify: %d %s", code, body)
	}
	if before.Head.Seq < 3 || len(before.Head.Hash) != 64 || time.Since(before.Head.Time) > time.Minute {
		t.Fatalf("head: %+v", before.Head)
	}
	db := f.st.DB()
	if _, err := db.Exec(`DROP TRIGGER audit_log_no_update`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	var after state
	if code, body := f.do(admin, "GET", "/api/audit/verify", "", nil, &after); code != 200 {
		t.Fatalf("verify: %d %s", code, body)
	}
	if after.Holds || after.BrokenAt != 2 || !strings.Contains(after.Reason, "changed") || after.Head.Seq < before.Head.Seq {
		t.Fatalf("tampered trail: %+v", after)
	}
}
