package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

// The wire protocol is JSON lines: one request object per line from the
// client, one response object per line back, in order, as many as the
// client likes on one connection.

// Operation names.
const (
	opInfo        = "info"
	opCreateUser  = "create_user"
	opListUsers   = "list_users"
	opSetPassword = "set_password"
	opSetDisabled = "set_disabled"
	opDeleteUser  = "delete_user"
	opPutUsers    = "put_users"

	opCreateRoom    = "create_room"
	opListRooms     = "list_rooms"
	opShowRoom      = "show_room"
	opSetRoom       = "set_room"
	opDestroyRoom   = "destroy_room"
	opAffiliateRoom = "affiliate_room"
	opAudit         = "audit"
)

// maxLine bounds one request; an import batch of a few thousand accounts
// fits comfortably.
const maxLine = 16 << 20

type request struct {
	Op        string                           `json:"op"`
	Localpart string                           `json:"localpart,omitempty"`
	Disabled  bool                             `json:"disabled,omitempty"`
	Account   *store.Account                   `json:"account,omitempty"`
	Accounts  []store.Account                  `json:"accounts,omitempty"`
	Scram     map[string]store.ScramCredential `json:"scram,omitempty"`

	// Room operations. Actor is "cli:" and the client's Unix user, for the
	// audit log.
	Actor       string            `json:"actor,omitempty"`
	Room        string            `json:"room,omitempty"`
	Spec        *muc.RoomSpec     `json:"spec,omitempty"`
	Change      *muc.RoomChange   `json:"change,omitempty"`
	Alternate   string            `json:"alternate,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Who         string            `json:"who,omitempty"`
	Affiliation store.Affiliation `json:"affiliation,omitempty"`
	Limit       int               `json:"limit,omitempty"`
}

type response struct {
	Error string `json:"error,omitempty"`
	// Code lets the client rebuild errors callers test with errors.Is.
	Code   string `json:"code,omitempty"`
	Info   *Info  `json:"info,omitempty"`
	Users  []User `json:"users,omitempty"`
	Kicked int    `json:"kicked,omitempty"`

	Room  *muc.RoomStatus  `json:"room,omitempty"`
	Rooms []muc.RoomStatus `json:"rooms,omitempty"`

	Audit []store.AuditEntry `json:"audit,omitempty"`
}

const (
	codeNotFound   = "not_found"
	codeExists     = "exists"
	codeNoRoom     = "no_room"
	codeRoomExists = "room_exists"
)

// Server answers admin requests on a unix socket.
type Server struct {
	// Backend returns the operations of the running server; it fails while
	// the chat service is restarting.
	Backend func() (Ops, error)
	Log     *slog.Logger

	ln   net.Listener
	path string
}

// Listen creates the socket at path, readable only by the owner (0600) or,
// with group set, by that group too (0660). A stale socket left by a crash
// is replaced.
func Listen(path, group string) (*Server, error) {
	// sun_path holds 108 bytes including the terminating NUL.
	if len(path) > 107 {
		return nil, fmt.Errorf("admin socket path %s is %d bytes, longer than a unix socket allows (107); set admin.socket in the configuration or use a shorter data directory", path, len(path))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("admin socket: group %q: %w", group, err)
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("admin socket: group %q has gid %q", group, g.Gid)
		}
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another hearth is already answering on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: remove stale %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin socket: give %s to group %q: %w", path, group, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &Server{ln: ln, path: path}, nil
}

// Close removes a socket that was never served.
func (s *Server) Close() error {
	err := s.ln.Close()
	_ = os.Remove(s.path)
	return err
}

// Path is where the socket lives.
func (s *Server) Path() string { return s.path }

// Serve answers connections until ctx ends; then the socket is closed and
// removed, and Serve returns nil once every connection has finished.
func (s *Server) Serve(ctx context.Context) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		s.ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = s.ln.Accept()
		if err != nil {
			break
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c, log)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
	s.ln.Close()
	wg.Wait()
	if ctx.Err() != nil {
		// Only the socket this server made: a new daemon may own the path
		// already if this one is being replaced.
		_ = os.Remove(s.path)
		return nil
	}
	return fmt.Errorf("admin socket: %w", err)
}

func (s *Server) serveConn(ctx context.Context, c net.Conn, log *slog.Logger) {
	peer := peerActor(c)
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp = errorResponse(fmt.Errorf("bad request: %w", err))
		} else {
			if peer != "" {
				// The kernel's word, not the client's, goes in the audit log.
				req.Actor = peer
			}
			resp = s.handle(ctx, req)
			log.Info("admin request", "op", req.Op, "user", req.Localpart, "accounts", len(req.Accounts), "room", req.Room, "actor", req.Actor, "error", resp.Error)
		}
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		_ = enc.Encode(errorResponse(fmt.Errorf("bad request: %w", err)))
	}
}

func (s *Server) handle(ctx context.Context, req request) response {
	ops, err := s.Backend()
	if err != nil {
		return errorResponse(err)
	}
	var resp response
	switch req.Op {
	case opInfo:
		var info Info
		info, err = ops.Info(ctx)
		resp.Info = &info
	case opCreateUser:
		if req.Account == nil {
			return errorResponse(errors.New("bad request: no account"))
		}
		err = ops.CreateUser(ctx, *req.Account)
	case opListUsers:
		resp.Users, err = ops.ListUsers(ctx)
	case opSetPassword:
		err = ops.SetPassword(ctx, req.Localpart, req.Scram)
	case opSetDisabled:
		resp.Kicked, err = ops.SetDisabled(ctx, req.Localpart, req.Disabled)
	case opDeleteUser:
		resp.Kicked, err = ops.DeleteUser(ctx, req.Localpart)
	case opPutUsers:
		err = ops.PutUsers(ctx, req.Accounts)
	case opCreateRoom:
		if req.Spec == nil {
			return errorResponse(errors.New("bad request: no room"))
		}
		resp.Room, err = roomResult(ops.CreateRoom(ctx, req.Actor, *req.Spec))
	case opListRooms:
		resp.Rooms, err = ops.ListRooms(ctx)
	case opAudit:
		resp.Audit, err = ops.Audit(ctx, req.Limit)
	case opShowRoom:
		resp.Room, err = roomResult(ops.ShowRoom(ctx, req.Room))
	case opSetRoom:
		if req.Change == nil {
			return errorResponse(errors.New("bad request: no change"))
		}
		resp.Room, err = roomResult(ops.SetRoom(ctx, req.Actor, req.Room, *req.Change))
	case opDestroyRoom:
		err = ops.DestroyRoom(ctx, req.Actor, req.Room, req.Alternate, req.Reason)
	case opAffiliateRoom:
		resp.Room, err = roomResult(ops.AffiliateRoom(ctx, req.Actor, req.Room, req.Who, req.Affiliation))
	default:
		err = fmt.Errorf("bad request: unknown operation %q (is hearth admin newer than the daemon?)", req.Op)
	}
	if err != nil {
		return errorResponse(err)
	}
	return resp
}

func errorResponse(err error) response {
	r := response{Error: err.Error()}
	switch {
	case errors.Is(err, store.ErrNotFound):
		r.Code = codeNotFound
	case errors.Is(err, store.ErrExists):
		r.Code = codeExists
	case errors.Is(err, muc.ErrNoRoom):
		r.Code = codeNoRoom
	case errors.Is(err, muc.ErrRoomExists):
		r.Code = codeRoomExists
	}
	return r
}

func roomResult(st muc.RoomStatus, err error) (*muc.RoomStatus, error) {
	if err != nil {
		return nil, err
	}
	return &st, nil
}
