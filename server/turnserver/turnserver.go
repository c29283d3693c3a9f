// Package turnserver is Sanping's embedded TURN server (pion/turn). It relays the media of
// participants whose networks allow no direct path to the SFU: carrier-grade NAT, firewalls
// that pass only TCP, or only port 443 (TURN over TLS). Clients get short-lived credentials
// in the TURN REST style (draft-uberti-behave-turn-rest), issued per participant in the
// welcome message, so no password is ever stored. It relays only to the SFU on its own host
// (see Config.AllowPeer), never as an open relay into the networks around it.
package turnserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/turn/v5"

	"github.com/sanping/sanping/internal/pionlog"
	"github.com/sanping/sanping/protocol"
)

// Config configures the TURN server.
type Config struct {
	Realm string // default "sanping"
	// PublicIP is the address relayed media is sent from and to, as clients see it.
	PublicIP string
	// Host is the server's name or address in the URLs given to clients; for turns: it must
	// be a name the certificate covers. Default PublicIP.
	Host string
	// Listening addresses, e.g. ":3478"; "" leaves that transport off. TLSAddr (e.g. ":443",
	// for networks that let only HTTPS through) needs TLSConfig with a certificate.
	UDPAddr, TCPAddr, TLSAddr string
	TLSConfig                 *tls.Config
	// Secret is the HMAC key of the credentials; nil makes a random one, so credentials
	// issued before a restart stop working.
	Secret        []byte
	CredentialTTL time.Duration // how long credentials are valid; default 1h
	// RelayPortMin and RelayPortMax bound the relay ports (both 0: any port).
	RelayPortMin, RelayPortMax uint16
	// AllowPeer admits peers beyond this host. The server relays only to the SFU beside
	// it: to PublicIP and this host's other non-loopback addresses, so that it cannot be
	// used to reach the clinic's or hospital's network, or services bound to localhost.
	AllowPeer func(net.IP) bool
	Net       transport.Net // nil: the real network
	Logger    *slog.Logger  // nil: no logs
}

// Errors of New.
var (
	ErrPublicIP   = errors.New("turnserver: PublicIP must be an IP address")
	ErrNoListener = errors.New("turnserver: no UDP, TCP or TLS address to listen on")
)

const defaultTTL = time.Hour

// Server is a running TURN server.
type Server struct {
	turn   *turn.Server
	secret string
	ttl    time.Duration
	urls   []string
}

// New starts a TURN server listening on the configured addresses.
func New(cfg Config) (*Server, error) {
	ip := net.ParseIP(cfg.PublicIP)
	if ip == nil {
		return nil, ErrPublicIP
	}
	if cfg.UDPAddr == "" && cfg.TCPAddr == "" && cfg.TLSAddr == "" {
		return nil, ErrNoListener
	}
	if cfg.TLSAddr != "" && (cfg.TLSConfig == nil || (len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetCertificate == nil)) {
		return nil, errors.New("turnserver: TLSAddr needs a TLSConfig with a certificate")
	}
	if (cfg.RelayPortMin == 0) != (cfg.RelayPortMax == 0) || cfg.RelayPortMin > cfg.RelayPortMax {
		return nil, fmt.Errorf("turnserver: relay ports %d-%d", cfg.RelayPortMin, cfg.RelayPortMax)
	}
	if cfg.Realm == "" {
		cfg.Realm = "sanping"
	}
	if cfg.Host == "" {
		cfg.Host = ip.String()
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = defaultTTL
	}
	secret := cfg.Secret
	if secret == nil {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.Net
	if n == nil {
		var err error
		if n, err = stdnet.NewNet(); err != nil {
			return nil, fmt.Errorf("turnserver: %w", err)
		}
	}
	relayListen := "0.0.0.0"
	if ip.To4() == nil {
		relayListen = "::"
	}
	relay := func() turn.RelayAddressGenerator {
		if cfg.RelayPortMin != 0 {
			return &turn.RelayAddressGeneratorPortRange{RelayAddress: ip, Address: relayListen, MinPort: cfg.RelayPortMin, MaxPort: cfg.RelayPortMax, Net: n}
		}
		return &turn.RelayAddressGeneratorStatic{RelayAddress: ip, Address: relayListen, Net: n}
	}

	allowed, err := peerFilter(n, ip, cfg.AllowPeer)
	if err != nil {
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	permit := func(client net.Addr, peer net.IP) bool {
		if allowed(peer) {
			return true
		}
		log.Warn("turn: peer refused", "client", client.String(), "peer", peer.String())
		return false
	}

	s := &Server{secret: string(secret), ttl: cfg.CredentialTTL}
	var (
		packetConns []turn.PacketConnConfig
		listeners   []turn.ListenerConfig
		closers     []func() error
	)
	fail := func(err error) (*Server, error) {
		for _, c := range closers {
			c() //nolint:errcheck // already failing
		}
		return nil, fmt.Errorf("turnserver: %w", err)
	}
	url := func(scheme string, addr net.Addr, transport string) string {
		_, port, _ := net.SplitHostPort(addr.String())
		return scheme + ":" + net.JoinHostPort(cfg.Host, port) + "?transport=" + transport
	}
	if cfg.UDPAddr != "" {
		pc, err := n.ListenPacket("udp", cfg.UDPAddr)
		if err != nil {
			return fail(err)
		}
		closers = append(closers, pc.Close)
		packetConns = append(packetConns, turn.PacketConnConfig{PacketConn: pc, RelayAddressGenerator: relay(), PermissionHandler: permit})
		s.urls = append(s.urls, url("turn", pc.LocalAddr(), "udp"))
	}
	listen := func(addr string) (net.Listener, error) {
		l, err := n.CreateListenConfig(&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
		if err == nil {
			closers = append(closers, l.Close)
		}
		return l, err
	}
	if cfg.TCPAddr != "" {
		l, err := listen(cfg.TCPAddr)
		if err != nil {
			return fail(err)
		}
		listeners = append(listeners, turn.ListenerConfig{Listener: l, RelayAddressGenerator: relay(), PermissionHandler: permit})
		s.urls = append(s.urls, url("turn", l.Addr(), "tcp"))
	}
	if cfg.TLSAddr != "" {
		l, err := listen(cfg.TLSAddr)
		if err != nil {
			return fail(err)
		}
		listeners = append(listeners, turn.ListenerConfig{Listener: tls.NewListener(l, cfg.TLSConfig), RelayAddressGenerator: relay(), PermissionHandler: permit})
		s.urls = append(s.urls, url("turns", l.Addr(), "tcp"))
	}
	t, err := turn.NewServer(turn.ServerConfig{
		Realm:             cfg.Realm,
		AuthHandler:       turn.LongTermTURNRESTAuthHandler(s.secret, pionlog.Factory{Log: log, Quiet: true}.NewLogger("turn-auth")),
		PacketConnConfigs: packetConns,
		ListenerConfigs:   listeners,
		LoggerFactory:     pionlog.Factory{Log: log, Quiet: true},
	})
	if err != nil {
		return fail(err)
	}
	s.turn = t
	log.Info("turn: listening", "urls", s.urls, "relay", ip.String())
	return s, nil
}

// Close stops the server and ends every allocation.
func (s *Server) Close() error { return s.turn.Close() }

// Credentials issues a participant TURN credentials valid for the configured time: the
// username is "<unix expiry>:<participant>", the password base64(HMAC-SHA1(secret, username)).
func (s *Server) Credentials(participant string) protocol.ICEServer {
	// The error can only come from writing to an HMAC, which never fails.
	user, pass, _ := turn.GenerateLongTermTURNRESTCredentials(s.secret, participant, s.ttl)
	return protocol.ICEServer{URLs: slices.Clone(s.urls), Username: user, Credential: pass}
}

// AllocationCount is the number of live allocations (for metrics and draining).
func (s *Server) AllocationCount() int { return s.turn.AllocationCount() }

// peerFilter says which peers may be relayed to: the public IP, this host's addresses other
// than loopback, and whatever allow admits.
func peerFilter(n transport.Net, public net.IP, allow func(net.IP) bool) (func(net.IP) bool, error) {
	ifaces, err := n.Interfaces()
	if err != nil {
		return nil, err
	}
	local := []net.IP{public}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs() // an error is an interface without addresses
		for _, a := range addrs {
			var ip net.IP
			switch a := a.(type) {
			case *net.IPNet:
				ip = a.IP
			case *net.IPAddr:
				ip = a.IP
			}
			if ip != nil && !ip.IsLoopback() {
				local = append(local, ip)
			}
		}
	}
	return func(peer net.IP) bool {
		return slices.ContainsFunc(local, peer.Equal) || (allow != nil && allow(peer))
	}, nil
}
