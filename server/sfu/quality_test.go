package sfu

import (
	"io"
	"log/slog"
	"math/rand"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/transport/v5/vnet"

	"github.com/sanping/sanping/internal/pionlog"
	"github.com/sanping/sanping/protocol"
)

// TestLevelHysteresis: one weak sample makes a good link weak; only three clean samples in a
// row make it good again, and samples between the thresholds keep the level; silence makes it
// lost, and only media coming back makes it weak.
func TestLevelHysteresis(t *testing.T) {
	const (
		good, weak, lost = protocol.QualityGood, protocol.QualityWeak, protocol.QualityLost
	)
	type media struct{ silent, flowing bool }
	silent, flowing, idle := media{silent: true}, media{flowing: true}, media{}
	clean := protocol.Quality{Loss: 0.005, RTTms: 80, JitterMs: 10}
	between := protocol.Quality{Loss: 0.025, RTTms: 80, JitterMs: 10} // over 2%, not over 3%
	for _, c := range []struct {
		name  string
		steps []any // protocol.Quality: a sample; media: a check of what arrives
		want  []string
	}{
		{"first sample clean", []any{clean}, []string{good}},
		{"first sample between", []any{between}, []string{good}},
		{"lossy", []any{clean, protocol.Quality{Loss: 0.031}}, []string{good, weak}},
		{"slow", []any{clean, protocol.Quality{RTTms: 401}}, []string{good, weak}},
		{"jittery", []any{clean, protocol.Quality{JitterMs: 51}}, []string{good, weak}},
		{"at the thresholds is not weak", []any{clean, protocol.Quality{Loss: 0.03, RTTms: 400, JitterMs: 50}}, []string{good, good}},
		{"good again after three clean samples", []any{protocol.Quality{Loss: 0.05}, clean, clean, clean},
			[]string{weak, weak, weak, good}},
		{"a sample between starts the count again", []any{protocol.Quality{Loss: 0.05}, clean, clean, between, clean, clean, clean},
			[]string{weak, weak, weak, weak, weak, weak, good}},
		{"a link near 3% does not flap", []any{clean, protocol.Quality{Loss: 0.032}, protocol.Quality{Loss: 0.028}, protocol.Quality{Loss: 0.031}, protocol.Quality{Loss: 0.029}},
			[]string{good, weak, weak, weak, weak}},
		{"silence before any sample", []any{silent}, []string{lost}},
		{"no silence keeps it unknown", []any{flowing}, []string{""}},
		{"silence", []any{clean, flowing, silent}, []string{good, good, lost}},
		{"samples do not end lost", []any{clean, silent, clean}, []string{good, lost, lost}},
		{"nothing expected any more does not end lost", []any{clean, silent, idle}, []string{good, lost, lost}},
		{"media back: weak, then good", []any{clean, silent, flowing, clean, clean, clean}, []string{good, lost, weak, weak, weak, good}},
	} {
		var l levelState
		var got []string
		for _, s := range c.steps {
			switch s := s.(type) {
			case protocol.Quality:
				l.sample(s)
			case media:
				l.media(s.silent, s.flowing)
			}
			got = append(got, l.level)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: levels %q, want %q", c.name, got, c.want)
		}
	}
}

// TestQualityLevel runs a clinic publishing to a doctor over a virtual network: the clinic's
// level is good, weak under 8% uplink loss, good again some clean seconds after the loss
// ends, lost within about lostAfter of its link being cut, and weak then good when it comes
// back. The doctor, whose link stays clean and who publishes nothing, stays good throughout:
// while the clinic is cut, nothing is sent to the doctor, and nothing is expected of it.
// Then the doctor's own link is cut: it is lost, and the clinic is not.
//
// On synctest's clock, with a sample every second.
func TestQualityLevel(t *testing.T) { synctest.Test(t, testQualityLevel) }

func testQualityLevel(t *testing.T) {
	lf := pionlog.Factory{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", MinDelay: 20 * time.Millisecond, LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	serverIP, clinicIP, doctorIP := net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2"), net.ParseIP("10.0.0.3")
	imp := &impairment{rng: rand.New(rand.NewSource(1)), loss: map[string]*lossBlock{}, cutIP: clinicIP}
	wan.AddChunkFilter(imp.filter)
	toDoctor := &impairment{loss: map[string]*lossBlock{}, cutIP: doctorIP}
	wan.AddChunkFilter(toDoctor.filter)
	nets := map[string]*vnet.Net{}
	for _, ip := range []net.IP{serverIP, clinicIP, doctorIP} {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip.String()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := wan.AddNet(n); err != nil {
			t.Fatal(err)
		}
		nets[ip.String()] = n
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })

	var events eventLog
	s := newTestSFU(t, Config{Net: nets[serverIP.String()], UDPAddr: serverIP.String() + ":8443", OnEvent: events.add, QualityInterval: time.Second})
	const room = 21
	doctor := newTestClient(t, s, room, "doctor", clientOptions{net: nets[doctorIP.String()]})
	clinic := newTestClient(t, s, room, "clinic", clientOptions{net: nets[clinicIP.String()], publish: true})
	levels := func(peer string) []string {
		events.mu.Lock()
		defer events.mu.Unlock()
		var out []string
		for _, e := range events.ev {
			if e.Kind == EventLevel && e.Peer == peer {
				out = append(out, e.Detail)
			}
		}
		return out
	}
	last := func(peer string) string {
		ls := levels(peer)
		if len(ls) == 0 {
			return ""
		}
		return ls[len(ls)-1]
	}
	waitLevel := func(peer, want string, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		waitFor(t, within, peer+" to be "+want+" (levels so far: "+strings.Join(levels(peer), " ")+")", func() bool { return last(peer) == want })
		return time.Since(start)
	}
	waitFor(t, 15*time.Second, "the doctor to receive the clinic", func() bool { return receivesFrom(doctor, clinic, 30) })
	waitLevel("clinic", protocol.QualityGood, 5*time.Second)
	waitLevel("doctor", protocol.QualityGood, 5*time.Second)

	imp.setLoss(clinicIP, 8)
	waitLevel("clinic", protocol.QualityWeak, 5*time.Second)
	time.Sleep(5 * time.Second) // steady loss: it stays weak, no flapping
	if ls := levels("clinic"); !slices.Equal(ls, []string{"good", "weak"}) {
		t.Errorf("clinic's levels under steady loss: %q", ls)
	}
	imp.setLoss(clinicIP, 0)
	// Three clean samples, the first of which may have begun just before the loss ended.
	if d := waitLevel("clinic", protocol.QualityGood, 10*time.Second); d < 2*time.Second {
		t.Errorf("good again %v after the loss ended: sooner than three clean samples", d)
	}

	imp.cut.Store(true)
	d := waitLevel("clinic", protocol.QualityLost, 10*time.Second)
	t.Logf("lost %v after the cut", d.Round(100*time.Millisecond))
	if d < lostAfter || d > lostAfter+time.Second {
		t.Errorf("lost %v after the cut, want lostAfter (%v) to a second more", d, lostAfter)
	}
	time.Sleep(time.Second)
	imp.cut.Store(false)
	waitLevel("clinic", protocol.QualityWeak, 5*time.Second)
	waitLevel("clinic", protocol.QualityGood, 10*time.Second)
	if ls := levels("doctor"); !slices.Equal(ls, []string{"good"}) {
		t.Errorf("doctor's levels %q, want good throughout", ls)
	}

	// The doctor only receives: cut off, it sends no more receiver reports and feedback on
	// what the SFU keeps sending it. The clinic's link is not the doctor's.
	toDoctor.cut.Store(true)
	if d := waitLevel("doctor", protocol.QualityLost, 10*time.Second); d < lostAfter || d > lostAfter+time.Second {
		t.Errorf("the doctor lost %v after its cut", d)
	}
	time.Sleep(time.Second)
	toDoctor.cut.Store(false)
	waitLevel("doctor", protocol.QualityWeak, 5*time.Second)
	waitLevel("doctor", protocol.QualityGood, 10*time.Second)
	if ls := levels("clinic"); !slices.Equal(ls, []string{"good", "weak", "good", "lost", "weak", "good"}) {
		t.Errorf("clinic's levels %q", ls)
	}
}

// TestClientQualityReport: the participant's own RTT counts when it is higher than what the
// SFU measures; its loss, which carries the publishers' too, does not.
func TestClientQualityReport(t *testing.T) { synctest.Test(t, testClientQualityReport) }

func testClientQualityReport(t *testing.T) {
	var events eventLog
	lan := newVirtualLAN(t)
	s := lan.sfu(Config{OnEvent: events.add, QualityInterval: time.Second})
	const room = 22
	doctor := lan.client(s, room, "doctor", clientOptions{})
	clinic := lan.client(s, room, "clinic", clientOptions{publish: true})
	waitFor(t, 15*time.Second, "the doctor to receive the clinic", func() bool { return receivesFrom(doctor, clinic, 30) })
	level := func() string {
		events.mu.Lock()
		defer events.mu.Unlock()
		l := ""
		for _, e := range events.ev {
			if e.Kind == EventLevel && e.Peer == "doctor" {
				l = e.Detail
			}
		}
		return l
	}
	waitFor(t, 5*time.Second, "the doctor to be good", func() bool { return level() == protocol.QualityGood })
	p, _ := s.Peer(room, "doctor")
	p.ReportQuality(protocol.Quality{Loss: 0.2, JitterMs: 200})
	time.Sleep(3 * time.Second)
	if l := level(); l != protocol.QualityGood {
		t.Fatalf("the doctor's reported loss made it %s", l)
	}
	p.ReportQuality(protocol.Quality{RTTms: 650})
	waitFor(t, 3*time.Second, "the doctor's own report to make it weak", func() bool { return level() == protocol.QualityWeak })
}
