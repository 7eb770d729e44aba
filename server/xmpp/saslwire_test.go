package xmpp_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
)

// SASL over real sockets: throttling, every failure condition, and what an
// unknown user sees.

var (
	saslElemRe  = regexp.MustCompile(`<(success|failure|challenge)[^>]*?(/>|>(.*?)</(success|failure|challenge)>)`)
	saslCondRe  = regexp.MustCompile(`^<([a-z-]+)`)
	mechanismRe = regexp.MustCompile(`<mechanism>([^<]+)</mechanism>`)
)

// saslReply is the server's next SASL element: kind is success, failure or
// challenge; data is the decoded payload; cond the failure condition.
type saslReply struct {
	kind, cond string
	data       []byte
}

func readSASL(t *testing.T, r *servertest.Raw) saslReply {
	t.Helper()
	var out string
	for {
		s, err := r.ReadUntilErr(">", 10*time.Second)
		out += s
		if err != nil {
			t.Fatalf("waiting for a SASL answer: %v; got %q", err, out)
		}
		m := saslElemRe.FindStringSubmatch(out)
		if m == nil {
			continue
		}
		rep := saslReply{kind: m[1]}
		if rep.kind == "failure" {
			if c := saslCondRe.FindStringSubmatch(m[3]); c != nil {
				rep.cond = c[1]
			}
			return rep
		}
		if m[3] != "" && m[3] != "=" {
			d, err := base64.StdEncoding.DecodeString(m[3])
			if err != nil {
				t.Fatalf("server sent bad base64 %q", m[3])
			}
			rep.data = d
		}
		return rep
	}
}

func authElem(mech string, initial []byte) string {
	return "<auth xmlns='" + nsSASL + "' mechanism='" + mech + "'>" + base64.StdEncoding.EncodeToString(initial) + "</auth>"
}

func responseElem(b []byte) string {
	return "<response xmlns='" + nsSASL + "'>" + base64.StdEncoding.EncodeToString(b) + "</response>"
}

// plain tries PLAIN and returns "success" or the failure condition.
func plain(t *testing.T, r *servertest.Raw, authzid, user, password string) string {
	t.Helper()
	r.Write(authElem("PLAIN", []byte(authzid+"\x00"+user+"\x00"+password)))
	rep := readSASL(t, r)
	if rep.kind == "success" {
		return "success"
	}
	return rep.cond
}

// scramLogin runs SCRAM with a real client; mutate, if set, rewrites the
// client-final message. It returns "success" (after checking the server's
// signature) or the failure condition.
func scramLogin(t *testing.T, r *servertest.Raw, mech, user, password string, mutate func(string) string) string {
	t.Helper()
	hash := scram.SHA256
	if mech == "SCRAM-SHA-1" {
		hash = scram.SHA1
	}
	c, err := hash.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := c.NewConversation()
	first, _ := conv.Step("")
	r.Write(authElem(mech, []byte(first)))
	rep := readSASL(t, r)
	if rep.kind != "challenge" {
		return rep.cond
	}
	final, err := conv.Step(string(rep.data))
	if err != nil {
		t.Fatalf("client refused the server-first %q: %v", rep.data, err)
	}
	if mutate != nil {
		final = mutate(final)
	}
	r.Write(responseElem([]byte(final)))
	rep = readSASL(t, r)
	if rep.kind != "success" {
		return rep.cond
	}
	if _, err := conv.Step(string(rep.data)); err != nil {
		t.Fatalf("the server's signature does not verify: %v", err)
	}
	return "success"
}

// tlsFrom is afterTLS from a chosen source address.
func tlsFrom(t *testing.T, s *servertest.Server, ip string) *servertest.Raw {
	t.Helper()
	r := servertest.DialRawFrom(t, s.Addr, ip)
	r.StartTLS("")
	r.Write(clientHeader)
	r.ReadUntil("</stream:features>")
	return r
}

func TestSASLThrottleNeverLocksOutTheRealUser(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, func(c *config.Config) {
		c.Auth.FailuresPerIP = 6
		c.Auth.FailuresPerAccount = 3
		c.Auth.FailureWindow = config.Duration(10 * time.Minute)
	})
	s.AddUser(t, "alice", "right")
	const attacker, owner = "127.0.0.1", "127.0.0.2"

	// Guessing alice's password from one address: after three failures that
	// address may not try alice again, not even with the right password.
	a := tlsFrom(t, s, attacker)
	for i := 0; i < 3; i++ {
		if got := plain(t, a, "", "alice", fmt.Sprint("guess", i)); got != "not-authorized" {
			t.Fatalf("guess %d: %s, want not-authorized", i, got)
		}
	}
	if got := plain(t, a, "", "alice", "right"); got != "temporary-auth-failure" {
		t.Fatalf("attacker address after the account limit: %s, want temporary-auth-failure", got)
	}
	a2 := tlsFrom(t, s, attacker)
	if got := scramLogin(t, a2, "SCRAM-SHA-256", "alice", "right", nil); got != "temporary-auth-failure" {
		t.Fatalf("attacker address with SCRAM after the account limit: %s, want temporary-auth-failure", got)
	}

	// The owner, elsewhere, is not affected: PLAIN, SCRAM, and after a typo.
	if got := plain(t, tlsFrom(t, s, owner), "", "alice", "right"); got != "success" {
		t.Fatalf("owner (PLAIN): %s", got)
	}
	o := tlsFrom(t, s, owner)
	if got := scramLogin(t, o, "SCRAM-SHA-256", "alice", "typo", nil); got != "not-authorized" {
		t.Fatalf("owner's typo: %s", got)
	}
	if got := scramLogin(t, o, "SCRAM-SHA-256", "alice", "right", nil); got != "success" {
		t.Fatalf("owner (SCRAM) after a typo: %s", got)
	}

	// The attacker moves on to other names; the address limit (6) stops it
	// for every account.
	a3 := tlsFrom(t, s, attacker)
	for i := 0; i < 3; i++ {
		if got := plain(t, a3, "", fmt.Sprint("user", i), "x"); got != "not-authorized" {
			t.Fatalf("spray %d: %s", i, got)
		}
	}
	if got := plain(t, a3, "", "nobody", "x"); got != "temporary-auth-failure" {
		t.Fatalf("attacker address after the address limit: %s, want temporary-auth-failure", got)
	}
	r := servertest.DialRawFrom(t, s.Addr, owner)
	if jid := r.Login("alice", "right", "home", ""); jid != "alice@localhost/home" {
		t.Fatalf("owner bound %s", jid)
	}

	// A distributed attack, one guess from each of many addresses: each
	// address stays under its own limits, but past ten times the
	// per-account limit (30, counting the 4 failures above) the account
	// answers new addresses "try later" without looking at the password.
	outcomes := map[string]int{}
	for i := 10; i < 40; i++ {
		outcomes[plain(t, tlsFrom(t, s, fmt.Sprintf("127.0.0.%d", i)), "", "alice", "wrong")]++
	}
	if outcomes["not-authorized"] != 26 || outcomes["temporary-auth-failure"] != 4 {
		t.Fatalf("30 guesses from 30 addresses: %v, want 26 not-authorized then 4 temporary-auth-failure", outcomes)
	}
	// A new address is held back even with the right password (a guess
	// must tell nothing); the owner's address, where alice logged in
	// before, is not.
	if got := plain(t, tlsFrom(t, s, "127.0.0.99"), "", "alice", "right"); got != "temporary-auth-failure" {
		t.Fatalf("new address during a distributed attack: %s, want temporary-auth-failure", got)
	}
	if got := scramLogin(t, tlsFrom(t, s, owner), "SCRAM-SHA-1", "alice", "right", nil); got != "success" {
		t.Fatalf("owner during a distributed attack: %s", got)
	}
}

func TestSASLFailures(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t, func(c *config.Config) { c.Auth.FailuresPerIP = 1000; c.Auth.FailuresPerAccount = 1000 })
	s.AddUser(t, "alice", "right")
	s.AddUser(t, "bob", "bobs")
	s.AddUser(t, "carol", "carols")
	if err := s.Store.UpdateAccount(context.Background(), "carol", func(a *store.Account) error { a.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}

	t.Run("mechanisms offered", func(t *testing.T) {
		_, feats := afterTLS(t, s)
		var mechs []string
		for _, m := range mechanismRe.FindAllStringSubmatch(feats, -1) {
			mechs = append(mechs, m[1])
			if strings.HasSuffix(m[1], "-PLUS") {
				t.Errorf("offers %s, but channel binding is not implemented", m[1])
			}
		}
		if strings.Join(mechs, " ") != "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN" {
			t.Errorf("mechanisms %v", mechs)
		}
	})
	t.Run("SCRAM with the right password", func(t *testing.T) {
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1"} {
			r, _ := afterTLS(t, s)
			if got := scramLogin(t, r, mech, "alice", "right", nil); got != "success" {
				t.Fatalf("%s: %s", mech, got)
			}
		}
	})
	r, _ := afterTLS(t, s)
	step := func(name, want string, do func() string) {
		t.Helper()
		if got := do(); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	step("wrong password (SCRAM)", "not-authorized", func() string { return scramLogin(t, r, "SCRAM-SHA-256", "alice", "wrong", nil) })
	step("forged proof", "not-authorized", func() string {
		return scramLogin(t, r, "SCRAM-SHA-1", "alice", "right", func(f string) string {
			i := strings.Index(f, ",p=")
			return f[:i] + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 20))
		})
	})
	step("replayed nonce", "not-authorized", func() string {
		return scramLogin(t, r, "SCRAM-SHA-256", "alice", "right", func(f string) string {
			return strings.Replace(f, "r=", "r=x", 1)
		})
	})
	step("unknown mechanism", "invalid-mechanism", func() string {
		r.Write(authElem("X-MAGIC", []byte("hi")))
		return readSASL(t, r).cond
	})
	r = mustFresh(t, s, r)
	step("a -PLUS mechanism", "invalid-mechanism", func() string {
		r.Write(authElem("SCRAM-SHA-256-PLUS", []byte("p=tls-exporter,,n=alice,r=abc")))
		return readSASL(t, r).cond
	})
	step("no mechanism", "invalid-mechanism", func() string {
		r.Write("<auth xmlns='" + nsSASL + "'>AAAA</auth>")
		return readSASL(t, r).cond
	})
	step("malformed base64 in auth", "malformed-request", func() string {
		r.Write("<auth xmlns='" + nsSASL + "' mechanism='PLAIN'>!!!not base64***</auth>")
		return readSASL(t, r).cond
	})
	r = mustFresh(t, s, r)
	step("malformed base64 in response", "malformed-request", func() string {
		r.Write(authElem("SCRAM-SHA-256", []byte("n,,n=alice,r=abcdef")))
		if rep := readSASL(t, r); rep.kind != "challenge" {
			t.Fatalf("got %+v", rep)
		}
		r.Write("<response xmlns='" + nsSASL + "'>%%%</response>")
		return readSASL(t, r).cond
	})
	step("channel binding required by the client (p=)", "malformed-request", func() string {
		r.Write(authElem("SCRAM-SHA-256", []byte("p=tls-exporter,,n=alice,r=abcdef")))
		return readSASL(t, r).cond
	})
	step("channel binding data in the final message", "not-authorized", func() string {
		return scramLogin(t, r, "SCRAM-SHA-256", "alice", "right", func(f string) string {
			i := strings.Index(f, ",r=")
			return "c=" + base64.StdEncoding.EncodeToString([]byte("p=tls-exporter,,somebindingdata")) + f[i:]
		})
	})
	r = mustFresh(t, s, r)
	step("PLAIN with another account as authzid", "invalid-authzid", func() string { return plain(t, r, "bob@localhost", "alice", "right") })
	step("PLAIN, wrong password", "not-authorized", func() string { return plain(t, r, "", "alice", "wrong") })
	step("PLAIN, unknown user", "not-authorized", func() string { return plain(t, r, "", "ghost", "right") })
	step("PLAIN, disabled account", "account-disabled", func() string { return plain(t, r, "", "carol", "carols") })
	step("PLAIN, not three parts", "malformed-request", func() string {
		r.Write(authElem("PLAIN", []byte("alice\x00right")))
		return readSASL(t, r).cond
	})
	// Five failures on one connection end it.
	expectStreamError(t, r, "policy-violation")

	t.Run("abort", func(t *testing.T) {
		r, _ := afterTLS(t, s)
		r.Write(authElem("SCRAM-SHA-256", []byte("n,,n=alice,r=abcdef")))
		if rep := readSASL(t, r); rep.kind != "challenge" {
			t.Fatalf("got %+v", rep)
		}
		r.Write("<abort xmlns='" + nsSASL + "'/>")
		if rep := readSASL(t, r); rep.cond != "aborted" {
			t.Fatalf("abort answered with %+v", rep)
		}
		// The stream goes on: the real login still works.
		if got := scramLogin(t, r, "SCRAM-SHA-256", "alice", "right", nil); got != "success" {
			t.Fatal(got)
		}
	})
	t.Run("a clean failure leaves the stream usable", func(t *testing.T) {
		r, _ := afterTLS(t, s)
		r.Write(authElem("SCRAM-SHA-256", []byte("p=tls-unique,,n=alice,r=abcdef")))
		if rep := readSASL(t, r); rep.kind != "failure" {
			t.Fatalf("p= answered with %+v", rep)
		}
		if got := plain(t, r, "alice@localhost", "alice", "right"); got != "success" {
			t.Fatalf("login after a p= failure: %s", got)
		}
	})
	t.Run("unknown users get a normal-looking challenge", func(t *testing.T) {
		first := func(user string) map[string]string {
			r, _ := afterTLS(t, s)
			r.Write(authElem("SCRAM-SHA-256", []byte("n,,n="+user+",r=0123456789abcdef")))
			rep := readSASL(t, r)
			if rep.kind != "challenge" {
				t.Fatalf("%s: got %+v", user, rep)
			}
			f := map[string]string{}
			for _, kv := range strings.Split(string(rep.data), ",") {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			return f
		}
		real, ghost, ghost2 := first("alice"), first("ghost"), first("ghost")
		if real["i"] != ghost["i"] || len(real["s"]) != len(ghost["s"]) || len(real["r"]) != len(ghost["r"]) || len(real) != len(ghost) {
			t.Errorf("challenge for a real user %v, for an unknown one %v", real, ghost)
		}
		if ghost["s"] != ghost2["s"] {
			t.Error("an unknown user's salt changes from one attempt to the next")
		}
	})
	assertHealthy(t, s, "alice", "right")
}

// mustFresh replaces a connection that may have used up its attempts.
func mustFresh(t *testing.T, s *servertest.Server, old *servertest.Raw) *servertest.Raw {
	t.Helper()
	old.Conn.Close()
	r, _ := afterTLS(t, s)
	return r
}
