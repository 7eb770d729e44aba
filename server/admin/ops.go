// Package admin is account administration for `hearth admin`: the
// operations, a unix-socket server the daemon runs so they apply to live
// sessions, and the client that talks to it or, with the daemon stopped,
// to the store directly.
//
// Passwords never cross the socket: the client derives the SCRAM keys itself
// (with the daemon's iteration count) and sends only those.
package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/muc"
	"github.com/merveilles/hearth/server/xmpp/sasl"
)

// Info describes the instance the client is talking to.
type Info struct {
	Domain          string `json:"domain"`
	ScramIterations int    `json:"scram_iterations"`
	// Daemon is true when the answer comes from the running server, so
	// changes apply to live sessions too.
	Daemon bool `json:"daemon"`
}

// User is an account as listed, without credentials.
type User struct {
	Localpart string     `json:"localpart"`
	JID       string     `json:"jid"`
	Role      store.Role `json:"role"`
	Disabled  bool       `json:"disabled"`
	Created   time.Time  `json:"created"`
	// Sessions is the number of connected resources; only the daemon knows.
	Sessions int `json:"sessions"`
}

// Ops is every administrative operation. The socket client and Local both
// implement it, so the command line does not care which one it has.
type Ops interface {
	Info(ctx context.Context) (Info, error)
	CreateUser(ctx context.Context, a store.Account) error
	ListUsers(ctx context.Context) ([]User, error)
	SetPassword(ctx context.Context, localpart string, creds map[string]store.ScramCredential) error
	// SetDisabled disables or enables an account; disabling ends its live
	// sessions and reports how many.
	SetDisabled(ctx context.Context, localpart string, disabled bool) (kicked int, err error)
	// DeleteUser removes the account with all its data and ends its live
	// sessions.
	DeleteUser(ctx context.Context, localpart string) (kicked int, err error)
	// PutUsers creates or replaces accounts in one transaction.
	PutUsers(ctx context.Context, as []store.Account) error

	// Room administration (rooms.go). actor is who the audit log names,
	// "cli:" and the Unix user running hearth admin.
	CreateRoom(ctx context.Context, actor string, spec muc.RoomSpec) (muc.RoomStatus, error)
	ListRooms(ctx context.Context) ([]muc.RoomStatus, error)
	// Audit lists the newest limit entries of the audit log (0: all).
	Audit(ctx context.Context, limit int) ([]store.AuditEntry, error)
	ShowRoom(ctx context.Context, name string) (muc.RoomStatus, error)
	SetRoom(ctx context.Context, actor, name string, ch muc.RoomChange) (muc.RoomStatus, error)
	// DestroyRoom ends a room; those present are sent to alternate, if any.
	DestroyRoom(ctx context.Context, actor, name, alternate, reason string) error
	// AffiliateRoom sets who's affiliation: owner, admin, member, outcast
	// (banned) or none (removed).
	AffiliateRoom(ctx context.Context, actor, name, who string, aff store.Affiliation) (muc.RoomStatus, error)

	Close() error
}

// Local applies operations to a store in this process: inside the daemon
// (with Sessions and Kick wired to the router) or directly on the database
// file when the daemon is stopped.
type Local struct {
	Store           store.Accounts
	Domain          string
	ScramIterations int
	Daemon          bool
	// Sessions counts a user's connected resources; nil means none.
	Sessions func(localpart string) int
	// Kick ends a user's live sessions with reason and returns how many.
	Kick func(localpart, reason string) int
	// Rooms is the group chat service: the daemon's live module, so
	// occupants see changes, or muc.Offline on the store in direct mode.
	// Nil refuses room operations.
	Rooms *muc.Module
	// Closer releases the store when the client is done (direct mode).
	Closer func() error
}

var _ Ops = (*Local)(nil)

// Info reports the domain and iteration count.
func (l *Local) Info(ctx context.Context) (Info, error) {
	return Info{Domain: l.Domain, ScramIterations: l.ScramIterations, Daemon: l.Daemon}, nil
}

// CreateUser stores a new account; store.ErrExists if it is taken.
func (l *Local) CreateUser(ctx context.Context, a store.Account) error {
	if err := checkAccount(a); err != nil {
		return err
	}
	return l.Store.CreateAccount(ctx, a)
}

// ListUsers returns every account sorted by name.
func (l *Local) ListUsers(ctx context.Context) ([]User, error) {
	as, err := l.Store.ListAccounts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(as))
	for _, a := range as {
		u := User{Localpart: a.Localpart, JID: a.Localpart + "@" + l.Domain, Role: a.Role, Disabled: a.Disabled, Created: a.Created}
		if l.Sessions != nil {
			u.Sessions = l.Sessions(a.Localpart)
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Localpart < out[j].Localpart })
	return out, nil
}

// SetPassword replaces an account's credentials. Live sessions stay: they
// authenticated with what was valid at the time.
func (l *Local) SetPassword(ctx context.Context, localpart string, creds map[string]store.ScramCredential) error {
	if err := checkCreds(creds); err != nil {
		return err
	}
	return l.Store.UpdateAccount(ctx, localpart, func(a *store.Account) error {
		a.Scram = creds
		return nil
	})
}

// SetDisabled flips the disabled flag; disabling ends live sessions.
func (l *Local) SetDisabled(ctx context.Context, localpart string, disabled bool) (int, error) {
	err := l.Store.UpdateAccount(ctx, localpart, func(a *store.Account) error {
		a.Disabled = disabled
		return nil
	})
	if err != nil || !disabled || l.Kick == nil {
		return 0, err
	}
	return l.Kick(localpart, "your account has been disabled"), nil
}

// DeleteUser removes the account first, so a kicked client cannot log in
// again in between, then ends its sessions.
func (l *Local) DeleteUser(ctx context.Context, localpart string) (int, error) {
	if err := l.Store.DeleteAccount(ctx, localpart); err != nil {
		return 0, err
	}
	if l.Kick == nil {
		return 0, nil
	}
	return l.Kick(localpart, "your account has been deleted"), nil
}

// PutUsers writes a batch of accounts in one transaction.
func (l *Local) PutUsers(ctx context.Context, as []store.Account) error {
	for _, a := range as {
		if err := checkAccount(a); err != nil {
			return err
		}
	}
	return l.Store.PutAccounts(ctx, as)
}

// Close releases the store in direct mode.
func (l *Local) Close() error {
	if l.Closer == nil {
		return nil
	}
	return l.Closer()
}

// checkAccount guards the store against malformed requests, which may come
// from another process over the socket.
func checkAccount(a store.Account) error {
	if a.Localpart == "" {
		return errors.New("account without a name")
	}
	if !a.Role.Valid() {
		return fmt.Errorf("account %q: unknown role %q (admin, member or limited)", a.Localpart, a.Role)
	}
	return checkCreds(a.Scram)
}

func checkCreds(creds map[string]store.ScramCredential) error {
	for _, h := range []string{"SHA-256", "SHA-1"} {
		c, ok := creds[h]
		if !ok || len(c.Salt) == 0 || len(c.StoredKey) == 0 || len(c.ServerKey) == 0 {
			return fmt.Errorf("credentials: missing SCRAM-%s keys", h)
		}
		if c.Iters < sasl.MinIterations {
			return fmt.Errorf("credentials: %d SCRAM iterations is below the minimum of %d", c.Iters, sasl.MinIterations)
		}
	}
	return nil
}
