// Package sasl is hearth's server side of SASL: SCRAM-SHA-256, SCRAM-SHA-1
// and PLAIN, verifying against stored SCRAM credentials only.
//
// mellium's server path never hands salted credentials to its SCRAM code, so
// hearth drives github.com/xdg-go/scram directly. No -PLUS mechanism is
// offered: channel binding is not implemented, and advertising it without
// doing it invites downgrade confusion.
package sasl

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/xdg-go/scram"
	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
)

// Mechanism names, in order of preference.
const (
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA1   = "SCRAM-SHA-1"
	Plain       = "PLAIN"
)

// Mechanisms lists what the server offers (always over TLS).
var Mechanisms = []string{ScramSHA256, ScramSHA1, Plain}

// MinIterations is the lowest PBKDF2 iteration count hearth accepts.
const MinIterations = 4096

// Failure reasons, mapped by the stream layer to RFC 6120 SASL conditions.
var (
	ErrNotAuthorized   = errors.New("not-authorized")
	ErrMalformed       = errors.New("malformed-request")
	ErrInvalidAuthzid  = errors.New("invalid-authzid")
	ErrAccountDisabled = errors.New("account-disabled")
	ErrInvalidMech     = errors.New("invalid-mechanism")
)

var hashes = map[string]scram.HashGeneratorFcn{
	ScramSHA256: scram.SHA256,
	ScramSHA1:   scram.SHA1,
}

// hashName is the key under which an account stores each mechanism's keys.
func hashName(mech string) string {
	if mech == ScramSHA1 {
		return "SHA-1"
	}
	return "SHA-256"
}

// DeriveCredentials computes the stored SCRAM keys for a password, one set
// per hash, each with its own random salt. It is deliberately slow (PBKDF2).
func DeriveCredentials(username, password string, iters int) (map[string]store.ScramCredential, error) {
	if iters < MinIterations {
		return nil, fmt.Errorf("SCRAM iteration count %d is below the minimum %d", iters, MinIterations)
	}
	if password == "" {
		return nil, errors.New("the password is empty")
	}
	out := make(map[string]store.ScramCredential, 2)
	for _, mech := range []string{ScramSHA256, ScramSHA1} {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return nil, err
		}
		c, err := hashes[mech].NewClient(username, password, "")
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iters})
		if err != nil {
			return nil, fmt.Errorf("password: %w", err)
		}
		out[hashName(mech)] = store.ScramCredential{Salt: salt, Iters: iters, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}
	}
	return out, nil
}

// CheckPassword verifies a cleartext password (PLAIN) against stored keys.
func CheckPassword(a store.Account, password string) bool {
	cred, ok := a.Scram["SHA-256"]
	if !ok {
		return false
	}
	c, err := scram.SHA256.NewClient(a.Localpart, password, "")
	if err != nil {
		return false
	}
	sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(cred.Salt), Iters: cred.Iters})
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(sc.StoredKey, cred.StoredKey) == 1
}

// NormalizeUsername maps what a client typed to the account's localpart.
func NormalizeUsername(username, domain string) (string, error) {
	j, err := jid.New(username, domain, "")
	if err != nil || j.Localpart() == "" {
		return "", ErrNotAuthorized
	}
	return j.Localpart(), nil
}

// AccountLookup finds an account by normalized localpart.
type AccountLookup func(ctx context.Context, localpart string) (store.Account, error)

// Server holds what every authentication exchange needs.
type Server struct {
	Domain string
	Lookup AccountLookup
	// Iterations is used for the fake credentials of unknown users, so that
	// their first SCRAM challenge looks like a real one.
	Iterations int
	fakeKey    []byte
	// fake is checked instead of a missing account's keys so that PLAIN
	// spends the same PBKDF2 time whether or not the account exists.
	fake store.Account
}

// NewServer returns a SASL server for domain.
func NewServer(domain string, lookup AccountLookup, iterations int) *Server {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	fake := store.Account{Localpart: "\x00", Scram: map[string]store.ScramCredential{
		"SHA-256": {Salt: salt, Iters: max(iterations, MinIterations), StoredKey: k, ServerKey: k},
	}}
	return &Server{Domain: domain, Lookup: lookup, Iterations: iterations, fakeKey: k, fake: fake}
}

// Gate is consulted once the username is known and before any password is
// checked; a non-nil error ends the exchange with that error. The stream
// layer uses it for per-account throttling, so a throttled guess costs no
// PBKDF2 and reveals nothing about the password.
type Gate func(username string) error

// Exchange is one authentication attempt in progress.
type Exchange interface {
	// Step consumes the client's message and returns the server's answer.
	// done with a nil error means success; a non-nil error means failure.
	Step(in []byte) (out []byte, done bool, err error)
	// Username is the localpart being authenticated ("" until known).
	Username() string
}

// Start begins an exchange for mechanism mech. gate may be nil.
func (s *Server) Start(ctx context.Context, mech string, gate Gate) (Exchange, error) {
	if gate == nil {
		gate = func(string) error { return nil }
	}
	switch mech {
	case Plain:
		return &plainExchange{s: s, ctx: ctx, gate: gate}, nil
	case ScramSHA1, ScramSHA256:
		return &scramExchange{s: s, ctx: ctx, mech: mech, gate: gate}, nil
	}
	return nil, ErrInvalidMech
}

type plainExchange struct {
	s    *Server
	ctx  context.Context
	gate Gate
	user string
	done bool
}

func (p *plainExchange) Username() string { return p.user }

func (p *plainExchange) Step(in []byte) ([]byte, bool, error) {
	if p.done {
		return nil, true, ErrMalformed
	}
	p.done = true
	parts := bytes.Split(in, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || !utf8.Valid(in) {
		return nil, true, ErrMalformed
	}
	user, err := NormalizeUsername(string(parts[1]), p.s.Domain)
	if err != nil {
		return nil, true, err
	}
	p.user = user
	if len(parts[0]) > 0 && !p.s.authzidMatches(string(parts[0]), user) {
		return nil, true, ErrInvalidAuthzid
	}
	if err := p.gate(user); err != nil {
		return nil, true, err
	}
	a, err := p.s.Lookup(p.ctx, user)
	if err != nil {
		// Same work as for a real account, so timing does not tell.
		CheckPassword(p.s.fake, string(parts[2]))
		return nil, true, ErrNotAuthorized
	}
	if !CheckPassword(a, string(parts[2])) {
		return nil, true, ErrNotAuthorized
	}
	if a.Disabled {
		return nil, true, ErrAccountDisabled
	}
	return nil, true, nil
}

// authzidMatches accepts an authorization identity only when it names the
// authenticated account itself: hearth has no proxy authorization.
func (s *Server) authzidMatches(authzid, user string) bool {
	j, err := jid.Parse(authzid)
	if err != nil {
		return false
	}
	return j.Localpart() == user && j.Domainpart() == s.Domain && j.Resourcepart() == ""
}

type scramExchange struct {
	s        *Server
	ctx      context.Context
	mech     string
	gate     Gate
	gateErr  error
	conv     *scram.ServerConversation
	user     string
	disabled bool
	step     int
}

func (x *scramExchange) Username() string { return x.user }

func (x *scramExchange) lookup(name string) (scram.StoredCredentials, error) {
	user, err := NormalizeUsername(name, x.s.Domain)
	if err != nil {
		return scram.StoredCredentials{}, err
	}
	x.user = user
	if err := x.gate(user); err != nil {
		x.gateErr = err
		return scram.StoredCredentials{}, err
	}
	a, err := x.s.Lookup(x.ctx, user)
	if err == nil {
		if c, ok := a.Scram[hashName(x.mech)]; ok {
			x.disabled = a.Disabled
			return scram.StoredCredentials{
				KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iters},
				StoredKey:  c.StoredKey, ServerKey: c.ServerKey,
			}, nil
		}
	}
	// Unknown users get a stable, unguessable salt and keys no password
	// matches, so the challenge does not reveal whether the account exists.
	m := hmac.New(sha256.New, x.s.fakeKey)
	m.Write([]byte(x.mech + "\x00" + user))
	sum := m.Sum(nil)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: x.s.Iterations},
		StoredKey:  sum, ServerKey: sum,
	}, nil
}

func (x *scramExchange) Step(in []byte) ([]byte, bool, error) {
	x.step++
	switch x.step {
	case 1:
		srv, err := hashes[x.mech].NewServer(x.lookup)
		if err != nil {
			return nil, true, err
		}
		x.conv = srv.NewConversation()
		out, err := x.conv.Step(string(in))
		if err != nil {
			if x.gateErr != nil {
				return nil, true, x.gateErr
			}
			if x.user == "" {
				return nil, true, ErrMalformed
			}
			return nil, true, ErrNotAuthorized
		}
		if az := x.conv.AuthzID(); az != "" && !x.s.authzidMatches(az, x.user) {
			return nil, true, ErrInvalidAuthzid
		}
		return []byte(out), false, nil
	case 2:
		out, err := x.conv.Step(string(in))
		if err != nil || !x.conv.Valid() {
			return nil, true, ErrNotAuthorized
		}
		if x.disabled {
			return nil, true, ErrAccountDisabled
		}
		// RFC 6120 6.3.10: the server's final message goes in <success/>.
		return []byte(out), true, nil
	}
	return nil, true, ErrMalformed
}
