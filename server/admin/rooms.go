package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/muc"
)

// Room administration: Local hands the operations to the group chat
// module (the daemon's live one, or muc.Offline on the store), Client sends
// them over the socket. The rules (owners required, retention bounds, who
// may be affiliated) live in the muc package, so the command line and XMPP
// clients obey the same ones.

// actorPrefix marks audit entries made from the command line, so they
// cannot be mistaken for an XMPP user's (those are bare JIDs).
const actorPrefix = "cli:"

// CLIActor is the audit log's name for whoever runs this process: "cli:"
// and the Unix user name. The client sends it; on Linux the daemon replaces
// it with the user its socket's peer credentials name.
func CLIActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return actorPrefix + u.Username
	}
	return fmt.Sprintf("%suid %d", actorPrefix, os.Getuid())
}

// checkActor refuses requests that would leave an anonymous or misleading
// entry in the audit log.
func checkActor(actor string) error {
	name, ok := strings.CutPrefix(actor, actorPrefix)
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("bad request: actor %q is not %q and a Unix user name", actor, actorPrefix)
	}
	return nil
}

// errNoRooms is returned by a Local built without the room service.
var errNoRooms = errors.New("room administration is not available here (is the daemon older than hearth admin?)")

func (l *Local) rooms() (*muc.Module, error) {
	if l.Rooms == nil {
		return nil, errNoRooms
	}
	return l.Rooms, nil
}

// CreateRoom creates a room.
func (l *Local) CreateRoom(ctx context.Context, actor string, spec muc.RoomSpec) (muc.RoomStatus, error) {
	m, err := l.rooms()
	if err != nil {
		return muc.RoomStatus{}, err
	}
	if err := checkActor(actor); err != nil {
		return muc.RoomStatus{}, err
	}
	return m.AdminCreate(ctx, actor, spec)
}

// Audit lists the audit log's newest entries, oldest first.
func (l *Local) Audit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	m, err := l.rooms()
	if err != nil {
		return nil, err
	}
	return m.AdminAudit(ctx, limit)
}

// ListRooms lists every room, sorted by name.
func (l *Local) ListRooms(ctx context.Context) ([]muc.RoomStatus, error) {
	m, err := l.rooms()
	if err != nil {
		return nil, err
	}
	return m.AdminList(ctx)
}

// ShowRoom describes one room.
func (l *Local) ShowRoom(ctx context.Context, name string) (muc.RoomStatus, error) {
	m, err := l.rooms()
	if err != nil {
		return muc.RoomStatus{}, err
	}
	return m.AdminShow(ctx, name)
}

// SetRoom changes a room's settings.
func (l *Local) SetRoom(ctx context.Context, actor, name string, ch muc.RoomChange) (muc.RoomStatus, error) {
	m, err := l.rooms()
	if err != nil {
		return muc.RoomStatus{}, err
	}
	if err := checkActor(actor); err != nil {
		return muc.RoomStatus{}, err
	}
	return m.AdminSet(ctx, actor, name, ch)
}

// DestroyRoom ends a room.
func (l *Local) DestroyRoom(ctx context.Context, actor, name, alternate, reason string) error {
	m, err := l.rooms()
	if err != nil {
		return err
	}
	if err := checkActor(actor); err != nil {
		return err
	}
	return m.AdminDestroy(ctx, actor, name, alternate, reason)
}

// AffiliateRoom sets a person's affiliation with a room.
func (l *Local) AffiliateRoom(ctx context.Context, actor, name, who string, aff store.Affiliation) (muc.RoomStatus, error) {
	m, err := l.rooms()
	if err != nil {
		return muc.RoomStatus{}, err
	}
	if err := checkActor(actor); err != nil {
		return muc.RoomStatus{}, err
	}
	return m.AdminAffiliate(ctx, actor, name, who, aff)
}

// CreateRoom creates a room through the daemon.
func (c *Client) CreateRoom(ctx context.Context, actor string, spec muc.RoomSpec) (muc.RoomStatus, error) {
	return c.roomCall(ctx, request{Op: opCreateRoom, Actor: actor, Room: spec.Name, Spec: &spec})
}

// Audit lists the audit log's newest entries through the daemon.
func (c *Client) Audit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	r, err := c.call(ctx, request{Op: opAudit, Limit: limit})
	return r.Audit, err
}

// ListRooms lists rooms with who is in them now.
func (c *Client) ListRooms(ctx context.Context) ([]muc.RoomStatus, error) {
	r, err := c.call(ctx, request{Op: opListRooms})
	return r.Rooms, err
}

// ShowRoom describes one room.
func (c *Client) ShowRoom(ctx context.Context, name string) (muc.RoomStatus, error) {
	return c.roomCall(ctx, request{Op: opShowRoom, Room: name})
}

// SetRoom changes a room's settings; occupants are told at once.
func (c *Client) SetRoom(ctx context.Context, actor, name string, ch muc.RoomChange) (muc.RoomStatus, error) {
	return c.roomCall(ctx, request{Op: opSetRoom, Actor: actor, Room: name, Change: &ch})
}

// DestroyRoom ends a room; those present are told where to go.
func (c *Client) DestroyRoom(ctx context.Context, actor, name, alternate, reason string) error {
	_, err := c.call(ctx, request{Op: opDestroyRoom, Actor: actor, Room: name, Alternate: alternate, Reason: reason})
	return err
}

// AffiliateRoom sets a person's affiliation; a removed or banned occupant
// leaves the room at once.
func (c *Client) AffiliateRoom(ctx context.Context, actor, name, who string, aff store.Affiliation) (muc.RoomStatus, error) {
	return c.roomCall(ctx, request{Op: opAffiliateRoom, Actor: actor, Room: name, Who: who, Affiliation: aff})
}

func (c *Client) roomCall(ctx context.Context, req request) (muc.RoomStatus, error) {
	r, err := c.call(ctx, req)
	if err != nil {
		return muc.RoomStatus{}, err
	}
	if r.Room == nil {
		return muc.RoomStatus{}, fmt.Errorf("admin socket %s: the daemon sent no room", c.path)
	}
	return *r.Room, nil
}

// RoomErr turns the room service's sentinel errors into messages that say
// what to do; others pass unchanged.
func RoomErr(err error, name string) error {
	switch {
	case errors.Is(err, muc.ErrNoRoom):
		return fmt.Errorf("there is no room %q (\"hearth admin room list\" shows them)", name)
	case errors.Is(err, muc.ErrRoomExists):
		return fmt.Errorf("a room %q already exists", name)
	}
	return err
}

// Affiliation is one entry of a room's affiliation list.
type Affiliation struct {
	JID         string            `json:"jid"`
	Affiliation store.Affiliation `json:"affiliation"`
}

// SortedAffiliations lists a room's affiliations strongest first (owners,
// admins, members, then the banned), by JID within each.
func SortedAffiliations(st muc.RoomStatus) []Affiliation {
	rank := map[store.Affiliation]int{store.AffOwner: 0, store.AffAdmin: 1, store.AffMember: 2, store.AffOutcast: 3}
	out := make([]Affiliation, 0, len(st.Affiliations))
	for j, a := range st.Affiliations {
		out = append(out, Affiliation{JID: j, Affiliation: a})
	}
	order := func(a store.Affiliation) int {
		if r, ok := rank[a]; ok {
			return r
		}
		return len(rank)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := order(out[i].Affiliation), order(out[j].Affiliation)
		if ri != rj {
			return ri < rj
		}
		return out[i].JID < out[j].JID
	})
	return out
}
