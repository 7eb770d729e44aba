package xmpp

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottleCountsIPv6By64(t *testing.T) {
	th := newAuthThrottle(2, 100, time.Minute)
	th.Fail("2001:db8:1:2::1", "")
	th.Fail("2001:db8:1:2:ffff::9", "")
	if th.CheckIP("2001:db8:1:2:abcd::1") == 0 {
		t.Error("another address in the same /64 is not throttled")
	}
	if th.CheckIP("2001:db8:1:3::1") != 0 {
		t.Error("a different /64 is throttled")
	}
	th.Fail("::ffff:192.0.2.1", "")
	th.Fail("192.0.2.1", "")
	if th.CheckIP("192.0.2.1") == 0 {
		t.Error("an IPv4-mapped address counts apart from the plain IPv4 one")
	}
	if th.CheckIP("192.0.2.2") != 0 {
		t.Error("a neighbouring IPv4 address is throttled")
	}
}

func TestThrottlePerAccountIsPerAddress(t *testing.T) {
	th := newAuthThrottle(100, 2, time.Minute)
	th.Fail("192.0.2.1", "alice")
	th.Fail("192.0.2.1", "alice")
	if accountWait(th, "192.0.2.1", "alice") == 0 {
		t.Error("the guessing address is not throttled for alice")
	}
	if accountWait(th, "192.0.2.1", "bob") != 0 {
		t.Error("the guessing address is throttled for bob")
	}
	if accountWait(th, "198.51.100.7", "alice") != 0 {
		t.Error("alice's own address is throttled")
	}
	// Backoff grows after the limit and ends with the window.
	th.Fail("192.0.2.1", "alice")
	if w := accountWait(th, "192.0.2.1", "alice"); w <= time.Second || w > 2*time.Second {
		t.Errorf("wait after one failure over the limit %v, want (1s, 2s]", w)
	}
	short := newAuthThrottle(1, 1, 10*time.Millisecond)
	short.Fail("192.0.2.1", "alice")
	time.Sleep(20 * time.Millisecond)
	if short.CheckIP("192.0.2.1") != 0 || accountWait(short, "192.0.2.1", "alice") != 0 {
		t.Error("failures outlive the window")
	}
}

func accountWait(th *authThrottle, ip, user string) time.Duration {
	w, _ := th.CheckAccount(ip, user)
	return w
}

// Guesses from many addresses, each under its own limit, add up: past
// ten times the per-address limit the account slows down every address it
// has not logged in from, and none it has.
func TestThrottleAccountWideSparesKnownAddresses(t *testing.T) {
	th := newAuthThrottle(100, 3, time.Hour)
	th.Succeed("198.51.100.7", "alice") // the owner's usual address
	for i := range accountWideFactor*3 - 1 {
		th.Fail(fmt.Sprintf("192.0.2.%d", i), "alice")
	}
	if w := accountWait(th, "203.0.113.1", "alice"); w != 0 {
		t.Fatalf("a new address is held back %v before the account-wide limit", w)
	}
	th.Fail("192.0.2.250", "alice")
	w, wide := th.CheckAccount("203.0.113.1", "alice")
	if w <= 0 || !wide {
		t.Fatalf("a new address after %d failures from as many addresses: wait %v (account-wide %v), want an account-wide wait", accountWideFactor*3, w, wide)
	}
	if w := accountWait(th, "198.51.100.7", "alice"); w != 0 {
		t.Fatalf("the owner's known address is held back %v", w)
	}
	if w := accountWait(th, "203.0.113.1", "bob"); w != 0 {
		t.Fatalf("another account is held back %v", w)
	}
	// Each further failure doubles the interval between guesses, for all
	// unknown addresses together.
	th.Fail("192.0.2.251", "alice")
	if w2 := accountWait(th, "203.0.113.9", "alice"); w2 <= w {
		t.Fatalf("wait after one more failure %v, not longer than %v", w2, w)
	}
}

func TestThrottleKnownAddressesAreBounded(t *testing.T) {
	th := newAuthThrottle(100, 3, time.Hour)
	for i := range maxKnownAddresses + 5 {
		th.Succeed(fmt.Sprintf("192.0.2.%d", i), "alice")
	}
	if n := len(th.known["alice"]); n != maxKnownAddresses {
		t.Fatalf("%d known addresses kept, want %d", n, maxKnownAddresses)
	}
	if _, ok := th.known["alice"][fmt.Sprintf("192.0.2.%d", maxKnownAddresses+4)]; !ok {
		t.Fatal("the newest address was not kept")
	}
}
