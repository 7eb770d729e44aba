package pep_test

import (
	"strings"
	"testing"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/xmpp/disco"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

const (
	nsPubsub  = "http://jabber.org/protocol/pubsub"
	nsEvent   = nsPubsub + "#event"
	nsDisco   = "http://jabber.org/protocol/disco#info"
	omemoDev  = "urn:xmpp:omemo:2:devices"
	omemoBund = "urn:xmpp:omemo:2:bundles"
	legacyDev = "eu.siacs.conversations.axolotl.devicelist"
)

// announce sends available presence with entity capabilities for the
// given features and, when the server does not know this ver yet, answers
// its disco#info query the way a client does.
func announce(t *testing.T, c *servertest.Client, queried bool, feats ...string) {
	t.Helper()
	q := elem.New(nsDisco, "query").Add(elem.New(nsDisco, "identity", "category", "client", "type", "pc", "name", "test"))
	for _, f := range append([]string{nsDisco}, feats...) {
		q.Add(elem.New(nsDisco, "feature", "var", f))
	}
	ver := disco.CapsVer(q)
	c.SendRaw("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org/test' ver='" + ver + "'/></presence>")
	if !queried {
		return
	}
	iq := c.Expect(func(e *elem.Element) bool {
		return e.Name.Local == "iq" && e.Get("type") == "get" && e.Child(nsDisco, "query") != nil
	})
	if want := "https://example.org/test#" + ver; iq.Child(nsDisco, "query").Get("node") != want {
		t.Fatalf("caps query for node %q, want %q", iq.Child(nsDisco, "query").Get("node"), want)
	}
	q.Set("node", "https://example.org/test#"+ver)
	reply := elem.New(elem.NSClient, "iq", "type", "result", "id", iq.Get("id"), "to", iq.Get("from")).Add(q)
	c.Send(reply)
}

func pres(typ, from string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		return e.Name.Local == "presence" && e.Get("type") == typ && e.Get("from") == from
	}
}

// subscribe makes to a presence subscriber of from... that is, 'from'
// subscribes to 'to' and 'to' approves; both must be available.
func subscribe(t *testing.T, from, to *servertest.Client) {
	t.Helper()
	from.SendRaw("<presence to='" + to.JID.Bare().String() + "' type='subscribe'/>")
	to.Expect(pres("subscribe", from.JID.Bare().String()))
	to.SendRaw("<presence to='" + from.JID.Bare().String() + "' type='subscribed'/>")
	from.Expect(pres("subscribed", to.JID.Bare().String()))
}

// event matches a PEP notification of node from owner. mellium blanks a
// 'from' that is the client's own bare JID, so the owner's own resources
// see "".
func event(owner, node string) func(*elem.Element) bool {
	return func(e *elem.Element) bool {
		if e.Name.Local != "message" || (e.Get("from") != owner && e.Get("from") != "") {
			return false
		}
		ev := e.Child(nsEvent, "event")
		return ev != nil && ev.FirstElement() != nil && ev.FirstElement().Get("node") == node
	}
}

func publishOpts(fields ...string) string {
	if len(fields) == 0 {
		return ""
	}
	s := "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
	for i := 0; i+1 < len(fields); i += 2 {
		s += "<field var='" + fields[i] + "'><value>" + fields[i+1] + "</value></field>"
	}
	return s + "</x></publish-options>"
}

func publish(c *servertest.Client, id, node, itemID, payload string, opts ...string) *elem.Element {
	idAttr := ""
	if itemID != "" {
		idAttr = " id='" + itemID + "'"
	}
	return c.IQ("<iq type='set' id='" + id + "'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + node + "'><item" + idAttr + ">" +
		payload + "</item></publish>" + publishOpts(opts...) + "</pubsub></iq>")
}

func items(c *servertest.Client, id, owner, node string, extra string) *elem.Element {
	to := ""
	if owner != "" {
		to = " to='" + owner + "'"
	}
	return c.IQ("<iq type='get' id='" + id + "'" + to + "><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + node + "'" + extra + "/></pubsub></iq>")
}

func itemsOf(r *elem.Element) []*elem.Element {
	ps := r.Child(nsPubsub, "pubsub")
	if ps == nil || ps.Child(nsPubsub, "items") == nil {
		return nil
	}
	return ps.Child(nsPubsub, "items").Elements()
}

func appCondition(r *elem.Element, name string) bool {
	er := r.Child("", "error")
	return er != nil && er.Child(nsPubsub+"#errors", name) != nil
}

const devices = "<devices xmlns='urn:xmpp:omemo:2'><device id='12345'/></devices>"
const bundle = "<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>AAAA</spk><ik>BBBB</ik><prekeys><pk id='1'>CCCC</pk></prekeys></bundle>"

func TestOMEMOBundleOpenToNonContacts(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "eve", "pe")
	a := s.Dial(t, "alice", "pa", "phone")
	e := s.Dial(t, "eve", "pe", "laptop")

	// A device list that does not exist yet: item-not-found with code 404.
	r := items(e, "i0", "alice@localhost", omemoDev, "")
	if servertest.ErrorCondition(r) != "item-not-found" || r.Child("", "error").Get("code") != "404" {
		t.Fatalf("missing node: %s, want item-not-found code=404", r)
	}

	// OMEMO 2 as Conversations/Dino publish it.
	r = publish(a, "p1", omemoDev, "current", devices, "pubsub#access_model", "open", "pubsub#max_items", "max")
	if r.Get("type") != "result" {
		t.Fatalf("publish device list: %s", r)
	}
	r = publish(a, "p2", omemoBund, "12345", bundle, "pubsub#access_model", "open", "pubsub#max_items", "max")
	if r.Get("type") != "result" {
		t.Fatalf("publish bundle: %s", r)
	}
	// A later publish with the same options keeps working (max matched).
	if r = publish(a, "p3", omemoDev, "current", devices, "pubsub#access_model", "open", "pubsub#max_items", "max"); r.Get("type") != "result" {
		t.Fatalf("republish device list: %s", r)
	}

	// Eve is not a contact and reads both.
	r = items(e, "i1", "alice@localhost", omemoDev, "")
	if its := itemsOf(r); len(its) != 1 || its[0].Get("id") != "current" || !strings.Contains(r.String(), `<device id="12345"`) {
		t.Fatalf("device list read by a non-contact: %s", r)
	}
	r = e.IQ("<iq type='get' id='i2' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='" + omemoBund + "'><item id='12345'/></items></pubsub></iq>")
	if its := itemsOf(r); len(its) != 1 || !strings.Contains(r.String(), "<ik>BBBB</ik>") {
		t.Fatalf("bundle read by a non-contact: %s", r)
	}

	// The access model is kept: a publish asking for another one is refused
	// with precondition-not-met, and the node stays open.
	r = publish(a, "p4", omemoDev, "current", devices, "pubsub#access_model", "presence")
	if servertest.ErrorCondition(r) != "conflict" || !appCondition(r, "precondition-not-met") {
		t.Fatalf("publish with conflicting options: %s, want conflict/precondition-not-met", r)
	}
	if r = publish(a, "p5", omemoDev, "current", devices); r.Get("type") != "result" {
		t.Fatalf("publish without options: %s", r)
	}
	if its := itemsOf(items(e, "i3", "alice@localhost", omemoDev, "")); len(its) != 1 {
		t.Fatal("the device list is no longer open after a publish without options")
	}

	// Eve cannot publish or configure on Alice's service.
	r = e.IQ("<iq type='set' id='x1' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='" + omemoDev + "'><item id='current'>" + devices + "</item></publish></pubsub></iq>")
	if servertest.ErrorCondition(r) != "forbidden" {
		t.Fatalf("publish to another account: %s, want forbidden", r)
	}
}

func TestLegacyOMEMOReconfigureFlow(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	a := s.Dial(t, "alice", "pa", "phone")
	// The node exists with the default (presence) model, as when an older
	// client created it.
	legacy := "<list xmlns='eu.siacs.conversations.axolotl'><device id='1'/></list>"
	if r := publish(a, "p1", legacyDev, "current", legacy); r.Get("type") != "result" {
		t.Fatalf("publish: %s", r)
	}
	r := publish(a, "p2", legacyDev, "current", legacy, "pubsub#access_model", "open")
	if !appCondition(r, "precondition-not-met") {
		t.Fatalf("open publish on a presence node: %s, want precondition-not-met", r)
	}
	// Conversations then reconfigures the node and publishes again.
	r = a.IQ("<iq type='get' id='c1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='" + legacyDev + "'/></pubsub></iq>")
	if !strings.Contains(r.String(), `var="pubsub#access_model"`) || !strings.Contains(r.String(), "<value>presence</value>") {
		t.Fatalf("configure form: %s", r)
	}
	r = a.IQ("<iq type='set' id='c2'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='" + legacyDev + "'><x xmlns='jabber:x:data' type='submit'>" +
		"<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
		"<field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("configure: %s", r)
	}
	if r = publish(a, "p3", legacyDev, "current", legacy, "pubsub#access_model", "open"); r.Get("type") != "result" {
		t.Fatalf("publish after reconfiguring: %s", r)
	}
	// Configuring a node that does not exist: 404 as well.
	r = a.IQ("<iq type='get' id='c3'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='nope'/></pubsub></iq>")
	if servertest.ErrorCondition(r) != "item-not-found" || r.Child("", "error").Get("code") != "404" {
		t.Fatalf("configure missing node: %s", r)
	}
}

func TestPresenceAndWhitelistAccess(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "pa")
	s.AddUser(t, "bob", "pb")
	s.AddUser(t, "eve", "pe")
	a := s.Dial(t, "alice", "pa", "r")
	b := s.Dial(t, "bob", "pb", "r")
	e := s.Dial(t, "eve", "pe", "r")
	a.SendRaw("<presence/>")
	b.SendRaw("<presence/>")
	subscribe(t, b, a)

	const tune = "<tune xmlns='http://jabber.org/protocol/tune'><artist>Yes</artist></tune>"
	if r := publish(a, "p1", "http://jabber.org/protocol/tune", "", tune); r.Get("type") != "result" {
		t.Fatalf("publish: %s", r)
	}
	r := items(e, "i1", "alice@localhost", "http://jabber.org/protocol/tune", "")
	if servertest.ErrorCondition(r) != "not-authorized" || !appCondition(r, "presence-subscription-required") {
		t.Fatalf("non-contact reads a presence node: %s, want not-authorized", r)
	}
	if its := itemsOf(items(b, "i2", "alice@localhost", "http://jabber.org/protocol/tune", "")); len(its) != 1 {
		t.Fatal("subscribed contact cannot read a presence node")
	}
	if its := itemsOf(items(a, "i3", "", "http://jabber.org/protocol/tune", "")); len(its) != 1 {
		t.Fatal("the owner cannot read her own node")
	}

	// Whitelist: the owner only, until she lists someone.
	if r := publish(a, "p2", "urn:example:secret", "x", "<s xmlns='urn:example'/>", "pubsub#access_model", "whitelist"); r.Get("type") != "result" {
		t.Fatalf("publish whitelist: %s", r)
	}
	r = items(b, "i4", "alice@localhost", "urn:example:secret", "")
	if servertest.ErrorCondition(r) != "not-allowed" || !appCondition(r, "closed-node") {
		t.Fatalf("contact reads a whitelist node: %s, want not-allowed/closed-node", r)
	}
	r = a.IQ("<iq type='set' id='af'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='urn:example:secret'><affiliation jid='eve@localhost' affiliation='member'/></affiliations></pubsub></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("set affiliation: %s", r)
	}
	if its := itemsOf(items(e, "i5", "alice@localhost", "urn:example:secret", "")); len(its) != 1 {
		t.Fatal("whitelisted member cannot read")
	}
	if servertest.ErrorCondition(items(b, "i6", "alice@localhost", "urn:example:secret", "")) != "not-allowed" {
		t.Fatal("an unlisted contact reads a whitelist node")
	}
	// Disco lists only what the requester may read.
	r = e.IQ("<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
	if got := r.String(); !strings.Contains(got, "urn:example:secret") || strings.Contains(got, "protocol/tune") {
		t.Fatalf("disco items for eve: %s", got)
	}
}

func TestNotificationsFollowCapsAndSubscription(t *testing.T) {
	s := servertest.Start(t)
	for _, u := range []string{"alice", "bob", "carol", "eve"} {
		s.AddUser(t, u, "p")
	}
	a := s.Dial(t, "alice", "p", "r")
	b := s.Dial(t, "bob", "p", "r")
	c := s.Dial(t, "carol", "p", "r")
	e := s.Dial(t, "eve", "p", "r")
	a.SendRaw("<presence/>")
	announce(t, b, true, legacyDev+"+notify", omemoDev+"+notify")
	announce(t, c, true, "http://jabber.org/protocol/tune+notify") // no interest in OMEMO
	announce(t, e, true, legacyDev+"+notify", omemoDev+"+notify", "urn:example:other")
	subscribe(t, b, a)
	subscribe(t, c, a)
	// eve is no contact; alice's other resource wants device lists too and
	// shares bob's caps, so the server asks nobody again.
	a2 := s.Dial(t, "alice", "p", "tablet")
	announce(t, a2, false, legacyDev+"+notify", omemoDev+"+notify")

	if r := publish(a, "p1", omemoDev, "current", devices, "pubsub#access_model", "open", "pubsub#max_items", "max"); r.Get("type") != "result" {
		t.Fatalf("publish: %s", r)
	}
	got := b.Expect(event("alice@localhost", omemoDev))
	if got.Get("type") != "headline" || !strings.Contains(got.String(), `<device id="12345"`) {
		t.Fatalf("notification: %s", got)
	}
	a2.Expect(event("alice@localhost", omemoDev))
	// Carol did not ask (no +notify), Eve is not subscribed, and the
	// publishing resource has no caps: none of them gets it.
	for _, x := range []*servertest.Client{c, e, a} {
		x.ExpectNone(500*time.Millisecond, event("alice@localhost", omemoDev))
	}
}

func TestLastItemOnPresence(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "p")
	s.AddUser(t, "bob", "p")
	a := s.Dial(t, "alice", "p", "r")
	b := s.Dial(t, "bob", "p", "r")
	a.SendRaw("<presence/>")
	b.SendRaw("<presence/>")
	subscribe(t, b, a)
	const nick = "<nick xmlns='http://jabber.org/protocol/nick'>Ally</nick>"
	if r := publish(a, "p1", "http://jabber.org/protocol/nick", "", nick); r.Get("type") != "result" {
		t.Fatalf("publish nick: %s", r)
	}
	const nick2 = "<nick xmlns='http://jabber.org/protocol/nick'>Alice L.</nick>"
	if r := publish(a, "p2", "http://jabber.org/protocol/nick", "", nick2); r.Get("type") != "result" {
		t.Fatalf("publish nick: %s", r)
	}
	// Default max_items is 1: only the newest nickname is kept.
	if its := itemsOf(items(b, "i1", "alice@localhost", "http://jabber.org/protocol/nick", "")); len(its) != 1 || !strings.Contains(its[0].String(), "Alice L.") {
		t.Fatalf("items after two publishes: %v", its)
	}

	// Bob's new resource comes online wanting nicknames: it gets Alice's
	// current one (and his own account's, which he has none of).
	b2 := s.Dial(t, "bob", "p", "phone")
	announce(t, b2, true, "http://jabber.org/protocol/nick+notify")
	got := b2.Expect(event("alice@localhost", "http://jabber.org/protocol/nick"))
	if !strings.Contains(got.String(), "Alice L.") || got.Child("urn:xmpp:delay", "delay") == nil {
		t.Fatalf("last item: %s", got)
	}
	// Alice's own new resource gets her last item too.
	a2 := s.Dial(t, "alice", "p", "phone")
	announce(t, a2, false, "http://jabber.org/protocol/nick+notify")
	a2.Expect(event("alice@localhost", "http://jabber.org/protocol/nick"))
}

func TestMaxItemsRetractPurgeDelete(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "p")
	a := s.Dial(t, "alice", "p", "r")
	announce(t, a, true, "urn:example:log+notify")
	for i, id := range []string{"a", "b", "c", "d"} {
		if r := publish(a, servertest.Sprintf("p%d", i), "urn:example:log", id, "<e xmlns='urn:example'>"+id+"</e>", "pubsub#max_items", "3"); r.Get("type") != "result" {
			t.Fatalf("publish %s: %s", id, r)
		}
		a.Expect(event("alice@localhost", "urn:example:log"))
	}
	its := itemsOf(items(a, "i1", "", "urn:example:log", ""))
	if len(its) != 3 || its[0].Get("id") != "d" || its[2].Get("id") != "b" {
		t.Fatalf("max_items 3 after 4 publishes: %v", its)
	}
	if its = itemsOf(items(a, "i2", "", "urn:example:log", " max_items='1'")); len(its) != 1 || its[0].Get("id") != "d" {
		t.Fatalf("max_items=1 query: %v", its)
	}
	r := a.IQ("<iq type='set' id='r1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:example:log'><item id='c'/></retract></pubsub></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("retract: %s", r)
	}
	ev := a.Expect(event("alice@localhost", "urn:example:log"))
	if ev.Child(nsEvent, "event").FirstElement().Child(nsEvent, "retract") == nil {
		t.Fatalf("retract notification: %s", ev)
	}
	r = a.IQ("<iq type='set' id='r2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='urn:example:log'><item id='zzz'/></retract></pubsub></iq>")
	if servertest.ErrorCondition(r) != "item-not-found" {
		t.Fatalf("retract missing item: %s", r)
	}
	r = a.IQ("<iq type='set' id='u1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge node='urn:example:log'/></pubsub></iq>")
	if r.Get("type") != "result" || len(itemsOf(items(a, "i3", "", "urn:example:log", ""))) != 0 {
		t.Fatalf("purge: %s", r)
	}
	r = a.IQ("<iq type='set' id='x1'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:example:log'/></pubsub></iq>")
	if r.Get("type") != "result" {
		t.Fatalf("delete: %s", r)
	}
	if servertest.ErrorCondition(items(a, "i4", "", "urn:example:log", "")) != "item-not-found" {
		t.Fatal("the node survived its deletion")
	}
}

func TestDiscoAdvertisesPEP(t *testing.T) {
	s := servertest.Start(t)
	s.AddUser(t, "alice", "p")
	a := s.Dial(t, "alice", "p", "r")
	host := a.IQ("<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").String()
	for _, f := range []string{"http://jabber.org/protocol/pubsub#publish-options", "urn:xmpp:pep-vcard-conversion:0", "urn:xmpp:bookmarks:1#compat"} {
		if !strings.Contains(host, `"`+f+`"`) {
			t.Errorf("server disco#info lacks %s", f)
		}
	}
	acct := a.IQ("<iq type='get' id='d2' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").String()
	for _, f := range []string{`category="pubsub" type="pep"`, `"http://jabber.org/protocol/pubsub#publish-options"`, `"http://jabber.org/protocol/pubsub#access-open"`, `"urn:xmpp:bookmarks:1#compat"`} {
		if !strings.Contains(acct, f) {
			t.Errorf("account disco#info lacks %s", f)
		}
	}
}

func TestNodesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	inDir := func(c *config.Config) { c.DataDir = dir }
	s := servertest.Start(t, inDir)
	s.AddUser(t, "alice", "p")
	s.AddUser(t, "eve", "p")
	a := s.Dial(t, "alice", "p", "r")
	if r := publish(a, "p1", omemoDev, "current", devices, "pubsub#access_model", "open", "pubsub#max_items", "max"); r.Get("type") != "result" {
		t.Fatalf("publish: %s", r)
	}
	s.Stop()

	s = servertest.Start(t, inDir)
	e := s.Dial(t, "eve", "p", "r")
	if its := itemsOf(items(e, "i1", "alice@localhost", omemoDev, "")); len(its) != 1 || its[0].Get("id") != "current" {
		t.Fatal("the device list or its open access model was lost in a restart")
	}
	a = s.Dial(t, "alice", "p", "r")
	if r := publish(a, "p2", omemoDev, "current", devices, "pubsub#access_model", "open", "pubsub#max_items", "max"); r.Get("type") != "result" {
		t.Fatalf("publish after restart: %s", r)
	}
}
