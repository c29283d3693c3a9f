package sfu

import (
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/transport/v5/vnet"

	"github.com/sanping/sanping/internal/pionlog"
)

// lossyLink drops exactly pct of every hundred chunks in each direction of one host's link
// (upstream and downstream counted apart), and logs the RTP packets sent to the host: which
// were first transmissions, which of those the link dropped, and how many repeats (same SSRC
// and sequence number) or packets on other SSRCs (RTX) followed.
type lossyLink struct {
	mu   sync.Mutex
	rng  *rand.Rand
	host string // the host's address on its side of the link
	pct  int
	up   lossBlock
	down lossBlock
	sent map[uint32]*rtpLog // by SSRC, downstream only
}

type rtpLog struct {
	first   map[uint16]time.Time // sequence number: first transmission
	lost    map[uint16]time.Time // first transmissions the link dropped
	repeats int                  // transmissions of a sequence number seen before
}

func newLossyLink(host string, seed int64) *lossyLink {
	return &lossyLink{host: host, rng: rand.New(rand.NewSource(seed)), sent: map[uint32]*rtpLog{}}
}

func (l *lossyLink) setLoss(pct int) {
	l.mu.Lock()
	l.pct = pct
	l.mu.Unlock()
}

func (l *lossyLink) filter(c vnet.Chunk) bool {
	dst, _ := c.DestinationAddr().(*net.UDPAddr)
	down := dst != nil && dst.IP.String() == l.host
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &l.up
	if down {
		b = &l.down
	}
	drop := false
	if l.pct > 0 {
		if b.i%len(b.drop) == 0 {
			for j := range b.drop {
				b.drop[j] = j < l.pct
			}
			l.rng.Shuffle(len(b.drop), func(x, y int) { b.drop[x], b.drop[y] = b.drop[y], b.drop[x] })
		}
		drop = b.drop[b.i%len(b.drop)]
		b.i++
	}
	if p := c.UserData(); down && isRTP(p) {
		// SRTP leaves the RTP header in the clear (RFC 3711 3.1).
		ssrc, seq := binary.BigEndian.Uint32(p[8:12]), binary.BigEndian.Uint16(p[2:4])
		lg := l.sent[ssrc]
		if lg == nil {
			lg = &rtpLog{first: map[uint16]time.Time{}, lost: map[uint16]time.Time{}}
			l.sent[ssrc] = lg
		}
		if _, seen := lg.first[seq]; seen {
			lg.repeats++
		} else {
			now := time.Now()
			lg.first[seq] = now
			if drop {
				lg.lost[seq] = now
			}
		}
	}
	return !drop
}

// isRTP tells RTP from RTCP, STUN and DTLS on a muxed port (RFC 5761 4, RFC 7983 7).
func isRTP(p []byte) bool {
	return len(p) >= 12 && p[0]>>6 == 2 && (p[1] < 192 || p[1] > 223)
}

// lostOriginals returns the sequence numbers of ssrc whose first transmission the link
// dropped between from and to, how many it sent then, and how many repeats of ssrc the link
// carried (retransmissions without RTX).
func (l *lossyLink) lostOriginals(ssrc uint32, from, to time.Time) (lost []uint16, sent, resent int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lg := l.sent[ssrc]
	if lg == nil {
		return nil, 0, 0
	}
	for seq, at := range lg.lost {
		if !at.Before(from) && at.Before(to) {
			lost = append(lost, seq)
		}
	}
	for _, at := range lg.first {
		if !at.Before(from) && at.Before(to) {
			sent++
		}
	}
	return lost, sent, lg.repeats
}

// videoQuality is what a viewer got in a window of time.
type videoQuality struct {
	frames    int           // frames a decoder could show (complete, their reference chain intact)
	complete  int           // frames with every packet
	longest   time.Duration // longest time without a frame to show
	keyframes int
}

// judgeVideo replays received VP8 packets through an ideal jitter buffer: a frame is shown
// when its last packet is in, if every packet of it arrived and it is a keyframe or follows
// a shown frame with no frame missing in between (every frame of the test clip refers to the
// one before).
func judgeVideo(rx []rxPacket, from, to time.Time) videoQuality {
	if len(rx) == 0 {
		return videoQuality{longest: to.Sub(from)}
	}
	// Unwrap sequence numbers; keep each one's first arrival.
	got := map[int64]rxPacket{}
	ext, last := int64(rx[0].seq), rx[0].seq
	for _, p := range rx {
		ext += int64(int16(p.seq - last))
		last = p.seq
		if _, ok := got[ext]; !ok {
			got[ext] = p
		}
	}
	seqs := make([]int64, 0, len(got))
	for s := range got {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })

	var q videoQuality
	shown := []time.Time{from}
	prevEnd, prevShown := int64(-1), false
	var prevAt time.Time
	for _, s := range seqs {
		p := got[s]
		if !p.frameStart {
			continue
		}
		end, done, ok := s, p.at, true
		for {
			e, have := got[end]
			if !have || e.ts != p.ts {
				ok = false
				break
			}
			done = later(done, e.at)
			if e.marker {
				break
			}
			end++
		}
		if !ok {
			prevShown = false
			continue
		}
		if done.After(from) && done.Before(to) {
			q.complete++
		}
		show := p.keyframe || (prevShown && prevEnd+1 == s)
		prevEnd, prevShown = end, show
		if !show {
			continue
		}
		at := later(done, prevAt) // decoded in order
		prevAt = at
		if at.After(from) && at.Before(to) {
			q.frames++
			shown = append(shown, at)
			if p.keyframe {
				q.keyframes++
			}
		}
	}
	shown = append(shown, to)
	for i := 1; i < len(shown); i++ {
		q.longest = max(q.longest, shown[i].Sub(shown[i-1]))
	}
	return q
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestRepairAtRuralRTT: a viewer behind a 4G link with 10% loss each way and 150 ms each way
// (RTT 300 ms) watches a camera sent without loss. Retransmissions must repair nearly every
// lost packet, so the viewer keeps the clip's 15 fps rather than freezing until keyframes.
// The viewer NACKs as a browser does: each missing packet every 100 ms, giving up after 10
// requests (Chrome's kMaxNackRetries).
//
// It runs on synctest's clock: the repair is a matter of RTTs and NACK intervals, and a
// busy machine must not show up as freezes. SFU_REAL_CLOCK=1 runs it on the machine's clock
// instead, for the figures in bench/README.md (without -race, on an idle machine).
func TestRepairAtRuralRTT(t *testing.T) {
	if os.Getenv("SFU_REAL_CLOCK") != "" {
		testRepairAtRuralRTT(t)
		return
	}
	synctest.Test(t, testRepairAtRuralRTT)
}

func testRepairAtRuralRTT(t *testing.T) {
	lf := pionlog.Factory{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	// The viewer sits behind its own router (a 1:1 NAT, so it keeps one public address),
	// which delays both directions by 150 ms and drops 10% of chunks each way.
	const viewerIP = "192.168.0.2"
	rural, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR: "192.168.0.0/24", StaticIPs: []string{"10.0.0.3/" + viewerIP},
		NATType: &vnet.NATType{Mode: vnet.NATModeNAT1To1}, MinDelay: 150 * time.Millisecond, LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	link := newLossyLink(viewerIP, 1)
	rural.AddChunkFilter(link.filter)
	serverNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cameraNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.0.0.2"}})
	viewerNet, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{viewerIP}})
	for _, n := range []vnet.NIC{serverNet, cameraNet} {
		if err := wan.AddNet(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := wan.AddRouter(rural); err != nil {
		t.Fatal(err)
	}
	if err := rural.AddNet(viewerNet); err != nil {
		t.Fatal(err)
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })

	s := newTestSFU(t, Config{Net: serverNet, UDPAddr: "10.0.0.1:8443"})
	const room = 21
	viewer := newTestClient(t, s, room, "viewer", clientOptions{
		net:   viewerNet,
		noRTX: true,
		nack:  []nack.GeneratorOption{nack.GeneratorInterval(300 * time.Millisecond), nack.GeneratorMaxNacksPerPacket(10)},
	})
	camera := newTestClient(t, s, room, "camera", clientOptions{net: cameraNet, publish: true, fScale: 2})
	waitFor(t, 15*time.Second, "the viewer to receive the camera", func() bool {
		return receivesFrom(viewer, camera, 50)
	})
	d := downFor(t, s, room, "viewer", camera.videoID())
	ssrc := d.ssrcOut.Load()

	link.setLoss(10)
	st0 := s.Stats()
	from := time.Now()
	time.Sleep(15 * time.Second)
	to := time.Now()
	st1 := s.Stats()
	time.Sleep(1500 * time.Millisecond) // the last packets' repairs
	link.setLoss(0)

	rt, _ := viewer.track(camera.videoID())
	received := map[uint16]bool{}
	for _, p := range rt.rx {
		received[p.seq] = true
	}
	lost, sent, resent := link.lostOriginals(ssrc, from, to)
	missing := 0
	for _, seq := range lost {
		if !received[seq] {
			missing++
		}
	}
	// How long each lost packet took to arrive after all: one repair round is about an RTT.
	arrived := map[uint16]time.Time{}
	for _, p := range rt.rx {
		if _, ok := arrived[p.seq]; !ok {
			arrived[p.seq] = p.at
		}
	}
	var delays []time.Duration
	link.mu.Lock()
	for _, seq := range lost {
		if at, ok := arrived[seq]; ok {
			delays = append(delays, at.Sub(link.sent[ssrc].lost[seq]))
		}
	}
	link.mu.Unlock()
	slices.Sort(delays)
	if n := len(delays); n > 0 {
		t.Logf("repair delays: median %v, 90th %v, max %v", delays[n/2].Round(time.Millisecond),
			delays[n*9/10].Round(time.Millisecond), delays[n-1].Round(time.Millisecond))
	}
	q := judgeVideo(rt.rx, from, to)
	secs := to.Sub(from).Seconds()
	repaired := 1.0
	if len(lost) > 0 {
		repaired = 1 - float64(missing)/float64(len(lost))
	}
	t.Logf("%d video packets sent, %d lost on the link (%.1f%%), %d never arrived: %.1f%% repaired",
		sent, len(lost), 100*float64(len(lost))/float64(max(sent, 1)), missing, 100*repaired)
	t.Logf("%.1f fps shown (%.1f complete), longest freeze %v, %d keyframes",
		float64(q.frames)/secs, float64(q.complete)/secs, q.longest.Round(time.Millisecond), q.keyframes)
	t.Logf("retransmissions: %d counted by the SFU, %d repeats on the link (%.2f per lost packet); NACKs received %d",
		st1.Retransmits-st0.Retransmits, resent, float64(st1.Retransmits-st0.Retransmits)/float64(max(len(lost), 1)),
		st1.NACKsReceived-st0.NACKsReceived)
	vp, _ := s.Peer(room, "viewer")
	t.Logf("RTT %v, GCC target %d bit/s", time.Duration(d.rtt.Load()).Round(time.Millisecond), vp.bwe.GetTargetBitrate())

	if len(lost) < sent/20 {
		t.Fatalf("the link lost only %d of %d packets", len(lost), sent)
	}
	if repaired < 0.95 {
		t.Errorf("%.1f%% of lost video packets repaired, want >= 95%%", 100*repaired)
	}
	if fps := float64(q.frames) / secs; fps < 12 {
		t.Errorf("%.1f fps shown, want >= 12", fps)
	}
	// The target is no second without a frame. A lost packet is resent on the NACK or
	// on the TWCC feedback that reports it, whichever comes first, and on a lossy link in two
	// copies, so it rarely needs a third round (at a 300 ms RTT, about a second): on the real
	// clock 0.60-0.90 s in most runs, 1.03-1.10 s in about one run in eight (bench/README.md),
	// 0.64 s on synctest's. The test fails a freeze of 1.5 s, which a regression of the
	// repair would cause, and logs whether the target itself was met.
	if q.longest >= time.Second {
		t.Logf("target missed in this run: %v without a frame (target < 1 s)", q.longest.Round(time.Millisecond))
	}
	if q.longest >= 1500*time.Millisecond {
		t.Errorf("%v without a frame", q.longest.Round(time.Millisecond))
	}
}
