#!/usr/bin/python3
"""Group chat (XEP-0045) interop scenarios for hearth, driven by slixmpp's
own MUC, MAM and data form plugins (xep_0045, xep_0313, xep_0004), as a
real client uses them.

The server runs with hearth dev's defaults: the E2EE policy is
"required", so new rooms are end-to-end encrypted and members-only. The
accounts file must hold alice, bob, carol and dave (members) and chief,
whose server role is admin (a chat admin: the only one who may make a
room plaintext).

Usage (normally run by muc_interop_test.go):
  slixmpp_muc.py --host 127.0.0.1 --c2s-port P --tls-port P2 \
      --domain localhost --cafile DATA/cert.pem --accounts FILE [--only NAME]

Each scenario prints one PASS or FAIL line; the exit status is non-zero
if any failed.
"""

import argparse
import asyncio
import contextlib
import io
import logging
import sys
import uuid

# Set before importing the shared suite, so no __pycache__ is left in the
# checkout.
sys.dont_write_bytecode = True

from slixmpp import JID  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout, PresenceError  # noqa: E402

from slixmpp_suite import (  # noqa: E402
    NS_CHATSTATES,
    NS_DATA,
    NS_DELAY,
    NS_DISCO_INFO,
    NS_OMEMO_LEGACY,
    Client,
    Failure,
    check,
    error_condition,
    q,
    registry,
    run_scenarios,
)

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_SID = "urn:xmpp:sid:0"
NS_MAM = "urn:xmpp:mam:2"
NS_RETRACT = "urn:xmpp:message-retract:1"
NS_MODERATE = "urn:xmpp:message-moderate:1"
FIELD_ENCRYPTION = "x-hearth#encryption"

TIMEOUT = 10.0
PLUGINS = ("xep_0004", "xep_0045", "xep_0059", "xep_0297", "xep_0313")

# What Conversations sends along with an OMEMO payload.
FALLBACK = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."


# --- helpers -----------------------------------------------------------------

def muc_client(suite, localpart, resource="muc"):
    return Client(suite, localpart, resource, plugins=PLUGINS)


async def connect(suite, *names):
    """Log the named accounts in, with initial presence."""
    out = []
    for n in names:
        out.append(await muc_client(suite, n).online(roster=False))
    return out


def new_room(suite, label):
    return "%s-%s@rooms.%s" % (label, uuid.uuid4().hex[:8], suite.domain)


def status_codes(pres):
    x = pres.xml.find(q("x", NS_MUC_USER))
    if x is None:
        return set()
    return {s.get("code") for s in x.findall(q("status", NS_MUC_USER))}


def muc_item(pres):
    """The <item/> of a MUC presence, as a dict (empty if none)."""
    x = pres.xml.find(q("x", NS_MUC_USER))
    it = None if x is None else x.find(q("item", NS_MUC_USER))
    return {} if it is None else dict(it.attrib)


async def join(c, room, nick, maxstanzas=0):
    """Join (or create) a room with slixmpp's xep_0045 and return its
    (self-presence, subject message, occupant presences, history)."""
    # slixmpp 1.8.3's join_muc_wait prints every message's delay element
    # while it waits; keep that debug output out of the report.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            pres, subject, occupants, history = await c.plugin["xep_0045"].join_muc_wait(
                JID(room), nick, maxstanzas=maxstanzas, timeout=TIMEOUT)
        except PresenceError as e:
            raise Failure("%s could not join %s as %s: %s\n    %s" % (c.bare, room, nick, e.condition, e.presence)) from None
        except asyncio.TimeoutError:
            raise Failure("%s: no self-presence and subject from %s within %.0fs; presences:\n%s"
                          % (c.bare, room, TIMEOUT, c.pres.dump())) from None
    # The plugin counts the joiner's own presence among the occupants.
    others = [p for p in occupants if "110" not in status_codes(p)]
    return pres, subject, others, history


async def join_refused(c, room, nick):
    """Join through xep_0045 where the room must refuse; return the error
    condition slixmpp raises (PresenceError, as a client sees it)."""
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            pres, _, _, _ = await c.plugin["xep_0045"].join_muc_wait(JID(room), nick, timeout=TIMEOUT)
        except PresenceError as e:
            return e.condition
        except asyncio.TimeoutError:
            raise Failure("%s's join of %s was neither refused nor accepted within %.0fs; presences:\n%s"
                          % (c.bare, room, TIMEOUT, c.pres.dump())) from None
    raise Failure("%s joined %s but must be refused: %s" % (c.bare, room, pres))


async def plugin_call(desc, coro):
    """Await a plugin call that must succeed; turn its errors into Failure."""
    try:
        return await coro
    except IqError as e:
        raise Failure("%s: answered with an error: %s" % (desc, e.iq)) from None
    except IqTimeout:
        raise Failure("%s: no answer in time" % desc) from None


async def plugin_error(desc, coro):
    """Await a plugin call that must fail; return the error condition."""
    try:
        res = await coro
    except IqError as e:
        return e.iq["error"]["condition"]
    except IqTimeout:
        raise Failure("%s: no answer in time (an error was due)" % desc) from None
    raise Failure("%s must fail but succeeded: %s" % (desc, res))


async def set_affiliation(c, room, jid, aff):
    await plugin_call("%s sets %s's affiliation in %s to %s" % (c.bare, jid, room, aff),
                      c.plugin["xep_0045"].set_affiliation(JID(room), aff, jid=JID(jid), timeout=TIMEOUT))


def omemo_message(room, mid):
    """An OMEMO-shaped groupchat message as Conversations sends it."""
    return ("<message to='%s' type='groupchat' id='%s'><encrypted xmlns='%s'><header sid='1'>"
            "<key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>%s</payload></encrypted>"
            "<body>%s</body><store xmlns='urn:xmpp:hints'/></message>"
            % (room, mid, NS_OMEMO_LEGACY, uuid.uuid4().hex, FALLBACK))


def stanza_id(msg, by):
    for sid in msg.xml.findall(q("stanza-id", NS_SID)):
        if sid.get("by") == by:
            return sid.get("id")
    return None


def from_occupant(room, nick, mid=None):
    def pred(m):
        if str(m["from"]) != "%s/%s" % (room, nick) or m.xml.get("type") != "groupchat":
            return False
        return mid is None or m["id"] == mid
    return pred


async def send_omemo(sender, room, nick, readers=()):
    """sender posts an OMEMO message; it comes back to the sender and to
    every reader with the room's stanza-id. Returns (id, stanza-id)."""
    mid = "omemo-" + uuid.uuid4().hex[:10]
    sender.send_xml(omemo_message(room, mid))
    refl = await sender.msgs.expect(from_occupant(room, nick, mid), "the reflection of %s to its sender" % mid)
    sid = stanza_id(refl, room)
    check(sid, "the reflection of %s lacks a stanza-id by %s: %s" % (mid, room, refl))
    for r in readers:
        got = await r.msgs.expect(from_occupant(room, nick, mid), "%s at %s" % (mid, r.bare))
        check(got.xml.find(q("encrypted", NS_OMEMO_LEGACY)) is not None,
              "%s reached %s without its <encrypted/> payload: %s" % (mid, r.bare, got))
        check(stanza_id(got, room) == sid, "%s at %s: stanza-id %s, the sender saw %s: %s"
              % (mid, r.bare, stanza_id(got, room), sid, got))
    return mid, sid


async def room_info_form(c, room):
    """The room's disco#info features and its XEP-0128 form fields."""
    info = await c.iq("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=room)
    features = {f.get("var") for f in info.xml.iter(q("feature", NS_DISCO_INFO))}
    fields = {}
    for x in info.xml.iter(q("x", NS_DATA)):
        for f in x.findall(q("field", NS_DATA)):
            fields[f.get("var")] = [v.text for v in f.findall(q("value", NS_DATA))]
    return features, fields


async def room_with(suite, label, owner, owner_nick, members=()):
    """owner creates a room and makes the given clients members."""
    room = new_room(suite, label)
    await join(owner, room, owner_nick)
    for m in members:
        await set_affiliation(owner, room, m.bare, "member")
    return room


# --- scenarios ---------------------------------------------------------------

SCENARIOS, scenario = registry()


@scenario("join creates a members-only, non-anonymous, encrypted room (110, 201, 100; XEP-0045 10.1)")
async def s_join(suite):
    a, b, d = await connect(suite, "alice", "bob", "dave")
    room = new_room(suite, "join")
    pres, subject, occupants, _ = await join(a, room, "Alice")
    codes = status_codes(pres)
    check({"110", "201", "100"} <= codes, "creator's self-presence: want status 110, 201 and 100, got %s: %s" % (codes, pres))
    item = muc_item(pres)
    check(item.get("affiliation") == "owner" and item.get("role") == "moderator",
          "the creator is not owner/moderator: %s" % pres)
    check(item.get("jid") == a.full, "the creator's item lacks its real JID %s: %s" % (a.full, pres))
    check(not occupants, "a new room has occupants: %s" % occupants)
    features, fields = await room_info_form(a, room)
    for f in ("muc_membersonly", "muc_nonanonymous", "muc_persistent", NS_MAM, "urn:xmpp:sid:0"):
        check(f in features, "room disco#info lacks %s: %s" % (f, sorted(features)))
    check(fields.get(FIELD_ENCRYPTION) == ["encrypted"], "room disco#info: %s is %s, want encrypted"
          % (FIELD_ENCRYPTION, fields.get(FIELD_ENCRYPTION)))

    # Not a member: refused, and the room is invisible to them.
    cond = await join_refused(b, room, "Bob")
    check(cond == "registration-required", "a non-member's join: want registration-required, got %r" % cond)
    err = await b.iq_error("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=room)
    check(error_condition(err) == "item-not-found", "a non-member's disco#info: want item-not-found, got %s" % err)

    # Made a member, bob joins: 110 but no 201, and both see real JIDs.
    await set_affiliation(a, room, b.bare, "member")
    pres, _, occupants, _ = await join(b, room, "Bob")
    codes = status_codes(pres)
    check("110" in codes and "201" not in codes, "member's self-presence: want 110 without 201, got %s" % codes)
    check(muc_item(pres).get("affiliation") == "member", "bob's self-presence: %s" % pres)
    check([str(p["from"]) for p in occupants] == [room + "/Alice"], "bob's occupant list: %s" % occupants)
    check(muc_item(occupants[0]).get("jid") == a.full, "bob does not see alice's real JID: %s" % occupants[0])
    seen = await a.pres.expect(lambda p: str(p["from"]) == room + "/Bob", "bob's arrival at alice")
    check(muc_item(seen).get("jid") == b.full, "alice does not see bob's real JID: %s" % seen)
    # dave is still out.
    cond = await join_refused(d, room, "Dave")
    check(cond == "registration-required", "dave's join: want registration-required, got %r" % cond)


@scenario("OMEMO groupchat message reaches the other occupant with the room's stanza-id; plain body bounces (policy-violation)")
async def s_omemo_and_bounce(suite):
    a, b = await connect(suite, "alice", "bob")
    room = await room_with(suite, "omemo", a, "Alice", [b])
    await join(b, room, "Bob")
    mid, sid = await send_omemo(a, room, "Alice", readers=[b])
    got = [m for m in b.msgs.log if m["id"] == mid][0]
    check(got.xml.find(q("occupant-id", "urn:xmpp:occupant-id:0")) is not None, "no occupant-id: %s" % got)
    # stanza-ids are unique per message.
    _, sid2 = await send_omemo(b, room, "Bob", readers=[a])
    check(sid2 != sid, "two messages share stanza-id %s" % sid)

    # A plain body is not delivered: the sender gets policy-violation.
    pid = "plain-" + uuid.uuid4().hex[:8]
    b.send_xml("<message to='%s' type='groupchat' id='%s'><body>plaintext in an encrypted room</body></message>" % (room, pid))
    err = await b.msgs.expect(lambda m: m["type"] == "error" and m["id"] == pid, "the bounce of a plain groupchat body")
    check(error_condition(err) == "policy-violation", "want policy-violation, got %s" % err)
    check("OMEMO" in err["error"]["text"], "the error text does not explain: %r" % err["error"]["text"])
    await a.msgs.expect_none(lambda m: m["id"] == pid, "the plaintext message at alice")
    await b.msgs.expect_none(lambda m: m["id"] == pid and m["type"] == "groupchat", "a reflection of the plaintext")
    # A chat state (no body) still passes.
    b.send_xml("<message to='%s' type='groupchat' id='cs-%s'><composing xmlns='%s'/></message>" % (room, pid, NS_CHATSTATES))
    await a.msgs.expect(lambda m: m["id"] == "cs-" + pid, "bob's chat state at alice")


@scenario("history on join: maxstanzas=3 of 5 messages, oldest first, delayed by the room; maxstanzas=0 none")
async def s_history(suite):
    a, b, c = await connect(suite, "alice", "bob", "carol")
    room = await room_with(suite, "hist", a, "Alice", [b, c])
    sent = [await send_omemo(a, room, "Alice") for _ in range(5)]
    _, _, _, history = await join(b, room, "Bob", maxstanzas=3)
    got = [m["id"] for m in history]
    want = [mid for mid, _ in sent[2:]]
    check(got == want, "history with maxstanzas=3: want %s, got %s" % (want, got))
    for m in history:
        check(m["delay"]["from"] == room, "history message without a delay from the room: %s" % m)
        check(m.xml.find(q("encrypted", NS_OMEMO_LEGACY)) is not None, "history message lost its payload: %s" % m)
        check(stanza_id(m, room) == dict(sent)[m["id"]], "history message with another stanza-id: %s" % m)
    _, _, _, history = await join(c, room, "Carol", maxstanzas=0)
    check(not history, "maxstanzas=0 still sent history: %s" % [m["id"] for m in history])
    await c.msgs.expect_none(lambda m: m.xml.find(q("delay", NS_DELAY)) is not None and m["body"],
                             "a delayed message after joining with maxstanzas=0", wait=0.5)


@scenario("room MAM on the room JID: RSM max=2 over 5 messages, pages 2/2/1, complete on the last (XEP-0313)")
async def s_room_mam(suite):
    a, b, d = await connect(suite, "alice", "bob", "dave")
    room = await room_with(suite, "mam", a, "Alice", [b])
    sent = [await send_omemo(a, room, "Alice") for _ in range(5)]
    sids = [sid for _, sid in sent]
    mam = b.plugin["xep_0313"]  # bob is a member, not in the room
    pages, after = [], None
    for _ in range(5):
        rsm = {"max": 2}
        if after:
            rsm["after"] = after
        res = await plugin_call("room MAM page after %s" % after, mam.retrieve(jid=JID(room), rsm=rsm, timeout=TIMEOUT))
        fin = res.xml.find(q("fin", NS_MAM))
        check(fin is not None, "room MAM answer without <fin/>: %s" % res)
        results = res["mam"]["results"]
        ids = [m["mam_result"]["id"] for m in results]
        inner = [m["mam_result"]["forwarded"]["stanza"] for m in results]
        pages.append((ids, fin.get("complete"), inner))
        for m in results:
            check(m["from"] == JID(room), "a room MAM result not from the room: %s" % m)
        if fin.get("complete") == "true" or not ids:
            break
        check(res["mam_fin"]["rsm"]["last"] == ids[-1], "RSM <last/> %r is not the page's last id %r"
              % (res["mam_fin"]["rsm"]["last"], ids[-1]))
        after = ids[-1]
    desc = "\n".join("    page %d: %s complete=%s" % (i, ids, c) for i, (ids, c, _) in enumerate(pages))
    check([len(p[0]) for p in pages] == [2, 2, 1], "page sizes: want [2, 2, 1]\n%s" % desc)
    check(all(p[1] in (None, "false") for p in pages[:-1]),
          "complete='true' before the last page:\n%s" % desc)
    check(pages[-1][1] == "true", "the last page lacks complete='true':\n%s" % desc)
    got = [i for ids, _, _ in pages for i in ids]
    check(got == sids, "archive ids: want the stanza-ids %s in order, got\n%s" % (sids, desc))
    for _, _, inner in pages:
        for m in inner:
            check(m.xml.find(q("encrypted", NS_OMEMO_LEGACY)) is not None, "archived without its payload: %s" % m)
            check(str(m["from"]) == room + "/Alice", "archived message from %s, want %s/Alice" % (m["from"], room))
    # Someone who is not a member may not read it.
    cond = await plugin_error("dave's room MAM query", d.plugin["xep_0313"].retrieve(jid=JID(room), rsm={"max": 2}, timeout=TIMEOUT))
    check(cond == "forbidden", "a non-member's room MAM query: want forbidden, got %r" % cond)


@scenario("kick (role none, 307) and ban (affiliation outcast, 301)")
async def s_kick_ban(suite):
    a, b, c = await connect(suite, "alice", "bob", "carol")
    room = await room_with(suite, "kick", a, "Alice", [b, c])
    await join(b, room, "Bob")
    await join(c, room, "Carol")
    muc = a.plugin["xep_0045"]
    await plugin_call("kick Bob", muc.set_role(JID(room), "Bob", "none", reason="kick test", timeout=TIMEOUT))
    gone = await b.pres.expect(lambda p: str(p["from"]) == room + "/Bob" and p["type"] == "unavailable",
                               "bob's own unavailable presence after the kick")
    check({"110", "307"} <= status_codes(gone), "kicked self-presence: want 110 and 307, got %s: %s" % (status_codes(gone), gone))
    check("kick test" in str(gone), "the kick reason is not in bob's presence: %s" % gone)
    seen = await c.pres.expect(lambda p: str(p["from"]) == room + "/Bob" and p["type"] == "unavailable",
                               "bob's departure at carol")
    check("307" in status_codes(seen) and "110" not in status_codes(seen), "carol sees the kick as %s" % status_codes(seen))
    # A kick is not a ban: bob comes back.
    await join(b, room, "Bob")

    await set_affiliation(a, room, c.bare, "outcast")
    gone = await c.pres.expect(lambda p: str(p["from"]) == room + "/Carol" and p["type"] == "unavailable",
                               "carol's own unavailable presence after the ban")
    check({"110", "301"} <= status_codes(gone), "banned self-presence: want 110 and 301, got %s: %s" % (status_codes(gone), gone))
    seen = await b.pres.expect(lambda p: str(p["from"]) == room + "/Carol" and p["type"] == "unavailable",
                               "carol's departure at bob")
    check("301" in status_codes(seen), "bob sees the ban as %s" % status_codes(seen))
    cond = await join_refused(c, room, "Carol")
    check(cond == "forbidden", "a banned user's join: want forbidden, got %r" % cond)
    outcasts = await plugin_call("outcast list", muc.get_affiliation_list(JID(room), "outcast", timeout=TIMEOUT))
    check([str(j) for j in outcasts] == [c.bare], "outcast list: want [%s], got %s" % (c.bare, outcasts))


@scenario("affiliation change member -> admin: broadcast, admin list, and the new admin may kick")
async def s_affiliation(suite):
    a, b, c = await connect(suite, "alice", "bob", "carol")
    room = await room_with(suite, "aff", a, "Alice", [b, c])
    for cl, nick in ((b, "Bob"), (c, "Carol")):
        await join(cl, room, nick)
    for cl in (a, b, c):
        cl.pres.drop()
    # As a member, bob may not kick.
    cond = await plugin_error("bob (member) kicks carol", b.plugin["xep_0045"].set_role(JID(room), "Carol", "none", timeout=TIMEOUT))
    check(cond == "forbidden", "a member's kick: want forbidden, got %r" % cond)

    await set_affiliation(a, room, b.bare, "admin")
    own = await b.pres.expect(lambda p: str(p["from"]) == room + "/Bob", "bob's own presence after becoming admin")
    check(muc_item(own).get("affiliation") == "admin" and muc_item(own).get("role") == "moderator",
          "bob's new item: %s" % own)
    check("110" in status_codes(own), "bob's own presence lacks 110: %s" % own)
    seen = await c.pres.expect(lambda p: str(p["from"]) == room + "/Bob", "bob's change at carol")
    check(muc_item(seen).get("affiliation") == "admin", "carol sees bob as %s" % muc_item(seen))
    admins = await plugin_call("admin list", a.plugin["xep_0045"].get_affiliation_list(JID(room), "admin", timeout=TIMEOUT))
    check([str(j) for j in admins] == [b.bare], "admin list: want [%s], got %s" % (b.bare, admins))
    members = await plugin_call("member list", a.plugin["xep_0045"].get_affiliation_list(JID(room), "member", timeout=TIMEOUT))
    check([str(j) for j in members] == [c.bare], "member list: want [%s], got %s" % (c.bare, members))
    # Now a moderator, bob kicks carol.
    await plugin_call("bob (admin) kicks carol", b.plugin["xep_0045"].set_role(JID(room), "Carol", "none", timeout=TIMEOUT))
    gone = await c.pres.expect(lambda p: str(p["from"]) == room + "/Carol" and p["type"] == "unavailable", "carol kicked by bob")
    check("307" in status_codes(gone), "carol's removal: %s" % gone)


@scenario("moderator retraction (XEP-0425 urn:xmpp:message-moderate:1): occupants get the retract, the archive a tombstone")
async def s_moderation(suite):
    a, b = await connect(suite, "alice", "bob")
    room = await room_with(suite, "mod", a, "Alice", [b])
    await join(b, room, "Bob")
    mid, sid = await send_omemo(b, room, "Bob", readers=[a])

    def moderate(c, target, tag):
        return c.iq("set", "<moderate xmlns='%s' id='%s'><retract xmlns='%s'/><reason>%s</reason></moderate>"
                    % (NS_MODERATE, target, NS_RETRACT, tag), to=room)

    # bob is a participant, not a moderator.
    err = await b.iq_error("set", "<moderate xmlns='%s' id='%s'><retract xmlns='%s'/></moderate>"
                           % (NS_MODERATE, sid, NS_RETRACT), to=room)
    check(error_condition(err) == "forbidden", "a participant's moderation: want forbidden, got %s" % err)
    await moderate(a, sid, "spam")

    def retract_of(m):
        r = m.xml.find(q("retract", NS_RETRACT))
        return m["from"] == JID(room) and r is not None and r.get("id") == sid

    for cl in (a, b):
        got = await cl.msgs.expect(retract_of, "the retraction of %s at %s" % (sid, cl.bare))
        r = got.xml.find(q("retract", NS_RETRACT))
        check(r.find(q("moderated", NS_MODERATE)) is not None, "retract without <moderated/>: %s" % got)
        check(got["type"] == "groupchat", "retraction not a groupchat message: %s" % got)
    # The archive keeps a tombstone in place of the message.
    res = await plugin_call("room MAM after moderation", a.plugin["xep_0313"].retrieve(jid=JID(room), timeout=TIMEOUT))
    by_id = {m["mam_result"]["id"]: m["mam_result"]["forwarded"]["stanza"] for m in res["mam"]["results"]}
    check(sid in by_id, "the moderated message left the archive entirely: %s" % list(by_id))
    tomb = by_id[sid]
    check(tomb.xml.find(q("retracted", NS_RETRACT)) is not None, "no <retracted/> tombstone: %s" % tomb)
    check(tomb.xml.find(q("encrypted", NS_OMEMO_LEGACY)) is None, "the tombstone still carries the payload: %s" % tomb)
    # An unknown id is item-not-found.
    err = await a.iq_error("set", "<moderate xmlns='%s' id='no-such-id'><retract xmlns='%s'/></moderate>"
                           % (NS_MODERATE, NS_RETRACT), to=room)
    check(error_condition(err) == "item-not-found", "moderating an unknown id: want item-not-found, got %s" % err)


@scenario("plaintext vs encrypted: only a chat admin makes a room plaintext via the config form; then a plain body is delivered")
async def s_plaintext(suite):
    a, b, chief = await connect(suite, "alice", "bob", "chief")
    room = await room_with(suite, "plain", a, "Alice", [b])
    await join(b, room, "Bob")
    muc_a, muc_chief = a.plugin["xep_0045"], chief.plugin["xep_0045"]

    async def plain(sender, label):
        pid = "%s-%s" % (label, uuid.uuid4().hex[:8])
        sender.send_xml("<message to='%s' type='groupchat' id='%s'><body>%s</body></message>" % (room, pid, pid))
        return pid

    pid = await plain(a, "before")
    err = await a.msgs.expect(lambda m: m["type"] == "error" and m["id"] == pid, "the bounce of a plain body")
    check(error_condition(err) == "policy-violation", "want policy-violation, got %s" % err)
    await b.msgs.expect_none(lambda m: m["id"] == pid, "the plaintext at bob")

    # The owner sees the field but may not change it.
    form = await plugin_call("owner reads the config form", muc_a.get_room_config(JID(room), timeout=TIMEOUT))
    check(form.get_fields()[FIELD_ENCRYPTION]["value"] == "encrypted", "config form: %s is %r"
          % (FIELD_ENCRYPTION, form.get_fields()[FIELD_ENCRYPTION]["value"]))
    form.get_fields()[FIELD_ENCRYPTION]["value"] = "plaintext"
    cond = await plugin_error("the owner (not a chat admin) makes the room plaintext",
                              muc_a.set_room_config(JID(room), form, timeout=TIMEOUT))
    check(cond == "forbidden", "owner's plaintext switch: want forbidden, got %r" % cond)

    # The chat admin (server role admin) can, without being in the room.
    form = await plugin_call("chat admin reads the config form", muc_chief.get_room_config(JID(room), timeout=TIMEOUT))
    form.get_fields()[FIELD_ENCRYPTION]["value"] = "plaintext"
    await plugin_call("chat admin makes the room plaintext", muc_chief.set_room_config(JID(room), form, timeout=TIMEOUT))
    for cl in (a, b):
        note = await cl.msgs.expect(lambda m: m["from"] == JID(room) and "104" in status_codes(m),
                                    "the configuration-change notice (104) at %s" % cl.bare)
        check(note["type"] == "groupchat", "104 notice: %s" % note)
    _, fields = await room_info_form(a, room)
    check(fields.get(FIELD_ENCRYPTION) == ["plaintext"], "after the switch, disco#info says %s" % fields.get(FIELD_ENCRYPTION))

    pid = await plain(a, "after")
    got = await b.msgs.expect(from_occupant(room, "Alice", pid), "a plain body in the plaintext room at bob")
    check(got["body"] == pid, "body %r, want %r" % (got["body"], pid))
    check(stanza_id(got, room), "plain message without the room's stanza-id: %s" % got)
    await a.msgs.expect(from_occupant(room, "Alice", pid), "the reflection to alice")
    await a.msgs.expect_none(lambda m: m["type"] == "error" and m["id"] == pid, "a bounce in a plaintext room", wait=0.3)

    # And back: encrypted again, plaintext bounces again.
    form = await plugin_call("chat admin reads the form again", muc_chief.get_room_config(JID(room), timeout=TIMEOUT))
    form.get_fields()[FIELD_ENCRYPTION]["value"] = "encrypted"
    await plugin_call("chat admin makes the room encrypted", muc_chief.set_room_config(JID(room), form, timeout=TIMEOUT))
    pid = await plain(a, "again")
    err = await a.msgs.expect(lambda m: m["type"] == "error" and m["id"] == pid, "the bounce once encrypted again")
    check(error_condition(err) == "policy-violation", "want policy-violation, got %s" % err)
    suite.note("%s switched %s to plaintext and back to encrypted" % (chief.bare, room))


# --- runner ------------------------------------------------------------------

async def close_client(c):
    await c.close()  # leave rooms with a proper </stream:stream>


async def run(args):
    return await run_scenarios(args, SCENARIOS, "MUC", close_client)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--c2s-port", type=int, required=True)
    p.add_argument("--tls-port", type=int, required=True)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--cafile", required=True, help="the server's self-signed certificate, trusted for this run")
    p.add_argument("--accounts", required=True)
    p.add_argument("--only", action="append", help="run scenarios whose name contains this")
    p.add_argument("--scenario-timeout", type=int, default=60)
    p.add_argument("--debug", action="store_true", help="log every stanza")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
