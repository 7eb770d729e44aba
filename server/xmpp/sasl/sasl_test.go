package sasl

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"

	"github.com/merveilles/hearth/server/store"
)

const (
	testDomain   = "localhost"
	testPassword = "correct horse"
	// testIters is far below MinIterations so that fuzzing is not all
	// PBKDF2; it only sets the cost, not what the code does.
	testIters = 2
)

var errGated = errors.New("gated")

type testAccounts map[string]store.Account

func (m testAccounts) lookup(_ context.Context, user string) (store.Account, error) {
	a, ok := m[user]
	if !ok {
		return store.Account{}, store.ErrNotFound
	}
	return a, nil
}

// credentials derives keys like DeriveCredentials but with testIters.
func credentials(t testing.TB, user, password string) map[string]store.ScramCredential {
	out := map[string]store.ScramCredential{}
	for _, mech := range []string{ScramSHA256, ScramSHA1} {
		c, err := hashes[mech].NewClient(user, password, "")
		if err != nil {
			t.Fatal(err)
		}
		salt := []byte("0123456789abcdef")
		sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: testIters})
		if err != nil {
			t.Fatal(err)
		}
		out[hashName(mech)] = store.ScramCredential{Salt: salt, Iters: testIters, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}
	}
	return out
}

// newTestServer has alice (enabled), bob (disabled, same password) and
// carol (same password, always refused by the gate).
func newTestServer(t testing.TB) (*Server, Gate) {
	accts := testAccounts{}
	for _, u := range []string{"alice", "bob", "carol"} {
		accts[u] = store.Account{Localpart: u, Disabled: u == "bob", Scram: credentials(t, u, testPassword)}
	}
	s := NewServer(testDomain, accts.lookup, testIters)
	gate := func(user string) error {
		if user == "carol" {
			return errGated
		}
		return nil
	}
	return s, gate
}

// clientLogin runs a full exchange with a real SCRAM client (or PLAIN) and
// reports whether the server accepted it.
func clientLogin(t testing.TB, s *Server, gate Gate, mech, user, password, authzid string) (bool, error) {
	x, err := s.Start(context.Background(), mech, gate)
	if err != nil {
		return false, err
	}
	if mech == Plain {
		_, done, err := x.Step([]byte(authzid + "\x00" + user + "\x00" + password))
		if !done {
			t.Fatal("PLAIN is one step")
		}
		return err == nil, err
	}
	c, err := hashes[mech].NewClient(user, password, authzid)
	if err != nil {
		return false, nil // the client refuses the credentials itself
	}
	conv := c.WithMinIterations(testIters).NewConversation()
	first, err := conv.Step("")
	if err != nil {
		return false, nil
	}
	out, done, err := x.Step([]byte(first))
	if err != nil || done {
		if err == nil {
			t.Fatal("SCRAM finished after the first message")
		}
		return false, err
	}
	final, err := conv.Step(string(out))
	if err != nil {
		t.Fatalf("client rejected the server-first %q: %v", out, err)
	}
	out, done, err = x.Step([]byte(final))
	if !done {
		t.Fatal("SCRAM not done after the final message")
	}
	if err != nil {
		return false, err
	}
	if _, err := conv.Step(string(out)); err != nil {
		t.Fatalf("client rejected the server signature: %v", err)
	}
	return true, nil
}

func TestMechanismsNeverPLUS(t *testing.T) {
	for _, m := range Mechanisms {
		if strings.HasSuffix(m, "-PLUS") {
			t.Fatalf("offers %s without channel binding", m)
		}
	}
	s, _ := newTestServer(t)
	for _, m := range []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "DIGEST-MD5", "", "plain", "EXTERNAL"} {
		if _, err := s.Start(context.Background(), m, nil); !errors.Is(err, ErrInvalidMech) {
			t.Errorf("mechanism %q: got %v, want ErrInvalidMech", m, err)
		}
	}
}

func TestLogins(t *testing.T) {
	s, gate := newTestServer(t)
	for _, mech := range Mechanisms {
		for _, tc := range []struct {
			user, password, authzid string
			want                    error
		}{
			{"alice", testPassword, "", nil},
			{"ALICE", testPassword, "", nil}, // usernames are case-mapped (PRECIS)
			{"alice", testPassword, "alice@localhost", nil},
			{"alice", "wrong", "", ErrNotAuthorized},
			{"alice", "", "", ErrNotAuthorized},
			{"nobody", testPassword, "", ErrNotAuthorized},
			{"bob", testPassword, "", ErrAccountDisabled},
			{"bob", "wrong", "", ErrNotAuthorized},
			{"carol", testPassword, "", errGated},
			{"alice", testPassword, "bob@localhost", ErrInvalidAuthzid},
			{"alice", testPassword, "alice@localhost/res", ErrInvalidAuthzid},
			{"alice", testPassword, "alice@elsewhere", ErrInvalidAuthzid},
		} {
			ok, err := clientLogin(t, s, gate, mech, tc.user, tc.password, tc.authzid)
			if mech != Plain && tc.password == "" {
				continue // the SCRAM client itself refuses an empty password
			}
			if ok != (tc.want == nil) || !errors.Is(err, tc.want) {
				t.Errorf("%s %s/%q authzid %q: ok=%v err=%v, want %v", mech, tc.user, tc.password, tc.authzid, ok, err, tc.want)
			}
		}
	}
}

// An unknown user must get a challenge that looks like a real one: same
// salt length, same iteration count, and the same salt every time (a salt
// that changed per attempt would give the game away).
func TestUnknownUserChallengeLooksReal(t *testing.T) {
	accts := testAccounts{}
	creds, err := DeriveCredentials("alice", testPassword, 4096)
	if err != nil {
		t.Fatal(err)
	}
	accts["alice"] = store.Account{Localpart: "alice", Scram: creds}
	s := NewServer(testDomain, accts.lookup, 4096)
	first := func(user string) map[string]string {
		x, err := s.Start(context.Background(), ScramSHA256, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, done, err := x.Step([]byte("n,,n=" + user + ",r=abcdefgh"))
		if err != nil || done {
			t.Fatalf("%s: done=%v err=%v", user, done, err)
		}
		f := map[string]string{}
		for _, kv := range strings.Split(string(out), ",") {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		return f
	}
	real, fake, fake2 := first("alice"), first("mallory"), first("mallory")
	if len(real) != len(fake) {
		t.Fatalf("fields differ: %v vs %v", real, fake)
	}
	if real["i"] != fake["i"] {
		t.Errorf("iterations differ: %s for a real user, %s for an unknown one", real["i"], fake["i"])
	}
	rs, _ := base64.StdEncoding.DecodeString(real["s"])
	fs, err := base64.StdEncoding.DecodeString(fake["s"])
	if err != nil || len(rs) != len(fs) {
		t.Errorf("salt lengths differ: %d vs %d (%v)", len(rs), len(fs), err)
	}
	if fake["s"] != fake2["s"] {
		t.Error("an unknown user's salt changes between attempts")
	}
	if !strings.HasPrefix(fake["r"], "abcdefgh") || len(fake["r"]) != len(real["r"]) {
		t.Errorf("nonces differ in shape: %q vs %q", real["r"], fake["r"])
	}
}

func TestSCRAMMalformed(t *testing.T) {
	s, gate := newTestServer(t)
	for _, tc := range []struct {
		name   string
		first  string
		final  string // used only if the first step succeeds
		wantEr error
	}{
		{"channel binding required (p=)", "p=tls-unique,,n=alice,r=abc", "", ErrMalformed},
		{"channel binding exporter (p=)", "p=tls-exporter,,n=alice,r=abc", "", ErrMalformed},
		{"bad gs2 flag", "x,,n=alice,r=abc", "", ErrMalformed},
		{"empty", "", "", ErrMalformed},
		{"no nonce", "n,,n=alice", "", ErrMalformed},
		{"garbage", "\xff\xfe\x00", "", ErrMalformed},
		{"bad username encoding", "n,,n=al=ice,r=abc", "", nil},
		{"wrong proof", "n,,n=alice,r=abc", "c=biws,r=abc,p=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), ErrNotAuthorized},
		{"wrong nonce", "n,,n=alice,r=abc", "c=biws,r=zzz,p=AAAA", ErrNotAuthorized},
		{"channel binding data sneaked in", "y,,n=alice,r=abc", "c=" + base64.StdEncoding.EncodeToString([]byte("p=tls-unique,,xyz")) + ",r=abc,p=AAAA", ErrNotAuthorized},
		{"final garbage", "n,,n=alice,r=abc", "\x00\x00", ErrNotAuthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, _ := s.Start(context.Background(), ScramSHA256, gate)
			_, done, err := x.Step([]byte(tc.first))
			if err == nil && !done {
				_, done, err = x.Step([]byte(tc.final))
			}
			if err == nil || !done {
				t.Fatalf("done=%v err=%v, want failure", done, err)
			}
			if tc.wantEr != nil && !errors.Is(err, tc.wantEr) {
				t.Fatalf("got %v, want %v", err, tc.wantEr)
			}
		})
	}
}

func TestPLAINMalformed(t *testing.T) {
	s, gate := newTestServer(t)
	for _, in := range []string{"", "alice", "\x00alice", "\x00alice\x00pw\x00x", "\x00\x00" + testPassword, "\x00ali\xffce\x00" + testPassword, "\x00alice@localhost\x00" + testPassword} {
		x, _ := s.Start(context.Background(), Plain, gate)
		_, done, err := x.Step([]byte(in))
		if err == nil || !done {
			t.Errorf("PLAIN %q: done=%v err=%v, want failure", in, done, err)
		}
		// A second step on a finished exchange is refused, never a success.
		if _, _, err := x.Step([]byte("\x00alice\x00" + testPassword)); err == nil {
			t.Errorf("PLAIN %q: a second step succeeded", in)
		}
	}
}

// FuzzSASL drives the server side of every mechanism with arbitrary
// messages (raw mode) or with a real client whose username and password are
// fuzzed (client mode). It must never panic and must never accept anything
// but the right password of an enabled, ungated account.
//
// The seed corpus is in testdata/fuzz/FuzzSASL; go test replays it.
func FuzzSASL(f *testing.F) {
	f.Add(uint8(0), []byte("n,,n=alice,r=abc"), []byte("c=biws,r=abc,p=AAAA"), "")
	f.Add(uint8(2), []byte("\x00alice\x00"+testPassword), []byte(nil), "")
	f.Add(uint8(3), []byte("alice"), []byte(nil), testPassword)
	f.Add(uint8(5), []byte("alice"), []byte("alice@localhost"), "correct\u00a0horse")
	s, gate := newTestServer(f)
	right, _ := stringprep.SASLprep.Prepare(testPassword)
	f.Fuzz(func(t *testing.T, sel uint8, a, b []byte, password string) {
		mech := Mechanisms[int(sel)%len(Mechanisms)]
		if sel/uint8(len(Mechanisms))%2 == 1 {
			ok, _ := clientLogin(t, s, gate, mech, string(a), password, string(b))
			if !ok {
				return
			}
			user, _ := NormalizeUsername(string(a), testDomain)
			if p, err := stringprep.SASLprep.Prepare(password); err != nil || p != right || user != "alice" {
				t.Fatalf("%s accepted user %q password %q authzid %q", mech, a, password, b)
			}
			return
		}
		x, err := s.Start(context.Background(), mech, gate)
		if err != nil {
			t.Fatal(err)
		}
		out, done, err := x.Step(a)
		if err == nil && !done {
			out, done, err = x.Step(b)
		}
		if !done && err == nil {
			t.Fatalf("%s: not done after two steps (out %q)", mech, out)
		}
		if err != nil {
			return
		}
		// Success from raw input: only possible for PLAIN with the right
		// password; a SCRAM proof would need the server's random nonce.
		if mech != Plain {
			t.Fatalf("%s succeeded on raw input %q, %q", mech, a, b)
		}
		parts := strings.Split(string(a), "\x00")
		if p, err := stringprep.SASLprep.Prepare(parts[2]); err != nil || p != right || x.Username() != "alice" {
			t.Fatalf("PLAIN accepted %q as %s", a, x.Username())
		}
	})
}
