package muc

import (
	"context"
	"crypto/sha1" // #nosec G505 -- XEP-0153 avatar hashes are SHA-1 by definition
	"encoding/base64"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/mam"
)

func (m *Module) serviceInfo(p *elem.Element) *elem.Element {
	q := elem.New(NSDiscoInfo, "query")
	if n := p.Get("node"); n != "" {
		q.Set("node", n)
	}
	q.Add(elem.New(NSDiscoInfo, "identity", "category", "conference", "type", "text", "name", "Rooms"))
	for _, f := range []string{NS, NSDiscoInfo, NSDiscoItems, NSVCard, NSMAM, NSOccupantID, NSModerate, NSModerate0} {
		q.Add(elem.New(NSDiscoInfo, "feature", "var", f))
	}
	return q
}

// serviceItems lists the rooms the requester may see: public rooms they
// may enter, and every room they belong to. Members-only rooms stay out of
// sight of everyone else.
func (m *Module) serviceItems(ctx context.Context, st *xmpp.Stanza, _ *elem.Element) (*elem.Element, error) {
	rooms, err := m.st.ListRooms(ctx)
	if err != nil {
		return nil, err
	}
	bare := st.From.Bare().String()
	admin := m.isServerAdmin(ctx, st.From.Bare())
	sort.Slice(rooms, func(i, j int) bool { return rooms[i].Name < rooms[j].Name })
	q := elem.New(NSDiscoItems, "query")
	for _, c := range rooms {
		aff := c.Affiliation(bare)
		if aff == store.AffOutcast {
			continue
		}
		member := affRank(aff) >= affRank(store.AffMember)
		open := c.Open && c.Plaintext
		if !admin && !member && !(open && c.Public) {
			continue
		}
		it := elem.New(NSDiscoItems, "item", "jid", m.roomJID(c.Name).String())
		if c.Title != "" {
			it.Set("name", c.Title)
		} else {
			it.Set("name", c.Name)
		}
		q.Add(it)
	}
	return q, nil
}

// roomInfo describes a room (XEP-0045 6.4) to those who may see it; to
// anyone else a members-only room does not exist.
func (m *Module) roomInfo(ctx context.Context, r *room, st *xmpp.Stanza, p *elem.Element) (*elem.Element, error) {
	if !m.maySee(ctx, r, st) {
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no such room"}
	}
	node := p.Get("node")
	q := elem.New(NSDiscoInfo, "query")
	r.mu.Lock()
	defer r.mu.Unlock()
	if node == "x-roomuser-item" {
		q.Set("node", node)
		if nick := r.cfg.Nicks[st.From.Bare().String()]; nick != "" {
			q.Add(elem.New(NSDiscoInfo, "identity", "category", "conference", "type", "text", "name", nick))
		}
		return q, nil
	}
	if node != "" {
		return nil, xmpp.ErrItemNotFound()
	}
	c := r.cfg
	name := c.Title
	if name == "" {
		name = c.Name
	}
	q.Add(elem.New(NSDiscoInfo, "identity", "category", "conference", "type", "text", "name", name))
	features := []string{NS, NSDiscoInfo, NSDiscoItems, "muc_persistent", NSStanzaID, NSMAM, NSOccupantID, NSVCard, NSRegister,
		NS + "#stable_id", NSModerate, NSModerate0, "muc_unsecured"}
	if r.membersOnly() {
		features = append(features, "muc_membersonly")
	} else {
		features = append(features, "muc_open")
	}
	if r.nonAnonymous() {
		features = append(features, "muc_nonanonymous")
	} else {
		features = append(features, "muc_semianonymous")
	}
	if c.Moderated {
		features = append(features, "muc_moderated")
	} else {
		features = append(features, "muc_unmoderated")
	}
	if c.Public {
		features = append(features, "muc_public")
	} else {
		features = append(features, "muc_hidden")
	}
	for _, f := range features {
		q.Add(elem.New(NSDiscoInfo, "feature", "var", f))
	}
	mode := "encrypted"
	if c.Plaintext {
		mode = "plaintext"
	}
	value := func(v string) *elem.Element { return elem.New(NSData, "value").AddText(v) }
	field := func(name, label string, v string) *elem.Element {
		return elem.New(NSData, "field", "var", name, "label", label).Add(value(v))
	}
	x := elem.New(NSData, "x", "type", "result").Add(
		hiddenField("FORM_TYPE", NSRoomInfo),
		field("muc#roominfo_description", "Description", c.Description),
		field("muc#roominfo_subject", "Subject", c.Subject),
		field("muc#roominfo_occupants", "Number of occupants", strconv.Itoa(len(r.occupants))),
		field("muc#roomconfig_roomname", "Name", name),
		field(FieldEncryption, "End-to-end encryption", mode),
		field(FieldPolicy, "Encryption policy applied to messages", m.policyFor(c)),
		field(FieldFederation, "Federation", "off"),
	)
	if h := avatarHash(c.VCard); h != "" {
		x.Add(field("muc#roominfo_avatarhash", "Avatar hash", h))
	}
	q.Add(x)
	return q, nil
}

// roomItems lists the occupants, to those who may see the room.
func (m *Module) roomItems(ctx context.Context, r *room, st *xmpp.Stanza) (*elem.Element, error) {
	if !m.maySee(ctx, r, st) {
		return nil, &xmpp.StanzaError{Type: "cancel", Condition: "item-not-found", Text: "no such room"}
	}
	q := elem.New(NSDiscoItems, "query")
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.sortedOccupants() {
		q.Add(elem.New(NSDiscoItems, "item", "jid", r.occupantJID(o.nick)))
	}
	return q, nil
}

// avatarHash is the SHA-1 of the room vCard's photo (XEP-0486), or "".
func avatarHash(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	v, err := mam.ParseStanza(raw)
	if err != nil {
		return ""
	}
	photo := v.Child(NSVCard, "PHOTO")
	if photo == nil {
		return ""
	}
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(photo.ChildText(NSVCard, "BINVAL")), ""))
	if err != nil || len(data) == 0 {
		return ""
	}
	sum := sha1.Sum(data) // #nosec G401 -- see import
	return hex.EncodeToString(sum[:])
}
