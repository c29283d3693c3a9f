package audit_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var t0 = time.Date(2025, 3, 14, 9, 26, 5, 358_979_323, time.UTC)

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := store.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newLog opens a fresh log in a temporary SQLite file and returns it with the file's path.
func newLog(t *testing.T) (*audit.Log, *clock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.db")
	c := &clock{t: t0}
	l, err := audit.Open(context.Background(), openDB(t, path), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return l, c, path
}

func appendN(t *testing.T, l *audit.Log, n int) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for i := range n {
		e, err := l.Append(context.Background(), audit.Entry{
			Actor: fmt.Sprintf("user%d", i%3), Role: "radiologist", Institution: "General",
			IP: "10.0.0.1", UserAgent: "test", Action: "study.read",
			Object: fmt.Sprintf("study:1.2.%d", i), Outcome: "success",
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func brokenAt(t *testing.T, err error, seq int64) {
	t.Helper()
	var b *audit.BrokenError
	if !errors.As(err, &b) {
		t.Fatalf("want *BrokenError at %d, got %v", seq, err)
	}
	if b.Seq != seq {
		t.Fatalf("broken at %d (%s), want %d", b.Seq, b.Reason, seq)
	}
}

func TestAppendVerify(t *testing.T) {
	ctx := context.Background()
	l, c, path := newLog(t)
	if err := l.Verify(ctx); err != nil {
		t.Fatalf("empty log: %v", err)
	}
	if err := l.VerifyTail(ctx, 10); err != nil {
		t.Fatalf("empty log tail: %v", err)
	}
	if _, err := l.Append(ctx, audit.Entry{Actor: "x"}); err == nil {
		t.Fatal("entry without action accepted")
	}
	entries := appendN(t, l, 5)
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			t.Errorf("entry %d has Seq %d", i, e.Seq)
		}
		if !e.Time.Equal(t0.Truncate(time.Millisecond)) || e.Time.Location() != time.UTC {
			t.Errorf("time %v, want %v UTC", e.Time, t0.Truncate(time.Millisecond))
		}
		want := audit.GenesisHash
		if i > 0 {
			want = entries[i-1].Hash
		}
		if e.PrevHash != want || e.Hash != audit.ComputeHash(e) || len(e.Hash) != 64 {
			t.Errorf("entry %d chain: prev %s hash %s", e.Seq, e.PrevHash, e.Hash)
		}
	}
	// An explicit non-UTC time is normalised; hostile bytes are cleaned, and what is stored is
	// what was hashed.
	c.set(t0.Add(time.Hour))
	local := time.Date(2025, 1, 2, 3, 4, 5, 6_789_000, time.FixedZone("X", 3600))
	e, err := l.Append(ctx, audit.Entry{Time: local, Actor: "a\x00b\xff", Action: "login", Outcome: "success"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Time.Location() != time.UTC || !e.Time.Equal(local.Truncate(time.Millisecond)) {
		t.Errorf("time %v", e.Time)
	}
	if e.Actor != "a\uFFFDb\uFFFD" {
		t.Errorf("actor %q", e.Actor)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	// Restart: a new Log on a new handle continues the same chain.
	l2, err := audit.Open(ctx, openDB(t, path), c.now)
	if err != nil {
		t.Fatal(err)
	}
	e7, err := l2.Append(ctx, audit.Entry{Action: "logout"})
	if err != nil {
		t.Fatal(err)
	}
	if e7.Seq != 7 || e7.PrevHash != e.Hash {
		t.Fatalf("after reopen: seq %d prev %s", e7.Seq, e7.PrevHash)
	}
	if err := l2.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	seq, hash, err := l2.Head(ctx)
	if err != nil || seq != 7 || hash != e7.Hash {
		t.Fatalf("head %d %s %v", seq, hash, err)
	}
	got, err := l2.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[5] != e || got[6] != e7 || got[0] != entries[0] {
		t.Fatalf("list round trip differs: %+v", got)
	}
}

func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	l, _, _ := newLog(t)
	const workers, each = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := l.Append(ctx, audit.Entry{Actor: fmt.Sprintf("w%d", w), Action: "instance.store", Object: fmt.Sprint(i)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	all, err := l.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*each {
		t.Fatalf("%d entries, want %d", len(all), workers*each)
	}
	for i, e := range all {
		if e.Seq != int64(i+1) {
			t.Fatalf("position %d has seq %d", i, e.Seq)
		}
	}
}

func TestTriggersRefuseRewrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "index.db")
	db := openDB(t, path)
	l, err := audit.Open(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3)
	for _, q := range []string{
		`UPDATE audit_log SET actor = 'mallory' WHERE seq = 2`,
		`DELETE FROM audit_log WHERE seq = 3`,
		`DELETE FROM audit_log`,
		`DELETE FROM audit_head`,
		`UPDATE audit_head SET seq = 2`,
		`INSERT OR REPLACE INTO audit_log SELECT * FROM audit_log WHERE seq = 1`,
		`REPLACE INTO audit_head (id, seq, hash) VALUES (1, 1, 'x')`,
	} {
		if _, err := db.ExecContext(ctx, q); err == nil {
			t.Errorf("%s: accepted", q)
		}
	}
	// Open again on the same database (as after a restart): idempotent.
	if _, err := audit.Open(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTamperDetected(t *testing.T) {
	const n = 10
	dropTriggers := []string{
		`DROP TRIGGER audit_log_no_update`, `DROP TRIGGER audit_log_no_delete`,
		`DROP TRIGGER audit_log_no_replace`, `DROP TRIGGER audit_head_no_delete`,
		`DROP TRIGGER audit_head_no_replace`, `DROP TRIGGER audit_head_forward`,
	}
	tests := []struct {
		name     string
		tamper   []string
		appendAf bool  // append one entry through the Log afterwards
		want     int64 // Seq Verify names
		tailOK   int   // VerifyTail(tailOK) still passes (0: not checked)
		tailBad  int   // VerifyTail(tailBad) fails at want (0: not checked)
	}{
		{name: "update actor", tamper: []string{`UPDATE audit_log SET actor = 'mallory' WHERE seq = 4`}, want: 4, tailOK: 6, tailBad: 7},
		{name: "update time", tamper: []string{`UPDATE audit_log SET time_ms = time_ms + 1 WHERE seq = 9`}, want: 9, tailBad: 2},
		{name: "update detail", tamper: []string{`UPDATE audit_log SET detail = 'x' WHERE seq = 1`}, want: 1},
		{name: "update prev_hash", tamper: []string{`UPDATE audit_log SET prev_hash = hash WHERE seq = 5`}, want: 5},
		{name: "update hash", tamper: []string{`UPDATE audit_log SET hash = prev_hash WHERE seq = 3`}, want: 3},
		{name: "delete middle", tamper: []string{`DELETE FROM audit_log WHERE seq = 5`}, want: 5, tailOK: 4, tailBad: 6},
		{name: "delete first", tamper: []string{`DELETE FROM audit_log WHERE seq = 1`}, want: 1},
		{name: "delete last", tamper: []string{`DELETE FROM audit_log WHERE seq = 10`}, want: 10, tailBad: 1},
		{name: "delete last two then append", tamper: []string{`DELETE FROM audit_log WHERE seq >= 9`}, appendAf: true, want: 9, tailBad: 3},
		{name: "delete last then append", tamper: []string{`DELETE FROM audit_log WHERE seq = 10`}, appendAf: true, want: 10, tailBad: 2},
		{name: "delete everything", tamper: []string{`DELETE FROM audit_log`}, want: 1, tailBad: 10},
		{name: "delete head", tamper: []string{`DELETE FROM audit_head`}, want: 10, tailBad: 1},
		{name: "head moved back", tamper: []string{`DELETE FROM audit_log WHERE seq = 10`, `UPDATE audit_head SET seq = 9`}, want: 9, tailBad: 1},
		{name: "insert beyond head", tamper: []string{`INSERT INTO audit_log SELECT seq + 1, time_ms, actor, role, institution, ip, user_agent, action, object, outcome, detail, hash, hash, patient_id, patient_name FROM audit_log WHERE seq = 10`}, want: 11, tailBad: 1},
		{name: "swap two entries", tamper: []string{`UPDATE audit_log SET seq = 100 WHERE seq = 6`, `UPDATE audit_log SET seq = 6 WHERE seq = 7`, `UPDATE audit_log SET seq = 7 WHERE seq = 100`}, want: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l, _, path := newLog(t)
			appendN(t, l, n)
			if err := l.Verify(ctx); err != nil {
				t.Fatal(err)
			}
			evil := openDB(t, path) // a second handle on the file, as someone with file access
			for _, q := range append(dropTriggers, tc.tamper...) {
				if _, err := evil.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if tc.appendAf {
				if _, err := l.Append(ctx, audit.Entry{Action: "login"}); err != nil {
					t.Fatal(err)
				}
			}
			brokenAt(t, l.Verify(ctx), tc.want)
			if tc.tailOK > 0 {
				if err := l.VerifyTail(ctx, tc.tailOK); err != nil {
					t.Errorf("VerifyTail(%d): %v", tc.tailOK, err)
				}
			}
			if tc.tailBad > 0 {
				brokenAt(t, l.VerifyTail(ctx, tc.tailBad), tc.want)
			}
		})
	}
}

func TestRehashedRewriteBreaksNextLink(t *testing.T) {
	// Rewriting an entry and fixing its own hash still breaks the link from the entry after it.
	ctx := context.Background()
	l, _, path := newLog(t)
	entries := appendN(t, l, 5)
	e := entries[2]
	e.Actor = "mallory"
	e.Hash = audit.ComputeHash(e)
	evil := openDB(t, path)
	for _, q := range []string{`DROP TRIGGER audit_log_no_update`,
		fmt.Sprintf(`UPDATE audit_log SET actor = 'mallory', hash = '%s' WHERE seq = 3`, e.Hash)} {
		if _, err := evil.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	brokenAt(t, l.Verify(ctx), 4)
}

func TestReadCoalescing(t *testing.T) {
	ctx := context.Background()
	l, c, _ := newLog(t)
	minute := t0.Truncate(time.Minute)
	read := func(actor, object string) audit.Entry {
		return audit.Entry{Actor: actor, Action: "study.read", Object: object, Outcome: "success"}
	}
	steps := []struct {
		at    time.Duration // after the start of t0's minute
		e     audit.Entry
		wrote bool
	}{
		{10 * time.Second, read("alice", "study:1"), true},
		{20 * time.Second, read("alice", "study:1"), false}, // same minute
		{59*time.Second + 999*time.Millisecond, read("alice", "study:1"), false},
		{30 * time.Second, read("alice", "study:2"), true},                                              // other study
		{30 * time.Second, read("bob", "study:1"), true},                                                // other actor
		{30 * time.Second, audit.Entry{Actor: "alice", Action: "series.read", Object: "study:1"}, true}, // other action
		{60 * time.Second, read("alice", "study:1"), true},                                              // next minute
		{61 * time.Second, read("alice", "study:1"), false},
		{61 * time.Second, read("bob", "study:1"), true},
		{3 * time.Minute, read("alice", "study:1"), true},
	}
	for i, s := range steps {
		c.set(minute.Add(s.at))
		wrote, err := l.Read(ctx, s.e)
		if err != nil {
			t.Fatal(err)
		}
		if wrote != s.wrote {
			t.Errorf("step %d (%v %+v): wrote %v, want %v", i, s.at, s.e, wrote, s.wrote)
		}
	}
	// An explicit Time wins over the clock; a late entry from an earlier minute is written.
	if wrote, err := l.Read(ctx, audit.Entry{Time: minute.Add(10 * time.Second), Actor: "alice", Action: "study.read", Object: "study:1"}); err != nil || !wrote {
		t.Errorf("late read: wrote %v, %v", wrote, err)
	}
	all, err := l.List(ctx, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Errorf("%d entries, want 8", len(all))
	}

	// Sixteen goroutines reading the same study in the same minute: written once.
	c.set(minute.Add(10 * time.Minute))
	var wg sync.WaitGroup
	var mu sync.Mutex
	written := 0
	for range 16 {
		wg.Go(func() {
			wrote, err := l.Read(ctx, read("carol", "study:9"))
			if err != nil {
				t.Error(err)
			}
			if wrote {
				mu.Lock()
				written++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if written != 1 {
		t.Errorf("concurrent reads wrote %d entries, want 1", written)
	}
	if err := l.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	l, c, _ := newLog(t)
	add := func(at time.Duration, actor, action, object string) {
		t.Helper()
		c.set(t0.Add(at))
		if _, err := l.Append(ctx, audit.Entry{Actor: actor, Action: action, Object: object, Outcome: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	add(0, "alice", "login", "user:alice")                  // 1
	add(time.Minute, "alice", "study.read", "study:1.2.3")  // 2
	add(2*time.Minute, "bob", "study.read", "study:1.2.34") // 3
	add(3*time.Minute, "bob", "instance.store", "study:1.2.4")
	add(4*time.Minute, "alice", "study.read", "Study:1.2.3") // 5: prefix match is case-sensitive
	add(5*time.Minute, "carol", "study.read", "study:1%")    // 6: % is not a wildcard
	tests := []struct {
		name string
		f    audit.Filter
		want []int64
	}{
		{"all", audit.Filter{}, []int64{1, 2, 3, 4, 5, 6}},
		{"actor", audit.Filter{Actor: "alice"}, []int64{1, 2, 5}},
		{"action", audit.Filter{Action: "study.read"}, []int64{2, 3, 5, 6}},
		{"object prefix", audit.Filter{ObjectPrefix: "study:1.2.3"}, []int64{2, 3}},
		{"object prefix wildcard chars", audit.Filter{ObjectPrefix: "study:1%"}, []int64{6}},
		{"since inclusive", audit.Filter{Since: t0.Add(2 * time.Minute)}, []int64{3, 4, 5, 6}},
		{"until exclusive", audit.Filter{Until: t0.Add(2 * time.Minute)}, []int64{1, 2}},
		{"window", audit.Filter{Since: t0.Add(time.Minute), Until: t0.Add(4 * time.Minute)}, []int64{2, 3, 4}},
		{"limit", audit.Filter{Limit: 2}, []int64{1, 2}},
		{"limit offset", audit.Filter{Limit: 2, Offset: 3}, []int64{4, 5}},
		{"offset only", audit.Filter{Offset: 4}, []int64{5, 6}},
		{"combined", audit.Filter{Actor: "bob", Action: "study.read", ObjectPrefix: "study:"}, []int64{3}},
		{"none", audit.Filter{Actor: "nobody"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, e := range got {
				seqs = append(seqs, e.Seq)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", seqs, tc.want)
			}
		})
	}
}

func TestHashCoversEveryField(t *testing.T) {
	base := audit.Entry{Seq: 3, Time: t0, Actor: "a", Role: "r", Institution: "i", IP: "ip", UserAgent: "ua",
		Action: "act", Object: "obj", Outcome: "success", Detail: "d", PrevHash: audit.GenesisHash}
	h := audit.ComputeHash(base)
	mods := map[string]func(*audit.Entry){
		"seq":         func(e *audit.Entry) { e.Seq++ },
		"time":        func(e *audit.Entry) { e.Time = e.Time.Add(time.Millisecond) },
		"actor":       func(e *audit.Entry) { e.Actor += "x" },
		"role":        func(e *audit.Entry) { e.Role += "x" },
		"institution": func(e *audit.Entry) { e.Institution += "x" },
		"ip":          func(e *audit.Entry) { e.IP += "x" },
		"user agent":  func(e *audit.Entry) { e.UserAgent += "x" },
		"action":      func(e *audit.Entry) { e.Action += "x" },
		"object":      func(e *audit.Entry) { e.Object += "x" },
		"outcome":     func(e *audit.Entry) { e.Outcome += "x" },
		"detail":      func(e *audit.Entry) { e.Detail += "x" },
		"prev hash":   func(e *audit.Entry) { e.PrevHash = "1" + e.PrevHash[1:] },
		"shift bytes": func(e *audit.Entry) { e.Actor, e.Role = "ar", "" }, // length prefixes
	}
	for name, mod := range mods {
		e := base
		mod(&e)
		if audit.ComputeHash(e) == h {
			t.Errorf("changing %s leaves the hash unchanged", name)
		}
	}
	e := base
	e.Hash = "ignored"
	if audit.ComputeHash(e) != h {
		t.Error("Hash field is part of its own hash")
	}
}
