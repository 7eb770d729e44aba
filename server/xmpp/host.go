package xmpp

import (
	"context"
	"log/slog"
	"sync/atomic"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Host is what a feature module sees of the server, the way a Prosody
// module sees its host: it registers handlers and disco features, hooks
// events, and sends stanzas. A module gets nothing else, so features can
// only meet through events and the store.
type Host struct {
	r     *Router
	Store store.Store
	Log   *slog.Logger
	cfg   *atomic.Pointer[config.Config] // owned by the Server, swapped by Reload
}

// Module is one XMPP feature.
type Module interface {
	// Name is short and unique, used in logs.
	Name() string
	// Register declares features and handlers on the host.
	Register(h *Host) error
}

// Config is the live configuration. Read it when the value is used, not
// once in Register: a reload (SIGHUP) swaps it, and "config/reloaded"
// fires afterwards. The domain, listeners, data directory and TLS files
// never change in a running server.
func (h *Host) Config() *config.Config { return h.cfg.Load() }

// Domain is the server's domain.
func (h *Host) Domain() string { return h.r.domain }

// DomainJID is the server's own address.
func (h *Host) DomainJID() jid.JID { return jid.MustParse(h.r.domain) }

// AddFeature advertises a disco#info feature on the server domain.
func (h *Host) AddFeature(ns ...string) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	for _, n := range ns {
		h.r.features[n] = true
	}
}

// AddIdentity advertises a disco#info identity on the server domain.
func (h *Host) AddIdentity(category, typ, name string) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.identities = append(h.r.identities, elem.New("http://jabber.org/protocol/disco#info", "identity", "category", category, "type", typ, "name", name))
}

// Features lists the disco features of the server domain.
func (h *Host) Features() []string { return h.r.Features() }

// Identities lists the disco identities of the server domain.
func (h *Host) Identities() []*elem.Element { return h.r.Identities() }

// HandleIQ registers the handler for IQs of type typ ("get" or "set") whose
// payload is in namespace ns, addressed to target.
func (h *Host) HandleIQ(target Target, typ, ns string, fn IQHandler) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.iq[iqKey{target, typ, ns}] = fn
}

// Hook subscribes to a named event. Events fired by the core:
//
//	stanza/outgoing          every stanza a local client sends (policy, blocking)
//	stanza/incoming          a stanza about to reach a local account
//	message|presence/self    no 'to', or to the sender's own bare JID
//	message|presence/host    to the server domain
//	message|presence/bare    to a local account's bare JID
//	message|presence/full    to a local full JID
//	iq-result|iq-error/...   responses addressed to the server or an account
//	route/remote             a stanza for another domain (federation)
//	stanza/handled           a client's stanza has been routed (the reader
//	                         goroutine, in stream order; Stanza.Durable)
//	session/bound            a session was bound
//	session/hibernate        a session's connection was lost (not closed
//	                         cleanly or by the server); a hook returning true
//	                         keeps it bound, and must later end it with
//	                         EndSession; its output then goes nowhere unless
//	                         an outbound filter keeps it
//	session/resumed          a session continues on a new connection (Resumer)
//	session/replaced         a session lost its full JID to a new binding
//	                         (it gets no session/closed)
//	session/closed           a session ended
//	server/shutdown          the server is stopping; sessions are still bound
//	config/reloaded          the live configuration was replaced (SIGHUP);
//	                         Config() returns the new one (no Stanza, no
//	                         Session)
//
// Modules may fire their own events with Fire.
func (h *Host) Hook(event string, priority int, fn HookFunc) { h.r.addHook(event, priority, fn) }

// Fire runs the hooks of an event.
func (h *Host) Fire(ctx context.Context, event string, ev *Event) bool {
	return h.r.Fire(ctx, event, ev)
}

// AddStreamFeature adds an element to the stream features offered after
// resource binding is possible (e.g. caps, roster versioning).
func (h *Host) AddStreamFeature(fn func(*Session) *elem.Element) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.streamFeatures = append(h.r.streamFeatures, fn)
}

// AddOutboundFilter adds a named stage to the chain every element passes on
// its way to a client session, highest priority first (for example client
// state indication, then stream management's counting). Register filters in
// Register: sessions bound earlier keep the chain they started with.
func (h *Host) AddOutboundFilter(name string, priority int, fn OutboundFilter) {
	h.r.addOutboundFilter(outboundFilter{name: name, priority: priority, fn: fn})
}

// HandleSubdomain routes every stanza for a subdomain (a service such as
// rooms.DOMAIN) to fn.
func (h *Host) HandleSubdomain(domain string, fn HookFunc) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.subdomains[domain] = fn
}

// Sessions returns a local account's bound sessions.
func (h *Host) Sessions(localpart string) []*Session { return h.r.Sessions(localpart) }

// Session returns the session bound to a full JID, or nil.
func (h *Host) Session(j jid.JID) *Session { return h.r.Session(j) }

// IsLocalUser reports whether j names an account on this server.
func (h *Host) IsLocalUser(j jid.JID) bool { return h.r.IsLocalUser(j) }

// Route sends a stanza through the router as if it came from its 'from'.
func (h *Host) Route(ctx context.Context, el *elem.Element) {
	from, _ := ParseJID(el.Get("from"))
	to, _ := ParseJID(el.Get("to"))
	h.r.Route(ctx, &Stanza{El: el, From: from, To: to})
}

// Reply answers st with reply.
func (h *Host) Reply(ctx context.Context, st *Stanza, reply *elem.Element) { h.r.Reply(ctx, st, reply) }

// Bounce answers st with a stanza error.
func (h *Host) Bounce(ctx context.Context, st *Stanza, se *StanzaError) { h.r.Bounce(ctx, st, se) }

// AccountExists reports whether a local account exists.
func (h *Host) AccountExists(ctx context.Context, localpart string) bool {
	_, err := h.Store.GetAccount(ctx, localpart)
	return err == nil
}

// Resumer continues an earlier session on a new connection (stream
// management resumption, XEP-0198).
type Resumer interface {
	// Resume answers el, a request made after authentication instead of
	// resource binding, by the account localpart. It returns the session
	// to continue, or nil and the reply to send (the client may then bind
	// a resource as usual).
	Resume(ctx context.Context, localpart string, el *elem.Element) (*Session, *elem.Element)
	// Resumed is called once sess holds old's JID in the router, with old's
	// module values and presence, and old's connection is being closed;
	// sess's output is held until Resumed returns, so what it sends comes
	// first.
	Resumed(ctx context.Context, old, sess *Session)
}

// HandleResume registers the resumer for request elements in namespace ns.
func (h *Host) HandleResume(ns string, r Resumer) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.resumers[ns] = r
}

// EndSession ends a session kept bound by "session/hibernate": it is
// unbound and "session/closed" fires. It does nothing if s is no longer
// bound (it was resumed or replaced).
func (h *Host) EndSession(ctx context.Context, s *Session) {
	if h.r.unbind(s) {
		h.r.Fire(ctx, "session/closed", &Event{Session: s})
	}
}
