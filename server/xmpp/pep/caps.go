package pep

import (
	"context"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/disco"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const nsCaps = "http://jabber.org/protocol/caps"

// maxCachedVers bounds the ver -> features cache; clients share a handful
// of vers, so reaching it means someone is making them up.
const maxCachedVers = 4096

// capsCache maps verified caps hashes to features, and tracks the disco
// queries in flight, so each ver is asked about once.
type capsCache struct {
	mu       sync.Mutex
	features map[string]map[string]bool
	inflight map[string]*capsQuery // by IQ id
	byVer    map[string]*capsQuery
}

// track remembers a query; queries nobody answers are forgotten in bulk
// once too many pile up.
func (c *capsCache) track(q *capsQuery) {
	if len(c.inflight) >= maxCachedVers {
		c.inflight = map[string]*capsQuery{}
		c.byVer = map[string]*capsQuery{}
	}
	c.inflight[q.id] = q
}

type capsQuery struct {
	id, ver, hash, node string
	to                  jid.JID
	waiters             []*xmpp.Session
}

func newCapsCache() *capsCache {
	return &capsCache{features: map[string]map[string]bool{}, inflight: map[string]*capsQuery{}, byVer: map[string]*capsQuery{}}
}

type capsKey struct{}

// sessionCaps is what PEP knows of one session's interests.
type sessionCaps struct {
	mu       sync.Mutex
	ver      string
	features map[string]bool // nil until known
	// wantLast is set when the session came online before its caps were
	// known: the last items follow once they are.
	wantLast bool
}

func capsOf(s *xmpp.Session) *sessionCaps {
	c, _ := s.Value(capsKey{}).(*sessionCaps)
	return c
}

// wants reports whether a session asked for notifications of node.
func wants(s *xmpp.Session, node string) bool {
	c := capsOf(s)
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.features[node+"+notify"]
}

// selfPresence records the caps a client announces in its broadcast
// presence, asking the client for its features when the hash is new.
func (m *Module) selfPresence(ctx context.Context, ev *xmpp.Event) bool {
	sess := ev.Stanza.Origin
	if sess == nil || ev.Stanza.Type() != "" {
		return false
	}
	c := ev.Stanza.El.Child(nsCaps, "c")
	if c == nil || c.Get("ver") == "" {
		return false
	}
	ver, hash, node := c.Get("ver"), c.Get("hash"), c.Get("node")
	sc := capsOf(sess)
	if sc == nil {
		sc = &sessionCaps{}
		sess.SetValue(capsKey{}, sc)
	}
	sc.mu.Lock()
	if sc.ver == ver {
		sc.mu.Unlock()
		return false
	}
	wasKnown := sc.features != nil
	old := sc.features
	sc.ver, sc.features = ver, nil
	sc.mu.Unlock()

	m.caps.mu.Lock()
	feats, ok := m.caps.features[ver]
	var q *capsQuery
	if !ok && hash == "sha-1" {
		if q = m.caps.byVer[ver]; q != nil {
			q.waiters = append(q.waiters, sess)
			q = nil // someone asked already
		} else {
			q = &capsQuery{id: "pep-caps-" + randomID(), ver: ver, hash: hash, node: node, to: sess.JID(), waiters: []*xmpp.Session{sess}}
			m.caps.track(q)
			m.caps.byVer[ver] = q
		}
	} else if !ok {
		// Legacy caps carry no verifiable hash: ask this session alone.
		q = &capsQuery{id: "pep-caps-" + randomID(), ver: ver, node: node, to: sess.JID(), waiters: []*xmpp.Session{sess}}
		m.caps.track(q)
	}
	m.caps.mu.Unlock()
	if ok {
		m.setFeatures(ctx, sess, ver, feats, wasKnown, old)
		return false
	}
	if q != nil {
		iq := elem.New(elem.NSClient, "iq", "type", "get", "id", q.id, "from", m.h.Domain(), "to", q.to.String())
		iq.Add(elem.New(nsDisco, "query", "node", node+"#"+ver))
		_ = sess.Send(ctx, iq)
	}
	return false
}

// setFeatures gives a session its resolved caps and sends the last items
// it now wants: all of them if it was waiting, else those of nodes it was
// not interested in before.
func (m *Module) setFeatures(ctx context.Context, sess *xmpp.Session, ver string, feats map[string]bool, wasKnown bool, old map[string]bool) {
	sc := capsOf(sess)
	sc.mu.Lock()
	if sc.ver != ver {
		sc.mu.Unlock()
		return
	}
	sc.features = feats
	want := sc.wantLast
	sc.wantLast = false
	sc.mu.Unlock()
	switch {
	case want:
		m.sendLastItems(ctx, sess, nil)
	case wasKnown && sess.Available():
		m.sendLastItems(ctx, sess, old)
	}
}

// capsResult takes the answers to the server's caps queries.
func (m *Module) capsResult(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	id := st.ID()
	if !strings.HasPrefix(id, "pep-caps-") {
		return false
	}
	m.caps.mu.Lock()
	q := m.caps.inflight[id]
	if q == nil || !st.From.Equal(q.to) {
		m.caps.mu.Unlock()
		return q != nil
	}
	if m.caps.byVer[q.ver] == q {
		delete(m.caps.byVer, q.ver)
	}
	if st.Type() == "error" {
		// Some client libraries refuse an IQ they have no handler for and
		// answer it properly anyway; a later result still counts. The next
		// session with this ver asks again.
		m.caps.mu.Unlock()
		return true
	}
	delete(m.caps.inflight, id)
	waiters := q.waiters
	var feats map[string]bool
	if st.Type() == "result" {
		if res := st.Payload(); res != nil && res.Name.Space == nsDisco {
			feats = map[string]bool{}
			for _, f := range res.Elements() {
				if f.Name.Local == "feature" {
					feats[f.Get("var")] = true
				}
			}
			// Only a hash that matches the answer may be shared with
			// other sessions; otherwise the answer is for the asker alone.
			if q.hash == "sha-1" && disco.CapsVer(res) == q.ver {
				if len(m.caps.features) >= maxCachedVers {
					m.caps.features = map[string]map[string]bool{}
				}
				m.caps.features[q.ver] = feats
			} else {
				waiters = waiters[:1]
			}
		}
	}
	m.caps.mu.Unlock()
	if feats == nil {
		return true
	}
	for _, s := range waiters {
		m.setFeatures(ctx, s, q.ver, feats, false, nil)
	}
	return true
}

// initialPresence sends a resource that just came online the last items
// of its own account and of every contact whose presence it receives.
func (m *Module) initialPresence(ctx context.Context, ev *xmpp.Event) bool {
	sess := ev.Session
	sc := capsOf(sess)
	if sc == nil {
		return false
	}
	sc.mu.Lock()
	known := sc.features != nil
	if !known {
		sc.wantLast = true
	}
	sc.mu.Unlock()
	if known {
		m.sendLastItems(ctx, sess, nil)
	}
	return false
}

// sendLastItems sends sess the last item of each node it wants and may
// read, skipping nodes whose notifications it already had (skip).
func (m *Module) sendLastItems(ctx context.Context, sess *xmpp.Session, skip map[string]bool) {
	sc := capsOf(sess)
	sc.mu.Lock()
	var nodes []string
	for f := range sc.features {
		if name, ok := strings.CutSuffix(f, "+notify"); ok && !skip[f] {
			nodes = append(nodes, name)
		}
	}
	sc.mu.Unlock()
	if len(nodes) == 0 {
		return
	}
	owners := []string{sess.Localpart()}
	_, items, err := m.h.Store.Roster(ctx, sess.Localpart())
	if err != nil {
		m.h.Log.Error("pep: read roster", "user", sess.Localpart(), "err", err)
	}
	for _, it := range items {
		if it.Subscription != "to" && it.Subscription != "both" {
			continue
		}
		if j, err := jid.Parse(it.JID); err == nil && m.h.IsLocalUser(j) {
			owners = append(owners, j.Localpart())
		}
	}
	for _, owner := range owners {
		for _, name := range nodes {
			n, err := m.loadNode(ctx, owner, name)
			if err != nil {
				m.h.Log.Error("pep: last item", "owner", owner, "node", name, "err", err)
				continue
			}
			if n == nil || n.last() == nil || n.Config.SendLast == sendNever || !n.Config.DeliverNotify {
				continue
			}
			if m.mayRead(ctx, owner, n, sess.JID()) != nil {
				continue
			}
			ev := elem.New(NSEvent, "items", "node", name).Add(m.itemElement(NSEvent, n.last(), n.Config.Payloads))
			msg := m.eventMessage(owner, sess.JID(), ev)
			msg.Add(elem.New(nsDelay, "delay", "stamp", n.last().Published.Format("2006-01-02T15:04:05.000Z"), "from", m.ownerJID(owner).String()))
			m.h.Route(ctx, msg)
		}
	}
}

func (m *Module) eventMessage(owner string, to jid.JID, ev *elem.Element) *elem.Element {
	return elem.New(elem.NSClient, "message", "from", m.ownerJID(owner).String(), "to", to.String(), "type", "headline", "id", randomID()).
		Add(elem.New(NSEvent, "event").Add(ev))
}

// notify sends an event to every available resource that wants the node
// and may read it: the owner's own, and those of contacts subscribed to
// the owner's presence (or whitelisted).
func (m *Module) notify(ctx context.Context, owner string, n *node, ev *elem.Element) {
	if !n.Config.DeliverNotify {
		return
	}
	var targets []jid.JID
	add := func(user string) {
		for _, s := range m.h.Sessions(user) {
			if s.Available() && wants(s, n.Name) {
				targets = append(targets, s.JID())
			}
		}
	}
	add(owner)
	if n.Config.AccessModel != accessWhitelist {
		_, items, err := m.h.Store.Roster(context.WithoutCancel(ctx), owner)
		if err != nil {
			m.h.Log.Error("pep: read roster", "user", owner, "err", err)
		}
		for _, it := range items {
			if it.Subscription != "from" && it.Subscription != "both" {
				continue
			}
			j, err := jid.Parse(it.JID)
			if err == nil && m.h.IsLocalUser(j) && n.Affiliations[j.String()] != "outcast" {
				add(j.Localpart())
			}
		}
	} else {
		for j, aff := range n.Affiliations {
			pj, err := jid.Parse(j)
			if err == nil && aff != "outcast" && m.h.IsLocalUser(pj) && pj.Localpart() != owner {
				add(pj.Localpart())
			}
		}
	}
	for _, to := range targets {
		m.h.Route(ctx, m.eventMessage(owner, to, ev.Copy()))
	}
}
