// Package disco answers service discovery (XEP-0030) for the server domain
// and for local accounts, and advertises the server's entity capabilities
// (XEP-0115) as a stream feature.
//
// Other modules extend the answers by hooking these events; a hook appends
// children to ev.Stanza.El, which is the <query/> being answered, and returns
// false so that every hook runs. ev.Stanza.From is the entity described (the
// server domain or the account's bare JID), ev.Stanza.To the requester and
// ev.Stanza.Origin the requester's session when it is local.
//
//	disco/info/host      extended info (XEP-0128 forms) for the server; hooks
//	                     must not depend on the requester, the answer is
//	                     hashed into the caps 'ver'
//	disco/items/host     services of the server (rooms, upload, proxy…)
//	disco/info/account   identities and features of an account (PEP)
//	disco/items/account  items of an account (PEP nodes)
//
// A query with a 'node' the server does not know itself is answered from the
// hooks alone; when no hook adds anything, the answer is item-not-found.
package disco

import (
	"context"
	"crypto/sha1" // #nosec G505 -- XEP-0115 names SHA-1 as the hash every client supports
	"encoding/base64"
	"sort"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces and the caps node of this server software.
const (
	NSInfo   = "http://jabber.org/protocol/disco#info"
	NSItems  = "http://jabber.org/protocol/disco#items"
	NSCaps   = "http://jabber.org/protocol/caps"
	NSData   = "jabber:x:data"
	CapsNode = "https://github.com/merveilles/hearth"
)

// Module is the disco module.
type Module struct {
	h *xmpp.Host

	mu  sync.Mutex
	ver string // empty until first use, and again after a reload
}

// New returns the disco module.
func New() xmpp.Module { return &Module{} }

// Name implements xmpp.Module.
func (m *Module) Name() string { return "disco" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	h.AddIdentity("server", "im", "hearth")
	h.AddFeature(NSInfo, NSItems)
	h.HandleIQ(xmpp.ToHost, "get", NSInfo, m.hostInfo)
	h.HandleIQ(xmpp.ToHost, "get", NSItems, m.hostItems)
	for _, t := range []xmpp.Target{xmpp.ToSelf, xmpp.ToBare} {
		h.HandleIQ(t, "get", NSInfo, m.accountInfo)
		h.HandleIQ(t, "get", NSItems, m.accountItems)
	}
	// What modules add to the server's info may follow the configuration
	// (the E2EE policy form): compute the hash again after a reload.
	h.Hook("config/reloaded", 0, func(context.Context, *xmpp.Event) bool {
		m.mu.Lock()
		m.ver = ""
		m.mu.Unlock()
		return false
	})
	h.AddStreamFeature(func(*xmpp.Session) *elem.Element {
		return elem.New(NSCaps, "c", "hash", "sha-1", "node", CapsNode, "ver", m.Ver())
	})
	return nil
}

// Ver is the XEP-0115 verification string of the server's disco#info. It is
// computed on first use, when every module has registered its features,
// and after each configuration reload.
func (m *Module) Ver() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ver == "" {
		m.ver = CapsVer(m.serverInfo(context.Background(), jid.JID{}, nil))
	}
	return m.ver
}

// serverInfo builds the server's own disco#info answer.
func (m *Module) serverInfo(ctx context.Context, requester jid.JID, origin *xmpp.Session) *elem.Element {
	q := elem.New(NSInfo, "query")
	for _, id := range m.h.Identities() {
		q.Add(id.Copy())
	}
	for _, f := range m.h.Features() {
		q.Add(elem.New(NSInfo, "feature", "var", f))
	}
	m.h.Fire(ctx, "disco/info/host", &xmpp.Event{Stanza: &xmpp.Stanza{El: q, From: m.h.DomainJID(), To: requester, Origin: origin}})
	return q
}

func (m *Module) hostInfo(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	node := iq.Payload().Get("node")
	if node == "" || node == CapsNode+"#"+m.Ver() {
		q := m.serverInfo(ctx, iq.From, iq.Origin)
		return q.Set("node", node), nil
	}
	return m.fromHooks(ctx, "disco/info/host", NSInfo, node, m.h.DomainJID(), iq)
}

func (m *Module) hostItems(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	node := iq.Payload().Get("node")
	if node != "" {
		return m.fromHooks(ctx, "disco/items/host", NSItems, node, m.h.DomainJID(), iq)
	}
	q := elem.New(NSItems, "query")
	m.h.Fire(ctx, "disco/items/host", &xmpp.Event{Stanza: &xmpp.Stanza{El: q, From: m.h.DomainJID(), To: iq.From, Origin: iq.Origin}})
	return q, nil
}

// account returns the account an IQ to ToSelf or ToBare is about, or an
// error when there is no such account (RFC 6121 8.5.1).
func (m *Module) account(ctx context.Context, iq *xmpp.Stanza) (jid.JID, error) {
	if iq.To.Equal(jid.JID{}) {
		return iq.From.Bare(), nil
	}
	if !m.h.AccountExists(ctx, iq.To.Localpart()) {
		return jid.JID{}, xmpp.ErrServiceUnavailable()
	}
	return iq.To.Bare(), nil
}

func (m *Module) accountInfo(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	acct, err := m.account(ctx, iq)
	if err != nil {
		return nil, err
	}
	node := iq.Payload().Get("node")
	if node != "" {
		return m.fromHooks(ctx, "disco/info/account", NSInfo, node, acct, iq)
	}
	q := elem.New(NSInfo, "query").Add(
		elem.New(NSInfo, "identity", "category", "account", "type", "registered"),
		elem.New(NSInfo, "feature", "var", NSInfo),
	)
	m.h.Fire(ctx, "disco/info/account", &xmpp.Event{Stanza: &xmpp.Stanza{El: q, From: acct, To: iq.From, Origin: iq.Origin}})
	return q, nil
}

func (m *Module) accountItems(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	acct, err := m.account(ctx, iq)
	if err != nil {
		return nil, err
	}
	node := iq.Payload().Get("node")
	if node != "" {
		return m.fromHooks(ctx, "disco/items/account", NSItems, node, acct, iq)
	}
	q := elem.New(NSItems, "query")
	m.h.Fire(ctx, "disco/items/account", &xmpp.Event{Stanza: &xmpp.Stanza{El: q, From: acct, To: iq.From, Origin: iq.Origin}})
	return q, nil
}

// fromHooks answers a query for a node only other modules know about.
func (m *Module) fromHooks(ctx context.Context, event, ns, node string, entity jid.JID, iq *xmpp.Stanza) (*elem.Element, error) {
	q := elem.New(ns, "query", "node", node)
	m.h.Fire(ctx, event, &xmpp.Event{Stanza: &xmpp.Stanza{El: q, From: entity, To: iq.From, Origin: iq.Origin}})
	if len(q.Elements()) == 0 {
		return nil, xmpp.ErrItemNotFound()
	}
	return q, nil
}

// CapsVer computes the XEP-0115 section 5.1 verification string (SHA-1) of
// a disco#info <query/>: identities, features and extended forms.
func CapsVer(q *elem.Element) string {
	type ident struct{ cat, typ, lang, name string }
	var ids []ident
	var feats []string
	type form struct {
		typ    string
		fields []string // "var<v1<v2<", sorted
	}
	var forms []form
	for _, c := range q.Elements() {
		switch {
		case c.Name.Space == NSInfo && c.Name.Local == "identity":
			ids = append(ids, ident{c.Get("category"), c.Get("type"), c.Lang(), c.Get("name")})
		case c.Name.Space == NSInfo && c.Name.Local == "feature":
			feats = append(feats, c.Get("var"))
		case c.Name.Space == NSData && c.Name.Local == "x":
			var f form
			for _, fld := range c.Elements() {
				if fld.Name.Local != "field" {
					continue
				}
				var vals []string
				for _, v := range fld.Elements() {
					if v.Name.Local == "value" {
						vals = append(vals, v.Text())
					}
				}
				if fld.Get("var") == "FORM_TYPE" {
					if len(vals) > 0 {
						f.typ = vals[0]
					}
					continue
				}
				sort.Strings(vals)
				var b strings.Builder
				b.WriteString(fld.Get("var"))
				b.WriteByte('<')
				for _, v := range vals {
					b.WriteString(v)
					b.WriteByte('<')
				}
				f.fields = append(f.fields, b.String())
			}
			// §5.4: a form without FORM_TYPE is ignored.
			if f.typ != "" {
				sort.Strings(f.fields)
				forms = append(forms, f)
			}
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if a.cat != b.cat {
			return a.cat < b.cat
		}
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		if a.lang != b.lang {
			return a.lang < b.lang
		}
		return a.name < b.name
	})
	sort.Strings(feats)
	sort.Slice(forms, func(i, j int) bool { return forms[i].typ < forms[j].typ })

	var s strings.Builder
	for _, id := range ids {
		s.WriteString(id.cat + "/" + id.typ + "/" + id.lang + "/" + id.name + "<")
	}
	for _, f := range feats {
		s.WriteString(f + "<")
	}
	for _, f := range forms {
		s.WriteString(f.typ + "<")
		for _, fl := range f.fields {
			s.WriteString(fl)
		}
	}
	sum := sha1.Sum([]byte(s.String())) // #nosec G401 -- required by XEP-0115
	return base64.StdEncoding.EncodeToString(sum[:])
}
