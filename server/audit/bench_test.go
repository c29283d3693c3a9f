package audit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/store"
)

// The million-entry trail is built once per `go test -bench` process, only when a benchmark
// asks for it, so plain `go test` never pays for it.
var million struct {
	once sync.Once
	dir  string
	log  *audit.Log
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if million.dir != "" {
		os.RemoveAll(million.dir)
	}
	os.Exit(code)
}

const (
	benchEntries      = 1_000_000
	benchDays         = 90
	benchActors       = 300 // doctors, clinic staff, admins
	benchInstitutions = 40
	benchPatients     = 20_000
)

var benchStart = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)

func benchActor(i int) string { return fmt.Sprintf("user%03d", i) }

// benchActions is the mix: reads dominate, as in a county's day of consultations.
var benchActions = []struct {
	action  string
	weight  int
	patient bool
}{
	{"study.read", 35, true}, {"image.read", 25, true}, {"patient.search", 5, false},
	{"login", 5, false}, {"logout", 3, false}, {"login.failed", 1, false},
	{"consultation.request", 2, true}, {"consultation.accept", 2, true}, {"consultation.read", 4, true},
	{"consultation.start", 1, true}, {"consultation.finish", 1, true}, {"report.draft", 2, true}, {"report.sign", 1, true},
	{"live.join", 4, true}, {"live.leave", 4, true}, {"live.chat", 3, true}, {"live.control", 2, true},
}

// millionLog writes benchEntries entries straight into the table in transactions of 50,000,
// hashing each with ComputeHash and chaining them as Append would, then the head: a trail
// that Verify accepts, built in a fraction of the time one Append per entry would take.
func millionLog(b *testing.B) *audit.Log {
	million.once.Do(func() {
		ctx := context.Background()
		// Not b.TempDir: the trail outlives the sub-benchmark that builds it.
		dir, err := os.MkdirTemp("", "sanping-audit-bench-")
		if err != nil {
			million.err = err
			return
		}
		million.dir = dir
		db, err := store.OpenDB(filepath.Join(dir, "index.db"))
		if err != nil {
			million.err = err
			return
		}
		l, err := audit.Open(ctx, db, nil)
		if err != nil {
			million.err = err
			return
		}
		pick := make([]int, 0, 100)
		for i, a := range benchActions {
			for range a.weight {
				pick = append(pick, i)
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		step := int64(benchDays*24*time.Hour/time.Millisecond) / benchEntries
		prev := audit.GenesisHash
		start := time.Now()
		for lo := 1; lo <= benchEntries; lo += 50_000 {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				million.err = err
				return
			}
			ins, err := tx.PrepareContext(ctx, `INSERT INTO audit_log (seq, time_ms, actor, role, institution, ip, user_agent,
				action, object, outcome, detail, prev_hash, hash, patient_id, patient_name)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				million.err = err
				return
			}
			for seq := lo; seq < lo+50_000 && seq <= benchEntries; seq++ {
				actor := rng.IntN(benchActors)
				a := benchActions[pick[rng.IntN(len(pick))]]
				e := audit.Entry{
					Seq:  int64(seq),
					Time: time.UnixMilli(benchStart.UnixMilli() + int64(seq)*step).UTC(),
					// Actors keep to their institution, as accounts do.
					Actor: benchActor(actor), Role: "doctor", Institution: fmt.Sprintf("inst%02d", actor%benchInstitutions),
					IP: fmt.Sprintf("10.%d.%d.%d", actor%benchInstitutions, actor, seq%250), UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
					Action: a.action, Object: "user:" + benchActor(actor), Outcome: "success", PrevHash: prev,
				}
				if a.patient {
					p := rng.IntN(benchPatients)
					e.PatientID, e.PatientName = fmt.Sprintf("GX%07d", p), fmt.Sprintf("患者%05d", p)
					e.Object = fmt.Sprintf("study:1.2.156.112605.%d", p)
				}
				e.Hash = audit.ComputeHash(e)
				prev = e.Hash
				if _, err := ins.ExecContext(ctx, e.Seq, e.Time.UnixMilli(), e.Actor, e.Role, e.Institution, e.IP, e.UserAgent,
					e.Action, e.Object, e.Outcome, e.Detail, e.PrevHash, e.Hash, e.PatientID, e.PatientName); err != nil {
					million.err = err
					return
				}
			}
			ins.Close()
			if err := tx.Commit(); err != nil {
				million.err = err
				return
			}
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)`, benchEntries, prev); err != nil {
			million.err = err
			return
		}
		if err := l.VerifyTail(ctx, 1000); err != nil {
			million.err = err
			return
		}
		b.Logf("built %d entries in %v", benchEntries, time.Since(start).Round(time.Second))
		million.log = l
	})
	if million.err != nil {
		b.Fatal(million.err)
	}
	return million.log
}

// BenchmarkSearchMillion measures the admin console's searches on a 90-day trail of a million
// entries, one page (100) each, with a different actor, patient or period every iteration.
// Run: go test -run '^$' -bench SearchMillion -benchtime 200x ./server/audit/
func BenchmarkSearchMillion(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name  string
		query func(rng *rand.Rand) audit.Query
	}{
		{"actor+day", func(rng *rand.Rand) audit.Query {
			from := benchStart.AddDate(0, 0, rng.IntN(benchDays))
			return audit.Query{Actor: benchActor(rng.IntN(benchActors)), From: from, To: from.AddDate(0, 0, 1)}
		}},
		{"patient", func(rng *rand.Rand) audit.Query {
			p := rng.IntN(benchPatients)
			if rng.IntN(2) == 0 {
				return audit.Query{Patient: fmt.Sprintf("GX%07d", p)}
			}
			return audit.Query{Patient: fmt.Sprintf("患者%05d", p)}
		}},
		{"action-prefix+week", func(rng *rand.Rand) audit.Query {
			from := benchStart.AddDate(0, 0, rng.IntN(benchDays-7))
			return audit.Query{Action: "live.", From: from, To: from.AddDate(0, 0, 7)}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := millionLog(b)
			rng := rand.New(rand.NewPCG(3, 4))
			durations := make([]time.Duration, 0, b.N)
			found := 0
			b.ResetTimer()
			for range b.N {
				q := bc.query(rng)
				t := time.Now()
				es, _, err := l.Search(ctx, q)
				durations = append(durations, time.Since(t))
				if err != nil {
					b.Fatal(err)
				}
				found += len(es)
			}
			b.StopTimer()
			slices.Sort(durations)
			ms := func(p float64) float64 {
				return float64(durations[int(p*float64(len(durations)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.95), "p95-ms")
			b.ReportMetric(float64(found)/float64(b.N), "entries/op")
		})
	}
}
