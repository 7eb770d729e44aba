package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The rooms mode loads group chat (XEP-0045): --rooms rooms of --occupants
// occupants, each occupant its own logged-in client, and senders among them
// at a fixed total --rate of messages per second. Every copy the room sends
// back (to every occupant, the sender included) is timed from the send,
// whose time travels in the message id; copies expected minus copies
// received is what went undelivered. Afterwards newcomers join the full
// rooms one at a time, timed from their join presence until they have their
// own presence (status 110) and the subject, which ends a join.
//
// The rooms are made by --room-owner, who joins each one first and submits
// the owner configuration form: plaintext (hearth's x-hearth#encryption,
// which needs a server admin), open (not members-only), non-anonymous,
// persistent (Prosody drops a non-persistent room when its last occupant
// leaves), archived. Servers ignore the fields they do not know. The owner
// then leaves, so a room holds exactly --occupants occupants.

type roomOptions struct {
	rooms, occupants, joins, keys int
	rate                          float64
	payload, owner, service       string
}

func (ro *roomOptions) register(fs *flag.FlagSet) {
	fs.IntVar(&ro.rooms, "rooms", 1, "rooms: how many rooms")
	fs.IntVar(&ro.occupants, "occupants", 100, "rooms: occupants per room, each a separate client")
	fs.Float64Var(&ro.rate, "rate", 5, "rooms: messages per second, all rooms together")
	fs.IntVar(&ro.joins, "joins", 20, "rooms: newcomer joins into the full rooms to time, one at a time")
	fs.StringVar(&ro.payload, "payload", "body", "rooms: body (--body-bytes of text) or omemo (an OMEMO-shaped <encrypted/> with --omemo-keys keys, no body)")
	fs.IntVar(&ro.keys, "omemo-keys", 50, "rooms: <key/> elements in an OMEMO-shaped message")
	fs.StringVar(&ro.owner, "room-owner", "", "rooms: account (localpart) that creates and configures the rooms; in hearth a server admin")
	fs.StringVar(&ro.service, "rooms-domain", "", "rooms: the group chat service (default rooms.DOMAIN)")
}

// RoomResult is the rooms mode's part of a Result.
type RoomResult struct {
	Rooms        int     `json:"rooms"`
	Occupants    int     `json:"occupants"`
	Payload      string  `json:"payload"`
	PayloadBytes int     `json:"message_bytes"`
	Rate         float64 `json:"rate"`
	// Sent messages, and the copies the rooms owed their occupants for them.
	Sent     int64 `json:"sent"`
	Expected int64 `json:"expected_copies"`
	Received int64 `json:"received_copies"`
	// Undelivered is Expected - Received (negative: duplicates).
	Undelivered int64 `json:"undelivered_copies"`
	Bounced     int64 `json:"bounced"`
	// Late is how many sends left the tool more than 5 ms after their slot.
	Late      int64   `json:"late_sends"`
	CopyP50Ms float64 `json:"copy_p50_ms"`
	CopyP99Ms float64 `json:"copy_p99_ms"`
	CopyMaxMs float64 `json:"copy_max_ms"`
	FillSec   float64 `json:"fill_sec"`
	// SettleSec is how long after the fill the clients kept receiving
	// (the server's presence backlog) before the messages started.
	SettleSec  float64 `json:"settle_sec"`
	Joins      int     `json:"joins"`
	JoinP50Ms  float64 `json:"join_p50_ms"`
	JoinP99Ms  float64 `json:"join_p99_ms"`
	JoinMaxMs  float64 `json:"join_max_ms"`
	JoinSelfMs float64 `json:"join_self_p50_ms"` // to the own presence only
	// Server CPU over the timed joins, per join (the newcomer's join and
	// leave, and the presence every occupant gets for both).
	ServerCPUPerJoinUs float64 `json:"server_cpu_per_join_us"`
}

func (rr *RoomResult) print(row func(string, any)) {
	row("rooms × occupants", fmt.Sprintf("%d × %d, %s messages of %d bytes at %.1f/s", rr.Rooms, rr.Occupants, rr.Payload, rr.PayloadBytes, rr.Rate))
	row("fill (all joins), settle", fmt.Sprintf("%.1f s, then %.1f s until the clients were quiet", rr.FillSec, rr.SettleSec))
	row("sent / late sends", fmt.Sprintf("%d / %d", rr.Sent, rr.Late))
	row("copies expected/received", fmt.Sprintf("%d / %d", rr.Expected, rr.Received))
	row("undelivered (bounced)", fmt.Sprintf("%d (%d)", rr.Undelivered, rr.Bounced))
	row("copy latency p50/p99/max", fmt.Sprintf("%.2f ms / %.2f ms / %.2f ms", rr.CopyP50Ms, rr.CopyP99Ms, rr.CopyMaxMs))
	row("newcomer joins", rr.Joins)
	row("join p50/p99/max", fmt.Sprintf("%.2f ms / %.2f ms / %.2f ms (own presence p50 %.2f ms)", rr.JoinP50Ms, rr.JoinP99Ms, rr.JoinMaxMs, rr.JoinSelfMs))
	row("server CPU per join", fmt.Sprintf("%.0f µs", rr.ServerCPUPerJoinUs))
}

// occupant is one client in a room. Its reader goroutine times the copies
// it receives and passes its own presence and the subject to whoever is
// joining with it.
type roomClient struct {
	c      *conn
	room   int
	nick   string
	self   []byte // room@service/nick, the from of its own presence
	events chan roomEvent
	lats   []time.Duration // written by the reader only
	got    atomic.Int64
	last   atomic.Int64 // when the reader last got something, ns since base
}

type roomEvent struct {
	kind string // "self", "gone", "subject", "error"
	raw  string
}

func (ro *roomOptions) roomJID(i int) string {
	return "bench-room-" + strconv.Itoa(i+1) + "@" + ro.service
}

// read is the client's reader: it runs until the connection fails.
func (rc *roomClient) read(base time.Time, bounced *atomic.Int64) {
	for {
		kind, raw, err := rc.c.sc.next()
		if err != nil || kind == evClose {
			return
		}
		rc.last.Store(int64(time.Since(base)))
		switch string(elemName(raw)) {
		case "presence":
			if !bytes.Equal(attr(raw, "from"), rc.self) {
				continue
			}
			switch {
			case string(attr(raw, "type")) == "error":
				rc.event("error", raw)
			case string(attr(raw, "type")) == "unavailable":
				rc.event("gone", raw)
			case hasStatus(raw, "110"):
				rc.event("self", raw)
			}
		case "message":
			typ := attr(raw, "type")
			if string(typ) == "error" {
				bounced.Add(1)
				continue
			}
			if string(typ) != "groupchat" {
				continue
			}
			st := startTag(raw)
			rest := raw[len(st):]
			if bytes.Contains(rest, []byte("<subject")) && !bytes.Contains(rest, []byte("<body")) {
				rc.event("subject", raw)
				continue
			}
			if bytes.Contains(rest, []byte("urn:xmpp:delay")) {
				continue // history, not a live copy
			}
			ts, ok := parseStamp(attr(raw, "id"))
			if !ok {
				continue
			}
			rc.lats = append(rc.lats, time.Since(base)-time.Duration(ts))
			rc.got.Add(1)
		}
	}
}

func hasStatus(raw []byte, code string) bool {
	return bytes.Contains(raw, []byte("code='"+code+"'")) || bytes.Contains(raw, []byte(`code="`+code+`"`))
}

func (rc *roomClient) event(kind string, raw []byte) {
	select {
	case rc.events <- roomEvent{kind: kind, raw: string(raw)}:
	default: // nobody waits for it
	}
}

// join enters the room under rc.nick and waits for its own presence and
// the subject; it returns the times to each.
func (rc *roomClient) join(room string, history string, timeout time.Duration) (self, done time.Duration, err error) {
	for len(rc.events) > 0 {
		<-rc.events
	}
	t0 := time.Now()
	if err := rc.c.write("<presence to='" + room + "/" + rc.nick + "'><x xmlns='http://jabber.org/protocol/muc'>" + history + "</x></presence>"); err != nil {
		return 0, 0, err
	}
	limit := time.NewTimer(timeout)
	defer limit.Stop()
	var gotSelf, gotSubject bool
	for {
		select {
		case ev := <-rc.events:
			switch ev.kind {
			case "error":
				return 0, 0, fmt.Errorf("join %s/%s refused: %s", room, rc.nick, ev.raw)
			case "self":
				if !gotSelf {
					self = time.Since(t0)
				}
				gotSelf = true
			case "subject":
				gotSubject = true
			}
			if gotSelf && gotSubject {
				return self, time.Since(t0), nil
			}
		case <-limit.C:
			return 0, 0, fmt.Errorf("join %s/%s: no own presence and subject within %s (presence %v, subject %v)", room, rc.nick, timeout, gotSelf, gotSubject)
		}
	}
}

// leave exits the room and waits for the own unavailable presence.
func (rc *roomClient) leave(room string, timeout time.Duration) error {
	if err := rc.c.write("<presence type='unavailable' to='" + room + "/" + rc.nick + "'/>"); err != nil {
		return err
	}
	limit := time.NewTimer(timeout)
	defer limit.Stop()
	for {
		select {
		case ev := <-rc.events:
			if ev.kind == "gone" {
				return nil
			}
		case <-limit.C:
			return fmt.Errorf("leave %s/%s: no unavailable presence within %s", room, rc.nick, timeout)
		}
	}
}

// roomConfigForm opens a room to the load: hearth's plaintext mode (a
// server admin's choice) and the standard fields every server knows.
const roomConfigForm = "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>" +
	"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>" +
	"<field var='x-hearth#encryption'><value>plaintext</value></field>" +
	"<field var='muc#roomconfig_membersonly'><value>0</value></field>" +
	"<field var='muc#roomconfig_whois'><value>anyone</value></field>" +
	"<field var='muc#roomconfig_persistentroom'><value>1</value></field>" +
	"<field var='muc#roomconfig_enablearchiving'><value>1</value></field>" +
	"<field var='muc#roomconfig_moderatedroom'><value>0</value></field>" +
	"</x></query>"

// setUpRooms has the owner create and configure every room, then leave.
func setUpRooms(ctx context.Context, o *options, t *target) error {
	ro := &o.room
	c, _, err := fullLogin(ctx, o, t, ro.owner, "owner")
	if err != nil {
		return fmt.Errorf("room owner %s: %w", ro.owner, err)
	}
	defer c.close()
	_ = c.nc.SetDeadline(time.Now().Add(o.timeout + time.Duration(ro.rooms)*time.Second))
	for i := range ro.rooms {
		room := ro.roomJID(i)
		self := room + "/owner"
		if err := c.write("<presence to='" + self + "'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"); err != nil {
			return err
		}
		for {
			p, err := c.expect("presence")
			if err != nil {
				return fmt.Errorf("owner joining %s: %w", room, err)
			}
			if string(attr(p, "from")) != self {
				continue
			}
			if string(attr(p, "type")) == "error" {
				return fmt.Errorf("owner joining %s: %s", room, p)
			}
			if hasStatus(p, "110") {
				break
			}
		}
		id := "cfg" + strconv.Itoa(i)
		if err := c.write("<iq type='set' id='" + id + "' to='" + room + "'>" + roomConfigForm + "</iq>"); err != nil {
			return err
		}
		if err := c.expectIQ(id); err != nil {
			return fmt.Errorf("configuring %s: %w", room, err)
		}
		if err := c.write("<presence type='unavailable' to='" + self + "'/>"); err != nil {
			return err
		}
		for {
			p, err := c.expect("presence")
			if err != nil {
				return fmt.Errorf("owner leaving %s: %w", room, err)
			}
			if string(attr(p, "from")) == self && string(attr(p, "type")) == "unavailable" {
				break
			}
		}
	}
	return nil
}

// roomMessage returns a message template: the caller appends the stamp id
// between prefix and suffix.
func roomMessage(ro *roomOptions, bodyBytes int) (string, error) {
	switch ro.payload {
	case "body":
		body := strings.Repeat("hearth room load message. ", bodyBytes/26+1)[:bodyBytes]
		return "'><body>" + body + "</body></message>", nil
	case "omemo":
		b64 := base64.StdEncoding
		rnd := func(n int) string {
			b := make([]byte, n)
			_, _ = io.ReadFull(rand.Reader, b)
			return b64.EncodeToString(b)
		}
		var s strings.Builder
		s.WriteString("'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1234567'>")
		for k := range ro.keys {
			// A key is what a real device gets: about 100 bytes of
			// Signal message (prekey messages are larger).
			fmt.Fprintf(&s, "<key rid='%d'>%s</key>", 100000+k, rnd(100))
		}
		s.WriteString("<iv>" + rnd(12) + "</iv></header><payload>" + rnd(100) + "</payload></encrypted>")
		s.WriteString("<encryption xmlns='urn:xmpp:eme:0' namespace='eu.siacs.conversations.axolotl' name='OMEMO'/>")
		s.WriteString("<store xmlns='urn:xmpp:hints'/></message>")
		return s.String(), nil
	}
	return "", fmt.Errorf("--payload must be body or omemo, not %q", ro.payload)
}

func runRooms(ctx context.Context, o *options, t *target, r *Result) error {
	ro := &o.room
	if ro.owner == "" {
		return errors.New("rooms needs --room-owner (in hearth a server admin)")
	}
	if ro.rooms < 1 || ro.occupants < 1 || ro.rate <= 0 {
		return errors.New("--rooms, --occupants and --rate must be positive")
	}
	tail, err := roomMessage(ro, o.bodyBytes)
	if err != nil {
		return err
	}
	errs := newErrLog()
	rr := &RoomResult{Rooms: ro.rooms, Occupants: ro.occupants, Payload: ro.payload, Rate: ro.rate}
	r.Rooms = rr
	if err := setUpRooms(ctx, o, t); err != nil {
		return err
	}

	// Occupants and the newcomers, each its own account and client.
	total := ro.rooms * ro.occupants
	// Newcomer i joins room i mod R, each time the same one (its reader
	// matches its own presence by that room's address).
	newcomers := min(ro.joins, max(10, ro.rooms))
	conns, _ := openSessions(ctx, o, t, 0, total+newcomers, "room", r, errs)
	defer closeAll(conns)
	for i, c := range conns {
		if c == nil {
			return fmt.Errorf("session %d failed to log in: %v", i, errs.samples)
		}
	}
	base := time.Now()
	var bounced atomic.Int64
	clients := make([]*roomClient, len(conns))
	var readers sync.WaitGroup
	for i, c := range conns {
		rc := &roomClient{c: c, room: i % ro.rooms, nick: "o" + strconv.Itoa(i), events: make(chan roomEvent, 8)}
		if i >= total {
			rc.room = (i - total) % ro.rooms
			rc.nick = "newcomer" + strconv.Itoa(i-total)
		}
		rc.self = []byte(ro.roomJID(rc.room) + "/" + rc.nick)
		clients[i] = rc
		readers.Add(1)
		go func() {
			defer readers.Done()
			rc.read(base, &bounced)
		}()
	}
	stopReaders := func() {
		for _, c := range conns {
			_ = c.nc.SetReadDeadline(time.Now())
		}
		readers.Wait()
		for _, c := range conns {
			_ = c.nc.SetReadDeadline(time.Time{})
		}
	}

	// Fill the rooms with o.concurrency joins at a time.
	t0 := time.Now()
	forEach(ctx, o.concurrency, total, func(i int) {
		rc := clients[i]
		if _, _, err := rc.join(ro.roomJID(rc.room), "<history maxstanzas='0'/>", o.timeout); err != nil {
			errs.add(err)
		}
	})
	rr.FillSec = time.Since(t0).Seconds()
	if errs.n > 0 {
		stopReaders()
		return fmt.Errorf("filling the rooms: %d joins failed: %v", errs.n, errs.samples)
	}
	// Filling a room of N sends N² presences; a server may still be
	// writing them. Measure only once every client has been quiet for a
	// second, so that neither the messages queue behind that backlog nor
	// its CPU counts against them.
	quiet := time.Now()
	for time.Since(quiet) < 2*time.Minute && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		var latest int64
		for _, rc := range clients {
			latest = max(latest, rc.last.Load())
		}
		if time.Since(base)-time.Duration(latest) >= time.Second {
			break
		}
	}
	rr.SettleSec = time.Since(quiet).Seconds()

	// The message load: message k goes to room k mod R from the next
	// occupant of that room in turn, at its slot base + k/rate.
	sentPerRoom := make([]int64, ro.rooms)
	interval := time.Duration(float64(time.Second) / ro.rate)
	n := int(o.duration / interval)
	m, err := startMeter(o.pid)
	if err != nil {
		return err
	}
	start := time.Now()
	buf := make([]byte, 0, 256+len(tail))
	for k := range n {
		if ctx.Err() != nil {
			break
		}
		slot := start.Add(time.Duration(k) * interval)
		if d := time.Until(slot); d > 0 {
			time.Sleep(d)
		} else if d < -5*time.Millisecond {
			rr.Late++
		}
		room := k % ro.rooms
		sender := clients[room+ro.rooms*((k/ro.rooms)%ro.occupants)]
		buf = append(buf[:0], "<message type='groupchat' to='"...)
		buf = append(buf, ro.roomJID(room)...)
		buf = append(buf, "' id='m"...)
		buf = strconv.AppendInt(buf, int64(time.Since(base)), 10)
		buf = append(buf, tail...)
		if k == 0 {
			rr.PayloadBytes = len(buf)
		}
		if err := sender.c.writeBytes(buf); err != nil {
			errs.add(fmt.Errorf("send: %w", err))
			break
		}
		sentPerRoom[room]++
	}
	for _, s := range sentPerRoom {
		rr.Sent += s
		rr.Expected += s * int64(ro.occupants)
	}
	received := func() int64 {
		var sum int64
		for _, rc := range clients[:total] {
			sum += rc.got.Load()
		}
		return sum
	}
	deadline := time.Now().Add(o.grace)
	for received()+bounced.Load()*int64(ro.occupants) < rr.Expected && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := m.stop(r); err != nil {
		return err
	}
	rr.Received, rr.Bounced = received(), bounced.Load()
	rr.Undelivered = rr.Expected - rr.Received
	r.Sent, r.Delivered, r.Undelivered, r.Bounced = rr.Sent, rr.Received, rr.Undelivered, rr.Bounced
	if rr.Received > 0 {
		r.ServerCPUPerOpUs = r.ServerCPUSec / float64(rr.Received) * 1e6
		r.ToolCPUPerOpUs = r.ToolCPUSec / float64(rr.Received) * 1e6
		r.MsgsPerSec = float64(rr.Sent) / r.ElapsedSec
	}

	// Newcomers join the full rooms one at a time (with the server's
	// default history, as a client that asks for nothing special) and
	// leave again.
	time.Sleep(500 * time.Millisecond)
	var joins, selfs []time.Duration
	jm := &Result{}
	jmeter, err := startMeter(o.pid)
	if err != nil {
		return err
	}
	for j := range ro.joins {
		if ctx.Err() != nil {
			break
		}
		rc := clients[total+j%newcomers]
		room := ro.roomJID(rc.room)
		self, done, err := rc.join(room, "", o.timeout)
		if err != nil {
			errs.add(err)
			continue
		}
		joins, selfs = append(joins, done), append(selfs, self)
		if err := rc.leave(room, o.timeout); err != nil {
			errs.add(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := jmeter.stop(jm); err != nil {
		return err
	}
	stopReaders()
	rr.Joins = len(joins)
	if len(joins) > 0 {
		rr.ServerCPUPerJoinUs = jm.ServerCPUSec / float64(len(joins)) * 1e6
	}
	slices.Sort(joins)
	slices.Sort(selfs)
	rr.JoinP50Ms, rr.JoinP99Ms, rr.JoinSelfMs = percentile(joins, 50), percentile(joins, 99), percentile(selfs, 50)
	if len(joins) > 0 {
		rr.JoinMaxMs = float64(joins[len(joins)-1]) / float64(time.Millisecond)
	}
	var all []time.Duration
	for _, rc := range clients[:total] {
		all = append(all, rc.lats...)
	}
	slices.Sort(all)
	rr.CopyP50Ms, rr.CopyP99Ms = percentile(all, 50), percentile(all, 99)
	if len(all) > 0 {
		rr.CopyMaxMs = float64(all[len(all)-1]) / float64(time.Millisecond)
	}
	r.MsgP50Ms, r.MsgP99Ms = rr.CopyP50Ms, rr.CopyP99Ms
	r.Failures, r.Errors = errs.n, errs.samples
	return nil
}
