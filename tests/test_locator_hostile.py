"""
Hostile datagrams aimed at the embedded locator (L{migrate.locating.server}):
TSIG records with unknown algorithms, every single-bit flip and every
truncation of a signed update, random bytes, unsupported opcodes and EDNS
versions, and queries whose answers would not fit in a datagram.

Each bad datagram gets the right DNS error (or, when not even a request
header can be read, nothing) and exactly one line of log, never a
traceback; answers never exceed what the client can take; and a signed
update still works afterwards.
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
import time
from typing import Any, Optional, cast

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from migrate.errors import LocatorError
from migrate.locating.client import DNSLocator
from migrate.locating.server import LocatorServer, RecordTable

SECRET = base64.b64encode(b"s" * 32).decode()
ZONE = "mobile.example."
HOST = "host.mobile.example."
KEY = dns.name.from_text("laptop.")
PEER = ("192.0.2.66", 5353)
LOCATOR = ("192.0.2.53", 53)


class FakeDatagramTransport:
    """
    A UDP transport that keeps what is written.

    @ivar written: C{(datagram, address)} in the order written.
    """

    def __init__(self) -> None:
        """
        Nothing written yet.
        """
        self.written: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any = None) -> None:
        """
        Keep one datagram.
        """
        self.written.append((data, addr))

    def stopListening(self) -> None:
        """
        Nothing to close.
        """

    def take(self) -> list[bytes]:
        """
        The datagrams written since the last call.
        """
        out = [data for data, _ in self.written]
        del self.written[:]
        return out


class FakeUDPReactor(Clock):
    """
    A clock whose C{listenUDP} starts the protocol at once on a
    L{FakeDatagramTransport}: what L{DNSLocator} needs to publish.

    @ivar listening: C{(transport, protocol)} for each C{listenUDP}.
    """

    def __init__(self) -> None:
        """
        No sockets yet.
        """
        super().__init__()
        self.listening: list[tuple[FakeDatagramTransport, Any]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> FakeDatagramTransport:
        """
        Start C{protocol} on a new fake transport.
        """
        transport = FakeDatagramTransport()
        protocol.makeConnection(transport)
        self.listening.append((transport, protocol))
        return transport


def flips(wire: bytes) -> list[tuple[int, bytes]]:
    """
    Every single-bit flip of C{wire}, with the index of the bit flipped.
    """
    out = []
    for bit in range(len(wire) * 8):
        flipped = bytearray(wire)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        out.append((bit, bytes(flipped)))
    return out


def withTSIG(message: dns.message.Message, keyName: str, algorithm: str) -> bytes:
    """
    C{message} with a TSIG record naming C{keyName} and C{algorithm} and a
    MAC of zeros: what anyone can send without knowing any secret.
    """
    rdata = dns.rdtypes.ANY.TSIG.TSIG(
        dns.rdataclass.ANY, dns.rdatatype.TSIG, dns.name.from_text(algorithm),
        int(time.time()), 300, b"\x00" * 32, message.id, 0, b"",
    )
    message.tsig = dns.rrset.from_rdata(dns.name.from_text(keyName), 0, rdata)
    return message.to_wire()


class LocatorHostileTests(SynchronousTestCase):
    """
    The locator's protocol, driven datagram by datagram.
    """

    def setUp(self) -> None:
        """
        A locator for L{ZONE} with one key, on a fake transport, its clock
        at the time of day (TSIG signatures carry it), and every log event
        collected.
        """
        self.clock = Clock()
        self.clock.advance(time.time())
        self.table = RecordTable(None)
        self.addCleanup(self.table.close)
        self.server = LocatorServer(self.clock, ZONE, {"laptop.": SECRET}, self.table)
        self.transport = FakeDatagramTransport()
        self.server.makeConnection(self.transport)  # type: ignore[arg-type]
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def send(self, data: bytes) -> tuple[Optional[bytes], list[LogEvent]]:
        """
        Deliver one datagram from L{PEER}.

        @return: the answer (C{None} for none) and the log events it caused,
            having checked that there was at most one answer, sent to the
            peer, and that no event carries a failure.
        """
        before = len(self.events)
        self.server.datagramReceived(data, PEER)
        events = self.events[before:]
        for event in events:
            self.assertNotIn("log_failure", event)
        written = self.transport.written
        self.assertLessEqual(len(written), 1)
        self.assertTrue(all(addr == PEER for _, addr in written))
        answers = self.transport.take()
        return (answers[0] if answers else None), events

    def sendBad(self, data: bytes) -> Optional[bytes]:
        """
        Deliver one bad datagram: it must cause exactly one log event.

        @return: the answer, if any.
        """
        answer, events = self.send(data)
        self.assertEqual(len(events), 1, events)
        self.assertIn(events[0]["log_level"].name, ("info", "warn"))
        return answer

    def rcode(self, answer: Optional[bytes]) -> int:
        """
        The (4-bit) rcode of an answer, which must be a response.
        """
        assert answer is not None
        self.assertTrue(answer[2] & 0x80)
        return answer[3] & 0xF

    def tsigOf(self, answer: Optional[bytes]) -> dns.rdtypes.ANY.TSIG.TSIG:
        """
        The TSIG record of an answer, read without checking it.
        """
        assert answer is not None
        message = dns.message.from_wire(answer, keyring=False)
        assert message.tsig is not None
        rdata = message.tsig[0]
        assert isinstance(rdata, dns.rdtypes.ANY.TSIG.TSIG)
        return rdata

    def recordPublication(self, addresses: list[str]) -> tuple[bytes, FakeDatagramTransport, Any, Deferred[None]]:
        """
        Let L{DNSLocator} publish C{addresses} for L{HOST}, the way a server
        does, and catch the signed update it sends.

        @return: the update's wire form, and the client's transport,
            protocol and publication L{Deferred}, to deliver the answer to.
        """
        reactor = FakeUDPReactor()
        reactor.advance(self.clock.seconds())
        locator = DNSLocator(reactor, LOCATOR, ZONE, "laptop.", SECRET)
        d = locator.publish(HOST, addresses)
        transport, protocol = reactor.listening[-1]
        [(wire, addr)] = transport.written
        self.assertEqual(addr, LOCATOR)
        return wire, transport, protocol, d

    def publish(self, addresses: list[str]) -> None:
        """
        Publish C{addresses} for L{HOST} through L{DNSLocator}, round trip,
        and check that the publication succeeded.
        """
        wire, _, protocol, d = self.recordPublication(addresses)
        answer, events = self.send(wire)
        self.assertEqual(len(events), 1)
        self.assertEqual(self.rcode(answer), dns.rcode.NOERROR)
        protocol.datagramReceived(answer, LOCATOR)
        self.assertIsNone(self.successResultOf(d))

    def lookup(self, name: str = HOST, rdtype: str = "A") -> list[str]:
        """
        What a query for C{name} answers.
        """
        answer, events = self.send(dns.message.make_query(name, rdtype).to_wire())
        self.assertEqual(events, [])
        assert answer is not None
        message = dns.message.from_wire(answer)
        return sorted(rd.to_text() for rrset in message.answer for rd in rrset)

    def test_unknownAlgorithm(self) -> None:
        """
        A TSIG record naming our key with an algorithm we do not know (or
        another than hmac-sha256), with no valid MAC, is answered NOTAUTH
        with an unsigned BADKEY TSIG record (RFC 8945, section 5.2.1), in
        one line of log; an update so signed changes nothing.
        """
        for algorithm in ["hmac-foo.", "imac-sha256.", "gss-tsig.", "hmac-md5.sig-alg.reg.int.", "hmac-sha512."]:
            update = dns.update.UpdateMessage(ZONE)
            update.replace(HOST, 30, "A", "192.0.2.66")
            query = dns.message.make_query(HOST, "A")
            for wire in [withTSIG(update, "laptop.", algorithm), withTSIG(query, "laptop.", algorithm)]:
                answer = self.sendBad(wire)
                self.assertEqual(self.rcode(answer), dns.rcode.NOTAUTH)
                tsig = self.tsigOf(answer)
                self.assertEqual((tsig.error, tsig.mac), (dns.rcode.BADKEY, b""))
                self.assertEqual(tsig.algorithm, dns.name.from_text(algorithm))
        self.assertEqual(self.lookup(), [])

    def test_unknownKey(self) -> None:
        """
        A TSIG record naming a key we do not have is answered NOTAUTH,
        BADKEY.
        """
        update = dns.update.UpdateMessage(ZONE)
        update.replace(HOST, 30, "A", "192.0.2.66")
        answer = self.sendBad(withTSIG(update, "stranger.", "hmac-sha256."))
        self.assertEqual(self.rcode(answer), dns.rcode.NOTAUTH)
        self.assertEqual(self.tsigOf(answer).error, dns.rcode.BADKEY)

    def test_otherAlgorithmWithOurSecret(self) -> None:
        """
        Our key is an hmac-sha256 key: an update validly signed with its
        secret under another algorithm is refused (NOTAUTH, BADKEY), and
        the client is told so.
        """
        keyring = {dns.name.from_text("laptop."): dns.tsig.Key("laptop.", SECRET, dns.tsig.HMAC_SHA512)}
        update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=KEY)
        update.replace(HOST, 30, "A", "192.0.2.66")
        answer = self.sendBad(update.to_wire())
        self.assertEqual(self.rcode(answer), dns.rcode.NOTAUTH)
        assert answer is not None
        self.assertRaises(
            dns.tsig.PeerBadKey, dns.message.from_wire, answer, keyring=keyring, request_mac=update.mac
        )
        self.assertEqual(self.lookup(), [])

    def test_badSignature(self) -> None:
        """
        A signature that does not check (here: of a query) is answered
        NOTAUTH with an unsigned BADSIG TSIG record, which the client
        recognises.
        """
        keyring = dns.tsigkeyring.from_text({"laptop.": base64.b64encode(b"o" * 32).decode()})
        query = dns.message.make_query(HOST, "A")
        query.use_tsig(keyring, KEY)
        answer = self.sendBad(query.to_wire())
        self.assertEqual(self.rcode(answer), dns.rcode.NOTAUTH)
        self.assertEqual((self.tsigOf(answer).error, self.tsigOf(answer).mac), (dns.rcode.BADSIG, b""))
        assert answer is not None
        self.assertRaises(
            dns.tsig.PeerBadSignature, dns.message.from_wire, answer, keyring=keyring, request_mac=query.mac
        )

    def test_badTime(self) -> None:
        """
        A valid signature made long ago is answered NOTAUTH with a signed
        BADTIME TSIG record carrying our time (RFC 8945, section 5.2.3);
        the publisher is told to check the clocks.
        """
        wire, _, protocol, d = self.recordPublication(["10.1.1.1"])
        self.clock.advance(3600)
        answer = self.sendBad(wire)
        self.assertEqual(self.rcode(answer), dns.rcode.NOTAUTH)
        tsig = self.tsigOf(answer)
        self.assertEqual(tsig.error, dns.rcode.BADTIME)
        self.assertEqual(len(tsig.mac), 32)
        self.assertEqual(int.from_bytes(tsig.other, "big"), int(self.clock.seconds()))
        protocol.datagramReceived(answer, LOCATOR)
        message = str(self.failureResultOf(d, LocatorError).value)
        self.assertIn("(BADTIME): check both clocks", message)
        self.assertIn("TSIG key laptop.", message)
        self.assertEqual(self.lookup(), [])

    def test_everyBitFlip(self) -> None:
        """
        Every single-bit flip of a signed update (as L{DNSLocator} sends
        it), sent after the update itself, gets one line of log and an
        error: FORMERR, NOTAUTH (BADSIG or BADKEY), or REFUSED for the
        flips the signature does not cover (message id, TSIG TTL, case of
        the key and algorithm names), which are replays; a flip that makes
        it a response gets no answer. Nothing is changed, and a new signed
        update is then accepted.
        """
        wire, _, _, _ = self.recordPublication(["10.1.1.1"])
        answer, _ = self.send(wire)
        self.assertEqual(self.rcode(answer), dns.rcode.NOERROR)
        # The 11 characters of the algorithm's name in the TSIG record: the
        # 81 flips that are not of a letter's case name an algorithm we do
        # not know (these used to raise NotImplementedError).
        algorithm = wire.index(b"\x0bhmac-sha256\x00") + 1
        badKeys = 0
        seen: dict[Optional[int], int] = {}
        for bit, flipped in flips(wire):
            answer = self.sendBad(flipped)
            if bit == 16:
                self.assertIsNone(answer)
                seen[None] = seen.get(None, 0) + 1
                continue
            code = self.rcode(answer)
            self.assertIn(code, (dns.rcode.FORMERR, dns.rcode.NOTAUTH, dns.rcode.REFUSED), bit)
            if code == dns.rcode.NOTAUTH:
                self.assertIn(self.tsigOf(answer).error, (dns.rcode.BADSIG, dns.rcode.BADKEY))
            if algorithm <= bit // 8 < algorithm + 11:
                caseOnly = wire[bit // 8 : bit // 8 + 1].isalpha() and bit % 8 == 2
                if caseOnly:
                    self.assertEqual(code, dns.rcode.REFUSED)
                else:
                    self.assertEqual((code, self.tsigOf(answer).error), (dns.rcode.NOTAUTH, dns.rcode.BADKEY))
                    badKeys += 1
            seen[code] = seen.get(code, 0) + 1
        self.assertEqual(badKeys, 81)
        self.assertEqual(sum(seen.values()), len(wire) * 8)
        self.assertEqual(seen[None], 1)
        self.assertGreater(seen[dns.rcode.NOTAUTH], len(wire) * 4)
        self.assertEqual(self.lookup(), ["10.1.1.1"])
        self.publish(["10.2.2.2"])
        self.assertEqual(self.lookup(), ["10.2.2.2"])

    def test_everyTruncation(self) -> None:
        """
        A signed update or a query cut at every length: shorter than a
        header, no answer; else FORMERR with the same id; one line of log
        each. A signed update still works afterwards.
        """
        update, _, _, _ = self.recordPublication(["10.1.1.1"])
        query = dns.message.make_query(HOST, "A", use_edns=0).to_wire()
        for wire in [update, query]:
            for length in range(len(wire)):
                answer = self.sendBad(wire[:length])
                if length < 12:
                    self.assertIsNone(answer)
                else:
                    self.assertEqual(self.rcode(answer), dns.rcode.FORMERR)
                    assert answer is not None
                    self.assertEqual(answer[:2], wire[:2])
        self.assertEqual(self.lookup(), [])
        self.publish(["10.3.3.3"])
        self.assertEqual(self.lookup(), ["10.3.3.3"])

    def test_randomBytes(self) -> None:
        """
        Random datagrams, with random headers or with headers that announce
        a few records, get at most one answer, an error, and one line of
        log each.
        """
        rng = random.Random(20260401)
        for i in range(3000):
            body = rng.randbytes(rng.randrange(0, 300))
            if i % 2:
                header = rng.randbytes(2) + bytes([rng.randrange(0, 256) & 0x7F, rng.randrange(0, 256)])
                counts = b"".join(rng.randrange(0, 3).to_bytes(2, "big") for _ in range(4))
                body = header + counts + body
            answer = self.sendBad(body)
            if answer is not None:
                self.assertNotEqual(self.rcode(answer), dns.rcode.NOERROR)
                self.assertLessEqual(len(answer), 512)
        self.publish(["10.4.4.4"])
        self.assertEqual(self.lookup(), ["10.4.4.4"])

    def test_unsupportedOpcodes(self) -> None:
        """
        Every opcode other than QUERY and UPDATE is answered NOTIMP.
        """
        for opcode in range(16):
            if opcode in (dns.opcode.QUERY, dns.opcode.UPDATE):
                continue
            query = dns.message.make_query(HOST, "A")
            query.set_opcode(dns.opcode.Opcode(opcode))
            answer = self.sendBad(query.to_wire())
            self.assertEqual(self.rcode(answer), dns.rcode.NOTIMP)
            assert answer is not None
            self.assertEqual((answer[2] >> 3) & 0xF, opcode)

    def test_ednsVersion(self) -> None:
        """
        An EDNS version other than 0 is answered BADVERS, with EDNS 0.
        """
        answer = self.sendBad(dns.message.make_query(HOST, "A", use_edns=1).to_wire())
        assert answer is not None
        message = dns.message.from_wire(answer)
        self.assertEqual((message.rcode(), message.edns), (dns.rcode.BADVERS, 0))

    def test_refusedQueries(self) -> None:
        """
        Queries for names outside the zone, of another class, or with
        several questions are refused (REFUSED, FORMERR), each in one line
        of log.
        """
        self.assertEqual(self.rcode(self.sendBad(dns.message.make_query("www.other.", "A").to_wire())), dns.rcode.REFUSED)
        chaos = dns.message.make_query("version.bind.", "TXT", "CH").to_wire()
        self.assertEqual(self.rcode(self.sendBad(chaos)), dns.rcode.REFUSED)
        inZoneChaos = dns.message.make_query(HOST, "A", "CH").to_wire()
        self.assertEqual(self.rcode(self.sendBad(inZoneChaos)), dns.rcode.REFUSED)
        two = dns.message.make_query(HOST, "A")
        two.question.append(dns.rrset.RRset(dns.name.from_text("other.mobile.example."), dns.rdataclass.IN, dns.rdatatype.A))
        self.assertEqual(self.rcode(self.sendBad(two.to_wire())), dns.rcode.FORMERR)

    def test_responsesDropped(self) -> None:
        """
        A response (QR set) is never answered: two servers must not be made
        to answer each other forever.
        """
        response = dns.message.make_response(dns.message.make_query(HOST, "A"))
        self.assertIsNone(self.sendBad(response.to_wire()))

    def populate(self, count: int, rdtype: int = dns.rdatatype.A) -> list[str]:
        """
        Give L{HOST} C{count} addresses of type C{rdtype}.
        """
        if rdtype == dns.rdatatype.A:
            addresses = ["10.9.%d.%d" % (i // 250, i % 250 + 1) for i in range(count)]
        else:
            addresses = ["fd00::%x" % (i + 1,) for i in range(count)]
        self.table.apply([("add", HOST, rdtype, 30, a, 0) for a in addresses])
        return addresses

    def query(self, wire: bytes) -> tuple[bytes, dns.message.Message]:
        """
        Send a good query: no log, one answer.

        @return: the answer and its parsed form.
        """
        answer, events = self.send(wire)
        self.assertEqual(events, [])
        assert answer is not None
        return answer, dns.message.from_wire(answer)

    def test_truncatedWithoutEDNS(self) -> None:
        """
        A query without EDNS whose answer would exceed 512 bytes (here
        1,600) gets 512 bytes at most: TC set, no records, the question
        kept; one that fits is answered in full.
        """
        self.populate(100)
        for rdtype in ["A", "AAAA"]:
            if rdtype == "AAAA":
                self.populate(40, dns.rdatatype.AAAA)
            wire = dns.message.make_query(HOST, rdtype, use_edns=False).to_wire()
            answer, message = self.query(wire)
            self.assertLessEqual(len(answer), 512)
            self.assertTrue(message.flags & dns.flags.TC)
            self.assertEqual((message.answer, message.authority, message.additional), ([], [], []))
            self.assertEqual(message.question[0].name, dns.name.from_text(HOST))
            self.assertEqual(message.rcode(), dns.rcode.NOERROR)
        self.table.apply([("delete-name", HOST, 0, None, None, 0)])
        few = self.populate(20)
        answer, message = self.query(dns.message.make_query(HOST, "A", use_edns=False).to_wire())
        self.assertFalse(message.flags & dns.flags.TC)
        self.assertEqual(sorted(rd.to_text() for rd in message.answer[0]), sorted(few))

    def test_truncatedToEDNSPayload(self) -> None:
        """
        With EDNS, the client's payload size is the limit, at least 512 and
        at most L{LocatorServer.maxPayload} (1232): an answer of about
        1,000 bytes is whole for a payload of 4096 and truncated for one of
        512 or less; one of 1,600 bytes is truncated to 1232 bytes even for
        4096.
        """
        addresses = self.populate(60)
        answer, message = self.query(dns.message.make_query(HOST, "A", use_edns=0, payload=4096).to_wire())
        self.assertGreater(len(answer), 512)
        self.assertFalse(message.flags & dns.flags.TC)
        self.assertEqual(sorted(rd.to_text() for rd in message.answer[0]), sorted(addresses))
        self.assertEqual((message.edns, message.payload), (0, LocatorServer.maxPayload))
        for payload in [512, 100]:
            answer, message = self.query(dns.message.make_query(HOST, "A", use_edns=0, payload=payload).to_wire())
            self.assertLessEqual(len(answer), 512)
            self.assertTrue(message.flags & dns.flags.TC)
            self.assertEqual(message.answer, [])
            self.assertEqual(message.edns, 0)
        self.populate(100)
        answer, message = self.query(dns.message.make_query(HOST, "A", use_edns=0, payload=4096).to_wire())
        self.assertLessEqual(len(answer), LocatorServer.maxPayload)
        self.assertTrue(message.flags & dns.flags.TC)
        self.assertEqual(message.answer, [])

    def test_signedAnswerTruncated(self) -> None:
        """
        A signed query whose answer is too large gets a truncated answer,
        signed over what is sent, that the client's key checks.
        """
        self.populate(100)
        keyring = dns.tsigkeyring.from_text({"laptop.": SECRET})
        query = dns.message.make_query(HOST, "A")
        query.use_tsig(keyring, KEY)
        answer, events = self.send(query.to_wire())
        self.assertEqual(events, [])
        assert answer is not None
        self.assertLessEqual(len(answer), 512)
        message = dns.message.from_wire(answer, keyring=keyring, request_mac=query.mac)
        self.assertTrue(message.flags & dns.flags.TC)
        self.assertEqual(message.answer, [])

    def test_noExceptionEscapes(self) -> None:
        """
        Should answering fail all the same (a bug, or a transport that
        refuses the answer), the datagram is dropped with one line of log:
        no exception leaves C{datagramReceived}.
        """

        def broken(data: bytes, addr: Any = None) -> Optional[bytes]:
            raise RuntimeError("a bug\nwith a second line")

        self.server.respond = broken  # type: ignore[method-assign]
        self.assertIsNone(self.sendBad(b"\x00" * 12))
        [event] = self.events
        self.assertNotIn("\n", event["reason"])
        del self.server.respond

        def refuse(data: bytes, addr: Any = None) -> None:
            raise OSError("no route")

        self.transport.write = refuse  # type: ignore[method-assign]
        _, events = self.send(dns.message.make_query(HOST, "A").to_wire())
        self.assertEqual(len(events), 1)

    def test_updateClasses(self) -> None:
        """
        A signed update of a zone of another class than IN is refused
        (NOTAUTH), one with a record of another class FORMERR (RFC 2136,
        section 3.4.1.3); neither changes anything.
        """
        keyring = dns.tsigkeyring.from_text({"laptop.": SECRET})
        hesiodAddress = dns.rdata.GenericRdata(dns.rdataclass.HS, dns.rdatatype.A, b"\x0a\x00\x00\x01")
        hesiodZone = dns.update.UpdateMessage(ZONE, rdclass=dns.rdataclass.HS, keyring=keyring, keyname=KEY)
        hesiodZone.add(dns.name.from_text(HOST), 30, hesiodAddress)
        self.assertEqual(self.rcode(self.sendBad(hesiodZone.to_wire())), dns.rcode.NOTAUTH)
        hesiodRecord = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=KEY)
        hesiodRecord.update.append(dns.rrset.from_rdata(HOST, 30, hesiodAddress))
        self.assertEqual(self.rcode(self.sendBad(hesiodRecord.to_wire())), dns.rcode.FORMERR)
        self.assertEqual(self.lookup(), [])
        self.publish(["10.5.5.5"])
        self.assertEqual(self.lookup(), ["10.5.5.5"])


class TypeCacheTests(SynchronousTestCase):
    """
    dnspython remembers, per process, which implementation reads a record
    type; a stranger must not be able to change it.
    """

    def test_anyClassAAAAFirst(self) -> None:
        """
        In a fresh process, a query carrying an AAAA record of class ANY,
        the first datagram the locator reads, does not stop it answering
        AAAA queries from its table afterwards.
        """
        script = """
import dns.message, dns.rdatatype
from twisted.internet.task import Clock
from migrate.locating.server import LocatorServer, RecordTable
table = RecordTable(None)
server = LocatorServer(Clock(), "mobile.example.", {}, table)
table.apply([("add", "host.mobile.example.", dns.rdatatype.AAAA, 30, "fd00::1", 0)])
poison = bytearray(dns.message.make_query("host.mobile.example.", "A").to_wire())
poison[11] = 1
poison += b"\\x00\\x00\\x1c\\x00\\xff\\x00\\x00\\x00\\x00\\x00\\x10" + b"\\x01" * 16
server.respond(bytes(poison))
answer = server.respond(dns.message.make_query("host.mobile.example.", "AAAA").to_wire())
print([rd.to_text() for rrset in dns.message.from_wire(answer).answer for rd in rrset])
"""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=30
        )
        self.assertEqual((result.stdout.strip(), result.stderr), ("['fd00::1']", ""))
