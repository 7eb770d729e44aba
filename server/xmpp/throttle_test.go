package xmpp

import (
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
	if th.CheckAccount("192.0.2.1", "alice") == 0 {
		t.Error("the guessing address is not throttled for alice")
	}
	if th.CheckAccount("192.0.2.1", "bob") != 0 {
		t.Error("the guessing address is throttled for bob")
	}
	if th.CheckAccount("198.51.100.7", "alice") != 0 {
		t.Error("alice's own address is throttled")
	}
	// Backoff grows after the limit and ends with the window.
	th.Fail("192.0.2.1", "alice")
	if w := th.CheckAccount("192.0.2.1", "alice"); w <= time.Second || w > 2*time.Second {
		t.Errorf("wait after one failure over the limit %v, want (1s, 2s]", w)
	}
	short := newAuthThrottle(1, 1, 10*time.Millisecond)
	short.Fail("192.0.2.1", "alice")
	time.Sleep(20 * time.Millisecond)
	if short.CheckIP("192.0.2.1") != 0 || short.CheckAccount("192.0.2.1", "alice") != 0 {
		t.Error("failures outlive the window")
	}
}
