package muc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/mam"
)

// forwardedIQLifetime bounds how long an IQ relayed between occupants
// waits for its answer.
const forwardedIQLifetime = 2 * time.Minute

func (m *Module) handleIQ(ctx context.Context, st *xmpp.Stanza) {
	name, err := roomName(st.To)
	if err != nil {
		if st.Type() == "get" || st.Type() == "set" {
			m.h.Bounce(ctx, st, err.(*xmpp.StanzaError))
		}
		return
	}
	r, err := m.getRoom(ctx, name)
	if err != nil {
		m.log().Error("rooms: load failed", "room", name, "err", err)
		m.h.Bounce(ctx, st, xmpp.ErrInternal())
		return
	}
	if st.Type() == "result" || st.Type() == "error" {
		if r != nil && st.To.Resourcepart() != "" {
			m.answerForwarded(ctx, r, st)
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
	if r == nil {
		if p.Name.Space == NSDiscoInfo || p.Name.Space == NSOwner || p.Name.Space == NSAdmin || p.Name.Space == NSMAM {
			m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no such room"})
			return
		}
		m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
		return
	}
	if st.To.Resourcepart() != "" {
		m.occupantIQ(ctx, r, st, p)
		return
	}
	get := st.Type() == "get"
	switch {
	case get && p.Name.Space == NSDiscoInfo:
		res, err := m.roomInfo(ctx, r, st, p)
		m.reply(ctx, st, res, err)
	case get && p.Name.Space == NSDiscoItems:
		res, err := m.roomItems(ctx, r, st)
		m.reply(ctx, st, res, err)
	case p.Name.Space == NSAdmin && p.Name.Local == "query":
		if get {
			res, err := m.adminGet(ctx, r, st, p)
			m.reply(ctx, st, res, err)
		} else {
			m.reply(ctx, st, nil, m.adminSet(ctx, r, st, p))
		}
	case p.Name.Space == NSOwner && p.Name.Local == "query":
		if get {
			res, err := m.ownerGet(ctx, r, st, p)
			m.reply(ctx, st, res, err)
		} else {
			m.reply(ctx, st, nil, m.ownerSet(ctx, r, st, p))
		}
	case p.Name.Space == NSRegister && p.Name.Local == "query":
		res, err := m.register(ctx, r, st, p)
		m.reply(ctx, st, res, err)
	case p.Name.Space == NSVCard && p.Name.Local == "vCard":
		res, err := m.vcard(ctx, r, st, p)
		m.reply(ctx, st, res, err)
	case p.Name.Space == NSMAM && p.Name.Local == "query":
		res, err := m.archiveQuery(ctx, r, st, p)
		m.reply(ctx, st, res, err)
	case !get && p.Name.Space == NSModerate && p.Name.Local == "moderate":
		m.reply(ctx, st, nil, m.moderate(ctx, r, st, p.Get("id"), p.ChildText(NSModerate, "reason")))
	case !get && p.Name.Space == NSFasten && p.Name.Local == "apply-to" && p.Child(NSModerate0, "moderate") != nil:
		m.reply(ctx, st, nil, m.moderate(ctx, r, st, p.Get("id"), p.Child(NSModerate0, "moderate").ChildText(NSModerate0, "reason")))
	case get && p.Name.Space == NSPing:
		m.reply(ctx, st, nil, nil)
	default:
		m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
	}
}

// occupantIQ answers self-pings (XEP-0410) and relays other IQs to the
// occupant's client (XEP-0045 7.2.2), rewriting addresses so neither side
// learns more than the room shows.
func (m *Module) occupantIQ(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) {
	nick := st.To.Resourcepart()
	r.mu.Lock()
	from := r.byFull[st.From.String()]
	target := r.occupants[nick]
	var targetFull string
	if target != nil {
		targetFull = target.latest
	}
	r.mu.Unlock()
	if from == nil {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "not-acceptable", Text: "you are not in this room"})
		return
	}
	if p.Name.Space == NSPing && target == from {
		m.reply(ctx, st, nil, nil) // still joined: self-ping succeeds
		return
	}
	if target == nil {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "nobody by that nickname is in the room"})
		return
	}
	token := make([]byte, 9)
	_, _ = rand.Read(token)
	id := "muc-" + hex.EncodeToString(token)
	m.iqMu.Lock()
	now := m.now()
	for k, f := range m.pendingIQ {
		if now.After(f.expires) {
			delete(m.pendingIQ, k)
		}
	}
	m.pendingIQ[id] = forwardedIQ{from: st.From, id: st.ID(), expires: now.Add(forwardedIQLifetime)}
	m.iqMu.Unlock()
	out := elem.New(elem.NSClient, "iq", "type", st.Type(), "id", id, "from", r.occupantJID(from.nick), "to", targetFull)
	out.Children = st.El.Children
	m.h.Route(ctx, out)
}

// answerForwarded returns an occupant's answer to the IQ relayed to it.
func (m *Module) answerForwarded(ctx context.Context, r *room, st *xmpp.Stanza) {
	m.iqMu.Lock()
	f, ok := m.pendingIQ[st.ID()]
	delete(m.pendingIQ, st.ID())
	m.iqMu.Unlock()
	if !ok {
		return
	}
	r.mu.Lock()
	o := r.byFull[st.From.String()]
	r.mu.Unlock()
	if o == nil {
		return
	}
	out := elem.New(elem.NSClient, "iq", "type", st.Type(), "id", f.id, "from", r.occupantJID(o.nick), "to", f.from.String())
	out.Children = st.El.Children
	m.h.Route(ctx, out)
}

// register reserves a nickname in a room (XEP-0045 7.10): members and
// above keep one; in an open room registering makes one a member.
func (m *Module) register(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) (*elem.Element, error) {
	bare := st.From.Bare().String()
	r.mu.Lock()
	aff := r.cfg.Affiliation(bare)
	nick := r.cfg.Nicks[bare]
	membersOnly := r.membersOnly()
	r.mu.Unlock()
	if aff == store.AffOutcast {
		return nil, xmpp.ErrForbidden("you are banned from this room")
	}
	if membersOnly && affRank(aff) < affRank(store.AffMember) && !m.isServerAdmin(ctx, st.From.Bare()) {
		return nil, &xmpp.StanzaError{Type: "auth", Condition: "registration-required", Text: "only members can reserve a nickname in this room"}
	}
	if st.Type() == "get" {
		q := elem.New(NSRegister, "query")
		if nick != "" {
			q.Add(elem.New(NSRegister, "registered"), elem.New(NSRegister, "username").AddText(nick))
			return q, nil
		}
		x := elem.New(NSData, "x", "type", "form").Add(
			elem.New(NSData, "title").AddText("Reserve a nickname in "+r.jid.String()),
			hiddenField("FORM_TYPE", NS+"#register"),
			elem.New(NSData, "field", "var", "muc#register_roomnick", "type", "text-single", "label", "Nickname").Add(elem.New(NSData, "required")))
		return q.Add(x), nil
	}
	if p.Child(NSRegister, "remove") != nil {
		return nil, m.update(ctx, r, func(c *store.Room) error {
			delete(c.Nicks, bare)
			return nil
		})
	}
	f := formValues(p.Child(NSData, "x"))
	want := strings.TrimSpace(f.get("muc#register_roomnick"))
	if want == "" {
		return nil, &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable", Text: "give a nickname (muc#register_roomnick)"}
	}
	return nil, m.update(ctx, r, func(c *store.Room) error {
		if c.NickReservedByOther(want, bare) {
			return &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "that nickname is reserved by someone else"}
		}
		if c.Nicks == nil {
			c.Nicks = make(map[string]string)
		}
		c.Nicks[bare] = want
		if c.Affiliation(bare) == store.AffNone {
			c.SetAffiliation(bare, store.AffMember)
		}
		return nil
	})
}

// vcard serves the room's vCard (its avatar) to anyone who may see the
// room, and lets owners change it.
func (m *Module) vcard(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) (*elem.Element, error) {
	if !m.maySee(ctx, r, st) {
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no such room"}
	}
	if st.Type() == "get" {
		r.mu.Lock()
		raw := r.cfg.VCard
		r.mu.Unlock()
		if len(raw) == 0 {
			return elem.New(NSVCard, "vCard"), nil
		}
		return mam.ParseStanza(raw)
	}
	if !m.isOwner(ctx, r, st) {
		return nil, xmpp.ErrForbidden("only the room's owners may change its picture")
	}
	raw := []byte(p.String())
	if len(raw) > 256<<10 {
		return nil, &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable", Text: "the room's vCard is limited to 256 KiB"}
	}
	if err := m.update(ctx, r, func(c *store.Room) error { c.VCard = raw; return nil }); err != nil {
		return nil, err
	}
	// Occupants learn of the change through a configuration-change notice
	// (status 104); clients then read the new avatar hash from disco#info.
	m.broadcast(ctx, r, elem.New(elem.NSClient, "message", "type", "groupchat", "from", r.jid.String()).Add(
		elem.New(NSUser, "x").Add(elem.New(NSUser, "status", "code", statusConfigChange))))
	return nil, nil
}

// archiveQuery answers MAM on the room JID for whoever may read the room.
func (m *Module) archiveQuery(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) (*elem.Element, error) {
	if !m.maySee(ctx, r, st) {
		return nil, xmpp.ErrForbidden("only the room's members can read its archive")
	}
	if st.Type() == "get" {
		x := elem.New(NSData, "x", "type", "form").Add(hiddenField("FORM_TYPE", NSMAM))
		for _, f := range []struct{ name, typ string }{{"with", "jid-single"}, {"start", "text-single"}, {"end", "text-single"}, {"before-id", "text-single"}, {"after-id", "text-single"}, {"ids", "list-multi"}} {
			x.Add(elem.New(NSData, "field", "var", f.name, "type", f.typ))
		}
		return elem.New(NSMAM, "query").Add(x), nil
	}
	r.settle()
	lookup := func(ctx context.Context, q store.ArchiveQuery) (store.ArchivePage, error) {
		return m.st.QueryRoomArchive(ctx, r.name(), q)
	}
	q, flip, err := mam.ParseQuery(ctx, p, lookup)
	if err != nil {
		return nil, err
	}
	page, err := lookup(ctx, q)
	if err != nil {
		return nil, err
	}
	if st.Origin == nil {
		return nil, xmpp.ErrForbidden("archive queries come from a client")
	}
	return mam.SendPage(ctx, p, page, flip, r.jid.String(), st.Origin, func(id uint64, err error) {
		m.log().Error("rooms: archived message unreadable", "room", r.name(), "id", id, "err", err)
	})
}

// maySee: anyone may see an open room; a members-only room shows itself
// only to its members (and server admins), so that its name, subject and
// occupants never leak.
func (m *Module) maySee(ctx context.Context, r *room, st *xmpp.Stanza) bool {
	r.mu.Lock()
	aff := r.cfg.Affiliation(st.From.Bare().String())
	open := !r.membersOnly()
	r.mu.Unlock()
	if aff == store.AffOutcast {
		return false
	}
	return open || affRank(aff) >= affRank(store.AffMember) || m.isServerAdmin(ctx, st.From.Bare())
}

// isOwner: room owners and server admins.
func (m *Module) isOwner(ctx context.Context, r *room, st *xmpp.Stanza) bool {
	r.mu.Lock()
	aff := r.cfg.Affiliation(st.From.Bare().String())
	r.mu.Unlock()
	return aff == store.AffOwner || m.isServerAdmin(ctx, st.From.Bare())
}

func hiddenField(name, value string) *elem.Element {
	return elem.New(NSData, "field", "var", name, "type", "hidden").Add(elem.New(NSData, "value").AddText(value))
}
