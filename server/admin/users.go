package admin

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/sasl"
)

// ParseUser accepts "alice" or "alice@DOMAIN" and returns the normalized
// localpart (the form the server authenticates against).
func ParseUser(s, domain string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty user name")
	}
	var j jid.JID
	var err error
	if strings.ContainsAny(s, "@/") {
		j, err = jid.Parse(s)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid JID: %w", s, err)
		}
		if j.Resourcepart() != "" {
			return "", fmt.Errorf("%q: give the account's bare JID, without a resource", s)
		}
		if !strings.EqualFold(j.Domainpart(), domain) {
			return "", fmt.Errorf("%q is not on this server's domain %q", s, domain)
		}
	} else {
		j, err = jid.New(s, domain, "")
		if err != nil {
			return "", fmt.Errorf("%q is not a valid user name: %w", s, err)
		}
	}
	if j.Localpart() == "" {
		return "", fmt.Errorf("%q has no user name (localpart)", s)
	}
	return j.Localpart(), nil
}

// ParseRole checks a role name.
func ParseRole(s string) (store.Role, error) {
	r := store.Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q (admin, member or limited)", s)
	}
	return r, nil
}

// passwordAlphabet leaves out characters people confuse when they copy a
// password by eye (0/O, 1/l/I).
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratePassword returns a random password of 20 characters from a
// 57-letter alphabet: about 116 bits.
func GeneratePassword() string {
	const n = 20
	out := make([]byte, n)
	// Rejection sampling keeps every letter equally likely.
	limit := 256 - 256%len(passwordAlphabet)
	var buf [64]byte
	for i := 0; i < n; {
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails
		for _, b := range buf {
			if int(b) < limit && i < n {
				out[i] = passwordAlphabet[int(b)%len(passwordAlphabet)]
				i++
			}
		}
	}
	return string(out)
}

// ReadPassword reads one line (the password) from r, without its line
// ending.
func ReadPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("no password on standard input")
		}
		return "", fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("the password on standard input is empty")
	}
	return pw, nil
}

// NewAccount derives credentials and returns the account to store.
func NewAccount(localpart, password string, role store.Role, iters int) (store.Account, error) {
	creds, err := sasl.DeriveCredentials(localpart, password, iters)
	if err != nil {
		return store.Account{}, err
	}
	return store.Account{Localpart: localpart, Role: role, Created: time.Now().UTC(), Scram: creds}, nil
}

// AddUser creates an account; with an empty password one is generated and
// returned.
func AddUser(ctx context.Context, ops Ops, user, password string, role store.Role) (localpart, generated string, err error) {
	info, err := ops.Info(ctx)
	if err != nil {
		return "", "", err
	}
	if localpart, err = ParseUser(user, info.Domain); err != nil {
		return "", "", err
	}
	if password == "" {
		password = GeneratePassword()
		generated = password
	}
	a, err := NewAccount(localpart, password, role, info.ScramIterations)
	if err != nil {
		return "", "", err
	}
	if err := ops.CreateUser(ctx, a); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", "", fmt.Errorf("%s@%s already exists", localpart, info.Domain)
		}
		return "", "", err
	}
	return localpart, generated, nil
}

// SetPassword derives and stores new credentials for user.
func SetPassword(ctx context.Context, ops Ops, user, password string) (localpart string, err error) {
	info, err := ops.Info(ctx)
	if err != nil {
		return "", err
	}
	if localpart, err = ParseUser(user, info.Domain); err != nil {
		return "", err
	}
	creds, err := sasl.DeriveCredentials(localpart, password, info.ScramIterations)
	if err != nil {
		return "", err
	}
	return localpart, notFound(ops.SetPassword(ctx, localpart, creds), localpart, info.Domain)
}

func notFound(err error, localpart, domain string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("there is no account %s@%s", localpart, domain)
	}
	return err
}

// SetDisabled resolves user and disables or enables it.
func SetDisabled(ctx context.Context, ops Ops, user string, disabled bool) (localpart string, kicked int, err error) {
	info, err := ops.Info(ctx)
	if err != nil {
		return "", 0, err
	}
	if localpart, err = ParseUser(user, info.Domain); err != nil {
		return "", 0, err
	}
	kicked, err = ops.SetDisabled(ctx, localpart, disabled)
	return localpart, kicked, notFound(err, localpart, info.Domain)
}

// DeleteUser resolves user and deletes it.
func DeleteUser(ctx context.Context, ops Ops, user string) (localpart string, kicked int, err error) {
	info, err := ops.Info(ctx)
	if err != nil {
		return "", 0, err
	}
	if localpart, err = ParseUser(user, info.Domain); err != nil {
		return "", 0, err
	}
	kicked, err = ops.DeleteUser(ctx, localpart)
	return localpart, kicked, notFound(err, localpart, info.Domain)
}
