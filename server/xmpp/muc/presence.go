package muc

import (
	"context"
	"errors"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Status codes (XEP-0045 section 15.6).
const (
	statusNonAnonymous = "100"
	statusSelf         = "110"
	statusArchived     = "170"
	statusCreated      = "201"
	statusBanned       = "301"
	statusNickChange   = "303"
	statusKicked       = "307"
	statusAffChange    = "321"
	statusMembersOnly  = "322"
	statusShutdown     = "332"
	statusConfigChange = "104"
)

func (m *Module) handlePresence(ctx context.Context, st *xmpp.Stanza) {
	if st.Origin == nil || xmpp.IsError(st.El) {
		// Errors from an occupant's client (a dead resource) remove it,
		// as XEP-0045 section 7.2.1 allows.
		if xmpp.IsError(st.El) {
			m.dropSession(ctx, st)
		}
		return
	}
	name, err := roomName(st.To)
	if err != nil {
		m.h.Bounce(ctx, st, err.(*xmpp.StanzaError))
		return
	}
	switch st.Type() {
	case "", "unavailable":
	case "probe":
		return // occupants' presence is pushed, never probed (no leaks)
	default:
		return // subscriptions to rooms mean nothing
	}
	r, err := m.getRoom(ctx, name)
	if err != nil {
		m.log().Error("rooms: load failed", "room", name, "err", err)
		m.h.Bounce(ctx, st, xmpp.ErrInternal())
		return
	}
	full := st.From.String()
	if st.Type() == "unavailable" {
		if r != nil {
			m.leave(ctx, r, full, st.El, nil)
		}
		return
	}
	nick := st.To.Resourcepart()
	if nick == "" {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: "join with room@" + m.domain + "/nickname"})
		return
	}
	created := false
	if r == nil {
		if r, err = m.createOnJoin(ctx, st, name); err != nil {
			m.h.Bounce(ctx, st, xmpp.AsStanzaError(err))
			return
		}
		created = true
	}
	r.mu.Lock()
	o := r.byFull[full]
	r.mu.Unlock()
	switch {
	case o == nil:
		m.join(ctx, r, st, nick, created)
	case o.nick != nick:
		m.changeNick(ctx, r, st, o, nick)
	default:
		m.updatePresence(ctx, r, st, o)
	}
}

// createOnJoin makes the room a join asks for, if the account may create
// rooms (config rooms.create; never limited accounts).
func (m *Module) createOnJoin(ctx context.Context, st *xmpp.Stanza, name string) (*room, error) {
	role := m.serverRole(ctx, st.From.Bare())
	if role == store.RoleLimited || (m.conf().Rooms.Create == "admins" && role != store.RoleAdmin) {
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no such room, and your account may not create rooms"}
	}
	if _, err := jid.New(name, m.domain, ""); err != nil {
		return nil, &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: "not a valid room name"}
	}
	r, err := m.createRoom(ctx, name, st.From.Bare().String(), nil)
	if errors.Is(err, store.ErrExists) {
		return m.getRoom(ctx, name) // another session created it first
	}
	if err != nil {
		m.log().Error("rooms: create failed", "room", name, "err", err)
		return nil, xmpp.ErrInternal()
	}
	m.log().Info("rooms: created", "room", name, "owner", st.From.Bare().String())
	return r, nil
}

// mayEnter checks affiliation, membership and server role.
func (m *Module) mayEnter(ctx context.Context, r *room, bare jid.JID) *xmpp.StanzaError {
	r.mu.Lock()
	aff := r.cfg.Affiliation(bare.String())
	membersOnly := r.membersOnly()
	r.mu.Unlock()
	if aff == store.AffOutcast {
		return &xmpp.StanzaError{Type: "auth", Condition: "forbidden", Text: "you are banned from this room"}
	}
	if affRank(aff) >= affRank(store.AffMember) {
		return nil
	}
	role := m.serverRole(ctx, bare)
	if role == store.RoleAdmin {
		return nil
	}
	if membersOnly || role == store.RoleLimited {
		return &xmpp.StanzaError{Type: "auth", Condition: "registration-required", Text: "this room is for its members only"}
	}
	return nil
}

func (m *Module) join(ctx context.Context, r *room, st *xmpp.Stanza, nick string, created bool) {
	bare := st.From.Bare()
	if err := m.mayEnter(ctx, r, bare); err != nil {
		m.h.Bounce(ctx, st, err)
		return
	}
	serverAdmin := m.isServerAdmin(ctx, bare)
	full := st.From.String()
	r.mu.Lock()
	if other := r.occupants[nick]; other != nil && other.bare != bare.String() {
		r.mu.Unlock()
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "that nickname is in use in this room"})
		return
	}
	if r.cfg.NickReservedByOther(nick, bare.String()) {
		r.mu.Unlock()
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "that nickname is reserved by a member of this room"})
		return
	}
	o := r.occupants[nick]
	isNew := o == nil
	if isNew {
		aff := r.cfg.Affiliation(bare.String())
		o = &occupant{nick: nick, bare: bare.String(), role: r.defaultRole(aff, serverAdmin), id: r.occupantID(bare.String()), sessions: make(map[string]*elem.Element)}
		r.occupants[nick] = o
	}
	o.sessions[full] = st.El
	o.latest = full
	r.byFull[full] = o
	nonAnon := r.nonAnonymous()
	// The newcomer first learns who is there, then sees itself.
	var existing []*elem.Element
	for _, other := range r.sortedOccupants() {
		if other == o {
			continue
		}
		existing = append(existing, r.presenceOf(other, false, nonAnon || o.role == roleModerator))
	}
	status := []string{statusSelf, statusArchived}
	if nonAnon {
		status = append(status, statusNonAnonymous)
	}
	if created {
		status = append(status, statusCreated)
	}
	self := r.presenceOf(o, false, true, status...)
	others := r.recipients()
	withJID, withoutJID := r.presenceOf(o, false, true), r.presenceOf(o, false, false)
	subject := r.subjectMessage()
	unstored := r.unstoredRecords()
	r.mu.Unlock()

	sess := m.h.Session(st.From)
	if sess == nil {
		return
	}
	for _, p := range existing {
		_ = sess.Send(ctx, addressed(p, full))
	}
	_ = sess.Send(ctx, addressed(self, full))
	m.sendHistory(ctx, r, sess, st.El, unstored)
	_ = sess.Send(ctx, addressed(subject, full))
	// The others learn of the newcomer after its join is complete: in a
	// large room, hundreds of copies would otherwise stand between the
	// newcomer and its subject, which ends the join for its client.
	for _, rc := range others {
		if rc.full == full {
			continue
		}
		p := withoutJID
		if nonAnon || rc.moderator {
			p = withJID
		}
		m.deliver(ctx, rc.full, p)
	}
	if isNew {
		m.log().Debug("rooms: joined", "room", r.name(), "nick", nick)
	}
}

// changeNick moves a joined occupant to a new nickname (XEP-0045 7.6).
func (m *Module) changeNick(ctx context.Context, r *room, st *xmpp.Stanza, o *occupant, nick string) {
	full := st.From.String()
	r.mu.Lock()
	if other := r.occupants[nick]; other != nil {
		r.mu.Unlock()
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "that nickname is in use in this room"})
		return
	}
	if r.cfg.NickReservedByOther(nick, o.bare) {
		r.mu.Unlock()
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "that nickname is reserved by a member of this room"})
		return
	}
	if len(o.sessions) > 1 {
		r.mu.Unlock()
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "not-acceptable", Text: "leave from your other devices before changing your nickname"})
		return
	}
	nonAnon := r.nonAnonymous()
	gone := r.presenceOf(o, true, true, statusNickChange)
	gone.Child(NSUser, "x").Child(NSUser, "item").Set("nick", nick)
	goneAnon := r.presenceOf(o, true, false, statusNickChange)
	goneAnon.Child(NSUser, "x").Child(NSUser, "item").Set("nick", nick)
	delete(r.occupants, o.nick)
	o.nick = nick
	o.sessions[full] = st.El
	r.occupants[nick] = o
	back, backAnon := r.presenceOf(o, false, true), r.presenceOf(o, false, false)
	rcpts := r.recipients()
	r.mu.Unlock()
	for _, rc := range rcpts {
		self := rc.full == full
		g, b := goneAnon, backAnon
		if nonAnon || rc.moderator || self {
			g, b = gone, back
		}
		if self {
			g = withStatus(g, statusSelf)
			b = withStatus(b, statusSelf)
		}
		m.deliver(ctx, rc.full, g)
		m.deliver(ctx, rc.full, b)
	}
}

// updatePresence relays a joined occupant's new status.
func (m *Module) updatePresence(ctx context.Context, r *room, st *xmpp.Stanza, o *occupant) {
	full := st.From.String()
	r.mu.Lock()
	o.sessions[full] = st.El
	o.latest = full
	nonAnon := r.nonAnonymous()
	withJID, withoutJID := r.presenceOf(o, false, true), r.presenceOf(o, false, false)
	rcpts := r.recipients()
	r.mu.Unlock()
	for _, rc := range rcpts {
		p := withoutJID
		if nonAnon || rc.moderator || rc.full == full {
			p = withJID
		}
		if rc.full == full {
			p = withStatus(p, statusSelf)
		}
		m.deliver(ctx, rc.full, p)
	}
}

// leave removes one session from a room; the occupant leaves when it was
// their last. extra, if set, adds to the unavailable presence everyone sees
// (a kick's reason, a destroy notice).
func (m *Module) leave(ctx context.Context, r *room, full string, pres *elem.Element, extra func(*elem.Element)) {
	r.mu.Lock()
	o := r.byFull[full]
	if o == nil {
		r.mu.Unlock()
		return
	}
	delete(r.byFull, full)
	delete(o.sessions, full)
	selfGone := r.presenceOf(o, true, true, statusSelf)
	if st := pres.ChildText(elem.NSClient, "status"); st != "" {
		selfGone.Add(elem.New(elem.NSClient, "status").AddText(st))
	}
	if len(o.sessions) > 0 {
		// Other devices stay in the room under the nick.
		if o.latest == full {
			for f := range o.sessions {
				o.latest = f
				break
			}
		}
		r.mu.Unlock()
		m.deliver(ctx, full, selfGone)
		return
	}
	delete(r.occupants, o.nick)
	nonAnon := r.nonAnonymous()
	withJID, withoutJID := r.presenceOf(o, true, true), r.presenceOf(o, true, false)
	if st := pres.ChildText(elem.NSClient, "status"); st != "" {
		withJID.Add(elem.New(elem.NSClient, "status").AddText(st))
		withoutJID.Add(elem.New(elem.NSClient, "status").AddText(st))
	}
	if extra != nil {
		extra(selfGone)
		extra(withJID)
		extra(withoutJID)
	}
	rcpts := r.recipients()
	r.mu.Unlock()
	m.deliver(ctx, full, selfGone)
	for _, rc := range rcpts {
		p := withoutJID
		if nonAnon || rc.moderator {
			p = withJID
		}
		m.deliver(ctx, rc.full, p)
	}
}

// dropSession removes a session whose client answered a room stanza with
// an error: it is gone or confused, and others should not wait on it.
func (m *Module) dropSession(ctx context.Context, st *xmpp.Stanza) {
	name, err := roomName(st.To)
	if err != nil {
		return
	}
	m.mu.Lock()
	r := m.rooms[name]
	m.mu.Unlock()
	if r == nil {
		return
	}
	cond := ""
	if e := st.El.Child(elem.NSClient, "error"); e != nil {
		if c := e.FirstElement(); c != nil {
			cond = c.Name.Local
		}
	}
	switch cond {
	case "gone", "item-not-found", "recipient-unavailable", "redirect", "remote-server-not-found", "remote-server-timeout", "service-unavailable":
		m.leave(ctx, r, st.From.String(), elem.New(elem.NSClient, "presence", "type", "unavailable"), nil)
	}
}

// deliver sends one copy to a joined session.
func (m *Module) deliver(ctx context.Context, full string, el *elem.Element) {
	j, err := jid.Parse(full)
	if err != nil {
		return
	}
	if m.h == nil {
		return // administration without a server: nobody is in a room
	}
	if s := m.h.Session(j); s != nil {
		_ = s.Send(ctx, addressed(el, full))
	}
}

// withStatus returns a copy of a MUC presence with one more status code.
func withStatus(p *elem.Element, code string) *elem.Element {
	c := p.Copy()
	if x := c.Child(NSUser, "x"); x != nil {
		x.Add(elem.New(NSUser, "status", "code", code))
	}
	return c
}

// subjectMessage is the message that ends a join (r.mu held): the subject,
// empty if none was set (XEP-0045 section 7.2.15).
func (r *room) subjectMessage() *elem.Element {
	from := r.jid.String()
	if r.cfg.SubjectNick != "" {
		from = r.occupantJID(r.cfg.SubjectNick)
	}
	msg := elem.New(elem.NSClient, "message", "type", "groupchat", "from", from, "id", "subject-"+strconv.FormatInt(r.cfg.SubjectTime.UnixNano(), 36))
	msg.Add(elem.New(elem.NSClient, "subject").AddText(r.cfg.Subject))
	if !r.cfg.SubjectTime.IsZero() {
		msg.Add(elem.New(NSDelay, "delay", "from", r.jid.String(), "stamp", r.cfg.SubjectTime.UTC().Format(time.RFC3339)))
	}
	return msg
}
