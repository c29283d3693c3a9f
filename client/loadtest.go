package client

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/protocol"
)

const loadtestUsage = `usage: sanping-station loadtest -server URL -token-file F [-rooms N] [-participants M] [-duration 30s]
                       [-video f.ivf|f.h264] [-audio f.ogg] [-json]

Joins N rooms x M participants at once, all publishing the files; in each room one
participant sends a view op (the pointer, moving) every -op-interval. After -duration it
reports how long joining took, the time to the first video frame of every remote track,
packet loss (from RTP sequence numbers) and view sync latency (op.applied arrival minus the
op's send time, at the other participants; all clocks are this machine's).

The token file has one line per participant slot: a consultation ID and the credential of
the participant that takes the slot, a station token (spt_...) or a session cookie
(sanping_session=...), separated by spaces. Blank lines and lines starting with # are
skipped. The first N consultations in the file are the rooms, and each needs at least M
lines; a credential may appear on several lines if the server lets it join several times.

    # consultation  credential
    12  spt_station_one
    12  sanping_session=doctor_session_secret
    13  spt_station_two
    13  sanping_session=another_doctor

`

// slot is a line of the token file.
type slot struct {
	consultation string
	credential   string
}

// readTokenFile reads the participant slots.
func readTokenFile(r io.Reader) ([]slot, error) {
	var slots []slot
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("token file line %d: want a consultation ID and a credential", n)
		}
		if id, err := strconv.ParseInt(f[0], 10, 64); err != nil || id <= 0 {
			return nil, fmt.Errorf("token file line %d: consultation ID %q is not a positive number", n, f[0])
		}
		slots = append(slots, slot{f[0], f[1]})
	}
	return slots, sc.Err()
}

// assignRooms picks the first rooms consultations of the file and participants slots of each.
func assignRooms(slots []slot, rooms, participants int) ([][]slot, error) {
	var order []string
	byRoom := map[string][]slot{}
	for _, s := range slots {
		if _, ok := byRoom[s.consultation]; !ok {
			order = append(order, s.consultation)
		}
		byRoom[s.consultation] = append(byRoom[s.consultation], s)
	}
	if len(order) < rooms {
		return nil, fmt.Errorf("token file has %d consultations, %d rooms wanted", len(order), rooms)
	}
	var out [][]slot
	for _, c := range order[:rooms] {
		if len(byRoom[c]) < participants {
			return nil, fmt.Errorf("token file has %d lines for consultation %s, %d participants wanted", len(byRoom[c]), c, participants)
		}
		out = append(out, byRoom[c][:participants])
	}
	return out, nil
}

func loadtest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the Sanping server, e.g. https://sanping.example.org:8080")
	tokenFile := fs.String("token-file", "", "participant slots, a line each: consultation ID and credential")
	rooms := fs.Int("rooms", 1, "rooms (consultations)")
	participants := fs.Int("participants", 2, "participants per room")
	duration := fs.Duration("duration", 30*time.Second, "how long to run once everyone has joined")
	opInterval := fs.Duration("op-interval", 100*time.Millisecond, "how often one participant per room sends a view op")
	video := fs.String("video", "", "video every participant publishes: .ivf (VP8) or .h264")
	audio := fs.String("audio", "", "audio every participant publishes: .ogg (Opus)")
	asJSON := fs.Bool("json", false, "report as JSON")
	insecure := fs.Bool("insecure", false, "accept any TLS certificate (test servers only)")
	verbose := fs.Bool("v", false, "log details, pion's included")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loadtestUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected %q", fs.Arg(0))
	case *server == "" || *tokenFile == "":
		return usagef("-server and -token-file are needed")
	case *rooms < 1 || *participants < 1 || *duration <= 0 || *opInterval <= 0:
		return usagef("-rooms, -participants, -duration and -op-interval must be positive")
	}
	f, err := os.Open(*tokenFile)
	if err != nil {
		return err
	}
	slots, err := readTokenFile(f)
	f.Close()
	if err != nil {
		return err
	}
	assigned, err := assignRooms(slots, *rooms, *participants)
	if err != nil {
		return err
	}
	cfg := loadConfig{
		server: *server, rooms: assigned, duration: *duration, opInterval: *opInterval,
		video: *video, audio: *audio, dialer: dialer(*insecure), log: newLogger(stderr, *verbose),
	}
	if _, err := liveURL(cfg.server, assigned[0][0].consultation); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "joining %d rooms x %d participants, then running for %v\n", *rooms, *participants, *duration)
	rep := runLoad(ctx, cfg)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.writeText(stdout)
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d participants failed to join", rep.Failed, rep.Failed+rep.Joined)
	}
	return nil
}

type loadConfig struct {
	server       string
	rooms        [][]slot
	duration     time.Duration
	opInterval   time.Duration
	video, audio string
	dialer       *websocket.Dialer
	log          *slog.Logger
}

const settle = 500 * time.Millisecond

// member is one participant slot of the run.
type member struct {
	room int
	p    *live.Participant
	err  error
}

// runLoad joins everyone at once, sends ops for the duration and gathers the figures.
func runLoad(ctx context.Context, cfg loadConfig) *report {
	var members []*member
	var wg sync.WaitGroup
	for r, room := range cfg.rooms {
		for i, s := range room {
			m := &member{room: r}
			members = append(members, m)
			wg.Go(func() {
				u, err := liveURL(cfg.server, s.consultation)
				if err != nil {
					m.err = err
					return
				}
				h, err := credentialHeader(s.credential)
				if err != nil {
					m.err = err
					return
				}
				jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				c := live.Config{
					URL: u, Header: h, Video: cfg.video, Audio: cfg.audio, Logger: cfg.log,
					Dialer: cfg.dialer, Name: fmt.Sprintf("sanping-station loadtest room %d participant %d", r+1, i+1),
				}
				m.p, m.err = live.Join(jctx, c)
			})
		}
	}
	wg.Wait()
	defer func() {
		var wg sync.WaitGroup
		for _, m := range members {
			if m.p != nil {
				wg.Go(func() { m.p.Close() })
			}
		}
		wg.Wait()
	}()

	// One op sender per room: its first participant that joined.
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration)
	defer cancel()
	var sent sync.WaitGroup
	opsSent := make([]int, len(cfg.rooms))
	for r := range cfg.rooms {
		i := slices.IndexFunc(members, func(m *member) bool { return m.room == r && m.p != nil })
		if i < 0 {
			continue
		}
		p := members[i].p
		sent.Go(func() { opsSent[r] = sendOps(runCtx, p, cfg.opInterval) })
	}
	sent.Wait()
	<-runCtx.Done()
	if ctx.Err() == nil {
		// Let the last ops and packets arrive before counting.
		time.Sleep(settle)
	}
	return gather(cfg, members, opsSent)
}

// sendOps moves the pointer round a circle until ctx ends; pointer ops need no driver's seat.
func sendOps(ctx context.Context, p *live.Participant, every time.Duration) int {
	t := time.NewTicker(every)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
		a := float64(n) / 20 * 2 * math.Pi
		op := protocol.Op{Kind: protocol.OpPointer, Pointer: &protocol.Pointer{X: 0.5 + 0.3*math.Cos(a), Y: 0.5 + 0.3*math.Sin(a), Visible: true}}
		if _, err := p.SendOp(op); err == nil {
			n++
		}
	}
}

// report is what a load test measured. Times are in milliseconds.
type report struct {
	Rooms               int            `json:"rooms"`
	ParticipantsPerRoom int            `json:"participantsPerRoom"`
	DurationSeconds     float64        `json:"durationSeconds"`
	Joined              int            `json:"joined"`
	Failed              int            `json:"failed"`
	Errors              map[string]int `json:"errors,omitempty"` // join errors and how often
	JoinMs              distribution   `json:"joinMs"`
	FirstFrameMs        distribution   `json:"firstFrameMs"`        // per remote video track
	TracksWithoutFrames int            `json:"tracksWithoutFrames"` // remote video tracks no frame arrived on
	Loss                loss           `json:"loss"`
	SyncMs              distribution   `json:"syncMs"`
	OpsSent             int            `json:"opsSent"`
	Reconnects          int            `json:"reconnects"`
	Tracks              []trackReport  `json:"tracks,omitempty"`
}

type distribution struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

type loss struct {
	Tracks   int     `json:"tracks"`
	Expected uint64  `json:"expected"`
	Received uint64  `json:"received"`
	Lost     uint64  `json:"lost"`
	Fraction float64 `json:"fraction"`
	// Worst is the largest fraction lost on one track.
	Worst float64 `json:"worst"`
}

// trackReport is one remote track at one receiver.
type trackReport struct {
	Room         int     `json:"room"` // 1-based
	Receiver     string  `json:"receiver"`
	Publisher    string  `json:"publisher"`
	Track        string  `json:"track"`
	Kind         string  `json:"kind"`
	Expected     uint64  `json:"expected"`
	Received     uint64  `json:"received"`
	Frames       uint64  `json:"frames,omitempty"`
	FirstFrameMs float64 `json:"firstFrameMs,omitempty"`
}

func gather(cfg loadConfig, members []*member, opsSent []int) *report {
	rep := &report{Rooms: len(cfg.rooms), ParticipantsPerRoom: len(cfg.rooms[0]), DurationSeconds: cfg.duration.Seconds()}
	var joins, firsts, syncs []time.Duration
	for _, m := range members {
		if m.err != nil {
			rep.Failed++
			if rep.Errors == nil {
				rep.Errors = map[string]int{}
			}
			rep.Errors[m.err.Error()]++
			continue
		}
		rep.Joined++
		s := m.p.Stats()
		joins = append(joins, s.JoinTime)
		syncs = append(syncs, s.OpLatency...)
		rep.Reconnects += s.Reconnects
		for _, t := range s.Tracks {
			if t.Participant == s.Participant {
				continue // a server echoing one's own tracks is not what is measured
			}
			tr := trackReport{Room: m.room + 1, Receiver: s.Participant, Publisher: t.Participant, Track: t.Track, Kind: t.Kind, Expected: t.Expected, Received: t.Packets, Frames: t.Frames}
			if t.Kind == "video" {
				if t.FirstFrame > 0 {
					firsts = append(firsts, t.FirstFrame)
					tr.FirstFrameMs = ms(t.FirstFrame)
				} else {
					rep.TracksWithoutFrames++
				}
			}
			rep.Loss.Tracks++
			rep.Loss.Expected += t.Expected
			rep.Loss.Received += min(t.Packets, t.Expected)
			rep.Loss.Lost += t.Lost()
			if t.Expected > 0 {
				rep.Loss.Worst = max(rep.Loss.Worst, float64(t.Lost())/float64(t.Expected))
			}
			rep.Tracks = append(rep.Tracks, tr)
		}
	}
	if rep.Loss.Expected > 0 {
		rep.Loss.Fraction = float64(rep.Loss.Lost) / float64(rep.Loss.Expected)
	}
	for _, n := range opsSent {
		rep.OpsSent += n
	}
	rep.JoinMs, rep.FirstFrameMs, rep.SyncMs = distributionOf(joins), distributionOf(firsts), distributionOf(syncs)
	slices.SortFunc(rep.Tracks, func(a, b trackReport) int {
		return cmp.Or(cmp.Compare(a.Room, b.Room), cmp.Compare(a.Receiver, b.Receiver), cmp.Compare(a.Publisher, b.Publisher), cmp.Compare(a.Track, b.Track))
	})
	return rep
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// distributionOf gives percentiles by the nearest-rank method.
func distributionOf(ds []time.Duration) distribution {
	if len(ds) == 0 {
		return distribution{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return ms(s[max(i, 0)])
	}
	return distribution{N: len(s), P50: rank(50), P95: rank(95), P99: rank(99), Max: ms(s[len(s)-1])}
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "%d rooms x %d participants, %v\n", r.Rooms, r.ParticipantsPerRoom, time.Duration(r.DurationSeconds*float64(time.Second)))
	fmt.Fprintf(w, "joined        %d of %d   p50 %s  p95 %s  max %s\n", r.Joined, r.Joined+r.Failed, fmtMs(r.JoinMs.P50), fmtMs(r.JoinMs.P95), fmtMs(r.JoinMs.Max))
	errs := slices.Sorted(func(yield func(string) bool) {
		for e := range r.Errors {
			if !yield(e) {
				return
			}
		}
	})
	for _, e := range errs {
		fmt.Fprintf(w, "  %d x %s\n", r.Errors[e], e)
	}
	if r.FirstFrameMs.N > 0 || r.TracksWithoutFrames > 0 {
		fmt.Fprintf(w, "first frame   %d tracks  p50 %s  p95 %s  max %s  (%d tracks without frames)\n",
			r.FirstFrameMs.N, fmtMs(r.FirstFrameMs.P50), fmtMs(r.FirstFrameMs.P95), fmtMs(r.FirstFrameMs.Max), r.TracksWithoutFrames)
	}
	if r.Loss.Tracks > 0 {
		fmt.Fprintf(w, "loss          %d tracks  %d of %d packets lost (%.2f%%), worst track %.2f%%\n",
			r.Loss.Tracks, r.Loss.Lost, r.Loss.Expected, 100*r.Loss.Fraction, 100*r.Loss.Worst)
	} else {
		fmt.Fprintf(w, "loss          no remote tracks\n")
	}
	fmt.Fprintf(w, "sync latency  %d ops received of %d sent  p50 %s  p99 %s  max %s\n",
		r.SyncMs.N, r.OpsSent, fmtMs(r.SyncMs.P50), fmtMs(r.SyncMs.P99), fmtMs(r.SyncMs.Max))
	if r.Reconnects > 0 {
		fmt.Fprintf(w, "reconnects    %d\n", r.Reconnects)
	}
}

func fmtMs(v float64) string {
	return time.Duration(v * float64(time.Millisecond)).Round(100 * time.Microsecond).String()
}
