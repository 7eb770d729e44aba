// Package mam keeps a personal message archive for every account (XEP-0313,
// urn:xmpp:mam:2) and marks archived messages with their archive ID
// (XEP-0359 stanza-id).
//
// A message between two local accounts is archived for the sender when it
// leaves their client (stanza/outgoing, before carbons copy it) and for the
// recipient before delivery (message/bare|full|self); both records share one
// ID, which each side sees as a stanza-id with its own 'by'. The write
// is asynchronous and group-committed: delivery does not wait for the
// disk, but the stanza holds its acknowledgement (Stanza.HoldAck) until
// the write is durable, and a failed write comes back to the sender as a
// stanza error.
//
// Group commit: records queue on the module, and one writer goroutine,
// alive while there is work, takes everything queued and commits it in one
// transaction, then the next lot. What arrives during a commit waits for
// the next one, so under load a transaction and its fsync carry hundreds of
// records. A writer starting from idle first gathers for gatherWindow (as
// bbolt's own Batch does), so that a burst after a quiet spell, such as a
// client's queue flushed on reconnect, is one commit rather than a commit
// of its first record and then one of the rest.
package mam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/merveilles/hearth/server/store"
	"github.com/merveilles/hearth/server/xmpp"
	"github.com/merveilles/hearth/server/xmpp/elem"
)

// Namespaces.
const (
	NS         = "urn:xmpp:mam:2"
	NSExtended = "urn:xmpp:mam:2#extended"
	NSSID      = "urn:xmpp:sid:0"
	NSRSM      = "http://jabber.org/protocol/rsm"
	NSForward  = "urn:xmpp:forward:0"
	NSDelay    = "urn:xmpp:delay"
	NSData     = "jabber:x:data"

	nsOMEMO       = "eu.siacs.conversations.axolotl"
	nsOMEMO2      = "urn:xmpp:omemo:2"
	nsOpenPGP     = "urn:xmpp:openpgp:0"
	nsChatStates  = "http://jabber.org/protocol/chatstates"
	prefsDataKind = "mam"
	prefsDataKey  = "prefs"
)

// Page sizes: what a query gets without asking, and the most it may ask.
const (
	DefaultMax = 50
	MaxMax     = 250
)

// hookPriority runs archiving after blocking (1000), which must stop a
// blocked message first, and before delivery by the message module (0),
// so the stanza-id is on the message the recipient gets.
const hookPriority = 500

// outgoingPriority archives a sent message after blocking (1000) and the
// E2EE policy (900) have had their say, and before carbons (-100) copy it,
// so the copies carry the sender's stanza-id.
const outgoingPriority = 0

// Module is the message archive.
type Module struct {
	h       *xmpp.Host
	archive store.Archive
	lastID  atomic.Uint64

	mu    sync.Mutex
	prefs map[string]Prefs // localpart -> preferences, loaded on first use

	// closing is set when the server starts shutting down: the writer
	// stops gathering, and each closing session waits for its user's
	// queued records, so the store is not closed under them.
	closing atomic.Bool

	wmu     sync.Mutex
	queued  *round // records waiting for the next commit
	writing bool   // the writer goroutine is running
	// pendingBytes is the size of the records queued or being committed.
	pendingBytes int
	// latest is, per user, the newest round holding one of their records,
	// so that a query sees every message delivered before it was asked:
	// rounds commit in order, so waiting for that one waits for all.
	latest map[string]*round
}

// batchAppender is a store that commits several users' records in one
// transaction (boltstore does). Other archives, such as tests' wrappers,
// get one AppendArchive call per user and round, made concurrently.
type batchAppender interface {
	AppendArchives(ctx context.Context, byUser map[string][]store.ArchiveRecord) error
}

// round is one group commit.
type round struct {
	recs  []queuedRecord
	bytes int           // serialized size of recs
	done  chan struct{} // closed once every record is durable or failed
}

// maxQueuedBytes bounds the records queued or being committed. Past it,
// whoever adds one waits for the commit that carries it, so senders faster
// than the disk slow down instead of filling memory.
const maxQueuedBytes = 8 << 20

type queuedRecord struct {
	ctx     context.Context
	st      *xmpp.Stanza
	user    string
	rec     store.ArchiveRecord
	release func(error)
}

// gatherWindow is how long a writer starting from idle waits for more
// records: bbolt's default batch delay, what the archive used before it
// had its own writer.
const gatherWindow = 10 * time.Millisecond

// New returns the archive module. It uses the host's store, which must
// implement store.Archive.
func New() *Module {
	return &Module{prefs: make(map[string]Prefs), latest: make(map[string]*round)}
}

// NewWithArchive returns the module writing to a given archive (tests wrap
// the real one to inject failures).
func NewWithArchive(a store.Archive) *Module {
	m := New()
	m.archive = a
	return m
}

// Name implements xmpp.Module.
func (m *Module) Name() string { return "mam" }

// Register implements xmpp.Module.
func (m *Module) Register(h *xmpp.Host) error {
	m.h = h
	if m.archive == nil {
		a, ok := h.Store.(store.Archive)
		if !ok {
			return errors.New("mam: the store does not keep archives")
		}
		m.archive = a
	}
	h.HandleIQ(xmpp.ToSelf, "get", NS, m.get)
	h.HandleIQ(xmpp.ToSelf, "set", NS, m.set)
	h.Hook("stanza/outgoing", outgoingPriority, m.outgoing)
	h.Hook("message/bare", hookPriority, m.onMessage)
	h.Hook("message/full", hookPriority, m.onMessage)
	h.Hook("message/self", hookPriority, m.onMessage)
	h.Hook("disco/info/account", 0, m.discoInfo)
	h.Hook("server/shutdown", 0, m.shutdown)
	h.Hook("session/closed", -100, m.sessionClosed)
	return nil
}

// shutdownWait bounds how long a session closing at shutdown waits for its
// archive writes (the server gives its sessions 3 s to end).
const shutdownWait = 2 * time.Second

func (m *Module) shutdown(context.Context, *xmpp.Event) bool {
	m.closing.Store(true)
	return false
}

// sessionClosed, during a shutdown, holds the session's end until the
// archive records of its user that are queued now are written: messages
// already delivered must not lose their archive copy to the store closing.
func (m *Module) sessionClosed(ctx context.Context, ev *xmpp.Event) bool {
	if !m.closing.Load() || ev.Session == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownWait)
	defer cancel()
	m.settle(ctx, ev.Session.Localpart())
	return false
}

// discoInfo advertises the archive on the account's bare JID, to the
// account itself: nobody else may query it.
func (m *Module) discoInfo(_ context.Context, ev *xmpp.Event) bool {
	q := ev.Stanza.El
	if q.Get("node") != "" || !ev.Stanza.From.Equal(ev.Stanza.To.Bare()) {
		return false
	}
	q.Add(elem.New("http://jabber.org/protocol/disco#info", "feature", "var", NS),
		elem.New("http://jabber.org/protocol/disco#info", "feature", "var", NSExtended))
	return false
}

// nextID returns a new archive ID: the current time in nanoseconds, bumped
// past the previous ID so IDs are unique and ordered within this process.
func (m *Module) nextID() uint64 {
	for {
		last := m.lastID.Load()
		id := uint64(time.Now().UnixNano())
		if id <= last {
			id = last + 1
		}
		if m.lastID.CompareAndSwap(last, id) {
			return id
		}
	}
}

// FormatID is the string form of an archive ID used on the wire: 16
// lowercase hex digits. (Written by hand: it runs twice per archived
// message, and fmt costs more than the rest of it.)
func FormatID(id uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// serialize is the stanza as archived. It writes into a buffer sized for
// a chat message and keeps its bytes, rather than building a string and
// copying it.
func serialize(el *elem.Element) []byte {
	var b bytes.Buffer
	b.Grow(512)
	el.WriteTo(&b, elem.NSClient)
	return b.Bytes()
}

// ParseID reads an archive ID from the wire.
func ParseID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var id uint64
	for _, c := range []byte(s) {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		id = id<<4 | uint64(d)
	}
	return id, true
}

// archivable reports whether a message is worth keeping: a one-to-one
// message with a body or an end-to-end encrypted payload.
func archivable(el *elem.Element) bool {
	switch el.Get("type") {
	case "", "normal", "chat":
	default:
		return false
	}
	for _, c := range el.Elements() {
		switch {
		case c.Name.Local == "body" && (c.Name.Space == elem.NSClient || c.Name.Space == ""):
			return true
		case c.Name.Local == "encrypted" && (c.Name.Space == nsOMEMO || c.Name.Space == nsOMEMO2):
			return true
		case c.Name.Local == "openpgp" && c.Name.Space == nsOpenPGP:
			return true
		}
	}
	return false
}

// stripForged removes stanza-ids that claim to come from this server or
// one of its accounts: only the server may set those (XEP-0359 section 4).
func (m *Module) stripForged(el *elem.Element) {
	var out []elem.Node
	changed := false
	for _, c := range el.Children {
		if e, ok := c.(*elem.Element); ok && e.Name.Space == NSSID && e.Name.Local == "stanza-id" {
			by, err := jid.Parse(e.Get("by"))
			if err != nil || by.Domainpart() == m.h.Domain() {
				changed = true
				continue
			}
		}
		out = append(out, c)
	}
	if changed {
		el.Children = out
	}
}

// exists reports whether a local account exists, without a store read for
// one that is online.
func (m *Module) exists(ctx context.Context, user string) bool {
	return len(m.h.Sessions(user)) > 0 || m.h.AccountExists(ctx, user)
}

// outgoing archives a message a local client sends to another local
// account in the sender's own archive, and marks it with the sender's
// stanza-id before carbons copy it to the sender's other resources (their
// hook runs later). It first drops any stanza-id the client made up.
func (m *Module) outgoing(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if st.Origin == nil || st.Kind() != "message" || xmpp.IsError(st.El) {
		return false
	}
	m.stripForged(st.El)
	if !archivable(st.El) {
		return false
	}
	sender, to := st.Origin.Localpart(), st.To
	// Messages to oneself are archived once, on arrival; other domains are
	// unreachable until federation exists.
	if to.Domainpart() != m.h.Domain() || to.Localpart() == "" || to.Localpart() == sender {
		return false
	}
	if !m.exists(ctx, to.Localpart()) || !m.wants(ctx, sender, to.Bare().String()) {
		return false
	}
	id := m.nextID()
	m.write(ctx, st, sender, store.ArchiveRecord{ID: id, With: to.String(), Stanza: serialize(st.El)})
	st.El.Add(elem.New(NSSID, "stanza-id", "by", sender+"@"+m.h.Domain(), "id", FormatID(id)))
	return false
}

// onMessage archives a message for the local account it is addressed to
// and marks it with that account's stanza-id before delivery.
func (m *Module) onMessage(ctx context.Context, ev *xmpp.Event) bool {
	st := ev.Stanza
	if st.Kind() != "message" || xmpp.IsError(st.El) || st.From.Domainpart() == "" {
		return false
	}
	// The sender's stanza-id, set by outgoing: the recipient's record
	// shares its ID. It is stripped with the rest, as the recipient must
	// see only its own.
	var id uint64
	if st.Origin != nil {
		by := st.Origin.Bare()
		for _, c := range st.El.Elements() {
			if c.Name.Space == NSSID && c.Name.Local == "stanza-id" && c.Get("by") == by {
				id, _ = ParseID(c.Get("id"))
			}
		}
	}
	m.stripForged(st.El)
	if !archivable(st.El) {
		return false
	}
	owner := st.To.Localpart()
	if owner == "" && st.Origin != nil {
		owner = st.Origin.Localpart()
	}
	if owner == "" || !m.exists(ctx, owner) {
		// The message module bounces it: nothing to archive.
		return false
	}
	if !m.wants(ctx, owner, st.From.Bare().String()) {
		return false
	}
	if id == 0 {
		id = m.nextID()
	}
	m.write(ctx, st, owner, store.ArchiveRecord{ID: id, With: st.From.String(), Stanza: serialize(st.El)})
	st.El.Add(elem.New(NSSID, "stanza-id", "by", owner+"@"+m.h.Domain(), "id", FormatID(id)))
	return false
}

// write archives one record asynchronously, holding the stanza's
// acknowledgement until the group commit that carries it returns.
func (m *Module) write(ctx context.Context, st *xmpp.Stanza, user string, rec store.ArchiveRecord) {
	q := queuedRecord{ctx: context.WithoutCancel(ctx), st: st, user: user, rec: rec, release: st.HoldAck()}
	m.wmu.Lock()
	if m.queued == nil {
		m.queued = &round{done: make(chan struct{})}
	}
	r := m.queued
	r.recs = append(r.recs, q)
	r.bytes += len(rec.Stanza)
	m.latest[user] = r
	start := !m.writing
	m.writing = true
	m.pendingBytes += len(rec.Stanza)
	full := m.pendingBytes > maxQueuedBytes
	m.wmu.Unlock()
	if start {
		go m.writer()
	}
	if full {
		<-r.done
	}
}

// writer commits the queued rounds one after the other and ends when the
// queue is empty.
func (m *Module) writer() {
	if !m.closing.Load() {
		time.Sleep(gatherWindow)
	}
	for {
		m.wmu.Lock()
		r := m.queued
		m.queued = nil
		if r == nil {
			m.writing = false
			m.wmu.Unlock()
			return
		}
		m.wmu.Unlock()
		m.commit(r)
		m.wmu.Lock()
		m.pendingBytes -= r.bytes
		for _, q := range r.recs {
			if m.latest[q.user] == r {
				delete(m.latest, q.user)
			}
		}
		m.wmu.Unlock()
		close(r.done)
	}
}

// commit writes one round and settles every record in it: the ack hold is
// released, and a record that could not be written bounces to its sender.
func (m *Module) commit(r *round) {
	errs := make([]error, len(r.recs))
	ba, batched := m.archive.(batchAppender)
	if batched {
		byUser := make(map[string][]store.ArchiveRecord)
		for _, q := range r.recs {
			byUser[q.user] = append(byUser[q.user], q.rec)
		}
		if err := ba.AppendArchives(context.Background(), byUser); err != nil {
			// Find out which records fail on their own: one bad record
			// (an ID already taken) must not lose everyone's messages.
			m.appendEach(r.recs, errs, false)
		}
	} else {
		m.appendEach(r.recs, errs, true)
	}
	// Newest first: stream management acks a prefix of a client's
	// stanzas, so by the time the oldest hold of the round goes, the ones
	// after it are already released and h can move over all of them.
	for i := len(r.recs) - 1; i >= 0; i-- {
		q := r.recs[i]
		q.release(errs[i])
		if errs[i] != nil {
			m.bounce(q, errs[i])
		}
	}
}

// appendEach writes records with concurrent AppendArchive calls, one per
// user or one per record, and sets errs[i] for record i.
func (m *Module) appendEach(recs []queuedRecord, errs []error, perUser bool) {
	var wg sync.WaitGroup
	put := func(user string, idx []int) {
		defer wg.Done()
		batch := make([]store.ArchiveRecord, len(idx))
		for j, i := range idx {
			batch[j] = recs[i].rec
		}
		if err := m.archive.AppendArchive(context.Background(), user, batch...); err != nil {
			for _, i := range idx {
				errs[i] = err
			}
		}
	}
	if !perUser {
		for i, q := range recs {
			wg.Add(1)
			go put(q.user, []int{i})
		}
		wg.Wait()
		return
	}
	byUser := make(map[string][]int)
	for i, q := range recs {
		byUser[q.user] = append(byUser[q.user], i)
	}
	for user, idx := range byUser {
		wg.Add(1)
		go put(user, idx)
	}
	wg.Wait()
}

// bounce tells the sender a message was not archived. Delivery went on
// without waiting for the disk; stream management never acks it, so a
// client may resend.
func (m *Module) bounce(q queuedRecord, err error) {
	m.h.Log.Error("archive message", "user", q.user, "err", err)
	st := q.st
	// The bounce is built from the record, not from st.El: routing may
	// still be adding to that element on the sender's goroutine.
	el, perr := ParseStanza(q.rec.Stanza)
	if perr != nil {
		m.h.Log.Error("archive: cannot rebuild the message to bounce it", "user", q.user, "err", perr)
		return
	}
	var kept []elem.Node
	for _, c := range el.Children {
		if e, ok := c.(*elem.Element); ok && e.Name.Space == NSSID && e.Name.Local == "stanza-id" {
			continue
		}
		kept = append(kept, c)
	}
	el.Children = kept
	m.h.Bounce(q.ctx, &xmpp.Stanza{El: el, From: st.From, To: st.To, Origin: st.Origin}, &xmpp.StanzaError{
		Type: "wait", Condition: "resource-constraint",
		Text: "the server could not archive this message (its storage failed); it may not have been kept, try again later",
	})
}

// settle waits for the user's archive writes that are queued or in flight
// now.
func (m *Module) settle(ctx context.Context, user string) {
	m.wmu.Lock()
	r := m.latest[user]
	m.wmu.Unlock()
	if r == nil {
		return
	}
	select {
	case <-r.done:
	case <-ctx.Done():
	}
}

// Prefs are a user's archiving preferences (XEP-0313 section 7).
type Prefs struct {
	Default string   `json:"default"` // always, roster or never
	Always  []string `json:"always,omitempty"`
	Never   []string `json:"never,omitempty"`
}

func (m *Module) loadPrefs(ctx context.Context, user string) (Prefs, error) {
	m.mu.Lock()
	p, ok := m.prefs[user]
	m.mu.Unlock()
	if ok {
		return p, nil
	}
	p = Prefs{Default: "always"}
	raw, err := m.h.Store.GetUserData(ctx, user, prefsDataKind, prefsDataKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return p, fmt.Errorf("load archive preferences of %s: %w", user, err)
	default:
		if err := json.Unmarshal(raw, &p); err != nil {
			return p, fmt.Errorf("archive preferences of %s: %w", user, err)
		}
	}
	m.mu.Lock()
	m.prefs[user] = p
	m.mu.Unlock()
	return p, nil
}

// wants reports whether user archives messages with contact (a bare JID).
// A store failure archives: keeping too much beats losing a message.
func (m *Module) wants(ctx context.Context, user, contact string) bool {
	p, err := m.loadPrefs(ctx, user)
	if err != nil {
		m.h.Log.Error("archive preferences", "user", user, "err", err)
		return true
	}
	for _, j := range p.Never {
		if j == contact {
			return false
		}
	}
	for _, j := range p.Always {
		if j == contact {
			return true
		}
	}
	switch p.Default {
	case "never":
		return false
	case "roster":
		it, err := m.h.Store.RosterItem(ctx, user, contact)
		return err == nil && it.InRoster
	}
	return true
}
