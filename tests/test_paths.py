"""
Real paths, default options: a relay (what a port forward, a NAT or a load
balancer in TCP mode looks like to both ends), and crowds of unauthenticated
connections from other addresses.
"""

from __future__ import annotations

import random
import socket
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from migrate.testing import CuttingRelay, sessionOf

from .helpers import Echo, Recorder
from .test_loopback import waitFor


class _Feeder:
    """
    A pull producer writing C{data} in pieces.
    """

    def __init__(self, transport: Any, data: bytes, piece: int = 65536) -> None:
        self.transport = transport
        self.data = data
        self.offset = 0
        self.piece = piece

    def resumeProducing(self) -> None:
        if self.offset >= len(self.data):
            self.transport.unregisterProducer()
            return
        self.transport.write(self.data[self.offset : self.offset + self.piece])
        self.offset += self.piece

    def stopProducing(self) -> None:
        pass


class RelayTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_echoThroughCuttingRelayWithDefaults(self) -> Any:
        """
        With default server and client options (the server's monitor on, so
        it advertises its own address), a client behind a relay stays on
        the relay: 16 MiB echoed byte-exact through at least ten cuts the
        relay really made, every carrier through the relay.
        """
        server = serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1")
        port = yield server.listen(Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        serverPort = port.getHost().port
        relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", serverPort))
        relay.cutEvery(2 * 1024 * 1024, reactor)
        relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(relayPort.stopListening)
        self.addCleanup(relay.stop)
        client = clientFromString(
            reactor, "migrate:tcp:host=127.0.0.1:port=%d" % (relayPort.getHost().port,)
        )
        proto = yield client.connect(Factory.forProtocol(Recorder))
        rng = random.Random(7)
        data = rng.randbytes(16 * 1024 * 1024)
        proto.transport.registerProducer(_Feeder(proto.transport, data), False)
        yield waitFor(lambda: len(proto.received) >= len(data), 90)
        self.assertEqual(proto.received, data)
        self.assertGreaterEqual(relay.cuts, 10)
        self.assertGreaterEqual(proto.transport.handoffs, 10)
        # Every carrier went through the relay: it is the only peer the
        # client ever had.
        self.assertEqual(proto.transport.getPeer().port, relayPort.getHost().port)
        self.assertEqual(sessionOf(proto).trustedPeerAddresses, [])
        self.assertEqual(proto.lost, [])
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()


class _Idle(Protocol):
    """
    An unauthenticated connection that never says a word; it tells its
    owner when it is dropped.
    """

    def __init__(self, onLost: Any) -> None:
        self.onLost = onLost

    def connectionLost(self, reason: Any) -> None:
        self.transport = None
        self.onLost()


class CrowdTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_idleCrowdDoesNotBlockOthers(self) -> Any:
        """
        Idle unauthenticated connections from nine addresses, reopened as
        soon as they are dropped, more than the server's handshake table
        holds: a client from another address still opens its session within
        a second, and resumes it; default options.
        """
        server = serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1")
        port = yield server.listen(Factory.forProtocol(Echo))
        serverPort = port.getHost().port
        self.addCleanup(port.stopListening)
        crowd: list[Any] = []
        stopping: list[bool] = []

        def idle(source: str) -> None:
            if stopping:
                return
            endpoint = TCP4ClientEndpoint(
                reactor, "127.0.0.1", serverPort, bindAddress=(source, 0)
            )
            d = endpoint.connect(Factory.forProtocol(lambda: _Idle(lambda: idle(source))))
            def connected(p: Any) -> None:
                crowd.append(p)
                if stopping:
                    p.transport.abortConnection()

            d.addCallback(connected)
            d.addErrback(lambda f: None)

        sources = ["127.0.0.%d" % (i,) for i in range(10, 19)]
        for source in sources:
            for _ in range(40):
                idle(source)

        pending = server.factory._pending  # type: ignore[union-attr]

        def cleanUp() -> Any:
            stopping.append(True)
            for p in crowd:
                if p.transport is not None:
                    p.transport.abortConnection()
            return waitFor(lambda: not pending and all(p.transport is None for p in crowd), 10)

        self.addCleanup(cleanUp)
        yield waitFor(lambda: len(pending) >= server.factory.options.maxPending - 5, 20)  # type: ignore[union-attr]
        start = reactor.seconds()  # type: ignore[attr-defined]
        client = clientFromString(
            reactor,
            "migrate:tcp:host=127.0.0.1:port=%d:bindAddress=127.0.0.99" % (serverPort,),
        )
        proto = yield client.connect(Factory.forProtocol(Recorder))
        self.assertLess(reactor.seconds() - start, 1.0)  # type: ignore[attr-defined]
        proto.transport.write(b"hello")
        yield waitFor(lambda: proto.received == b"hello")
        sessionOf(proto).dropCarrier("test")
        proto.transport.write(b" again")
        yield waitFor(lambda: proto.received == b"hello again", 5)
        self.assertEqual(proto.transport.handoffs, 1)
        proto.transport.loseConnection()
        yield proto.transport.whenEnded()
