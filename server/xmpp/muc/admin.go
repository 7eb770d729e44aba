package muc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/mam"
)

// Field names of hearth's own room settings in the configuration form and
// in disco#info. Only chat admins may change them.
const (
	FieldEncryption = "x-hearth#encryption" // "encrypted" or "plaintext"
	FieldRetention  = "x-hearth#retention"  // days the archive keeps messages
	FieldFederation = "x-hearth#federation" // "off"
	// FieldPolicy, in disco#info only, is what is enforced: the server's
	// E2EE policy (required, optional, off) for an encrypted room, off for
	// a plaintext one.
	FieldPolicy = "x-hearth#policy"
)

// policyFor is the E2EE policy a room's messages meet.
func (m *Module) policyFor(c store.Room) string {
	if c.Plaintext {
		return "off"
	}
	if p := m.conf().E2EE.Policy; p != "" {
		return p
	}
	return "required"
}

// actor is who makes a request, as the room sees them.
type actor struct {
	bare        string
	aff         store.Affiliation
	role        string // "" when not joined
	nick        string
	serverAdmin bool
}

func (a actor) rank() int {
	if a.serverAdmin {
		return affRank(store.AffOwner) + 1
	}
	return affRank(a.aff)
}

func (a actor) moderator() bool {
	return a.role == roleModerator || a.serverAdmin || affRank(a.aff) >= affRank(store.AffAdmin)
}

func (m *Module) actorOf(ctx context.Context, r *room, st *xmpp.Stanza) actor {
	a := actor{bare: st.From.Bare().String(), serverAdmin: m.isServerAdmin(ctx, st.From.Bare())}
	r.mu.Lock()
	a.aff = r.cfg.Affiliation(a.bare)
	if o := r.byFull[st.From.String()]; o != nil {
		a.role, a.nick = o.role, o.nick
	}
	r.mu.Unlock()
	return a
}

// adminGet returns an affiliation or role list (XEP-0045 9.5, 8.5).
// Members may read the member, admin and owner lists of a members-only
// room: OMEMO clients encrypt to every member and need their JIDs.
func (m *Module) adminGet(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) (*elem.Element, error) {
	item := p.Child(NSAdmin, "item")
	if item == nil {
		return nil, xmpp.ErrBadRequest("ask for <item affiliation='…'/> or <item role='…'/>")
	}
	a := m.actorOf(ctx, r, st)
	q := elem.New(NSAdmin, "query")
	r.mu.Lock()
	defer r.mu.Unlock()
	if aff := store.Affiliation(item.Get("affiliation")); aff != "" {
		if !aff.Valid() || aff == store.AffNone {
			return nil, xmpp.ErrBadRequest("affiliation lists are owner, admin, member and outcast")
		}
		mayRead := a.rank() >= affRank(store.AffAdmin) || (aff != store.AffOutcast && a.rank() >= affRank(store.AffMember))
		if !mayRead {
			return nil, xmpp.ErrForbidden("you may not read this list")
		}
		var jids []string
		for j, x := range r.cfg.Affiliations {
			if x == aff {
				jids = append(jids, j)
			}
		}
		sort.Strings(jids)
		for _, j := range jids {
			it := elem.New(NSAdmin, "item", "affiliation", string(aff), "jid", j)
			if n := r.cfg.Nicks[j]; n != "" {
				it.Set("nick", n)
			}
			q.Add(it)
		}
		return q, nil
	}
	role := item.Get("role")
	if role != roleModerator && role != roleParticipant && role != roleVisitor {
		return nil, xmpp.ErrBadRequest("role lists are moderator, participant and visitor")
	}
	if !a.moderator() {
		return nil, xmpp.ErrForbidden("only moderators may read role lists")
	}
	for _, o := range r.sortedOccupants() {
		if o.role == role {
			q.Add(elem.New(NSAdmin, "item", "role", role, "nick", o.nick, "jid", o.bare, "affiliation", string(r.cfg.Affiliation(o.bare))))
		}
	}
	return q, nil
}

// adminSet changes roles (kick, voice, moderator) and affiliations (ban,
// membership, admin, owner). Every item is checked before any applies.
func (m *Module) adminSet(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) error {
	a := m.actorOf(ctx, r, st)
	var changes []func() error
	for _, item := range p.Elements() {
		if item.Name.Local != "item" {
			continue
		}
		reason := item.ChildText(NSAdmin, "reason")
		switch {
		case item.Get("affiliation") != "":
			bare, err := m.itemJID(r, item)
			if err != nil {
				return err
			}
			aff := store.Affiliation(item.Get("affiliation"))
			if err := m.checkAffiliation(r, a, bare, aff); err != nil {
				return err
			}
			changes = append(changes, func() error { return m.setAffiliation(ctx, r, a, bare, aff, reason) })
		case item.Get("role") != "":
			nick, role := item.Get("nick"), item.Get("role")
			if err := m.checkRole(ctx, r, a, nick, role); err != nil {
				return err
			}
			changes = append(changes, func() error { return m.setRole(ctx, r, a, nick, role, reason) })
		default:
			return xmpp.ErrBadRequest("an item needs an affiliation or a role")
		}
	}
	if len(changes) == 0 {
		return xmpp.ErrBadRequest("no items")
	}
	for _, c := range changes {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

// itemJID reads the bare JID an affiliation item is about (by jid, or by
// the nick of someone present).
func (m *Module) itemJID(r *room, item *elem.Element) (string, error) {
	if s := item.Get("jid"); s != "" {
		j, err := jid.Parse(s)
		if err != nil {
			return "", &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: fmt.Sprintf("%q is not a valid JID", s)}
		}
		if !m.local(j) {
			return "", &xmpp.StanzaError{Type: "cancel", Condition: "not-allowed", Text: "this room does not federate: only accounts of " + m.conf().Domain + " can be affiliated"}
		}
		return j.Bare().String(), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := r.occupants[item.Get("nick")]; o != nil {
		return o.bare, nil
	}
	return "", &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "nobody by that nickname is in the room"}
}

func (m *Module) checkAffiliation(r *room, a actor, bare string, aff store.Affiliation) error {
	if !aff.Valid() {
		return xmpp.ErrBadRequest("affiliation must be owner, admin, member, none or outcast")
	}
	r.mu.Lock()
	cur := r.cfg.Affiliation(bare)
	owners := 0
	for _, x := range r.cfg.Affiliations {
		if x == store.AffOwner {
			owners++
		}
	}
	r.mu.Unlock()
	need := affRank(store.AffAdmin)
	if aff == store.AffOwner || aff == store.AffAdmin || cur == store.AffOwner || cur == store.AffAdmin {
		need = affRank(store.AffOwner)
	}
	if a.rank() < need {
		return &xmpp.StanzaError{Type: "cancel", Condition: "not-allowed", Text: "you may not change that affiliation"}
	}
	if cur == store.AffOwner && aff != store.AffOwner && owners == 1 {
		return &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "a room keeps at least one owner"}
	}
	return nil
}

func (m *Module) setAffiliation(ctx context.Context, r *room, a actor, bare string, aff store.Affiliation, reason string) error {
	err := m.update(ctx, r, func(c *store.Room) error {
		c.SetAffiliation(bare, aff)
		return nil
	})
	if err != nil {
		return err
	}
	m.log().Info("rooms: affiliation changed", "room", r.name(), "jid", bare, "affiliation", aff, "by", a.bare)
	m.applyAffiliation(ctx, r, bare, reason, a.nick)
	return nil
}

// applyAffiliation brings a person present in the room in line with their
// (new) affiliation: removed when banned or no longer a member of a
// members-only room, otherwise their role follows and everyone sees it.
func (m *Module) applyAffiliation(ctx context.Context, r *room, bare, reason, actorNick string) {
	r.mu.Lock()
	var o *occupant
	for _, x := range r.occupants {
		if x.bare == bare {
			o = x
		}
	}
	if o == nil {
		r.mu.Unlock()
		return
	}
	aff := r.cfg.Affiliation(bare)
	remove := ""
	switch {
	case aff == store.AffOutcast:
		remove = statusBanned
	case aff == store.AffNone && r.membersOnly():
		remove = statusAffChange
	}
	fulls := make([]string, 0, len(o.sessions))
	for f := range o.sessions {
		fulls = append(fulls, f)
	}
	r.mu.Unlock()
	if remove != "" {
		m.removeOccupant(ctx, r, fulls, remove, reason, actorNick)
		return
	}
	serverAdmin := m.isServerAdmin(ctx, mustBare(bare))
	r.mu.Lock()
	o.role = r.defaultRole(aff, serverAdmin)
	r.mu.Unlock()
	m.rebroadcast(ctx, r, o)
}

func mustBare(s string) jid.JID { j, _ := jid.Parse(s); return j }

func (m *Module) checkRole(ctx context.Context, r *room, a actor, nick, role string) error {
	r.mu.Lock()
	o := r.occupants[nick]
	var targetAff store.Affiliation
	if o != nil {
		targetAff = r.cfg.Affiliation(o.bare)
	}
	r.mu.Unlock()
	if o == nil {
		return &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "nobody by that nickname is in the room"}
	}
	switch role {
	case roleNone, roleVisitor, roleParticipant:
		if !a.moderator() {
			return xmpp.ErrForbidden("only moderators may do that")
		}
		if affRank(targetAff) >= affRank(store.AffAdmin) || m.isServerAdmin(ctx, mustBare(o.bare)) {
			return &xmpp.StanzaError{Type: "cancel", Condition: "not-allowed", Text: "room admins and owners cannot be kicked or silenced"}
		}
	case roleModerator:
		if a.rank() < affRank(store.AffAdmin) {
			return xmpp.ErrForbidden("only room admins may make moderators")
		}
	default:
		return xmpp.ErrBadRequest("role must be moderator, participant, visitor or none")
	}
	return nil
}

func (m *Module) setRole(ctx context.Context, r *room, a actor, nick, role, reason string) error {
	r.mu.Lock()
	o := r.occupants[nick]
	if o == nil {
		r.mu.Unlock()
		return nil // gone meanwhile
	}
	fulls := make([]string, 0, len(o.sessions))
	for f := range o.sessions {
		fulls = append(fulls, f)
	}
	if role != roleNone {
		o.role = role
	}
	r.mu.Unlock()
	if role == roleNone {
		m.log().Info("rooms: kicked", "room", r.name(), "nick", nick, "by", a.bare)
		m.removeOccupant(ctx, r, fulls, statusKicked, reason, a.nick)
		return nil
	}
	m.rebroadcast(ctx, r, o)
	return nil
}

// removeOccupant takes every session of an occupant out of the room with
// a status saying why (kicked, banned, no longer a member).
func (m *Module) removeOccupant(ctx context.Context, r *room, fulls []string, status, reason, actorNick string) {
	for _, f := range fulls {
		m.leave(ctx, r, f, elem.New(elem.NSClient, "presence", "type", "unavailable"), func(p *elem.Element) {
			x := p.Child(NSUser, "x")
			x.Add(elem.New(NSUser, "status", "code", status))
			item := x.Child(NSUser, "item")
			if actorNick != "" {
				item.Add(elem.New(NSUser, "actor", "nick", actorNick))
			}
			if reason != "" {
				item.Add(elem.New(NSUser, "reason").AddText(reason))
			}
		})
	}
}

// rebroadcast shows everyone an occupant's changed role or affiliation.
func (m *Module) rebroadcast(ctx context.Context, r *room, o *occupant) {
	r.mu.Lock()
	nonAnon := r.nonAnonymous()
	withJID, withoutJID := r.presenceOf(o, false, true), r.presenceOf(o, false, false)
	rcpts := r.recipients()
	r.mu.Unlock()
	for _, rc := range rcpts {
		p := withoutJID
		if nonAnon || rc.moderator {
			p = withJID
		}
		if _, own := o.sessions[rc.full]; own {
			p = withStatus(withJID, statusSelf)
		}
		m.deliver(ctx, rc.full, p)
	}
}

// moderate retracts a message for everyone (XEP-0425): the archive keeps
// a tombstone, and the room tells its occupants.
func (m *Module) moderate(ctx context.Context, r *room, st *xmpp.Stanza, stanzaID, reason string) error {
	a := m.actorOf(ctx, r, st)
	if !a.moderator() {
		return xmpp.ErrForbidden("only moderators may retract messages")
	}
	id, ok := mam.ParseID(stanzaID)
	if !ok {
		return &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no message with that id in the room's archive"}
	}
	r.settle()
	page, err := m.st.QueryRoomArchive(ctx, r.name(), store.ArchiveQuery{IDs: []uint64{id}, Max: 1})
	if err != nil {
		return err
	}
	if len(page.Records) == 0 {
		return &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no message with that id in the room's archive"}
	}
	orig, err := mam.ParseStanza(page.Records[0].Stanza)
	if err != nil {
		return err
	}
	by := r.jid.String()
	if a.nick != "" {
		by = r.occupantJID(a.nick)
	}
	r.mu.Lock()
	modOID := r.occupantID(a.bare)
	r.mu.Unlock()
	moderated := func() *elem.Element {
		e := elem.New(NSModerate, "moderated", "by", by).Add(elem.New(NSOccupantID, "occupant-id", "id", modOID))
		return e
	}
	stamp := m.now().UTC().Format(time.RFC3339)
	tomb := elem.New(elem.NSClient, "message", "type", "groupchat", "from", orig.Get("from"))
	if oid := orig.Get("id"); oid != "" {
		tomb.Set("id", oid)
	}
	retracted := elem.New(NSRetract, "retracted", "stamp", stamp).Add(moderated())
	if reason != "" {
		retracted.Add(elem.New(NSRetract, "reason").AddText(reason))
	}
	tomb.Add(retracted)
	for _, c := range orig.Elements() {
		if c.Name.Space == NSStanzaID || c.Name.Space == NSOccupantID {
			tomb.Add(c)
		}
	}
	if err := m.st.ReplaceRoomArchive(ctx, r.name(), id, []byte(tomb.String())); err != nil {
		return err
	}
	// The notice carries the current and the older wire format, so every
	// client removes the message.
	notice := elem.New(elem.NSClient, "message", "type", "groupchat", "from", r.jid.String(), "id", "retract-"+stanzaID)
	retract := elem.New(NSRetract, "retract", "id", stanzaID).Add(moderated())
	if reason != "" {
		retract.Add(elem.New(NSRetract, "reason").AddText(reason))
	}
	notice.Add(retract)
	old := elem.New(NSModerate0, "moderated", "by", by).Add(elem.New(NSRetract0, "retract"))
	if reason != "" {
		old.Add(elem.New(NSModerate0, "reason").AddText(reason))
	}
	notice.Add(elem.New(NSFasten, "apply-to", "id", stanzaID).Add(old))
	nid := m.nextID()
	notice.Add(elem.New(NSStanzaID, "stanza-id", "id", mam.FormatID(nid), "by", r.jid.String()))
	if err := m.st.AppendRoomArchive(ctx, r.name(), store.ArchiveRecord{ID: nid, With: r.jid.String(), Stanza: []byte(notice.String())}); err != nil {
		return err
	}
	m.log().Info("rooms: message retracted by a moderator", "room", r.name(), "id", stanzaID, "by", a.bare)
	m.broadcast(ctx, r, notice)
	return nil
}

// form holds a submitted data form's values.
type form map[string][]string

func formValues(x *elem.Element) form {
	f := form{}
	if x == nil {
		return f
	}
	for _, fl := range x.Elements() {
		if fl.Name.Local != "field" {
			continue
		}
		var vals []string
		for _, v := range fl.Elements() {
			if v.Name.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		f[fl.Get("var")] = vals
	}
	return f
}

func (f form) get(name string) string {
	if v := f[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (f form) has(name string) bool { _, ok := f[name]; return ok }

func (f form) bool(name string) (bool, bool) {
	if !f.has(name) {
		return false, false
	}
	v := strings.TrimSpace(f.get(name))
	return v == "1" || v == "true", true
}

// ownerGet returns the configuration form (XEP-0045 10.2).
func (m *Module) ownerGet(ctx context.Context, r *room, st *xmpp.Stanza, _ *elem.Element) (*elem.Element, error) {
	if !m.isOwner(ctx, r, st) {
		return nil, xmpp.ErrForbidden("only the room's owners may configure it")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return elem.New(NSOwner, "query").Add(m.configForm(r)), nil
}

func boolValue(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// configForm is the room's configuration (r.mu held).
func (m *Module) configForm(r *room) *elem.Element {
	c := r.cfg
	field := func(name, typ, label, value string, opts ...string) *elem.Element {
		f := elem.New(NSData, "field", "var", name, "type", typ, "label", label)
		for i := 0; i+1 < len(opts); i += 2 {
			f.Add(elem.New(NSData, "option", "label", opts[i+1]).Add(elem.New(NSData, "value").AddText(opts[i])))
		}
		return f.Add(elem.New(NSData, "value").AddText(value))
	}
	whois := "anyone"
	if !r.nonAnonymous() {
		whois = "moderators"
	}
	mode := "encrypted"
	if c.Plaintext {
		mode = "plaintext"
	}
	history := c.MaxHistory
	if history <= 0 {
		history = defaultHistory
	}
	retention := m.retention(c)
	x := elem.New(NSData, "x", "type", "form").Add(
		elem.New(NSData, "title").AddText("Configuration of "+r.jid.String()),
		elem.New(NSData, "instructions").AddText("Encrypted rooms are members-only and show real JIDs to members, as OMEMO needs. Only chat admins can make a room plaintext or change how long its archive is kept."),
		hiddenField("FORM_TYPE", NSRoomConfig),
		field("muc#roomconfig_roomname", "text-single", "Name", c.Title),
		field("muc#roomconfig_roomdesc", "text-single", "Description", c.Description),
		field("muc#roomconfig_persistentroom", "boolean", "Persistent (always)", "1"),
		field("muc#roomconfig_publicroom", "boolean", "Listed in the room directory", boolValue(c.Public)),
		field("muc#roomconfig_membersonly", "boolean", "Members only", boolValue(r.membersOnly())),
		field("muc#roomconfig_moderatedroom", "boolean", "Moderated (only members speak)", boolValue(c.Moderated)),
		field("muc#roomconfig_whois", "list-single", "Who may see real JIDs", whois, "moderators", "Moderators only", "anyone", "Anyone"),
		field("muc#roomconfig_changesubject", "boolean", "Occupants may change the subject", boolValue(c.OccupantsSubject)),
		field("muc#roomconfig_allowinvites", "boolean", "Members may invite", boolValue(c.MembersInvite)),
		field("muc#maxhistoryfetch", "text-single", "Messages shown on joining", strconv.Itoa(history)),
		field("muc#roomconfig_enablelogging", "boolean", "Archived (always)", "1"),
		field(FieldEncryption, "list-single", "End-to-end encryption (chat admins only)", mode, "encrypted", "Required (OMEMO or OpenPGP)", "plaintext", "Plaintext allowed"),
		field(FieldRetention, "text-single", "Days the archive keeps messages (chat admins only)", strconv.Itoa(int(retention/(24*time.Hour)))),
		field(FieldFederation, "list-single", "Federation", "off", "off", "Off: accounts of this server only"),
	)
	return x
}

// retention is how long a room's archive keeps messages (0: forever).
func (m *Module) retention(c store.Room) time.Duration {
	return m.conf().Retention.ForRoom(c.Retention)
}

// checkRetention holds a chat admin's choice within the server's bounds.
func (m *Module) checkRetention(d time.Duration) error {
	hi := m.conf().Retention.RoomArchiveMax.D()
	if d < config.RoomArchiveMin || (hi > 0 && d > hi) {
		return fmt.Errorf("a room's archive keeps messages between %d and %d days on this server", int(config.RoomArchiveMin.Hours()/24), int(hi.Hours()/24))
	}
	return nil
}

// ownerSet submits a configuration form or destroys the room.
func (m *Module) ownerSet(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) error {
	if !m.isOwner(ctx, r, st) {
		return xmpp.ErrForbidden("only the room's owners may configure it")
	}
	if d := p.Child(NSOwner, "destroy"); d != nil {
		return m.destroy(ctx, r, d.Get("jid"), d.ChildText(NSOwner, "reason"), st.From.Bare().String())
	}
	x := p.Child(NSData, "x")
	if x == nil || x.Get("type") == "cancel" {
		return nil
	}
	if x.Get("type") != "submit" {
		return xmpp.ErrBadRequest("submit the form with type='submit'")
	}
	f := formValues(x)
	serverAdmin := m.isServerAdmin(ctx, st.From.Bare())
	ch, err := m.applyForm(r, f, serverAdmin)
	if err != nil {
		return err
	}
	return m.commitConfig(ctx, r, ch, st.From.Bare().String())
}

// configChange is a validated new configuration and what it changes.
type configChange struct {
	next            store.Room
	modeChanged     bool
	retentionChange bool
}

// applyForm validates submitted values against the current configuration.
func (m *Module) applyForm(r *room, f form, serverAdmin bool) (configChange, error) {
	r.mu.Lock()
	cur := r.cfg
	r.mu.Unlock()
	next := cur
	if f.has("muc#roomconfig_roomname") {
		next.Title = strings.TrimSpace(f.get("muc#roomconfig_roomname"))
	}
	if f.has("muc#roomconfig_roomdesc") {
		next.Description = strings.TrimSpace(f.get("muc#roomconfig_roomdesc"))
	}
	if v, ok := f.bool("muc#roomconfig_publicroom"); ok {
		next.Public = v
	}
	if v, ok := f.bool("muc#roomconfig_membersonly"); ok {
		next.Open = !v
	}
	if v, ok := f.bool("muc#roomconfig_moderatedroom"); ok {
		next.Moderated = v
	}
	if v, ok := f.bool("muc#roomconfig_changesubject"); ok {
		next.OccupantsSubject = v
	}
	if v, ok := f.bool("muc#roomconfig_allowinvites"); ok {
		next.MembersInvite = v
	}
	if f.has("muc#roomconfig_whois") {
		switch f.get("muc#roomconfig_whois") {
		case "anyone":
			next.SemiAnonymous = false
		case "moderators":
			next.SemiAnonymous = true
		default:
			return configChange{}, xmpp.ErrBadRequest("muc#roomconfig_whois is anyone or moderators")
		}
	}
	if f.has("muc#maxhistoryfetch") {
		n, err := strconv.Atoi(strings.TrimSpace(f.get("muc#maxhistoryfetch")))
		if err != nil || n < 0 || n > maxHistory {
			return configChange{}, xmpp.ErrBadRequest(fmt.Sprintf("muc#maxhistoryfetch is a number from 0 to %d", maxHistory))
		}
		next.MaxHistory = n
	}
	if f.has(FieldEncryption) {
		switch f.get(FieldEncryption) {
		case "encrypted":
			next.Plaintext = false
		case "plaintext":
			next.Plaintext = true
		default:
			return configChange{}, xmpp.ErrBadRequest(FieldEncryption + " is encrypted or plaintext")
		}
	}
	if f.has(FieldRetention) {
		days, err := strconv.Atoi(strings.TrimSpace(f.get(FieldRetention)))
		if err != nil {
			return configChange{}, xmpp.ErrBadRequest(FieldRetention + " is a number of days")
		}
		d := time.Duration(days) * 24 * time.Hour
		if d != m.retention(cur) {
			next.Retention = d
		}
	}
	if f.has(FieldFederation) && f.get(FieldFederation) != "off" {
		return configChange{}, &xmpp.StanzaError{Type: "cancel", Condition: "not-allowed", Text: "rooms cannot federate yet: federation is off"}
	}
	ch := configChange{next: next, modeChanged: next.Plaintext != cur.Plaintext, retentionChange: next.Retention != cur.Retention}
	return ch, m.validate(ch, serverAdmin)
}

// validate applies the rules chat admins rely on.
func (m *Module) validate(ch configChange, serverAdmin bool) error {
	if ch.modeChanged && !serverAdmin {
		return &xmpp.StanzaError{Type: "auth", Condition: "forbidden", Text: "only chat admins can change whether a room is end-to-end encrypted"}
	}
	if ch.retentionChange && !serverAdmin {
		return &xmpp.StanzaError{Type: "auth", Condition: "forbidden", Text: "only chat admins can change how long a room's archive is kept"}
	}
	if ch.retentionChange {
		if err := m.checkRetention(ch.next.Retention); err != nil {
			return &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable", Text: err.Error()}
		}
	}
	n := ch.next
	if !n.Plaintext && (n.Open || n.SemiAnonymous) {
		return &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable",
			Text: "an end-to-end encrypted room must be members-only and show real JIDs to its members (OMEMO needs them); ask a chat admin to make the room plaintext first"}
	}
	return nil
}

// commitConfig stores a validated configuration, writes the audit log,
// tells the occupants and removes those no longer allowed in.
func (m *Module) commitConfig(ctx context.Context, r *room, ch configChange, actorName string) error {
	err := m.update(ctx, r, func(c *store.Room) error {
		secret, affs, nicks, vcard, subj, subjNick, subjTime := c.Secret, c.Affiliations, c.Nicks, c.VCard, c.Subject, c.SubjectNick, c.SubjectTime
		*c = ch.next
		// Fields the form does not carry keep their stored values, in case
		// they changed since the form was read.
		c.Secret, c.Affiliations, c.Nicks, c.VCard, c.Subject, c.SubjectNick, c.SubjectTime = secret, affs, nicks, vcard, subj, subjNick, subjTime
		return nil
	})
	if err != nil {
		return err
	}
	if ch.modeChanged {
		old, next := "encrypted", "plaintext"
		if !ch.next.Plaintext {
			old, next = next, old
		}
		m.audit(ctx, actorName, "room.mode", r.jid.String(), old, next)
	}
	if ch.retentionChange {
		m.audit(ctx, actorName, "room.retention", r.jid.String(), "", m.retention(ch.next).String())
	}
	m.broadcast(ctx, r, elem.New(elem.NSClient, "message", "type", "groupchat", "from", r.jid.String(), "id", "config-"+strconv.FormatInt(m.now().UnixNano(), 36)).Add(
		elem.New(NSUser, "x").Add(elem.New(NSUser, "status", "code", statusConfigChange))))
	if r.membersOnly() {
		m.removeNonMembers(ctx, r)
	}
	return nil
}

// removeNonMembers applies members-only to those present.
func (m *Module) removeNonMembers(ctx context.Context, r *room) {
	r.mu.Lock()
	var out []*occupant
	for _, o := range r.occupants {
		if affRank(r.cfg.Affiliation(o.bare)) < affRank(store.AffMember) {
			out = append(out, o)
		}
	}
	r.mu.Unlock()
	for _, o := range out {
		if m.isServerAdmin(ctx, mustBare(o.bare)) {
			continue
		}
		r.mu.Lock()
		fulls := make([]string, 0, len(o.sessions))
		for f := range o.sessions {
			fulls = append(fulls, f)
		}
		r.mu.Unlock()
		m.removeOccupant(ctx, r, fulls, statusMembersOnly, "", "")
	}
}

// destroy ends a room (XEP-0045 10.9): everyone present is told where to
// go instead, and the room and its archive are deleted.
func (m *Module) destroy(ctx context.Context, r *room, alt, reason, actorName string) error {
	if alt != "" {
		if _, err := jid.Parse(alt); err != nil {
			return &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: "the alternate venue is not a valid JID"}
		}
	}
	r.mu.Lock()
	fulls := make([]string, 0, len(r.byFull))
	for f := range r.byFull {
		fulls = append(fulls, f)
	}
	r.mu.Unlock()
	for _, f := range fulls {
		m.leave(ctx, r, f, elem.New(elem.NSClient, "presence", "type", "unavailable"), func(p *elem.Element) {
			d := elem.New(NSUser, "destroy")
			if alt != "" {
				d.Set("jid", alt)
			}
			if reason != "" {
				d.Add(elem.New(NSUser, "reason").AddText(reason))
			}
			p.Child(NSUser, "x").Add(d)
		})
	}
	r.settle()
	if err := m.st.DeleteRoom(ctx, r.name()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	m.forget(r.name())
	m.audit(ctx, actorName, "room.destroy", r.jid.String(), "", alt)
	return nil
}
