package sfu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

// The forwarding benchmark's publisher: 500 kbit/s of 1200-byte packets.
const (
	benchPacketSize = 1200
	benchBitrate    = 500_000
	benchPPS        = benchBitrate / 8 / benchPacketSize // ≈ 52 packets/s
)

// benchLine is one signal between the benchmark and its subscriber process.
type benchLine struct {
	Peer   string          `json:"peer"`
	Signal protocol.Signal `json:"signal"`
}

const benchChildEnv = "SFU_BENCH_SUBSCRIBERS"

// BenchmarkForward forwards one 500 kbit/s video track to N subscribers over loopback. The
// subscribers run in a child process (this test binary again, see
// TestBenchmarkSubscribers), so the CPU time measured with getrusage is the SFU's (plus the
// one publisher's, which is 1/N of the packets). Metrics: cpu-ns/pkt per forwarded packet,
// pkt/s forwarded, and down-tracks/core: how many 500 kbit/s down-tracks one core would
// carry at that cost. ns/op is the measuring window and means nothing.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{25, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) { benchForward(b, n) })
	}
}

func benchForward(b *testing.B, n int) {
	s := newTestSFU(b, Config{})
	const room = 1

	child := exec.Command(os.Args[0], "-test.run=^TestBenchmarkSubscribers$")
	child.Env = append(os.Environ(), benchChildEnv+"="+strconv.Itoa(n))
	child.Stderr = os.Stderr
	toChild, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	fromChild, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = toChild.Close()
		_ = child.Wait()
	})
	var wmu sync.Mutex
	enc := json.NewEncoder(toChild)
	for i := range n {
		id := fmt.Sprintf("sub%d", i)
		_, err := s.Join(room, id, func(sig protocol.Signal) {
			wmu.Lock()
			defer wmu.Unlock()
			_ = enc.Encode(benchLine{Peer: id, Signal: sig})
		}, PeerOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	go func() {
		sc := bufio.NewScanner(fromChild)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l benchLine
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Peer == "" {
				continue // the test binary's own output
			}
			if p, ok := s.Peer(room, l.Peer); ok {
				_ = p.Signal(l.Signal)
			}
		}
	}()

	stop := make(chan struct{})
	defer close(stop)
	startBenchPublisher(b, s, room, stop)

	// Wait for every down-track to be running, then let it settle.
	want := float64(n * benchPPS)
	rate := func(d time.Duration) float64 {
		f0 := s.Stats().PacketsForwarded
		time.Sleep(d)
		return float64(s.Stats().PacketsForwarded-f0) / d.Seconds()
	}
	deadline := time.Now().Add(60 * time.Second)
	for rate(time.Second) < 0.95*want {
		if time.Now().After(deadline) {
			b.Fatalf("forwarding %.0f packets/s, want %.0f", rate(time.Second), want)
		}
	}

	window := 5 * time.Second
	if w, err := time.ParseDuration(os.Getenv("SFU_BENCH_WINDOW")); err == nil {
		window = w
	}
	if f := os.Getenv("SFU_BENCH_CPUPROFILE"); f != "" {
		// A profile of the measuring window only (go test -cpuprofile includes the setup).
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = out.Close() }()
	}
	b.ResetTimer()
	user0, sys0 := cpuTime()
	st0 := s.Stats()
	t0 := time.Now()
	time.Sleep(window)
	user1, sys1 := cpuTime()
	st1 := s.Stats()
	wall := time.Since(t0)
	b.StopTimer()

	fwd := st1.PacketsForwarded - st0.PacketsForwarded
	nsPerPkt := float64(user1-user0+sys1-sys0) / float64(fwd)
	b.ReportMetric(nsPerPkt, "cpu-ns/pkt")
	b.ReportMetric(float64(sys1-sys0)/float64(fwd), "sys-ns/pkt")
	b.ReportMetric(float64(fwd)/wall.Seconds(), "pkt/s")
	b.ReportMetric(1e9/nsPerPkt, "pkt/s/core")
	b.ReportMetric(1e9/nsPerPkt/benchPPS, "down-tracks/core")
	if st1.Dropped > st0.Dropped {
		b.Logf("%d packets dropped", st1.Dropped-st0.Dropped)
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// startBenchPublisher publishes one VP8 track of 1200-byte packets at 500 kbit/s: frames
// of five packets, a keyframe every 2 s or when asked.
func startBenchPublisher(b *testing.B, s *SFU, room int64, stop chan struct{}) {
	b.Helper()
	c := newTestClient(b, s, room, "pub", clientOptions{})
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "pub-cam", "pub")
	if err != nil {
		b.Fatal(err)
	}
	t, err := c.pub.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		b.Fatal(err)
	}
	var kf atomic.Bool
	go drainRTCP(t.Sender(), func(p rtcp.Packet) {
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			kf.Store(true)
		}
	})
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	c.signal(protocol.Signal{PC: protocol.PCPublish, SDP: &protocol.SessionDesc{Type: "offer", SDP: offer.SDP},
		Tracks: map[string]protocol.Track{"pub-cam": {ID: "pub-cam", Kind: "video", Label: protocol.LabelCamera}}})
	go func() {
		const perFrame = 5
		payload := make([]byte, benchPacketSize)
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload}
		tick := time.NewTicker(time.Second / benchPPS)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			start := i%perFrame == 0
			payload[0] = 0
			if start {
				payload[0] = 0x10 // S: start of a VP8 partition
				payload[1] = 1    // P: inter frame
				if kf.Swap(false) || i%(2*benchPPS) == 0 {
					payload[1] = 0
				}
			}
			pkt.SequenceNumber++
			pkt.Timestamp = uint32(i/perFrame) * 9000
			pkt.Marker = i%perFrame == perFrame-1
			if err := tr.WriteRTP(pkt); err != nil {
				return
			}
		}
	}()
}

// TestBenchmarkSubscribers is BenchmarkForward's child process: it runs the subscribers,
// signaling through stdin and stdout. It does nothing in a normal test run.
func TestBenchmarkSubscribers(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(benchChildEnv))
	if n == 0 {
		t.Skip("only run by BenchmarkForward")
	}
	var wmu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	out := func(peer string, sig protocol.Signal) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = enc.Encode(benchLine{Peer: peer, Signal: sig})
	}
	api := newClientAPI(t, clientOptions{}, nil)
	pcs := map[string]*webrtc.PeerConnection{}
	for i := range n {
		id := fmt.Sprintf("sub%d", i)
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		pc.OnICECandidate(func(c *webrtc.ICECandidate) {
			if c != nil {
				init := c.ToJSON()
				out(id, protocol.Signal{PC: protocol.PCSubscribe, Candidate: &protocol.ICECandidate{
					Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}})
			}
		})
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
			}
		})
		pcs[id] = pc
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l benchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue
		}
		pc := pcs[l.Peer]
		if pc == nil || l.Signal.PC != protocol.PCSubscribe {
			continue
		}
		switch sig := l.Signal; {
		case sig.SDP != nil:
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sig.SDP.SDP}); err != nil {
				continue
			}
			ans, err := pc.CreateAnswer(nil)
			if err != nil {
				continue
			}
			out(l.Peer, protocol.Signal{PC: protocol.PCSubscribe, SDP: &protocol.SessionDesc{Type: "answer", SDP: ans.SDP}})
			_ = pc.SetLocalDescription(ans)
		case sig.Candidate != nil:
			_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: sig.Candidate.Candidate, SDPMid: sig.Candidate.SDPMid, SDPMLineIndex: sig.Candidate.SDPMLineIndex})
		}
	}
	for _, pc := range pcs {
		_ = pc.Close()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// discardWriter stands in for pion's write path.
type discardWriter struct{ n int }

func (w *discardWriter) WriteRTP(_ *rtp.Header, p []byte) (int, error) { w.n++; return len(p), nil }
func (w *discardWriter) Write(b []byte) (int, error)                   { return len(b), nil }

// benchDown builds a bound down-track of one VP8 layer writing to w.
func benchDown(w webrtc.TrackLocalWriter) (*downTrack, *layer) {
	s := &SFU{epoch: time.Now()}
	ut := &upTrack{
		pub:   &Peer{s: s, id: "pub"},
		id:    "cam",
		kind:  webrtc.RTPCodecTypeVideo,
		codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}},
		ck:    codecVP8,
	}
	ut.layers = []*layer{{ut: ut}}
	d := newDownTrack(ut, &Peer{s: s, id: "sub"})
	d.bound, d.writer, d.ssrc, d.pt = true, w, 1234, 96
	return d, ut.layers[0]
}

func benchPacket() *rtp.Packet {
	p := &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: 1, Timestamp: 1000, SSRC: 5678},
		Payload: make([]byte, benchPacketSize),
	}
	_ = p.Header.SetExtension(4, []byte("1"))
	_ = p.Header.SetExtension(10, []byte("f"))
	p.Payload[0], p.Payload[1] = 0x10, 0 // VP8 keyframe start
	return p
}

// BenchmarkDownTrack is the per-subscriber cost of forwarding one packet: the layer check and
// header rewrite, with pion's write path replaced by a counter.
func BenchmarkDownTrack(b *testing.B) {
	w := &discardWriter{}
	d, l := benchDown(w)
	p := benchPacket()
	d.forward(l, p, true, 1)
	b.ReportAllocs()
	n := 1
	for b.Loop() {
		p.SequenceNumber++
		p.Timestamp += 3000
		d.forward(l, p, false, 2)
		n++
	}
	if w.n != n {
		b.Fatalf("%d packets written, want %d", w.n, n)
	}
}
