package pep

import (
	"context"
	"crypto/sha1" // #nosec G505 -- XEP-0084 and XEP-0153 name avatars by their SHA-1
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const (
	nsAvatarData      = "urn:xmpp:avatar:data"
	nsAvatarMeta      = "urn:xmpp:avatar:metadata"
	nsVCardConversion = "urn:xmpp:pep-vcard-conversion:0"
	nsVCard           = "vcard-temp"
	nsVCardUpdate     = "vcard-temp:x:update"
	// Where the vcard module keeps a user's vCard (server/xmpp/vcard).
	vcardKind = "vcard"
	vcardKey  = "vcard-temp"
)

type syncKey struct{}

// converting marks a context in which PEP is writing the older form of a
// document itself, so the change is not converted back.
func converting(ctx context.Context) bool { return ctx.Value(syncKey{}) != nil }

// published follows PEP changes into their older forms.
func (m *Module) published(ctx context.Context, owner, node, id string, payload *elem.Element) {
	if converting(ctx) {
		return
	}
	switch node {
	case nsAvatarMeta:
		if err := m.avatarToVCard(ctx, owner, payload); err != nil {
			m.h.Log.Error("pep: avatar to vCard", "user", owner, "err", err)
		}
	case nsBookmarks:
		m.bookmarksToPrivate(ctx, owner)
	}
}

func (m *Module) retracted(ctx context.Context, owner, node string, ids []string) {
	if converting(ctx) {
		return
	}
	if node == nsBookmarks {
		m.bookmarksToPrivate(ctx, owner)
	}
}

func (m *Module) loadVCard(ctx context.Context, owner string) (*elem.Element, error) {
	raw, err := m.h.Store.GetUserData(ctx, owner, vcardKind, vcardKey)
	if errors.Is(err, store.ErrNotFound) {
		return elem.New(nsVCard, "vCard"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("load vCard: %w", err)
	}
	v, err := m.parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("decode vCard: %w", err)
	}
	return v, nil
}

func photoHash(b64 string) (string, []byte, error) {
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64), ""))
	if err != nil {
		return "", nil, fmt.Errorf("avatar data is not base64: %w", err)
	}
	sum := sha1.Sum(data) // #nosec G401 -- the hash XEP-0153 and XEP-0084 use
	return hex.EncodeToString(sum[:]), data, nil
}

// avatarToVCard puts the avatar a user published with XEP-0084 into their
// vCard (XEP-0398), or takes it out when they disabled it.
func (m *Module) avatarToVCard(ctx context.Context, owner string, meta *elem.Element) error {
	var info *elem.Element
	for _, in := range meta.Elements() {
		if in.Name.Local != "info" || in.Get("url") != "" {
			continue
		}
		if info == nil || in.Get("type") == "image/png" {
			info = in
		}
	}
	v, err := m.loadVCard(ctx, owner)
	if err != nil {
		return err
	}
	hash := ""
	v.RemoveChildren(nsVCard, "PHOTO")
	if info != nil {
		n, err := m.loadNode(ctx, owner, nsAvatarData)
		if err != nil {
			return err
		}
		i := -1
		if n != nil {
			i = n.find(info.Get("id"))
		}
		if i < 0 {
			return fmt.Errorf("avatar data %q was not published", info.Get("id"))
		}
		data, err := m.parse(n.Items[i].XML)
		if err != nil {
			return fmt.Errorf("decode avatar data: %w", err)
		}
		b64 := strings.Join(strings.Fields(data.Text()), "")
		if hash, _, err = photoHash(b64); err != nil {
			return err
		}
		typ := info.Get("type")
		if typ == "" {
			typ = "image/png"
		}
		v.Add(elem.New(nsVCard, "PHOTO").Add(
			elem.New(nsVCard, "TYPE").AddText(typ),
			elem.New(nsVCard, "BINVAL").AddText(b64)))
	}
	if err := m.h.Store.PutUserData(ctx, owner, vcardKind, vcardKey, []byte(v.String())); err != nil {
		return fmt.Errorf("store vCard: %w", err)
	}
	m.setAvatar(owner, hash)
	return nil
}

func (m *Module) setAvatar(owner, hash string) {
	m.avatarMu.Lock()
	m.avatars[owner] = hash
	m.avatarMu.Unlock()
}

// avatarHash is the SHA-1 of the user's vCard photo, "" for none.
func (m *Module) avatarHash(ctx context.Context, owner string) (string, error) {
	m.avatarMu.Lock()
	h, ok := m.avatars[owner]
	m.avatarMu.Unlock()
	if ok {
		return h, nil
	}
	v, err := m.loadVCard(ctx, owner)
	if err != nil {
		return "", err
	}
	if p := v.Child(nsVCard, "PHOTO"); p != nil && p.ChildText(nsVCard, "BINVAL") != "" {
		if h, _, err = photoHash(p.ChildText(nsVCard, "BINVAL")); err != nil {
			h = ""
		}
	}
	m.setAvatar(owner, h)
	return h, nil
}

// vcardUpdated publishes a photo set through vcard-temp as an XEP-0084
// avatar (XEP-0398).
func (m *Module) vcardUpdated(ctx context.Context, ev *xmpp.Event) bool {
	owner := ev.Stanza.From.Localpart()
	v := ev.Stanza.Payload()
	if err := m.vcardToAvatar(ctx, owner, v); err != nil {
		m.h.Log.Error("pep: vCard to avatar", "user", owner, "err", err)
	}
	return false
}

func (m *Module) vcardToAvatar(ctx context.Context, owner string, v *elem.Element) error {
	ctx = context.WithValue(ctx, syncKey{}, true)
	old, _ := m.avatarHash(ctx, owner)
	p := v.Child(nsVCard, "PHOTO")
	b64 := ""
	if p != nil {
		b64 = strings.Join(strings.Fields(p.ChildText(nsVCard, "BINVAL")), "")
	}
	if b64 == "" {
		m.setAvatar(owner, "")
		if old == "" {
			return nil
		}
		_, err := m.publish(ctx, owner, nsAvatarMeta, "", elem.New(nsAvatarMeta, "metadata"), nil, avatarConfig())
		return err
	}
	hash, data, err := photoHash(b64)
	if err != nil {
		return err
	}
	m.setAvatar(owner, hash)
	if hash == old {
		return nil
	}
	typ := p.ChildText(nsVCard, "TYPE")
	if typ == "" {
		typ = "image/png"
	}
	cfg := avatarConfig()
	if _, err := m.publish(ctx, owner, nsAvatarData, hash, elem.New(nsAvatarData, "data").AddText(b64), nil, cfg); err != nil {
		return fmt.Errorf("publish avatar data: %w", err)
	}
	meta := elem.New(nsAvatarMeta, "metadata").Add(
		elem.New(nsAvatarMeta, "info", "id", hash, "bytes", strconv.Itoa(len(data)), "type", typ))
	if _, err := m.publish(ctx, owner, nsAvatarMeta, hash, meta, nil, cfg); err != nil {
		return fmt.Errorf("publish avatar metadata: %w", err)
	}
	return nil
}

// avatarConfig is used when a vCard photo creates the avatar nodes: a
// vCard is readable by anyone, so its avatar is too.
func avatarConfig() *nodeConfig {
	c := defaultConfig()
	c.AccessModel = accessOpen
	return &c
}

// outgoingPresence puts the user's avatar hash in their available
// presence (XEP-0153), whatever the client wrote there.
func (m *Module) outgoingPresence(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if st.Kind() != "presence" || st.Type() != "" || st.Origin == nil {
		return false
	}
	h, err := m.avatarHash(ctx, st.Origin.Localpart())
	if err != nil {
		m.h.Log.Error("pep: avatar hash", "user", st.Origin.Localpart(), "err", err)
		return false
	}
	st.El.RemoveChildren(nsVCardUpdate, "x")
	photo := elem.New(nsVCardUpdate, "photo").AddText(h)
	st.El.Add(elem.New(nsVCardUpdate, "x").Add(photo))
	return false
}
