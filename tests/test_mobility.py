"""
Proof on real mobility: a server host and a mobile host in network
namespaces, two links between them, addresses that change and links that go
down.  Each case streams bytes both ways and checks them byte for byte.

These tests need root (CI runs as root); elsewhere they are skipped with the
reason.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from migrate.testing import sessionOf
from migrate import MigrateClientEndpoint, MigrateServerEndpoint, SessionExpired, SessionOptions
from migrate.locate import DNSLocator
from migrate.locator import LocatorServer, RecordTable
from migrate.monitors import NetlinkMonitor

import os

from . import bind, netns

PORT = 7001
ZONE = "mobile.example."
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


class Pattern:
    """
    A deterministic byte stream: C{take(n)} continues it.
    """

    def __init__(self, seed: int) -> None:
        cycle = bytes((i * 7 + seed) % 251 for i in range(251))
        self.cycle = cycle * 300
        self.pos = 0

    def take(self, n: int) -> bytes:
        start = self.pos % 251
        out = bytearray()
        while n:
            piece = self.cycle[start : start + n]
            out += piece
            n -= len(piece)
            start = 0
        self.pos += len(out)
        return bytes(out)


class Streamer(Protocol):
    """
    Writes its pattern steadily and checks the peer's, byte for byte.
    """

    mySeed = 0
    peerSeed = 0

    def __init__(self) -> None:
        self.out = Pattern(self.mySeed)
        self.expect = Pattern(self.peerSeed)
        self.received = 0
        self.sent = 0
        self.errors = 0
        self.lost: list[Failure] = []
        self.loop: task.LoopingCall | None = None

    def connectionMade(self) -> None:
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = reactor
        self.loop.start(0.01)

    def tick(self) -> None:
        data = self.out.take(2000)
        self.sent += len(data)
        self.transport.write(data)  # type: ignore[union-attr]

    def stopSending(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def dataReceived(self, data: bytes) -> None:
        if data != self.expect.take(len(data)):
            self.errors += 1
        self.received += len(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.stopSending()
        self.lost.append(reason)


class ClientStreamer(Streamer):
    mySeed, peerSeed = 1, 2


class ServerStreamer(Streamer):
    mySeed, peerSeed = 2, 1


def waitFor(predicate: Callable[[], bool], timeout: float) -> Deferred[float]:
    """
    Poll until true; fire with the seconds it took, fail after C{timeout}.
    """
    d: Deferred[float] = Deferred()
    start = time.monotonic()

    def check() -> None:
        if predicate():
            d.callback(time.monotonic() - start)
        elif time.monotonic() - start > timeout:
            d.errback(AssertionError("not reached within %s s" % (timeout,)))
        else:
            reactor.callLater(0.002, check)  # type: ignore[attr-defined]

    check()
    return d


class Recorder:
    def __init__(self) -> None:
        self.suspended: list[tuple[float, str]] = []
        self.resumed: list[float] = []

    def sessionSuspended(self, session: Any, reason: str) -> None:
        self.suspended.append((time.monotonic(), reason))

    def sessionResumed(self, *args: Any) -> None:
        self.resumed.append(time.monotonic())


class _Base(TestCase):
    timeout = 60
    options = SessionOptions()
    serverInterface = netns.Topology.serviceAddress
    serverMonitor = False
    withDNS = False
    dnsServer = "embedded"

    def setUp(self) -> Any:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)
        self.topology = netns.Topology(dns=self.withDNS)
        self.addCleanup(self.topology.destroy)
        return self.start(self.options)

    @inlineCallbacks
    def start(self, options: SessionOptions) -> Any:
        self.servers: list[ServerStreamer] = []

        def build() -> ServerStreamer:
            p = ServerStreamer()
            self.servers.append(p)
            return p

        serverLocator = clientLocator = None
        if self.withDNS:
            where = (netns.Topology.dnsAddress, 53)
            if self.dnsServer == "bind":
                server = bind.Bind(
                    os.path.abspath(self.mktemp()), where[0], 53, ZONE, "server.", SECRET,
                    ns=self.topology.dns,
                )
                self.addCleanup(server.stop)
            else:
                table = RecordTable(None)
                self.addCleanup(table.close)
                with netns.namespace(self.topology.dns):
                    dnsPort = reactor.listenUDP(  # type: ignore[attr-defined]
                        53,
                        LocatorServer(reactor, ZONE, {"server.": SECRET}, table),
                        interface=where[0],
                    )
                self.addCleanup(dnsPort.stopListening)
            self.lookup = DNSLocator(
                netns.NamespacedReactor(self.topology.server, reactor), where, ZONE, timeout=0.5
            )
            for _ in range(100):
                ready = yield self.lookup.resolve("ns.mobile.example.", True)
                if ready or self.dnsServer != "bind":
                    break
                yield task.deferLater(reactor, 0.1, lambda: None)
            serverLocator = DNSLocator(
                netns.NamespacedReactor(self.topology.server, reactor), where, ZONE, "server.", SECRET
            )
            clientLocator = DNSLocator(netns.NamespacedReactor(self.topology.mobile, reactor), where, ZONE)
        with netns.namespace(self.topology.server):
            serverMonitor = None
            if self.serverMonitor:
                serverMonitor = NetlinkMonitor(reactor)  # type: ignore[arg-type]
                serverMonitor.start()
                self.addCleanup(serverMonitor.stop)
            self.serverEndpoint = MigrateServerEndpoint(
                reactor,
                TCP4ServerEndpoint(reactor, PORT, interface=self.serverInterface),
                options,
                monitor=serverMonitor,
                locator=serverLocator,
                publishName="server.mobile.example.",
                serviceInterface="lo" if self.serverMonitor else None,
            )
            port = yield self.serverEndpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        with netns.namespace(self.topology.mobile):
            self.monitor = NetlinkMonitor(reactor)  # type: ignore[arg-type]
            self.monitor.start()
        self.addCleanup(self.monitor.stop)
        self.clientEndpoint = MigrateClientEndpoint(
            reactor,
            netns.NamespacedEndpoint(
                self.topology.mobile,
                TCP4ClientEndpoint(reactor, netns.Topology.serviceAddress, PORT),
            ),
            options,
            monitor=self.monitor,
            endpointTo=lambda host, port: netns.NamespacedEndpoint(
                self.topology.mobile, TCP4ClientEndpoint(reactor, host, port)
            ),
            locator=clientLocator,
            peerName="server.mobile.example.",
        )
        self.watch = Recorder()
        self.clientEndpoint.addObserver(self.watch)
        self.client = yield self.clientEndpoint.connect(Factory.forProtocol(ClientStreamer))
        self.server = self.servers[0]
        self.addCleanup(self.stopAll)
        yield waitFor(lambda: self.client.received > 20000 and self.server.received > 20000, 10)

    def stopAll(self) -> Any:
        for p in (self.client, self.server):
            p.stopSending()
        if self.client.transport is not None and not self.client.lost:
            self.client.transport.abortConnection()
        return waitFor(lambda: bool(self.server.lost), 10)

    @inlineCallbacks
    def finishAndCheck(self) -> Any:
        """
        Stop writing; wait for every byte both ways; check them.
        """
        self.client.stopSending()
        self.server.stopSending()
        yield waitFor(
            lambda: self.server.received == self.client.sent
            and self.client.received == self.server.sent,
            20,
        )
        self.assertEqual((self.client.errors, self.server.errors), (0, 0))
        self.assertEqual((self.client.lost, self.server.lost), ([], []))



class MobilityTests(_Base):
    """
    The four ways a path changes, with the default options.
    """

    @inlineCallbacks
    def test_switchInterface(self) -> Any:
        """
        The active interface goes down mid-stream: the session moves to the
        other one at once, and the server sees the new address.
        """
        self.assertEqual(self.server.transport.getPeer().host, "10.77.1.2")
        before = self.server.received
        self.topology.setLink("a", False)
        yield waitFor(lambda: self.server.received > before + 20000, 5)
        self.assertEqual(self.client.transport.generation, 1)
        self.assertEqual(self.server.transport.getPeer().host, "10.77.2.2")
        self.assertEqual([r for _, r in self.watch.suspended], ["link-down"])
        yield self.finishAndCheck()

    @inlineCallbacks
    def test_addressReplaced(self) -> Any:
        """
        The address of the active interface is replaced: the session resumes
        from the new address.
        """
        before = self.server.received
        new = self.topology.replaceAddress("a", 5)
        yield waitFor(lambda: self.server.received > before + 20000, 5)
        self.assertEqual(self.server.transport.getPeer().host, new)
        self.assertEqual(self.watch.suspended[0][1], "address-gone")
        yield self.finishAndCheck()

    @inlineCallbacks
    def test_allLinksDown(self) -> Any:
        """
        Every link down for 10 s, then back: the session resumes quickly and
        everything written meanwhile arrives.
        """
        self.topology.setLink("a", False)
        self.topology.setLink("b", False)
        yield task.deferLater(reactor, 10, lambda: None)
        self.assertEqual(self.client.transport.state, "detached")
        before = self.server.received
        self.topology.setLink("a", True)
        took = yield waitFor(lambda: self.server.received > before, 5)
        self.assertLess(took, 2.0)
        self.topology.setLink("b", True)
        yield self.finishAndCheck()

    @inlineCallbacks
    def test_blackHole(self) -> Any:
        """
        A path that silently drops everything, with no local event, is
        detected by heartbeats within the policy bound (3 s by default);
        once the black hole clears, data flows again within about 2 s.
        """
        start = time.monotonic()
        self.topology.blackhole(True)
        yield waitFor(lambda: bool(self.watch.suspended), 6)
        detected = self.watch.suspended[0][0] - start
        self.assertEqual(self.watch.suspended[0][1], "path-dead")
        self.assertLess(detected, 3.0)
        yield task.deferLater(reactor, 2, lambda: None)
        before = self.server.received
        self.topology.blackhole(False)
        took = yield waitFor(lambda: self.server.received > before, 6)
        self.assertLess(took, 2.5)
        yield self.finishAndCheck()


class ServerMoveTests(_Base):
    """
    The server host changes address; then both hosts at once.
    """

    serverInterface = "0.0.0.0"
    serverMonitor = True

    @inlineCallbacks
    def test_serverMovesWhileIdle(self) -> Any:
        """
        With the session idle (nothing flowing), the server gains a new
        address and deprecates the one in use: the advertisement alone
        moves the session there while the old path still works; data then
        flows.
        """
        self.client.stopSending()
        self.server.stopSending()
        yield waitFor(
            lambda: self.server.received == self.client.sent and self.client.received == self.server.sent, 10
        )
        netns.ip("-n", self.topology.server, "addr", "add", "10.77.0.2/32", "dev", "lo")
        netns.ip(
            "-n", self.topology.server, "addr", "change", "10.77.0.1/32", "dev", "lo", "preferred_lft", "0"
        )
        yield waitFor(lambda: self.client.transport.getPeer().host == "10.77.0.2", 5)
        netns.ip("-n", self.topology.server, "addr", "del", "10.77.0.1/32", "dev", "lo")
        self.assertEqual(self.client.transport.generation, 1)
        self.client.tick()
        self.server.tick()
        yield self.finishAndCheck()

    @inlineCallbacks
    def test_serverMovesWhileAttached(self) -> Any:
        """
        The server gains a new address: the client learns it but stays on
        the address it uses (a new address must not pull every client).
        The old address goes while the client is attached and streaming:
        the client resumes at the new address, and the stream is intact.
        """
        port = self.client.transport.getPeer().port
        newAddress = "10.77.0.2:%d" % (port,)
        session = sessionOf(self.client)
        netns.ip("-n", self.topology.server, "addr", "add", "10.77.0.2/32", "dev", "lo")
        yield waitFor(lambda: newAddress in session.trustedPeerAddresses, 5)
        self.assertEqual(self.client.transport.getPeer().host, "10.77.0.1")
        self.assertEqual(session.trustedPeerAddresses[0], "10.77.0.1:%d" % (port,))
        netns.ip("-n", self.topology.server, "addr", "del", "10.77.0.1/32", "dev", "lo")
        yield waitFor(lambda: self.client.transport.getPeer().host == "10.77.0.2", 5)
        before = self.server.received
        yield waitFor(lambda: self.server.received > before + 20000, 5)
        self.assertEqual(self.client.transport.generation, 1)
        yield self.finishAndCheck()


class FoundThroughDNSTests(_Base):
    """
    The server moves while the client is away; the client finds it through
    DNS (the embedded locator, in a third host).
    """

    serverInterface = "0.0.0.0"
    serverMonitor = True
    withDNS = True

    @inlineCallbacks
    def published(self, addresses: list[str]) -> Any:
        """
        Wait until the server's name leads to C{addresses}.
        """
        for _ in range(100):
            found = yield self.lookup.resolve("server.mobile.example.", True)
            if sorted(found) == sorted(addresses):
                return
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.fail("not published: %r" % (found,))

    @inlineCallbacks
    def test_serverMovedWhileDetached(self) -> Any:
        """
        The mobile host loses every link; meanwhile the server moves to a new
        address and publishes it; when the links return, the client's
        session resumes at the new address, found by a DNS lookup, and the
        stream is intact.
        """
        self.topology.setLink("a", False)
        self.topology.setLink("b", False)
        yield waitFor(lambda: self.client.transport.state == "detached", 5)
        netns.ip("-n", self.topology.server, "addr", "add", "10.77.0.2/32", "dev", "lo")
        netns.ip("-n", self.topology.server, "addr", "del", "10.77.0.1/32", "dev", "lo")
        yield self.published(["10.77.0.2"])
        self.topology.setLink("a", True)
        yield waitFor(lambda: self.client.transport.state == "attached", 10)
        self.assertEqual(self.client.transport.getPeer().host, "10.77.0.2")
        before = self.server.received
        yield waitFor(lambda: self.server.received > before + 20000, 5)
        yield self.finishAndCheck()


    @inlineCallbacks
    def test_bothMoveAtOnce(self) -> Any:
        """
        In the same instant the server moves to a new address (its old one
        gone, so its advertisement cannot reach the client) and the mobile
        host loses the link it used: the client finds the server through
        DNS from its other link; the stream is intact.
        """
        netns.ip("-n", self.topology.server, "addr", "add", "10.77.0.2/32", "dev", "lo")
        netns.ip("-n", self.topology.server, "addr", "del", "10.77.0.1/32", "dev", "lo")
        self.topology.setLink("a", False)
        yield waitFor(lambda: self.client.transport.getPeer().host == "10.77.0.2", 10)
        before = self.server.received
        yield waitFor(lambda: self.server.received > before + 20000, 5)
        self.assertEqual(self.client.transport.getHost().host, "10.77.2.2")
        yield self.finishAndCheck()


class FoundThroughBindTests(FoundThroughDNSTests):
    """
    The same, with a real BIND 9 as the DNS server of the third host.
    """

    dnsServer = "bind"

    def setUp(self) -> Any:
        reason = bind.skipReason()
        if reason:
            raise SkipTest(reason)
        return FoundThroughDNSTests.setUp(self)


class ExpiryTests(_Base):
    """
    Down for longer than the session timeout.
    """

    options = SessionOptions(sessionTimeout=3)

    @inlineCallbacks
    def test_expiry(self) -> Any:
        """
        Both sides hear L{SessionExpired} once; every resource is released:
        no session in the server's table, nothing scheduled, the monitor
        lease given back.
        """
        self.topology.setLink("a", False)
        self.topology.setLink("b", False)
        yield waitFor(lambda: bool(self.client.lost) and bool(self.server.lost), 15)
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(len(self.client.lost), 1)
        self.assertEqual(len(self.server.lost), 1)
        self.client.lost[0].trap(SessionExpired)
        self.server.lost[0].trap(SessionExpired)
        self.assertEqual(self.serverEndpoint.factory.sessions, {})  # type: ignore[union-attr]
        left = [
            c
            for c in reactor.getDelayedCalls()  # type: ignore[attr-defined]
            if c.active() and getattr(c.func, "__module__", "").startswith("migrate")
        ]
        self.assertEqual(left, [])
        self.assertEqual(self.clientEndpoint.monitor.users, 0)  # type: ignore[union-attr]
