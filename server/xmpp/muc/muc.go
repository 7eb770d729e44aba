// Package muc is the group chat service at rooms.DOMAIN (XEP-0045):
// persistent rooms whose affiliations, configuration and archive live in
// the store, and whose occupants live in memory.
//
// Every stanza for the service enters through one handler, which applies
// the federation rule first (admit), so that opening rooms to other
// servers later is a policy there and nowhere else. New rooms are
// members-only and non-anonymous, and the server's end-to-end encryption
// policy (package e2ee) applies to their messages; only chat admins
// (server role admin) can make a room plaintext, and each such change is
// written to the audit log.
package muc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces.
const (
	NS           = "http://jabber.org/protocol/muc"
	NSUser       = NS + "#user"
	NSAdmin      = NS + "#admin"
	NSOwner      = NS + "#owner"
	NSRoomConfig = NS + "#roomconfig"
	NSRoomInfo   = NS + "#roominfo"
	NSRegister   = "jabber:iq:register"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
	NSData       = "jabber:x:data"
	NSOccupantID = "urn:xmpp:occupant-id:0"
	NSStanzaID   = "urn:xmpp:sid:0"
	NSDelay      = "urn:xmpp:delay"
	NSPing       = "urn:xmpp:ping"
	NSVCard      = "vcard-temp"
	NSVCardUpd   = "vcard-temp:x:update"
	NSConference = "jabber:x:conference"
	NSMAM        = "urn:xmpp:mam:2"
	NSRetract    = "urn:xmpp:message-retract:1"
	NSModerate   = "urn:xmpp:message-moderate:1"
	NSRetract0   = "urn:xmpp:message-retract:0"
	NSModerate0  = "urn:xmpp:message-moderate:0"
	NSFasten     = "urn:xmpp:fasten:0"
)

// Roles (XEP-0045 section 5.1).
const (
	roleModerator   = "moderator"
	roleParticipant = "participant"
	roleVisitor     = "visitor"
	roleNone        = "none"
)

// defaultHistory is how many messages a newcomer gets when the room sets
// no limit, and maxHistory bounds what anyone can ask for.
const (
	defaultHistory = 20
	maxHistory     = 100
)

// Storage is what the service keeps.
type Storage interface {
	store.Accounts
	store.Rooms
	store.RoomArchive
	store.Audit
}

// Module is the group chat service.
type Module struct {
	h      *xmpp.Host
	st     Storage
	domain string
	now    func() time.Time

	mu    sync.Mutex
	rooms map[string]*room // loaded rooms, by name

	idMu   sync.Mutex
	lastID uint64

	// writes are the room archive writes running beside their broadcast;
	// shutdown waits for them while the store is open.
	writes sync.WaitGroup

	// pendingIQ maps the ids of IQs forwarded to occupants back to their
	// senders (XEP-0045 section 7.2.2: IQs between occupants).
	iqMu      sync.Mutex
	pendingIQ map[string]forwardedIQ

	// Set by Offline, for administration without a running server.
	offlineCfg *config.Config
	offlineLog *slog.Logger
}

type forwardedIQ struct {
	from    jid.JID // the original sender's full JID
	id      string  // its id
	expires time.Time
}

// New returns the service.
func New() *Module {
	return &Module{rooms: make(map[string]*room), now: time.Now, pendingIQ: make(map[string]forwardedIQ)}
}

// Name implements xmpp.Module.
func (m *Module) Name() string { return "muc" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	st, ok := h.Store.(Storage)
	if !ok {
		return errors.New("muc: the store does not keep rooms")
	}
	m.h, m.st = h, st
	m.domain = h.Config().RoomsDomain()
	h.HandleSubdomain(m.domain, m.handle)
	h.Hook("disco/items/host", 0, m.hostItems)
	h.Hook("session/closed", 0, m.sessionGone)
	h.Hook("session/replaced", 0, m.sessionGone)
	h.Hook("server/shutdown", 0, func(context.Context, *xmpp.Event) bool {
		m.writes.Wait()
		return false
	})
	return nil
}

// Domain is the service's domain.
func (m *Module) Domain() string { return m.domain }

// hostItems lists the service among the server's items.
func (m *Module) hostItems(_ context.Context, ev *xmpp.Event) bool {
	ev.Stanza.El.Add(elem.New(NSDiscoItems, "item", "jid", m.domain, "name", "Rooms"))
	return false
}

// sessionGone removes a session that ended from every room it was in, as
// if it had left.
func (m *Module) sessionGone(ctx context.Context, ev *xmpp.Event) bool {
	full := ev.Session.JID().String()
	for _, r := range m.loaded() {
		r.mu.Lock()
		o := r.byFull[full]
		r.mu.Unlock()
		if o != nil {
			m.leave(ctx, r, full, elem.New(elem.NSClient, "presence", "type", "unavailable"), nil)
		}
	}
	return false
}

func (m *Module) loaded() []*room {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*room, 0, len(m.rooms))
	for _, r := range m.rooms {
		out = append(out, r)
	}
	return out
}

// handle receives every stanza addressed to the service, a room or an
// occupant.
func (m *Module) handle(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if err := m.admit(st); err != nil {
		if !xmpp.IsError(st.El) {
			m.h.Bounce(ctx, st, err)
		}
		return true
	}
	switch {
	case st.To.Localpart() == "":
		m.handleService(ctx, st)
	case st.Kind() == "presence":
		m.handlePresence(ctx, st)
	case st.Kind() == "message":
		m.handleMessage(ctx, st)
	case st.Kind() == "iq":
		m.handleIQ(ctx, st)
	}
	return true
}

// admit is the federation rule, kept in this one place: rooms carry
// federation "off", so nothing from another server enters them. When
// rooms may federate, the per-room policy is checked here.
func (m *Module) admit(st *xmpp.Stanza) *xmpp.StanzaError {
	if st.From.Domainpart() != m.conf().Domain {
		return &xmpp.StanzaError{Type: "cancel", Condition: "not-allowed",
			Text: "this room service does not federate: only accounts of " + m.conf().Domain + " may use it"}
	}
	return nil
}

// local reports whether a JID may be given a place in a room (affiliation
// or invitation): the same rule as admit, for addresses named in payloads.
func (m *Module) local(j jid.JID) bool {
	return j.Domainpart() == m.conf().Domain && j.Localpart() != ""
}

func (m *Module) handleService(ctx context.Context, st *xmpp.Stanza) {
	if st.Kind() != "iq" {
		if st.Kind() == "message" && !xmpp.IsError(st.El) && st.Type() != "groupchat" {
			m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
		}
		return
	}
	if st.Type() != "get" && st.Type() != "set" {
		return
	}
	p := st.Payload()
	if p == nil {
		m.h.Bounce(ctx, st, xmpp.ErrBadRequest("empty IQ"))
		return
	}
	switch {
	case st.Type() == "get" && p.Name.Space == NSDiscoInfo:
		m.reply(ctx, st, m.serviceInfo(p), nil)
	case st.Type() == "get" && p.Name.Space == NSDiscoItems:
		res, err := m.serviceItems(ctx, st, p)
		m.reply(ctx, st, res, err)
	case st.Type() == "get" && p.Name.Space == NSPing:
		m.reply(ctx, st, nil, nil)
	default:
		m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
	}
}

// reply answers an IQ with a payload or an error.
func (m *Module) reply(ctx context.Context, st *xmpp.Stanza, payload *elem.Element, err error) {
	if err != nil {
		if errors.Is(err, xmpp.ErrHandled) {
			return
		}
		se := xmpp.AsStanzaError(err)
		if se.Condition == "internal-server-error" {
			m.log().Error("rooms: request failed", "from", st.From.String(), "to", st.To.String(), "err", err)
		}
		m.h.Bounce(ctx, st, se)
		return
	}
	m.h.Reply(ctx, st, xmpp.ResultReply(st.El, payload))
}

// serverRole is an account's server role; accounts that are gone count as
// limited.
func (m *Module) serverRole(ctx context.Context, bare jid.JID) store.Role {
	if bare.Domainpart() != m.conf().Domain {
		return store.RoleLimited
	}
	a, err := m.st.GetAccount(ctx, bare.Localpart())
	if err != nil || a.Disabled {
		return store.RoleLimited
	}
	return a.Role
}

func (m *Module) isServerAdmin(ctx context.Context, bare jid.JID) bool {
	return m.serverRole(ctx, bare) == store.RoleAdmin
}

// roomName validates the room part of an address.
func roomName(j jid.JID) (string, error) {
	name := strings.ToLower(j.Localpart())
	if name == "" || len(name) > 256 {
		return "", &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: "a room needs a name of at most 256 bytes"}
	}
	return name, nil
}

// getRoom returns a loaded room, reading it from the store the first time;
// nil and no error when no such room exists.
func (m *Module) getRoom(ctx context.Context, name string) (*room, error) {
	m.mu.Lock()
	r := m.rooms[name]
	m.mu.Unlock()
	if r != nil {
		return r, nil
	}
	cfg, err := m.st.GetRoom(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load room %s: %w", name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rooms[name]; r != nil {
		return r, nil // loaded meanwhile
	}
	r = newRoom(m.roomJID(name), cfg)
	m.rooms[name] = r
	return r, nil
}

// createRoom stores a new room with the safe defaults: members-only,
// non-anonymous, encrypted, not federated.
func (m *Module) createRoom(ctx context.Context, name string, owner string, edit func(*store.Room)) (*room, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("room secret: %w", err)
	}
	cfg := store.Room{
		Name:       name,
		Created:    m.now().UTC(),
		Federation: "off",
		Secret:     secret,
	}
	if owner != "" {
		cfg.Affiliations = map[string]store.Affiliation{owner: store.AffOwner}
	}
	if edit != nil {
		edit(&cfg)
	}
	if err := m.st.CreateRoom(ctx, cfg); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := newRoom(m.roomJID(name), cfg)
	m.rooms[name] = r
	return r, nil
}

// update changes a room's stored configuration and, once stored, the
// loaded copy. fn sees a copy and may refuse with an error.
func (m *Module) update(ctx context.Context, r *room, fn func(*store.Room) error) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	var updated store.Room
	err := m.st.UpdateRoom(ctx, r.name(), func(c *store.Room) error {
		if err := fn(c); err != nil {
			return err
		}
		updated = *c
		return nil
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cfg = updated
	r.mu.Unlock()
	return nil
}

func (m *Module) roomJID(name string) jid.JID {
	j, err := jid.New(name, m.domain, "")
	if err != nil {
		return jid.JID{}
	}
	return j
}

// forget drops a destroyed room from memory.
func (m *Module) forget(name string) {
	m.mu.Lock()
	delete(m.rooms, name)
	m.mu.Unlock()
}

func (m *Module) log() *slog.Logger {
	if m.h == nil {
		return m.offlineLog
	}
	return m.h.Log
}

// audit records an administrative change; a failure is logged, since the
// change itself already happened.
func (m *Module) audit(ctx context.Context, actor, action, target, old, new string) {
	e := store.AuditEntry{Time: m.now().UTC(), Actor: actor, Action: action, Target: target, Old: old, New: new}
	if err := m.st.AppendAudit(ctx, e); err != nil {
		m.log().Error("rooms: audit log write failed", "action", action, "target", target, "err", err)
		return
	}
	m.log().Info("rooms: admin change", "actor", actor, "action", action, "target", target, "old", old, "new", new)
}
