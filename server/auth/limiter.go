package auth

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Password attempts per client address: a burst of loginBurst, then one every loginEvery.
// Generous, because a county's village clinics may share one carrier-NAT address; the
// per-account lockout is what stops guessing one password.
const (
	loginBurst = 20
	loginEvery = 2 * time.Second
)

type ipLimiter struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newIPLimiter() *ipLimiter { return &ipLimiter{m: map[string]*rate.Limiter{}} }

func (l *ipLimiter) allow(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[ip]
	if !ok {
		if len(l.m) >= 100000 {
			// Drop addresses whose bucket is full again: they carry no state worth keeping.
			for k, v := range l.m {
				if v.TokensAt(now) >= loginBurst {
					delete(l.m, k)
				}
			}
		}
		lim = rate.NewLimiter(rate.Every(loginEvery), loginBurst)
		l.m[ip] = lim
	}
	return lim.AllowN(now, 1)
}

// ClientIP is the address of the client: the TCP peer. (Behind a reverse proxy the access
// log shows the proxy; X-Forwarded-For is not trusted, since anyone can send it.)
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
