package muc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
)

// This file is room administration for `hearth admin room`: the same
// rules as over XMPP, applied by a chat admin from the command line. In
// the daemon the live module applies them, so occupants see a change at
// once; with the daemon stopped, Offline applies them to the store.

// Errors the command line turns into clear messages.
var (
	ErrNoRoom     = errors.New("no such room")
	ErrRoomExists = errors.New("a room with that name already exists")
)

// Offline returns a module that administers rooms in a store without a
// running server (nobody is in any room).
func Offline(st Storage, cfg *config.Config, log *slog.Logger) *Module {
	m := New()
	m.st, m.offlineCfg = st, cfg
	m.domain = cfg.RoomsDomain()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m.offlineLog = log
	return m
}

// RoomSpec is a room to create.
type RoomSpec struct {
	Name        string        `json:"name"`
	Title       string        `json:"title,omitempty"`
	Description string        `json:"description,omitempty"`
	Owners      []string      `json:"owners"`
	Members     []string      `json:"members,omitempty"`
	Plaintext   bool          `json:"plaintext,omitempty"`
	Retention   time.Duration `json:"retention,omitempty"`
}

// RoomChange is what `room set` changes; nil fields stay as they are.
type RoomChange struct {
	Plaintext   *bool          `json:"plaintext,omitempty"`
	Retention   *time.Duration `json:"retention,omitempty"` // 0: the server default
	Title       *string        `json:"title,omitempty"`
	Description *string        `json:"description,omitempty"`
	Public      *bool          `json:"public,omitempty"`
	Open        *bool          `json:"open,omitempty"`
	Moderated   *bool          `json:"moderated,omitempty"`
}

// RoomStatus is a room as `room list` and `room show` report it.
type RoomStatus struct {
	JID          string                       `json:"jid"`
	Name         string                       `json:"name"`
	Title        string                       `json:"title,omitempty"`
	Description  string                       `json:"description,omitempty"`
	Subject      string                       `json:"subject,omitempty"`
	Created      time.Time                    `json:"created"`
	Mode         string                       `json:"mode"` // encrypted or plaintext
	MembersOnly  bool                         `json:"members_only"`
	Public       bool                         `json:"public"`
	Moderated    bool                         `json:"moderated"`
	Retention    time.Duration                `json:"retention"` // effective; 0 keeps forever
	OwnRetention bool                         `json:"own_retention"`
	Federation   string                       `json:"federation"`
	Affiliations map[string]store.Affiliation `json:"affiliations"`
	Occupants    []string                     `json:"occupants"` // nicknames present now
}

func (m *Module) conf() *config.Config {
	if m.h != nil {
		return m.h.Config()
	}
	return m.offlineCfg
}

// bareJID reads "alice" or "alice@DOMAIN" as an account of this server.
func (m *Module) bareJID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "@") {
		s += "@" + m.conf().Domain
	}
	j, err := jid.Parse(s)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return "", fmt.Errorf("%q is not an account (user or user@%s)", s, m.conf().Domain)
	}
	if j.Domainpart() != m.conf().Domain {
		return "", fmt.Errorf("%s is not an account of %s: rooms do not federate", j, m.conf().Domain)
	}
	return j.String(), nil
}

// CheckRoomName validates a room name for the command line.
func (m *Module) checkRoomName(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if strings.Contains(name, "@") {
		local, domain, _ := strings.Cut(name, "@")
		if domain != m.domain {
			return "", fmt.Errorf("%s is not on this server's room service %s", name, m.domain)
		}
		name = local
	}
	if name == "" {
		return "", errors.New("a room needs a name")
	}
	if _, err := jid.New(name, m.domain, ""); err != nil {
		return "", fmt.Errorf("%q cannot be a room name: %v", name, err)
	}
	return name, nil
}

// AdminCreate creates a room. Owners are required: a room without one
// could only be managed by chat admins.
func (m *Module) AdminCreate(ctx context.Context, actorName string, spec RoomSpec) (RoomStatus, error) {
	name, err := m.checkRoomName(spec.Name)
	if err != nil {
		return RoomStatus{}, err
	}
	if len(spec.Owners) == 0 {
		return RoomStatus{}, errors.New("give at least one owner (--owner USER)")
	}
	affs := map[string]store.Affiliation{}
	for _, o := range spec.Owners {
		b, err := m.bareJID(o)
		if err != nil {
			return RoomStatus{}, err
		}
		affs[b] = store.AffOwner
	}
	for _, o := range spec.Members {
		b, err := m.bareJID(o)
		if err != nil {
			return RoomStatus{}, err
		}
		if _, ok := affs[b]; !ok {
			affs[b] = store.AffMember
		}
	}
	if spec.Retention != 0 {
		if err := m.checkRetention(spec.Retention); err != nil {
			return RoomStatus{}, err
		}
	}
	_, err = m.createRoom(ctx, name, "", func(c *store.Room) {
		c.Title, c.Description = spec.Title, spec.Description
		c.Affiliations = affs
		c.Plaintext = spec.Plaintext
		c.Retention = spec.Retention
	})
	if errors.Is(err, store.ErrExists) {
		return RoomStatus{}, fmt.Errorf("%s: %w", name, ErrRoomExists)
	}
	if err != nil {
		return RoomStatus{}, err
	}
	mode := "encrypted"
	if spec.Plaintext {
		mode = "plaintext"
	}
	m.audit(ctx, actorName, "room.create", m.roomJID(name).String(), "", mode)
	return m.AdminShow(ctx, name)
}

// AdminAudit returns the newest limit entries of the audit log (0: all),
// oldest first.
func (m *Module) AdminAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	return m.st.ListAudit(ctx, limit)
}

// AdminList lists every room.
func (m *Module) AdminList(ctx context.Context) ([]RoomStatus, error) {
	rooms, err := m.st.ListRooms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RoomStatus, 0, len(rooms))
	for _, c := range rooms {
		out = append(out, m.status(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AdminShow describes one room.
func (m *Module) AdminShow(ctx context.Context, name string) (RoomStatus, error) {
	name, err := m.checkRoomName(name)
	if err != nil {
		return RoomStatus{}, err
	}
	c, err := m.st.GetRoom(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return RoomStatus{}, fmt.Errorf("%s: %w", name, ErrNoRoom)
	}
	if err != nil {
		return RoomStatus{}, err
	}
	return m.status(c), nil
}

func (m *Module) status(c store.Room) RoomStatus {
	r := newRoom(m.roomJID(c.Name), c)
	s := RoomStatus{
		JID: r.jid.String(), Name: c.Name, Title: c.Title, Description: c.Description, Subject: c.Subject,
		Created: c.Created, Mode: "encrypted", MembersOnly: r.membersOnly(), Public: c.Public, Moderated: c.Moderated,
		Retention: m.retention(c), OwnRetention: c.Retention > 0, Federation: "off",
		Affiliations: c.Affiliations, Occupants: []string{},
	}
	if c.Plaintext {
		s.Mode = "plaintext"
	}
	if s.Affiliations == nil {
		s.Affiliations = map[string]store.Affiliation{}
	}
	m.mu.Lock()
	live := m.rooms[c.Name]
	m.mu.Unlock()
	if live != nil {
		live.mu.Lock()
		for _, o := range live.sortedOccupants() {
			s.Occupants = append(s.Occupants, o.nick)
		}
		live.mu.Unlock()
	}
	return s
}

// loadForAdmin returns the room, loaded, or ErrNoRoom.
func (m *Module) loadForAdmin(ctx context.Context, name string) (*room, error) {
	name, err := m.checkRoomName(name)
	if err != nil {
		return nil, err
	}
	r, err := m.getRoom(ctx, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("%s: %w", name, ErrNoRoom)
	}
	return r, nil
}

// AdminSet changes a room's settings as a chat admin. Making a room
// encrypted again also makes it members-only and non-anonymous, and
// removes those present who are not members.
func (m *Module) AdminSet(ctx context.Context, actorName, name string, ch RoomChange) (RoomStatus, error) {
	r, err := m.loadForAdmin(ctx, name)
	if err != nil {
		return RoomStatus{}, err
	}
	r.mu.Lock()
	cur := r.cfg
	r.mu.Unlock()
	next := cur
	if ch.Title != nil {
		next.Title = *ch.Title
	}
	if ch.Description != nil {
		next.Description = *ch.Description
	}
	if ch.Public != nil {
		next.Public = *ch.Public
	}
	if ch.Moderated != nil {
		next.Moderated = *ch.Moderated
	}
	if ch.Open != nil {
		next.Open = *ch.Open
	}
	if ch.Plaintext != nil {
		next.Plaintext = *ch.Plaintext
		if !next.Plaintext {
			next.Open, next.SemiAnonymous = false, false
		}
	}
	if ch.Retention != nil {
		if *ch.Retention != 0 {
			if err := m.checkRetention(*ch.Retention); err != nil {
				return RoomStatus{}, err
			}
		}
		next.Retention = *ch.Retention
	}
	if !next.Plaintext && next.Open {
		return RoomStatus{}, errors.New("an encrypted room is members-only: make it plaintext first (--plaintext) to open it")
	}
	cc := configChange{next: next, modeChanged: next.Plaintext != cur.Plaintext, retentionChange: next.Retention != cur.Retention}
	if err := m.commitConfig(ctx, r, cc, actorName); err != nil {
		return RoomStatus{}, err
	}
	return m.AdminShow(ctx, r.name())
}

// AdminDestroy ends a room; those present are told where to go instead.
func (m *Module) AdminDestroy(ctx context.Context, actorName, name, alternate, reason string) error {
	r, err := m.loadForAdmin(ctx, name)
	if err != nil {
		return err
	}
	if alternate != "" {
		if a, err := m.checkRoomName(alternate); err == nil {
			alternate = m.roomJID(a).String()
		}
	}
	return m.destroy(ctx, r, alternate, reason, actorName)
}

// AdminAffiliate sets a person's affiliation with a room: owner, admin,
// member, outcast (banned) or none (removed from the lists).
func (m *Module) AdminAffiliate(ctx context.Context, actorName, name, who string, aff store.Affiliation) (RoomStatus, error) {
	r, err := m.loadForAdmin(ctx, name)
	if err != nil {
		return RoomStatus{}, err
	}
	if !aff.Valid() {
		return RoomStatus{}, fmt.Errorf("%q is not an affiliation: owner, admin, member, none or outcast", aff)
	}
	bare, err := m.bareJID(who)
	if err != nil {
		return RoomStatus{}, err
	}
	a := actor{bare: actorName, serverAdmin: true}
	if err := m.checkAffiliation(r, a, bare, aff); err != nil {
		// The command line wants the readable text, not the XMPP condition.
		return RoomStatus{}, errors.New(xmpp.AsStanzaError(err).Text)
	}
	if err := m.setAffiliation(ctx, r, a, bare, aff, ""); err != nil {
		return RoomStatus{}, err
	}
	m.audit(ctx, actorName, "room.affiliation", r.jid.String()+" "+bare, "", string(aff))
	return m.AdminShow(ctx, r.name())
}
