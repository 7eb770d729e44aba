package pep

import (
	"context"
	"fmt"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const (
	nsBookmarks       = "urn:xmpp:bookmarks:1"
	nsLegacyBookmarks = "storage:bookmarks"
	nsPrivate         = "jabber:iq:private"
	// Where the private module keeps storage:bookmarks (server/xmpp/private).
	privateKind = "private"
	privateKey  = "storage " + nsLegacyBookmarks
)

// bookmarksConfig is XEP-0402's node configuration.
func bookmarksConfig() *nodeConfig {
	c := defaultConfig()
	c.AccessModel = accessWhitelist
	c.MaxItems = maxItemsUnlimited
	c.SendLast = sendNever
	return &c
}

func truthy(s string) bool { return s == "true" || s == "1" }

// bookmarksToPrivate rewrites the private XML bookmarks from the PEP
// node (XEP-0411), keeping the legacy URL bookmarks PEP has no place for.
func (m *Module) bookmarksToPrivate(ctx context.Context, owner string) {
	if err := m.writePrivateBookmarks(ctx, owner); err != nil {
		m.h.Log.Error("pep: bookmarks to private storage", "user", owner, "err", err)
	}
}

func (m *Module) writePrivateBookmarks(ctx context.Context, owner string) error {
	n, err := m.loadNode(ctx, owner, nsBookmarks)
	if err != nil {
		return err
	}
	storage := elem.New(nsLegacyBookmarks, "storage")
	if old, err := m.privateBookmarks(ctx, owner); err == nil && old != nil {
		for _, u := range old.Elements() {
			if u.Name.Local == "url" {
				storage.Add(u)
			}
		}
	}
	if n != nil {
		for i := range n.Items {
			c, err := m.parse(n.Items[i].XML)
			if err != nil || c.Name.Local != "conference" {
				continue
			}
			autojoin := "false"
			if truthy(c.Get("autojoin")) {
				autojoin = "true"
			}
			lc := elem.New(nsLegacyBookmarks, "conference", "jid", n.Items[i].ID, "name", c.Get("name"), "autojoin", autojoin)
			if nick := c.ChildText(nsBookmarks, "nick"); nick != "" {
				lc.Add(elem.New(nsLegacyBookmarks, "nick").AddText(nick))
			}
			if pw := c.ChildText(nsBookmarks, "password"); pw != "" {
				lc.Add(elem.New(nsLegacyBookmarks, "password").AddText(pw))
			}
			storage.Add(lc)
		}
	}
	q := elem.New(nsPrivate, "query").Add(storage)
	if err := m.h.Store.PutUserData(ctx, owner, privateKind, privateKey, []byte(q.String())); err != nil {
		return fmt.Errorf("store private bookmarks: %w", err)
	}
	return nil
}

// privateBookmarks returns the stored <storage/>, or nil.
func (m *Module) privateBookmarks(ctx context.Context, owner string) (*elem.Element, error) {
	raw, err := m.h.Store.GetUserData(ctx, owner, privateKind, privateKey)
	if err != nil {
		return nil, err
	}
	q, err := m.parse(string(raw))
	if err != nil {
		return nil, err
	}
	return q.Child(nsLegacyBookmarks, "storage"), nil
}

// privateUpdated follows bookmarks stored with XEP-0049 into the PEP node
// (XEP-0411), so clients of either kind see the same rooms.
func (m *Module) privateUpdated(ctx context.Context, ev *xmpp.Event) bool {
	q := ev.Stanza.Payload()
	if q == nil {
		return false
	}
	storage := q.Child(nsLegacyBookmarks, "storage")
	if storage == nil {
		return false
	}
	owner := ev.Stanza.From.Localpart()
	if err := m.privateToPEP(ctx, owner, storage); err != nil {
		m.h.Log.Error("pep: private bookmarks to PEP", "user", owner, "err", err)
	}
	return false
}

func (m *Module) privateToPEP(ctx context.Context, owner string, storage *elem.Element) error {
	ctx = context.WithValue(ctx, syncKey{}, true)
	n, err := m.loadNode(ctx, owner, nsBookmarks)
	if err != nil {
		return err
	}
	want := map[string]*elem.Element{}
	var order []string
	for _, c := range storage.Elements() {
		if c.Name.Local != "conference" {
			continue
		}
		room, err := jid.Parse(c.Get("jid"))
		if err != nil || room.Localpart() == "" {
			continue
		}
		key := room.Bare().String()
		nc := elem.New(nsBookmarks, "conference", "name", c.Get("name"), "autojoin", fmt.Sprint(truthy(c.Get("autojoin"))))
		if nick := c.ChildText(nsLegacyBookmarks, "nick"); nick != "" {
			nc.Add(elem.New(nsBookmarks, "nick").AddText(nick))
		}
		if pw := c.ChildText(nsLegacyBookmarks, "password"); pw != "" {
			nc.Add(elem.New(nsBookmarks, "password").AddText(pw))
		}
		if _, dup := want[key]; !dup {
			order = append(order, key)
		}
		want[key] = nc
	}
	var gone []string
	if n != nil {
		for i := range n.Items {
			if want[n.Items[i].ID] == nil {
				gone = append(gone, n.Items[i].ID)
			}
		}
	}
	if len(gone) > 0 {
		if err := m.retract(ctx, owner, nsBookmarks, gone, true); err != nil {
			return fmt.Errorf("retract bookmarks: %w", err)
		}
	}
	for _, key := range order {
		nc := want[key]
		if n != nil {
			if i := n.find(key); i >= 0 {
				// Extensions live only in PEP; keep them.
				if old, err := m.parse(n.Items[i].XML); err == nil {
					if ext := old.Child(nsBookmarks, "extensions"); ext != nil {
						nc.Add(ext)
					}
				}
				if nc.String() == n.Items[i].XML {
					continue
				}
			}
		}
		if _, err := m.publish(ctx, owner, nsBookmarks, key, nc, nil, bookmarksConfig()); err != nil {
			return fmt.Errorf("publish bookmark %s: %w", key, err)
		}
	}
	return nil
}
