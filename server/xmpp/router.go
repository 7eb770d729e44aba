package xmpp

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Event is what a hook receives: a stanza being routed, or a session whose
// state changed.
type Event struct {
	Stanza  *Stanza
	Session *Session
}

// HookFunc handles an event; returning true stops lower-priority hooks.
type HookFunc func(ctx context.Context, ev *Event) bool

type hook struct {
	priority int
	fn       HookFunc
}

// IQHandler answers an IQ. It returns the result payload (may be nil) or an
// error; a *StanzaError is sent as is, ErrHandled means the handler replied
// itself, anything else becomes internal-server-error.
type IQHandler func(ctx context.Context, iq *Stanza) (*elem.Element, error)

// Target says whom an IQ is addressed to, from the server's point of view.
type Target string

// IQ targets.
const (
	ToHost Target = "host" // the server domain
	ToSelf Target = "self" // no 'to', or the sender's own bare JID
	ToBare Target = "bare" // another local account's bare JID
)

type iqKey struct {
	target Target
	typ    string // get or set
	ns     string
}

// Router owns the session table, the hooks and the IQ handlers. It knows no
// feature by name: every behaviour beyond addressing comes from modules
// registered through a Host.
type Router struct {
	domain string
	log    *slog.Logger
	store  store.Store

	mu       sync.RWMutex
	sessions map[string]map[string]*Session // localpart -> resource -> session
	count    int

	hooks          map[string][]hook
	iq             map[iqKey]IQHandler
	features       map[string]bool
	identities     []*elem.Element
	streamFeatures []func(*Session) *elem.Element
	filters        []outboundFilter
	subdomains     map[string]HookFunc
	resumers       map[string]Resumer // by namespace of the request element
}

// NewRouter returns an empty router for domain.
func NewRouter(domain string, st store.Store, log *slog.Logger) *Router {
	return &Router{
		domain:     domain,
		log:        log,
		store:      st,
		sessions:   make(map[string]map[string]*Session),
		hooks:      make(map[string][]hook),
		iq:         make(map[iqKey]IQHandler),
		features:   make(map[string]bool),
		subdomains: make(map[string]HookFunc),
		resumers:   make(map[string]Resumer),
	}
}

// Domain is the server's domain.
func (r *Router) Domain() string { return r.domain }

// SessionCount is the number of bound sessions.
func (r *Router) SessionCount() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// Sessions returns the bound sessions of a local account.
func (r *Router) Sessions(localpart string) []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m := r.sessions[localpart]
	out := make([]*Session, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	return out
}

// Session returns the session bound to a full JID, or nil.
func (r *Router) Session(j jid.JID) *Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sessions[j.Localpart()][j.Resourcepart()]
}

// AllSessions returns every bound session (for shutdown and admin).
func (r *Router) AllSessions() []*Session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Session, 0, r.count)
	for _, m := range r.sessions {
		for _, s := range m {
			out = append(out, s)
		}
	}
	return out
}

// bind adds a session; a session already holding the same full JID is
// returned so the caller can replace it (RFC 6120 7.7.2.2, "override").
func (r *Router) bind(s *Session) (replaced *Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.sessions[s.Localpart()]
	if m == nil {
		m = make(map[string]*Session)
		r.sessions[s.Localpart()] = m
	}
	res := s.JID().Resourcepart()
	replaced = m[res]
	if replaced == nil {
		r.count++
	}
	m[res] = s
	return replaced
}

func (r *Router) unbind(s *Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.sessions[s.Localpart()]
	res := s.JID().Resourcepart()
	if m[res] != s {
		return false
	}
	delete(m, res)
	r.count--
	if len(m) == 0 {
		delete(r.sessions, s.Localpart())
	}
	return true
}

// bound reports whether s is the session bound to its full JID.
func (r *Router) bound(s *Session) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.sessions[s.Localpart()][s.JID().Resourcepart()] == s
}

func (r *Router) resumer(ns string) Resumer {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.resumers[ns]
}

// Fire runs the hooks of an event in priority order (highest first) and
// reports whether one handled it.
func (r *Router) Fire(ctx context.Context, name string, ev *Event) bool {
	r.mu.RLock()
	hs := r.hooks[name]
	r.mu.RUnlock()
	for _, h := range hs {
		if h.fn(ctx, ev) {
			return true
		}
	}
	return false
}

func (r *Router) addHook(name string, priority int, fn HookFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := append(r.hooks[name], hook{priority, fn})
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].priority > hs[j].priority })
	r.hooks[name] = hs
}

func (r *Router) outboundFilters() []outboundFilter {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.filters
}

func (r *Router) addOutboundFilter(f outboundFilter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fs := append(append([]outboundFilter(nil), r.filters...), f)
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].priority > fs[j].priority })
	r.filters = fs
}

// IsLocalUser reports whether j is an account on this server.
func (r *Router) IsLocalUser(j jid.JID) bool {
	return j.Localpart() != "" && j.Domainpart() == r.domain
}

// FromClient is the entry point for a stanza read from a local session,
// after the stream layer has stamped 'from'.
func (r *Router) FromClient(ctx context.Context, st *Stanza) {
	if r.Fire(ctx, "stanza/outgoing", &Event{Stanza: st, Session: st.Origin}) {
		return
	}
	r.Route(ctx, st)
}

// Route delivers a stanza toward its 'to' address: the server itself, a
// local account, a local service (subdomain), or a remote domain.
func (r *Router) Route(ctx context.Context, st *Stanza) {
	kind := st.Kind()
	to := st.To
	switch {
	case to.Equal(jid.JID{}) || (st.Origin != nil && to.Resourcepart() == "" && to.Equal(st.Origin.JID().Bare())):
		r.dispatch(ctx, kind, ToSelf, st)
	case to.Domainpart() == r.domain && to.Localpart() == "":
		if to.Resourcepart() != "" {
			r.Bounce(ctx, st, ErrServiceUnavailable())
			return
		}
		r.dispatch(ctx, kind, ToHost, st)
	case to.Domainpart() == r.domain:
		if r.Fire(ctx, "stanza/incoming", &Event{Stanza: st}) {
			return
		}
		if to.Resourcepart() == "" {
			r.dispatch(ctx, kind, ToBare, st)
		} else {
			r.dispatch(ctx, kind, "full", st)
		}
	default:
		r.mu.RLock()
		sub := r.subdomains[to.Domainpart()]
		r.mu.RUnlock()
		if sub != nil {
			if !sub(ctx, &Event{Stanza: st}) {
				r.Bounce(ctx, st, ErrServiceUnavailable())
			}
			return
		}
		// Federation is a later module: until one handles "route/remote",
		// nothing leaves the server.
		if !r.Fire(ctx, "route/remote", &Event{Stanza: st}) {
			r.Bounce(ctx, st, &StanzaError{Type: "cancel", Condition: "remote-server-not-found",
				Text: "this server does not federate with " + to.Domainpart()})
		}
	}
}

func (r *Router) dispatch(ctx context.Context, kind string, target Target, st *Stanza) {
	if kind == "iq" {
		r.dispatchIQ(ctx, target, st)
		return
	}
	if r.Fire(ctx, kind+"/"+string(target), &Event{Stanza: st, Session: st.Origin}) {
		return
	}
	if kind == "message" && !IsError(st.El) && st.Type() != "groupchat" && st.Type() != "headline" {
		r.Bounce(ctx, st, ErrServiceUnavailable())
	}
}

func (r *Router) dispatchIQ(ctx context.Context, target Target, st *Stanza) {
	typ := st.Type()
	if target == "full" {
		if s := r.Session(st.To); s != nil {
			_ = s.Send(ctx, st.El)
			return
		}
		if typ == "get" || typ == "set" {
			r.Bounce(ctx, st, ErrServiceUnavailable())
		}
		return
	}
	if typ == "result" || typ == "error" {
		r.Fire(ctx, "iq-"+typ+"/"+string(target), &Event{Stanza: st, Session: st.Origin})
		return
	}
	if typ != "get" && typ != "set" {
		r.Bounce(ctx, st, ErrBadRequest("an iq must have type get, set, result or error"))
		return
	}
	payload := st.Payload()
	if payload == nil || len(st.El.Elements()) != 1 {
		r.Bounce(ctx, st, ErrBadRequest("an iq get or set carries exactly one payload element"))
		return
	}
	r.mu.RLock()
	h := r.iq[iqKey{target, typ, payload.Name.Space}]
	r.mu.RUnlock()
	if h == nil {
		r.Bounce(ctx, st, ErrServiceUnavailable())
		return
	}
	res, err := h(ctx, st)
	if err == ErrHandled {
		return
	}
	if err != nil {
		se := AsStanzaError(err)
		if se.Condition == "internal-server-error" {
			r.log.Error("iq handler failed", "ns", payload.Name.Space, "from", st.From.String(), "err", err)
		}
		r.Bounce(ctx, st, se)
		return
	}
	r.Reply(ctx, st, ResultReply(st.El, res))
}

// Reply sends a server-generated answer to the sender of st.
func (r *Router) Reply(ctx context.Context, st *Stanza, reply *elem.Element) {
	if st.Origin != nil && (st.To.Equal(jid.JID{})) {
		// Answers to address-less requests come from the account itself.
		reply.Set("from", "")
	}
	to := st.From
	if st.Origin != nil && to.Equal(st.Origin.JID()) {
		_ = st.Origin.Send(ctx, reply)
		return
	}
	r.Route(ctx, &Stanza{El: reply, From: st.To, To: to})
}

// Bounce answers st with a stanza error, unless st is an error itself.
func (r *Router) Bounce(ctx context.Context, st *Stanza, se *StanzaError) {
	if IsError(st.El) || st.From.Equal(jid.JID{}) {
		return
	}
	r.Reply(ctx, st, ErrorReply(st.El, se))
}

// Features lists the server's disco features, sorted.
func (r *Router) Features() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.features))
	for f := range r.features {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Identities lists the server's disco identities.
func (r *Router) Identities() []*elem.Element {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]*elem.Element(nil), r.identities...)
}

func (r *Router) streamFeaturesFor(s *Session) []*elem.Element {
	r.mu.RLock()
	fs := append([]func(*Session) *elem.Element(nil), r.streamFeatures...)
	r.mu.RUnlock()
	var out []*elem.Element
	for _, f := range fs {
		if e := f(s); e != nil {
			out = append(out, e)
		}
	}
	return out
}

// ParseJID parses an address from a stanza attribute; "" is the zero JID.
func ParseJID(s string) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, nil
	}
	return jid.Parse(strings.TrimSpace(s))
}
