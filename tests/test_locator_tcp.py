"""
The embedded locator over TCP
(L{migrate.locating.server.LocatorStreamFactory}): real loopback
connections answered whole where UDP truncates, pipelined queries, signed
updates, and the bounds a hostile peer meets (lengths, connections in all
and per address, idle connections, peers that never read); and
L{migrate.locating.client.DNSLocator} asking again over TCP when a UDP
answer is truncated.

The connections' timers run on a L{Clock}: what real time would only
make slow is driven by hand.
"""

from __future__ import annotations

import base64
import random
import socket
import time
from typing import Any, Optional, cast

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.names import dns as tdns
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from migrate.errors import LocatorError
from migrate.locating.client import DNSLocator, _queryTCP
from migrate.locating.server import LocatorServer, LocatorStream, LocatorStreamFactory, RecordTable

from .test_locate import signedUpdate
from .test_loopback import waitFor

SECRET = base64.b64encode(b"s" * 32).decode()
ZONE = "mobile.example."
HOST = "host.mobile.example."
OTHER_HOST = "other.mobile.example."


def frame(wire: bytes) -> bytes:
    """
    C{wire} as sent over TCP: preceded by its length.
    """
    return len(wire).to_bytes(2, "big") + wire


def query(name: str = HOST, rdtype: str = "A", **kw: Any) -> dns.message.Message:
    """
    A query without EDNS (as C{twisted.names} sends them), unless asked.
    """
    kw.setdefault("use_edns", False)
    return dns.message.make_query(name, rdtype, **kw)


def addresses(message: dns.message.Message) -> list[str]:
    """
    The addresses an answer carries, sorted.
    """
    return sorted(rd.to_text() for rrset in message.answer for rd in rrset)


def populate(table: RecordTable, count: int, rdtype: int = dns.rdatatype.AAAA, name: str = HOST) -> list[str]:
    """
    Give C{name} C{count} addresses of C{rdtype}.
    """
    if rdtype == dns.rdatatype.A:
        out = ["10.9.%d.%d" % (i // 250, i % 250 + 1) for i in range(count)]
    else:
        out = ["fd00::%x" % (i + 1,) for i in range(count)]
    table.apply([("add", name, rdtype, 30, a, 0) for a in out])
    return sorted(out)


def unsent(transport: Any) -> int:
    """
    The bytes a Twisted TCP transport holds, not yet given to its socket
    (L{twisted.internet.abstract.FileDescriptor}'s buffers).
    """
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def listenBoth(case: TestCase, server: LocatorServer, factory: LocatorStreamFactory) -> tuple[str, int]:
    """
    Listen with C{server} on UDP and C{factory} on TCP, one port of
    127.0.0.1, closed when C{case} ends.

    @return: the address.
    """
    for _ in range(20):
        tcp = reactor.listenTCP(0, factory, interface="127.0.0.1")
        port = tcp.getHost().port  # type: ignore[attr-defined]
        try:
            udp = reactor.listenUDP(port, server, interface="127.0.0.1")  # type: ignore[attr-defined]
        except Exception:
            tcp.stopListening()
            continue
        case.addCleanup(udp.stopListening)
        case.addCleanup(tcp.stopListening)
        return ("127.0.0.1", port)
    raise AssertionError("no port free for both UDP and TCP")


class DNSStreamClient(Protocol):
    """
    A DNS-over-TCP client that records the answers it reads.

    @ivar answers: the answers, in order, as read (wire form).
    @ivar lost: fires when the connection is lost.
    """

    def __init__(self) -> None:
        self.answers: list[bytes] = []
        self.buffer = b""
        self.lost: Deferred[None] = Deferred()
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2 and len(self.buffer) >= 2 + int.from_bytes(self.buffer[:2], "big"):
            n = int.from_bytes(self.buffer[:2], "big")
            self.answers.append(self.buffer[2 : 2 + n])
            self.buffer = self.buffer[2 + n :]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self.lost.callback(None)

    def send(self, *wires: bytes) -> None:
        """
        Send messages, framed, in one write.
        """
        self.transport.write(b"".join(frame(w) for w in wires))  # type: ignore[union-attr]

    def parsed(self, i: int, keyring: Any = False, request_mac: bytes = b"") -> dns.message.Message:
        return dns.message.from_wire(self.answers[i], keyring=keyring, request_mac=request_mac)


class DNSDatagramClient(DatagramProtocol):
    """
    Sends one datagram and fires with the first answer.
    """

    def __init__(self, wire: bytes, server: tuple[str, int]) -> None:
        self.wire = wire
        self.server = server
        self.answer: Deferred[bytes] = Deferred()

    def startProtocol(self) -> None:
        self.transport.write(self.wire, self.server)  # type: ignore[union-attr]

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not self.answer.called:
            self.answer.callback(data)


class CountingFactory(LocatorStreamFactory):
    """
    Counts the connections it accepted and keeps them.
    """

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.accepted: list[LocatorStream] = []

    def buildProtocol(self, addr: Any) -> Optional[LocatorStream]:  # type: ignore[override]
        p = super().buildProtocol(addr)
        if p is not None:
            self.accepted.append(p)
        return p


class LogCollector:
    """
    Every log event while a test runs.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        case.addCleanup(globalLogPublisher.removeObserver, observer)

    def about(self, text: str) -> list[LogEvent]:
        """
        The events whose format contains C{text}.
        """
        return [e for e in self.events if text in (e.get("log_format") or "")]

    def lines(self) -> list[LogEvent]:
        """
        The events at info level or above, having checked none carries a
        failure (a traceback).
        """
        for e in self.events:
            assert "log_failure" not in e, e
        return [
            e for e in self.events
            if e["log_level"].name in ("info", "warn", "error", "critical")
            and e.get("log_namespace", "").startswith("migrate.")
        ]


class LocatorTCPTests(TestCase):
    """
    A locator on UDP and TCP on one loopback port; connections' timers on a
    L{Clock}.
    """

    timeout = 30

    def setUp(self) -> None:
        self.clock = Clock()
        self.table = RecordTable(None)
        self.addCleanup(self.table.close)
        self.server = LocatorServer(reactor, ZONE, {"laptop.": SECRET}, self.table)
        self.factory = CountingFactory(
            self.server, clock=self.clock, maxConnections=4, maxPerAddress=2, logInterval=5
        )
        self.log = LogCollector(self)
        self.address = listenBoth(self, self.server, self.factory)
        self.port = self.address[1]
        self.clients: list[DNSStreamClient] = []
        # Cleanups run last first: close every connection, then the ports.
        self.addCleanup(self.closeAll)

    @inlineCallbacks
    def closeAll(self) -> Any:
        """
        Cut every connection off, both ends, and wait until they are gone;
        then nothing may be left on the clock.
        """
        for c in self.clients:
            if not c.closed and c.transport is not None:
                c.transport.abortConnection()  # type: ignore[attr-defined]
        for p in list(self.factory.connections):
            p.transport.abortConnection()  # type: ignore[union-attr]
        yield waitFor(lambda: not self.factory.connections and all(c.closed for c in self.clients))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @inlineCallbacks
    def connect(self, source: str = "127.0.0.1") -> Any:
        """
        A client connected from C{source}.
        """
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
        client = yield connectProtocol(endpoint, DNSStreamClient())
        self.clients.append(client)
        return client

    @inlineCallbacks
    def ask(self, client: DNSStreamClient, *wires: bytes) -> Any:
        """
        Send messages and wait for as many answers.
        """
        before = len(client.answers)
        client.send(*wires)
        yield waitFor(lambda: len(client.answers) >= before + len(wires) or client.closed)
        self.assertEqual(len(client.answers), before + len(wires))
        return [client.parsed(i) for i in range(before, before + len(wires))]

    @inlineCallbacks
    def askUDP(self, wire: bytes) -> Any:
        """
        The answer to one datagram.
        """
        client = DNSDatagramClient(wire, self.address)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")  # type: ignore[attr-defined]
        try:
            answer = yield client.answer
        finally:
            yield port.stopListening()
        return answer

    @inlineCallbacks
    def test_wholeOverTCP(self) -> Any:
        """
        A name with 40 AAAA records: over UDP without EDNS the answer is
        truncated (TC, no records); over TCP it is whole, all 40, well over
        512 bytes.
        """
        expected = populate(self.table, 40)
        wire = query(HOST, "AAAA").to_wire()
        udp = dns.message.from_wire((yield self.askUDP(wire)))
        self.assertTrue(udp.flags & dns.flags.TC)
        self.assertEqual(udp.answer, [])
        client = yield self.connect()
        [answer] = yield self.ask(client, wire)
        self.assertFalse(answer.flags & dns.flags.TC)
        self.assertEqual(addresses(answer), expected)
        self.assertGreater(len(client.answers[0]), 1000)
        self.assertEqual(self.log.lines(), [])

    @inlineCallbacks
    def test_pipelined(self) -> Any:
        """
        Two queries sent together on one connection are both answered, in
        order; the connection stays open for a third.
        """
        many = populate(self.table, 30)
        one = populate(self.table, 1, dns.rdatatype.A, OTHER_HOST)
        first, second = query(HOST, "AAAA"), query(OTHER_HOST, "A")
        client = yield self.connect()
        answers = yield self.ask(client, first.to_wire(), second.to_wire())
        self.assertEqual([a.id for a in answers], [first.id, second.id])
        self.assertEqual([addresses(a) for a in answers], [many, one])
        third = query("nobody.mobile.example.")
        [answer] = yield self.ask(client, third.to_wire())
        self.assertEqual((answer.id, answer.rcode()), (third.id, dns.rcode.NXDOMAIN))

    @inlineCallbacks
    def test_halfClose(self) -> Any:
        """
        A peer that sends its queries and closes its side gets every
        answer, then the connection is closed.
        """
        many = populate(self.table, 40)
        client = yield self.connect()
        client.send(*(query(HOST, "AAAA").to_wire() for _ in range(3)))
        client.transport.loseWriteConnection()
        yield client.lost
        self.assertEqual([addresses(client.parsed(i)) for i in range(len(client.answers))], [many] * 3)

    @inlineCallbacks
    def test_badLengths(self) -> Any:
        """
        A declared length of 0, or over the largest message (4096), closes
        the connection, after answering what came before it, in one line of
        log; 4096 itself is read.
        """
        good = query()
        for length in [0, 4097, 65535]:
            client = yield self.connect()
            bad = length.to_bytes(2, "big") + b"\x00" * 20
            client.transport.write(frame(good.to_wire()) + bad)
            yield client.lost
            self.assertEqual([client.parsed(i).id for i in range(len(client.answers))], [good.id])
            [event] = self.log.about("TCP connection {reason}")
            self.assertIn("a message of %d bytes declared" % (length,), event["reason"])
            del self.log.events[:]
        # A message of 4096 bytes (a query padded with an EDNS option) is
        # read and answered.
        bare = len(query(use_edns=0, options=[dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"")]).to_wire())
        padded = query(use_edns=0, options=[dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"\x00" * (4096 - bare))])
        wire = padded.to_wire(max_size=65535)
        self.assertEqual(len(wire), 4096)
        client = yield self.connect()
        [answer] = yield self.ask(client, wire)
        self.assertEqual(answer.id, padded.id)

    @inlineCallbacks
    def test_malformed(self) -> Any:
        """
        Over TCP as over UDP: a message that does not parse is answered
        FORMERR, one shorter than a header or a response dropped, each in
        one line of log; the connection goes on.
        """
        client = yield self.connect()
        garbage = b"\x12\x34\x00\x00" + b"\xff" * 20
        response = dns.message.make_response(query()).to_wire()
        good = query()
        client.send(b"\x01\x02\x03", response, garbage, good.to_wire())
        yield waitFor(lambda: len(client.answers) >= 2)
        self.assertEqual(client.answers[0][:2], b"\x12\x34")
        self.assertEqual(client.answers[0][3] & 0xF, dns.rcode.FORMERR)
        self.assertEqual(client.parsed(1).id, good.id)
        self.assertEqual(len(self.log.lines()), 3)
        self.assertFalse(client.closed)

    @inlineCallbacks
    def test_signedUpdate(self) -> Any:
        """
        A signed update over TCP is applied and answered signed, as over
        UDP, through the same memory: sent again, over TCP or UDP, it is a
        replay and refused; a forged one is refused NOTAUTH.
        """
        keyring = dns.tsigkeyring.from_text({"laptop.": SECRET})
        update = signedUpdate(HOST, "10.1.1.1")
        wire = update.to_wire()
        client = yield self.connect()
        [answer] = yield self.ask(client, wire)
        checked = client.parsed(0, keyring=keyring, request_mac=update.mac)
        self.assertEqual(checked.rcode(), dns.rcode.NOERROR)
        [found] = yield self.ask(client, query().to_wire())
        self.assertEqual(addresses(found), ["10.1.1.1"])
        [again] = yield self.ask(client, wire)
        self.assertEqual(again.rcode(), dns.rcode.REFUSED)
        self.assertEqual((yield self.askUDP(wire))[3] & 0xF, dns.rcode.REFUSED)
        forged = signedUpdate(HOST, "192.0.2.66", secret=base64.b64encode(b"o" * 32).decode())
        [refused] = yield self.ask(client, forged.to_wire())
        self.assertEqual(refused.rcode(), dns.rcode.NOTAUTH)
        [found] = yield self.ask(client, query().to_wire())
        self.assertEqual(addresses(found), ["10.1.1.1"])
        # Applied; refused as a replay twice; refused as forged.
        self.assertEqual(len(self.log.lines()), 4)

    @inlineCallbacks
    def test_connectionLimits(self) -> Any:
        """
        Beyond 2 connections from one address, or 4 in all, a new one is
        closed at once, unanswered; connections from other addresses still
        get answers; refusals are logged at most once per log interval
        (here 5 s), with their number; a closed connection frees its place.
        """
        try:
            for source in ["127.0.0.2", "127.0.0.3"]:
                s = socket.socket()
                s.bind((source, 0))
                s.close()
        except OSError as e:
            raise SkipTest("no loopback addresses but 127.0.0.1 (%s)" % (e,))
        wire = query().to_wire()
        first = []
        for _ in range(2):
            client = yield self.connect("127.0.0.1")
            yield self.ask(client, wire)
            first.append(client)
        refused = yield self.connect("127.0.0.1")
        refused.send(wire)
        yield refused.lost
        self.assertEqual(refused.answers, [])
        [event] = self.log.about("closed at once")
        self.assertEqual((event["addr"], event["n"]), ("127.0.0.1", 1))
        self.assertIn("2 TCP connections open from it", event["why"])
        # A victim elsewhere is served, up to the limit in all.
        victims = []
        for _ in range(2):
            victim = yield self.connect("127.0.0.2")
            [answer] = yield self.ask(victim, wire)
            self.assertEqual(answer.rcode(), dns.rcode.NXDOMAIN)
            victims.append(victim)
        self.assertEqual(len(self.factory.connections), 4)
        for source in ["127.0.0.3", "127.0.0.1"]:
            refused = yield self.connect(source)
            refused.send(wire)
            yield refused.lost
            self.assertEqual(refused.answers, [])
        self.assertEqual(len(self.log.about("closed at once")), 1)
        self.clock.advance(5)
        refused = yield self.connect("127.0.0.3")
        yield refused.lost
        later = self.log.about("closed at once")[1]
        self.assertEqual((later["addr"], later["n"]), ("127.0.0.3", 3))
        self.assertIn("4 TCP connections open in all", later["why"])
        # The accepted ones were never disturbed.
        for client in first + victims:
            [answer] = yield self.ask(client, wire)
            self.assertEqual(answer.rcode(), dns.rcode.NXDOMAIN)
        first[0].transport.loseConnection()
        yield waitFor(lambda: len(self.factory.connections) == 3)
        again = yield self.connect("127.0.0.3")
        [answer] = yield self.ask(again, wire)
        self.assertEqual(answer.rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual(self.factory.perAddress, {"127.0.0.1": 1, "127.0.0.2": 2, "127.0.0.3": 1})

    @inlineCallbacks
    def test_idleTimeout(self) -> Any:
        """
        A connection is closed after 10 s without a complete message (a
        partial one does not count); each complete message starts the 10 s
        again.
        """
        client = yield self.connect()
        yield self.ask(client, query().to_wire())
        [server] = self.factory.accepted
        self.clock.advance(9)
        yield self.ask(client, query().to_wire())
        self.clock.advance(9)
        client.transport.write(frame(query().to_wire())[:10])
        yield waitFor(lambda: len(server._buffer) == 10)
        self.assertFalse(server.transport.disconnecting)  # type: ignore[union-attr]
        self.clock.advance(1)
        yield client.lost
        self.assertEqual(len(client.answers), 2)
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @inlineCallbacks
    def test_peerThatDoesNotRead(self) -> Any:
        """
        A peer that sends queries and never reads the answers: once its
        connection holds more unsent answers than the transport's buffer,
        no more are read or made (the memory it holds stays under the
        buffer size and one answer), and after the idle timeout it is cut
        off; the locator goes on answering others.
        """
        populate(self.table, 40)
        wire = frame(query(HOST, "AAAA").to_wire())
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.addCleanup(sock.close)
        sock.connect(self.address)
        sock.setblocking(False)
        payload = wire * 4000
        sent = [0]

        def push() -> bool:
            try:
                while sent[0] < len(payload):
                    sent[0] += sock.send(payload[sent[0] : sent[0] + 65536])
            except BlockingIOError:
                pass
            return bool(self.factory.accepted) and self.factory.accepted[0]._paused

        yield waitFor(push)
        [server] = self.factory.accepted
        answerSize = 2 + len(self.server.respond(query(HOST, "AAAA").to_wire(), stream=True) or b"")
        transport = server.transport
        self.assertLessEqual(unsent(transport), transport.bufferSize + answerSize)  # type: ignore[union-attr]
        self.assertGreater(unsent(transport), transport.bufferSize)  # type: ignore[union-attr]
        # What is waiting to be read stays bounded too.
        self.assertLessEqual(len(server._buffer), self.factory.maxBuffered)
        # Others are served meanwhile.
        other = yield self.connect()
        [answer] = yield self.ask(other, query(HOST, "AAAA").to_wire())
        self.assertEqual(len(answer.answer[0]), 40)
        self.assertTrue(server._paused)
        self.clock.advance(10)
        yield waitFor(lambda: server not in self.factory.connections)
        [event] = self.log.about("TCP connection {reason}")
        self.assertIn("answers unread", event["reason"])


class StreamTests(SynchronousTestCase):
    """
    One L{LocatorStream} on a L{StringTransport}, byte by byte.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(time.time())
        self.table = RecordTable(None)
        self.addCleanup(self.table.close)
        self.server = LocatorServer(self.clock, ZONE, {"laptop.": SECRET}, self.table)
        self.factory = LocatorStreamFactory(self.server)
        self.log = LogCollector(self)
        self.protocol, self.transport = self.open()

    def open(self) -> tuple[LocatorStream, StringTransport]:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.66", 5353))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def answers(self) -> list[dns.message.Message]:
        """
        The answers written since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        out = []
        while data:
            n = int.from_bytes(data[:2], "big")
            out.append(dns.message.from_wire(data[2 : 2 + n]))
            data = data[2 + n :]
        return out

    def test_byteByByte(self) -> None:
        """
        Messages arriving a byte at a time are answered when complete, in
        order.
        """
        populate(self.table, 2, dns.rdatatype.A)
        first, second = query(), query(OTHER_HOST)
        for byte in frame(first.to_wire()) + frame(second.to_wire()):
            self.protocol.dataReceived(bytes([byte]))
        self.assertEqual([(a.id, a.rcode()) for a in self.answers()], [(first.id, 0), (second.id, dns.rcode.NXDOMAIN)])

    def test_idleTimer(self) -> None:
        """
        The idle timer is one call on the factory's clock, started by the
        connection and by each complete message, and cancelled when the
        connection is lost; when it expires, the connection is closed (the
        transport's producer unregistered, so that it can close), and cut
        off if it has not closed 10 s later.
        """
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertIs(self.transport.producer, self.protocol)
        self.clock.advance(9.5)
        self.protocol.dataReceived(frame(query().to_wire()))
        self.assertEqual(len(self.answers()), 1)
        self.clock.advance(9.5)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)
        self.assertFalse(self.transport.disconnected)
        self.protocol.dataReceived(frame(query().to_wire()))
        self.assertEqual(self.answers(), [])
        self.clock.advance(10)
        self.assertTrue(self.transport.disconnected)
        self.protocol.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.factory.connections, self.factory.perAddress), (set(), {}))

    def test_lostCancelsTimer(self) -> None:
        """
        A connection lost leaves nothing on the clock.
        """
        self.protocol.connectionLost(Failure(Exception("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pausedAnswersNothing(self) -> None:
        """
        While the transport holds too much (it paused its producer), the
        input is kept, not answered, and reading is paused; resumed, the
        rest is answered in order.
        """
        wires = [query("h%d.mobile.example." % i) for i in range(3)]
        self.protocol.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.protocol.dataReceived(b"".join(frame(w.to_wire()) for w in wires))
        self.assertEqual(self.answers(), [])
        self.protocol.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual([a.id for a in self.answers()], [w.id for w in wires])

    def test_pauseMidInput(self) -> None:
        """
        A transport that pauses its producer while an answer is written
        stops the answers there, the rest of the input kept.
        """
        wires = [query("h%d.mobile.example." % i) for i in range(3)]
        write = self.transport.write

        def pausingWrite(data: bytes) -> None:
            write(data)
            self.protocol.pauseProducing()

        self.transport.write = pausingWrite  # type: ignore[method-assign]
        self.protocol.dataReceived(b"".join(frame(w.to_wire()) for w in wires))
        self.assertEqual([a.id for a in self.answers()], [wires[0].id])
        self.transport.write = write  # type: ignore[method-assign]
        self.protocol.resumeProducing()
        self.assertEqual([a.id for a in self.answers()], [w.id for w in wires[1:]])

    def test_halfCloseWhilePaused(self) -> None:
        """
        The peer's end of input while answers wait: they are answered when
        the transport takes them again, then the connection is closed; a
        trailing partial message is dropped.
        """
        wires = [query("h%d.mobile.example." % i) for i in range(2)]
        self.protocol.pauseProducing()
        self.protocol.dataReceived(b"".join(frame(w.to_wire()) for w in wires) + b"\x00\x20\x01")
        self.protocol.readConnectionLost()
        self.assertFalse(self.transport.disconnecting)
        self.protocol.resumeProducing()
        self.assertEqual([a.id for a in self.answers()], [w.id for w in wires])
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.transport.producerState, "paused")

    def test_peerStopsReading(self) -> None:
        """
        A peer that shuts its reading side is cut off.
        """
        self.protocol.writeConnectionLost()
        self.assertTrue(self.transport.disconnected)

    def test_pausedTooLong(self) -> None:
        """
        A peer that has not read its answers when the idle timer expires is
        cut off, in one line of log.
        """
        self.protocol.pauseProducing()
        self.clock.advance(10)
        self.assertTrue(self.transport.disconnected)
        [event] = self.log.lines()
        self.assertIn("answers unread", event["reason"])

    def test_inputBounded(self) -> None:
        """
        A transport that delivers input while paused cannot make the
        connection hold more than L{LocatorStreamFactory.maxBuffered}.
        """
        self.protocol.pauseProducing()
        wire = frame(query().to_wire())
        while not self.transport.disconnected:
            self.protocol.dataReceived(wire * 100)
            self.assertLessEqual(len(self.protocol._buffer), self.factory.maxBuffered)
        self.assertEqual(len(self.log.lines()), 1)

    def test_noExceptionEscapes(self) -> None:
        """
        Should answering fail (a bug), the message is dropped with one line
        of log, and the next one answered.
        """

        def broken(data: bytes, addr: Any = None, stream: bool = False) -> Optional[bytes]:
            raise RuntimeError("a bug\nwith a second line")

        self.server.respond = broken  # type: ignore[method-assign]
        self.protocol.dataReceived(frame(query().to_wire()))
        del self.server.respond
        [event] = self.log.lines()
        self.assertNotIn("\n", event["reason"])
        self.protocol.dataReceived(frame(query().to_wire()))
        self.assertEqual(len(self.answers()), 1)

    def test_randomMessages(self) -> None:
        """
        Random messages over TCP, as random datagrams over UDP: each gets
        at most one answer, an error, and one line of log, never a
        traceback; the connection goes on.
        """
        rng = random.Random(20261203)
        for i in range(1000):
            body = rng.randbytes(rng.randrange(1, 300))
            if i % 2:
                header = rng.randbytes(2) + bytes([rng.randrange(0, 256) & 0x7F, rng.randrange(0, 256)])
                counts = b"".join(rng.randrange(0, 3).to_bytes(2, "big") for _ in range(4))
                body = header + counts + body
            before = len(self.log.lines())
            self.protocol.dataReceived(frame(body))
            self.assertEqual(len(self.log.lines()), before + 1)
            answers = self.answers()
            self.assertLessEqual(len(answers), 1)
            for answer in answers:
                self.assertNotEqual(answer.rcode(), dns.rcode.NOERROR)
        self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(frame(query().to_wire()))
        self.assertEqual(len(self.answers()), 1)

    def test_notTruncated(self) -> None:
        """
        Over TCP an answer is whole whatever the query's EDNS payload size
        says (here 512).
        """
        expected = populate(self.table, 100, dns.rdatatype.A)
        self.protocol.dataReceived(frame(query(use_edns=0, payload=512).to_wire()))
        [answer] = self.answers()
        self.assertFalse(answer.flags & dns.flags.TC)
        self.assertEqual(addresses(answer), expected)


class QueryTCPTests(SynchronousTestCase):
    """
    The client's query over TCP (what L{DNSLocator} asks again with), on a
    memory reactor.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.d = _queryTCP(self.reactor, ("192.0.2.53", 53), [tdns.Query(HOST, tdns.AAAA)], 2.0)
        [(host, port, self.factory, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("192.0.2.53", 53))

    def connect(self) -> tuple[Any, StringTransport, tdns.Message]:
        """
        Connect; the query written, read.
        """
        protocol = self.factory.buildProtocol(None)
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        written = transport.value()
        self.assertEqual(int.from_bytes(written[:2], "big"), len(written) - 2)
        message = tdns.Message()
        message.fromStr(written[2:])
        self.assertEqual([(q.name.name, q.type) for q in message.queries], [(HOST.rstrip(".").encode(), tdns.AAAA)])
        return protocol, transport, message

    def answer(self, request: tdns.Message, count: int, ident: Optional[int] = None) -> bytes:
        response = tdns.Message(request.id if ident is None else ident, answer=1, trunc=1, maxSize=65535)
        response.queries = request.queries
        response.answers = [
            tdns.RRHeader(HOST, tdns.AAAA, ttl=30, payload=tdns.Record_AAAA("fd00::%x" % (i + 1,)))
            for i in range(count)
        ]
        return frame(response.toStr())

    def test_answer(self) -> None:
        """
        The answer, read in pieces, closes the connection; the result comes
        once it is closed, with TC clear; nothing is left on the clock.
        """
        protocol, transport, request = self.connect()
        data = self.answer(request, 40)
        protocol.dataReceived(data[:1])
        protocol.dataReceived(data[1:700])
        self.assertFalse(transport.disconnecting)
        protocol.dataReceived(data[700:])
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(self.d)
        protocol.connectionLost(Failure(Exception("closed")))
        message = self.successResultOf(self.d)
        self.assertEqual((len(message.answers), message.trunc), (40, 0))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_otherId(self) -> None:
        """
        An answer with another id is not taken.
        """
        protocol, transport, request = self.connect()
        protocol.dataReceived(self.answer(request, 1, ident=request.id ^ 1))
        protocol.connectionLost(Failure(Exception("closed")))
        self.assertIn("not an answer", str(self.failureResultOf(self.d, LocatorError).value))

    def test_silent(self) -> None:
        """
        A connected server that does not answer in the timeout: the
        connection is cut off and the query fails.
        """
        protocol, transport, _ = self.connect()
        self.reactor.advance(1.9)
        self.assertNoResult(self.d)
        self.reactor.advance(0.1)
        self.assertTrue(transport.disconnected)
        protocol.connectionLost(Failure(Exception("aborted")))
        self.assertIn("did not answer over TCP in 2 s", str(self.failureResultOf(self.d, LocatorError).value))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_noConnection(self) -> None:
        """
        No connection in the timeout: the attempt is stopped and the query
        fails.
        """
        self.reactor.advance(2)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertIn("no TCP connection", str(self.failureResultOf(self.d, LocatorError).value))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_closedUnanswered(self) -> None:
        """
        A server that closes without answering fails the query at once.
        """
        protocol, _, _ = self.connect()
        protocol.connectionLost(Failure(Exception("reset")))
        self.assertIn("unanswered", str(self.failureResultOf(self.d, LocatorError).value))
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class ClientFallbackTests(TestCase):
    """
    L{DNSLocator} against the embedded locator on UDP and TCP.
    """

    timeout = 30

    def setUp(self) -> None:
        self.table = RecordTable(None)
        self.addCleanup(self.table.close)
        self.server = LocatorServer(reactor, ZONE, {"laptop.": SECRET}, self.table)
        # Never advanced: the locator closes no connection itself.
        self.clock = Clock()
        self.factory = CountingFactory(self.server, clock=self.clock)
        self.address = listenBoth(self, self.server, self.factory)
        self.addCleanup(self.closeAll)

    def closeAll(self) -> Deferred[None]:
        """
        Cut off what the client left open (a failure of the test).
        """
        for p in list(self.factory.connections):
            p.transport.abortConnection()  # type: ignore[union-attr]
        return waitFor(lambda: not self.factory.connections)

    @inlineCallbacks
    def test_truncatedAskedAgainOverTCP(self) -> Any:
        """
        20 A records fit in a datagram, 40 AAAA records do not: the AAAA
        lookup is truncated over UDP and asked again over TCP, and every
        address is found; the TCP connection is closed when the lookup
        returns, by the client.
        """
        expected = populate(self.table, 20, dns.rdatatype.A) + populate(self.table, 40)
        locator = DNSLocator(reactor, self.address, ZONE)
        found = yield locator.resolve(HOST)
        self.assertEqual(sorted(found), sorted(expected))
        self.assertEqual(len(self.factory.accepted), 1)
        yield waitFor(lambda: not self.factory.connections, 5)
