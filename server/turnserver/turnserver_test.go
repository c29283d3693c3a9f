package turnserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/sanping/sanping/protocol"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.PublicIP == "" {
		cfg.PublicIP = "127.0.0.1"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addr finds the server address of the URL with the given scheme and transport.
func addr(t *testing.T, ice protocol.ICEServer, scheme, transport string) string {
	t.Helper()
	for _, u := range ice.URLs {
		rest, ok := strings.CutPrefix(u, scheme+":")
		if host, tr, _ := strings.Cut(rest, "?transport="); ok && tr == transport {
			return host
		}
	}
	t.Fatalf("no %s %s URL in %v", scheme, transport, ice.URLs)
	return ""
}

func TestCredentials(t *testing.T) {
	secret := []byte("shared secret")
	s := start(t, Config{UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", Host: "turn.example.org", Secret: secret, CredentialTTL: 10 * time.Minute})
	c := s.Credentials("p7")
	expiry, who, ok := strings.Cut(c.Username, ":")
	if !ok || who != "p7" {
		t.Fatalf("username %q", c.Username)
	}
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if d := time.Until(time.Unix(exp, 0)); err != nil || d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("username %q expires in %v", c.Username, d)
	}
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(c.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); c.Credential != want {
		t.Errorf("password %q, want %q", c.Credential, want)
	}
	if len(c.URLs) != 2 || !strings.HasPrefix(c.URLs[0], "turn:turn.example.org:") || !strings.HasSuffix(c.URLs[0], "?transport=udp") ||
		!strings.HasPrefix(c.URLs[1], "turn:turn.example.org:") || !strings.HasSuffix(c.URLs[1], "?transport=tcp") {
		t.Errorf("URLs %v", c.URLs)
	}
	c.URLs[0] = "changed"
	if s.Credentials("p7").URLs[0] == "changed" {
		t.Error("credentials share their URL slice")
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{
		{PublicIP: "turn.example.org", UDPAddr: ":0"},
		{PublicIP: "127.0.0.1"},
		{PublicIP: "127.0.0.1", TLSAddr: "127.0.0.1:0"},
		{PublicIP: "127.0.0.1", UDPAddr: "127.0.0.1:0", RelayPortMin: 50000},
		{PublicIP: "127.0.0.1", UDPAddr: "127.0.0.1:0", RelayPortMin: 50010, RelayPortMax: 50000},
		{PublicIP: "127.0.0.1", UDPAddr: "256.0.0.1:0"},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("started with %+v", cfg)
		}
	}
}

// allocate asks for a relay with the credentials over conn (a UDP socket, or a stream
// wrapped by turn.NewSTUNConn).
func allocate(t *testing.T, conn net.PacketConn, server, user, pass string) (net.PacketConn, *turn.Client, error) {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server, Conn: conn, Username: user, Password: pass,
		RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, c, err
}

func udpConn(t *testing.T) net.PacketConn {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestAllocateUDP: fresh credentials get a relay on the public IP, and data goes through it
// both ways.
func TestAllocateUDP(t *testing.T) {
	s := start(t, Config{UDPAddr: "127.0.0.1:0"})
	c := s.Credentials("p1")
	relay, _, err := allocate(t, udpConn(t), addr(t, c, "turn", "udp"), c.Username, c.Credential)
	if err != nil {
		t.Fatal(err)
	}
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("relayed from %v", ip)
	}
	if n := s.AllocationCount(); n != 1 {
		t.Errorf("%d allocations", n)
	}

	peer := udpConn(t)
	if _, err := relay.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil { // also permits the peer
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" || from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got %q from %v: %v", buf[:n], from, err)
	}
	if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err = relay.ReadFrom(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("relay got %q: %v", buf[:n], err)
	}
}

func TestAllocateTCP(t *testing.T) {
	s := start(t, Config{TCPAddr: "127.0.0.1:0"})
	c := s.Credentials("p2")
	server := addr(t, c, "turn", "tcp")
	conn, err := net.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	relay, _, err := allocate(t, turn.NewSTUNConn(conn), server, c.Username, c.Credential)
	if err != nil {
		t.Fatal(err)
	}
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("relayed from %v", ip)
	}
}

func TestAllocateTLS(t *testing.T) {
	cert, pool := selfSigned(t, "turn.test")
	s := start(t, Config{Host: "turn.test", TLSAddr: "127.0.0.1:0", TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	c := s.Credentials("p3")
	_, port, _ := net.SplitHostPort(addr(t, c, "turns", "tcp"))
	server := net.JoinHostPort("127.0.0.1", port)
	conn, err := tls.Dial("tcp", server, &tls.Config{RootCAs: pool, ServerName: "turn.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, _, err := allocate(t, turn.NewSTUNConn(conn), server, c.Username, c.Credential); err != nil {
		t.Fatal(err)
	}
}

func TestRelayPortRange(t *testing.T) {
	s := start(t, Config{UDPAddr: "127.0.0.1:0", RelayPortMin: 47000, RelayPortMax: 47099})
	c := s.Credentials("p4")
	relay, _, err := allocate(t, udpConn(t), addr(t, c, "turn", "udp"), c.Username, c.Credential)
	if err != nil {
		t.Fatal(err)
	}
	if p := relay.LocalAddr().(*net.UDPAddr).Port; p < 47000 || p > 47099 {
		t.Errorf("relay port %d", p)
	}
}

// TestPeers: relays go to this host only, unless AllowPeer says otherwise; loopback is not
// this host's unless it is the public IP.
func TestPeers(t *testing.T) {
	peer := udpConn(t).LocalAddr() // on 127.0.0.1
	for _, tt := range []struct {
		name  string
		allow func(net.IP) bool
		ok    bool
	}{
		{"loopback", nil, false},
		{"allowed", func(ip net.IP) bool { return ip.IsLoopback() }, true},
	} {
		s := start(t, Config{PublicIP: "127.0.0.2", UDPAddr: "127.0.0.1:0", AllowPeer: tt.allow})
		c := s.Credentials("p6")
		_, port, _ := net.SplitHostPort(addr(t, c, "turn", "udp"))
		_, client, err := allocate(t, udpConn(t), net.JoinHostPort("127.0.0.1", port), c.Username, c.Credential)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.CreatePermission(peer); (err == nil) != tt.ok {
			t.Errorf("%s: permission for %v: %v", tt.name, peer, err)
		}
	}
	local, err := peerFilter(mustStdnet(t), net.ParseIP("203.0.113.7"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"203.0.113.7": true, "127.0.0.1": false, "198.51.100.1": false, "169.254.169.254": false} {
		if local(net.ParseIP(ip)) != want {
			t.Errorf("peer %s allowed: %v", ip, !want)
		}
	}
}

// TestRefused: expired, forged and other servers' credentials get no allocation.
func TestRefused(t *testing.T) {
	secret := []byte("the server's secret")
	s := start(t, Config{UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:0", Secret: secret})
	other := start(t, Config{UDPAddr: "127.0.0.1:0"})
	good := s.Credentials("p5")
	sign := func(user string) string {
		mac := hmac.New(sha1.New, secret)
		mac.Write([]byte(user))
		return base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	expired := fmt.Sprintf("%d:p5", time.Now().Add(-time.Minute).Unix())
	forever := fmt.Sprintf("%d:p5", time.Now().Add(2*time.Hour).Unix())
	theirs := other.Credentials("p5")
	for _, tt := range []struct{ name, user, pass string }{
		{"expired", expired, sign(expired)},
		{"forged password", forever, base64.StdEncoding.EncodeToString([]byte("guess"))},
		{"changed expiry", forever, good.Credential},
		{"another server's", theirs.Username, theirs.Credential},
		{"no expiry", "p5", sign("p5")},
	} {
		for _, transport := range []string{"udp", "tcp"} {
			server := addr(t, good, "turn", transport)
			conn := udpConn(t)
			if transport == "tcp" {
				c, err := net.Dial("tcp", server)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				conn = turn.NewSTUNConn(c)
			}
			if _, _, err := allocate(t, conn, server, tt.user, tt.pass); err == nil {
				t.Errorf("%s credentials over %s: allocated", tt.name, transport)
			}
		}
	}
	if n := s.AllocationCount(); n != 0 {
		t.Errorf("%d allocations", n)
	}
}

// TestRelayOnlyPeerConnections: two peer connections that may use relay candidates only
// connect through the server and exchange a data channel message.
func TestRelayOnlyPeerConnections(t *testing.T) {
	s := start(t, Config{UDPAddr: "127.0.0.1:0"})
	newPC := func(participant string) *webrtc.PeerConnection {
		c := s.Credentials(participant)
		pc, err := webrtc.NewPeerConnection(webrtc.Configuration{
			ICEServers:         []webrtc.ICEServer{{URLs: c.URLs, Username: c.Username, Credential: c.Credential}},
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	offerer, answerer := newPC("p1"), newPC("p2")
	got := make(chan string, 1)
	answerer.OnDataChannel(func(d *webrtc.DataChannel) {
		d.OnMessage(func(m webrtc.DataChannelMessage) { got <- string(m.Data) })
	})
	dc, err := offerer.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() { dc.SendText("through the relay") })

	// Without trickle: each side's description carries all its (relay) candidates.
	describe := func(pc *webrtc.PeerConnection, d webrtc.SessionDescription) webrtc.SessionDescription {
		done := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(d); err != nil {
			t.Fatal(err)
		}
		<-done
		return *pc.LocalDescription()
	}
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := answerer.SetRemoteDescription(describe(offerer, offer)); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := offerer.SetRemoteDescription(describe(answerer, answer)); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "through the relay" {
			t.Errorf("got %q", m)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no message")
	}
	pair, err := offerer.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Local.Typ != webrtc.ICECandidateTypeRelay || pair.Remote.Typ != webrtc.ICECandidateTypeRelay {
		t.Errorf("selected pair %v (%v)", pair, err)
	}
	if n := s.AllocationCount(); n < 2 {
		t.Errorf("%d allocations", n)
	}
}

func mustStdnet(t *testing.T) *stdnet.Net {
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
