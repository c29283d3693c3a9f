// Package udprelay is a UDP relay for tests of media (WebRTC over UDP) on bad links: it
// listens on a loopback UDP address, forwards each client's datagrams to a target from a
// socket of that client's own (a 1:1 NAT: the target sees one source per client), and sends
// the replies back to the client from the listening address. Both directions cross an
// emulated link (internal/linkem): a token bucket shared by all clients with a bounded queue
// beyond which datagrams are dropped (tail drop, as a real bottleneck drops), one-way delay,
// jitter (datagrams may overtake each other, as they may on a real network), random loss
// (Bernoulli or Gilbert-Elliott bursts) and cuts, during which everything is dropped.
//
// In front of the Sanping server's media port: the SFU answers on one UDP port (-media-udp,
// Config.MediaUDP) and advertises -public-ip (Config.PublicIP) in place of its address in
// its host candidates, keeping the port. So bind the relay to a second loopback address and
// the server to the same port on 127.0.0.1, and advertise the relay's address:
//
//	r, _ := udprelay.New(udprelay.Config{Listen: "127.0.0.2:0", Link: link})
//	port := r.Addr().Port
//	r.SetTarget(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
//	// the server: Config{MediaUDP: fmt.Sprintf("127.0.0.1:%d", port), PublicIP: "127.0.0.2"}
//
// A client (client/live.Join with a loopback server URL includes loopback candidates) then
// sends its media to 127.0.0.2:port, through the relay; the server sees the relay's upstream
// socket as a peer-reflexive candidate and answers it. TestLiveBadNetworkRelay in server/
// does this. Leave -media-tcp unset, or ICE may choose TCP around the relay. What the server
// forwards to a participant crosses the relay only if the server cannot reach the
// participant directly: on that connection the server is ICE-controlling and would pick the
// participant's own candidate. The test gives each participant a transport.Net that lets in
// only datagrams from the relay (behindNAT, an address-restricted NAT).
package udprelay

import (
	"errors"
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

// socketBuffer is asked of the kernel for each socket (it caps it at net.core.rmem_max), so
// that a burst is not lost in the kernel before the emulated link sees it.
const socketBuffer = 4 << 20

// Config is what New needs.
type Config struct {
	// Listen is the relay's address; default 127.0.0.1:0.
	Listen string
	// Target is where datagrams go. It may be set later with SetTarget; until then datagrams
	// are dropped.
	Target *net.UDPAddr
	// Link shapes both directions: Up is client to target.
	Link Link
}

// Counters are one direction's totals, in datagrams and bytes.
type Counters struct {
	Packets, Bytes int64 // delivered
	Lost           int64 // dropped by random loss
	QueueDropped   int64 // dropped because the queue was full
	CutDropped     int64 // dropped while the link was cut
}

type counters struct {
	packets, bytes, lost, queueDropped, cutDropped atomic.Int64
}

func (c *counters) load() Counters {
	return Counters{Packets: c.packets.Load(), Bytes: c.bytes.Load(), Lost: c.lost.Load(),
		QueueDropped: c.queueDropped.Load(), CutDropped: c.cutDropped.Load()}
}

// Relay is a running relay.
type Relay struct {
	conn     *net.UDPConn
	up, down *linkem.Path
	upN      counters
	downN    counters
	target   atomic.Pointer[net.UDPAddr]
	cut      atomic.Bool
	mu       sync.Mutex
	clients  map[string]*net.UDPConn // by client address: the socket towards the target
	restore  *time.Timer
	closed   bool
	wg       sync.WaitGroup
}

// New starts a relay.
func New(cfg Config) (*Relay, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	la, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(socketBuffer)
	conn.SetWriteBuffer(socketBuffer)
	r := &Relay{conn: conn, clients: map[string]*net.UDPConn{}}
	r.up, r.down = cfg.Link.Paths()
	if cfg.Target != nil {
		r.target.Store(cfg.Target)
	}
	r.wg.Add(1)
	go r.readClients()
	return r, nil
}

// Addr is the relay's address, where clients send.
func (r *Relay) Addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

// SetTarget sets where datagrams go, for a target that must know the relay's port first.
func (r *Relay) SetTarget(a *net.UDPAddr) { r.target.Store(a) }

// Up and Down are the counters of each direction.
func (r *Relay) Up() Counters   { return r.upN.load() }
func (r *Relay) Down() Counters { return r.downN.load() }

// SetRate changes each direction's rate limit while the relay runs; 0 is unlimited.
func (r *Relay) SetRate(up, down int64) {
	r.up.SetRate(up)
	r.down.SetRate(down)
}

// Cut drops every datagram, both ways, until Restore. Client mappings survive.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.restore != nil {
		r.restore.Stop()
		r.restore = nil
	}
	r.cut.Store(true)
}

// CutFor cuts now and restores after d (without blocking).
func (r *Relay) CutFor(d time.Duration) {
	r.Cut()
	r.mu.Lock()
	r.restore = time.AfterFunc(d, r.Restore)
	r.mu.Unlock()
}

// Restore lets datagrams through again.
func (r *Relay) Restore() { r.cut.Store(false) }

// Close stops the relay.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for _, c := range r.clients {
		c.Close()
	}
	if r.restore != nil {
		r.restore.Stop()
	}
	r.mu.Unlock()
	err := r.conn.Close()
	r.wg.Wait()
	return err
}

func (r *Relay) readClients() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors and the like
		}
		up := r.upstream(from)
		if up == nil {
			continue
		}
		r.forward(r.up, &r.upN, buf[:n], func(b []byte) { up.Write(b) })
	}
}

// upstream is the client's socket towards the target, opened at its first datagram.
func (r *Relay) upstream(from *net.UDPAddr) *net.UDPConn {
	target := r.target.Load()
	if target == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	key := from.String()
	if c, ok := r.clients[key]; ok {
		return c
	}
	c, err := net.DialUDP("udp", nil, target)
	if err != nil {
		return nil
	}
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
	r.clients[key] = c
	r.wg.Add(1)
	go r.readTarget(c, from)
	return c
}

func (r *Relay) readTarget(c *net.UDPConn, client *net.UDPAddr) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // the target not listening yet: ICMP port unreachable
		}
		r.forward(r.down, &r.downN, buf[:n], func(b []byte) { r.conn.WriteToUDP(b, client) })
	}
}

// forward puts one datagram on path and sends it with send when it arrives, unless the
// queue is full, it is lost, or the link is cut (when it enters or when it would arrive).
func (r *Relay) forward(path *linkem.Path, n *counters, b []byte, send func([]byte)) {
	if r.cut.Load() {
		n.cutDropped.Add(1)
		return
	}
	now := time.Now()
	sent, wait := path.Reserve(now, len(b))
	if wait > 0 {
		n.queueDropped.Add(1)
		return
	}
	// Lost on the way: it has used the link's capacity all the same.
	if path.Lost() {
		n.lost.Add(1)
		return
	}
	deliver := func(b []byte) {
		if r.cut.Load() {
			n.cutDropped.Add(1)
			return
		}
		n.packets.Add(1)
		n.bytes.Add(int64(len(b)))
		send(b)
	}
	at := sent.Add(path.Latency())
	if !at.After(now) {
		deliver(b)
		return
	}
	c := append([]byte(nil), b...)
	time.AfterFunc(at.Sub(now), func() { deliver(c) })
}
