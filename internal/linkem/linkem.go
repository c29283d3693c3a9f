// Package linkem is the link model shared by the test TCP proxy (internal/tcpproxy) and the
// UDP relay (internal/udprelay): per direction a rate, a bounded queue, a one-way delay,
// jitter and random loss, in user space on loopback (the kernel's netem is not available on
// the test machines).
//
// Rate: a token bucket per direction shared by every connection or client through it (a 4G
// cell's capacity, not a per-connection limit). The bucket holds one chunk: a chunk of n
// bytes occupies the link for n*8/rate after the previous one, so bytes leave at the rate
// and never in bursts. What waits to be sent is the queue; it is bounded (Direction.Queue):
// TCP's reader waits for room (backpressure), UDP drops the datagram (tail drop).
//
// Loss is Bernoulli per chunk (Direction.Loss), or bursty with a Gilbert-Elliott chain
// (Direction.Burst). What a loss does depends on the transport: see tcpproxy and udprelay.
package linkem

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Link is both directions of an emulated link. Up is client to target, Down target to client.
type Link struct {
	Up, Down Direction
	// Seed makes loss and jitter reproducible: the same seed draws the same sequence in each
	// direction (which chunk draws which number still depends on goroutine scheduling).
	Seed uint64
}

// RTT is the link's added round trip: the two one-way delays.
func (l Link) RTT() time.Duration { return l.Up.Delay + l.Down.Delay }

// Direction is one direction of a link. The zero value passes everything at once.
type Direction struct {
	// RateBitsPerSecond limits the direction; 0 is unlimited.
	RateBitsPerSecond int64
	// Queue is how many bytes may wait for the link. 0: 250 ms at the rate, at least 16 KB
	// (4G base stations buffer generously; that is where the RTT under load comes from).
	Queue int
	// Delay is added one way to every chunk; Jitter adds a uniform random [0, Jitter) more.
	Delay, Jitter time.Duration
	// Loss is the probability that a chunk is lost (in the good state when Burst is set).
	Loss float64
	// Burst, if set, makes loss bursty.
	Burst *GilbertElliott
}

// GilbertElliott is a two-state loss chain, netem's "loss gemodel p r 1-h 1-k": each chunk
// first moves the chain (good to bad with probability Enter, bad to good with Leave), then is
// lost with Direction.Loss in the good state or LossBad in the bad state. The chain is in the
// bad state a share Enter/(Enter+Leave) of the time, bursts last 1/Leave chunks on average,
// and the mean loss is Loss*Leave/(Enter+Leave) + LossBad*Enter/(Enter+Leave).
// For example {Enter: 0.01, Leave: 0.25, LossBad: 0.5} with Loss 0: 3.8% in the bad state,
// bursts of 4 chunks, about 1.9% lost.
type GilbertElliott struct {
	Enter, Leave float64
	// LossBad is the loss probability in the bad state; 0 means 1 (every chunk).
	LossBad float64
}

// MeanLoss is the long-run loss probability of d.
func (d Direction) MeanLoss() float64 {
	g := d.Burst
	if g == nil {
		return d.Loss
	}
	if g.Enter+g.Leave == 0 {
		return d.Loss
	}
	bad := g.Enter / (g.Enter + g.Leave)
	lb := g.LossBad
	if lb == 0 {
		lb = 1
	}
	return d.Loss*(1-bad) + lb*bad
}

// Shaped reports whether d changes anything.
func (d Direction) Shaped() bool {
	return d.RateBitsPerSecond > 0 || d.Delay > 0 || d.Jitter > 0 || d.Loss > 0 || d.Burst != nil
}

func (d Direction) queue() int {
	if d.Queue > 0 {
		return d.Queue
	}
	q := int(d.RateBitsPerSecond / 8 / 4) // 250 ms
	return max(q, 16<<10)
}

// Path is a direction in use: its bucket, queue and random numbers, shared by everything
// crossing it. Safe for concurrent use.
type Path struct {
	Direction
	mu     sync.Mutex
	rng    *rand.Rand
	bad    bool      // Gilbert-Elliott state
	freeAt time.Time // when the link has sent everything reserved so far
}

// NewPath starts d; seed feeds its random numbers.
func NewPath(d Direction, seed uint64) *Path {
	return &Path{Direction: d, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Paths starts both directions of l, each with its own stream of random numbers.
func (l Link) Paths() (up, down *Path) {
	return NewPath(l.Up, l.Seed), NewPath(l.Down, l.Seed+1)
}

// Reserve books n bytes on the link and returns when they will have left (the time the last
// byte is sent). When the queue is full it returns wait > 0, the time until there is room,
// and books nothing.
func (p *Path) Reserve(now time.Time, n int) (sent time.Time, wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.RateBitsPerSecond <= 0 {
		return now, 0
	}
	start := p.freeAt
	if start.Before(now) {
		start = now
	}
	backlog := p.bytesIn(start.Sub(now))
	if q := p.queue(); backlog > 0 && backlog+n > q {
		return time.Time{}, p.timeFor(backlog + n - q)
	}
	p.freeAt = start.Add(p.timeFor(n))
	return p.freeAt, 0
}

// SetRate changes the rate of a direction in use (a link that thins and recovers); 0 lifts
// the limit. What is queued already leaves at the rate it was booked at.
func (p *Path) SetRate(bitsPerSecond int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.RateBitsPerSecond = bitsPerSecond
}

func (p *Path) timeFor(n int) time.Duration {
	return time.Duration(int64(n) * 8 * int64(time.Second) / p.RateBitsPerSecond)
}

func (p *Path) bytesIn(d time.Duration) int {
	return int(int64(d) * p.RateBitsPerSecond / 8 / int64(time.Second))
}

// Lost draws whether the next chunk is lost.
func (p *Path) Lost() bool {
	if p.Loss <= 0 && p.Burst == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	prob := p.Loss
	if g := p.Burst; g != nil {
		if p.bad {
			p.bad = p.rng.Float64() >= g.Leave
		} else {
			p.bad = p.rng.Float64() < g.Enter
		}
		if p.bad {
			prob = g.LossBad
			if prob == 0 {
				prob = 1
			}
		}
	}
	return prob > 0 && p.rng.Float64() < prob
}

// Latency draws the one-way delay for the next chunk: Delay plus jitter.
func (p *Path) Latency() time.Duration {
	if p.Jitter <= 0 {
		return p.Delay
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Delay + time.Duration(p.rng.Int64N(int64(p.Jitter)))
}
