package tcpproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Ranges in these tests are generous: the machine is shared (two cores, the race detector),
// so only lower bounds on time are tight; upper bounds allow for a slow scheduler.

// target is a server that, per connection, either echoes, or sends send bytes (then
// half-closes) and swallows what it reads to the end (counted in received).
func target(t *testing.T, echo bool, send int) string {
	addr, _ := counting(t, echo, send)
	return addr
}

func counting(t *testing.T, echo bool, send int) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var received atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if echo {
					io.Copy(c, c)
					return
				}
				if send > 0 {
					c.Write(make([]byte, send))
					c.(*net.TCPConn).CloseWrite()
				}
				n, _ := io.Copy(io.Discard, c)
				received.Add(n)
			}()
		}
	}()
	return ln.Addr().String(), &received
}

func newProxy(t *testing.T, target string, link Link) *Proxy {
	t.Helper()
	p, err := New(target, link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestRate: a shaped direction moves bytes at its rate, and the rate is the link's, shared
// by connections at the same time.
func TestRate(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name     string
		link     Link
		up       bool // client sends (else the target does)
		conns    int
		min, max time.Duration // for 1 MB in all
	}{
		// 1 MiB at 2 Mbit/s is 4.2 s.
		{"up 2 Mbit/s", Link{Up: Direction{RateBitsPerSecond: 2e6}}, true, 1, 3500 * time.Millisecond, 6 * time.Second},
		// 4.2 s too: two connections share the link, each gets half.
		{"up 2 Mbit/s shared by 2", Link{Up: Direction{RateBitsPerSecond: 2e6}}, true, 2, 3500 * time.Millisecond, 6 * time.Second},
		// 2.1 s, plus the delay.
		{"down 4 Mbit/s 50 ms", Link{Down: Direction{RateBitsPerSecond: 4e6, Delay: 50 * time.Millisecond}}, false, 1, 1800 * time.Millisecond, 3500 * time.Millisecond},
		// The up rate does not limit the down direction: 1 MiB down at 40 Mbit/s is 0.2 s.
		{"down unlimited by up", Link{Up: Direction{RateBitsPerSecond: 1e5}, Down: Direction{RateBitsPerSecond: 40e6}}, false, 1, 150 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			per := mb / tc.conns
			addr, received := counting(t, false, map[bool]int{true: 0, false: per}[tc.up])
			p := newProxy(t, addr, tc.link)
			start := time.Now()
			var wg sync.WaitGroup
			for range tc.conns {
				wg.Go(func() {
					c, err := net.Dial("tcp", p.Addr())
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					if tc.up {
						if _, err := c.Write(make([]byte, per)); err != nil {
							t.Error(err)
						}
						c.(*net.TCPConn).CloseWrite()
						io.Copy(io.Discard, c) // until the target has all of it
						return
					}
					n, err := io.Copy(io.Discard, c)
					if err != nil || n != int64(per) {
						t.Errorf("read %d of %d: %v", n, per, err)
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			if tc.up && received.Load() != mb {
				t.Errorf("the target received %d of %d bytes", received.Load(), mb)
			}
			t.Logf("1 MiB in %v", took.Round(time.Millisecond))
			if took < tc.min || took > tc.max {
				t.Errorf("1 MiB took %v, want %v to %v", took.Round(time.Millisecond), tc.min, tc.max)
			}
		})
	}
}

// TestOrderAndLoss: with jitter and loss every byte arrives once and in order, the share of
// lost chunks is near the configured loss (seeded), and a lost chunk stalls for an RTO.
func TestOrderAndLoss(t *testing.T) {
	for _, tc := range []struct {
		name string
		link Link
		size int
	}{
		{"jitter", Link{Up: Direction{Delay: 5 * time.Millisecond, Jitter: 20 * time.Millisecond}, Down: Direction{Jitter: 20 * time.Millisecond}, Seed: 1}, 512 << 10},
		{"rate jitter loss", Link{Up: Direction{RateBitsPerSecond: 20e6, Jitter: 10 * time.Millisecond, Loss: 0.05},
			Down: Direction{RateBitsPerSecond: 20e6, Loss: 0.05}, Seed: 2}, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProxy(t, target(t, true, 0), tc.link)
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := make([]byte, tc.size)
			for i := range want {
				want[i] = byte(i * 7 / 3)
			}
			go c.Write(want)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("bytes came back changed or out of order")
			}
			loss := tc.link.Up.Loss
			chunks, lost := p.Chunks.Load(), p.Lost.Load()
			t.Logf("%d of %d chunks lost", lost, chunks)
			if loss == 0 && lost != 0 {
				t.Errorf("%d chunks lost without loss", lost)
			}
			// Binomial: 5% of ~760 chunks is 38, sd 6; allow about four sd.
			if loss > 0 && (float64(lost) < float64(chunks)*loss*0.4 || float64(lost) > float64(chunks)*loss*1.6) {
				t.Errorf("%d of %d chunks lost, want about %.0f%%", lost, chunks, loss*100)
			}
		})
	}
}

// TestLatency: a round trip costs at least the handshake plus the delays, and a lost chunk
// at least the RTO more. Only lower bounds: a slow machine can only add time.
func TestLatency(t *testing.T) {
	for _, tc := range []struct {
		name string
		link Link
		min  time.Duration
	}{
		// Handshake (100 ms) and one round trip.
		{"delay", Link{Up: Direction{Delay: 50 * time.Millisecond}, Down: Direction{Delay: 50 * time.Millisecond}}, 200 * time.Millisecond},
		// Every chunk up is lost: 20 ms handshake, 20 ms round trip, 200 ms RTO.
		{"loss", Link{Up: Direction{Delay: 10 * time.Millisecond, Loss: 1}, Down: Direction{Delay: 10 * time.Millisecond}}, 240 * time.Millisecond},
		// RTO from the jitter: 100 + 4*50 = 300 ms, plus up to 100 ms of jitter each way.
		{"loss jitter", Link{Up: Direction{Delay: 50 * time.Millisecond, Jitter: 50 * time.Millisecond, Loss: 1}, Down: Direction{Delay: 50 * time.Millisecond}}, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newProxy(t, target(t, true, 0), tc.link)
			start := time.Now()
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < tc.min {
				t.Errorf("round trip in %v, want at least %v", took, tc.min)
			}
		})
	}
}

// TestQueueBound: a sender faster than the link is held back: the proxy reads no more than
// the queue and what the link has sent, however much the sender has to give.
func TestQueueBound(t *testing.T) {
	const rate, queue = 200_000, 16 << 10
	p := newProxy(t, target(t, false, 0), Link{Up: Direction{RateBitsPerSecond: rate, Queue: queue}})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go c.Write(make([]byte, 16<<20))
	time.Sleep(time.Second)
	read, took := p.BytesUp.Load(), time.Since(start)
	limit := int64(queue) + int64(took.Seconds()*rate/8) + 2*segment
	t.Logf("read %d bytes in %v (limit %d)", read, took.Round(time.Millisecond), limit)
	if read > limit {
		t.Errorf("the proxy read %d bytes in %v, more than the queue and the rate allow (%d)", read, took, limit)
	}
	if read < queue {
		t.Errorf("the proxy read only %d bytes", read)
	}
}

// TestCut: a cut drops connections and refuses new ones, Restore and CutFor accept again.
func TestCut(t *testing.T) {
	p := newProxy(t, target(t, true, 0), Link{})
	roundTrip := func() error {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 1))
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("before the cut: %v", err)
	}
	held, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write([]byte("x"))
	io.ReadFull(held, make([]byte, 1))

	p.Cut()
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a connection survived the cut: %v", err)
	}
	if err := roundTrip(); err == nil {
		t.Error("a new connection went through the cut")
	}
	p.Restore()
	if err := roundTrip(); err != nil {
		t.Errorf("after Restore: %v", err)
	}
	p.CutFor(300 * time.Millisecond)
	if err := roundTrip(); err == nil {
		t.Error("a new connection went through CutFor")
	}
	deadline := time.Now().Add(10 * time.Second)
	for roundTrip() != nil {
		if time.Now().After(deadline) {
			t.Fatal("CutFor never restored")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
