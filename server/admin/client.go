package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

// Client sends operations to the daemon over its admin socket.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	sc   *bufio.Scanner
	path string
}

var _ Ops = (*Client)(nil)

// Dial connects to the admin socket and checks that a daemon answers.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	c := &Client{conn: conn, sc: sc, path: path}
	if _, err := c.Info(dctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Close hangs up.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context, req request) (response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Imports send large batches that the daemon writes in one transaction;
	// without a deadline from the caller, allow a generous one.
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Minute)
	}
	_ = c.conn.SetDeadline(deadline)
	raw, err := json.Marshal(req)
	if err != nil {
		return response{}, err
	}
	if _, err := c.conn.Write(append(raw, '\n')); err != nil {
		return response{}, fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	if !c.sc.Scan() {
		err := c.sc.Err()
		if err == nil {
			err = errors.New("the daemon closed the connection")
		}
		return response{}, fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	var resp response
	if err := json.Unmarshal(c.sc.Bytes(), &resp); err != nil {
		return response{}, fmt.Errorf("admin socket %s: bad response: %w", c.path, err)
	}
	if resp.Error != "" {
		return resp, remoteError(resp)
	}
	return resp, nil
}

// remoteError keeps the daemon's message while letting callers match the
// store's sentinel errors.
func remoteError(r response) error {
	switch r.Code {
	case codeNotFound:
		return wrapped{msg: r.Error, err: store.ErrNotFound}
	case codeExists:
		return wrapped{msg: r.Error, err: store.ErrExists}
	case codeNoRoom:
		return wrapped{msg: r.Error, err: muc.ErrNoRoom}
	case codeRoomExists:
		return wrapped{msg: r.Error, err: muc.ErrRoomExists}
	}
	return errors.New(r.Error)
}

type wrapped struct {
	msg string
	err error
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }

// Info asks the daemon for its domain and iteration count.
func (c *Client) Info(ctx context.Context) (Info, error) {
	r, err := c.call(ctx, request{Op: opInfo})
	if err != nil {
		return Info{}, err
	}
	if r.Info == nil {
		return Info{}, fmt.Errorf("admin socket %s: the daemon sent no info", c.path)
	}
	return *r.Info, nil
}

// CreateUser creates an account.
func (c *Client) CreateUser(ctx context.Context, a store.Account) error {
	_, err := c.call(ctx, request{Op: opCreateUser, Account: &a, Localpart: a.Localpart})
	return err
}

// ListUsers lists accounts with their live session counts.
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	r, err := c.call(ctx, request{Op: opListUsers})
	return r.Users, err
}

// SetPassword replaces an account's credentials.
func (c *Client) SetPassword(ctx context.Context, localpart string, creds map[string]store.ScramCredential) error {
	_, err := c.call(ctx, request{Op: opSetPassword, Localpart: localpart, Scram: creds})
	return err
}

// SetDisabled disables or enables an account.
func (c *Client) SetDisabled(ctx context.Context, localpart string, disabled bool) (int, error) {
	r, err := c.call(ctx, request{Op: opSetDisabled, Localpart: localpart, Disabled: disabled})
	return r.Kicked, err
}

// DeleteUser deletes an account and ends its sessions.
func (c *Client) DeleteUser(ctx context.Context, localpart string) (int, error) {
	r, err := c.call(ctx, request{Op: opDeleteUser, Localpart: localpart})
	return r.Kicked, err
}

// PutUsers writes a batch of accounts.
func (c *Client) PutUsers(ctx context.Context, as []store.Account) error {
	_, err := c.call(ctx, request{Op: opPutUsers, Accounts: as})
	return err
}

// ErrUnreachable means the database is locked by a running daemon whose
// admin socket does not answer.
var ErrUnreachable = errors.New("the daemon seems to be running but its admin socket is not reachable")

// Connect returns operations on the instance cfg describes: through the
// daemon's socket when it answers, otherwise directly on the database. With
// create, a missing database is created (accounts may be provisioned before
// the first start); otherwise a missing one is an error, so a mistyped
// --data does not silently show an empty instance.
func Connect(ctx context.Context, cfg *config.Config, create bool) (Ops, error) {
	sock := cfg.AdminSocket()
	c, sockErr := Dial(ctx, sock)
	if sockErr == nil {
		return c, nil
	}
	db := cfg.DBPath()
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) && !create {
		return nil, fmt.Errorf("no hearth instance here: the admin socket %s does not answer (%v) and there is no database at %s; check --data/--config, or start hearth once", sock, sockErr, db)
	}
	st, err := boltstore.Open(db)
	if err != nil && errors.Is(sockErr, os.ErrPermission) {
		// The usual case: a chat admin outside the admin group, with the
		// daemon running (the database is locked or unreadable anyway).
		return nil, fmt.Errorf("%w on the admin socket %s: run hearth admin as a member of %s, or with sudo",
			ErrPermission, sock, adminGroup(cfg))
	}
	if err != nil && errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("%w: the daemon does not answer on %s (%v) and the database %s cannot be opened (%v); with the daemon stopped, run hearth admin as root (sudo) or as the daemon's user",
			ErrPermission, sock, sockErr, db, err)
	}
	if errors.Is(err, boltstore.ErrLocked) {
		return nil, fmt.Errorf("%w: the database %s is locked, but the socket %s fails: %v.\n"+
			"Check that the daemon was started with this same data directory/config (admin.socket), "+
			"that you may use the socket (owner, or the admin group), and the daemon's log for admin socket errors",
			ErrUnreachable, db, sock, sockErr)
	}
	if err != nil {
		return nil, fmt.Errorf("the daemon does not answer on %s (%v) and opening the database failed: %w", sock, sockErr, err)
	}
	return &Local{Store: st, Domain: cfg.Domain, ScramIterations: cfg.Auth.ScramIterations, Closer: st.Close,
		Rooms: muc.Offline(st, cfg, nil)}, nil
}

// ErrPermission means this Unix user may not use the admin socket (nor the
// database).
var ErrPermission = errors.New("permission denied")

// adminGroup names the group whose members may use the socket.
func adminGroup(cfg *config.Config) string {
	if cfg.Admin.Group != "" {
		return "the group " + cfg.Admin.Group + " (admin.group)"
	}
	return "the admin group (admin.group in hearth.yaml, hearth-admin when installed)"
}
