"""OMEMO for the interop suite: Debian's python3-omemo (SessionManager) with
the oldmemo (eu.siacs.conversations.axolotl) and twomemo (urn:xmpp:omemo:2)
backends, on top of a slixmpp client.

There is no slixmpp-omemo in Debian, so this is the glue a client would
have: device lists and bundles go through PEP on the server (XEP-0060
publish with XEP-0223 publish-options, as real clients do), storage is in
memory, and every device is trusted (blind trust: a device is undecided
when first seen and trusted as soon as a decision is asked for).

Used by slixmpp_suite.py; it only needs a slixmpp ClientXMPP with the
xep_0004 and xep_0060 plugins registered.
"""

import asyncio
import base64
import copy
import json
import secrets
import xml.etree.ElementTree as ET

import omemo
import oldmemo
import oldmemo.etree
import twomemo
import twomemo.etree
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004 import Form
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

NS_LEGACY = oldmemo.oldmemo.NAMESPACE  # eu.siacs.conversations.axolotl
NS_OMEMO2 = twomemo.twomemo.NAMESPACE  # urn:xmpp:omemo:2
NAMESPACES = (NS_LEGACY, NS_OMEMO2)

NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_CLIENT = "jabber:client"
NS_SCE = "urn:xmpp:sce:1"
NS_HINTS = "urn:xmpp:hints"
NS_EME = "urn:xmpp:eme:0"

# The body that OMEMO clients put next to <encrypted/> for clients that
# cannot decrypt (Conversations' wording).
FALLBACK_BODY = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."

TIMEOUT = 10.0
TRUSTED = "trusted"
UNDECIDED = "undecided"


def device_list_node(ns):
    return ns + ".devicelist" if ns == NS_LEGACY else ns + ":devices"


def bundle_node(ns, device_id):
    # Legacy OMEMO has one node per device; OMEMO 2 one node with an item
    # per device.
    return "%s.bundles:%d" % (ns, device_id) if ns == NS_LEGACY else ns + ":bundles"


def publish_options(**fields):
    """A XEP-0223 publish-options form."""
    form = Form()
    form["type"] = "submit"
    form.add_field(var="FORM_TYPE", ftype="hidden", value=NS_PUBSUB + "#publish-options")
    for var, value in fields.items():
        form.add_field(var="pubsub#" + var, value=value)
    return form


def node_options(ns, bundles):
    # Both versions need access_model=open: a non-contact must be able to
    # start a session. OMEMO 2 keeps all bundles in one node, so it needs
    # room for more than one item (XEP-0384 5.3.2).
    if ns == NS_OMEMO2 and bundles:
        return publish_options(access_model="open", max_items="max")
    return publish_options(access_model="open")


def is_not_found(iq):
    err = iq.xml.find("{%s}error" % NS_CLIENT)
    return err is not None and err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None


class MemoryStorage(omemo.Storage):
    """OMEMO storage in a dict; values are copied through JSON, as a
    persistent store would do, so nobody shares mutable state by accident."""

    def __init__(self):
        super().__init__(disable_cache=True)
        self.data = {}

    async def _load(self, key):
        if key in self.data:
            return omemo.Just(json.loads(self.data[key]))
        return omemo.Nothing()

    async def _store(self, key, value):
        self.data[key] = json.dumps(value)

    async def _delete(self, key):
        self.data.pop(key, None)


class PEPSessionManager(omemo.SessionManager):
    """A SessionManager whose public data lives in PEP on the server.

    The base class creates instances itself (cls()), so the XMPP client is
    handed over through a class attribute of a per-client subclass; see
    OmemoClient.start."""

    xmpp = None  # set on the per-client subclass
    sent = None  # list of (bare JID, stanza) the library sent by itself

    async def _upload_bundle(self, bundle):
        ns = bundle.namespace
        if ns == NS_LEGACY:
            payload, item = oldmemo.etree.serialize_bundle(bundle), "current"
        elif ns == NS_OMEMO2:
            payload, item = twomemo.etree.serialize_bundle(bundle), str(bundle.device_id)
        else:
            raise omemo.UnknownNamespace(ns)
        try:
            await self.xmpp["xep_0060"].publish(self.xmpp.boundjid.bare, bundle_node(ns, bundle.device_id),
                                                id=item, payload=payload,
                                                options=node_options(ns, bundles=True), timeout=TIMEOUT)
        except (IqError, IqTimeout) as e:
            raise omemo.BundleUploadFailed("publishing the %s bundle: %s" % (ns, getattr(e, "iq", e))) from e

    async def _download_bundle(self, namespace, bare_jid, device_id):
        node = bundle_node(namespace, device_id)
        item = "current" if namespace == NS_LEGACY else str(device_id)
        try:
            res = await self.xmpp["xep_0060"].get_item(bare_jid, node, item, timeout=TIMEOUT)
        except IqError as e:
            if is_not_found(e.iq):
                raise omemo.BundleNotFound("no %s bundle for %s/%d" % (namespace, bare_jid, device_id)) from e
            raise omemo.BundleDownloadFailed("reading %s of %s: %s" % (node, bare_jid, e.iq)) from e
        except IqTimeout as e:
            raise omemo.BundleDownloadFailed("reading %s of %s: timeout" % (node, bare_jid)) from e
        el = res.xml.find(".//{%s}bundle" % namespace)
        if el is None:
            raise omemo.BundleNotFound("no %s bundle in %s" % (namespace, res))
        if namespace == NS_LEGACY:
            return oldmemo.etree.parse_bundle(el, bare_jid, device_id)
        if namespace == NS_OMEMO2:
            return twomemo.etree.parse_bundle(el, bare_jid, device_id)
        raise omemo.UnknownNamespace(namespace)

    async def _delete_bundle(self, namespace, device_id):
        pubsub = self.xmpp["xep_0060"]
        try:
            if namespace == NS_LEGACY:
                await pubsub.delete_node(self.xmpp.boundjid.bare, bundle_node(namespace, device_id), timeout=TIMEOUT)
            else:
                await pubsub.retract(self.xmpp.boundjid.bare, bundle_node(namespace, device_id), str(device_id),
                                     notify=True, timeout=TIMEOUT)
        except IqError as e:
            if not is_not_found(e.iq):
                raise omemo.BundleDeletionFailed("%s: %s" % (namespace, e.iq)) from e
        except IqTimeout as e:
            raise omemo.BundleDeletionFailed("%s: timeout" % namespace) from e

    async def _upload_device_list(self, namespace, device_list):
        if namespace == NS_LEGACY:
            payload = oldmemo.etree.serialize_device_list(device_list)
        elif namespace == NS_OMEMO2:
            payload = twomemo.etree.serialize_device_list(device_list)
        else:
            raise omemo.UnknownNamespace(namespace)
        try:
            await self.xmpp["xep_0060"].publish(self.xmpp.boundjid.bare, device_list_node(namespace),
                                                id="current", payload=payload,
                                                options=node_options(namespace, bundles=False), timeout=TIMEOUT)
        except (IqError, IqTimeout) as e:
            raise omemo.DeviceListUploadFailed("%s: %s" % (namespace, getattr(e, "iq", e))) from e

    async def _download_device_list(self, namespace, bare_jid):
        try:
            res = await self.xmpp["xep_0060"].get_items(bare_jid, device_list_node(namespace), timeout=TIMEOUT)
        except IqError as e:
            if is_not_found(e.iq):
                return {}  # nothing published yet
            raise omemo.DeviceListDownloadFailed("%s of %s: %s" % (namespace, bare_jid, e.iq)) from e
        except IqTimeout as e:
            raise omemo.DeviceListDownloadFailed("%s of %s: timeout" % (namespace, bare_jid)) from e
        if namespace == NS_LEGACY:
            el = res.xml.find(".//{%s}list" % namespace)
            return {} if el is None else oldmemo.etree.parse_device_list(el)
        if namespace == NS_OMEMO2:
            el = res.xml.find(".//{%s}devices" % namespace)
            return {} if el is None else twomemo.etree.parse_device_list(el)
        raise omemo.UnknownNamespace(namespace)

    async def _evaluate_custom_trust_level(self, device):
        if device.trust_level_name == TRUSTED:
            return omemo.TrustLevel.TRUSTED
        if device.trust_level_name == UNDECIDED:
            return omemo.TrustLevel.UNDECIDED
        raise omemo.UnknownTrustLevel(device.trust_level_name)

    async def _make_trust_decision(self, undecided, identifier):
        # Blind trust: every device that needs a decision is trusted.
        for device in undecided:
            await self.set_trust(device.bare_jid, device.identity_key, TRUSTED)

    async def _send_message(self, message, bare_jid):
        # Key-transport ("empty") messages the library sends on its own, to
        # complete a key exchange or move a ratchet forward.
        stanza = self.xmpp.make_message(mto=bare_jid, mtype="chat")
        stanza["id"] = "omemo-empty-" + secrets.token_hex(6)
        stanza.xml.append(serialize_message(message))
        stanza.xml.append(ET.Element("{%s}store" % NS_HINTS))
        self.sent.append((bare_jid, stanza["id"]))
        stanza.send()


def serialize_message(message):
    if message.namespace == NS_LEGACY:
        return oldmemo.etree.serialize_message(message)
    if message.namespace == NS_OMEMO2:
        return twomemo.etree.serialize_message(message)
    raise omemo.UnknownNamespace(message.namespace)


def sce_envelope(body, sender):
    """An XEP-0420 envelope around a body, as OMEMO 2 encrypts it: random
    padding, and the sender so the recipient can check who wrote it."""
    env = ET.Element("{%s}envelope" % NS_SCE)
    content = ET.SubElement(env, "{%s}content" % NS_SCE)
    ET.SubElement(content, "{%s}body" % NS_CLIENT).text = body
    ET.SubElement(env, "{%s}rpad" % NS_SCE).text = base64.b64encode(
        secrets.token_bytes(1 + secrets.randbelow(200))).decode()
    ET.SubElement(env, "{%s}from" % NS_SCE, jid=sender)
    return ET.tostring(env, encoding="utf-8")


def open_sce_envelope(raw, sender):
    env = ET.fromstring(raw)
    if env.tag != "{%s}envelope" % NS_SCE:
        raise ValueError("not an SCE envelope: %r" % raw[:80])
    frm = env.find("{%s}from" % NS_SCE)
    if frm is None or frm.get("jid") != sender:
        raise ValueError("SCE envelope from %r, but the message is from %s"
                         % (None if frm is None else frm.get("jid"), sender))
    body = env.find("{%s}content/{%s}body" % (NS_SCE, NS_CLIENT))
    if body is None:
        raise ValueError("SCE envelope without a body: %r" % raw)
    return body.text or ""


class Decrypted:
    """The outcome of decrypting one incoming <encrypted/> message."""

    def __init__(self, stanza, plaintext=None, error=None):
        self.stanza = stanza
        self.id = stanza["id"]
        self.sender = stanza["from"].bare
        self.plaintext = plaintext  # str, or None for an empty (key transport) message
        self.error = error


class OmemoClient:
    """One OMEMO device of one namespace on a logged-in slixmpp client."""

    def __init__(self, xmpp, namespace):
        if namespace not in NAMESPACES:
            raise ValueError(namespace)
        self.xmpp = xmpp
        self.ns = namespace
        self.sm = None
        self.sent = []
        self.results = []  # Decrypted, in arrival order
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()  # decrypt one message at a time, in order
        self._tasks = set()

    async def start(self):
        """Create the device: keys, bundle and device list go to PEP."""
        cls = type("PEPSessionManagerFor_" + self.xmpp.boundjid.user, (PEPSessionManager,),
                   {"xmpp": self.xmpp, "sent": self.sent})
        storage = MemoryStorage()
        backend = oldmemo.Oldmemo(storage) if self.ns == NS_LEGACY else twomemo.Twomemo(storage)
        self.sm = await cls.create([backend], storage, self.xmpp.boundjid.bare, None, UNDECIDED)
        await self.sm.after_history_sync()
        self.xmpp.register_handler(Callback(
            "omemo %s" % self.ns,
            MatchXPath("{%s}message/{%s}encrypted" % (NS_CLIENT, self.ns)),
            self._incoming))
        own, _ = await self.sm.get_own_device_information()
        return own.device_id

    def close(self):
        self.xmpp.remove_handler("omemo %s" % self.ns)
        for t in self._tasks:
            t.cancel()

    async def encrypt_to(self, bare_jid, body, mid):
        """Send body to bare_jid encrypted; returns the stanza as sent."""
        # A real client learns the contact's device list from PEP
        # notifications or fetches it when opening the chat; here: fetch.
        await self.sm.refresh_device_list(self.ns, bare_jid)
        if self.ns == NS_LEGACY:
            plaintext = body.encode("utf-8")
        else:
            plaintext = sce_envelope(body, self.xmpp.boundjid.bare)
        messages, errors = await self.sm.encrypt(frozenset([bare_jid]), {self.ns: plaintext})
        if errors:
            raise RuntimeError("encryption errors: %s" % (errors,))
        msg = next((m for m in messages if m.namespace == self.ns), None)
        if msg is None:
            raise RuntimeError("no %s message out of encrypt(): %s" % (self.ns, messages))
        stanza = self.xmpp.make_message(mto=bare_jid, mtype="chat", mbody=FALLBACK_BODY)
        stanza["id"] = mid
        stanza.xml.append(serialize_message(msg))
        stanza.xml.append(ET.Element("{%s}encryption" % NS_EME, namespace=self.ns,
                                     name="OMEMO" if self.ns == NS_LEGACY else "OMEMO 2"))
        stanza.xml.append(ET.Element("{%s}store" % NS_HINTS))
        sent = copy.deepcopy(stanza.xml)
        stanza.send()
        return sent

    def _incoming(self, stanza):
        t = asyncio.ensure_future(self._decrypt(stanza))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _decrypt(self, stanza):
        async with self._lock:
            sender = stanza["from"].bare
            try:
                el = stanza.xml.find("{%s}encrypted" % self.ns)
                if self.ns == NS_LEGACY:
                    msg = await oldmemo.etree.parse_message(el, sender, self.xmpp.boundjid.bare, self.sm)
                else:
                    msg = twomemo.etree.parse_message(el, sender)
                plain, _, _ = await self.sm.decrypt(msg)
                if plain is None:
                    res = Decrypted(stanza)
                elif self.ns == NS_LEGACY:
                    res = Decrypted(stanza, plain.decode("utf-8"))
                else:
                    res = Decrypted(stanza, open_sce_envelope(plain, sender))
            except Exception as e:  # reported to the scenario, which fails on it
                res = Decrypted(stanza, error="%s: %s" % (type(e).__name__, e))
            self.results.append(res)
            self._changed.set()

    async def expect(self, mid, timeout=TIMEOUT):
        """Wait for the decryption result of the message with this id."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for r in self.results:
                if r.id == mid:
                    return r
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = ", ".join("%s (%s)" % (r.id, r.error or "ok") for r in self.results) or "nothing"
                raise asyncio.TimeoutError("no OMEMO message %s within %.0fs; decrypted so far: %s"
                                           % (mid, timeout, got))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
