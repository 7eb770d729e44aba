package mam

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// StampFormat is how archive times are shown (XEP-0082, to the microsecond).
const StampFormat = "2006-01-02T15:04:05.000000Z"

func (m *Module) get(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	switch iq.Payload().Name.Local {
	case "query":
		return m.form(), nil
	case "prefs":
		p, err := m.loadPrefs(ctx, iq.From.Localpart())
		if err != nil {
			return nil, err
		}
		return prefsElement(p), nil
	}
	return nil, xmpp.ErrBadRequest("expected query or prefs")
}

func (m *Module) set(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	switch iq.Payload().Name.Local {
	case "query":
		return m.query(ctx, iq)
	case "prefs":
		return m.setPrefs(ctx, iq)
	}
	return nil, xmpp.ErrBadRequest("expected query or prefs")
}

// form lists the fields a query accepts (XEP-0313 section 5.1.1).
func (m *Module) form() *elem.Element {
	x := elem.New(NSData, "x", "type", "form")
	x.Add(elem.New(NSData, "field", "var", "FORM_TYPE", "type", "hidden").Add(elem.New(NSData, "value").AddText(NS)))
	for _, f := range []struct{ name, typ string }{
		{"with", "jid-single"}, {"start", "text-single"}, {"end", "text-single"},
		{"before-id", "text-single"}, {"after-id", "text-single"}, {"ids", "list-multi"},
	} {
		x.Add(elem.New(NSData, "field", "var", f.name, "type", f.typ))
	}
	return elem.New(NS, "query").Add(x)
}

func prefsElement(p Prefs) *elem.Element {
	e := elem.New(NS, "prefs", "default", p.Default)
	al, nv := elem.New(NS, "always"), elem.New(NS, "never")
	for _, j := range p.Always {
		al.Add(elem.New(NS, "jid").AddText(j))
	}
	for _, j := range p.Never {
		nv.Add(elem.New(NS, "jid").AddText(j))
	}
	return e.Add(al, nv)
}

// maxPrefsJIDs bounds the preference lists, so one account cannot grow the
// per-message check without limit.
const maxPrefsJIDs = 1000

func (m *Module) setPrefs(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	el := iq.Payload()
	p := Prefs{Default: el.Get("default")}
	switch p.Default {
	case "always", "never", "roster":
	default:
		return nil, xmpp.ErrBadRequest("default must be always, roster or never")
	}
	list := func(name string) ([]string, error) {
		var out []string
		c := el.Child(NS, name)
		if c == nil {
			return nil, nil
		}
		for _, j := range c.Elements() {
			if j.Name.Local != "jid" {
				continue
			}
			pj, err := jid.Parse(strings.TrimSpace(j.Text()))
			if err != nil {
				return nil, &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: fmt.Sprintf("%q is not a valid JID", j.Text())}
			}
			if s := pj.Bare().String(); !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var err error
	if p.Always, err = list("always"); err != nil {
		return nil, err
	}
	if p.Never, err = list("never"); err != nil {
		return nil, err
	}
	if len(p.Always)+len(p.Never) > maxPrefsJIDs {
		return nil, &xmpp.StanzaError{Type: "modify", Condition: "policy-violation", Text: fmt.Sprintf("at most %d JIDs in the always and never lists", maxPrefsJIDs)}
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	user := iq.From.Localpart()
	if err := m.h.Store.PutUserData(ctx, user, prefsDataKind, prefsDataKey, raw); err != nil {
		return nil, fmt.Errorf("store archive preferences of %s: %w", user, err)
	}
	m.mu.Lock()
	m.prefs[user] = p
	m.mu.Unlock()
	return prefsElement(p), nil
}

func notFound(what string) error {
	return &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: what + " is not in the archive"}
}

// parseQuery turns a query element into a store query.
func (m *Module) parseQuery(ctx context.Context, user string, q *elem.Element) (store.ArchiveQuery, bool, error) {
	return ParseQuery(ctx, q, func(ctx context.Context, aq store.ArchiveQuery) (store.ArchivePage, error) {
		return m.archive.QueryArchive(ctx, user, aq)
	})
}

// Lookup runs a store query on one archive (an account's or a room's).
type Lookup func(ctx context.Context, q store.ArchiveQuery) (store.ArchivePage, error)

// ParseQuery turns a mam:2 query element into a store query and reports
// whether the page is to be flipped. IDs the query names must exist in the
// archive that lookup reads (XEP-0313 section 4.1.1). Rooms share it so
// that both archives answer the same queries the same way.
func ParseQuery(ctx context.Context, q *elem.Element, lookup Lookup) (store.ArchiveQuery, bool, error) {
	var aq store.ArchiveQuery
	var mustExist []uint64
	id := func(field, s string) (uint64, error) {
		v, ok := ParseID(strings.TrimSpace(s))
		if !ok {
			return 0, notFound(field + " " + strconv.Quote(s))
		}
		mustExist = append(mustExist, v)
		return v, nil
	}
	if x := q.Child(NSData, "x"); x != nil {
		for _, f := range x.Elements() {
			if f.Name.Local != "field" {
				continue
			}
			val := strings.TrimSpace(f.ChildText(NSData, "value"))
			var err error
			switch f.Get("var") {
			case "FORM_TYPE":
				if val != NS {
					return aq, false, xmpp.ErrBadRequest("FORM_TYPE must be " + NS)
				}
			case "with":
				if val == "" {
					continue
				}
				j, perr := jid.Parse(val)
				if perr != nil {
					return aq, false, &xmpp.StanzaError{Type: "modify", Condition: "jid-malformed", Text: "with: not a valid JID"}
				}
				aq.WithBare = j.Bare().String()
				if j.Resourcepart() != "" {
					aq.WithFull = j.String()
				}
			case "start", "end":
				t, perr := time.Parse(time.RFC3339Nano, val)
				if perr != nil {
					return aq, false, xmpp.ErrBadRequest(f.Get("var") + ": expected a date-time such as 2010-06-07T00:00:00Z")
				}
				ns := t.UnixNano()
				if ns < 0 {
					ns = 0
				}
				if f.Get("var") == "end" && ns%1000 == 0 {
					// Stamps are shown to the microsecond and IDs count
					// nanoseconds: an end copied from a stamp includes
					// that message.
					ns += 999
				}
				if f.Get("var") == "start" {
					aq.Start = uint64(ns)
				} else if aq.End = uint64(ns); aq.End == 0 {
					aq.End = 1 // before the epoch: nothing
				}
			case "after-id":
				aq.AfterID, err = id("after-id", val)
			case "before-id":
				aq.BeforeID, err = id("before-id", val)
			case "ids":
				for _, v := range f.Elements() {
					if v.Name.Local != "value" {
						continue
					}
					if n, ok := ParseID(strings.TrimSpace(v.Text())); ok {
						aq.IDs = append(aq.IDs, n)
					}
				}
				if len(aq.IDs) == 0 {
					aq.IDs = []uint64{0} // asked for IDs that cannot exist: nothing matches
				}
			}
			if err != nil {
				return aq, false, err
			}
		}
	}
	aq.Max = DefaultMax
	if set := q.Child(NSRSM, "set"); set != nil {
		if mx := set.Child(NSRSM, "max"); mx != nil {
			n, err := strconv.Atoi(strings.TrimSpace(mx.Text()))
			if err != nil || n < 0 {
				return aq, false, xmpp.ErrBadRequest("rsm max must be a non-negative number")
			}
			aq.Max = min(n, MaxMax)
		}
		var err error
		if a := set.Child(NSRSM, "after"); a != nil {
			if aq.After, err = id("rsm after", a.Text()); err != nil {
				return aq, false, err
			}
		}
		if b := set.Child(NSRSM, "before"); b != nil {
			if strings.TrimSpace(b.Text()) == "" {
				aq.LastPage = true
			} else if aq.Before, err = id("rsm before", b.Text()); err != nil {
				return aq, false, err
			}
		}
		if set.Child(NSRSM, "index") != nil {
			return aq, false, &xmpp.StanzaError{Type: "cancel", Condition: "feature-not-implemented", Text: "rsm index is not supported; page with after and before"}
		}
	}
	// XEP-0313 section 4.1.1 and XEP-0059: an unknown ID is an error, not an
	// empty page.
	if len(mustExist) > 0 {
		page, err := lookup(ctx, store.ArchiveQuery{IDs: mustExist, Max: len(mustExist)})
		if err != nil {
			return aq, false, err
		}
		if len(page.Records) != len(slices.Compact(slices.Sorted(slices.Values(mustExist)))) {
			return aq, false, notFound("a requested id")
		}
	}
	return aq, q.Child(NS, "flip-page") != nil, nil
}

func (m *Module) query(ctx context.Context, iq *xmpp.Stanza) (*elem.Element, error) {
	if iq.Origin == nil {
		return nil, xmpp.ErrForbidden("only the account itself may query its archive")
	}
	q := iq.Payload()
	user := iq.From.Localpart()
	m.settle(ctx, user)
	aq, flip, err := m.parseQuery(ctx, user, q)
	if err != nil {
		return nil, err
	}
	page, err := m.archive.QueryArchive(ctx, user, aq)
	if err != nil {
		return nil, err
	}
	return SendPage(ctx, q, page, flip, iq.From.Bare().String(), iq.Origin, func(id uint64, err error) {
		m.h.Log.Error("archived message unreadable", "user", user, "id", id, "err", err)
	})
}

// SendPage sends the results of query q to the session that asked, as
// messages from archive (the account's bare JID or the room's JID), and
// returns the <fin/> that ends the query.
func SendPage(ctx context.Context, q *elem.Element, page store.ArchivePage, flip bool, archive string, to *xmpp.Session, unreadable func(id uint64, err error)) (*elem.Element, error) {
	recs := page.Records
	if flip {
		recs = slices.Clone(recs)
		slices.Reverse(recs)
	}
	queryID := q.Get("queryid")
	for _, r := range recs {
		fwd, err := ParseStanza(r.Stanza)
		if err != nil {
			unreadable(r.ID, err)
			continue
		}
		res := elem.New(NS, "result", "id", FormatID(r.ID))
		if queryID != "" {
			res.Set("queryid", queryID)
		}
		res.Add(elem.New(NSForward, "forwarded").Add(
			elem.New(NSDelay, "delay", "stamp", r.Time().Format(StampFormat)),
			fwd,
		))
		msg := elem.New(elem.NSClient, "message", "from", archive, "to", to.JID().String()).Add(res)
		if err := to.Send(ctx, msg); err != nil {
			return nil, xmpp.ErrHandled // the session is gone
		}
	}
	fin := elem.New(NS, "fin")
	if page.Complete {
		fin.Set("complete", "true")
	}
	set := elem.New(NSRSM, "set")
	if len(recs) > 0 {
		set.Add(elem.New(NSRSM, "first").AddText(FormatID(recs[0].ID)),
			elem.New(NSRSM, "last").AddText(FormatID(recs[len(recs)-1].ID)))
	}
	if page.Count >= 0 {
		set.Add(elem.New(NSRSM, "count").AddText(strconv.Itoa(page.Count)))
	}
	return fin.Add(set), nil
}

// ParseStanza reads a stored message back into an element.
func ParseStanza(raw []byte) (*elem.Element, error) {
	doc := "<stream xmlns='" + elem.NSClient + "'>" + string(raw)
	d := elem.NewDecoder(strings.NewReader(doc), elem.Limits{MaxBytes: len(doc) + 1, MaxDepth: 1000})
	if _, err := d.ReadHeader(); err != nil {
		return nil, err
	}
	return d.ReadElement()
}
