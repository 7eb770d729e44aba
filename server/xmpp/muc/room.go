package muc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"
	"slices"
	"sort"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// room is a loaded room: its stored configuration and who is in it now.
type room struct {
	jid jid.JID

	// writeMu orders configuration writes, so the loaded copy always
	// ends up as the last one stored.
	writeMu sync.Mutex

	mu        sync.Mutex
	cfg       store.Room
	occupants map[string]*occupant // by nick
	byFull    map[string]*occupant // by each joined session's full JID
	// unstored are messages already broadcast whose archive write has not
	// returned yet: a newcomer gets them with the history.
	unstored []pendingRecord
}

// pendingRecord is a message being written to the room's archive; done
// closes when the write has returned.
type pendingRecord struct {
	rec  store.ArchiveRecord
	done chan struct{}
}

// settle waits for the archive writes under way, so that what reads or
// changes the archive (MAM queries, moderation, destroy) sees every
// message already broadcast.
func (r *room) settle() {
	r.mu.Lock()
	waits := make([]chan struct{}, len(r.unstored))
	for i, u := range r.unstored {
		waits[i] = u.done
	}
	r.mu.Unlock()
	for _, w := range waits {
		<-w
	}
}

// unstoredRecords copies the records being written (r.mu held).
func (r *room) unstoredRecords() []store.ArchiveRecord {
	out := make([]store.ArchiveRecord, len(r.unstored))
	for i, u := range r.unstored {
		out[i] = u.rec
	}
	return out
}

// occupant is one person in a room under one nickname, possibly from
// several of their sessions (XEP-0045 section 7.2.3, multi-session nicks).
type occupant struct {
	nick string
	bare string
	role string
	id   string // occupant-id
	// sessions maps each joined full JID to the presence it last sent.
	sessions map[string]*elem.Element
	// latest is the full JID whose presence others see.
	latest string
}

func newRoom(j jid.JID, cfg store.Room) *room {
	return &room{jid: j, cfg: cfg, occupants: make(map[string]*occupant), byFull: make(map[string]*occupant)}
}

func (r *room) name() string { return r.jid.Localpart() }

// occupantJID is room@service/nick.
func (r *room) occupantJID(nick string) string { return r.jid.String() + "/" + nick }

// encrypted reports whether the E2EE policy applies (r.mu held).
func (r *room) encrypted() bool { return !r.cfg.Plaintext }

// membersOnly: encrypted rooms always are, whatever was stored.
func (r *room) membersOnly() bool { return !r.cfg.Open || r.encrypted() }

// nonAnonymous: everyone sees real JIDs; encrypted rooms always are.
func (r *room) nonAnonymous() bool { return !r.cfg.SemiAnonymous || r.encrypted() }

// occupantID is stable for a real JID in this room and reveals nothing
// about it (XEP-0421).
func (r *room) occupantID(bare string) string {
	mac := hmac.New(sha256.New, r.cfg.Secret)
	mac.Write([]byte(bare))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// defaultRole is the role an affiliation brings on entering.
func (r *room) defaultRole(aff store.Affiliation, serverAdmin bool) string {
	switch {
	case aff == store.AffOwner || aff == store.AffAdmin || serverAdmin:
		return roleModerator
	case aff == store.AffMember || !r.cfg.Moderated:
		return roleParticipant
	}
	return roleVisitor
}

// affRank orders affiliations for permission checks.
func affRank(a store.Affiliation) int {
	switch a {
	case store.AffOwner:
		return 4
	case store.AffAdmin:
		return 3
	case store.AffMember:
		return 2
	case store.AffNone:
		return 1
	}
	return 0 // outcast
}

// nicksOf lists occupants in a stable order.
func (r *room) sortedOccupants() []*occupant {
	out := make([]*occupant, 0, len(r.occupants))
	for _, o := range r.occupants {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].nick < out[j].nick })
	return out
}

// fulls lists every joined session, as recipients of a broadcast.
type recipient struct {
	full      string
	moderator bool
}

func (r *room) recipients() []recipient {
	out := make([]recipient, 0, len(r.byFull))
	for full, o := range r.byFull {
		out = append(out, recipient{full: full, moderator: o.role == roleModerator})
	}
	return out
}

// presenceOf builds the presence others see for o (r.mu held): the
// session's own presence children, then the MUC item. withJID adds the
// real JID, for non-anonymous rooms and for moderators.
func (r *room) presenceOf(o *occupant, unavailable bool, withJID bool, status ...string) *elem.Element {
	p := elem.New(elem.NSClient, "presence", "from", r.occupantJID(o.nick))
	if unavailable {
		p.Set("type", "unavailable")
	} else if last := o.sessions[o.latest]; last != nil {
		for _, c := range last.Elements() {
			if c.Name.Space == NS || c.Name.Space == NSUser || c.Name.Space == NSOccupantID {
				continue
			}
			p.Add(c)
		}
	}
	aff := r.cfg.Affiliation(o.bare)
	item := elem.New(NSUser, "item", "affiliation", string(aff), "role", o.role)
	if unavailable {
		item.Set("role", roleNone)
	}
	if withJID {
		item.Set("jid", o.latest)
	}
	x := elem.New(NSUser, "x").Add(item)
	for _, s := range status {
		x.Add(elem.New(NSUser, "status", "code", s))
	}
	p.Add(x)
	p.Add(elem.New(NSOccupantID, "occupant-id", "id", o.id))
	return p
}

// addressed returns a copy of el for one recipient: only the top element
// is copied, and its children are capped so nobody appends into another
// copy's children. A memo of el's children (elem.Memoize) carries over.
func addressed(el *elem.Element, to string) *elem.Element {
	c := el.ShallowCopy()
	c.Attr = slices.DeleteFunc(c.Attr, func(a xml.Attr) bool { return a.Name.Space == "" && a.Name.Local == "to" })
	c.Set("to", to)
	return c
}
