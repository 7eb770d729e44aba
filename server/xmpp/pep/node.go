package pep

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// kind names PEP nodes in the user data store: one document per node, so a
// publish rewrites only its own node.
const kind = "pep"

// Limits. PEP nodes hold small documents (keys, avatars, bookmarks); the
// item cap is what "max" means to clients that ask for it (OMEMO 2,
// bookmarks).
const (
	maxItemsCap = 256
	maxNodes    = 256
)

// Access models (XEP-0060 4.5).
const (
	accessOpen      = "open"
	accessPresence  = "presence"
	accessWhitelist = "whitelist"
)

// Values of pubsub#send_last_published_item.
const (
	sendNever           = "never"
	sendOnSub           = "on_sub"
	sendOnSubPresence   = "on_sub_and_presence"
	maxItemsUnlimited   = -1 // "max": as many as the server allows
	defaultMaxItemsPEP  = 1
	formTypeNodeConfig  = "http://jabber.org/protocol/pubsub#node_config"
	formTypePublishOpts = "http://jabber.org/protocol/pubsub#publish-options"
)

// nodeConfig is the part of XEP-0060's node configuration PEP honours.
type nodeConfig struct {
	AccessModel   string `json:"access_model"`
	MaxItems      int    `json:"max_items"` // maxItemsUnlimited for "max"
	PersistItems  bool   `json:"persist_items"`
	SendLast      string `json:"send_last"`
	NotifyRetract bool   `json:"notify_retract"`
	NotifyDelete  bool   `json:"notify_delete"`
	DeliverNotify bool   `json:"deliver_notifications"`
	Payloads      bool   `json:"deliver_payloads"`
	Title         string `json:"title,omitempty"`
}

// defaultConfig is XEP-0163 section 4's node defaults.
func defaultConfig() nodeConfig {
	return nodeConfig{
		AccessModel:   accessPresence,
		MaxItems:      defaultMaxItemsPEP,
		PersistItems:  true,
		SendLast:      sendOnSubPresence,
		NotifyRetract: true,
		NotifyDelete:  true,
		DeliverNotify: true,
		Payloads:      true,
	}
}

// limit is how many items the node keeps.
func (c nodeConfig) limit() int {
	switch {
	case !c.PersistItems:
		// A transient node still needs its last item for late joiners.
		return 1
	case c.MaxItems == maxItemsUnlimited || c.MaxItems > maxItemsCap:
		return maxItemsCap
	case c.MaxItems < 1:
		return 1
	}
	return c.MaxItems
}

type item struct {
	ID        string    `json:"id"`
	XML       string    `json:"xml"` // the payload element, serialized
	Published time.Time `json:"published"`
}

// node is one stored PEP node.
type node struct {
	Name   string     `json:"name"`
	Config nodeConfig `json:"config"`
	Items  []item     `json:"items"` // oldest first
	// Affiliations grants whitelist access (member, publisher) or takes
	// it away (outcast), by bare JID.
	Affiliations map[string]string `json:"affiliations,omitempty"`
}

func (n *node) last() *item {
	if len(n.Items) == 0 {
		return nil
	}
	return &n.Items[len(n.Items)-1]
}

func (n *node) find(id string) int {
	for i := range n.Items {
		if n.Items[i].ID == id {
			return i
		}
	}
	return -1
}

// put adds or replaces an item, newest last, and trims to the limit.
func (n *node) put(it item) {
	if i := n.find(it.ID); i >= 0 {
		n.Items = append(n.Items[:i], n.Items[i+1:]...)
	}
	n.Items = append(n.Items, it)
	if l := n.Config.limit(); len(n.Items) > l {
		n.Items = append([]item(nil), n.Items[len(n.Items)-l:]...)
	}
}

func (m *Module) loadNode(ctx context.Context, owner, name string) (*node, error) {
	raw, err := m.h.Store.GetUserData(ctx, owner, kind, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load pep node %q of %s: %w", name, owner, err)
	}
	var n node
	if err := json.Unmarshal(raw, &n); err != nil {
		return nil, fmt.Errorf("decode pep node %q of %s: %w", name, owner, err)
	}
	return &n, nil
}

func (m *Module) saveNode(ctx context.Context, owner string, n *node) error {
	raw, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode pep node %q: %w", n.Name, err)
	}
	if err := m.h.Store.PutUserData(ctx, owner, kind, n.Name, raw); err != nil {
		return fmt.Errorf("store pep node %q of %s: %w", n.Name, owner, err)
	}
	return nil
}

func (m *Module) nodeNames(ctx context.Context, owner string) (map[string][]byte, error) {
	all, err := m.h.Store.ListUserData(ctx, owner, kind)
	if err != nil {
		return nil, fmt.Errorf("list pep nodes of %s: %w", owner, err)
	}
	return all, nil
}

// parse decodes a stored payload.
func (m *Module) parse(raw string) (*elem.Element, error) {
	d := elem.NewDecoder(bufio.NewReader(strings.NewReader(raw)), elem.Limits{
		MaxBytes: len(raw) + 64, MaxDepth: m.h.Config().Limits.MaxDepth + 4,
	})
	return d.ReadElement()
}

// itemElement renders a stored item inside ns (pubsub or pubsub#event).
func (m *Module) itemElement(ns string, it *item, payload bool) *elem.Element {
	el := elem.New(ns, "item", "id", it.ID)
	if !payload {
		return el
	}
	p, err := m.parse(it.XML)
	if err != nil {
		m.h.Log.Error("stored pep item is unreadable", "id", it.ID, "err", err)
		return el
	}
	return el.Add(p)
}

// form is a submitted data form (XEP-0004): var -> values.
type form map[string][]string

func parseForm(x *elem.Element) form {
	f := form{}
	if x == nil {
		return f
	}
	for _, fld := range x.Elements() {
		if fld.Name.Local != "field" {
			continue
		}
		var vals []string
		for _, v := range fld.Elements() {
			if v.Name.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		f[fld.Get("var")] = vals
	}
	return f
}

func parseBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

func parseMaxItems(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return maxItemsUnlimited, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("pubsub#max_items must be a positive number or \"max\", not %q", s)
	}
	if n > maxItemsCap {
		// Asking for more than the server keeps is asking for its maximum.
		return maxItemsUnlimited, nil
	}
	return n, nil
}

// apply changes c by the fields of f it knows; unknown fields are ignored
// so that clients asking for options this server does not have still work.
func (c *nodeConfig) apply(f form) error {
	for k, vals := range f {
		v := ""
		if len(vals) > 0 {
			v = vals[0]
		}
		var err error
		switch k {
		case "pubsub#access_model":
			switch v {
			case accessOpen, accessPresence, accessWhitelist:
				c.AccessModel = v
			default:
				err = fmt.Errorf("access model %q is not supported (open, presence, whitelist are)", v)
			}
		case "pubsub#max_items":
			c.MaxItems, err = parseMaxItems(v)
		case "pubsub#persist_items":
			c.PersistItems, err = parseBool(v)
		case "pubsub#send_last_published_item":
			switch v {
			case sendNever, sendOnSub, sendOnSubPresence:
				c.SendLast = v
			default:
				err = fmt.Errorf("send_last_published_item %q is not supported", v)
			}
		case "pubsub#notify_retract":
			c.NotifyRetract, err = parseBool(v)
		case "pubsub#notify_delete":
			c.NotifyDelete, err = parseBool(v)
		case "pubsub#deliver_notifications":
			c.DeliverNotify, err = parseBool(v)
		case "pubsub#deliver_payloads":
			c.Payloads, err = parseBool(v)
		case "pubsub#title":
			if len(v) > 256 {
				err = errors.New("the title is too long")
			}
			c.Title = v
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// satisfies reports whether the node's configuration meets publish-options
// (XEP-0060 7.1.5). "max" matches however the node's maximum was asked for,
// since OMEMO 2 clients send it on every publish.
func (c nodeConfig) satisfies(f form) error {
	for k, vals := range f {
		if !strings.HasPrefix(k, "pubsub#") {
			continue
		}
		one := c
		if err := one.apply(form{k: vals}); err != nil {
			return err
		}
		if k == "pubsub#max_items" && one.limit() == c.limit() {
			continue
		}
		if one != c {
			return fmt.Errorf("the node's %s is not %q; reconfigure the node first", k, strings.Join(vals, ","))
		}
	}
	return nil
}

func field(typ, v, label string, values ...string) *elem.Element {
	f := elem.New(nsData, "field", "var", v, "type", typ, "label", label)
	for _, val := range values {
		f.Add(elem.New(nsData, "value").AddText(val))
	}
	return f
}

func listField(v, label, value string, options ...string) *elem.Element {
	f := field("list-single", v, label, value)
	for _, o := range options {
		f.Add(elem.New(nsData, "option").Add(elem.New(nsData, "value").AddText(o)))
	}
	return f
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// configForm renders c as a node_config form.
func (c nodeConfig) form() *elem.Element {
	max := strconv.Itoa(c.MaxItems)
	if c.MaxItems == maxItemsUnlimited {
		max = "max"
	}
	x := elem.New(nsData, "x", "type", "form")
	x.Add(
		field("hidden", "FORM_TYPE", "", formTypeNodeConfig),
		field("text-single", "pubsub#title", "A friendly name for the node", c.Title),
		listField("pubsub#access_model", "Who may read the items", c.AccessModel, accessOpen, accessPresence, accessWhitelist),
		field("text-single", "pubsub#max_items", "Most items to keep (a number, or max = "+strconv.Itoa(maxItemsCap)+")", max),
		field("boolean", "pubsub#persist_items", "Keep items", boolStr(c.PersistItems)),
		listField("pubsub#send_last_published_item", "When to send the last item", c.SendLast, sendNever, sendOnSub, sendOnSubPresence),
		field("boolean", "pubsub#notify_retract", "Notify when items are removed", boolStr(c.NotifyRetract)),
		field("boolean", "pubsub#notify_delete", "Notify when the node is deleted", boolStr(c.NotifyDelete)),
		field("boolean", "pubsub#deliver_notifications", "Deliver event notifications", boolStr(c.DeliverNotify)),
		field("boolean", "pubsub#deliver_payloads", "Deliver payloads with notifications", boolStr(c.Payloads)),
	)
	return x
}

// pubsubError is a stanza error with a pubsub#errors condition and, for
// clients that still look for it, a legacy error code.
type pubsubError struct {
	se   *xmpp.StanzaError
	code string
}

func (e *pubsubError) Error() string { return e.se.Error() }

func errWith(typ, cond, app, text string) *xmpp.StanzaError {
	se := &xmpp.StanzaError{Type: typ, Condition: cond, Text: text}
	if app != "" {
		se.Extra = elem.New(nsErrors, app)
	}
	return se
}

// errNoNode is item-not-found with code 404: some OMEMO clients publish a
// missing device list only when they see the code.
func errNoNode(text string) error {
	return &pubsubError{se: errWith("cancel", "item-not-found", "", text), code: "404"}
}

func errPrecondition(text string) error {
	return errWith("cancel", "conflict", "precondition-not-met", text)
}

func errNotAcceptable(text string) error {
	return &xmpp.StanzaError{Type: "modify", Condition: "not-acceptable", Text: text}
}
