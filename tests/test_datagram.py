"""
Datagram sessions over real UDP on the loopback: echo, spoofed and replayed
datagrams from other sockets, a NAT that rebinds, the anti-amplification
bound, upcalls, a restart from the session store, and nothing left on the
reactor.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone, MessageLengthError
from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface.verify import verifyObject

from migrate import HandshakeError, SessionOptions
from migrate._sansio import dgram as _dgram
from migrate.datagram import DatagramOptions, connectDatagram, listenDatagram
from migrate.testing import FakeMonitor

LOOPBACK = "127.0.0.1"


def waitFor(predicate: Callable[[], bool], timeout: float = 5.0) -> "Deferred[None]":
    """
    Poll the predicate on the reactor until it holds; fail after
    C{timeout} seconds.
    """
    d: Deferred[None] = Deferred()
    start = reactor.seconds()  # type: ignore[attr-defined]

    def check() -> None:
        if predicate():
            d.callback(None)
        elif reactor.seconds() - start > timeout:  # type: ignore[attr-defined]
            d.errback(AssertionError("not reached within %s s" % (timeout,)))
        else:
            reactor.callLater(0.002, check)  # type: ignore[attr-defined]

    check()
    return d


class Recorder(DatagramProtocol):
    """
    Records what it receives and its lifecycle; echoes if asked.
    """

    echo = False
    burst = 1

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []
        self.started = 0
        self.stopped = 0

    def startProtocol(self) -> None:
        self.started += 1

    def stopProtocol(self) -> None:
        self.stopped += 1

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))
        if self.echo:
            for _ in range(self.burst):
                self.transport.write(datagram, addr)  # type: ignore[union-attr]


class Echo(Recorder):
    echo = True


class Observer:
    """
    Records upcalls.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        if name in (
            "sessionEstablished", "sessionSuspended", "sessionResumed",
            "peerMoved", "sessionEnded", "addressesChanged",
        ):
            return lambda *args: self.calls.append((name,) + args[1:])
        raise AttributeError(name)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


class Raw(DatagramProtocol):
    """
    A plain UDP socket: what it receives, in bytes.
    """

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Any]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))

    @property
    def bytes(self) -> int:
        return sum(len(d) for d, _ in self.received)


class NAT(DatagramProtocol):
    """
    A one-client NAT in the test process: the client talks to its
    C{inside} port; the NAT talks to the server from an outside socket,
    which L{rebind} replaces (a NAT rebinding: the server sees a new
    source port, with no event anywhere).
    """

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.client: Optional[Any] = None
        self.outside: Any = None
        self.old: list[Any] = []
        self.toServer: list[bytes] = []

    def startProtocol(self) -> None:
        self.rebind()

    def rebind(self) -> int:
        nat = self

        class Outside(DatagramProtocol):
            def datagramReceived(self, datagram: bytes, addr: Any) -> None:
                if self is nat.outside.protocol and nat.client is not None:
                    nat.transport.write(datagram, nat.client)  # type: ignore[union-attr]

        if self.outside is not None:
            self.old.append(self.outside)
        self.outside = reactor.listenUDP(0, Outside(), interface=LOOPBACK)  # type: ignore[attr-defined]
        return int(self.outside.getHost().port)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.client = addr
        self.toServer.append(datagram)
        self.outside.write(datagram, self.server)

    def stop(self) -> Any:
        for port in self.old + [self.outside]:
            port.stopListening()
        return self.transport.stopListening()  # type: ignore[union-attr]


class _Loopback(TestCase):
    """
    A server and a client on 127.0.0.1, real sockets, the real reactor.
    """

    timeout = 20
    serverProtocol: type[Recorder] = Echo

    def setUp(self) -> Any:
        self.servers: list[Recorder] = []
        self.serverWatch = Observer()
        self.clientWatch = Observer()

        def build() -> Recorder:
            p = self.serverProtocol()
            self.servers.append(p)
            return p

        self.port = listenDatagram(
            reactor, 0, Factory.forProtocol(build), interface=LOOPBACK,
            observers=[self.serverWatch],
        )
        self.addCleanup(self.port.stopListening)
        self.serverAddress = (LOOPBACK, self.port.getHost().port)

    @inlineCallbacks
    def connect(self, host: str = LOOPBACK, port: Optional[int] = None, **kw: Any) -> Any:
        client = Recorder()
        kw.setdefault("monitor", None)
        yield connectDatagram(
            reactor, host, port or self.serverAddress[1], client,
            observers=[self.clientWatch], **kw
        )
        self.addCleanup(self.closeClient, client)
        return client

    def closeClient(self, client: Recorder) -> Any:
        if client.transport is not None:
            return client.transport.stopListening()
        return None

    @property
    def serverSession(self) -> Any:
        [session] = self.port.sessions.values()
        return session

    @inlineCallbacks
    def roundTrip(self, client: Recorder, payload: bytes) -> Any:
        count = len(client.received)
        client.transport.write(payload)  # type: ignore[union-attr]
        yield waitFor(lambda: len(client.received) > count)
        self.assertEqual(client.received[-1][0], payload)



class DatagramLoopbackTests(_Loopback):
    """
    Echo, close, write rules, hostile datagrams, rebinding.
    """

    @inlineCallbacks
    def test_echo(self) -> Any:
        """
        Datagrams go both ways; each end sees the other's address; the
        application started once; upcalls were heard.
        """
        client = yield self.connect()
        for i in range(20):
            yield self.roundTrip(client, b"datagram %d" % i)
        [server] = self.servers
        self.assertEqual(server.received[0], (b"datagram 0", client.transport.getHost().host and
                                              (LOOPBACK, client.transport.getHost().port)))
        self.assertEqual(client.received[0][1], self.serverAddress)
        self.assertEqual((client.started, server.started), (1, 1))
        self.assertEqual(client.transport.getPeer().port, self.serverAddress[1])
        self.assertEqual(client.transport.sessionID, self.serverSession.transport.sessionID)
        self.assertEqual(len(self.clientWatch.named("sessionEstablished")), 1)
        self.assertEqual(len(self.serverWatch.named("sessionEstablished")), 1)

    @inlineCallbacks
    def test_byName(self) -> Any:
        """
        A host name is looked up through the reactor's resolver, and kept
        (to look it up again through a locator while suspended).
        """
        client = yield self.connect(host="localhost")
        yield self.roundTrip(client, b"named")
        self.assertEqual(client.transport._session.peerName, "localhost")
        self.assertEqual(client.transport.getPeer().host, LOOPBACK)

    @inlineCallbacks
    def test_close(self) -> Any:
        """
        The client closes: the server's application stops (told by the
        peer, not by a timeout), both hear C{sessionEnded} with
        C{ConnectionDone}, the server's table is empty.
        """
        client = yield self.connect()
        yield self.roundTrip(client, b"x")
        [server] = self.servers
        yield client.transport.stopListening()
        self.assertEqual(client.stopped, 1)
        yield waitFor(lambda: server.stopped == 1)
        self.assertEqual(self.port.sessions, {})
        for watch in (self.clientWatch, self.serverWatch):
            [(_, reason)] = watch.named("sessionEnded")
            reason.trap(ConnectionDone)

    @inlineCallbacks
    def test_serverStops(self) -> Any:
        """
        The server stops listening: its applications stop at once, and the
        client's session ends on the server's word.
        """
        client = yield self.connect()
        yield self.roundTrip(client, b"x")
        yield self.port.stopListening()
        self.assertEqual(self.servers[0].stopped, 1)
        yield waitFor(lambda: client.stopped == 1)

    @inlineCallbacks
    def test_writeRules(self) -> Any:
        """
        C{write} takes bytes only, up to C{maxDatagram}; C{connect} is
        refused; broadcast is never on.
        """
        client = yield self.connect(datagramOptions=DatagramOptions(maxDatagram=1000))
        transport = client.transport
        self.assertRaises(TypeError, transport.write, "text")
        self.assertRaises(MessageLengthError, transport.write, b"x" * 1001)
        self.assertRaises(RuntimeError, transport.connect, LOOPBACK, 1)
        self.assertFalse(transport.getBroadcastAllowed())
        self.assertTrue(verifyObject(IUDPTransport, transport))
        yield self.roundTrip(client, b"x" * 1000)

    @inlineCallbacks
    def test_spoofedAndReplayed(self) -> Any:
        """
        From another socket: a genuine datagram replayed, a forged one with
        the right session id and the wrong key, one with a wrong packet
        number, garbage.  None reaches the application; the server's peer,
        window and paths do not change; the session works on.
        """
        client = yield self.connect()
        yield self.roundTrip(client, b"first")
        captured: list[bytes] = []
        session = client.transport._session
        realSend = session._send

        def recording(datagram: bytes, *args: Any) -> bool:
            captured.append(datagram)
            return realSend(datagram, *args)

        session._send = recording
        yield self.roundTrip(client, b"genuine")
        [server] = self.servers
        conn = self.serverSession.conn
        before = (
            conn.path.address, conn._opener.window.highest, conn._opener.window.bits,
            {a: (p.received, p.sent) for a, p in conn._paths.items()}, len(server.received),
        )
        attacker = Raw()
        port = reactor.listenUDP(0, attacker, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        sid = bytes.fromhex(client.transport.sessionID)
        forged = _dgram.Sealer(b"K" * 32, sid, 0, True)
        forged.nextPN = conn._opener.window.highest + 1
        renumbered = bytearray(captured[-1])
        renumbered[24] ^= 1
        attacks = [captured[-1], captured[-1], forged.seal(_dgram.APP, b"evil"),
                   bytes(renumbered), b"\x40" + sid + b"garbage", b"\x51junk", b""]
        for datagram in attacks:
            port.write(datagram, self.serverAddress)
        # Also from the client's own address: a replay.
        realSend(captured[-1], self.serverAddress)
        yield deferLater(reactor, 0.05, lambda: None)
        after = (
            conn.path.address, conn._opener.window.highest, conn._opener.window.bits,
            {a: (p.received, p.sent) for a, p in conn._paths.items()}, len(server.received),
        )
        self.assertEqual(after, before)
        self.assertEqual(conn.stats["dropped"], 6)
        self.assertEqual(attacker.received, [])
        yield self.roundTrip(client, b"still fine")
        self.assertNotIn(b"evil", [d for d, _ in server.received])
        self.assertEqual([d for d, _ in server.received].count(b"genuine"), 1)

    @inlineCallbacks
    def test_natRebinding(self) -> Any:
        """
        Behind a NAT that rebinds (a new outside port, no event anywhere),
        the server follows the first datagram from the new port: its very
        next datagram, the echo, goes there and reaches the client.
        """
        nat = NAT(self.serverAddress)
        inside = reactor.listenUDP(0, nat, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(nat.stop)
        client = yield self.connect(port=inside.getHost().port)
        yield self.roundTrip(client, b"before")
        conn = self.serverSession.conn
        oldPort = conn.path.address[1]
        newPort = nat.rebind()
        self.assertNotEqual(oldPort, newPort)
        yield self.roundTrip(client, b"after")
        self.assertEqual(conn.path.address, (LOOPBACK, newPort))
        self.assertEqual(self.servers[0].received[-1], (b"after", (LOOPBACK, newPort)))
        self.assertEqual(len(client.received), 2)
        [(_, old, new)] = self.serverWatch.named("peerMoved")
        self.assertEqual((old, new), ("127.0.0.1:%d" % oldPort, "127.0.0.1:%d" % newPort))
        # The new path answered the server's challenge: no bound on it.
        yield waitFor(lambda: conn.path.validated)
        self.assertEqual(conn.stats["amplificationDrops"], 0)

    @inlineCallbacks
    def test_clientPortChanges(self) -> Any:
        """
        The client's own socket is replaced by one on another port (its
        address changed): the server follows at once.
        """
        from migrate._dgram_socket import DatagramSocket

        client = yield self.connect()
        yield self.roundTrip(client, b"before")
        session = client.transport._session
        old = session.socket
        fresh = DatagramSocket(reactor, old._receiver, LOOPBACK, 0)  # type: ignore[arg-type]
        fresh.startReading()
        session.useSocket(fresh)
        old.close()
        self.addCleanup(fresh.close)
        yield self.roundTrip(client, b"after")
        self.assertEqual(self.serverSession.conn.path.address[1], fresh.getHost().port)


class AmplificationTests(_Loopback):
    """
    A server application that answers each datagram with ten.
    """

    class Tenfold(Echo):
        burst = 10

    serverProtocol = Tenfold

    @inlineCallbacks
    def test_unvalidatedPathBounded(self) -> Any:
        """
        An attacker forwards a captured genuine datagram from its own
        address before the client's arrives: the server follows it (it is
        authentic and newest) but sends there at most three times what it
        received from there; the client's next datagram takes the session
        back.
        """
        client = yield self.connect()
        yield self.roundTrip(client, b"first")
        yield waitFor(lambda: len(client.received) == 10)
        session = client.transport._session
        realSend = session._send
        held: list[bytes] = []
        session._send = lambda datagram, *args: held.append(datagram) or True
        client.transport.write(b"x" * 200)
        session._send = realSend
        attacker = Raw()
        port = reactor.listenUDP(0, attacker, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        port.write(held[0], self.serverAddress)
        conn = self.serverSession.conn
        attackerAddress = (LOOPBACK, port.getHost().port)
        yield waitFor(lambda: conn.path.address == attackerAddress)
        yield deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(self.servers[0].received), 2)
        self.assertLessEqual(attacker.bytes, 3 * len(held[0]))
        self.assertGreater(attacker.bytes, len(held[0]))  # the challenge and some answers
        self.assertGreater(conn.stats["amplificationDrops"], 0)
        # The real client's next datagram brings the session back.
        received = len(client.received)
        client.transport.write(b"back")
        yield waitFor(lambda: len(client.received) == received + 10)
        self.assertEqual(conn.path.address[1], client.transport.getHost().port)
        self.assertLessEqual(attacker.bytes, 3 * len(held[0]))


class SilenceTests(_Loopback):
    """
    A server that vanishes without a word.
    """

    @inlineCallbacks
    def test_suspendedThenExpired(self) -> Any:
        """
        The server's socket closes silently: the client, writing, is
        suspended after the silence limit (it hears C{sessionSuspended}),
        and its session expires after C{sessionTimeout}: C{sessionEnded}
        with L{SessionExpired}, C{stopProtocol}, the socket closed and
        nothing left scheduled.
        """
        from migrate import SessionExpired

        options = SessionOptions(sessionTimeout=0.6, deadAfter=0.2, heartbeatInterval=0.05)
        client = yield self.connect(options=options)
        yield self.roundTrip(client, b"x")
        self.port._socket.close()
        start = reactor.seconds()  # type: ignore[attr-defined]
        client.transport.write(b"into the void")
        yield waitFor(lambda: bool(self.clientWatch.named("sessionSuspended")), 2)
        self.assertEqual(self.clientWatch.named("sessionSuspended"), [("sessionSuspended", "path-dead")])
        self.assertEqual(client.transport.state, "detached")
        yield waitFor(lambda: client.stopped == 1, 2)
        took = reactor.seconds() - start  # type: ignore[attr-defined]
        self.assertTrue(0.5 < took < 1.0, took)
        [(_, reason)] = self.clientWatch.named("sessionEnded")
        reason.trap(SessionExpired)
        self.assertIsNone(client.transport)


class IPv6Tests(TestCase):
    """
    The same over IPv6.
    """

    @inlineCallbacks
    def test_echo(self) -> Any:
        """
        A server on C{::} (answering from the address reached) and a client
        to C{::1}: datagrams go both ways, addresses are IPv6 ones.
        """
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            raise SkipTest("no IPv6 loopback")
        port = listenDatagram(reactor, 0, Factory.forProtocol(Echo), interface="::")
        self.addCleanup(port.stopListening)
        client = Recorder()
        yield connectDatagram(reactor, "::1", port.getHost().port, client, monitor=None)
        self.addCleanup(client.transport.stopListening)  # type: ignore[union-attr]
        client.transport.write(b"six")  # type: ignore[union-attr]
        yield waitFor(lambda: bool(client.received))
        self.assertEqual(client.received[0], (b"six", ("::1", port.getHost().port)))
        peer = client.transport.getPeer()  # type: ignore[union-attr]
        self.assertEqual((type(peer).__name__, peer.host), ("IPv6Address", "::1"))
        [session] = port.sessions.values()
        self.assertEqual(session.conn.path.local, "::1")


class HandshakeFailureTests(TestCase):
    """
    Openings that fail.
    """

    @inlineCallbacks
    def test_noServer(self) -> Any:
        """
        Nothing answers: the opening fails with L{HandshakeError} after
        C{connectTimeout}, having retransmitted; nothing is left behind.
        """
        silent = Raw()
        port = reactor.listenUDP(0, silent, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        d = connectDatagram(
            reactor, LOOPBACK, port.getHost().port, Recorder(),
            options=SessionOptions(connectTimeout=0.5), monitor=None,
        )
        error = yield self.assertFailure(d, HandshakeError)
        self.assertIn("timed out", str(error))
        self.assertEqual(len(silent.received), 2)  # at 0, then 0.2 s (0.6 s is too late)
        self.assertTrue(all(len(d) == _dgram.HANDSHAKE_PAD for d, _ in silent.received))

    @inlineCallbacks
    def test_busy(self) -> Any:
        """
        A server at C{maxSessions} refuses the opening with the reason.
        """
        port = listenDatagram(
            reactor, 0, Factory.forProtocol(Echo), interface=LOOPBACK,
            options=SessionOptions(maxSessions=1),
        )
        self.addCleanup(port.stopListening)
        first = Recorder()
        yield connectDatagram(reactor, LOOPBACK, port.getHost().port, first, monitor=None)
        self.addCleanup(lambda: first.transport.stopListening())  # type: ignore[union-attr]
        error = yield self.assertFailure(
            connectDatagram(reactor, LOOPBACK, port.getHost().port, Recorder(), monitor=None),
            HandshakeError,
        )
        self.assertIn("server at capacity", str(error))

    @inlineCallbacks
    def test_cancel(self) -> Any:
        """
        Cancelling the opening closes its socket and timer.
        """
        silent = Raw()
        port = reactor.listenUDP(0, silent, interface=LOOPBACK)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        d = connectDatagram(reactor, LOOPBACK, port.getHost().port, Recorder(), monitor=None)
        d.cancel()
        from twisted.internet.defer import CancelledError

        yield self.assertFailure(d, CancelledError)


class MonitorTests(_Loopback):
    """
    The client's connectivity monitor.
    """

    @inlineCallbacks
    def test_eventProbes(self) -> Any:
        """
        A connectivity event makes an idle client ping at once (so the
        server learns a new address without the application writing), and
        the application hears C{addressesChanged}; the monitor is started
        while the session lives and released after.
        """
        monitor = FakeMonitor()
        client = yield self.connect(monitor=monitor)
        self.assertTrue(monitor.started)
        conn = self.serverSession.conn
        heard = conn.heardAt
        yield deferLater(reactor, 0.01, lambda: None)
        monitor.emit("address-added", "eth0", "192.0.2.1")
        yield waitFor(lambda: conn.heardAt > heard)
        yield waitFor(lambda: client.transport._session.conn.srtt is not None)
        self.assertEqual(len(self.clientWatch.named("addressesChanged")), 1)
        self.assertEqual(len(self.servers[0].received), 0)
        yield client.transport.stopListening()
        self.assertFalse(monitor.started)


class RestartTests(TestCase):
    """
    A server restarted on its session store, over real UDP.
    """

    timeout = 20

    @inlineCallbacks
    def restart(self, store: Any) -> Any:
        """
        Open a session to a migratable counter, stop the server, start it
        again on the same port and store; return the client.
        """
        from .test_datagram_resume import Counter

        options = SessionOptions(heartbeatInterval=0.05, deadAfter=0.2, reconnectMax=0.1)
        port = listenDatagram(
            reactor, 0, Factory.forProtocol(Counter), interface=LOOPBACK, options=options, store=store
        )
        number = port.getHost().port
        client = Recorder()
        yield connectDatagram(reactor, LOOPBACK, number, client, options=options, monitor=None)
        self.addCleanup(lambda: client.transport and client.transport.stopListening())
        client.transport.write(b"one")  # type: ignore[union-attr]
        yield waitFor(lambda: len(client.received) == 1)
        yield port.stopListening()
        self.assertEqual(len(store.rows), 1)
        self.port = listenDatagram(
            reactor, number, Factory.forProtocol(Counter), interface=LOOPBACK, options=options, store=store
        )
        self.addCleanup(self.port.stopListening)
        return client

    @inlineCallbacks
    def test_wokenByDatagram(self) -> Any:
        """
        The client's next datagram brings its session back from the store,
        count and all (its keys unchanged).
        """
        from migrate.store import MemorySessionStore

        store = MemorySessionStore()
        client = yield self.restart(store)
        client.transport.write(b"two")  # type: ignore[union-attr]
        yield waitFor(lambda: len(client.received) == 2)
        self.assertEqual([d for d, _ in client.received], [b"1", b"2"])
        self.assertEqual(store.rows, {})

    @inlineCallbacks
    def test_resumed(self) -> Any:
        """
        A server that could not list its store at start does not know the
        session by its datagrams: the client, suspended, resumes it (a new
        generation), and goes on.
        """
        from twisted.internet.defer import succeed

        from migrate.store import MemorySessionStore

        store = MemorySessionStore()
        store.list = lambda side=None: succeed([])  # type: ignore[method-assign]
        client = yield self.restart(store)
        client.transport.write(b"lost")  # type: ignore[union-attr]
        yield waitFor(lambda: client.transport.generation >= 1)  # type: ignore[union-attr]
        [session] = self.port.sessions.values()
        self.assertEqual(session.conn.generation, client.transport.generation)  # type: ignore[union-attr]
        client.transport.write(b"three")  # type: ignore[union-attr]
        yield waitFor(lambda: len(client.received) == 2)
        self.assertEqual(client.received[-1][0], b"2")
