"""
Real loopback TCP: sessions through a relay that cuts their connections at
random points, with an echo protocol and with Twisted's own AMP.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols import amp
from twisted.trial.unittest import TestCase

from migrate import MigrateClientEndpoint, MigrateServerEndpoint, SessionOptions
from migrate.testing import CuttingRelay, sessionOf

from .helpers import Echo, Recorder


class Sum(amp.Command):
    arguments = [(b"a", amp.Integer()), (b"b", amp.Integer())]
    response = [(b"total", amp.Integer())]


class Adder(amp.AMP):
    calls = 0

    @Sum.responder
    def sum(self, a: int, b: int) -> dict[str, int]:
        Adder.calls += 1
        return {"total": a + b}


def waitFor(predicate: Any, timeout: float = 10.0) -> defer.Deferred[None]:
    """
    Poll C{predicate} on the real reactor until it is true (real sockets
    need real time; the limit only stops a broken test).
    """
    d: defer.Deferred[None] = defer.Deferred()
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]

    def check() -> None:
        if predicate():
            d.callback(None)
        elif reactor.seconds() > deadline:  # type: ignore[attr-defined]
            d.errback(AssertionError("condition not reached in %s s" % (timeout,)))
        else:
            reactor.callLater(0.005, check)  # type: ignore[attr-defined]

    check()
    return d


class LoopbackTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def closeBoth(self, client: Any) -> Any:
        """
        Close the session from the client and wait until both application
        protocols heard C{connectionLost} and both sessions ended.
        """
        transport = client.transport
        transport.loseConnection()
        sessions = self.server.factory.sessions  # type: ignore[union-attr]
        yield waitFor(lambda: all(s.ended for s in sessions.values()))
        yield waitFor(lambda: transport.state == "closed")
        # (The client's session ends once the server confirmed its last
        # acknowledgement, resuming first if a cut took the carrier.)
        yield transport.whenEnded()

    @defer.inlineCallbacks
    def setUpServer(self, appFactory: Factory) -> Any:
        self.serverApps: list[Any] = []
        build = appFactory.buildProtocol

        def record(addr: Any) -> Any:
            p = build(addr)
            self.serverApps.append(p)
            return p

        appFactory.buildProtocol = record  # type: ignore[method-assign]
        options = SessionOptions(reconnectInitial=0.01, reconnectMax=0.2)
        self.server = MigrateServerEndpoint(
            reactor, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), options
        )
        port = yield self.server.listen(appFactory)
        self.addCleanup(port.stopListening)
        serverPort = port.getHost().port
        self.relay = CuttingRelay(
            lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", serverPort)
        )
        relayPort = reactor.listenTCP(0, self.relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        self.addCleanup(self.relay.cutAll)
        self.client = MigrateClientEndpoint(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port),
            options,
        )

    @defer.inlineCallbacks
    def test_echoWithRandomCuts(self) -> Any:
        """
        A 2 MB stream through an echo server comes back byte for byte while
        the relay cuts the connection at random points.
        """
        yield self.setUpServer(Factory.forProtocol(Echo))
        proto = yield self.client.connect(Factory.forProtocol(Recorder))
        rng = random.Random(1)
        data = bytes(rng.randrange(256) for _ in range(65536)) * 32
        for i in range(0, len(data), 16384):
            proto.transport.write(data[i : i + 16384])
        for _ in range(8):
            self.relay.cutAfter(rng.randrange(1000, 300000))
            yield waitFor(lambda: self.relay._cutAt is None or len(proto.received) == len(data))
        yield waitFor(lambda: len(proto.received) >= len(data))
        self.assertEqual(proto.received, data)
        self.assertGreater(self.relay.cuts, 1)
        self.assertGreater(proto.transport.handoffs, 0)
        self.assertEqual(proto.made, 1)
        self.assertEqual(proto.lost, [])
        yield self.closeBoth(proto)
        proto.lost[0].trap(ConnectionDone)
        self.serverApps[0].lost[0].trap(ConnectionDone)

    @defer.inlineCallbacks
    def test_ampEveryCallAnsweredOnce(self) -> Any:
        """
        AMP calls made while the relay keeps cutting the connection are each
        answered exactly once, correctly.
        """
        Adder.calls = 0
        yield self.setUpServer(Factory.forProtocol(Adder))
        client = yield self.client.connect(Factory.forProtocol(amp.AMP))
        rng = random.Random(2)
        results = []
        for batch in range(10):
            calls = [client.callRemote(Sum, a=batch, b=i) for i in range(50)]
            self.relay.cutAfter(rng.randrange(50, 3000))
            got = yield defer.gatherResults(calls)
            results.extend(r["total"] for r in got)
        self.assertEqual(results, [b + i for b in range(10) for i in range(50)])
        self.assertEqual(Adder.calls, 500)
        self.assertGreater(self.relay.cuts, 3)
        yield self.closeBoth(client)

    @defer.inlineCallbacks
    def test_endpointStrings(self) -> Any:
        """
        C{migrate:} endpoint strings wrap C{tcp:} on both sides; C{listen}
        gives the real port; options in the string reach the sessions.
        """
        port = yield serverFromString(
            reactor, "migrate:tcp:0:interface=127.0.0.1:sessionTimeout=42"
        ).listen(Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        self.assertNotEqual(port.getHost().port, 0)
        endpoint = clientFromString(
            reactor, "migrate:tcp:host=127.0.0.1:port=%d:highWater=65536" % (port.getHost().port,)
        )
        self.assertEqual(endpoint.options.highWater, 65536)
        proto = yield endpoint.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"hi")
        yield waitFor(lambda: proto.received == b"hi")
        self.assertEqual(sessionOf(proto).options.highWater, 65536)
        self.assertEqual(port.factory.sessions[bytes.fromhex(proto.transport.sessionID)].options.sessionTimeout, 42)
        proto.transport.loseConnection()
        yield waitFor(lambda: bool(proto.lost))
        yield waitFor(lambda: not port.factory.sessions or all(s.ended for s in port.factory.sessions.values()))
        yield proto.transport.whenEnded()

    @defer.inlineCallbacks
    def test_nothingLeftAfterClose(self) -> Any:
        """
        After a clean close, the session leaves no timer on the reactor.
        """
        yield self.setUpServer(Factory.forProtocol(Echo))
        before = set(reactor.getDelayedCalls())  # type: ignore[attr-defined]
        proto = yield self.client.connect(Factory.forProtocol(Recorder))
        proto.transport.write(b"x")
        yield waitFor(lambda: proto.received == b"x")
        yield self.closeBoth(proto)
        left = [
            c
            for c in reactor.getDelayedCalls()  # type: ignore[attr-defined]
            if c not in before
            and c.active()
            and getattr(c.func, "__module__", "").startswith("migrate")
        ]
        self.assertEqual(left, [])


class ImpostorTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_firstAuthenticatedResumeWins(self) -> Any:
        """
        Reconnect candidates race: the first to connect is not the server
        (it answers garbage), so the next candidate's authenticated resume
        wins, in the same round, and the impostor is never tried again in
        it.
        """

        class Garbage(Protocol):
            connections = 0

            def connectionMade(self) -> None:
                Garbage.connections += 1
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        impostor = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Garbage)
        )
        self.addCleanup(impostor.stopListening)
        server = MigrateServerEndpoint(reactor, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
        port = yield server.listen(Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        self.addCleanup(relay.cutAll)
        client = MigrateClientEndpoint(
            reactor,
            TCP4ClientEndpoint(reactor, "127.0.0.1", relayPort.getHost().port),
            SessionOptions(reconnectInitial=5, reconnectMax=5),
            monitor=None,
            endpointTo=lambda host, p: TCP4ClientEndpoint(reactor, host, p),
        )
        proto = yield client.connect(Factory.forProtocol(Recorder))
        session = sessionOf(proto)
        session.trustedPeerAddresses = ["127.0.0.1:%d" % impostor.getHost().port]
        relay.cutAll()
        proto.transport.write(b"after")
        # With 5 s between rounds, only a resume in the same round is quick.
        yield waitFor(lambda: proto.received == b"after", 3)
        self.assertEqual(Garbage.connections, 1)
        self.assertEqual(proto.transport.handoffs, 1)
        sessions = server.factory.sessions  # type: ignore[union-attr]
        proto.transport.loseConnection()
        yield waitFor(lambda: all(s.ended for s in sessions.values()))
