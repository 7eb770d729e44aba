package xmpp

import (
	"net/netip"
	"sync"
	"time"
)

// authThrottle slows down password guessing without locking the real user
// out: limits apply per address and per (address, account) pair, so
// someone guessing from one address does not stop the owner logging in
// from another.
//
// Guesses spread over many addresses (one or two from each) pass those
// limits, so an account also has a limit of its own, accountWideFactor
// times the per-address one; past it, addresses the account has not
// logged in from lately may make one guess per backoff interval between
// them all. The addresses it has logged in from (its owner's phone,
// laptop, home) are never held back by it.
type authThrottle struct {
	perIP      int
	perAccount int
	window     time.Duration

	mu        sync.Mutex
	byIP      map[string]*failures
	byPair    map[string]*failures
	byUser    map[string]*failures
	known     map[string]map[string]time.Time // account → address → last login
	lastPrune time.Time
}

// accountWideFactor times the per-(address, account) limit is how many
// failures an account takes from all addresses together within the window
// before unknown addresses are slowed down.
const accountWideFactor = 10

// knownAddressTTL is how long an address the account logged in from stays
// exempt from the account-wide limit; maxKnownAddresses bounds them per
// account (the oldest goes).
const (
	knownAddressTTL   = 30 * 24 * time.Hour
	maxKnownAddresses = 16
)

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
		known: map[string]map[string]time.Time{},
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
// account again, and whether the wait is the account-wide one (many
// addresses failed) rather than this address's own.
func (t *authThrottle) CheckAccount(ip, user string) (wait time.Duration, accountWide bool) {
	ip = addrKey(ip)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if w := t.wait(t.byPair[ip+"\x00"+user], t.perAccount, now); w > 0 {
		return w, false
	}
	if last, ok := t.known[user][ip]; ok && now.Sub(last) < knownAddressTTL {
		return 0, false
	}
	return t.wait(t.byUser[user], accountWideFactor*t.perAccount, now), true
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

// Succeed forgets this address's failures for the account and remembers
// the address as one the account's owner uses.
func (t *authThrottle) Succeed(ip, user string) {
	ip = addrKey(ip)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byPair, ip+"\x00"+user)
	addrs := t.known[user]
	if addrs == nil {
		if len(t.known) >= maxThrottleEntries {
			return
		}
		addrs = map[string]time.Time{}
		t.known[user] = addrs
	}
	if _, ok := addrs[ip]; !ok && len(addrs) >= maxKnownAddresses {
		oldest, when := "", now
		for a, at := range addrs {
			if at.Before(when) {
				oldest, when = a, at
			}
		}
		delete(addrs, oldest)
	}
	addrs[ip] = now
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
	for user, addrs := range t.known {
		for a, at := range addrs {
			if now.Sub(at) > knownAddressTTL {
				delete(addrs, a)
			}
		}
		if len(addrs) == 0 {
			delete(t.known, user)
		}
	}
}
