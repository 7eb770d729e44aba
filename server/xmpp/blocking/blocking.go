// Package blocking implements the blocking command (XEP-0191): a user keeps
// a list of JIDs with which the server will not let them communicate in
// either direction.
//
// The store is the source of truth; the lists of users who are online are
// cached in memory as immutable sets that are replaced, never changed, so
// the per-stanza checks read them without holding a lock.
package blocking

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces of XEP-0191.
const (
	NS       = "urn:xmpp:blocking"
	NSErrors = "urn:xmpp:blocking:errors"
)

const kind = "blocklist"

// MaxItems bounds a user's block list, so that one account cannot grow the
// store (and every check) without limit.
const MaxItems = 2000

// hookPriority puts blocking ahead of the modules that deliver, store or
// archive stanzas: a blocked stanza must not reach any of them.
const hookPriority = 1000

// requestedKey marks a session that fetched the block list and so wants
// pushes (XEP-0191 3.3).
type requestedKey struct{}

type set map[string]struct{}

type module struct {
	h *xmpp.Host

	// change serializes updates so that two resources editing the same
	// list at once cannot lose one another's edits.
	change sync.Mutex

	mu    sync.Mutex
	lists map[string]set // localpart -> blocked JIDs (normalized strings)
	gen   uint64         // bumped on every cache write, so a slow load cannot install stale data
}

// New returns the blocking module.
func New() xmpp.Module { return &module{lists: make(map[string]set)} }

func (*module) Name() string { return "blocking" }

func (m *module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddFeature(NS)
	h.HandleIQ(xmpp.ToSelf, "get", NS, m.get)
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.set)
	h.Hook("stanza/outgoing", hookPriority, m.outgoing)
	h.Hook("stanza/incoming", hookPriority, m.incoming)
	h.Hook("session/closed", 0, m.closed)
	return nil
}

// list returns a user's block list; the set must not be modified.
func (m *module) list(ctx context.Context, user string) (set, error) {
	m.mu.Lock()
	l, ok := m.lists[user]
	gen := m.gen
	m.mu.Unlock()
	if ok {
		return l, nil
	}
	raw, err := m.h.Store.ListUserData(ctx, user, kind)
	if err != nil {
		return nil, fmt.Errorf("load block list of %s: %w", user, err)
	}
	l = make(set, len(raw))
	for k := range raw {
		l[k] = struct{}{}
	}
	// Only online users are cached: stanzas to offline or made-up
	// accounts must not grow memory without bound.
	online := len(m.h.Sessions(user)) > 0
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.lists[user]; ok {
		return cur, nil
	}
	if online && m.gen == gen {
		m.lists[user] = l
	}
	return l, nil
}

func (m *module) install(user string, l set) {
	m.mu.Lock()
	m.lists[user] = l
	m.gen++
	m.mu.Unlock()
}

// blocks reports whether user has blocked j, with the matching rules of
// XEP-0191 section 3.7 (full JID, bare JID, domain/resource, domain). A
// store failure is logged and lets the stanza through: losing every
// message is worse than missing one block.
func (m *module) blocks(ctx context.Context, user string, j jid.JID) bool {
	l, err := m.list(ctx, user)
	if err != nil {
		m.h.Log.Error("blocking check", "user", user, "err", err)
		return false
	}
	if len(l) == 0 {
		return false
	}
	for _, k := range matchKeys(j) {
		if _, ok := l[k]; ok {
			return true
		}
	}
	return false
}

func matchKeys(j jid.JID) []string {
	keys := []string{j.String()}
	if j.Localpart() != "" {
		keys = append(keys, j.Bare().String())
	}
	if r := j.Resourcepart(); r != "" {
		keys = append(keys, j.Domainpart()+"/"+r)
	}
	return append(keys, j.Domainpart())
}

func (m *module) get(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	if iq.Payload().Name.Local != "blocklist" {
		return nil, xmpp.ErrBadRequest("expected a blocklist element")
	}
	l, err := m.list(ctx, iq.From.Localpart())
	if err != nil {
		return nil, err
	}
	if iq.Origin != nil {
		iq.Origin.SetValue(requestedKey{}, true)
	}
	return listElement("blocklist", sorted(l)), nil
}

func sorted(l set) []string {
	out := make([]string, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func listElement(name string, jids []string) *elem.Element {
	e := elem.New(NS, name)
	for _, j := range jids {
		e.Add(elem.New(NS, "item", "jid", j))
	}
	return e
}

// items parses the JIDs of a block or unblock request, normalized.
func items(p *elem.Element) ([]jid.JID, error) {
	var out []jid.JID
	seen := map[string]bool{}
	for _, c := range p.Elements() {
		if c.Name.Space != NS || c.Name.Local != "item" {
			continue
		}
		j, err := jid.Parse(c.Get("jid"))
		if err != nil || c.Get("jid") == "" {
			return nil, &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: fmt.Sprintf("%q is not a valid JID", c.Get("jid"))}
		}
		if !seen[j.String()] {
			seen[j.String()] = true
			out = append(out, j)
		}
	}
	return out, nil
}

func (m *module) set(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	p := iq.Payload()
	js, err := items(p)
	if err != nil {
		return nil, err
	}
	user := iq.From.Localpart()
	switch p.Name.Local {
	case "block":
		if len(js) == 0 {
			return nil, xmpp.ErrBadRequest("block at least one JID")
		}
		added, err := m.block(ctx, user, js)
		if err != nil {
			return nil, err
		}
		m.h.Reply(ctx, iq, xmpp.ResultReply(iq.El, nil))
		m.push(ctx, user, "block", js)
		m.sendPresence(ctx, user, added, true)
	case "unblock":
		removed, err := m.unblock(ctx, user, js)
		if err != nil {
			return nil, err
		}
		m.h.Reply(ctx, iq, xmpp.ResultReply(iq.El, nil))
		m.push(ctx, user, "unblock", js)
		m.sendPresence(ctx, user, removed, false)
	default:
		return nil, xmpp.ErrBadRequest("expected block or unblock")
	}
	return nil, xmpp.ErrHandled
}

// block adds JIDs to the list and returns those that were not there yet.
func (m *module) block(ctx context.Context, user string, js []jid.JID) ([]jid.JID, error) {
	m.change.Lock()
	defer m.change.Unlock()
	cur, err := m.list(ctx, user)
	if err != nil {
		return nil, err
	}
	var added []jid.JID
	for _, j := range js {
		if _, ok := cur[j.String()]; !ok {
			added = append(added, j)
		}
	}
	if len(cur)+len(added) > MaxItems {
		return nil, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint", Text: fmt.Sprintf("a block list holds at most %d JIDs", MaxItems)}
	}
	next := make(set, len(cur)+len(added))
	for k := range cur {
		next[k] = struct{}{}
	}
	for _, j := range added {
		if err := m.h.Store.PutUserData(ctx, user, kind, j.String(), []byte{1}); err != nil {
			// Whatever was written is in the store; reload it next time.
			m.forget(user)
			return nil, fmt.Errorf("block %s for %s: %w", j, user, err)
		}
		next[j.String()] = struct{}{}
	}
	m.install(user, next)
	return added, nil
}

// unblock removes JIDs (all of them when js is empty) and returns those
// that were on the list.
func (m *module) unblock(ctx context.Context, user string, js []jid.JID) ([]jid.JID, error) {
	m.change.Lock()
	defer m.change.Unlock()
	cur, err := m.list(ctx, user)
	if err != nil {
		return nil, err
	}
	var removed []jid.JID
	if len(js) == 0 {
		for _, k := range sorted(cur) {
			if j, err := jid.Parse(k); err == nil {
				removed = append(removed, j)
			}
			if err := m.h.Store.DeleteUserData(ctx, user, kind, k); err != nil {
				m.forget(user)
				return nil, fmt.Errorf("unblock %s for %s: %w", k, user, err)
			}
		}
		m.install(user, set{})
		return removed, nil
	}
	next := make(set, len(cur))
	for k := range cur {
		next[k] = struct{}{}
	}
	for _, j := range js {
		if _, ok := cur[j.String()]; !ok {
			continue
		}
		if err := m.h.Store.DeleteUserData(ctx, user, kind, j.String()); err != nil {
			m.forget(user)
			return nil, fmt.Errorf("unblock %s for %s: %w", j, user, err)
		}
		delete(next, j.String())
		removed = append(removed, j)
	}
	m.install(user, next)
	return removed, nil
}

func (m *module) forget(user string) {
	m.mu.Lock()
	delete(m.lists, user)
	m.gen++
	m.mu.Unlock()
}

// push tells every resource that fetched the list what changed. An empty
// unblock means "everything" and is pushed as such.
func (m *module) push(ctx context.Context, user, op string, js []jid.JID) {
	strs := make([]string, len(js))
	for i, j := range js {
		strs[i] = j.String()
	}
	for _, s := range m.h.Sessions(user) {
		if s.Value(requestedKey{}) == nil {
			continue
		}
		iq := elem.New(elem.NSClient, "iq", "type", "set", "id", "push-"+randomID(), "to", s.JID().String())
		_ = s.Send(ctx, iq.Add(listElement(op, strs)))
	}
}

// sendPresence makes the user's presence disappear from (on block) or
// reappear to (on unblock) the contacts concerned, for contacts entitled to
// it by their subscription (XEP-0191 3.3 and 3.4).
func (m *module) sendPresence(ctx context.Context, user string, js []jid.JID, block bool) {
	if len(js) == 0 {
		return
	}
	var avail []*xmpp.Session
	for _, s := range m.h.Sessions(user) {
		if s.Available() {
			avail = append(avail, s)
		}
	}
	if len(avail) == 0 {
		return
	}
	_, roster, err := m.h.Store.Roster(ctx, user)
	if err != nil {
		m.h.Log.Error("blocking: read roster", "user", user, "err", err)
		return
	}
	subscribed := map[string]bool{}
	for _, it := range roster {
		if it.Subscription == "from" || it.Subscription == "both" {
			subscribed[it.JID] = true
		}
	}
	var targets []jid.JID
	for _, j := range js {
		if j.Localpart() != "" {
			if subscribed[j.Bare().String()] {
				targets = append(targets, j)
			}
			continue
		}
		// A domain (or domain/resource) item covers every contact there.
		for c := range subscribed {
			if cj, err := jid.Parse(c); err == nil && cj.Domainpart() == j.Domainpart() {
				targets = append(targets, cj)
			}
		}
	}
	for _, t := range targets {
		for _, s := range avail {
			var p *elem.Element
			if block {
				p = elem.New(elem.NSClient, "presence", "type", "unavailable")
			} else if cur := s.Presence(); cur != nil {
				p = cur.Copy()
				p.Set("id", "")
			} else {
				continue
			}
			p.Set("from", s.JID().String())
			p.Set("to", t.String())
			m.h.Route(ctx, p)
		}
	}
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// outgoing refuses what a user sends to someone they blocked.
func (m *module) outgoing(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if st.To.Equal(jid.JID{}) || st.To.Bare().Equal(st.From.Bare()) {
		return false
	}
	if !m.blocks(ctx, st.From.Localpart(), st.To) {
		return false
	}
	if st.Kind() == "iq" && st.Type() == "result" {
		return true // an answer to nothing the contact could have sent
	}
	se := &xmpp.StanzaError{Type: "cancel", Condition: "not-acceptable",
		Text: "you have blocked " + st.To.String(), Extra: elem.New(NSErrors, "blocked")}
	m.h.Bounce(ctx, st, se) // errors are never answered, only dropped
	return true
}

// incoming keeps a blocked entity's stanzas from reaching the user, and
// stops server-generated presence (broadcasts, probes) from a user to
// someone that user blocked.
func (m *module) incoming(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if st.From.Equal(jid.JID{}) || st.From.Bare().Equal(st.To.Bare()) {
		return false
	}
	if m.blocks(ctx, st.To.Localpart(), st.From) {
		// XEP-0191 3.3: the user must look offline to a blocked entity.
		switch st.Kind() {
		case "message":
			m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
		case "iq":
			if t := st.Type(); t == "get" || t == "set" {
				m.h.Bounce(ctx, st, xmpp.ErrServiceUnavailable())
			}
		}
		return true
	}
	// Clients' own stanzas were checked in outgoing; what is left from a
	// local user is what the server sends for them. Unavailable presence
	// and errors must still pass: they are what blocking itself sends.
	if st.Kind() == "presence" && m.h.IsLocalUser(st.From) {
		if t := st.Type(); t != "unavailable" && t != "error" && m.blocks(ctx, st.From.Localpart(), st.To) {
			return true
		}
	}
	return false
}

// closed drops the cached list when the user's last session ends.
func (m *module) closed(_ context.Context, ev *xmpp.Event) bool {
	if ev.Session != nil && len(m.h.Sessions(ev.Session.Localpart())) == 0 {
		m.forget(ev.Session.Localpart())
	}
	return false
}
