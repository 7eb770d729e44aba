package mam_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/server/servertest"
	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/store/boltstore"
	"github.com/merveilles/hearth/server/tlscert"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
	"github.com/merveilles/hearth/server/xmpp/mam"
	"github.com/merveilles/hearth/server/xmpp/message"
	"github.com/merveilles/hearth/server/xmpp/presence"
	"github.com/merveilles/hearth/server/xmpp/roster"
	hsasl "github.com/merveilles/hearth/server/xmpp/sasl"
)

func e2eeOff(c *config.Config) { c.E2EE.Policy = "off" }

type fixture struct {
	srv               *servertest.Server
	alice, bob, carol *servertest.Client
}

func start(t *testing.T) *fixture {
	t.Helper()
	s := servertest.Start(t, e2eeOff)
	for _, u := range []string{"alice", "bob", "carol"} {
		s.AddUser(t, u, "pw-"+u)
	}
	f := &fixture{srv: s}
	f.alice = online(t, s.Dial(t, "alice", "pw-alice", "phone"))
	f.bob = online(t, s.Dial(t, "bob", "pw-bob", "laptop"))
	f.carol = online(t, s.Dial(t, "carol", "pw-carol", "desk"))
	return f
}

// online sends initial presence so the account receives messages sent to
// its bare JID.
func online(t *testing.T, c *servertest.Client) *servertest.Client {
	t.Helper()
	c.SendRaw("<presence/>")
	c.Expect(func(e *elem.Element) bool { return e.Name.Local == "presence" && e.Get("from") == c.JID.String() })
	return c
}

var msgSeq atomic.Int64

// chat sends a chat message and waits until the recipient has it, so that
// archive order is send order. It returns the delivered message.
func chat(t *testing.T, from, to *servertest.Client, body string) *elem.Element {
	t.Helper()
	id := "m" + strconv.FormatInt(msgSeq.Add(1), 10)
	from.SendRaw(fmt.Sprintf("<message type='chat' id='%s' to='%s'><body>%s</body></message>", id, to.JID.Bare(), body))
	return to.Expect(func(e *elem.Element) bool { return e.Name.Local == "message" && e.Get("id") == id })
}

type result struct {
	id, stamp string
	msg       *elem.Element
}

type fin struct {
	complete    bool
	first, last string
	count       int
}

var qSeq atomic.Int64

// query runs a MAM query (form fields and RSM set as raw XML) and returns
// the results and the fin element, failing on an IQ error.
func query(t *testing.T, c *servertest.Client, inner string) ([]result, fin) {
	t.Helper()
	res, f, errEl := queryErr(t, c, inner)
	if errEl != nil {
		t.Fatalf("query %s: error %s", inner, errEl)
	}
	return res, f
}

func queryErr(t *testing.T, c *servertest.Client, inner string) ([]result, fin, *elem.Element) {
	t.Helper()
	n := qSeq.Add(1)
	qid := "q" + strconv.FormatInt(n, 10)
	iq := c.IQ(fmt.Sprintf("<iq type='set' id='iq%d'><query xmlns='urn:xmpp:mam:2' queryid='%s'>%s</query></iq>", n, qid, inner))
	if iq.Get("type") == "error" {
		return nil, fin{}, iq
	}
	var out []result
	for {
		// Results precede the IQ result on the stream: they are buffered.
		m := c.ExpectWithin(0, func(e *elem.Element) bool {
			r := e.Child(mam.NS, "result")
			return e.Name.Local == "message" && r != nil && r.Get("queryid") == qid
		})
		if m == nil {
			break
		}
		// mellium blanks a 'from' equal to the account's bare JID.
		if f := m.Get("from"); f != "" && f != c.JID.Bare().String() {
			t.Errorf("result from %q, want the account's bare JID: %s", m.Get("from"), m)
		}
		r := m.Child(mam.NS, "result")
		fw := r.Child(mam.NSForward, "forwarded")
		if fw == nil || fw.Child(mam.NSDelay, "delay") == nil || fw.Child("", "message") == nil {
			t.Fatalf("malformed result %s", m)
		}
		out = append(out, result{id: r.Get("id"), stamp: fw.Child(mam.NSDelay, "delay").Get("stamp"), msg: fw.Child("", "message")})
	}
	fe := iq.Child(mam.NS, "fin")
	if fe == nil {
		t.Fatalf("no fin in %s", iq)
	}
	f := fin{complete: fe.Get("complete") == "true", count: -1}
	if set := fe.Child(mam.NSRSM, "set"); set != nil {
		f.first = set.ChildText(mam.NSRSM, "first")
		f.last = set.ChildText(mam.NSRSM, "last")
		if c := set.Child(mam.NSRSM, "count"); c != nil {
			f.count, _ = strconv.Atoi(c.Text())
		}
	}
	return out, f, nil
}

func bodies(rs []result) string {
	var b []string
	for _, r := range rs {
		b = append(b, r.msg.ChildText("", "body"))
	}
	return strings.Join(b, ",")
}

func form(fields ...string) string {
	var b strings.Builder
	b.WriteString("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>")
	for i := 0; i+1 < len(fields); i += 2 {
		fmt.Fprintf(&b, "<field var='%s'><value>%s</value></field>", fields[i], fields[i+1])
	}
	b.WriteString("</x>")
	return b.String()
}

func rsm(inner string) string {
	return "<set xmlns='http://jabber.org/protocol/rsm'>" + inner + "</set>"
}

func stanzaIDs(e *elem.Element) []*elem.Element {
	var out []*elem.Element
	for _, c := range e.Elements() {
		if c.Name.Space == mam.NSSID && c.Name.Local == "stanza-id" {
			out = append(out, c)
		}
	}
	return out
}

func TestArchiveBothSidesWithStanzaID(t *testing.T) {
	f := start(t)
	got := chat(t, f.alice, f.bob, "hello bob")
	ids := stanzaIDs(got)
	if len(ids) != 1 || ids[0].Get("by") != "bob@localhost" || ids[0].Get("id") == "" {
		t.Fatalf("delivered message should carry one stanza-id by bob@localhost: %s", got)
	}
	rs, fn := query(t, f.bob, "")
	if len(rs) != 1 || rs[0].id != ids[0].Get("id") || rs[0].msg.ChildText("", "body") != "hello bob" {
		t.Fatalf("bob's archive: %+v", rs)
	}
	if rs[0].msg.Get("from") != f.alice.JID.String() || !fn.complete || fn.count != 1 || fn.first != rs[0].id || fn.last != rs[0].id {
		t.Fatalf("bob's archive: %s, fin %+v", rs[0].msg, fn)
	}
	rs, _ = query(t, f.alice, "")
	if len(rs) != 1 || rs[0].msg.ChildText("", "body") != "hello bob" || rs[0].msg.Get("to") != "bob@localhost" {
		t.Fatalf("alice's archive: %+v", rs)
	}
	// Carol saw nothing of it.
	if rs, _ := query(t, f.carol, ""); len(rs) != 0 {
		t.Fatalf("carol's archive should be empty: %+v", rs)
	}
	// Chat states without a body are not archived; an OMEMO payload is.
	f.alice.SendRaw("<message type='chat' to='bob@localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
	f.alice.SendRaw("<message type='chat' id='enc' to='bob@localhost'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AA==</iv></header><payload>AA==</payload></encrypted></message>")
	f.bob.Expect(func(e *elem.Element) bool { return e.Get("id") == "enc" })
	rs, _ = query(t, f.bob, "")
	if len(rs) != 2 || rs[1].msg.Child("eu.siacs.conversations.axolotl", "encrypted") == nil {
		t.Fatalf("want the OMEMO message archived after the first, not the chat state: %+v", rs)
	}
}

// A sent carbon carries the sender's stanza-id, the recipient's copy the
// recipient's, and both archives share the ID.
func TestSentCarbonHasSendersStanzaID(t *testing.T) {
	f := start(t)
	tablet := online(t, f.srv.Dial(t, "alice", "pw-alice", "tablet"))
	if r := tablet.IQ("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>"); r.Get("type") != "result" {
		t.Fatalf("enable carbons: %s", r)
	}
	got := chat(t, f.alice, f.bob, "copied")
	sent := tablet.Expect(func(e *elem.Element) bool { return e.Child("urn:xmpp:carbons:2", "sent") != nil })
	fwd := sent.Child("urn:xmpp:carbons:2", "sent").Child(mam.NSForward, "forwarded").Child("", "message")
	ids := stanzaIDs(fwd)
	if len(ids) != 1 || ids[0].Get("by") != "alice@localhost" {
		t.Fatalf("sent carbon should carry alice's stanza-id: %s", sent)
	}
	bobIDs := stanzaIDs(got)
	if len(bobIDs) != 1 || bobIDs[0].Get("by") != "bob@localhost" || bobIDs[0].Get("id") != ids[0].Get("id") {
		t.Fatalf("bob's copy should carry only bob's stanza-id, with the same id: %s", got)
	}
	rs, _ := query(t, f.alice, "")
	if len(rs) != 1 || rs[0].id != ids[0].Get("id") {
		t.Fatalf("alice's archive: %+v", rs)
	}
}

func TestForgedStanzaIDStripped(t *testing.T) {
	f := start(t)
	f.alice.SendRaw("<message type='chat' id='forged' to='bob@localhost'><body>hi</body>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='fake1'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='fake2'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='0000000000000001'/>" +
		"<stanza-id xmlns='urn:xmpp:sid:0' by='room@elsewhere.example' id='keep'/></message>")
	got := f.bob.Expect(func(e *elem.Element) bool { return e.Get("id") == "forged" })
	var ours, theirs int
	for _, s := range stanzaIDs(got) {
		switch {
		case s.Get("id") == "fake1" || s.Get("id") == "fake2" || s.Get("id") == "0000000000000001":
			t.Fatalf("forged stanza-id delivered: %s", got)
		case s.Get("by") == "bob@localhost":
			ours++
		case s.Get("id") == "keep":
			theirs++
		}
	}
	if ours != 1 || theirs != 1 {
		t.Fatalf("want our stanza-id and the foreign one: %s", got)
	}
	rs, _ := query(t, f.bob, "")
	if len(rs) != 1 || rs[0].id == "0000000000000001" {
		t.Fatalf("archive: %+v", rs)
	}
	if ars, _ := query(t, f.alice, ""); len(ars) != 1 || ars[0].id != rs[0].id {
		t.Fatalf("alice's archive should hold the message under the server's id: %+v", ars)
	}
	for _, s := range stanzaIDs(rs[0].msg) {
		if s.Get("id") == "fake1" {
			t.Fatalf("forged stanza-id archived: %s", rs[0].msg)
		}
	}
}

func TestPaging(t *testing.T) {
	f := start(t)
	for i := 1; i <= 25; i++ {
		chat(t, f.alice, f.bob, strconv.Itoa(i))
	}
	want := func(from, to int) string {
		var b []string
		for i := from; i <= to; i++ {
			b = append(b, strconv.Itoa(i))
		}
		return strings.Join(b, ",")
	}
	// Forwards.
	rs, fn := query(t, f.bob, rsm("<max>10</max>"))
	if bodies(rs) != want(1, 10) || fn.complete || fn.count != 25 || fn.last != rs[9].id {
		t.Fatalf("page 1: %s %+v", bodies(rs), fn)
	}
	rs, fn = query(t, f.bob, rsm("<max>10</max><after>"+fn.last+"</after>"))
	if bodies(rs) != want(11, 20) || fn.complete {
		t.Fatalf("page 2: %s %+v", bodies(rs), fn)
	}
	rs, fn = query(t, f.bob, rsm("<max>10</max><after>"+fn.last+"</after>"))
	if bodies(rs) != want(21, 25) || !fn.complete {
		t.Fatalf("page 3: %s %+v", bodies(rs), fn)
	}
	// Backwards from the end.
	rs, fn = query(t, f.bob, rsm("<max>10</max><before/>"))
	if bodies(rs) != want(16, 25) || fn.complete || fn.first != rs[0].id {
		t.Fatalf("last page: %s %+v", bodies(rs), fn)
	}
	rs, fn = query(t, f.bob, rsm("<max>10</max><before>"+fn.first+"</before>"))
	if bodies(rs) != want(6, 15) || fn.complete {
		t.Fatalf("page before: %s %+v", bodies(rs), fn)
	}
	rs, fn = query(t, f.bob, rsm("<max>10</max><before>"+fn.first+"</before>"))
	if bodies(rs) != want(1, 5) || !fn.complete {
		t.Fatalf("first page backwards: %s %+v", bodies(rs), fn)
	}
	// Flip-page: the last page, newest first.
	rs, fn = query(t, f.bob, rsm("<max>3</max><before/>")+"<flip-page/>")
	if bodies(rs) != "25,24,23" || fn.first != rs[0].id || fn.complete {
		t.Fatalf("flipped: %s %+v", bodies(rs), fn)
	}
	// max=0 asks for the count only.
	rs, fn = query(t, f.bob, rsm("<max>0</max>"))
	if len(rs) != 0 || fn.count != 25 || fn.complete {
		t.Fatalf("count only: %d results, %+v", len(rs), fn)
	}
	// An unknown cursor is item-not-found.
	_, _, errEl := queryErr(t, f.bob, rsm("<after>00000000000000ff</after>"))
	if errEl == nil || servertest.ErrorCondition(errEl) != "item-not-found" {
		t.Fatalf("unknown after: %v", errEl)
	}
}

func TestFilters(t *testing.T) {
	f := start(t)
	var toBob []*elem.Element
	for i := 1; i <= 6; i++ {
		if i%2 == 0 {
			chat(t, f.carol, f.bob, "c"+strconv.Itoa(i))
		} else {
			toBob = append(toBob, chat(t, f.alice, f.bob, "a"+strconv.Itoa(i)))
		}
	}
	all, _ := query(t, f.bob, "")
	if bodies(all) != "a1,c2,a3,c4,a5,c6" {
		t.Fatalf("all: %s", bodies(all))
	}
	if rs, fn := query(t, f.bob, form("with", "alice@localhost")); bodies(rs) != "a1,a3,a5" || fn.count != 3 {
		t.Fatalf("with bare: %s %+v", bodies(rs), fn)
	}
	if rs, _ := query(t, f.bob, form("with", f.carol.JID.String())); bodies(rs) != "c2,c4,c6" {
		t.Fatalf("with full: %s", bodies(rs))
	}
	if rs, _ := query(t, f.bob, form("with", "carol@localhost/other")); len(rs) != 0 {
		t.Fatalf("with another full JID: %s", bodies(rs))
	}
	if rs, _ := query(t, f.bob, form("with", "alice@localhost")+rsm("<max>2</max><before/>")); bodies(rs) != "a3,a5" {
		t.Fatalf("with + last page: %s", bodies(rs))
	}
	// start and end are inclusive times; the stamps have microseconds and
	// the messages were sent one after another, so they differ.
	if rs, fn := query(t, f.bob, form("start", all[1].stamp, "end", all[3].stamp)); bodies(rs) != "c2,a3,c4" || fn.count != 3 {
		t.Fatalf("start/end: %s %+v (stamps %s %s)", bodies(rs), fn, all[1].stamp, all[3].stamp)
	}
	if rs, _ := query(t, f.bob, form("start", all[4].stamp)); bodies(rs) != "a5,c6" {
		t.Fatalf("start: %s", bodies(rs))
	}
	if rs, _ := query(t, f.bob, form("end", "2000-01-01T00:00:00Z")); len(rs) != 0 {
		t.Fatalf("end in the past: %s", bodies(rs))
	}
	if rs, _ := query(t, f.bob, form("after-id", all[2].id)); bodies(rs) != "c4,a5,c6" {
		t.Fatalf("after-id: %s", bodies(rs))
	}
	if rs, _ := query(t, f.bob, form("before-id", all[2].id)); bodies(rs) != "a1,c2" {
		t.Fatalf("before-id: %s", bodies(rs))
	}
	if rs, _ := query(t, f.bob, form("after-id", all[0].id, "before-id", all[3].id, "with", "carol@localhost")); bodies(rs) != "c2" {
		t.Fatalf("after-id+before-id+with: %s", bodies(rs))
	}
	ids := "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>" +
		"<field var='ids'><value>" + all[5].id + "</value><value>" + all[0].id + "</value></field></x>"
	if rs, _ := query(t, f.bob, ids); bodies(rs) != "a1,c6" {
		t.Fatalf("ids: %s", bodies(rs))
	}
	// The stanza-id on each delivered message is the archive id.
	if id := stanzaIDs(toBob[1])[0].Get("id"); id != all[2].id {
		t.Fatalf("stanza-id %s, archive id %s", id, all[2].id)
	}
	_, _, errEl := queryErr(t, f.bob, form("after-id", "nonsense"))
	if errEl == nil || servertest.ErrorCondition(errEl) != "item-not-found" {
		t.Fatalf("bad after-id: %v", errEl)
	}
	_, _, errEl = queryErr(t, f.bob, form("start", "yesterday"))
	if errEl == nil || servertest.ErrorCondition(errEl) != "bad-request" {
		t.Fatalf("bad start: %v", errEl)
	}
	// The form lists the fields.
	r := f.bob.IQ("<iq type='get' id='fields'><query xmlns='urn:xmpp:mam:2'/></iq>")
	if !strings.Contains(r.String(), `var="with"`) || !strings.Contains(r.String(), `var="before-id"`) {
		t.Fatalf("fields: %s", r)
	}
}

func TestPrefs(t *testing.T) {
	f := start(t)
	r := f.bob.IQ("<iq type='get' id='p0'><prefs xmlns='urn:xmpp:mam:2'/></iq>")
	if p := r.Child(mam.NS, "prefs"); p == nil || p.Get("default") != "always" {
		t.Fatalf("default prefs: %s", r)
	}
	r = f.bob.IQ("<iq type='set' id='p1'><prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid>alice@localhost</jid></always><never/></prefs></iq>")
	if r.Get("type") != "result" || r.Child(mam.NS, "prefs").Get("default") != "never" {
		t.Fatalf("set prefs: %s", r)
	}
	chat(t, f.alice, f.bob, "kept")
	chat(t, f.carol, f.bob, "not kept for bob")
	if rs, _ := query(t, f.bob, ""); bodies(rs) != "kept" {
		t.Fatalf("bob with default never, always alice: %s", bodies(rs))
	}
	// Carol's own archive follows her preferences, not bob's.
	if rs, _ := query(t, f.carol, ""); bodies(rs) != "not kept for bob" {
		t.Fatalf("carol: %s", bodies(rs))
	}
	// Roster: only contacts in the roster.
	f.bob.IQ("<iq type='set' id='p2'><prefs xmlns='urn:xmpp:mam:2' default='roster'/></iq>")
	f.bob.IQ("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query></iq>")
	chat(t, f.carol, f.bob, "from roster contact")
	chat(t, f.alice, f.bob, "from stranger")
	if rs, _ := query(t, f.bob, ""); bodies(rs) != "kept,from roster contact" {
		t.Fatalf("roster default: %s", bodies(rs))
	}
	// Never list beats the default.
	f.alice.IQ("<iq type='set' id='p3'><prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>carol@localhost/any</jid></never></prefs></iq>")
	chat(t, f.carol, f.alice, "never")
	if rs, _ := query(t, f.alice, ""); strings.Contains(bodies(rs), "never") {
		t.Fatalf("alice's never list: %s", bodies(rs))
	}
	r = f.alice.IQ("<iq type='set' id='p4'><prefs xmlns='urn:xmpp:mam:2' default='sometimes'/></iq>")
	if servertest.ErrorCondition(r) != "bad-request" {
		t.Fatalf("bad default: %s", r)
	}
}

func TestDiscoAndPrivacy(t *testing.T) {
	f := start(t)
	r := f.alice.IQ("<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
	if !strings.Contains(r.String(), `var="urn:xmpp:mam:2"`) || !strings.Contains(r.String(), `var="urn:xmpp:mam:2#extended"`) {
		t.Fatalf("account disco: %s", r)
	}
	chat(t, f.alice, f.bob, "private")
	// Another account may not read alice's archive.
	r = f.bob.IQ("<iq type='set' id='spy' to='alice@localhost'><query xmlns='urn:xmpp:mam:2'/></iq>")
	if r.Get("type") != "error" {
		t.Fatalf("bob queried alice's archive: %s", r)
	}
}

// failingArchive wraps a real archive and fails writes while broken is set,
// as a full disk would.
type failingArchive struct {
	store.Archive
	broken atomic.Bool
}

func (f *failingArchive) AppendArchive(ctx context.Context, user string, recs ...store.ArchiveRecord) error {
	if f.broken.Load() {
		return fmt.Errorf("write archive: %w", errors.New("no space left on device"))
	}
	return f.Archive.AppendArchive(ctx, user, recs...)
}

func TestWriteFailureBouncesToSender(t *testing.T) {
	cfg := config.Default(servertest.Domain)
	cfg.DataDir = t.TempDir()
	cfg.Auth.ScramIterations = 4096
	cfg.E2EE.Policy = "off"
	st, err := boltstore.Open(cfg.DBPath())
	servertest.Must(t, err)
	certs, err := tlscert.SelfSigned(cfg.DataDir, []string{cfg.Domain})
	servertest.Must(t, err)
	fa := &failingArchive{Archive: st}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))
	x := xmpp.NewServer(cfg, st, certs.TLSConfig(), log)
	servertest.Must(t, x.Register(roster.New(), presence.New(), message.New(), mam.NewWithArchive(fa)))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	servertest.Must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = x.Serve(ctx, ln, false); close(done) }()
	t.Cleanup(func() {
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = x.Shutdown(sctx)
		<-done
		st.Close()
	})
	for _, u := range []string{"alice", "bob"} {
		creds, err := hsasl.DeriveCredentials(u, "pw", cfg.Auth.ScramIterations)
		servertest.Must(t, err)
		servertest.Must(t, st.CreateAccount(context.Background(), store.Account{Localpart: u, Role: store.RoleMember, Created: time.Now(), Scram: creds}))
	}
	ts := &servertest.Server{Addr: ln.Addr().String()}
	alice := online(t, ts.Dial(t, "alice", "pw", "a"))
	bob := online(t, ts.Dial(t, "bob", "pw", "b"))

	chat(t, alice, bob, "fine")
	// Writes are group-committed after delivery: a query waits for them,
	// so "fine" is on disk before the disk breaks.
	if rs, _ := query(t, bob, ""); bodies(rs) != "fine" {
		t.Fatalf("archive before the failure: %s", bodies(rs))
	}
	fa.broken.Store(true)
	alice.SendRaw("<message type='chat' id='lost' to='bob@localhost'><body>disk full</body></message>")
	e := alice.Expect(func(e *elem.Element) bool { return e.Get("id") == "lost" && e.Get("type") == "error" })
	if servertest.ErrorCondition(e) != "resource-constraint" || e.Child("", "error").Get("type") != "wait" ||
		!strings.Contains(e.Child("", "error").ChildText("", "text"), "could not archive") {
		t.Fatalf("bounce: %s", e)
	}
	if len(stanzaIDs(e)) != 0 {
		t.Fatalf("the bounce should not carry the archive id: %s", e)
	}
	fa.broken.Store(false)
	chat(t, alice, bob, "recovered")
	rs, _ := query(t, bob, "")
	if bodies(rs) != "fine,recovered" {
		t.Fatalf("archive after recovery: %s", bodies(rs))
	}
	// The server is still up for everyone.
	if r := alice.IQ("<iq type='get' id='still'><query xmlns='urn:xmpp:mam:2'/></iq>"); r.Get("type") != "result" {
		t.Fatalf("after failure: %s", r)
	}
}

// gatedArchive holds every write until the gate opens, as a slow disk
// would.
type gatedArchive struct {
	store.Archive
	gate chan struct{}
}

func (g *gatedArchive) AppendArchive(ctx context.Context, user string, recs ...store.ArchiveRecord) error {
	<-g.gate
	return g.Archive.AppendArchive(ctx, user, recs...)
}

func TestAckHeldUntilDurable(t *testing.T) {
	cfg := config.Default(servertest.Domain)
	cfg.DataDir = t.TempDir()
	st, err := boltstore.Open(cfg.DBPath())
	servertest.Must(t, err)
	defer st.Close()
	for _, u := range []string{"alice", "bob"} {
		servertest.Must(t, st.CreateAccount(context.Background(), store.Account{Localpart: u, Role: store.RoleMember}))
	}
	ga := &gatedArchive{Archive: st, gate: make(chan struct{})}
	x := xmpp.NewServer(cfg, st, nil, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	servertest.Must(t, x.Register(mam.NewWithArchive(ga)))

	el := elem.New(elem.NSClient, "message", "type", "chat", "to", "bob@localhost", "from", "alice@localhost/a").
		Add(elem.New(elem.NSClient, "body").AddText("x"))
	s := &xmpp.Stanza{El: el, From: jidMust("alice@localhost/a"), To: jidMust("bob@localhost")}
	x.Router().Fire(context.Background(), "message/bare", &xmpp.Event{Stanza: s})
	if len(stanzaIDs(el)) != 1 {
		t.Fatalf("no stanza-id before delivery: %s", el)
	}
	done, errf := s.Durable()
	if done == nil {
		t.Fatal("no ack hold was taken for the archive writes")
	}
	select {
	case <-done:
		t.Fatal("durable before the archive write returned")
	case <-time.After(50 * time.Millisecond):
	}
	close(ga.gate)
	<-done
	if err := errf(); err != nil {
		t.Fatalf("durable with error %v", err)
	}
	page, err := st.QueryArchive(context.Background(), "bob", store.ArchiveQuery{Max: 10})
	servertest.Must(t, err)
	if len(page.Records) != 1 {
		t.Fatalf("bob: %d records once durable", len(page.Records))
	}
}

func jidMust(s string) jid.JID { return jid.MustParse(s) }

// TestShutdownKeepsQueuedWrites stops the server right after the last
// message is delivered, while its archive records may still be queued for
// the group commit: a graceful shutdown must write them before the store
// closes.
func TestShutdownKeepsQueuedWrites(t *testing.T) {
	var dbPath string
	s := servertest.Start(t, e2eeOff, func(c *config.Config) { dbPath = c.DBPath() })
	s.AddUser(t, "alice", "pw-alice")
	s.AddUser(t, "bob", "pw-bob")
	alice := online(t, s.Dial(t, "alice", "pw-alice", "phone"))
	bob := online(t, s.Dial(t, "bob", "pw-bob", "laptop"))
	const n = 2000
	var batch strings.Builder
	for i := range n {
		fmt.Fprintf(&batch, "<message type='chat' id='q%d' to='bob@localhost'><body>queued %d</body></message>", i, i)
	}
	alice.SendRaw(batch.String())
	bob.Expect(func(e *elem.Element) bool { return e.Name.Local == "message" && e.Get("id") == fmt.Sprintf("q%d", n-1) })
	s.Stop()

	st, err := boltstore.Open(dbPath)
	servertest.Must(t, err)
	defer st.Close()
	for _, u := range []string{"alice", "bob"} {
		page, err := st.QueryArchive(context.Background(), u, store.ArchiveQuery{Max: 2 * n})
		servertest.Must(t, err)
		if len(page.Records) != n {
			t.Errorf("%s: %d of %d messages archived after shutdown", u, len(page.Records), n)
		}
	}
}

// TestQueueBoundSlowsSenders: with the disk stalled, the records waiting
// for a commit stop growing past a bound: whoever adds more waits for the
// commit instead of filling memory.
func TestQueueBoundSlowsSenders(t *testing.T) {
	cfg := config.Default(servertest.Domain)
	cfg.DataDir = t.TempDir()
	st, err := boltstore.Open(cfg.DBPath())
	servertest.Must(t, err)
	defer st.Close()
	for _, u := range []string{"alice", "bob"} {
		servertest.Must(t, st.CreateAccount(context.Background(), store.Account{Localpart: u, Role: store.RoleMember}))
	}
	ga := &gatedArchive{Archive: st, gate: make(chan struct{})}
	x := xmpp.NewServer(cfg, st, nil, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})))
	servertest.Must(t, x.Register(mam.NewWithArchive(ga)))

	body := strings.Repeat("b", 1<<20)
	var sent atomic.Int32
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range 12 {
			el := elem.New(elem.NSClient, "message", "type", "chat", "to", "bob@localhost", "from", "alice@localhost/a").
				Add(elem.New(elem.NSClient, "body").AddText(body))
			s := &xmpp.Stanza{El: el, From: jidMust("alice@localhost/a"), To: jidMust("bob@localhost")}
			x.Router().Fire(context.Background(), "message/bare", &xmpp.Event{Stanza: s})
			sent.Add(1)
		}
	}()
	// Wait until the sender stops making progress (slow under -race), then
	// count. Each message queues one record of a little over 1 MiB (bob's
	// archive: the sender's side is archived on the way out, which this
	// event skips), so the eighth passes the bound of 8 MiB and waits.
	for last, deadline := int32(-1), time.Now().Add(10*time.Second); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		n := sent.Load()
		if n == last {
			break
		}
		last = n
	}
	if n := sent.Load(); n != 7 {
		t.Fatalf("%d messages of 1 MiB were queued while the disk was stalled", n)
	}
	close(ga.gate)
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("senders still wait after the disk came back")
	}
	// The last writes are asynchronous: nothing is lost, it lands soon.
	deadline := time.Now().Add(5 * time.Second)
	for {
		page, err := st.QueryArchive(context.Background(), "bob", store.ArchiveQuery{Max: 20})
		servertest.Must(t, err)
		if len(page.Records) == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob has %d of 12 records", len(page.Records))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
