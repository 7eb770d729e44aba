package muc

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/e2ee"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/mam"
)

// BounceText is the policy-violation text for plaintext sent to an
// encrypted room.
const BounceText = "This room is end-to-end encrypted: a message with a body must be encrypted with OMEMO or OpenPGP. " +
	"Your message was not sent to the room; turn on encryption for this chat and send it again."

func (m *Module) handleMessage(ctx context.Context, st *xmpp.Stanza) {
	if xmpp.IsError(st.El) {
		m.dropSession(ctx, st)
		return
	}
	name, err := roomName(st.To)
	if err != nil {
		m.h.Bounce(ctx, st, err.(*xmpp.StanzaError))
		return
	}
	r, err := m.getRoom(ctx, name)
	if err != nil {
		m.log().Error("rooms: load failed", "room", name, "err", err)
		m.h.Bounce(ctx, st, xmpp.ErrInternal())
		return
	}
	if r == nil {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no such room"})
		return
	}
	if st.To.Resourcepart() != "" {
		m.privateMessage(ctx, r, st)
		return
	}
	if x := st.El.Child(NSUser, "x"); x != nil && (x.Child(NSUser, "invite") != nil || x.Child(NSUser, "decline") != nil) {
		m.mediated(ctx, r, st, x)
		return
	}
	if st.Type() != "groupchat" {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "modify", Condition: "bad-request", Text: "messages to a room are of type groupchat"})
		return
	}
	m.groupchat(ctx, r, st)
}

// sender finds the occupant a stanza comes from, or bounces it.
func (m *Module) sender(ctx context.Context, r *room, st *xmpp.Stanza) *occupant {
	r.mu.Lock()
	o := r.byFull[st.From.String()]
	r.mu.Unlock()
	if o == nil {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "not-acceptable", Text: "join the room before sending to it"})
	}
	return o
}

func (m *Module) groupchat(ctx context.Context, r *room, st *xmpp.Stanza) {
	o := m.sender(ctx, r, st)
	if o == nil {
		return
	}
	r.mu.Lock()
	role := o.role
	encrypted := r.encrypted()
	occupantsSubject := r.cfg.OccupantsSubject
	r.mu.Unlock()
	if role == roleVisitor {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "auth", Condition: "forbidden", Text: "this room is moderated: ask a moderator for voice"})
		return
	}
	subject := st.El.Child(elem.NSClient, "subject")
	if subject != nil && st.El.Child(elem.NSClient, "body") == nil {
		if role != roleModerator && !occupantsSubject {
			m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "auth", Condition: "forbidden", Text: "only moderators may change the subject here"})
			return
		}
		m.setSubject(ctx, r, st, o, subject.Text())
		return
	}
	if encrypted {
		switch e2ee.Decide(e2ee.Policy(m.conf().E2EE.Policy), st.El) {
		case e2ee.Bounce:
			m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "modify", Condition: "policy-violation", Text: BounceText})
			return
		case e2ee.Warn, e2ee.Deliver:
		}
	}
	out := m.reflect(r, st.El, o)
	if !archivable(out) {
		m.broadcast(ctx, r, out)
		return
	}
	id := m.nextID()
	out.Add(elem.New(NSStanzaID, "stanza-id", "id", mam.FormatID(id), "by", r.jid.String()))
	// Every occupant gets the same children: serialize them once.
	out.Memoize()
	rec := store.ArchiveRecord{ID: id, With: r.occupantJID(o.nick), Stanza: []byte(out.String())}
	// As with 1:1 messages (package mam), delivery does not wait for the
	// disk: the archive's group commit and fsync take 10 ms or more, and
	// would come before every copy. The write runs beside the broadcast,
	// the sender's stream management ack waits for it, and a failed write
	// comes back to the sender as an error. Until the write returns, the
	// message is in r.unstored, so a newcomer gets it with the history;
	// recipients and unstored change under one lock, so a join sees the
	// message either live or there.
	release := st.HoldAck()
	r.mu.Lock()
	done := make(chan struct{})
	r.unstored = append(r.unstored, pendingRecord{rec: rec, done: done})
	rcpts := r.recipients()
	r.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	m.writes.Add(1)
	go func() {
		defer m.writes.Done()
		err := m.st.AppendRoomArchive(ctx, r.name(), rec)
		r.mu.Lock()
		r.unstored = slices.DeleteFunc(r.unstored, func(u pendingRecord) bool { return u.done == done })
		r.mu.Unlock()
		close(done)
		release(err)
		if err != nil {
			m.log().Error("rooms: archive write failed", "room", r.name(), "err", err)
			m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint",
				Text: "the room could not store your message: the occupants got it, but it is not in the room's history or archive"})
		}
	}()
	m.deliverAll(ctx, rcpts, out)
}

// reflect builds what the room sends for an occupant's message: from the
// occupant's room JID, the sender's own id kept (clients match their
// reflection by it), and the room's own stanza-id and occupant-id in place
// of any the sender forged.
func (m *Module) reflect(r *room, in *elem.Element, o *occupant) *elem.Element {
	out := elem.New(elem.NSClient, "message", "type", "groupchat", "from", r.occupantJID(o.nick))
	if id := in.Get("id"); id != "" {
		out.Set("id", id)
	}
	for _, a := range in.Attr {
		if a.Name.Space == elem.NSXML && a.Name.Local == "lang" {
			out.Attr = append(out.Attr, a)
		}
	}
	for _, c := range in.Elements() {
		switch {
		case c.Name.Space == NSStanzaID && c.Get("by") == r.jid.String():
		case c.Name.Space == NSOccupantID:
		default:
			out.Add(c)
		}
	}
	return out.Add(elem.New(NSOccupantID, "occupant-id", "id", o.id))
}

// archivable: conversation, not noise. Chat states and markers are
// broadcast but not kept.
func archivable(el *elem.Element) bool {
	if el.Child(elem.NSClient, "body") != nil || e2ee.Encrypted(el) {
		return true
	}
	return el.Child(NSRetract, "retract") != nil || el.Child(NSFasten, "apply-to") != nil
}

// broadcast sends el to every joined session.
func (m *Module) broadcast(ctx context.Context, r *room, el *elem.Element) {
	r.mu.Lock()
	rcpts := r.recipients()
	r.mu.Unlock()
	m.deliverAll(ctx, rcpts, el)
}

// deliverAll sends el to each recipient.
func (m *Module) deliverAll(ctx context.Context, rcpts []recipient, el *elem.Element) {
	for _, rc := range rcpts {
		m.deliver(ctx, rc.full, el)
	}
}

// nextID returns a unique archive ID: the time in nanoseconds, bumped past
// the last one handed out.
func (m *Module) nextID() uint64 {
	m.idMu.Lock()
	defer m.idMu.Unlock()
	id := uint64(m.now().UnixNano())
	if id <= m.lastID {
		id = m.lastID + 1
	}
	m.lastID = id
	return id
}

func (m *Module) setSubject(ctx context.Context, r *room, st *xmpp.Stanza, o *occupant, subject string) {
	now := m.now().UTC()
	err := m.update(ctx, r, func(c *store.Room) error {
		c.Subject, c.SubjectNick, c.SubjectTime = subject, o.nick, now
		return nil
	})
	if err != nil {
		m.log().Error("rooms: subject not stored", "room", r.name(), "err", err)
		m.h.Bounce(ctx, st, xmpp.ErrInternal())
		return
	}
	msg := elem.New(elem.NSClient, "message", "type", "groupchat", "from", r.occupantJID(o.nick))
	if id := st.ID(); id != "" {
		msg.Set("id", id)
	}
	msg.Add(elem.New(elem.NSClient, "subject").AddText(subject))
	m.broadcast(ctx, r, msg)
}

// privateMessage relays a message between two occupants (XEP-0045 7.5).
func (m *Module) privateMessage(ctx context.Context, r *room, st *xmpp.Stanza) {
	if st.Type() == "groupchat" {
		m.h.Bounce(ctx, st, xmpp.ErrBadRequest("a groupchat message goes to the room, not to an occupant"))
		return
	}
	o := m.sender(ctx, r, st)
	if o == nil {
		return
	}
	r.mu.Lock()
	target := r.occupants[st.To.Resourcepart()]
	encrypted := r.encrypted()
	var fulls []string
	if target != nil {
		for f := range target.sessions {
			fulls = append(fulls, f)
		}
	}
	r.mu.Unlock()
	if target == nil {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "nobody by that nickname is in the room"})
		return
	}
	if encrypted && e2ee.Decide(e2ee.Policy(m.conf().E2EE.Policy), st.El) == e2ee.Bounce {
		m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "modify", Condition: "policy-violation", Text: BounceText})
		return
	}
	out := elem.New(elem.NSClient, "message", "from", r.occupantJID(o.nick))
	for _, a := range st.El.Attr {
		if a.Name.Space == "" && (a.Name.Local == "from" || a.Name.Local == "to") {
			continue
		}
		out.Attr = append(out.Attr, a)
	}
	out.Children = st.El.Children
	if out.Child(NSUser, "x") == nil {
		out.Add(elem.New(NSUser, "x"))
	}
	for _, f := range fulls {
		m.deliver(ctx, f, out)
	}
}

// mediated handles invitations and declines sent through the room
// (XEP-0045 7.8.2, 7.8.3). Inviting into a members-only room makes the
// invitee a member, when the inviter may do so.
func (m *Module) mediated(ctx context.Context, r *room, st *xmpp.Stanza, x *elem.Element) {
	if d := x.Child(NSUser, "decline"); d != nil {
		to, err := jid.Parse(d.Get("to"))
		if err != nil || !m.local(to) {
			m.h.Bounce(ctx, st, xmpp.ErrBadRequest("decline: 'to' must be an account of this server"))
			return
		}
		msg := elem.New(elem.NSClient, "message", "from", r.jid.String(), "to", to.Bare().String()).Add(
			elem.New(NSUser, "x").Add(elem.New(NSUser, "decline", "from", st.From.Bare().String()).Add(d.Child(NSUser, "reason"))))
		m.h.Route(ctx, msg)
		return
	}
	r.mu.Lock()
	aff := r.cfg.Affiliation(st.From.Bare().String())
	joined := r.byFull[st.From.String()] != nil
	membersOnly := r.membersOnly()
	membersInvite := r.cfg.MembersInvite
	title := r.cfg.Title
	r.mu.Unlock()
	serverAdmin := m.isServerAdmin(ctx, st.From.Bare())
	may := serverAdmin || affRank(aff) >= affRank(store.AffAdmin) || (membersInvite && affRank(aff) >= affRank(store.AffMember))
	if !membersOnly {
		may = may || joined
	}
	if !may {
		m.h.Bounce(ctx, st, xmpp.ErrForbidden("you may not invite people to this room"))
		return
	}
	for _, inv := range x.Elements() {
		if inv.Name.Local != "invite" {
			continue
		}
		to, err := jid.Parse(inv.Get("to"))
		if err != nil || !m.local(to) {
			m.h.Bounce(ctx, st, &xmpp.StanzaError{Type: "cancel", Condition: "not-allowed", Text: "only accounts of " + m.conf().Domain + " can be invited: this room does not federate"})
			return
		}
		bare := to.Bare().String()
		if membersOnly {
			err := m.update(ctx, r, func(c *store.Room) error {
				if a := c.Affiliation(bare); a == store.AffOutcast {
					return xmpp.ErrForbidden(bare + " is banned from this room")
				} else if a != store.AffNone {
					return nil
				}
				c.SetAffiliation(bare, store.AffMember)
				return nil
			})
			if err != nil {
				m.h.Bounce(ctx, st, xmpp.AsStanzaError(err))
				return
			}
		}
		msg := elem.New(elem.NSClient, "message", "from", r.jid.String(), "to", bare)
		if id := st.ID(); id != "" {
			msg.Set("id", id)
		}
		ux := elem.New(NSUser, "x").Add(elem.New(NSUser, "invite", "from", st.From.Bare().String()).Add(inv.Child(NSUser, "reason")))
		msg.Add(ux, elem.New(NSConference, "x", "jid", r.jid.String()))
		if title != "" {
			msg.Add(elem.New(elem.NSClient, "body").AddText(st.From.Bare().String() + " invites you to the room " + title + " (" + r.jid.String() + ")"))
			// A body would trip the E2EE policy nowhere (the server sends
			// it), but it makes old clients show something readable.
		}
		m.h.Route(ctx, msg)
	}
}

// sendHistory sends what the join's <history/> asks for (XEP-0045
// 7.2.14): the last messages of the archive, and of unstored, the room's
// messages still being written when the newcomer entered.
func (m *Module) sendHistory(ctx context.Context, r *room, sess *xmpp.Session, join *elem.Element, unstored []store.ArchiveRecord) {
	r.mu.Lock()
	limit := r.cfg.MaxHistory
	r.mu.Unlock()
	if limit <= 0 {
		limit = defaultHistory
	}
	limit = min(limit, maxHistory)
	var since time.Time
	if x := join.Child(NS, "x"); x != nil {
		if h := x.Child(NS, "history"); h != nil {
			if v := h.Get("maxstanzas"); v != "" {
				if n, err := strconv.Atoi(v); err == nil && n >= 0 {
					limit = min(limit, n)
				}
			}
			if v := h.Get("maxchars"); v == "0" {
				limit = 0
			}
			if v := h.Get("seconds"); v != "" {
				if n, err := strconv.Atoi(v); err == nil && n >= 0 {
					since = m.now().Add(-time.Duration(n) * time.Second)
				}
			}
			if v := h.Get("since"); v != "" {
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.After(since) {
					since = t
				}
			}
		}
	}
	if limit == 0 {
		return
	}
	q := store.ArchiveQuery{Max: limit, LastPage: true}
	if !since.IsZero() && since.UnixNano() > 0 {
		q.Start = uint64(since.UnixNano())
	}
	page, err := m.st.QueryRoomArchive(ctx, r.name(), q)
	if err != nil {
		m.log().Error("rooms: history unavailable", "room", r.name(), "err", err)
		return
	}
	recs := page.Records
	if len(unstored) > 0 {
		// Those written since the join are in the page too.
		recs = slices.Clone(recs)
		for _, u := range unstored {
			dup := slices.ContainsFunc(recs, func(s store.ArchiveRecord) bool { return s.ID == u.ID })
			if !dup && u.ID >= q.Start {
				recs = append(recs, u)
			}
		}
		slices.SortFunc(recs, func(a, b store.ArchiveRecord) int { return cmp.Compare(a.ID, b.ID) })
		if len(recs) > limit {
			recs = recs[len(recs)-limit:]
		}
	}
	to := sess.JID().String()
	for _, rec := range recs {
		msg, err := mam.ParseStanza(rec.Stanza)
		if err != nil {
			continue
		}
		msg.Set("to", to)
		msg.Add(elem.New(NSDelay, "delay", "from", r.jid.String(), "stamp", rec.Time().Format(mam.StampFormat)))
		_ = sess.Send(ctx, msg)
	}
}
