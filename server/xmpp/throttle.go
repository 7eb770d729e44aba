package xmpp

import (
	"net/netip"
	"sync"
	"time"
)

// authThrottle slows down password guessing without ever locking the real
// user out: limits apply per address and per (address, account) pair, so
// someone guessing from one address does not stop the owner logging in
// from another. Failures spread over many addresses against one account
// only make failed attempts slower to answer, never successful ones.
type authThrottle struct {
	perIP      int
	perAccount int
	window     time.Duration

	mu        sync.Mutex
	byIP      map[string]*failures
	byPair    map[string]*failures
	byUser    map[string]*failures
	lastPrune time.Time
}

type failures struct {
	count int
	first time.Time
	last  time.Time
}

const maxThrottleEntries = 200_000

func newAuthThrottle(perIP, perAccount int, window time.Duration) *authThrottle {
	return &authThrottle{
		perIP: perIP, perAccount: perAccount, window: window,
		byIP: map[string]*failures{}, byPair: map[string]*failures{}, byUser: map[string]*failures{},
	}
}

// configure changes the limits (a configuration reload); failures already
// counted stay counted.
func (t *authThrottle) configure(perIP, perAccount int, window time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.perIP, t.perAccount, t.window = perIP, perAccount, window
}

// backoff is how long after the last failure the next attempt must wait,
// once a limit is passed: 1s, 2s, 4s ... capped at a minute.
func backoff(over int) time.Duration {
	if over > 6 {
		return time.Minute
	}
	return time.Second << over
}

func (t *authThrottle) wait(f *failures, limit int, now time.Time) time.Duration {
	if f == nil || f.count < limit || now.Sub(f.first) > t.window {
		return 0
	}
	until := f.last.Add(backoff(f.count - limit))
	if until.After(now) {
		return until.Sub(now)
	}
	return 0
}

// addrKey is what failures are counted by: the address, or for IPv6 its
// /64, since anyone with one IPv6 address has 2^64 of them.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

// CheckIP returns how long the address must wait before trying at all.
func (t *authThrottle) CheckIP(ip string) time.Duration {
	ip = addrKey(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wait(t.byIP[ip], t.perIP, time.Now())
}

// CheckAccount returns how long this address must wait before trying this
// account again.
func (t *authThrottle) CheckAccount(ip, user string) time.Duration {
	ip = addrKey(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wait(t.byPair[ip+"\x00"+user], t.perAccount, time.Now())
}

// FailureDelay is how long to hold back a failure answer for an account
// under a distributed attack.
func (t *authThrottle) FailureDelay(user string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.byUser[user]
	if f == nil || f.count < 10*t.perAccount || time.Since(f.first) > t.window {
		return 0
	}
	return time.Second
}

// Fail records a failed attempt.
func (t *authThrottle) Fail(ip, user string) {
	ip = addrKey(ip)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now)
	t.bump(t.byIP, ip, now)
	if user != "" {
		t.bump(t.byPair, ip+"\x00"+user, now)
		t.bump(t.byUser, user, now)
	}
}

// Succeed forgets this address's failures for the account.
func (t *authThrottle) Succeed(ip, user string) {
	ip = addrKey(ip)
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byPair, ip+"\x00"+user)
}

func (t *authThrottle) bump(m map[string]*failures, key string, now time.Time) {
	f := m[key]
	if f == nil || now.Sub(f.first) > t.window {
		if len(m) >= maxThrottleEntries {
			return
		}
		f = &failures{first: now}
		m[key] = f
	}
	f.count++
	f.last = now
}

func (t *authThrottle) pruneLocked(now time.Time) {
	if now.Sub(t.lastPrune) < time.Minute {
		return
	}
	t.lastPrune = now
	for _, m := range []map[string]*failures{t.byIP, t.byPair, t.byUser} {
		for k, f := range m {
			if now.Sub(f.first) > t.window && now.Sub(f.last) > time.Minute {
				delete(m, k)
			}
		}
	}
}
