// Package store defines what hearth persists, as small interfaces owned by
// the code that needs them; boltstore implements them on bbolt.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors shared by every implementation.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrQueueFull = errors.New("queue is full")
	ErrLimit     = errors.New("limit reached")
)

// Role is an account's server role.
type Role string

// Server roles (DESIGN.md decision 4).
const (
	RoleAdmin   Role = "admin"
	RoleMember  Role = "member"
	RoleLimited Role = "limited"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleMember || r == RoleLimited }

// ScramCredential is what SCRAM needs to verify a password without knowing
// it (RFC 5802): nothing here lets anyone recover the password.
type ScramCredential struct {
	Salt      []byte `json:"salt"`
	Iters     int    `json:"iters"`
	StoredKey []byte `json:"stored_key"`
	ServerKey []byte `json:"server_key"`
}

// Account is a local user.
type Account struct {
	Localpart string                     `json:"localpart"`
	Role      Role                       `json:"role"`
	Disabled  bool                       `json:"disabled,omitempty"`
	Created   time.Time                  `json:"created"`
	Scram     map[string]ScramCredential `json:"scram"` // by hash name: "SHA-1", "SHA-256"
}

// Accounts stores local accounts.
type Accounts interface {
	CreateAccount(ctx context.Context, a Account) error
	// PutAccounts creates or replaces many accounts in one transaction.
	PutAccounts(ctx context.Context, as []Account) error
	GetAccount(ctx context.Context, localpart string) (Account, error)
	UpdateAccount(ctx context.Context, localpart string, fn func(*Account) error) error
	// DeleteAccount removes the account and every piece of its data.
	DeleteAccount(ctx context.Context, localpart string) error
	ListAccounts(ctx context.Context) ([]Account, error)
}

// RosterItem is one contact in a user's roster (RFC 6121 section 2).
type RosterItem struct {
	JID          string   `json:"jid"`
	Name         string   `json:"name,omitempty"`
	Subscription string   `json:"subscription"`  // none, to, from, both
	Ask          bool     `json:"ask,omitempty"` // outbound subscribe pending
	PendingIn    bool     `json:"pending_in,omitempty"`
	Approved     bool     `json:"approved,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	// InRoster is false for entries that exist only to remember an inbound
	// subscription request from someone the user has not added.
	InRoster bool `json:"in_roster"`
}

// Rosters stores rosters with a version per user (XEP-0237).
type Rosters interface {
	// Roster returns the current version and every item.
	Roster(ctx context.Context, user string) (version uint64, items []RosterItem, err error)
	RosterItem(ctx context.Context, user, jid string) (RosterItem, error)
	// UpdateRosterItem reads the item (zero value with InRoster false and
	// Subscription "none" if absent), calls fn and stores the result: a nil
	// item from fn deletes it. It returns the new roster version, unchanged
	// when fn reported no change.
	UpdateRosterItem(ctx context.Context, user, jid string, fn func(item *RosterItem) (keep, changed bool, err error)) (uint64, error)
}

// Offline stores messages for users with no available resource (XEP-0160).
type Offline interface {
	// PushOffline appends a serialized stanza; ErrQueueFull when max is reached.
	PushOffline(ctx context.Context, user string, stanza []byte, max int) error
	// PopOffline returns and removes every stored stanza, oldest first.
	PopOffline(ctx context.Context, user string) ([][]byte, error)
	CountOffline(ctx context.Context, user string) (int, error)
}

// UserData stores small per-user documents keyed by a module's own names
// (vCard, private XML, block list, last activity...).
type UserData interface {
	GetUserData(ctx context.Context, user, kind, key string) ([]byte, error)
	PutUserData(ctx context.Context, user, kind, key string, value []byte) error
	DeleteUserData(ctx context.Context, user, kind, key string) error
	ListUserData(ctx context.Context, user, kind string) (map[string][]byte, error)
}

// Store is everything the server needs, implemented by one backend.
type Store interface {
	Accounts
	Rosters
	Offline
	UserData
	Close() error
}
