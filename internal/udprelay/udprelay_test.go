package udprelay

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

// echo is a UDP target that sends every datagram back and remembers the sources it saw.
type echo struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	sources map[string]bool
}

func newEcho(t *testing.T) *echo {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	e := &echo{conn: c, sources: map[string]bool{}}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.sources[from.String()] = true
			e.mu.Unlock()
			c.WriteToUDP(buf[:n], from)
		}
	}()
	return e
}

func newRelay(t *testing.T, target *net.UDPAddr, link Link) *Relay {
	t.Helper()
	r, err := New(Config{Target: target, Link: link})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, r *Relay) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadBuffer(4 << 20)
	return c
}

// send sends n numbered datagrams of size bytes, pausing every 20 so that the kernel's
// socket buffers on loopback drop none or few (that loss would not be the relay's, and the
// tests count on the relay's counters).
func send(c *net.UDPConn, n, size int) {
	b := make([]byte, size)
	for i := range n {
		binary.BigEndian.PutUint32(b, uint32(i))
		c.Write(b)
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
}

// settle waits until the relay's counters stop moving.
func settle(r *Relay) {
	last := Counters{}
	for {
		time.Sleep(200 * time.Millisecond)
		now := r.Up()
		d := r.Down()
		now.Packets += d.Packets
		now.Lost += d.Lost
		now.QueueDropped += d.QueueDropped
		if now == last {
			return
		}
		last = now
	}
}

// TestLoss: the share of datagrams lost is near the configured (seeded) loss, Bernoulli or
// bursty. Bounds are about five standard deviations.
func TestLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  Direction
		n    int
	}{
		{"bernoulli 3%", Direction{Loss: 0.03}, 5000},
		{"bernoulli 10% jitter", Direction{Loss: 0.10, Delay: 5 * time.Millisecond, Jitter: 10 * time.Millisecond}, 3000},
		{"gilbert-elliott", Direction{Burst: &GilbertElliott{Enter: 0.01, Leave: 0.25, LossBad: 0.5}}, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEcho(t)
			r := newRelay(t, e.conn.LocalAddr().(*net.UDPAddr), Link{Up: tc.dir, Seed: 42})
			c := dial(t, r)
			go func() {
				buf := make([]byte, 2048)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
			send(c, tc.n, 200)
			settle(r)
			up := r.Up()
			got := float64(up.Lost) / float64(up.Lost+up.Packets)
			want := tc.dir.MeanLoss()
			t.Logf("%+v: %.2f%% lost, want %.2f%%", up, got*100, want*100)
			if up.Lost+up.Packets < int64(tc.n)/2 {
				t.Errorf("the relay saw %d of %d datagrams", up.Lost+up.Packets, tc.n)
			}
			// Gilbert-Elliott's losses come in bursts: its variance is several times Bernoulli's.
			tol := 0.4
			if tc.dir.Burst != nil {
				tol = 0.6
			}
			if got < want*(1-tol) || got > want*(1+tol) {
				t.Errorf("%.2f%% lost, want %.2f%% +- %.0f%%", got*100, want*100, tol*100)
			}
			if d := r.Down(); d.Lost != 0 || d.Packets < up.Packets*9/10 {
				t.Errorf("down: %+v, want what went up back, unshaped", d)
			}
		})
	}
}

// TestRateAndTailDrop: offered more than the rate, the relay delivers no more than the
// rate (plus the queue) and drops the rest at the tail of the queue.
func TestRateAndTailDrop(t *testing.T) {
	const rate, queue, size = 1_000_000, 10_000, 1000
	e := newEcho(t)
	r := newRelay(t, e.conn.LocalAddr().(*net.UDPAddr), Link{Up: Direction{RateBitsPerSecond: rate, Queue: queue}})
	c := dial(t, r)
	start := time.Now()
	send(c, 2000, size) // 16 Mbit in well under a second of sending
	settle(r)
	took := time.Since(start)
	up := r.Up()
	t.Logf("%+v in %v", up, took.Round(time.Millisecond))
	if limit := int64(queue) + int64(took.Seconds()*rate/8) + size; up.Bytes > limit {
		t.Errorf("%d bytes through in %v, more than the rate allows (%d)", up.Bytes, took, limit)
	}
	if up.QueueDropped == 0 || up.Packets == 0 || up.Packets+up.QueueDropped < 1800 {
		t.Errorf("want most of 2000 datagrams dropped at the queue and some through: %+v", up)
	}
}

// TestClientsAndReorder: each client has its own source towards the target and gets its own
// replies; with jitter, datagrams may overtake each other but all arrive.
func TestClientsAndReorder(t *testing.T) {
	e := newEcho(t)
	r := newRelay(t, e.conn.LocalAddr().(*net.UDPAddr), Link{Up: Direction{Jitter: 20 * time.Millisecond}, Seed: 3})
	a, b := dial(t, r), dial(t, r)
	const n = 300
	go send(a, n, 100)
	go send(b, n, 200)
	read := func(c *net.UDPConn, size int) (got, reordered int) {
		buf := make([]byte, 2048)
		last := -1
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for got < n {
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			if m != size {
				t.Errorf("a %d-byte datagram for the client sending %d", m, size)
			}
			seq := int(binary.BigEndian.Uint32(buf))
			if seq < last {
				reordered++
			}
			last = max(last, seq)
			got++
		}
		return
	}
	var wg sync.WaitGroup
	for _, x := range []struct {
		c    *net.UDPConn
		size int
	}{{a, 100}, {b, 200}} {
		wg.Go(func() {
			got, reordered := read(x.c, x.size)
			t.Logf("client %d: %d datagrams, %d reordered", x.size, got, reordered)
			if got != n {
				t.Errorf("client %d got %d of %d", x.size, got, n)
			}
			if reordered == 0 {
				t.Errorf("client %d: no reordering with 20 ms of jitter", x.size)
			}
		})
	}
	wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.sources) != 2 {
		t.Errorf("the target saw %d sources, want 2: %v", len(e.sources), e.sources)
	}
}

// TestCut: nothing crosses a cut; after Restore or CutFor's end everything does.
func TestCut(t *testing.T) {
	e := newEcho(t)
	r := newRelay(t, e.conn.LocalAddr().(*net.UDPAddr), Link{})
	c := dial(t, r)
	ping := func() bool {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 16))
		return err == nil
	}
	if !ping() {
		t.Fatal("no answer before the cut")
	}
	r.Cut()
	for range 3 {
		if ping() {
			t.Error("an answer through the cut")
		}
	}
	if d := r.Up().CutDropped; d != 3 {
		t.Errorf("%d datagrams dropped by the cut, want 3", d)
	}
	r.Restore()
	if !ping() {
		t.Error("no answer after Restore")
	}
	r.CutFor(time.Second)
	if ping() {
		t.Error("an answer through CutFor")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ping() {
		if time.Now().After(deadline) {
			t.Fatal("CutFor never restored")
		}
	}
}
