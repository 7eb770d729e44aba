#!/usr/bin/python3
"""Interop scenarios for hearth, driven by slixmpp (an independent client).

Every scenario checks what RFC 6120/6121 and the XEPs require, not what the
server happens to do today. Each prints one PASS or FAIL line (FAIL with the
stanzas that were sent and received); SHOULD-level deviations print NOTE
lines and do not fail. The exit status is non-zero if anything failed.

Usage (normally run by interop_test.go):
  slixmpp_suite.py --host 127.0.0.1 --c2s-port P --tls-port P2 \
      --domain localhost --cafile DATA/cert.pem --accounts FILE [--only NAME]

FILE has one "localpart password" per line, as for `hearth admin user import`.
The scenarios expect fresh accounts (a new instance), as the driver makes.
"""

import argparse
import asyncio
import copy
import datetime
import logging
import ssl
import sys
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

# The E2EE scenarios import omemo_clients from this directory; a run must
# not leave __pycache__ behind in the checkout.
sys.dont_write_bytecode = True
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_CLIENT = "jabber:client"
NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_DELAY = "urn:xmpp:delay"
NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VCARD = "vcard-temp"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_DATA = "jabber:x:data"
NS_OMEMO_LEGACY = "eu.siacs.conversations.axolotl"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
HEARTH_E2EE_FORM = "https://github.com/merveilles/hearth/e2ee"

TIMEOUT = 10.0  # seconds to wait for something that must arrive
QUIET = 1.5  # seconds to wait to be sure something does not arrive


class Failure(Exception):
    """A scenario's expectation was not met."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def q(tag, ns):
    return "{%s}%s" % (ns, tag)


def error_condition(stanza):
    """The defined condition of a stanza error, or ''."""
    err = stanza.xml.find(q("error", NS_CLIENT))
    if err is None:
        return ""
    for child in err:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return ""


def has_app_condition(stanza, tag, ns):
    err = stanza.xml.find(q("error", NS_CLIENT))
    return err is not None and err.find(q(tag, ns)) is not None


class Box:
    """Stanzas received by one client, for scenarios to wait on."""

    def __init__(self, what):
        self.what = what
        self.items = []  # not yet consumed by expect
        self.log = []  # everything, in arrival order
        self.changed = asyncio.Event()

    def put(self, stanza):
        self.items.append(stanza)
        self.log.append(stanza)
        self.changed.set()

    def dump(self):
        if not self.items:
            return "(no %s received)" % self.what
        return "\n".join("    " + str(s) for s in self.items[-8:])

    async def expect(self, pred, desc, timeout=TIMEOUT):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, s in enumerate(self.items):
                if pred(s):
                    del self.items[i]
                    return s
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Failure("timed out after %.0fs waiting for %s; %s pending:\n%s"
                              % (timeout, desc, self.what, self.dump()))
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def expect_none(self, pred, desc, wait=QUIET):
        await asyncio.sleep(wait)
        for s in self.items:
            if pred(s):
                raise Failure("%s arrived but must not:\n    %s" % (desc, s))

    def drop(self, pred=lambda s: True):
        self.items = [s for s in self.items if not pred(s)]


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records what it receives."""

    def __init__(self, suite, localpart, resource, password=None, mech=None, plugins=()):
        jid = "%s@%s/%s" % (localpart, suite.domain, resource)
        if password is None:
            password = suite.password(localpart)
        super().__init__(jid, password, sasl_mech=mech)
        self.suite = suite
        self.use_ipv6 = False  # hearth dev listens on 127.0.0.1 only
        # The scenarios answer subscription requests themselves.
        self.auto_authorize = None
        self.auto_subscribe = False
        if suite.cafile:
            self.ca_certs = Path(suite.cafile)
        else:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ("xep_0030", "xep_0054", "xep_0191", "xep_0199", "xep_0203") + tuple(plugins):
            self.register_plugin(plugin)
        self.msgs = Box("messages")
        self.pres = Box("presences")
        self.pushes = Box("roster pushes")
        self.iqs = Box("iq sets")
        self.stream_features = []  # raw <stream:features/> elements, in order
        self.auth_failures = []
        self.register_handler(Callback("interop message", MatchXPath(q("message", NS_CLIENT)), self.msgs.put))
        self.register_handler(Callback("interop presence", MatchXPath(q("presence", NS_CLIENT)), self.pres.put))
        self.register_handler(Callback("interop roster push",
                                       MatchXPath("%s/%s" % (q("iq", NS_CLIENT), q("query", NS_ROSTER))),
                                       self._iq_roster))
        self.register_handler(Callback("interop block push",
                                       MatchXPath("%s/%s" % (q("iq", NS_CLIENT), q("block", NS_BLOCKING))),
                                       self.iqs.put))
        self.register_handler(Callback("interop unblock push",
                                       MatchXPath("%s/%s" % (q("iq", NS_CLIENT), q("unblock", NS_BLOCKING))),
                                       self.iqs.put))
        self.register_handler(Callback("interop features", MatchXPath(q("features", NS_STREAM)),
                                       lambda f: self.stream_features.append(copy.deepcopy(f.xml))))
        self.add_event_handler("failed_auth", lambda s: self.auth_failures.append(str(s)))

    def _iq_roster(self, iq):
        if iq["type"] == "set":
            self.pushes.put(iq)

    @property
    def full(self):
        return self.boundjid.full

    @property
    def bare(self):
        return self.boundjid.bare

    async def login(self, direct=False, timeout=TIMEOUT, alpn=True):
        """Connect (STARTTLS or direct TLS) and wait for the bound session."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finish(exc=None):
            if done.done():
                return
            if exc is None:
                done.set_result(True)
            else:
                done.set_exception(exc)

        handlers = {
            "session_start": lambda _: finish(),
            "failed_all_auth": lambda _: finish(Failure("authentication failed: %s" % "; ".join(self.auth_failures))),
            "connection_failed": lambda e: finish(Failure("connection failed: %s" % e)),
            "disconnected": lambda e: finish(Failure("disconnected during login: %s" % e)),
            "ssl_invalid_chain": lambda e: finish(Failure("TLS certificate not trusted: %s" % e)),
            "stream_error": lambda e: finish(Failure("stream error: %s" % e)),
        }
        for name, fn in handlers.items():
            self.add_event_handler(name, fn)
        try:
            if direct:
                if alpn:
                    self.ssl_context.set_alpn_protocols(["xmpp-client"])
                self.connect((self.suite.host, self.suite.tls_port), use_ssl=True, force_starttls=False)
            else:
                self.connect((self.suite.host, self.suite.c2s_port), use_ssl=False, force_starttls=True)
            try:
                await asyncio.wait_for(done, timeout)
            except asyncio.TimeoutError:
                raise Failure("no session within %.0fs (features seen: %s)"
                              % (timeout, [ET.tostring(f, encoding="unicode") for f in self.stream_features]))
        except BaseException:
            self.kill()
            raise
        finally:
            for name, fn in handlers.items():
                self.del_event_handler(name, fn)
        self.suite.clients.append(self)

    async def online(self, direct=False, roster=True, **presence):
        """Log in, fetch the roster (an interested resource) and send
        initial presence: a normal client session."""
        await self.login(direct=direct)
        if roster:
            await self.roster_get()
        self.send_presence(**presence)
        # The server sends initial presence back to the resource that sent
        # it (RFC 6121 4.2.2); once it is here, the server has processed it.
        await self.pres.expect(presence_from(self.full),
                               "own initial presence reflected to %s (RFC 6121 4.2.2)" % self.full)
        return self

    async def close(self):
        """Close the stream properly (</stream:stream>) and wait."""
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=2.0), 5)
        except (asyncio.TimeoutError, Exception):
            self.kill()

    def kill(self):
        """Drop the TCP connection without closing the stream."""
        self.cancel_connection_attempt()
        if self.transport is not None:
            try:
                self.abort()
            except Exception:
                pass  # slixmpp cannot abort a TLS transport it already lost

    # --- IQ helpers --------------------------------------------------------

    async def iq(self, type_, payload=None, to=None, timeout=TIMEOUT):
        """Send an IQ with a raw XML payload; return the result or raise
        Failure with the error stanza."""
        iq = self.make_iq(ito=to, itype=type_)
        if payload is not None:
            iq.xml.append(ET.fromstring(payload) if isinstance(payload, str) else payload)
        try:
            return await iq.send(timeout=timeout)
        except IqError as e:
            raise Failure("IQ %s was answered with an error:\n    sent:     %s\n    received: %s"
                          % (type_, iq, e.iq)) from None
        except IqTimeout:
            raise Failure("IQ %s got no answer in %.0fs:\n    sent: %s" % (type_, timeout, iq)) from None

    async def iq_error(self, type_, payload=None, to=None, timeout=TIMEOUT):
        """Send an IQ that must be answered with an error; return the error."""
        iq = self.make_iq(ito=to, itype=type_)
        if payload is not None:
            iq.xml.append(ET.fromstring(payload) if isinstance(payload, str) else payload)
        try:
            res = await iq.send(timeout=timeout)
        except IqError as e:
            return e.iq
        except IqTimeout:
            raise Failure("IQ %s got no answer in %.0fs (an error was due):\n    sent: %s"
                          % (type_, timeout, iq)) from None
        raise Failure("IQ %s must fail but succeeded:\n    sent:     %s\n    received: %s" % (type_, iq, res))

    async def roster_get(self, ver=None):
        payload = ET.Element(q("query", NS_ROSTER))
        if ver is not None:
            payload.set("ver", ver)
        return await self.iq("get", payload)

    async def roster_set(self, jid, name=None, groups=(), remove=False):
        query = ET.Element(q("query", NS_ROSTER))
        item = ET.SubElement(query, q("item", NS_ROSTER), jid=jid)
        if name is not None:
            item.set("name", name)
        if remove:
            item.set("subscription", "remove")
        for g in groups:
            ET.SubElement(item, q("group", NS_ROSTER)).text = g
        return await self.iq("set", query)

    def send_xml(self, xml):
        self.send_raw(xml)

    def message(self, to, body, mtype="chat", mid=None, thread=None):
        m = self.make_message(mto=to, mbody=body, mtype=mtype)
        m["id"] = mid or uuid.uuid4().hex
        if thread:
            m["thread"] = thread
        m.send()
        return m


def roster_items(iq):
    """{jid: item element} of a roster result or push; None if no query."""
    query = iq.xml.find(q("query", NS_ROSTER))
    if query is None:
        return None
    return {i.get("jid"): i for i in query.findall(q("item", NS_ROSTER))}


def roster_ver(iq):
    query = iq.xml.find(q("query", NS_ROSTER))
    return None if query is None else query.get("ver")


def item_groups(item):
    return sorted(g.text or "" for g in item.findall(q("group", NS_ROSTER)))


def describe_item(item):
    return ET.tostring(item, encoding="unicode") if item is not None else "(absent)"


def push_for(jid, **attrs):
    """Predicate: a roster push carrying jid with the given attributes."""
    def pred(iq):
        items = roster_items(iq)
        if not items or jid not in items:
            return False
        item = items[jid]
        for k, v in attrs.items():
            if k == "ask":
                if (item.get("ask") or None) != v:
                    return False
            elif item.get(k, "none" if k == "subscription" else None) != v:
                return False
        return True
    return pred


def presence_from(jid, ptype="available", **extra):
    def pred(p):
        if str(p["from"]) != jid:
            return False
        if ptype == "available":
            if p.xml.get("type") not in (None, ""):
                return False
        elif p.xml.get("type") != ptype:
            return False
        for k, v in extra.items():
            if p[k] != v:
                return False
        return True
    return pred


def message_from(jid, body=None, mtype=None):
    def pred(m):
        if str(m["from"]) != jid:
            return False
        if body is not None and m["body"] != body:
            return False
        if mtype is not None and (m.xml.get("type") or "normal") != mtype:
            return False
        return True
    return pred


def body_is(body):
    return lambda m: m["body"] == body


# --- scenarios ---------------------------------------------------------------

def registry():
    """A list of (name, scenario) and the decorator that adds to it."""
    scenarios = []

    def scenario(name):
        def register(fn):
            scenarios.append((name, fn))
            return fn
        return register
    return scenarios, scenario


SCENARIOS, scenario = registry()


@scenario("login over STARTTLS")
async def s_login_starttls(suite):
    c = Client(suite, "alice", "starttls")
    await c.login()
    check(c.bare == "alice@%s" % suite.domain, "bound JID %s is not alice's account" % c.full)
    check(c.boundjid.resource != "", "no resource bound: %s" % c.full)
    if c.boundjid.resource != "starttls":
        suite.note("server replaced the requested resource 'starttls' with %r (allowed by RFC 6120 7.7.2.1)"
                   % c.boundjid.resource)
    first = c.stream_features[0] if c.stream_features else None
    check(first is not None, "no stream features received")
    tls = first.find(q("starttls", NS_TLS))
    check(tls is not None and tls.find(q("required", NS_TLS)) is not None,
          "first stream features must offer <starttls><required/></starttls>, got %s"
          % ET.tostring(first, encoding="unicode"))
    check(first.find(q("mechanisms", NS_SASL)) is None,
          "SASL must not be offered before TLS: %s" % ET.tostring(first, encoding="unicode"))
    sasl_features = [f for f in c.stream_features if f.find(q("mechanisms", NS_SASL)) is not None]
    check(sasl_features, "no SASL mechanisms offered after STARTTLS")
    mechs = [m.text for m in sasl_features[0].find(q("mechanisms", NS_SASL))]
    for m in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        check(m in mechs, "mechanism %s not offered: %s" % (m, mechs))
    check(not [m for m in mechs if m.endswith("-PLUS")], "-PLUS offered without channel binding: %s" % mechs)
    sslobj = c.transport.get_extra_info("ssl_object")
    check(sslobj is not None, "stream is not encrypted after STARTTLS")
    check(sslobj.version() in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % sslobj.version())
    await c.close()


@scenario("login over direct TLS (XEP-0368)")
async def s_login_direct(suite):
    c = Client(suite, "bob", "direct")
    await c.login(direct=True)
    check(c.bare == "bob@%s" % suite.domain, "bound JID %s is not bob's account" % c.full)
    sslobj = c.transport.get_extra_info("ssl_object")
    check(sslobj is not None, "direct TLS stream is not encrypted")
    check(sslobj.selected_alpn_protocol() == "xmpp-client",
          "ALPN: server selected %r, want 'xmpp-client'" % sslobj.selected_alpn_protocol())
    for f in c.stream_features:
        check(f.find(q("starttls", NS_TLS)) is None,
              "STARTTLS offered on an already encrypted stream: %s" % ET.tostring(f, encoding="unicode"))
    await c.close()
    # Clients SHOULD send ALPN (XEP-0368 3); many, like slixmpp by default, do not.
    plain = Client(suite, "bob", "direct-no-alpn")
    try:
        await plain.login(direct=True, alpn=False)
        await plain.close()
    except Failure as e:
        suite.note("direct TLS without ALPN refused (%s); slixmpp and other clients do not send ALPN by default" % e)


async def login_with_mech(suite, mech):
    c = Client(suite, "carol", "mech-" + mech.lower(), mech=mech)
    await c.login()
    used = c["feature_mechanisms"].mech
    check(used is not None and used.name == mech, "client used %s, not %s" % (used and used.name, mech))
    await c.close()


@scenario("SASL SCRAM-SHA-256")
async def s_scram256(suite):
    await login_with_mech(suite, "SCRAM-SHA-256")


@scenario("SASL SCRAM-SHA-1")
async def s_scram1(suite):
    await login_with_mech(suite, "SCRAM-SHA-1")


@scenario("SASL PLAIN (over TLS)")
async def s_plain(suite):
    await login_with_mech(suite, "PLAIN")


@scenario("wrong password is rejected")
async def s_wrong_password(suite):
    for label, user, pw in (("wrong password", "mallory", "not-" + suite.password("mallory")),
                            ("unknown account", "nobody-%s" % uuid.uuid4().hex[:6], "whatever")):
        c = Client(suite, user, "bad", password=pw, mech="SCRAM-SHA-256")
        try:
            await c.login()
        except Failure as e:
            check(c.auth_failures, "%s: login failed but not by SASL failure: %s" % (label, e))
            failure = ET.fromstring(c.auth_failures[0])
            check(failure.find(q("not-authorized", NS_SASL)) is not None,
                  "%s: SASL failure must be <not-authorized/> (RFC 6120 6.5.10), got %s"
                  % (label, c.auth_failures[0]))
        else:
            raise Failure("%s: login as %s succeeded" % (label, c.full))
        finally:
            c.kill()
    # The real user is not locked out by someone else's failures.
    ok = Client(suite, "mallory", "good")
    await ok.login()
    await ok.close()


@scenario("messages both ways (STARTTLS <-> direct TLS)")
async def s_messages(suite):
    a = await Client(suite, "alice", "msg").online(roster=False)
    b = await Client(suite, "bob", "msg").online(direct=True, roster=False)
    # full JID to full JID
    sent = a.message(b.full, "hello bob <&> \"quoted\" 'single' \u00e9\u00e8 \U0001F525", thread="t-1")
    got = await b.msgs.expect(message_from(a.full, sent["body"]), "alice's chat message to bob's full JID")
    check(got["type"] == "chat", "type changed: %s" % got)
    check(got["id"] == sent["id"], "id not preserved: sent %s got %s" % (sent["id"], got["id"]))
    check(got["thread"] == "t-1", "thread not preserved: %s" % got)
    check(str(got["to"]) == b.full, "'to' is %s, want %s" % (got["to"], b.full))
    # reply to the bare JID
    reply = b.message(a.bare, "hi alice, from direct TLS")
    got = await a.msgs.expect(message_from(b.full, reply["body"]), "bob's reply to alice's bare JID")
    check(got["type"] == "chat", "type changed: %s" % got)
    # type normal, and a larger body
    big = "x" * 20000
    b.message(a.bare, big, mtype="normal")
    await a.msgs.expect(message_from(b.full, big), "bob's 20 KB normal message")
    await a.close()
    await b.close()


@scenario("message routing: bare JID, priorities, unknown resource (RFC 6121 8.5)")
async def s_routing(suite):
    hi = await Client(suite, "bob", "route-high").online(roster=False, ppriority=10)
    lo = await Client(suite, "bob", "route-low").online(roster=False, ppriority=1)
    a = await Client(suite, "alice", "route").online(roster=False)
    a.message(hi.bare, "to the bare JID")
    await hi.msgs.expect(body_is("to the bare JID"), "chat to bob's bare JID at the priority-10 resource")
    # a chat message to an unavailable resource is treated as sent to the
    # bare JID (RFC 6121 8.5.3.2.1)
    a.message(hi.bare + "/no-such-resource", "to a gone resource")
    await hi.msgs.expect(body_is("to a gone resource"),
                         "chat to bob/no-such-resource delivered to the priority-10 resource")
    # an IQ to an unavailable resource gets service-unavailable (8.5.3.2.3)
    err = await a.iq_error("get", "<query xmlns='jabber:iq:version'/>", to=hi.bare + "/no-such-resource")
    check(error_condition(err) == "service-unavailable",
          "IQ to unavailable resource: want service-unavailable, got %s" % err)
    # an IQ to an account that does not exist gets service-unavailable (8.5.1)
    err = await a.iq_error("get", "<query xmlns='jabber:iq:version'/>", to="nobody-x@%s" % suite.domain)
    check(error_condition(err) == "service-unavailable",
          "IQ to non-existent account: want service-unavailable, got %s" % err)
    for c in (a, hi, lo):
        await c.close()


@scenario("roster: add, update, remove, pushes and versioning (RFC 6121 2, XEP-0237)")
async def s_roster(suite):
    r1 = Client(suite, "rosa", "one")
    await r1.login()
    r2 = Client(suite, "rosa", "two")
    await r2.login(direct=True)
    ver_supported = any(f.find(q("ver", NS_ROSTERVER)) is not None for f in r1.stream_features)
    if not ver_supported:
        raise Failure("roster versioning (XEP-0237 <ver xmlns='urn:xmpp:features:rosterver'/>) not advertised")
    res = await r1.roster_get(ver="")
    check(roster_items(res) is not None, "roster get with ver='' must return the roster: %s" % res)
    v0 = roster_ver(res)
    check(v0 is not None, "roster result has no 'ver' although versioning is advertised: %s" % res)
    await r2.roster_get()  # r2 is now an interested resource too
    contact = "zed@%s" % suite.domain

    await r1.roster_set(contact, name="Zed", groups=["Friends", "Work"])
    for c in (r1, r2):
        p = await c.pushes.expect(push_for(contact), "roster push adding %s on %s" % (contact, c.full))
        item = roster_items(p)[contact]
        check(item.get("name") == "Zed" and item_groups(item) == ["Friends", "Work"],
              "push item wrong: %s" % describe_item(item))
        check(item.get("subscription", "none") == "none", "new item must have subscription none: %s"
              % describe_item(item))
        check(p["from"] == "" or p["from"] == c.bare, "push from %s (must be empty or the bare JID)" % p["from"])
        v1 = roster_ver(p)
        check(v1 and v1 != v0, "push must carry a new version (had %r, push has %r)" % (v0, v1))
    res = await r1.roster_get()
    item = (roster_items(res) or {}).get(contact)
    check(item is not None and item.get("name") == "Zed" and item_groups(item) == ["Friends", "Work"],
          "roster after add: %s" % describe_item(item))

    await r1.roster_set(contact, name="Zed Z", groups=["Work"])
    for c in (r1, r2):
        p = await c.pushes.expect(push_for(contact, name="Zed Z"), "roster push updating %s" % contact)
        check(item_groups(roster_items(p)[contact]) == ["Work"], "push after update: %s" % p)
    v2 = roster_ver(p)
    res = await r1.roster_get()
    item = (roster_items(res) or {}).get(contact)
    check(item is not None and item.get("name") == "Zed Z" and item_groups(item) == ["Work"],
          "roster after update: %s" % describe_item(item))

    # Up to date: an empty result or the full roster (RFC 6121 2.6.3).
    res = await r1.roster_get(ver=v2)
    items = roster_items(res)
    if items is not None:
        suite.note("roster get with the current version returned the full roster instead of an empty result")
        check(contact in items, "full roster returned for current ver lacks %s: %s" % (contact, res))
    # Stale version: the full roster or the missing changes as pushes.
    r1.pushes.drop()
    res = await r1.roster_get(ver=v0)
    items = roster_items(res)
    if items is None:
        await r1.pushes.expect(push_for(contact, name="Zed Z"),
                               "interim roster push after a get with a stale version")
    else:
        check(contact in items and items[contact].get("name") == "Zed Z",
              "roster for stale version: %s" % res)

    # Two items in one set is bad-request (RFC 6121 2.3.3).
    err = await r1.iq_error("set", "<query xmlns='jabber:iq:roster'><item jid='x1@%s'/><item jid='x2@%s'/></query>"
                            % (suite.domain, suite.domain))
    check(error_condition(err) == "bad-request", "two items in one roster set: want bad-request, got %s" % err)

    await r1.roster_set(contact, remove=True)
    for c in (r1, r2):
        await c.pushes.expect(push_for(contact, subscription="remove"), "roster push removing %s on %s"
                              % (contact, c.full))
    res = await r1.roster_get()
    check(contact not in (roster_items(res) or {}), "%s still in roster after remove: %s" % (contact, res))
    await r1.close()
    await r2.close()


async def subscribe(user, contact, suite):
    """user subscribes to contact's presence and contact approves (RFC 6121
    3.1), both online with an interested resource; checks every step."""
    ub, cb = user.bare, contact.bare
    user.send_presence(pto=cb, ptype="subscribe")
    await user.pushes.expect(push_for(cb, ask="subscribe"),
                             "roster push to %s with ask='subscribe' for %s (RFC 6121 3.1.2)" % (ub, cb))
    await contact.pres.expect(lambda p: p.xml.get("type") == "subscribe" and str(p["from"]) == ub,
                              "subscribe from %s (bare JID) at %s (RFC 6121 3.1.3)" % (ub, contact.full))
    contact.send_presence(pto=ub, ptype="subscribed")
    await contact.pushes.expect(lambda iq: push_for(ub, subscription="from")(iq) or push_for(ub, subscription="both")(iq),
                                "roster push to %s with subscription from/both for %s (RFC 6121 3.1.5)" % (cb, ub))
    await user.pres.expect(lambda p: p.xml.get("type") == "subscribed" and str(p["from"]) == cb,
                           "subscribed from %s at %s (RFC 6121 3.1.6)" % (cb, user.full))
    await user.pushes.expect(lambda iq: (push_for(cb, subscription="to", ask=None)(iq)
                                         or push_for(cb, subscription="both", ask=None)(iq)),
                             "roster push to %s with subscription to/both for %s (RFC 6121 3.1.6)" % (ub, cb))
    await user.pres.expect(presence_from(contact.full),
                           "available presence of %s after the subscription was approved (RFC 6121 3.1.5)"
                           % contact.full)


@scenario("presence subscription both ways -> both (RFC 6121 3.1)")
async def s_subscription(suite):
    d = await Client(suite, "dave", "sub").online()
    e = await Client(suite, "erin", "sub").online(direct=True)
    await subscribe(d, e, suite)
    await subscribe(e, d, suite)
    for c, other in ((d, e), (e, d)):
        item = (roster_items(await c.roster_get()) or {}).get(other.bare)
        check(item is not None and item.get("subscription") == "both" and not item.get("ask"),
              "%s's roster item for %s must be subscription='both' without ask: %s"
              % (c.bare, other.bare, describe_item(item)))
    await d.close()
    await e.close()


def presence_type(ptype, from_bare):
    return lambda p: p.xml.get("type") == ptype and str(p["from"]) == from_bare


async def mutual(suite, a_name, b_name):
    """Two online clients with subscription both, built per RFC 6121 3.1."""
    a = await Client(suite, a_name, "main").online()
    b = await Client(suite, b_name, "main").online(direct=True)
    await subscribe(a, b, suite)
    await subscribe(b, a, suite)
    return a, b


@scenario("unsubscribe from a contact's presence (RFC 6121 3.3)")
async def s_unsubscribe(suite):
    n, o = await mutual(suite, "nina", "oscar")
    n.send_presence(pto=o.bare, ptype="unsubscribe")
    await n.pushes.expect(push_for(o.bare, subscription="from"),
                          "roster push to nina: oscar now 'from' (RFC 6121 3.3.2)")
    await o.pres.expect(presence_type("unsubscribe", n.bare), "unsubscribe from nina at oscar (RFC 6121 3.3.3)")
    await o.pushes.expect(push_for(n.bare, subscription="to"), "roster push to oscar: nina now 'to' (RFC 6121 3.3.3)")
    await n.pres.expect(presence_from(o.full, "unavailable"),
                        "unavailable from oscar's resource at nina after she unsubscribed (RFC 6121 3.3.3)")
    # oscar's presence no longer reaches nina; nina's still reaches oscar.
    o.send_presence(pstatus="only for my subscribers")
    n.send_presence(pstatus="nina still shares")
    await o.pres.expect(presence_from(n.full, status="nina still shares"), "nina's presence at oscar (still 'to')")
    await n.pres.expect_none(presence_from(o.full, status="only for my subscribers"),
                             "oscar's presence at nina after she unsubscribed")
    await n.close()
    await o.close()


@scenario("cancel a contact's subscription (RFC 6121 3.2)")
async def s_cancel(suite):
    p, r = await mutual(suite, "pat", "quinn")
    # pat cancels quinn's subscription to pat's presence: both -> to / from.
    p.send_presence(pto=r.bare, ptype="unsubscribed")
    await p.pushes.expect(push_for(r.bare, subscription="to"),
                          "roster push to pat: quinn now 'to' (RFC 6121 3.2.2)")
    await r.pres.expect(presence_from(p.full, "unavailable"),
                        "unavailable from pat's resource at quinn when pat cancelled (RFC 6121 3.2.2)")
    await r.pres.expect(presence_type("unsubscribed", p.bare), "unsubscribed from pat at quinn (RFC 6121 3.2.3)")
    await r.pushes.expect(push_for(p.bare, subscription="from"),
                          "roster push to quinn: pat now 'from' (RFC 6121 3.2.3)")
    p.send_presence(pstatus="after cancel")
    r.send_presence(pstatus="quinn still shares")
    await p.pres.expect(presence_from(r.full, status="quinn still shares"), "quinn's presence at pat (still 'to')")
    await r.pres.expect_none(presence_from(p.full, status="after cancel"), "pat's presence at quinn after the cancel")
    await p.close()
    await r.close()


@scenario("remove a subscribed contact from the roster (RFC 6121 2.5.2)")
async def s_roster_remove_subscribed(suite):
    a, b = await mutual(suite, "rita", "sam")
    await a.roster_set(b.bare, remove=True)
    await a.pushes.expect(push_for(b.bare, subscription="remove"), "roster push removing sam at rita")
    await b.pres.expect(presence_type("unsubscribe", a.bare),
                        "unsubscribe from rita at sam after she removed him (RFC 6121 2.5.2)")
    await b.pres.expect(presence_type("unsubscribed", a.bare),
                        "unsubscribed from rita at sam after she removed him (RFC 6121 2.5.2)")
    await b.pushes.expect(push_for(a.bare, subscription="none"), "roster push to sam: rita now 'none'")
    # RFC 6121 2.5.2 names only the unsubscribe/unsubscribed; without an
    # unavailable, sam keeps showing rita online, so it is noted.
    try:
        await b.pres.expect(presence_from(a.full, "unavailable"), "", timeout=3)
    except Failure:
        suite.note("no unavailable from %s at %s after she removed him with subscription both: "
                   "he keeps seeing her online" % (a.full, b.bare))
    res = await a.roster_get()
    check(b.bare not in (roster_items(res) or {}), "sam still in rita's roster after remove: %s" % res)
    a.send_presence(pstatus="after removal")
    await b.pres.expect_none(presence_from(a.full, status="after removal"), "rita's presence at sam after the removal")
    await a.close()
    await b.close()


@scenario("presence broadcast, probes and unavailable (RFC 6121 4)")
async def s_broadcast(suite):
    f = await Client(suite, "frank", "main").online()
    g = await Client(suite, "grace", "main").online()
    await subscribe(f, g, suite)
    await subscribe(g, f, suite)
    # A new resource of grace: its initial presence goes to frank and to
    # grace's other resource; it gets frank's presence (probe, 4.2.2/4.3).
    g2 = Client(suite, "grace", "second")
    await g2.login(direct=True)
    await g2.roster_get()
    g2.send_presence(pshow="away", pstatus="lunch", ppriority=3)
    p = await f.pres.expect(presence_from(g2.full), "grace/second's initial presence at frank")
    check(p["show"] == "away" and p["status"] == "lunch", "presence content changed: %s" % p)
    await g.pres.expect(presence_from(g2.full), "grace/second's presence at grace/main (RFC 6121 4.2.2)")
    await g2.pres.expect(presence_from(f.full), "frank's presence at grace/second (probe, RFC 6121 4.3)")
    # Presence update is broadcast.
    g2.send_presence(pshow="dnd", pstatus="busy", ppriority=3)
    await f.pres.expect(presence_from(g2.full, show="dnd", status="busy"), "grace/second's presence update at frank")
    # Explicit unavailable.
    g2.send_presence(ptype="unavailable", pstatus="bye")
    await f.pres.expect(presence_from(g2.full, "unavailable"), "grace/second's unavailable presence at frank")
    await g2.close()
    # Connection lost without unavailable: the server generates it (4.6.2... 4.5.2).
    g3 = await Client(suite, "grace", "third").online()
    await f.pres.expect(presence_from(g3.full), "grace/third's presence at frank")
    g3.kill()
    await f.pres.expect(presence_from(g3.full, "unavailable"),
                        "unavailable from grace/third after its TCP connection dropped (RFC 6121 4.5.2)")
    # Clean stream close also sends unavailable.
    await g.close()
    await f.pres.expect(presence_from(g.full, "unavailable"), "unavailable from grace/main after </stream:stream>")
    await f.close()


@scenario("directed presence (RFC 6121 4.6)")
async def s_directed(suite):
    b = await Client(suite, "bob", "dp").online(roster=False)
    a = await Client(suite, "alice", "dp").online(roster=False)
    # alice and bob have no subscription: directed presence only.
    a.send_presence(pto=b.full, pstatus="just for you")
    p = await b.pres.expect(presence_from(a.full), "alice's directed presence at bob/dp")
    check(p["status"] == "just for you", "status changed: %s" % p)
    # Going offline sends unavailable to directed-presence recipients
    # too (RFC 6121 4.6.3).
    await a.close()
    await b.pres.expect(presence_from(a.full, "unavailable"),
                        "unavailable from alice/dp at bob/dp after alice closed her stream (RFC 6121 4.6.3)")
    await b.close()


@scenario("offline messages (XEP-0160, delay XEP-0203)")
async def s_offline(suite):
    o = await Client(suite, "olga", "send").online(roster=False)
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    bodies = ["offline one", "offline two (normal)", "offline three (to a full JID)"]
    o.message("heidi@%s" % suite.domain, bodies[0], mtype="chat")
    o.message("heidi@%s" % suite.domain, bodies[1], mtype="normal")
    o.message("heidi@%s/phone" % suite.domain, bodies[2], mtype="chat")
    o.send_presence(pto="heidi@%s" % suite.domain, ptype="subscribe")
    await o.msgs.expect_none(lambda m: m.xml.get("type") == "error", "an error for a message to offline heidi")
    h = Client(suite, "heidi", "phone")
    await h.login()
    h.send_presence()
    got = []
    for b in bodies:
        got.append(await h.msgs.expect(message_from(o.full, b), "offline message %r" % b))
    seq = [m["body"] for m in sorted(got, key=h.msgs.log.index)]
    check(seq == bodies, "offline messages out of order: %s" % seq)
    for m in got:
        d = m.xml.find(q("delay", NS_DELAY))
        if d is None:
            suite.note("offline message without XEP-0203 <delay/> (XEP-0160 says SHOULD): %s" % m)
            continue
        check(d.get("from") in (suite.domain, None) or d.get("from") == "",
              "delay 'from' should be the server: %s" % ET.tostring(d, encoding="unicode"))
        stamp = d.get("stamp") or ""
        try:
            t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            raise Failure("delay stamp %r is not XEP-0082 date-time: %s" % (stamp, m))
        check(t.tzinfo is not None, "delay stamp %r has no timezone (must be UTC)" % stamp)
        check(before <= t <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5),
              "delay stamp %s is not the time the message was sent" % stamp)
    await h.pres.expect(lambda p: p.xml.get("type") == "subscribe" and str(p["from"]) == o.bare,
                        "olga's subscription request, sent while heidi was offline (RFC 6121 3.1.3)")
    await h.close()
    # Delivered once: a new session gets nothing again.
    h2 = await Client(suite, "heidi", "tablet").online(roster=False)
    await h2.msgs.expect_none(lambda m: m["body"] in bodies, "an offline message delivered a second time")
    await h2.close()
    await o.close()


@scenario("ping (XEP-0199)")
async def s_ping(suite):
    c = Client(suite, "alice", "ping")
    await c.login()
    res = await c.iq("get", "<ping xmlns='%s'/>" % NS_PING, to=suite.domain)
    check(str(res["from"]) == suite.domain, "pong from %s" % res["from"])
    check(len(res.xml) == 0, "pong must be an empty result: %s" % res)
    rtt = await c["xep_0199"].ping(jid=suite.domain, timeout=TIMEOUT)
    check(rtt is not None, "slixmpp ping returned nothing")
    await c.close()


@scenario("disco#info and disco#items on the server, caps (XEP-0030, XEP-0115)")
async def s_disco(suite):
    c = Client(suite, "alice", "disco", plugins=("xep_0115",))
    await c.login()
    res = await c.iq("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=suite.domain)
    query = res.xml.find(q("query", NS_DISCO_INFO))
    check(query is not None, "no disco#info query in result: %s" % res)
    idents = [(i.get("category"), i.get("type")) for i in query.findall(q("identity", NS_DISCO_INFO))]
    check(("server", "im") in idents, "server identity server/im missing: %s" % idents)
    feats = {f.get("var") for f in query.findall(q("feature", NS_DISCO_INFO))}
    for f in (NS_DISCO_INFO, NS_PING, NS_VCARD, NS_BLOCKING):
        check(f in feats, "feature %s not advertised; advertised: %s" % (f, sorted(feats)))
    res = await c.iq("get", "<query xmlns='%s'/>" % NS_DISCO_ITEMS, to=suite.domain)
    check(res.xml.find(q("query", NS_DISCO_ITEMS)) is not None, "no disco#items query in result: %s" % res)
    # XEP-0115: the caps in the stream features hash to what disco#info of
    # node#ver returns, computed by slixmpp's own implementation.
    caps = [f.find(q("c", NS_CAPS)) for f in c.stream_features]
    caps = [x for x in caps if x is not None]
    check(caps, "no XEP-0115 <c xmlns='%s'/> in the stream features after authentication" % NS_CAPS)
    node, ver, algo = caps[-1].get("node"), caps[-1].get("ver"), caps[-1].get("hash")
    check(node and ver and algo in c["xep_0115"].hashes,
          "caps feature incomplete or unknown hash: %s" % ET.tostring(caps[-1], encoding="unicode"))
    res = await c.iq("get", "<query xmlns='%s' node='%s#%s'/>" % (NS_DISCO_INFO, node, ver), to=suite.domain)
    check(res["disco_info"]["node"] == "%s#%s" % (node, ver), "disco#info result must echo the node: %s" % res)
    computed = c["xep_0115"].generate_verstring(res["disco_info"], algo)
    check(computed == ver, "caps ver %s does not match disco#info of %s#%s (slixmpp computes %s):\n    %s"
          % (ver, node, ver, computed, res))
    # An unknown node is item-not-found (XEP-0030 3.1).
    err = await c.iq_error("get", "<query xmlns='%s' node='no-such-node-%s'/>" % (NS_DISCO_INFO, uuid.uuid4().hex[:6]),
                           to=suite.domain)
    check(error_condition(err) == "item-not-found", "disco#info of unknown node: want item-not-found, got %s" % err)
    await c.close()


@scenario("vcard-temp set and get (XEP-0054)")
async def s_vcard(suite):
    a = Client(suite, "alice", "vcard")
    await a.login()
    b = Client(suite, "bob", "vcard")
    await b.login(direct=True)
    nick = "ali-%s" % uuid.uuid4().hex[:6]
    await a.iq("set", "<vCard xmlns='vcard-temp'><FN>Alice Interop</FN><NICKNAME>%s</NICKNAME>"
                      "<DESC>caf\u00e9 &amp; tea</DESC></vCard>" % nick)

    def fields(res):
        v = res.xml.find(q("vCard", NS_VCARD))
        check(v is not None, "no vCard in result: %s" % res)
        return {ch.tag.split("}", 1)[1]: (ch.text or "") for ch in v}

    own = fields(await a.iq("get", "<vCard xmlns='vcard-temp'/>"))
    check(own.get("FN") == "Alice Interop" and own.get("NICKNAME") == nick and own.get("DESC") == "caf\u00e9 & tea",
          "own vCard read back: %s" % own)
    res = await b.iq("get", "<vCard xmlns='vcard-temp'/>", to=a.bare)
    check(str(res["from"]) == a.bare, "vCard result from %s, want %s" % (res["from"], a.bare))
    other = fields(res)
    check(other.get("FN") == "Alice Interop" and other.get("NICKNAME") == nick,
          "bob reading alice's vCard: %s" % other)
    # Nobody may set someone else's vCard.
    await b.iq_error("set", "<vCard xmlns='vcard-temp'><FN>Evil</FN></vCard>", to=a.bare)
    again = fields(await a.iq("get", "<vCard xmlns='vcard-temp'/>"))
    check(again.get("FN") == "Alice Interop", "alice's vCard was changed by bob: %s" % again)
    # An account without a vCard: empty vCard or item-not-found (XEP-0054 3.1).
    iq = b.make_iq_get(ito="peggy@%s" % suite.domain)
    iq.xml.append(ET.fromstring("<vCard xmlns='vcard-temp'/>"))
    try:
        res = await iq.send(timeout=TIMEOUT)
        check(len(fields(res)) == 0, "peggy never set a vCard but got %s" % res)
    except IqError as e:
        check(error_condition(e.iq) == "item-not-found",
              "empty vCard: want an empty result or item-not-found, got %s" % e.iq)
    await a.close()
    await b.close()


@scenario("blocking (XEP-0191)")
async def s_blocking(suite):
    i = await Client(suite, "ivan", "main").online(roster=False)
    i2 = await Client(suite, "ivan", "other").online(roster=False)
    j = await Client(suite, "judy", "main").online(roster=False)
    # Both of ivan's resources fetch the list, as XEP-0191 3.2 says clients
    # SHOULD; pushes go to such resources.
    for c in (i, i2):
        res = await c.iq("get", "<blocklist xmlns='%s'/>" % NS_BLOCKING)
        bl = res.xml.find(q("blocklist", NS_BLOCKING))
        check(bl is not None and len(bl) == 0, "initial blocklist must be an empty <blocklist/>: %s" % res)
    # Before blocking, messages flow.
    j.message(i.full, "before block")
    await i.msgs.expect(message_from(j.full, "before block"), "judy's message before the block")
    await i.iq("set", "<block xmlns='%s'><item jid='%s'/></block>" % (NS_BLOCKING, j.bare))
    await i2.iqs.expect(lambda iq: iq.xml.find(q("block", NS_BLOCKING)) is not None and iq["type"] == "set",
                        "block push to ivan's other resource (XEP-0191 3.3)")
    res = await i.iq("get", "<blocklist xmlns='%s'/>" % NS_BLOCKING)
    blocked = [it.get("jid") for it in res.xml.find(q("blocklist", NS_BLOCKING))]
    check(blocked == [j.bare], "blocklist after block: %s" % blocked)
    # judy's message must not arrive; an error, if any, is service-unavailable.
    j.msgs.drop()
    j.message(i.bare, "while blocked (bare)")
    j.message(i.full, "while blocked (full)")
    await i.msgs.expect_none(message_from(j.full), "judy's message while blocked")
    await i2.msgs.expect_none(message_from(j.full), "judy's message while blocked")
    errs = [m for m in j.msgs.items if m.xml.get("type") == "error"]
    if not errs:
        suite.note("no error returned to judy for a message to ivan who blocked her (XEP-0191 3.5: SHOULD)")
    for m in errs:
        check(error_condition(m) == "service-unavailable",
              "error for blocked message should be service-unavailable: %s" % m)
    # An IQ from judy must get an error (MUST).
    await j.iq_error("get", "<query xmlns='jabber:iq:version'/>", to=i.full)
    # Ivan's outgoing messages to judy are refused with not-acceptable.
    i.msgs.drop()
    i.message(j.full, "ivan to blocked judy")
    err = await i.msgs.expect(lambda m: m.xml.get("type") == "error",
                              "error for ivan's message to judy, whom he blocked (XEP-0191 3.6)")
    check(error_condition(err) == "not-acceptable", "want not-acceptable, got %s" % err)
    if not has_app_condition(err, "blocked", NS_BLOCKING_ERRORS):
        suite.note("not-acceptable without <blocked xmlns='urn:xmpp:blocking:errors'/> (SHOULD): %s" % err)
    await j.msgs.expect_none(body_is("ivan to blocked judy"), "ivan's message to judy while he blocks her")
    # Unblock: messages flow again.
    await i.iq("set", "<unblock xmlns='%s'><item jid='%s'/></unblock>" % (NS_BLOCKING, j.bare))
    await i2.iqs.expect(lambda iq: iq.xml.find(q("unblock", NS_BLOCKING)) is not None,
                        "unblock push to ivan's other resource")
    j.message(i.full, "after unblock")
    await i.msgs.expect(message_from(j.full, "after unblock"), "judy's message after the unblock")
    # Unblock everything: an empty <unblock/> (XEP-0191 3.5).
    await i.iq("set", "<block xmlns='%s'><item jid='%s'/><item jid='x@%s'/></block>"
               % (NS_BLOCKING, j.bare, suite.domain))
    await i.iq("set", "<unblock xmlns='%s'/>" % NS_BLOCKING)
    res = await i.iq("get", "<blocklist xmlns='%s'/>" % NS_BLOCKING)
    check(len(res.xml.find(q("blocklist", NS_BLOCKING))) == 0, "blocklist after unblocking all: %s" % res)
    for c in (i, i2, j):
        await c.close()


@scenario("carbons between two resources (XEP-0280)")
async def s_carbons(suite):
    phone = Client(suite, "carl", "phone", plugins=("xep_0280",))
    laptop = Client(suite, "carl", "laptop", plugins=("xep_0280",))
    tina = Client(suite, "tina", "desk")
    for c in (phone, laptop, tina):
        await c.online(roster=False)
    info = await phone.iq("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=suite.domain)
    features = [f.get("var") for f in info.xml.iter(q("feature", NS_DISCO_INFO))]
    check(NS_CARBONS in features, "server disco#info lacks %s: %s" % (NS_CARBONS, info))
    for c in (phone, laptop):
        c.carbons = Box("carbons")
        c.add_event_handler("carbon_sent", c.carbons.put)
        c.add_event_handler("carbon_received", c.carbons.put)
        await c["xep_0280"].enable(timeout=TIMEOUT)

    def sent(body):
        return lambda m: m.xml.find(q("sent", NS_CARBONS)) is not None and m["carbon_sent"]["body"] == body

    def received(body):
        return lambda m: m.xml.find(q("received", NS_CARBONS)) is not None and m["carbon_received"]["body"] == body

    # Sent carbon: what the phone sends shows up on the laptop.
    m = phone.message(tina.bare, "sent from the phone")
    await tina.msgs.expect(message_from(phone.full, "sent from the phone"), "the phone's message to tina")
    c = await laptop.carbons.expect(sent("sent from the phone"),
                                    "sent carbon of the phone's message on the laptop (XEP-0280 5)")
    fwd = c["carbon_sent"]
    check(str(fwd["from"]) == phone.full and str(fwd["to"]) == tina.bare and fwd["id"] == m["id"],
          "the forwarded message lost its addresses or id: %s" % c)
    check(str(c["from"]) == laptop.bare, "carbon not from the account's bare JID: %s" % c)
    await phone.carbons.expect_none(sent("sent from the phone"), "a carbon of its own message to the sender")

    # Received carbon: tina writes to the phone; the laptop gets a copy.
    tina.message(phone.full, "to the phone")
    await phone.msgs.expect(message_from(tina.full, "to the phone"), "tina's message to the phone")
    c = await laptop.carbons.expect(received("to the phone"),
                                    "received carbon of tina's message on the laptop (XEP-0280 6)")
    check(str(c["carbon_received"]["from"]) == tina.full, "forwarded 'from' is not tina: %s" % c)

    # <private/> (XEP-0280 7) keeps a message off the other resources.
    phone.send_xml("<message to='%s' type='chat' id='priv-1'><body>private one</body>"
                   "<private xmlns='%s'/><no-copy xmlns='urn:xmpp:hints'/></message>" % (tina.bare, NS_CARBONS))
    await tina.msgs.expect(body_is("private one"), "the private message itself")
    await laptop.carbons.expect_none(sent("private one"), "a carbon of a <private/> message")

    # Disabled: no more copies.
    await laptop["xep_0280"].disable(timeout=TIMEOUT)
    phone.message(tina.bare, "after disable")
    await tina.msgs.expect(body_is("after disable"), "the message after the laptop disabled carbons")
    await laptop.carbons.expect_none(sent("after disable"), "a carbon after <disable/>")
    for c in (phone, laptop, tina):
        await c.close()


@scenario("stream management: resumption after a dropped socket (XEP-0198)")
async def s_sm_resume(suite):
    loop = asyncio.get_running_loop()
    p = Client(suite, "peggy", "phone", plugins=("xep_0198",))
    enabled, dropped, resumed = loop.create_future(), loop.create_future(), loop.create_future()
    p.add_event_handler("sm_enabled", lambda s: enabled.done() or enabled.set_result(s))
    p.add_event_handler("disconnected", lambda r: dropped.done() or dropped.set_result(r))
    p.add_event_handler("session_resumed", lambda s: resumed.done() or resumed.set_result(s))
    await p.login()
    try:
        en = await asyncio.wait_for(enabled, TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure("stream management was not enabled (features: %s)"
                      % [ET.tostring(f, encoding="unicode") for f in p.stream_features])
    check(bool(en["id"]), "<enabled/> without an id for resumption: %s" % en)
    bound = p.full
    d = Client(suite, "dave", "sm-sender")
    await d.login()
    d.message(bound, "before the drop")
    await p.msgs.expect(body_is("before the drop"), "a message before the socket drops")
    # The socket dies without </stream:stream>, as on a phone changing networks.
    p.kill()
    try:
        await asyncio.wait_for(dropped, TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure("slixmpp did not notice its own dropped socket")
    dead = ["while the socket was dead 1", "while the socket was dead 2"]
    for b in dead:
        d.message(bound, b)
    await d.msgs.expect_none(lambda m: m.xml.get("type") == "error",
                             "an error for a message to a session waiting for resumption", wait=0.5)
    p.connect((suite.host, suite.c2s_port), use_ssl=False, force_starttls=True)
    try:
        await asyncio.wait_for(resumed, TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure("the session was not resumed (features: %s)"
                      % [ET.tostring(f, encoding="unicode") for f in p.stream_features[-2:]])
    check(p.full == bound, "resumed as %s, not %s" % (p.full, bound))
    got = [await p.msgs.expect(body_is(b), "%r, sent while the socket was dead, after resumption" % b) for b in dead]
    seq = [m["body"] for m in sorted(got, key=p.msgs.log.index)]
    check(seq == dead, "redelivered out of order: %s" % seq)
    await p.msgs.expect_none(body_is("before the drop"),
                             "a message the client had already acked (its h) delivered again")
    p.message(d.full, "after resumption")
    await d.msgs.expect(message_from(bound, "after resumption"), "a message from the resumed session")
    await p.close()
    await d.close()


NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_PUBSUB_ERRORS = NS_PUBSUB + "#errors"
NS_OMEMO2 = "urn:xmpp:omemo:2"


def publish_options(**fields):
    """A XEP-0223 publish-options form, built with slixmpp's xep_0004."""
    from slixmpp.plugins.xep_0004 import Form
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_PUBSUB + "#publish-options")
    for var, value in fields.items():
        form.add_field(var="pubsub#" + var, value=value)
    return form


@scenario("PEP publish with publish-options access_model=open read by a non-contact (XEP-0163, XEP-0223)")
async def s_pep_open(suite):
    plugins = ("xep_0004", "xep_0060", "xep_0163")
    o = await Client(suite, "olga", "pep", plugins=plugins).online(roster=False)
    j = await Client(suite, "judy", "pep", plugins=plugins).online(roster=False)
    # Clients look for publish-options on the server and on the account.
    info = await o.iq("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=suite.domain)
    feats = {f.get("var") for f in info.xml.iter(q("feature", NS_DISCO_INFO))}
    check(NS_PUBSUB + "#publish-options" in feats, "server disco#info lacks pubsub#publish-options: %s" % info)
    info = await o.iq("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=o.bare)
    ids = [(i.get("category"), i.get("type")) for i in info.xml.iter(q("identity", NS_DISCO_INFO))]
    feats = {f.get("var") for f in info.xml.iter(q("feature", NS_DISCO_INFO))}
    check(("pubsub", "pep") in ids and NS_PUBSUB + "#publish-options" in feats,
          "account disco#info lacks the PEP identity or publish-options: %s" % info)

    node = NS_OMEMO2 + ":devices"
    # Before anything is published: item-not-found carrying code 404.
    err = await j.iq_error("get", "<pubsub xmlns='%s'><items node='%s'/></pubsub>" % (NS_PUBSUB, node), to=o.bare)
    check(error_condition(err) == "item-not-found", "missing node: want item-not-found, got %s" % err)
    check(err.xml.find(q("error", NS_CLIENT)).get("code") == "404", "item-not-found without code='404': %s" % err)

    devices = ET.fromstring("<devices xmlns='%s'><device id='4223'/></devices>" % NS_OMEMO2)
    try:
        await o["xep_0060"].publish(o.bare, node, id="current", payload=devices,
                                    options=publish_options(access_model="open", max_items="max"),
                                    timeout=TIMEOUT)
    except IqError as e:
        raise Failure("publish with publish-options was refused: %s" % e.iq) from None
    # judy is not olga's contact and reads the device list.
    res = await j["xep_0060"].get_items(o.bare, node, timeout=TIMEOUT)
    got = [i for i in res.xml.iter(q("device", NS_OMEMO2))]
    check([d.get("id") for d in got] == ["4223"], "device list read by a non-contact: %s" % res)

    # Conflicting options are refused with precondition-not-met.
    err = None
    try:
        await o["xep_0060"].publish(o.bare, node, id="current", payload=devices,
                                    options=publish_options(access_model="presence"), timeout=TIMEOUT)
    except IqError as e:
        err = e.iq
    check(err is not None and has_app_condition(err, "precondition-not-met", NS_PUBSUB_ERRORS),
          "a publish with a different access model must fail with precondition-not-met, got %s" % err)

    # A node with the default (presence) access model stays closed to judy.
    nick = ET.fromstring("<nick xmlns='http://jabber.org/protocol/nick'>Olga</nick>")
    await o["xep_0060"].publish(o.bare, "http://jabber.org/protocol/nick", payload=nick, timeout=TIMEOUT)
    err = await j.iq_error("get", "<pubsub xmlns='%s'><items node='http://jabber.org/protocol/nick'/></pubsub>"
                           % NS_PUBSUB, to=o.bare)
    check(error_condition(err) in ("not-authorized", "forbidden"),
          "a presence-model node read by a non-contact: want not-authorized, got %s" % err)
    for c in (o, j):
        await c.close()


NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"


async def mam_query(c, with_=None, max_=None, after=None, before=None):
    """One XEP-0313 query of c's own archive. Returns ([(archive id,
    forwarded <message/> element)] in the order received, <fin/>)."""
    qid = uuid.uuid4().hex
    query = ET.Element(q("query", NS_MAM), queryid=qid)
    if with_ is not None:
        x = ET.SubElement(query, q("x", NS_DATA), type="submit")
        f = ET.SubElement(x, q("field", NS_DATA), var="FORM_TYPE", type="hidden")
        ET.SubElement(f, q("value", NS_DATA)).text = NS_MAM
        f = ET.SubElement(x, q("field", NS_DATA), var="with")
        ET.SubElement(f, q("value", NS_DATA)).text = with_
    if max_ is not None or after is not None or before is not None:
        rsm = ET.SubElement(query, q("set", NS_RSM))
        if max_ is not None:
            ET.SubElement(rsm, q("max", NS_RSM)).text = str(max_)
        if after is not None:
            ET.SubElement(rsm, q("after", NS_RSM)).text = after
        if before is not None:
            ET.SubElement(rsm, q("before", NS_RSM)).text = before  # "" asks for the last page
    res = await c.iq("set", query)
    fin = res.xml.find(q("fin", NS_MAM))
    check(fin is not None, "MAM query answered without <fin/>: %s" % res)

    def ours(m):
        r = m.xml.find(q("result", NS_MAM))
        return r is not None and r.get("queryid") == qid

    # The results come before the IQ result on the same stream.
    got = []
    for m in [m for m in c.msgs.items if ours(m)]:
        r = m.xml.find(q("result", NS_MAM))
        fwd = r.find(q("forwarded", NS_FORWARD))
        inner = None if fwd is None else fwd.find(q("message", NS_CLIENT))
        check(inner is not None, "MAM result without a forwarded message: %s" % m)
        got.append((r.get("id"), inner))
    c.msgs.drop(ours)
    return got, fin


def rsm_value(fin, tag):
    el = fin.find("%s/%s" % (q("set", NS_RSM), q(tag, NS_RSM)))
    return None if el is None else (el.text or "")


@scenario("MAM paging with RSM max=10, forward (after) and backward (before) (XEP-0313, XEP-0059)")
async def s_mam_paging(suite):
    u = await Client(suite, "uma", "mam").online(roster=False)
    v = await Client(suite, "victor", "mam").online(roster=False)
    tag = uuid.uuid4().hex[:8]
    bodies = ["mam page %s %02d" % (tag, i) for i in range(25)]
    for b in bodies:
        v.message(u.bare, b)
    for b in bodies:
        await u.msgs.expect(body_is(b), "message %r before querying the archive" % b)

    def page_bodies(results):
        return [m.findtext(q("body", NS_CLIENT)) for _, m in results]

    def describe(pages):
        return "\n".join("    page %d: %s complete=%s" % (i, page_bodies(r), f.get("complete"))
                         for i, (r, f) in enumerate(pages))

    # Forward: the oldest page first, then <after/> the last ID of each page.
    fwd, after = [], None
    for _ in range(5):
        res, fin = await mam_query(u, with_=v.bare, max_=10, after=after)
        fwd.append((res, fin))
        if fin.get("complete") == "true" or not res:
            break
        check(rsm_value(fin, "last") == res[-1][0],
              "RSM <last/> %r is not the last result's id %r" % (rsm_value(fin, "last"), res[-1][0]))
        after = res[-1][0]
    sizes = [len(r) for r, _ in fwd]
    check(sizes == [10, 10, 5], "forward page sizes: want [10, 10, 5], got %s\n%s" % (sizes, describe(fwd)))
    check(all(f.get("complete") in (None, "false") for _, f in fwd[:-1]),
          "complete='true' before the last forward page:\n%s" % describe(fwd))
    check(fwd[-1][1].get("complete") == "true", "the last forward page lacks complete='true':\n%s" % describe(fwd))
    ids = [i for r, _ in fwd for i, _ in r]
    check(len(set(ids)) == len(ids), "duplicate archive ids across forward pages: %s" % ids)
    got = [b for r, _ in fwd for b in page_bodies(r)]
    check(got == bodies, "forward paging: want the 25 messages in order, got\n%s" % describe(fwd))
    for r, f in fwd:
        check(rsm_value(f, "first") == r[0][0], "RSM <first/> is not the page's first id: %s" % ET.tostring(f))
        count = rsm_value(f, "count")
        check(count in (None, "25"), "RSM <count/>: want 25, got %s" % count)

    # Backward: <before/> empty for the newest page, then <before/> the
    # first ID of each page; every page is itself in chronological order.
    back, before = [], ""
    for _ in range(5):
        res, fin = await mam_query(u, with_=v.bare, max_=10, before=before)
        back.append((res, fin))
        if fin.get("complete") == "true" or not res:
            break
        check(rsm_value(fin, "first") == res[0][0],
              "RSM <first/> %r is not the first result's id %r" % (rsm_value(fin, "first"), res[0][0]))
        before = res[0][0]
    sizes = [len(r) for r, _ in back]
    check(sizes == [10, 10, 5], "backward page sizes: want [10, 10, 5], got %s\n%s" % (sizes, describe(back)))
    check(all(f.get("complete") in (None, "false") for _, f in back[:-1]),
          "complete='true' before the last backward page:\n%s" % describe(back))
    check(back[-1][1].get("complete") == "true", "the last backward page lacks complete='true':\n%s" % describe(back))
    check(page_bodies(back[0][0]) == bodies[15:], "the newest page: want %s\n%s" % (bodies[15:], describe(back)))
    got = [b for r, _ in reversed(back) for b in page_bodies(r)]
    check(got == bodies, "backward paging: want the 25 messages in order, got\n%s" % describe(back))
    bids = [i for r, _ in back for i, _ in r]
    check(len(set(bids)) == len(bids), "duplicate archive ids across backward pages: %s" % bids)
    check(sorted(bids) == sorted(ids), "forward and backward paging saw different ids")
    for c in (u, v):
        await c.close()


# --- E2EE scenarios (run against a server with the default policy) -----------

E2EE_SCENARIOS, e2ee_scenario = registry()


@e2ee_scenario("E2EE required by default: plaintext bounces, OMEMO and chat states pass (DESIGN.md 5)")
async def s_e2ee_required(suite):
    a = await Client(suite, "alice", "e2ee").online(roster=False)
    b = await Client(suite, "bob", "e2ee").online(roster=False)
    # The policy is advertised in the server's disco#info (XEP-0128 form).
    info = await a.iq("get", "<query xmlns='%s'/>" % NS_DISCO_INFO, to=suite.domain)
    policy = None
    for x in info.xml.iter(q("x", NS_DATA)):
        fields = {f.get("var"): [v.text for v in f.findall(q("value", NS_DATA))] for f in x.findall(q("field", NS_DATA))}
        if fields.get("FORM_TYPE") == [HEARTH_E2EE_FORM]:
            policy = fields.get("policy")
    check(policy == ["required"], "disco#info policy form: want required, got %s in %s" % (policy, info))

    # Plaintext: bounced to the sender with policy-violation and a text.
    sent = a.message(b.bare, "plaintext secret")
    err = await a.msgs.expect(lambda m: m["type"] == "error" and m["id"] == sent["id"],
                              "the bounce of a plaintext message")
    check(error_condition(err) == "policy-violation", "want policy-violation, got %s" % err)
    text = err["error"]["text"]
    check("OMEMO" in text and "not delivered" in text, "the error text does not explain: %r" % text)
    await b.msgs.expect_none(body_is("plaintext secret"), "the plaintext message at bob")

    # OMEMO-shaped: an <encrypted/> payload with the customary fallback body.
    fallback = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."
    a.send_xml("<message to='%s' type='chat' id='omemo-1'><encrypted xmlns='%s'><header sid='1'>"
               "<key rid='2'>a2V5</key><iv>aXY=</iv></header><payload>cGF5</payload></encrypted>"
               "<body>%s</body><store xmlns='urn:xmpp:hints'/></message>" % (b.bare, NS_OMEMO_LEGACY, fallback))
    got = await b.msgs.expect(lambda m: m["id"] == "omemo-1", "the OMEMO message at bob")
    check(got.xml.find(q("encrypted", NS_OMEMO_LEGACY)) is not None, "delivered without its payload: %s" % got)
    # Bodiless stanzas (chat states) pass.
    a.send_xml("<message to='%s' type='chat' id='cs-1'><active xmlns='%s'/></message>" % (b.bare, NS_CHATSTATES))
    await b.msgs.expect(lambda m: m["id"] == "cs-1", "a chat state at bob")
    await a.msgs.expect_none(lambda m: m["type"] == "error", "an error for an encrypted or bodiless message")
    for c in (a, b):
        await c.close()


def record_omemo_run(suite, plaintexts, ids):
    """Tell the Go driver what to look for in the database file once the
    server has stopped: the plaintexts must not be there, the ids must."""
    if not suite.omemo_record:
        return
    with open(suite.omemo_record, "a") as f:
        for p in plaintexts:
            f.write("plain %s\n" % p)
        for i in ids:
            f.write("id %s\n" % i)


async def omemo_exchange(suite, ns, label):
    """Two real OMEMO devices (python3-omemo with one backend) publish their
    device lists and bundles in PEP, alice starts a session to bob, bob
    answers, alice writes again; every message is decrypted by the other
    side, and bob's archive holds them only encrypted."""
    import omemo_clients as oc
    plugins = ("xep_0004", "xep_0060")
    a = await Client(suite, "alice", "omemo-" + label, plugins=plugins).online(roster=False)
    b = await Client(suite, "bob", "omemo-" + label, plugins=plugins).online(roster=False)
    oa, ob = oc.OmemoClient(a, ns), oc.OmemoClient(b, ns)
    try:
        dev_a, dev_b = await oa.start(), await ob.start()
        # The device lists are on the server, open to non-contacts.
        for reader, owner, dev in ((a, b, dev_b), (b, a, dev_a)):
            res = await reader["xep_0060"].get_items(owner.bare, oc.device_list_node(ns), timeout=TIMEOUT)
            ids = {d.get("id") for d in res.xml.iter("{%s}device" % ns)}
            check(str(dev) in ids, "%s's device list read by %s lacks device %d: %s" % (owner.bare, reader.bare, dev, res))

        run = uuid.uuid4().hex
        conv = [(oa, a, b, ob), (ob, b, a, oa), (oa, a, b, ob)]
        plaintexts, mids = [], []
        for n, (enc, frm, to, dec) in enumerate(conv):
            text = "omemo secret %s %d %s" % (label, n, run)
            mid = "omemo-%s-%d-%s" % (label, n, run[:8])
            plaintexts.append(text)
            mids.append(mid)
            sent = await enc.encrypt_to(to.bare, text, mid)
            wire = ET.tostring(sent, encoding="unicode")
            check(text not in wire, "the plaintext is in the stanza as sent: %s" % wire)
            try:
                got = await dec.expect(mid)
            except asyncio.TimeoutError as e:
                raise Failure("%s; %s's pending messages:\n%s" % (e, to.bare, to.msgs.dump())) from None
            check(got.error is None, "%s could not decrypt %s: %s\n    received: %s" % (to.bare, mid, got.error, got.stanza))
            check(got.plaintext == text, "%s decrypted %r, want %r" % (to.bare, got.plaintext, text))
            check(got.sender == frm.bare, "decrypted message from %s, want %s" % (got.sender, frm.bare))
            # The first message starts the session with a key exchange;
            # once bob has answered, alice's session is established and
            # her next message carries none.
            keys = [k for k in sent.iter("{%s}key" % ns)]
            kex = [k for k in keys if k.get("prekey") in ("true", "1") or k.get("kex") in ("true", "1")]
            check(keys, "no <key/> in the stanza as sent: %s" % wire)
            if n == 0:
                check(kex, "the first message carries no key exchange: %s" % wire)
            if n == 2:
                check(not kex, "the third message still carries a key exchange: %s" % wire)
        for c in (a, b):
            await c.msgs.expect_none(lambda m: m["type"] == "error", "an error for an OMEMO message", wait=0.3)

        # Bob's archive has the three messages, encrypted, without plaintext.
        results, fin = await mam_query(b, with_=a.bare)
        by_id = {m.get("id"): m for _, m in results}
        for mid in mids:
            m = by_id.get(mid)
            check(m is not None, "message %s is not in bob's archive; archived ids: %s" % (mid, list(by_id)))
            check(m.find("{%s}encrypted" % ns) is not None, "archived %s without <encrypted xmlns='%s'>: %s"
                  % (mid, ns, ET.tostring(m, encoding="unicode")))
        for _, m in results:
            xml = ET.tostring(m, encoding="unicode")
            for text in plaintexts:
                check(text not in xml, "plaintext %r in bob's archive: %s" % (text, xml))
        record_omemo_run(suite, plaintexts, mids)
        suite.note("%s: devices %d (alice) and %d (bob), %d messages decrypted both ways, %d key-transport "
                   "messages sent by the library itself, %d messages with alice in bob's archive (all scenarios so far)"
                   % (ns, dev_a, dev_b, len(mids), len(oa.sent) + len(ob.sent), len(results)))
    finally:
        oa.close()
        ob.close()
    for c in (a, b):
        await c.close()


@e2ee_scenario("OMEMO session between two python-omemo clients, legacy eu.siacs.conversations.axolotl (XEP-0384 0.3)")
async def s_omemo_legacy(suite):
    await omemo_exchange(suite, NS_OMEMO_LEGACY, "legacy")


@e2ee_scenario("OMEMO session between two python-omemo clients, urn:xmpp:omemo:2 (XEP-0384)")
async def s_omemo2(suite):
    await omemo_exchange(suite, NS_OMEMO2, "omemo2")


# --- runner ------------------------------------------------------------------

class Suite:
    """What Client needs of a suite: where the server is, the accounts."""

    def __init__(self, args):
        self.host = args.host
        self.c2s_port = args.c2s_port
        self.tls_port = args.tls_port
        self.domain = args.domain
        self.cafile = None if getattr(args, "insecure", False) else args.cafile
        self.accounts = {}
        for line in Path(args.accounts).read_text().splitlines():
            if line.strip():
                name, pw = line.split(None, 1)
                self.accounts[name] = pw.strip()
        self.clients = []
        self.notes = []
        self.omemo_record = getattr(args, "omemo_record", None)

    def password(self, localpart):
        if localpart not in self.accounts:
            raise Failure("account %s is not in the accounts file" % localpart)
        return self.accounts[localpart]

    def note(self, text):
        self.notes.append(text)


async def run_scenarios(args, scenarios, what, end_client):
    """Run the scenarios --only selects, each with fresh clients, printing
    PASS/FAIL lines; end_client(client) closes each client afterwards.
    Returns the exit status."""
    suite = Suite(args)
    failed, ran = [], 0
    for name, fn in scenarios:
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        ran += 1
        suite.clients, suite.notes = [], []
        started = time.monotonic()
        try:
            await asyncio.wait_for(fn(suite), args.scenario_timeout)
            status, detail = "PASS", ""
        except Failure as e:
            status, detail = "FAIL", str(e)
        except asyncio.TimeoutError:
            status, detail = "FAIL", "scenario did not finish within %ds" % args.scenario_timeout
        except Exception:
            status, detail = "FAIL", "unexpected exception:\n" + traceback.format_exc()
        for c in suite.clients:
            await end_client(c)
        for n in suite.notes:
            print("NOTE %s: %s" % (name, n))
        print("%s %s (%.1fs)" % (status, name, time.monotonic() - started))
        if detail:
            print("    " + detail.replace("\n", "\n    "))
        sys.stdout.flush()
        if status == "FAIL":
            failed.append(name)
        await asyncio.sleep(0.2)
    if ran == 0:
        print("no %s scenario matched --only %s" % (what, args.only))
        return 1
    print("%d of %d %s scenario(s) failed" % (len(failed), ran, what) if failed
          else "all %d %s scenarios passed" % (ran, what))
    return 1 if failed else 0


async def kill_client(c):
    c.kill()


async def run(args):
    if args.suite == "e2ee":
        return await run_scenarios(args, E2EE_SCENARIOS, "E2EE", kill_client)
    return await run_scenarios(args, SCENARIOS, "main", kill_client)


async def watch_shutdown(args):
    """Log in, print READY, and check that the server, when stopped, ends
    the stream with a system-shutdown stream error and </stream:stream>
    (RFC 6120 4.4, 4.9.3.19) rather than just dropping the connection."""
    suite = Suite(args)
    c = Client(suite, "alice", "shutdown-watch")
    loop = asyncio.get_running_loop()
    errors, ended = [], loop.create_future()
    c.add_event_handler("stream_error", lambda e: errors.append(e))
    c.add_event_handler("disconnected", lambda reason: ended.done() or ended.set_result(reason))
    try:
        await c.login(direct=True)
    except Failure as e:
        print("FAIL shutdown: login: %s" % e)
        return 1
    c.send_presence()
    print("READY", flush=True)
    try:
        reason = await asyncio.wait_for(ended, args.scenario_timeout)
    except asyncio.TimeoutError:
        print("FAIL shutdown: stream still open %ds after READY" % args.scenario_timeout)
        return 1
    conds = [e["condition"] for e in errors]
    if conds != ["system-shutdown"]:
        print("FAIL shutdown: want one <system-shutdown/> stream error, got %s: %s"
              % (conds, [str(e) for e in errors]))
        return 1
    if reason != "End of stream":
        print("FAIL shutdown: the server dropped the connection without </stream:stream> (%r)" % (reason,))
        return 1
    print("PASS shutdown: <system-shutdown/> stream error, then </stream:stream>")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--c2s-port", type=int, required=True)
    p.add_argument("--tls-port", type=int, required=True)
    p.add_argument("--domain", default="localhost")
    p.add_argument("--cafile", help="the server's self-signed certificate, trusted for this run")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    p.add_argument("--accounts", required=True)
    p.add_argument("--only", action="append", help="run scenarios whose name contains this")
    p.add_argument("--scenario-timeout", type=int, default=60)
    p.add_argument("--suite", choices=("main", "e2ee"), default="main",
                   help="main: the scenarios for a server with --e2ee off; e2ee: those for the default policy")
    p.add_argument("--omemo-record", help="e2ee suite: append the OMEMO plaintexts and message ids here "
                                          "(\"plain TEXT\" and \"id ID\" lines), for the driver's check of the data file")
    p.add_argument("--debug", action="store_true", help="log every stanza")
    p.add_argument("--watch-shutdown", action="store_true",
                   help="instead of the scenarios: log in, print READY and check how the stream ends "
                        "when the server is stopped")
    args = p.parse_args()
    if not args.cafile and not args.insecure:
        p.error("give --cafile (the server's certificate) or --insecure")
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.exit(asyncio.run(watch_shutdown(args) if args.watch_shutdown else run(args)))


if __name__ == "__main__":
    main()
