package auth

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Password attempts per client address: a burst of loginBurst, then one every loginEvery.
// Generous, because a county's village clinics may share one carrier-NAT address; the
// per-account and address hold (failureLock) is what stops guessing one password.
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

// failureLock counts failed sign-ins per account name and source (client address, or
// "reauth" for a signed-in user re-entering the password) and holds a combination back after
// maxFailedLogins within lockDuration. Only the combination: a guesser at one address cannot
// lock the county's admin or the reporting doctor out everywhere, and an unknown name is
// counted and held back exactly as a known one, so the answer tells nothing of who exists.
// Kept in memory: a restart forgets it, as it forgets the address limiter.
type failureLock struct {
	mu sync.Mutex
	m  map[failureKey]*failures
}

type failureKey struct{ name, source string }

type failures struct {
	n     int
	first time.Time // of the failures being counted
	until time.Time // held back until then (zero: not held)
}

func newFailureLock() *failureLock { return &failureLock{m: map[failureKey]*failures{}} }

// held reports whether name from source is held back now.
func (l *failureLock) held(name, source string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.m[failureKey{strings.ToLower(name), source}]
	return f != nil && now.Before(f.until)
}

// fail counts a failure; it reports whether this one held the combination back.
func (l *failureLock) fail(name, source string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := failureKey{strings.ToLower(name), source}
	f := l.m[k]
	if f == nil || now.Sub(f.first) > lockDuration {
		if len(l.m) >= 100000 {
			for key, v := range l.m {
				if now.Sub(v.first) > lockDuration && !now.Before(v.until) {
					delete(l.m, key)
				}
			}
		}
		f = &failures{first: now}
		l.m[k] = f
	}
	f.n++
	if f.n >= maxFailedLogins && !now.Before(f.until) {
		f.until = now.Add(lockDuration)
		return true
	}
	return false
}

// succeed forgets the failures of name from source.
func (l *failureLock) succeed(name, source string) {
	l.mu.Lock()
	delete(l.m, failureKey{strings.ToLower(name), source})
	l.mu.Unlock()
}

// clear forgets every hold on name (an administrator's unlock).
func (l *failureLock) clear(name string) {
	name = strings.ToLower(name)
	l.mu.Lock()
	for k := range l.m {
		if k.name == name {
			delete(l.m, k)
		}
	}
	l.mu.Unlock()
}
