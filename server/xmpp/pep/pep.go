// Package pep implements the Personal Eventing Protocol (XEP-0163) on every
// account's bare JID: publish with publish-options (XEP-0223), items,
// retract, node configuration, delete and purge, access models open,
// presence and whitelist, and notifications filtered by the recipients'
// entity capabilities (XEP-0115). OMEMO device lists and bundles, avatars
// (XEP-0084), nicknames (XEP-0172) and bookmarks (XEP-0402) are all PEP
// nodes; avatars and bookmarks are also kept in sync with their older
// forms (vCard photos, XEP-0398; private XML bookmarks, XEP-0411).
package pep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces.
const (
	NS       = "http://jabber.org/protocol/pubsub"
	NSOwner  = NS + "#owner"
	NSEvent  = NS + "#event"
	nsErrors = NS + "#errors"
	nsData   = "jabber:x:data"
	nsDisco  = "http://jabber.org/protocol/disco#info"
	nsItems  = "http://jabber.org/protocol/disco#items"
	nsDelay  = "urn:xmpp:delay"
)

// features are the pubsub features PEP offers (XEP-0060 10).
var features = []string{
	NS, NS + "#publish", NS + "#publish-options", NS + "#auto-create", NS + "#create-nodes",
	NS + "#config-node", NS + "#delete-items", NS + "#delete-nodes", NS + "#purge-nodes",
	NS + "#persistent-items", NS + "#retrieve-items", NS + "#retract-items", NS + "#item-ids",
	NS + "#access-open", NS + "#access-presence", NS + "#access-whitelist",
	NS + "#last-published", NS + "#filtered-notifications", NS + "#retrieve-default",
	NS + "#modify-affiliations", NS + "#member-affiliation", NS + "#multi-items",
}

// Module is the PEP service.
type Module struct {
	h *xmpp.Host

	// locks serialize read-modify-write of one owner's nodes.
	locks [64]sync.Mutex

	caps *capsCache

	avatarMu sync.Mutex
	avatars  map[string]string // localpart -> photo hash; "" known to have none
}

// New returns the PEP module.
func New() *Module { return &Module{avatars: map[string]string{}} }

// Name implements xmpp.Module.
func (m *Module) Name() string { return "pep" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	m.caps = newCapsCache()
	// Some clients look for publish-options on the server, not the account.
	h.AddFeature(NS+"#publish-options", nsVCardConversion, nsBookmarks+"#compat")
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.wrap(m.set))
	h.HandleIQ(xmpp.ToSelf, "get", NS, m.wrap(m.get))
	h.HandleIQ(xmpp.ToBare, "get", NS, m.wrap(m.get))
	h.HandleIQ(xmpp.ToBare, "set", NS, func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return nil, xmpp.ErrForbidden("only the owner publishes to a personal eventing service")
	})
	h.HandleIQ(xmpp.ToSelf, "get", NSOwner, m.wrap(m.ownerGet))
	h.HandleIQ(xmpp.ToSelf, "set", NSOwner, m.wrap(m.ownerSet))
	ownerOnly := func(context.Context, *xmpp.Stanza) (*elem.Element, error) {
		return nil, xmpp.ErrForbidden("only the owner manages a personal eventing service")
	}
	h.HandleIQ(xmpp.ToBare, "get", NSOwner, ownerOnly)
	h.HandleIQ(xmpp.ToBare, "set", NSOwner, ownerOnly)

	h.Hook("disco/info/account", 0, m.discoInfo)
	h.Hook("disco/items/account", 0, m.discoItems)
	h.Hook("stanza/outgoing", 50, m.outgoingPresence)
	h.Hook("presence/self", 50, m.selfPresence)
	h.Hook("presence/initial", 0, m.initialPresence)
	h.Hook("iq-result/host", 50, m.capsResult)
	h.Hook("iq-error/host", 50, m.capsResult)
	h.Hook("vcard/updated", 0, m.vcardUpdated)
	h.Hook("private/updated", 0, m.privateUpdated)
	return nil
}

func (m *Module) lock(owner string) func() {
	f := fnv.New32a()
	_, _ = f.Write([]byte(owner))
	l := &m.locks[f.Sum32()%uint32(len(m.locks))]
	l.Lock()
	return l.Unlock
}

// wrap sends pubsub errors that carry a legacy code itself, since the
// router's replies have no place for one.
func (m *Module) wrap(fn xmpp.IQHandler) xmpp.IQHandler {
	return func(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
		res, err := fn(ctx, iq)
		var pe *pubsubError
		if errors.As(err, &pe) {
			reply := xmpp.ErrorReply(iq.El, pe.se)
			if er := reply.Child(elem.NSClient, "error"); er != nil && pe.code != "" {
				er.Set("code", pe.code)
			}
			m.h.Reply(ctx, iq, reply)
			return nil, xmpp.ErrHandled
		}
		return res, err
	}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (m *Module) ownerJID(owner string) jid.JID {
	j, _ := jid.New(owner, m.h.Domain(), "")
	return j
}

// target is the owner an IQ is about, and whether it exists.
func (m *Module) target(ctx context.Context, iq *xmpp.Stanza) (string, error) {
	if iq.To.Equal(jid.JID{}) {
		return iq.From.Localpart(), nil
	}
	if !m.h.AccountExists(ctx, iq.To.Localpart()) {
		return "", xmpp.ErrServiceUnavailable()
	}
	return iq.To.Localpart(), nil
}

// mayRead applies the node's access model to a requester's bare JID.
func (m *Module) mayRead(ctx context.Context, owner string, n *node, who jid.JID) error {
	bare := who.Bare()
	if bare.Equal(m.ownerJID(owner)) {
		return nil
	}
	aff := n.Affiliations[bare.String()]
	if aff == "outcast" {
		return errWith("auth", "forbidden", "", "the owner has barred you from this node")
	}
	switch n.Config.AccessModel {
	case accessOpen:
		return nil
	case accessWhitelist:
		if aff == "member" || aff == "publisher" || aff == "owner" {
			return nil
		}
		return errWith("cancel", "not-allowed", "closed-node", "this node is open to its owner's whitelist only")
	default:
		if m.subscribed(ctx, owner, bare) {
			return nil
		}
		return errWith("auth", "not-authorized", "presence-subscription-required", "this node is open to the owner's contacts only")
	}
}

// subscribed reports whether who receives owner's presence.
func (m *Module) subscribed(ctx context.Context, owner string, who jid.JID) bool {
	it, err := m.h.Store.RosterItem(ctx, owner, who.Bare().String())
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			m.h.Log.Error("pep: read roster item", "owner", owner, "err", err)
		}
		return false
	}
	return it.Subscription == "from" || it.Subscription == "both"
}

func (m *Module) set(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	ps := iq.Payload()
	if ps.Name.Local != "pubsub" {
		return nil, xmpp.ErrBadRequest("the payload must be a pubsub element")
	}
	owner := iq.From.Localpart()
	switch {
	case ps.Child(NS, "publish") != nil:
		return m.handlePublish(ctx, owner, ps)
	case ps.Child(NS, "retract") != nil:
		return m.handleRetract(ctx, owner, ps.Child(NS, "retract"))
	case ps.Child(NS, "create") != nil:
		return m.handleCreate(ctx, owner, ps)
	case ps.Child(NS, "subscribe") != nil, ps.Child(NS, "unsubscribe") != nil:
		// PEP subscriptions follow presence subscriptions and caps.
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "feature-not-implemented",
			Text:  "subscriptions to personal events follow presence subscriptions and +notify in entity capabilities",
			Extra: elem.New(nsErrors, "unsupported", "feature", "subscribe")}
	}
	return nil, xmpp.ErrBadRequest("no supported pubsub action in the request")
}

func (m *Module) get(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	ps := iq.Payload()
	owner, err := m.target(ctx, iq)
	if err != nil {
		return nil, err
	}
	if items := ps.Child(NS, "items"); items != nil {
		return m.handleItems(ctx, owner, iq.From, items)
	}
	if ps.Child(NS, "subscriptions") != nil || ps.Child(NS, "affiliations") != nil {
		c := ps.FirstElement()
		return elem.New(NS, "pubsub").Add(elem.New(NS, c.Name.Local)), nil
	}
	return nil, &xmpp.StanzaError{Type: "cancel", Condition: "feature-not-implemented", Text: "this request is not supported"}
}

func nodeAttr(el *elem.Element) (string, error) {
	name := el.Get("node")
	if name == "" {
		return "", errWith("modify", "bad-request", "nodeid-required", "a node name is required")
	}
	if len(name) > 256 {
		return "", errNotAcceptable("the node name is too long")
	}
	return name, nil
}

// publishOptions returns the publish-options form, if any.
func publishOptions(ps *elem.Element) form {
	po := ps.Child(NS, "publish-options")
	if po == nil {
		return nil
	}
	f := parseForm(po.Child(nsData, "x"))
	delete(f, "FORM_TYPE")
	return f
}

func (m *Module) handlePublish(ctx context.Context, owner string, ps *elem.Element) (*elem.Element, error) {
	pub := ps.Child(NS, "publish")
	name, err := nodeAttr(pub)
	if err != nil {
		return nil, err
	}
	its := pub.Elements()
	if len(its) != 1 || its[0].Name.Local != "item" {
		return nil, errWith("modify", "bad-request", "invalid-payload", "publish exactly one item")
	}
	payload := its[0].Elements()
	if len(payload) != 1 {
		return nil, errWith("modify", "bad-request", "invalid-payload", "an item carries exactly one payload element")
	}
	id, err := m.publish(ctx, owner, name, its[0].Get("id"), payload[0], publishOptions(ps), nil)
	if err != nil {
		return nil, err
	}
	return elem.New(NS, "pubsub").Add(elem.New(NS, "publish", "node", name).Add(elem.New(NS, "item", "id", id))), nil
}

// publish stores an item (creating the node with defaults, then opts, or
// create when given) and notifies. opts must be met by an existing node.
func (m *Module) publish(ctx context.Context, owner, name, id string, payload *elem.Element, opts form, create *nodeConfig) (string, error) {
	if id == "" {
		id = randomID()
	}
	if len(id) > 1024 {
		return "", errNotAcceptable("the item id is too long")
	}
	unlock := m.lock(owner)
	n, err := m.loadNode(ctx, owner, name)
	if err != nil {
		unlock()
		return "", err
	}
	if n == nil {
		if err := m.checkNodeCount(ctx, owner); err != nil {
			unlock()
			return "", err
		}
		n = &node{Name: name, Config: defaultConfig()}
		if create != nil {
			n.Config = *create
		}
		if err := n.Config.apply(opts); err != nil {
			unlock()
			return "", errPrecondition(err.Error())
		}
	} else if err := n.Config.satisfies(opts); err != nil {
		unlock()
		return "", errPrecondition(err.Error())
	}
	n.put(item{ID: id, XML: payload.String(), Published: time.Now().UTC()})
	err = m.saveNode(ctx, owner, n)
	unlock()
	if err != nil {
		return "", err
	}
	ev := elem.New(NSEvent, "items", "node", name)
	it := n.last()
	ev.Add(m.itemElement(NSEvent, it, n.Config.Payloads))
	m.notify(ctx, owner, n, ev)
	m.published(ctx, owner, name, it.ID, payload)
	return id, nil
}

func (m *Module) checkNodeCount(ctx context.Context, owner string) error {
	all, err := m.nodeNames(ctx, owner)
	if err != nil {
		return err
	}
	if len(all) >= maxNodes {
		return &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint", Text: "too many personal eventing nodes"}
	}
	return nil
}

func (m *Module) handleRetract(ctx context.Context, owner string, r *elem.Element) (*elem.Element, error) {
	name, err := nodeAttr(r)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range r.Elements() {
		if it.Name.Local == "item" && it.Get("id") != "" {
			ids = append(ids, it.Get("id"))
		}
	}
	if len(ids) == 0 {
		return nil, errWith("modify", "bad-request", "item-required", "name the items to retract")
	}
	force := r.Get("notify") == "1" || r.Get("notify") == "true"
	return nil, m.retract(ctx, owner, name, ids, force)
}

func (m *Module) retract(ctx context.Context, owner, name string, ids []string, force bool) error {
	unlock := m.lock(owner)
	n, err := m.loadNode(ctx, owner, name)
	if err != nil {
		unlock()
		return err
	}
	if n == nil {
		unlock()
		return errNoNode("no such node")
	}
	for _, id := range ids {
		i := n.find(id)
		if i < 0 {
			unlock()
			return errNoNode("no such item: " + id)
		}
		n.Items = append(n.Items[:i], n.Items[i+1:]...)
	}
	err = m.saveNode(ctx, owner, n)
	unlock()
	if err != nil {
		return err
	}
	if force || n.Config.NotifyRetract {
		ev := elem.New(NSEvent, "items", "node", name)
		for _, id := range ids {
			ev.Add(elem.New(NSEvent, "retract", "id", id))
		}
		m.notify(ctx, owner, n, ev)
	}
	m.retracted(ctx, owner, name, ids)
	return nil
}

func (m *Module) handleCreate(ctx context.Context, owner string, ps *elem.Element) (*elem.Element, error) {
	name, err := nodeAttr(ps.Child(NS, "create"))
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	if c := ps.Child(NS, "configure"); c != nil {
		if err := cfg.apply(parseForm(c.Child(nsData, "x"))); err != nil {
			return nil, errNotAcceptable(err.Error())
		}
	}
	unlock := m.lock(owner)
	defer unlock()
	n, err := m.loadNode(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	if n != nil {
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "conflict", Text: "the node exists"}
	}
	if err := m.checkNodeCount(ctx, owner); err != nil {
		return nil, err
	}
	return nil, m.saveNode(ctx, owner, &node{Name: name, Config: cfg})
}

func (m *Module) handleItems(ctx context.Context, owner string, from jid.JID, req *elem.Element) (*elem.Element, error) {
	name, err := nodeAttr(req)
	if err != nil {
		return nil, err
	}
	n, err := m.loadNode(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, errNoNode("no such node")
	}
	if err := m.mayRead(ctx, owner, n, from); err != nil {
		return nil, err
	}
	out := elem.New(NS, "items", "node", name)
	var want []string
	for _, it := range req.Elements() {
		if it.Name.Local == "item" && it.Get("id") != "" {
			want = append(want, it.Get("id"))
		}
	}
	items := n.Items
	if len(want) > 0 {
		for _, id := range want {
			if i := n.find(id); i >= 0 {
				out.Add(m.itemElement(NS, &n.Items[i], true))
			}
		}
		return elem.New(NS, "pubsub").Add(out), nil
	}
	if mi := req.Get("max_items"); mi != "" {
		if k, err := parseMaxItems(mi); err == nil && k != maxItemsUnlimited && k < len(items) {
			items = items[len(items)-k:]
		}
	}
	// Newest first, as XEP-0060 6.5.7 has it for max_items.
	for i := len(items) - 1; i >= 0; i-- {
		out.Add(m.itemElement(NS, &items[i], true))
	}
	return elem.New(NS, "pubsub").Add(out), nil
}

func (m *Module) ownerGet(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	ps := iq.Payload()
	owner := iq.From.Localpart()
	if ps.Child(NSOwner, "default") != nil {
		return elem.New(NSOwner, "pubsub").Add(elem.New(NSOwner, "default").Add(defaultConfig().form())), nil
	}
	c := ps.FirstElement()
	if c == nil || (c.Name.Local != "configure" && c.Name.Local != "affiliations") {
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "feature-not-implemented", Text: "this request is not supported"}
	}
	name, err := nodeAttr(c)
	if err != nil {
		return nil, err
	}
	n, err := m.loadNode(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, errNoNode("no such node")
	}
	if c.Name.Local == "configure" {
		return elem.New(NSOwner, "pubsub").Add(elem.New(NSOwner, "configure", "node", name).Add(n.Config.form())), nil
	}
	affs := elem.New(NSOwner, "affiliations", "node", name)
	affs.Add(elem.New(NSOwner, "affiliation", "jid", m.ownerJID(owner).String(), "affiliation", "owner"))
	var js []string
	for j := range n.Affiliations {
		js = append(js, j)
	}
	sort.Strings(js)
	for _, j := range js {
		affs.Add(elem.New(NSOwner, "affiliation", "jid", j, "affiliation", n.Affiliations[j]))
	}
	return elem.New(NSOwner, "pubsub").Add(affs), nil
}

func (m *Module) ownerSet(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	c := iq.Payload().FirstElement()
	if c == nil {
		return nil, xmpp.ErrBadRequest("empty request")
	}
	name, err := nodeAttr(c)
	if err != nil {
		return nil, err
	}
	owner := iq.From.Localpart()
	unlock := m.lock(owner)
	n, err := m.loadNode(ctx, owner, name)
	if err != nil {
		unlock()
		return nil, err
	}
	if n == nil {
		unlock()
		return nil, errNoNode("no such node")
	}
	switch c.Name.Local {
	case "configure":
		x := c.Child(nsData, "x")
		if x == nil || x.Get("type") == "cancel" {
			unlock()
			return nil, nil
		}
		cfg := n.Config
		if err := cfg.apply(parseForm(x)); err != nil {
			unlock()
			return nil, errNotAcceptable(err.Error())
		}
		n.Config = cfg
		if l := cfg.limit(); len(n.Items) > l {
			n.Items = append([]item(nil), n.Items[len(n.Items)-l:]...)
		}
		err = m.saveNode(ctx, owner, n)
		unlock()
		return nil, err
	case "affiliations":
		if n.Affiliations == nil {
			n.Affiliations = map[string]string{}
		}
		for _, a := range c.Elements() {
			j, err := jid.Parse(a.Get("jid"))
			if a.Name.Local != "affiliation" || err != nil {
				unlock()
				return nil, xmpp.ErrBadRequest("each affiliation needs a valid jid")
			}
			switch aff := a.Get("affiliation"); aff {
			case "none":
				delete(n.Affiliations, j.Bare().String())
			case "member", "publisher", "outcast":
				if len(n.Affiliations) >= 1000 {
					unlock()
					return nil, &xmpp.StanzaError{Type: "wait", Condition: "resource-constraint", Text: "too many affiliations"}
				}
				n.Affiliations[j.Bare().String()] = aff
			default:
				unlock()
				return nil, errNotAcceptable("affiliation " + aff + " is not supported here")
			}
		}
		err = m.saveNode(ctx, owner, n)
		unlock()
		return nil, err
	case "delete":
		err = m.h.Store.DeleteUserData(ctx, owner, kind, name)
		unlock()
		if err != nil {
			return nil, err
		}
		if n.Config.NotifyDelete {
			m.notify(ctx, owner, n, elem.New(NSEvent, "delete", "node", name))
		}
		m.retracted(ctx, owner, name, nil)
		return nil, nil
	case "purge":
		var ids []string
		for _, it := range n.Items {
			ids = append(ids, it.ID)
		}
		n.Items = nil
		err = m.saveNode(ctx, owner, n)
		unlock()
		if err != nil {
			return nil, err
		}
		m.notify(ctx, owner, n, elem.New(NSEvent, "purge", "node", name))
		m.retracted(ctx, owner, name, ids)
		return nil, nil
	}
	unlock()
	return nil, &xmpp.StanzaError{Type: "cancel", Condition: "feature-not-implemented", Text: "this request is not supported"}
}

// discoInfo adds the PEP identity and features to an account's disco#info,
// and answers disco#info for a node the requester may read.
func (m *Module) discoInfo(ctx context.Context, ev *xmpp.Event) bool {
	q := ev.Stanza.El
	owner := ev.Stanza.From.Localpart()
	if name := q.Get("node"); name != "" {
		n, err := m.loadNode(ctx, owner, name)
		if err != nil || n == nil || m.mayRead(ctx, owner, n, ev.Stanza.To) != nil {
			return false
		}
		q.Add(elem.New(nsDisco, "identity", "category", "pubsub", "type", "leaf"),
			elem.New(nsDisco, "feature", "var", NS))
		return false
	}
	q.Add(elem.New(nsDisco, "identity", "category", "pubsub", "type", "pep"))
	for _, f := range features {
		q.Add(elem.New(nsDisco, "feature", "var", f))
	}
	q.Add(elem.New(nsDisco, "feature", "var", nsVCardConversion),
		elem.New(nsDisco, "feature", "var", nsBookmarks+"#compat"))
	return false
}

// discoItems lists the nodes the requester may read.
func (m *Module) discoItems(ctx context.Context, ev *xmpp.Event) bool {
	q := ev.Stanza.El
	if q.Get("node") != "" {
		return false
	}
	owner := ev.Stanza.From.Localpart()
	all, err := m.nodeNames(ctx, owner)
	if err != nil {
		m.h.Log.Error("pep: disco items", "err", err)
		return false
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		n, err := m.loadNode(ctx, owner, name)
		if err != nil || n == nil || m.mayRead(ctx, owner, n, ev.Stanza.To) != nil {
			continue
		}
		q.Add(elem.New(nsItems, "item", "jid", ev.Stanza.From.String(), "node", name, "name", n.Config.Title))
	}
	return false
}
