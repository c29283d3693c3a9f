// Package tcpproxy is a TCP proxy for tests of bad links: it forwards connections to a target
// through an emulated link (internal/linkem: rate shared by all connections, bounded queue,
// delay, jitter, loss), can cut every connection (and refuse new ones) until restored, and
// counts bytes. The kernel's netem is not available on the test machines.
//
// The model, per connection and direction: bytes are read in chunks of at most one segment
// (1460 bytes) when the link is shaped, booked on the direction's shared bucket (the reader
// waits while the queue is full, so a fast sender is held back as TCP's window would hold it),
// and written to the other side after the one-way delay plus jitter. Chunks are never
// reordered: TCP does not reorder to the application, so a chunk is held until the one before
// it has been written. A lost chunk, likewise, is not lost to the application: TCP resends
// it, and everything behind it on that connection waits. The proxy holds it one
// retransmission timeout, max(200 ms, RTT + 4*Jitter) as Linux computes RTO with its 200 ms
// floor. That is the pessimistic case (no fast retransmit, which would take about one RTT
// when later segments are flowing); the resent bytes do not use the link's rate again.
// A new connection waits one round trip (the handshake) before its first byte goes up.
package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sanping/sanping/internal/linkem"
)

// Link and Direction are the link model (see internal/linkem).
type (
	Link           = linkem.Link
	Direction      = linkem.Direction
	GilbertElliott = linkem.GilbertElliott
)

// segment is the largest chunk on a shaped link, so that loss and jitter apply per segment.
const segment = 1460

// Proxy forwards 127.0.0.1:port connections to Target.
type Proxy struct {
	Target string
	link   Link
	up     *linkem.Path
	down   *linkem.Path

	ln      net.Listener
	mu      sync.Mutex
	cut     bool
	restore *time.Timer
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	closed  chan struct{}
	closing sync.Once
	// Bytes counts what went through, both directions; BytesUp client to target, BytesDown
	// target to client (counted as read, before the link).
	Bytes, BytesUp, BytesDown atomic.Int64
	// Chunks counts chunks on shaped directions; Lost those held one RTO for a loss.
	Chunks, Lost atomic.Int64
}

// Start listens on a loopback port and adds delay one way to each direction.
func Start(target string, delay time.Duration) (*Proxy, error) {
	return New(target, Link{Up: Direction{Delay: delay}, Down: Direction{Delay: delay}})
}

// New listens on a loopback port and forwards to target through link.
func New(target string, link Link) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Target: target, link: link, ln: ln, conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	p.up, p.down = link.Paths()
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// RTO is how long a lost chunk holds its connection: max(200 ms, RTT + 4*jitter).
func (p *Proxy) RTO() time.Duration {
	return max(200*time.Millisecond, p.link.RTT()+4*max(p.link.Up.Jitter, p.link.Down.Jitter))
}

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	if p.restore != nil {
		p.restore.Stop()
		p.restore = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// CutFor cuts now and restores after d (without blocking).
func (p *Proxy) CutFor(d time.Duration) {
	p.Cut()
	p.mu.Lock()
	p.restore = time.AfterFunc(d, p.Restore)
	p.mu.Unlock()
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.closing.Do(func() { close(p.closed) })
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serve(c)
		}()
	}
}

func (p *Proxy) serve(c net.Conn) {
	opened := time.Now()
	up, err := net.Dial("tcp", p.Target)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	done := make(chan struct{})
	var once sync.Once
	abort := func() { once.Do(func() { close(done); c.Close(); up.Close() }) }
	// The handshake: the client's first byte goes up one round trip after it connected.
	if !p.sleepUntil(opened.Add(p.link.RTT()), done) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(up, c, p.up, &p.BytesUp, done, abort) }()
	go func() { defer wg.Done(); p.pipe(c, up, p.down, &p.BytesDown, done, abort) }()
	wg.Wait()
}

// chunk is a piece of one direction of one connection, due at the other side at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst through path: a reader books chunks on the link and queues them, a
// writer writes each when it is due. At src's end it half-closes dst once all is written; on
// an error it aborts the connection.
func (p *Proxy) pipe(dst, src net.Conn, path *linkem.Path, count *atomic.Int64, done chan struct{}, abort func()) {
	// Unshaped, the proxy holds no more than a read's worth: a cut loses little. Shaped, at most
	// 1024 segments (1.5 MB) are between reader and writer: the link's queue and what is in
	// flight (8 Mbit/s for 1.5 s).
	size, inFlight := 32<<10, 0
	if path.Shaped() {
		size, inFlight = segment, 1024
	}
	queue := make(chan chunk, inFlight)
	read := make(chan struct{})
	defer func() { <-read }()
	go func() {
		defer close(read)
		defer close(queue)
		var last time.Time // due time of the previous chunk: no reordering
		for {
			buf := make([]byte, size)
			n, err := src.Read(buf)
			if n > 0 {
				p.Bytes.Add(int64(n))
				count.Add(int64(n))
				due, ok := p.schedule(path, n, last, done)
				if !ok {
					abort()
					return
				}
				last = due
				select {
				case queue <- chunk{buf[:n], due}:
				case <-done:
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					abort()
				}
				return
			}
		}
	}()
	for ch := range queue {
		if !p.sleepUntil(ch.due, done) {
			abort()
			return
		}
		if _, err := dst.Write(ch.b); err != nil {
			abort()
			return
		}
	}
	select {
	case <-done:
	default:
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			abort()
		}
	}
}

// schedule books n bytes on path, waiting while its queue is full, and returns when they
// reach the other side: after the previous chunk, and one RTO later if the chunk is lost.
func (p *Proxy) schedule(path *linkem.Path, n int, last time.Time, done chan struct{}) (time.Time, bool) {
	if !path.Shaped() {
		return last, true
	}
	for {
		now := time.Now()
		sent, wait := path.Reserve(now, n)
		if wait == 0 {
			due := sent.Add(path.Latency())
			p.Chunks.Add(1)
			if path.Lost() {
				p.Lost.Add(1)
				due = due.Add(p.RTO())
			}
			if due.Before(last) {
				due = last
			}
			return due, true
		}
		if !p.sleepUntil(now.Add(wait), done) {
			return time.Time{}, false
		}
	}
}

// sleepUntil waits until t, or returns false when the connection or the proxy goes.
func (p *Proxy) sleepUntil(t time.Time, done chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		select {
		case <-done:
			return false
		case <-p.closed:
			return false
		default:
			return true
		}
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-done:
		return false
	case <-p.closed:
		return false
	}
}
