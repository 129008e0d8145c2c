"""
Twisted's own transport tests, run against C{migrate:} endpoints.

Twisted encodes the contract of its TCP and TLS transports in reusable test
mixins (L{ConnectionTestsMixin}, L{AbortConnectionMixin}, the producer
tests of L{StreamClientTestsMixin}, L{WriteSequenceTestsMixin}) that run
through L{ReactorBuilder}: a fresh reactor per test, which must be left with
nothing scheduled and nothing registered once both ends are disconnected.
Here they run unchanged on the select, poll, epoll and asyncio reactors,
with a C{tcp:} and a C{tls:} endpoint under the session, and once more
through a relay that cuts every carrier after a few KiB, so that every
operation also happens while detached and right after a resume.

Twisted's half-close tests (C{twisted.test.test_tcp}) are adapted at the
end: they read private attributes of Twisted's TCP transport
(C{_tempDataBuffer}, C{_writeDisconnected}), which are replaced by the
public events they stand for.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from typing import Any, Optional

from twisted.internet import defer, reactor as globalReactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, clientFromString, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.internet.test.connectionmixins import (
    ConnectionTestsMixin,
    EndpointCreator,
    StreamClientTestsMixin,
)
from twisted.internet.test.reactormixins import ReactorBuilder
from twisted.internet.test.test_tcp import AbortConnectionMixin, WriteSequenceTestsMixin
from twisted.internet.testing import AccumulatingProtocol
from twisted.python.failure import Failure
from twisted.test.test_tcp import MyHCFactory, MyHCProtocol, MyServerFactory, loopUntil
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from migrate.testing import CuttingRelay

from .certs import writeServerFiles

# The reactors every contract test runs on.
_REACTORS = [
    "twisted.internet.selectreactor.SelectReactor",
    "twisted.internet.pollreactor.PollReactor",
    "twisted.internet.epollreactor.EPollReactor",
    "twisted.internet.test.reactormixins.AsyncioSelectorReactor",
]


_certs: dict[str, str] = {}


def _certificates() -> dict[str, str]:
    """
    A server key and certificate for 127.0.0.1 and the directory of the CA
    that signed it, made once per test run.
    """
    if not _certs:
        base = tempfile.mkdtemp(prefix="migrate-contract-")
        atexit.register(shutil.rmtree, base, True)
        caDir = base + "/ca"
        key, cert = writeServerFiles(base + "/server", "Contract CA", "127.0.0.1", caDir)
        _certs.update(key=key, cert=cert, ca=caDir)
    return _certs


class MigrateTCPCreator(EndpointCreator):
    """
    C{migrate:} over C{tcp:}, default options.
    """

    def server(self, reactor: Any) -> Any:
        return serverFromString(reactor, "migrate:tcp:0:interface=127.0.0.1")

    def client(self, reactor: Any, serverAddress: Any) -> Any:
        return clientFromString(reactor, "migrate:tcp:host=127.0.0.1:port=%d" % (serverAddress.port,))


class MigrateTLSCreator(EndpointCreator):
    """
    C{migrate:} over C{ssl:} (server) and C{tls:} (client, verifying the
    server's certificate against a CA made for the test).
    """

    def server(self, reactor: Any) -> Any:
        certs = _certificates()
        return serverFromString(
            reactor,
            "migrate:ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s"
            % (certs["key"], certs["cert"]),
        )

    def client(self, reactor: Any, serverAddress: Any) -> Any:
        return clientFromString(
            reactor,
            "migrate:tls:host=127.0.0.1:port=%d:trustRoots=%s"
            % (serverAddress.port, _certificates()["ca"]),
        )


@implementer(IListeningPort)
class _RelayedPort:
    """
    The listening port of a server behind a cutting relay: its address is
    the relay's.
    """

    def __init__(self, server: Any, relay: Any) -> None:
        self._server = server
        self._relay = relay

    def startListening(self) -> None:
        pass

    def stopListening(self) -> Deferred[Any]:
        return gatherResults(
            [
                defer.maybeDeferred(self._relay.stopListening),
                defer.maybeDeferred(self._server.stopListening),
            ]
        )

    def getHost(self) -> Any:
        return self._relay.getHost()


class _RelayedServerEndpoint:
    """
    Listen with an inner server endpoint, and in front of it a relay that
    cuts every connection after C{cutEvery} bytes.
    """

    def __init__(self, reactor: Any, inner: Any, cutEvery: int) -> None:
        self._reactor = reactor
        self._inner = inner
        self._cutEvery = cutEvery

    def listen(self, factory: Any) -> Deferred[_RelayedPort]:
        reactor = self._reactor

        def listening(port: Any) -> _RelayedPort:
            target = port.getHost().port
            relay = CuttingRelay(lambda: TCP4ClientEndpoint(reactor, "127.0.0.1", target))
            relay.cutEvery(self._cutEvery, reactor)
            relayPort = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")
            # The relay's own cuts complete in a later turn: let them,
            # before the reactor is checked for leftovers.
            reactor.addSystemEventTrigger("before", "shutdown", relay.stop)
            return _RelayedPort(port, relayPort)

        return self._inner.listen(factory).addCallback(listening)


class RelayedCreator(EndpointCreator):
    """
    Another creator's endpoints, with a relay between them that cuts each
    carrier once it has carried C{cutEvery} bytes (both ways).
    """

    def __init__(self, inner: EndpointCreator, cutEvery: int) -> None:
        self._inner = inner
        self._cutEvery = cutEvery

    def server(self, reactor: Any) -> Any:
        return _RelayedServerEndpoint(reactor, self._inner.server(reactor), self._cutEvery)

    def client(self, reactor: Any, serverAddress: Any) -> Any:
        return self._inner.client(reactor, serverAddress)


class _ChannelZero(Protocol):
    """
    A session's first stream, when the stream under test is another
    channel: the client's opens the channel and then closes itself (the
    session lives on in the channel, and ends when it closes).
    """

    channelFactory: Any = None
    opened: Optional[Deferred[Any]] = None

    def connectionMade(self) -> None:
        if self.opened is None:
            return
        opened, self.opened = self.opened, None

        def close(protocol: Any) -> Any:
            self.transport.loseConnection()
            return protocol

        self.transport.openChannel(self.channelFactory).addBoth(close).chainDeferred(opened)


class _ChannelServerEndpoint:
    """
    A C{migrate:} server endpoint whose C{listen} factory builds the
    channels clients open, not the sessions' first streams.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def listen(self, factory: Any) -> Deferred[Any]:
        self._inner.channelFactories = {"": factory}
        return self._inner.listen(ServerFactory.forProtocol(_ChannelZero))


class _ChannelClientEndpoint:
    """
    A C{migrate:} client endpoint whose C{connect} opens a session, then a
    channel of it built by the given factory (and closes the session's
    first stream).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect(self, factory: Any) -> Deferred[Any]:
        opened: Deferred[Any] = Deferred()

        def build() -> _ChannelZero:
            zero = _ChannelZero()
            zero.channelFactory = factory
            zero.opened = opened
            return zero

        self._inner.connect(ClientFactory.forProtocol(build)).addErrback(opened.errback)
        return opened


class ChannelCreator(EndpointCreator):
    """
    Another creator's endpoints, with the stream under test a channel of
    the session (channel 1) rather than its first stream.
    """

    def __init__(self, inner: EndpointCreator) -> None:
        self._inner = inner

    def server(self, reactor: Any) -> Any:
        return _ChannelServerEndpoint(self._inner.server(reactor))

    def client(self, reactor: Any, serverAddress: Any) -> Any:
        return _ChannelClientEndpoint(self._inner.client(reactor, serverAddress))


class _ContractBuilder(ReactorBuilder):
    """
    The reactors of the contract, and the C{listen}/C{connect} and
    C{getConnectedClientAndServer} helpers Twisted's stream mixins expect,
    through the endpoint creator.
    """

    _reactors = _REACTORS
    endpoints: Optional[EndpointCreator] = None
    # A generous bound: a broken contract shows as a reactor still running.
    timeout = 20

    def listen(self, reactor: Any, factory: Any) -> Any:
        """
        Listen (synchronously, as C{reactor.listenTCP} would).
        """
        assert self.endpoints is not None
        ports: list[Any] = []
        self.endpoints.server(reactor).listen(factory).addCallback(ports.append)
        assert ports, "the server endpoint did not listen at once"
        self._listening = ports[0]
        return ports[0]

    def connect(self, reactor: Any, factory: Any) -> None:
        """
        Connect to the port of the last L{listen}.
        """
        assert self.endpoints is not None
        endpoint = self.endpoints.client(reactor, self._listening.getHost())
        endpoint.connect(factory).addErrback(lambda f: None)

    def getConnectedClientAndServer(
        self, reactor: Any, interface: str, addressFamily: Any
    ) -> Deferred[tuple[Protocol, Protocol, Any]]:
        """
        A connected client and server protocol, and the listening port; the
        reactor stops once both have lost their connection.
        """
        assert self.endpoints is not None
        made: list[Deferred[Protocol]] = [Deferred(), Deferred()]
        lost: list[Deferred[None]] = [Deferred(), Deferred()]

        def side(index: int) -> type[Protocol]:
            class Side(Protocol):
                def connectionMade(self) -> None:
                    made[index].callback(self)

                def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
                    lost[index].callback(None)

            return Side

        gatherResults(lost).addBoth(lambda _: reactor.stop())
        result: Deferred[tuple[Protocol, Protocol, Any]] = Deferred()

        def listening(port: Any) -> None:
            assert self.endpoints is not None
            self.endpoints.client(reactor, port.getHost()).connect(
                ClientFactory.forProtocol(side(0))
            ).addErrback(result.errback)
            gatherResults(made).addCallback(lambda ps: result.callback((ps[0], ps[1], port)))

        def start() -> None:
            assert self.endpoints is not None
            self.endpoints.server(reactor).listen(
                ServerFactory.forProtocol(side(1))
            ).addCallback(listening).addErrback(result.errback)

        reactor.callWhenRunning(start)
        return result


class _ProducerTestsMixin:
    """
    The producer tests of L{StreamClientTestsMixin} (its other tests are
    about C{IConnector} and C{ClientFactory} callbacks, which endpoints do
    not use).
    """

    test_unregisterProducerAfterDisconnect = (
        StreamClientTestsMixin.test_unregisterProducerAfterDisconnect
    )
    test_disconnectWhileProducing = StreamClientTestsMixin.test_disconnectWhileProducing


class TCPContractTests(
    _ContractBuilder,
    ConnectionTestsMixin,
    AbortConnectionMixin,
    _ProducerTestsMixin,
    WriteSequenceTestsMixin,
):
    """
    Twisted's transport tests against C{migrate:tcp:}.
    """

    endpoints = MigrateTCPCreator()


class TLSContractTests(
    _ContractBuilder,
    ConnectionTestsMixin,
    AbortConnectionMixin,
    _ProducerTestsMixin,
    WriteSequenceTestsMixin,
):
    """
    Twisted's transport tests against C{migrate:tls:}.
    """

    endpoints = MigrateTLSCreator()


class RelayedTCPContractTests(_ContractBuilder, ConnectionTestsMixin, AbortConnectionMixin):
    """
    Twisted's connection and abort tests against C{migrate:tcp:}, every
    carrier cut after a few KiB.
    """

    endpoints = RelayedCreator(MigrateTCPCreator(), 4 * 1024)


class RelayedTLSContractTests(_ContractBuilder, ConnectionTestsMixin, AbortConnectionMixin):
    """
    Twisted's connection and abort tests against C{migrate:tls:}, every
    carrier cut after a few KiB.
    """

    endpoints = RelayedCreator(MigrateTLSCreator(), 16 * 1024)


class ChannelTCPContractTests(
    _ContractBuilder,
    ConnectionTestsMixin,
    AbortConnectionMixin,
    _ProducerTestsMixin,
    WriteSequenceTestsMixin,
):
    """
    Twisted's transport tests against a channel (not the first stream) of
    a C{migrate:tcp:} session.
    """

    endpoints = ChannelCreator(MigrateTCPCreator())


class ChannelTLSContractTests(
    _ContractBuilder,
    ConnectionTestsMixin,
    AbortConnectionMixin,
    _ProducerTestsMixin,
    WriteSequenceTestsMixin,
):
    """
    Twisted's transport tests against a channel of a C{migrate:tls:}
    session.
    """

    endpoints = ChannelCreator(MigrateTLSCreator())


class RelayedChannelTCPContractTests(
    _ContractBuilder, ConnectionTestsMixin, AbortConnectionMixin
):
    """
    Twisted's connection and abort tests against a channel of a
    C{migrate:tcp:} session, every carrier cut after a few KiB.
    """

    endpoints = RelayedCreator(ChannelCreator(MigrateTCPCreator()), 4 * 1024)


for _builder in (
    TCPContractTests,
    TLSContractTests,
    RelayedTCPContractTests,
    RelayedTLSContractTests,
    ChannelTCPContractTests,
    ChannelTLSContractTests,
    RelayedChannelTCPContractTests,
):
    globals().update(_builder.makeTestCaseClasses())
del _builder


class _HalfCloseBase(TestCase):
    """
    What Twisted's half-close tests share: a server listening on a
    C{migrate:} endpoint of the global reactor and a client connected to it.
    """

    creator: EndpointCreator = MigrateTCPCreator()
    timeout = 30

    @defer.inlineCallbacks
    def listenAndConnect(self, serverFactory: Any, clientProtocol: type[Protocol]) -> Any:
        """
        Listen with C{serverFactory}; connect a C{clientProtocol}.

        @return: a Deferred firing with the client protocol.
        """
        self.port = yield self.creator.server(globalReactor).listen(serverFactory)
        self.addCleanup(self.port.stopListening)
        factory = ClientFactory.forProtocol(clientProtocol)
        factory.protocolConnectionMade = None  # type: ignore[attr-defined]
        client = yield self.creator.client(globalReactor, self.port.getHost()).connect(factory)
        self.ends = [client.transport, serverFactory.lastProtocol.transport]
        return client

    def tearDown(self) -> Any:
        """
        Twisted's tear-down (L{closeDown}), then, where Twisted's tests know
        the TCP connection is closed once C{connectionLost} was called, wait
        for the session to finish its close in the background.
        """
        d = defer.maybeDeferred(self.closeDown)
        d.addCallback(lambda _: gatherResults([t.whenEnded() for t in self.ends]))
        return d

    def closeDown(self) -> Any:
        """
        The tear-down of Twisted's test.
        """


class HalfCloseTests(_HalfCloseBase):
    """
    Twisted's C{HalfCloseTests}: half-closing sessions whose protocols are
    told of both half-closes.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.f = f = MyHCFactory()
        self.client = yield self.listenAndConnect(f, MyHCProtocol)
        self.clientProtoConnectionLost = self.client.closedDeferred = Deferred()
        self.assertEqual(self.client.transport.state, "attached")
        # Wait for the server to notice there is a connection, too.
        yield loopUntil(lambda: getattr(self.f, "lastProtocol", None) is not None)

    def closeDown(self) -> Any:
        self.assertEqual(self.client.closed, 0)
        self.client.transport.loseConnection()
        d = defer.maybeDeferred(self.port.stopListening)
        d.addCallback(lambda ign: self.clientProtoConnectionLost)
        d.addCallback(self._tearDown)
        return d

    def _tearDown(self, ignored: object) -> Any:
        self.assertEqual(self.client.closed, 1)
        # because we did half-close, the server also needs to
        # closed explicitly.  (Twisted asserts C{closed == 0}, which holds
        # on TCP only if the server has not read the client's FIN yet: on
        # reading it, L{MyHCProtocol} calls its own C{connectionLost(None)}.
        # What the assertion means is that the transport did not close the
        # server, whose C{closedReason} would then be a failure.)
        self.assertIsNone(self.f.lastProtocol.closedReason)
        d: Deferred[None] = Deferred()

        def _connectionLost(reason: object) -> None:
            self.f.lastProtocol.closed = 1
            d.callback(None)

        self.f.lastProtocol.connectionLost = _connectionLost
        self.f.lastProtocol.transport.loseConnection()
        d.addCallback(lambda x: self.assertEqual(self.f.lastProtocol.closed, 1))
        return d

    def testCloseWriteCloser(self) -> Any:
        """
        After C{loseWriteConnection}, the writer hears C{writeConnectionLost},
        the peer C{readConnectionLost}, and later writes go nowhere.  (Twisted
        waits for its private write buffer to empty; here, for the data to
        arrive.)
        """
        client = self.client
        f = self.f
        t = client.transport

        t.write(b"hello")
        d = loopUntil(lambda: f.lastProtocol.data == b"hello")

        def loseWrite(ignored: object) -> Any:
            t.loseWriteConnection()
            return loopUntil(lambda: client.writeHalfClosed)

        def check(ignored: object) -> Any:
            self.assertFalse(client.closed)
            self.assertTrue(client.writeHalfClosed)
            self.assertFalse(client.readHalfClosed)
            return loopUntil(lambda: f.lastProtocol.readHalfClosed)

        def write(ignored: object) -> None:
            sent = t.snapshot()["bytesSent"]
            w = client.transport.write
            w(b" world")
            w(b"lalala fooled you")
            self.assertEqual(sent, t.snapshot()["bytesSent"])
            self.assertEqual(f.lastProtocol.data, b"hello")
            self.assertFalse(f.lastProtocol.closed)
            self.assertTrue(f.lastProtocol.readHalfClosed)

        return d.addCallback(loseWrite).addCallback(check).addCallback(write)

    def testWriteCloseNotification(self) -> Any:
        f = self.f
        f.lastProtocol.transport.loseWriteConnection()

        d = gatherResults(
            [
                loopUntil(lambda: f.lastProtocol.writeHalfClosed),
                loopUntil(lambda: self.client.readHalfClosed),
            ]
        )
        d.addCallback(lambda _: self.assertEqual(f.lastProtocol.readHalfClosed, False))
        return d


class HalfCloseNoNotificationAndShutdownExceptionTests(_HalfCloseBase):
    """
    Twisted's tests of half-closing towards a protocol that is not told of
    half-closes.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.f = f = MyServerFactory()
        self.f.protocolConnectionMade = Deferred()
        made = self.f.protocolConnectionMade
        self.client = yield self.listenAndConnect(f, AccumulatingProtocol)
        yield made

    def closeDown(self) -> Any:
        self.client.transport.loseConnection()
        return self.port.stopListening()

    def testNoNotification(self) -> Any:
        """
        TCP protocols support half-close connections, but not all of them
        support being notified of write closes.  In this case, test that
        half-closing the connection causes the peer's connection to be
        closed.
        """
        self.client.transport.write(b"hello")
        self.client.transport.loseWriteConnection()
        self.f.lastProtocol.closedDeferred = d = Deferred()
        self.client.closedDeferred = d2 = Deferred()
        d.addCallback(lambda x: self.assertEqual(self.f.lastProtocol.data, b"hello"))
        d.addCallback(lambda x: self.assertTrue(self.f.lastProtocol.closed))
        return gatherResults([d, d2])

    def testShutdownException(self) -> Any:
        """
        If the other side has already closed its connection,
        loseWriteConnection should pass silently.
        """
        self.f.lastProtocol.transport.loseConnection()
        self.client.transport.write(b"X")
        self.client.transport.loseWriteConnection()
        self.f.lastProtocol.closedDeferred = d = Deferred()
        self.client.closedDeferred = d2 = Deferred()
        d.addCallback(lambda x: self.assertTrue(self.f.lastProtocol.closed))
        return gatherResults([d, d2])


class HalfCloseBuggyApplicationTests(_HalfCloseBase):
    """
    Twisted's tests of half-closing where the notification code has bugs.
    """

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.serverFactory = MyHCFactory()
        self.serverFactory.protocolConnectionMade = Deferred()
        made = self.serverFactory.protocolConnectionMade
        self.clientProtocol = yield self.listenAndConnect(self.serverFactory, MyHCProtocol)
        yield made

    def aBug(self, *args: object) -> None:
        """
        Fake implementation of a callback which illegally raises an
        exception.
        """
        raise RuntimeError("ONO I AM BUGGY CODE")

    def _notificationRaisesTest(self) -> Any:
        """
        Helper for testing that an exception is logged by the time the
        client protocol loses its connection.
        """
        closed = self.clientProtocol.closedDeferred = Deferred()
        self.clientProtocol.transport.loseWriteConnection()

        def check(ignored: object) -> None:
            errors = self.flushLoggedErrors(RuntimeError)
            self.assertEqual(len(errors), 1)

        closed.addCallback(check)
        return closed

    def test_readNotificationRaises(self) -> Any:
        """
        If C{readConnectionLost} raises an exception when the transport
        calls it to notify the protocol of that event, the exception should
        be logged and the protocol should be disconnected completely.
        """
        self.serverFactory.lastProtocol.readConnectionLost = self.aBug
        return self._notificationRaisesTest()

    def test_writeNotificationRaises(self) -> Any:
        """
        If C{writeConnectionLost} raises an exception when the transport
        calls it to notify the protocol of that event, the exception should
        be logged and the protocol should be disconnected completely.
        """
        self.clientProtocol.writeConnectionLost = self.aBug
        return self._notificationRaisesTest()


class TLSHalfCloseTests(HalfCloseTests):
    """
    L{HalfCloseTests} over C{migrate:tls:}.
    """

    creator = MigrateTLSCreator()


class TLSHalfCloseNoNotificationAndShutdownExceptionTests(
    HalfCloseNoNotificationAndShutdownExceptionTests
):
    """
    L{HalfCloseNoNotificationAndShutdownExceptionTests} over
    C{migrate:tls:}.
    """

    creator = MigrateTLSCreator()


class TLSHalfCloseBuggyApplicationTests(HalfCloseBuggyApplicationTests):
    """
    L{HalfCloseBuggyApplicationTests} over C{migrate:tls:}.
    """

    creator = MigrateTLSCreator()
