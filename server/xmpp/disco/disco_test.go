package disco_test

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	mdisco "mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/disco"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestServerInfoListsIdentityAndEveryFeature(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")

	info, err := mdisco.GetInfo(ctx(t), "", jid.MustParse(servertest.Domain), a.Session)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, id := range info.Identity {
		if id.Category == "server" && id.Type == "im" && id.Name == "hearth" {
			found = true
		}
	}
	if !found {
		t.Errorf("identities %+v lack server/im hearth", info.Identity)
	}
	var got []string
	for _, f := range info.Features {
		got = append(got, f.Var)
	}
	for _, want := range append(s.XMPP.Host().Features(), disco.NSInfo, disco.NSItems, "urn:xmpp:ping", "urn:xmpp:blocking", "vcard-temp") {
		if !slices.Contains(got, want) {
			t.Errorf("feature %s missing from %v", want, got)
		}
	}
	if len(got) != len(s.XMPP.Host().Features()) {
		t.Errorf("answered %d features, the host has %d", len(got), len(s.XMPP.Host().Features()))
	}
}

func TestServerItemsListServices(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	r := a.IQ("<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("items: %s", r)
	}
	q := r.Child(disco.NSItems, "query")
	if q == nil {
		t.Fatalf("no items query in %s", r)
	}
	var jids []string
	for _, it := range q.Elements() {
		jids = append(jids, it.Get("jid"))
	}
	// Services only: the rooms service, never accounts or nodes.
	if len(jids) != 1 || jids[0] != "rooms.localhost" {
		t.Fatalf("server items %v, want only the rooms service", jids)
	}
}

// itemsModule stands for a later module (rooms, upload) that lists itself.
type itemsModule struct{}

func (itemsModule) Name() string { return "test-items" }
func (itemsModule) Register(h *xmpp.Host) error {
	h.Hook("disco/items/host", 0, func(_ context.Context, ev *xmpp.Event) bool {
		ev.Stanza.El.Add(elem.New(disco.NSItems, "item", "jid", "rooms.localhost", "name", "Rooms"))
		return false
	})
	h.Hook("disco/info/account", 0, func(_ context.Context, ev *xmpp.Event) bool {
		ev.Stanza.El.Add(elem.New(disco.NSInfo, "identity", "category", "test", "type", "hooked"))
		return false
	})
	return nil
}

func TestModulesExtendAnswersThroughHooks(t *testing.T) {
	s := servertest.Start(t)
	if err := s.XMPP.Register(itemsModule{}); err != nil {
		t.Fatal(err)
	}
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "r")
	r := a.IQ("<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	it := r.Child(disco.NSItems, "query").Child(disco.NSItems, "item")
	if it == nil || it.Get("jid") != "rooms.localhost" {
		t.Fatalf("hooked item missing: %s", r)
	}
	r = a.IQ("<iq type='get' id='i2'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	var cats []string
	for _, id := range r.Child(disco.NSInfo, "query").Elements() {
		if id.Name.Local == "identity" {
			cats = append(cats, id.Get("category")+"/"+id.Get("type"))
		}
	}
	// Real modules (PEP) add identities of their own.
	if len(cats) < 2 || cats[0] != "account/registered" || !slices.Contains(cats, "test/hooked") {
		t.Fatalf("account identities %v, want account/registered and test/hooked", cats)
	}
}

func TestAccountInfo(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")

	for name, c := range map[string]struct {
		cl *servertest.Client
		to string
	}{
		"no to":         {a, ""},
		"own bare JID":  {a, "alice@localhost"},
		"another local": {b, "alice@localhost"},
	} {
		to := ""
		if c.to != "" {
			to = " to='" + c.to + "'"
		}
		r := c.cl.IQ("<iq type='get' id='a1'" + to + "><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
		if r.Get("type") != "result" {
			t.Fatalf("%s: %s", name, r)
		}
		id := r.Child(disco.NSInfo, "query").Child(disco.NSInfo, "identity")
		if id == nil || id.Get("category") != "account" || id.Get("type") != "registered" {
			t.Errorf("%s: want identity account/registered, got %s", name, r)
		}
		if name == "another local" && r.Get("from") != c.to {
			t.Errorf("%s: answered from %q: %s", name, r.Get("from"), r)
		}
	}

	// Raw, so that no client library rewrites the addresses.
	raw := servertest.DialRaw(t, s.Addr)
	full := raw.Login("alice", "pa", "raw", "")
	raw.Write("<iq type='get' id='rw1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	out := raw.ReadUntil("</iq>")
	if !strings.Contains(out, `from="alice@localhost"`) || !strings.Contains(out, `to="`+full+`"`) || !strings.Contains(out, `category="account"`) {
		t.Errorf("raw query to own bare JID: %s", out)
	}

	r := b.IQ("<iq type='get' id='a2' to='nobody@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if servertest.ErrorCondition(r) != "service-unavailable" {
		t.Errorf("missing account: %s, want service-unavailable", r)
	}
	r = a.IQ("<iq type='get' id='a3'><query xmlns='http://jabber.org/protocol/disco#info' node='nope'/></iq>")
	if servertest.ErrorCondition(r) != "item-not-found" {
		t.Errorf("unknown node: %s, want item-not-found", r)
	}
	r = a.IQ("<iq type='get' id='a4' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	if r.Get("type") != "result" || r.Child(disco.NSItems, "query") == nil {
		t.Errorf("account items: %s", r)
	}
}

var verRe = regexp.MustCompile(`<c xmlns="http://jabber.org/protocol/caps"[^>]*>`)
var attrRe = regexp.MustCompile(`(\w+)="([^"]*)"`)

// loginFeatures logs in by hand and returns the stream features offered
// after authentication.
func loginFeatures(t *testing.T, s *servertest.Server) string {
	r := servertest.DialRaw(t, s.Addr)
	r.StartTLS("")
	r.Write(servertest.Header(""))
	r.ReadUntil("</stream:features>")
	r.Write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00pa")) + "</auth>")
	r.ReadUntil("<success")
	r.Write(servertest.Header(""))
	return r.ReadUntil("</stream:features>")
}

func TestCapsStreamFeatureMatchesDiscoInfo(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	feats := loginFeatures(t, s)
	c := verRe.FindString(feats)
	if c == "" {
		t.Fatalf("no caps in stream features: %s", feats)
	}
	attrs := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(c, -1) {
		attrs[m[1]] = m[2]
	}
	if attrs["hash"] != "sha-1" || attrs["node"] != disco.CapsNode || attrs["ver"] == "" {
		t.Fatalf("caps element %s", c)
	}

	a := s.Dial(t, "alice", "pa", "r")
	info, err := mdisco.GetInfo(ctx(t), "", jid.MustParse(servertest.Domain), a.Session)
	if err != nil {
		t.Fatal(err)
	}
	// mellium's own XEP-0115 implementation is the independent check.
	if want := info.Hash(sha1.New()); attrs["ver"] != want {
		t.Fatalf("ver %s, but disco#info hashes to %s", attrs["ver"], want)
	}

	// XEP-0115 6.2: the node#ver query answers the same, echoing the node.
	node := disco.CapsNode + "#" + attrs["ver"]
	byNode, err := mdisco.GetInfo(ctx(t), node, jid.MustParse(servertest.Domain), a.Session)
	if err != nil {
		t.Fatal(err)
	}
	if byNode.Node != node || byNode.Hash(sha1.New()) != attrs["ver"] {
		t.Fatalf("node query: node %q hash %s", byNode.Node, byNode.Hash(sha1.New()))
	}
	r := a.IQ("<iq type='get' id='n1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='" + disco.CapsNode + "#stale'/></iq>")
	if servertest.ErrorCondition(r) != "item-not-found" {
		t.Fatalf("stale caps node: %s, want item-not-found", r)
	}
}

// The two worked examples of XEP-0115 section 5.
func TestCapsVerSpecExamples(t *testing.T) {
	simple := elem.New(disco.NSInfo, "query").Add(
		elem.New(disco.NSInfo, "identity", "category", "client", "type", "pc", "name", "Exodus 0.9.1"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/caps"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/disco#info"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/disco#items"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/muc"),
	)
	if got := disco.CapsVer(simple); got != "QgayPKawpkPSDYmwT/WM94uAlu0=" {
		t.Errorf("simple example: %s", got)
	}

	ident := func(lang, name string) *elem.Element {
		e := elem.New(disco.NSInfo, "identity", "category", "client", "type", "pc", "name", name)
		e.Attr = append(e.Attr, xmlLang(lang))
		return e
	}
	field := func(v, typ string, vals ...string) *elem.Element {
		f := elem.New(disco.NSData, "field", "var", v, "type", typ)
		for _, x := range vals {
			f.Add(elem.New(disco.NSData, "value").AddText(x))
		}
		return f
	}
	complexQ := elem.New(disco.NSInfo, "query").Add(
		ident("en", "Psi 0.11"),
		ident("el", "Ψ 0.11"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/caps"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/disco#info"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/disco#items"),
		elem.New(disco.NSInfo, "feature", "var", "http://jabber.org/protocol/muc"),
		elem.New(disco.NSData, "x", "type", "result").Add(
			field("FORM_TYPE", "hidden", "urn:xmpp:dataforms:softwareinfo"),
			field("ip_version", "text-multi", "ipv4", "ipv6"),
			field("os", "", "Mac"),
			field("os_version", "", "10.5.1"),
			field("software", "", "Psi"),
			field("software_version", "", "0.11"),
		),
	)
	if got := disco.CapsVer(complexQ); got != "q07IKJEyjvHSyhy//CH0CxmKi8w=" {
		t.Errorf("complex example: %s", got)
	}
}

func xmlLang(v string) xml.Attr {
	return xml.Attr{Name: xml.Name{Space: elem.NSXML, Local: "lang"}, Value: v}
}
