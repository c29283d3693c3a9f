package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/protocol"
)

// BenchmarkViewSync measures view sync on loopback with 50 busy rooms: in each room the
// driver (the assigned doctor) sends a window op every 50 ms (1,000 ops a second in all) and
// the two other participants apply them; the latency is from the driver's send to each other
// participant's receipt. Target: p50 <= 5 ms, p99 <= 20 ms.
func BenchmarkViewSync(b *testing.B) {
	const rooms = 50
	f := newAuthzFixture(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type room struct{ driver, a, c *live.Participant }
	var rs []room
	for i := range rooms {
		id := f.consultation(false, "live")
		if _, err := f.app.consult.AddParticipant(ctx, f.users["clinic"].p, id, f.users["township"].p.UserID); err != nil {
			b.Fatal(err)
		}
		join := func(u *fixtureUser) *live.Participant {
			p, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(u), Name: fmt.Sprint(u.name, i)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close() })
			return p
		}
		rs = append(rs, room{join(f.users["doctor"]), join(f.users["clinic"]), join(f.users["township"])})
	}
	var mu sync.Mutex
	sent := map[float64]time.Time{}
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, r := range rs {
		for _, p := range []*live.Participant{r.a, r.c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case a := <-p.Ops():
						now := time.Now()
						if a.Op.Window == nil {
							continue
						}
						mu.Lock()
						if t, ok := sent[a.Op.Window.Center]; ok {
							lat = append(lat, now.Sub(t))
						}
						mu.Unlock()
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	}
	n := 0.0
	b.ResetTimer()
	for range b.N {
		tick := time.Now()
		for _, r := range rs {
			n++
			mu.Lock()
			sent[n] = time.Now()
			mu.Unlock()
			if _, err := r.driver.SendOp(protocol.Op{Kind: protocol.OpWindow, Window: &protocol.Window{Center: n, Width: 400}}); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(50*time.Millisecond - time.Since(tick))
	}
	time.Sleep(200 * time.Millisecond)
	b.StopTimer()
	cancel()
	wg.Wait()
	if len(lat) == 0 {
		b.Fatal("no op arrived")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(pct(.50), "p50-ms")
	b.ReportMetric(pct(.99), "p99-ms")
	b.ReportMetric(float64(len(lat)), "samples")
	b.ReportMetric(float64(2*rooms*b.N-len(lat)), "missing")
}

// BenchmarkJoinToFirstFrame: two participants publish video and audio in a room; a third
// joins; the time from its Join call to the first complete video frame from each publisher.
// Target: <= 1 s on loopback. Joins are 1 s apart, as people join a consultation: keyframe
// requests to a publisher are throttled to one per 500 ms, which back-to-back joins would
// measure instead.
func BenchmarkJoinToFirstFrame(b *testing.B) {
	f := newAuthzFixture(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	id := f.consultation(false, "live")
	pub := func(u *fixtureUser) *live.Participant {
		p, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(u), Video: testVideo, Audio: testAudio})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		return p
	}
	doctor, clinic := pub(f.users["doctor"]), pub(f.users["clinic"])
	if err := doctor.WaitFrames(ctx, clinic.ID(), 5); err != nil {
		b.Fatal(err)
	}
	var firsts []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		p, err := live.Join(ctx, live.Config{URL: f.liveURL(id), Header: f.header(f.users["admin"])})
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []*live.Participant{doctor, clinic} {
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			if err := p.WaitFrames(wctx, q.ID(), 1); err != nil {
				b.Fatal(err)
			}
			wcancel()
		}
		firsts = append(firsts, time.Since(start))
		p.Close()
		b.StopTimer()
		time.Sleep(time.Second)
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(firsts)
	b.ReportMetric(float64(firsts[len(firsts)/2])/float64(time.Millisecond), "median-ms")
	b.ReportMetric(float64(firsts[len(firsts)-1])/float64(time.Millisecond), "max-ms")
}

// BenchmarkRooms50x3 is the load target: 50 rooms x 3 participants, every participant
// publishing the test video (VP8, ~300 kbit/s) and audio (Opus), on this machine. The server
// runs in this process; the 150 participants run in a child process (`sanping-station loadtest`), so
// the server's CPU can be told apart. Reported: packet loss over all forwarded tracks, the
// server's CPU per forwarded packet, time to first frame and view sync latency under load.
func BenchmarkRooms50x3(b *testing.B) {
	const rooms, per = 50, 3
	f := newAuthzFixtureWith(b, Config{MediaUDP: "127.0.0.1:0"})
	ctx := context.Background()
	tokens := func(name string, inst int64, role string) string {
		_, secret, err := f.app.auth.CreateToken(ctx, name, inst, role, "bench")
		if err != nil {
			b.Fatal(err)
		}
		return secret
	}
	station1, station2 := tokens("station-1", f.inst["A"], "clinic"), tokens("station-2", f.inst["A"], "clinic")
	reader := tokens("reading-room", f.inst["H"], "doctor")
	var lines strings.Builder
	for range rooms {
		id := f.consultation(false, "live")
		for _, tok := range []string{reader, station1, station2} {
			fmt.Fprintf(&lines, "%d %s\n", id, tok)
		}
	}
	dir := b.TempDir()
	tokenFile := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenFile, []byte(lines.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	client := goBuild(b, dir, "sanping-station", "../cmd/sanping-station")
	for range b.N {
		var before, after syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		fwd0 := f.app.live.SFU().Stats().PacketsForwarded
		cmd := exec.Command(client, "loadtest", "-server", f.srv.URL, "-token-file", tokenFile, "-rooms", fmt.Sprint(rooms),
			"-participants", fmt.Sprint(per), "-duration", "20s", "-video", testVideo, "-audio", testAudio, "-json")
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("loadtest: %v\n%s", err, out)
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		fwd := f.app.live.SFU().Stats().PacketsForwarded - fwd0
		var rep struct {
			Joined       int `json:"joined"`
			FirstFrameMs struct{ P50, P95 float64 }
			SyncMs       struct{ P50, P99 float64 }
			Loss         struct {
				Fraction, Worst float64
				Expected, Lost  uint64
			}
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			b.Fatalf("loadtest report: %v\n%s", err, out)
		}
		cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
		b.ReportMetric(float64(rep.Joined), "joined")
		b.ReportMetric(rep.Loss.Fraction*100, "loss-%")
		b.ReportMetric(rep.Loss.Worst*100, "worst-track-loss-%")
		b.ReportMetric(rep.FirstFrameMs.P50, "first-frame-p50-ms")
		b.ReportMetric(rep.SyncMs.P50, "sync-p50-ms")
		b.ReportMetric(rep.SyncMs.P99, "sync-p99-ms")
		b.ReportMetric(float64(fwd)/20, "fwd-pkt/s")
		if fwd > 0 {
			b.ReportMetric(float64(cpu.Microseconds())/float64(fwd), "server-cpu-us/pkt")
		}
	}
}
