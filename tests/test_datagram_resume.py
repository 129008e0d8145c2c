"""
Datagram sessions that outlive their server's memory, on a deterministic
clock and an in-memory network: resumes over datagrams (new generation,
new traffic keys; stale generations and bad proofs refused with nothing
changed), hibernation into a session store after C{suspendAfter} and back
(by an authentic datagram or a resume), a server restarted from its store,
no nonce ever used twice, and publishing to a locator.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from typing import Any, Callable, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from migrate import SessionExpired, SessionOptions
from migrate._sansio import dgram as _dgram, wire as _wire
from migrate import datagram as datagramModule
from migrate._sansio.dgram_handshake import ClientResuming
from migrate.datagram import DatagramPort, connectDatagram, listenDatagram
from migrate.interfaces import IMigratable
from migrate.locate import StaticLocator
from migrate.policy import DefaultPolicy
from migrate.store import MemorySessionStore
from migrate.testing import FakeMonitor

SERVER_HOST = "10.0.0.1"
CLIENT_HOST = "10.0.0.2"

Endpoint = tuple[str, int]


class MemoryUDP:
    """
    UDP on one L{Clock}, in memory: the sockets of L{migrate.datagram}
    (patched in with L{install}) exchange datagrams through a FIFO queue
    that L{deliver} empties.

    @ivar drop: decides, for each datagram (and its source and
        destination), whether the network loses it.
    @ivar log: every datagram sent, as C{(datagram, source, destination)}.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sockets: dict[Endpoint, MemorySocket] = {}
        self.queue: deque[tuple[bytes, Endpoint, Endpoint]] = deque()
        self.nextPort = 40000
        self.clientHost = CLIENT_HOST
        self.drop: Callable[[bytes, Endpoint, Endpoint], bool] = lambda d, s, t: False
        self.log: list[tuple[bytes, Endpoint, Endpoint]] = []

    def install(self, case: SynchronousTestCase) -> None:
        case.patch(datagramModule, "DatagramSocket", self.socket)

    def socket(
        self,
        reactor: Any,
        receiver: Callable[[bytes, Endpoint, Optional[str]], None],
        host: str,
        port: int,
        family: int = socket.AF_INET,
        answerFromReached: bool = True,
    ) -> MemorySocket:
        host = host or self.clientHost
        if not port:
            self.nextPort += 1
            port = self.nextPort
        if (host, port) in self.sockets:
            raise OSError("address in use")
        sock = MemorySocket(self, receiver, host, port, family)
        self.sockets[(host, port)] = sock
        return sock

    def deliver(self) -> int:
        """
        Deliver every queued datagram (and those sent in answer), running
        what the clock has due now in between.

        @return: how many were delivered.
        """
        count = 0
        while True:
            self.clock.advance(0)
            if not self.queue:
                return count
            datagram, source, destination = self.queue.popleft()
            if self.drop(datagram, source, destination):
                continue
            target = self.sockets.get(destination)
            if target is None or not target.reading:
                continue
            count += 1
            target.receiver(datagram, source, None)

    def run(self, seconds: float, step: float = 0.05) -> None:
        """
        Let C{seconds} pass, delivering datagrams after each C{step}.
        """
        self.deliver()
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.deliver()

    def sentBy(self, host: str, kind: int = _dgram.PROTECTED) -> list[bytes]:
        """
        The datagrams of one kind sent from C{host}.
        """
        return [d for d, s, _ in self.log if s[0] == host and d[:1] == bytes((kind,))]


class MemorySocket:
    """
    A L{migrate._dgram_socket.DatagramSocket} of a L{MemoryUDP}.
    """

    pktinfo = False
    sendErrors = 0

    def __init__(
        self,
        network: MemoryUDP,
        receiver: Callable[[bytes, Endpoint, Optional[str]], None],
        host: str,
        port: int,
        family: int,
    ) -> None:
        self.network = network
        self.receiver = receiver
        self._receiver = receiver
        self.host = host
        self.port = port
        self.family = family
        self.reading = False
        self.closed = False

    def startReading(self) -> None:
        self.reading = not self.closed

    def send(self, datagram: bytes, address: Any, local: Optional[str] = None) -> bool:
        if self.closed:
            return False
        item = (datagram, (self.host, self.port), (address[0], address[1]))
        self.network.log.append(item)
        self.network.queue.append(item)
        return True

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.host, self.port)

    def close(self) -> None:
        self.closed = True
        self.reading = False
        if self.network.sockets.get((self.host, self.port)) is self:
            del self.network.sockets[(self.host, self.port)]


class Recorder(DatagramProtocol):
    """
    Records what it receives and its lifecycle.
    """

    noisy = False

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.started = 0
        self.stopped = 0

    def startProtocol(self) -> None:
        self.started += 1

    def stopProtocol(self) -> None:
        self.stopped += 1

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append(datagram)


class Echo(Recorder):
    """
    Answers every datagram with it.
    """

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        Recorder.datagramReceived(self, datagram, addr)
        self.transport.write(datagram, addr)  # type: ignore[union-attr]


@implementer(IMigratable)
class Counter(Recorder):
    """
    A migratable server application: answers each datagram with how many
    it has had, and carries that count across hibernations and restarts.
    """

    def __init__(self) -> None:
        Recorder.__init__(self)
        self.count = 0
        self.restoredFrom: Optional[bytes] = None
        self.asleep: list[float] = []
        self.verdict: object = True

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        Recorder.datagramReceived(self, datagram, addr)
        self.count += 1
        self.transport.write(b"%d" % (self.count,), addr)  # type: ignore[union-attr]

    def saveMigrationState(self) -> bytes:
        return b"%d" % (self.count,)

    def restoreMigrationState(self, state: bytes) -> None:
        self.restoredFrom = state
        self.count = int(state)

    def validateResume(self, asleep: float, peer: Any) -> object:
        self.asleep.append(asleep)
        return self.verdict


class Observer:
    """
    Records upcalls.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        if name in (
            "sessionEstablished", "sessionSuspended", "sessionResumed", "peerMoved",
            "sessionEnded", "aboutToHibernate", "resumeRequested",
        ):
            return lambda *args: self.calls.append((name,) + args[1:])
        raise AttributeError(name)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == name]


class Setup:
    """
    A server and its clients on one clock and one in-memory network.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        protocol: type[Recorder] = Counter,
        store: Optional[Any] = None,
        **options: Any,
    ) -> None:
        options.setdefault("keepaliveInterval", 1.0)
        options.setdefault("suspendAfter", 5.0)
        options.setdefault("sessionTimeout", 100.0)
        options.setdefault("purgeInterval", 10.0)
        self.case = case
        self.clock = Clock()
        self.net = MemoryUDP(self.clock)
        self.net.install(case)
        self.options = SessionOptions(**options)
        self.store = store if store is not None else MemorySessionStore()
        self.protocol = protocol
        self.servers: list[Recorder] = []
        self.watch = Observer()
        self.clientWatch = Observer()
        self.port = self.listen()

    def build(self) -> Recorder:
        p = self.protocol()
        self.servers.append(p)
        return p

    def listen(self, **kw: Any) -> DatagramPort:
        kw.setdefault("store", self.store)
        kw.setdefault("policy", DefaultPolicy(self.options, rng=random.Random(1)))
        port = listenDatagram(
            self.clock, 7001, Factory.forProtocol(self.build), interface=SERVER_HOST,
            options=self.options, observers=[self.watch], **kw,
        )
        self.case.addCleanup(self.stop, port)
        return port

    def stop(self, port: DatagramPort) -> None:
        port.stopListening()
        self.net.deliver()

    def connect(self, **kw: Any) -> Recorder:
        client = Recorder()
        results: list[Any] = []
        kw.setdefault("policy", DefaultPolicy(self.options, rng=random.Random(2)))
        observers = [self.clientWatch] + list(kw.pop("observers", []))
        connectDatagram(
            self.clock, SERVER_HOST, 7001, client, options=self.options, monitor=None,
            observers=observers, **kw,
        ).addBoth(results.append)
        self.net.deliver()
        self.case.assertEqual(results, [client])
        self.case.addCleanup(self.closeClient, client)
        return client

    def closeClient(self, client: Recorder) -> None:
        if client.transport is not None:
            client.transport.loseConnection()
        self.net.run(0.1)

    def exchange(self, client: Recorder, payload: bytes = b"ping") -> bytes:
        """
        Send one datagram and return the server's answer.
        """
        count = len(client.received)
        client.transport.write(payload)  # type: ignore[union-attr]
        self.net.deliver()
        self.case.assertEqual(len(client.received), count + 1, "no answer")
        return client.received[-1]

    def resumeOnly(self, seconds: float = 10.0) -> None:
        """
        Lose the server's protected datagrams (the client's pings go
        unanswered) until it accepted a resume; then heal the network.
        """
        accepted: list[bool] = []

        def drop(d: bytes, src: Endpoint, dst: Endpoint) -> bool:
            if src[0] == SERVER_HOST and d[0] == _dgram.HANDSHAKE and d[9] == _wire.RESUME_ACCEPT:
                accepted.append(True)
            return src[0] == SERVER_HOST and d[0] == _dgram.PROTECTED and not accepted

        self.net.drop = drop
        end = self.clock.seconds() + seconds
        while not accepted and self.clock.seconds() < end:
            self.net.run(0.05)
        self.case.assertTrue(accepted, "no resume accepted")
        self.heal()
        self.net.run(0.5)

    def cut(self) -> None:
        self.net.drop = lambda d, s, t: True

    def heal(self) -> None:
        self.net.drop = lambda d, s, t: False

    @staticmethod
    def session(client: Recorder) -> Any:
        return client.transport._session  # type: ignore[union-attr]

    def serverSession(self, port: Optional[DatagramPort] = None) -> Any:
        [session] = (port or self.port).sessions.values()
        return session


def serverNonces(net: MemoryUDP, key: bytes) -> list[tuple[int, int]]:
    """
    The generation and packet number (the key and the nonce) of every
    protected packet the server sent.
    """
    out = []
    for datagram in net.sentBy(SERVER_HOST):
        sid = datagram[1:17]
        pn = int.from_bytes(datagram[17:25], "big")
        [generation] = [g for g in range(8) if _dgram.Opener(key, sid, g, False).check(datagram)]
        out.append((generation, pn))
    return out


class ResumeTests(SynchronousTestCase):
    """
    A client resumes with the stream handshake's RESUME proof.
    """

    def setUp(self) -> None:
        self.s = Setup(self, Counter)
        self.client = self.s.connect()
        self.assertEqual(self.s.exchange(self.client), b"1")

    def suspendThenResume(self) -> None:
        """
        The server's protected datagrams are lost (handshake ones are not)
        until the client's resume is accepted: its pings go unanswered, so
        the resume is what brings it back.
        """
        s = self.s
        session = s.session(self.client)
        s.net.drop = lambda d, src, dst: src[0] == SERVER_HOST and d[0] == _dgram.PROTECTED
        self.client.transport.write(b"lost answer")  # type: ignore[union-attr]
        s.resumeOnly()
        self.assertEqual(session.state, "attached")

    def test_resumeRekeys(self) -> None:
        """
        A suspended client whose pings go unanswered resumes: the server
        verifies its proof and accepts generation 1; both ends switch to
        the traffic keys of generation 1 (packet numbers from 0); a packet
        under the old keys is refused with nothing changed; the
        application's traffic goes on, and both ends hear the resume.
        """
        s = self.s
        client = s.session(self.client)
        server = s.serverSession()
        captured: list[bytes] = []
        realSend = client._send
        client._send = lambda d, *a: captured.append(d) or realSend(d, *a)
        self.client.transport.write(b"old keys")  # type: ignore[union-attr]
        client._send = realSend
        s.net.deliver()
        oldClientKey = client.conn._sealer._encrypt
        self.suspendThenResume()
        self.assertEqual((client.conn.generation, server.conn.generation), (1, 1))
        self.assertEqual(self.client.transport.generation, 1)  # type: ignore[union-attr]
        self.assertIsNot(client.conn._sealer._encrypt, oldClientKey)
        self.assertLess(server.conn._sealer.nextPN, 10)
        self.assertEqual(s.exchange(self.client), b"4")
        # A packet under the old keys changes nothing.
        before = (server.conn._opener.window.highest, server.conn._opener.window.bits, len(s.servers[0].received))
        dropped = server.conn.stats["dropped"]
        server.received(captured[-1], (CLIENT_HOST, client.host.port), None)
        self.assertEqual(
            (server.conn._opener.window.highest, server.conn._opener.window.bits, len(s.servers[0].received)),
            before,
        )
        self.assertEqual(server.conn.stats["dropped"], dropped + 1)
        self.assertEqual(len(s.clientWatch.named("sessionResumed")), 1)
        self.assertTrue(s.watch.named("resumeRequested"))
        self.assertEqual(len(s.servers[0].asleep), 1)

    def forge(self, key: bytes, generation: int) -> tuple[bytes, bytes]:
        """
        Run a resume handshake by hand against the server, from another
        address, with C{key} and C{generation}; return the last answer's
        frame type and body.
        """
        s = self.s
        sid = bytes.fromhex(self.client.transport.sessionID)  # type: ignore[union-attr]
        answers: list[bytes] = []
        attacker = s.net.socket(None, lambda d, a, l: answers.append(d), "10.0.0.9", 0)
        attacker.startReading()
        self.addCleanup(attacker.close)
        attempt = ClientResuming(s.clock.seconds(), 5.0, sid, key, generation)
        attacker.send(attempt.first(), (SERVER_HOST, 7001))
        s.net.deliver()
        reply = None
        try:
            reply = attempt.receive(answers[-1], s.clock.seconds())
        except Exception:
            raise AssertionError("the greeting did not come")
        assert reply is not None
        attacker.send(reply, (SERVER_HOST, 7001))
        s.net.deliver()
        _, frameType, body = _dgram.decodeHandshake(answers[-1])
        return bytes((frameType,)), body

    def serverState(self) -> Any:
        conn = self.s.serverSession().conn
        return (conn.generation, conn._sealer, conn._opener, conn.path.address, conn.resumes,
                conn._sealer.nextPN, self.s.serverSession().state)

    def test_staleGenerationRefused(self) -> None:
        """
        A resume with the right key but a generation not above the last
        accepted one is refused as stale, and nothing changes.
        """
        server = self.s.serverSession()
        key = server.conn.key
        before = self.serverState()
        frameType, body = self.forge(key, 0 + 1)
        self.assertEqual(frameType, bytes((_wire.RESUME_ACCEPT,)))
        # Generation 1 is now the last: 1 again is stale.
        before = self.serverState()
        frameType, body = self.forge(key, 1)
        self.assertEqual(frameType, bytes((_wire.REJECT,)))
        code, _, reason = _wire.decodeReject(body)
        self.assertEqual(code, _wire.REJECT_STALE)
        self.assertIn("stale generation", reason)
        self.assertEqual(self.serverState(), before)

    def test_badProofRefused(self) -> None:
        """
        A resume whose proof is not made with the session's key is refused
        (bad proof), and nothing changes: generation, keys, path, packet
        numbers; the session goes on.
        """
        before = self.serverState()
        frameType, body = self.forge(b"K" * 32, 5)
        self.assertEqual(frameType, bytes((_wire.REJECT,)))
        code, _, _ = _wire.decodeReject(body)
        self.assertEqual(code, _wire.REJECT_BAD_PROOF)
        self.assertEqual(self.serverState(), before)
        self.assertEqual(self.s.exchange(self.client), b"2")

    def test_refusedByApplication(self) -> None:
        """
        A migratable application that refuses the resume (validateResume)
        ends the session on both sides with L{SessionExpired}.
        """
        self.s.servers[0].verdict = False
        self.s.net.drop = lambda d, s, t: s[0] == SERVER_HOST and d[0] == _dgram.PROTECTED
        self.client.transport.write(b"x")  # type: ignore[union-attr]
        self.s.net.run(3.0)
        self.assertEqual((self.client.stopped, self.s.servers[0].stopped), (1, 1))
        for watch in (self.s.watch, self.s.clientWatch):
            [(_, reason)] = watch.named("sessionEnded")
            reason.trap(SessionExpired)
            self.assertIn("refused", reason.getErrorMessage())

    def test_unknownSessionEndsClient(self) -> None:
        """
        A server without a store that no longer knows the session (it
        restarted) refuses the resume: the client's session ends at once,
        not at its timeout, with L{SessionExpired}.
        """
        s = self.s
        # It crashed: its clients were not told.
        s.cut()
        s.port.store = None
        s.port.stopListening()
        s.net.deliver()
        s.heal()
        s.port = s.listen(store=None)
        self.client.transport.write(b"x")  # type: ignore[union-attr]
        s.net.run(5.0)
        self.assertEqual(self.client.stopped, 1)
        [(_, reason)] = s.clientWatch.named("sessionEnded")
        reason.trap(SessionExpired)
        self.assertIn("resume refused", reason.getErrorMessage())
        self.assertLess(s.clock.seconds(), 10)


class HibernationTests(SynchronousTestCase):
    """
    A server session suspended for C{suspendAfter} hibernates into the
    store and comes back.
    """

    def hibernate(self, protocol: type[Recorder] = Counter) -> tuple[Setup, Recorder, bytes]:
        s = Setup(self, protocol)
        client = s.connect()
        s.exchange(client)
        s.exchange(client)
        sid = bytes.fromhex(client.transport.sessionID)  # type: ignore[union-attr]
        self.serverSession = s.serverSession()
        s.cut()
        # Silent for 2 x keepaliveInterval: suspended; 5 s later, hibernated.
        s.net.run(6.5)
        self.assertIn(sid, s.port.sessions)
        s.net.run(1.0)
        self.assertNotIn(sid, s.port.sessions)
        self.assertIn(sid, s.port.hibernated)
        self.assertIn(sid, s.store.rows)
        return s, client, sid

    def test_checkpointed(self) -> None:
        """
        The checkpoint holds the key, the generation, the packet numbers
        and the application's state; the migratable application is let go
        of (it hears nothing), as are the session's timer and connection;
        observers heard C{aboutToHibernate}.
        """
        s, client, sid = self.hibernate()
        record = s.store.load(sid).result
        server = s.servers[0]
        self.assertEqual((record.side, record.generation, record.appState), ("server", 0, b"2"))
        from migrate._sansio.dgram_conn import decodeCheckpoint

        checkpoint = decodeCheckpoint(record.buffer)
        self.assertEqual(checkpoint.nextPN, len(serverNonces(s.net, record.key)))
        self.assertEqual((checkpoint.appSent, checkpoint.appReceived), (2, 2))
        self.assertEqual((server.stopped, len(s.watch.named("aboutToHibernate"))), (0, 1))
        # No timer of the server's session is left; the port keeps no
        # copy of the checkpoint once the store has it.
        self.assertEqual(
            [c for c in s.clock.getDelayedCalls() if getattr(c.func, "__self__", None) is self.serverSession],
            [],
        )
        self.assertTrue(self.serverSession.released)
        self.assertIsNone(s.port.hibernated[sid].record)
        self.assertIsNone(s.port.hibernated[sid].session)

    def test_authenticDatagramRestores(self) -> None:
        """
        The client's next datagram (a probe) is authentic: the checkpoint
        is taken out of the store, a new application is built and given its
        saved state, and the session goes on (under the same keys, its
        packet numbers above any used before: no nonce twice).
        """
        s, client, sid = self.hibernate()
        key = s.store.load(sid).result.key
        # Only protected datagrams pass: no resume.
        s.net.drop = lambda d, src, dst: d[0] == _dgram.HANDSHAKE
        s.net.run(2.0)
        self.assertEqual(s.store.rows, {})
        self.assertIn(sid, s.port.sessions)
        self.assertEqual(len(s.servers), 2)
        restored = s.servers[1]
        self.assertEqual((restored.restoredFrom, restored.started), (b"2", 0))
        self.assertEqual(s.exchange(client), b"3")
        self.assertEqual(s.session(client).state, "attached")
        nonces = serverNonces(s.net, key)
        self.assertEqual(len(nonces), len(set(nonces)))
        self.assertGreaterEqual(max(nonces), (0, _dgram.PN_MARGIN))
        self.assertEqual(s.serverSession().conn.generation, 0)
        self.assertEqual(len(s.clientWatch.named("sessionResumed")), 1)

    def test_forgedDatagramChangesNothing(self) -> None:
        """
        A datagram naming the hibernated session, under another key or
        replayed, does not bring it back: the checkpoint stays.
        """
        s, client, sid = self.hibernate()
        old = s.net.sentBy(CLIENT_HOST)[0]
        forged = _dgram.Sealer(b"K" * 32, sid, 0, True, nextPN=10**6).seal(_dgram.APP, b"evil")
        reads = []
        realLoad = s.store.load
        s.store.load = lambda sid: reads.append(sid) or realLoad(sid)  # type: ignore[method-assign]
        for datagram in (forged, old):
            s.clock.advance(1.0)
            s.port._received(datagram, ("10.0.0.9", 5000), None)
            s.net.deliver()
        self.assertIn(sid, s.store.rows)
        self.assertIn(sid, s.port.hibernated)
        self.assertEqual(len(s.servers), 1)
        self.assertEqual((s.port.unknown, len(reads)), (2, 2))
        # Right after a forgery, the store is not read again.
        s.port._received(forged, ("10.0.0.9", 5000), None)
        self.assertEqual((s.port.unknown, len(reads)), (3, 2))

    def test_resumeRestores(self) -> None:
        """
        A resume of a hibernated session restores it with the new
        generation's keys.
        """
        s, client, sid = self.hibernate()
        key = s.store.load(sid).result.key
        s.resumeOnly()
        self.assertEqual(s.store.rows, {})
        generation = s.serverSession().conn.generation
        self.assertGreaterEqual(generation, 1)
        self.assertEqual(s.session(client).conn.generation, generation)
        self.assertEqual(s.exchange(client), b"3")
        nonces = serverNonces(s.net, key)
        self.assertEqual(len(nonces), len(set(nonces)))

    def test_notMigratableKept(self) -> None:
        """
        An application that is not migratable stays in memory (its
        session's connection and timer go), and the same object goes on
        when its client comes back.
        """
        s, client, sid = self.hibernate(Echo)
        self.assertIs(s.port.hibernated[sid].session.protocol, s.servers[0])
        self.assertEqual(s.port.hibernated[sid].session.transport.state, "hibernated")
        self.assertIsNone(s.store.load(sid).result.appState)
        s.heal()
        s.net.run(2.0)
        self.assertEqual(len(s.servers), 1)
        self.assertEqual(s.exchange(client, b"again"), b"again")
        self.assertEqual(s.servers[0].stopped, 0)

    def test_expiresWhileHibernated(self) -> None:
        """
        Past its time, a hibernated session is purged: from the store, and
        an application kept in memory hears L{SessionExpired}.
        """
        s, client, sid = self.hibernate(Echo)
        s.net.run(100, step=1.0)
        self.assertEqual(s.store.rows, {})
        self.assertEqual(s.port.hibernated, {})
        [(_, reason)] = s.watch.named("sessionEnded")
        reason.trap(SessionExpired)
        self.assertEqual(s.servers[0].stopped, 1)


class RestartTests(SynchronousTestCase):
    """
    The server stops and starts again on the same store.
    """

    def test_restart(self) -> None:
        """
        Stopping checkpoints the migratable sessions (their clients are not
        told); the server started again on the store finds them, and the
        client's next datagram brings its session back, count and all, no
        packet number used twice.
        """
        s = Setup(self, Counter)
        client = s.connect()
        self.assertEqual(s.exchange(client), b"1")
        s.port.stopListening()
        s.net.deliver()
        self.assertEqual((s.servers[0].stopped, client.stopped), (0, 0))
        self.assertEqual(len(s.store.rows), 1)
        s.net.run(1.0)
        s.port = s.listen()
        key = list(s.store.rows.values())[0][2]
        s.net.run(4.0)
        self.assertEqual(s.store.rows, {})
        self.assertEqual(s.exchange(client), b"2")
        nonces = serverNonces(s.net, key)
        self.assertEqual(len(nonces), len(set(nonces)))

    def test_restartResume(self) -> None:
        """
        A server that cannot list its store at start (so it does not know
        the session by its packets) restores it when the client resumes.
        """

        class Unlisted(MemorySessionStore):
            def list(self, side: Optional[str] = None) -> Deferred[list[tuple[bytes, str, float, str]]]:
                d: Deferred[list[tuple[bytes, str, float, str]]] = Deferred()
                d.callback([])
                return d

        s = Setup(self, Counter, store=Unlisted())
        client = s.connect()
        self.assertEqual(s.exchange(client), b"1")
        s.port.stopListening()
        s.port = s.listen()
        s.resumeOnly()
        self.assertEqual(s.store.rows, {})
        self.assertGreaterEqual(s.serverSession().conn.generation, 1)
        self.assertEqual(s.exchange(client), b"2")

    def test_notMigratableEnds(self) -> None:
        """
        A session whose application is not migratable ends when the server
        stops, its client told.
        """
        s = Setup(self, Echo)
        client = s.connect()
        s.exchange(client)
        s.port.stopListening()
        s.net.deliver()
        self.assertEqual((s.servers[0].stopped, client.stopped), (1, 1))
        self.assertEqual(s.store.rows, {})
        [(_, reason)] = s.clientWatch.named("sessionEnded")
        reason.trap(ConnectionDone)
        self.assertIn("server shut down", reason.getErrorMessage())


class PublishTests(SynchronousTestCase):
    """
    A datagram server publishes its addresses to a locator, and tells its
    clients in-band.
    """

    def test_boundAddress(self) -> None:
        """
        Bound to one address, that is what is published, at once and
        every C{republishInterval}; nothing is left scheduled after stop.
        """
        s = Setup(self, Echo, republishInterval=30.0)
        locator = StaticLocator()
        s.port.stopListening()
        port = s.listen(store=None, locator=locator, publishName="srv.example")
        self.assertEqual(locator.published, [("srv.example", [SERVER_HOST])])
        s.clock.advance(30)
        self.assertEqual(len(locator.published), 2)
        port.stopListening()
        self.assertEqual(s.clock.getDelayedCalls(), [])

    def test_monitored(self) -> None:
        """
        Bound to every address, with a monitor: its addresses are
        published, a new one first when it appears; clients hear them
        in-band at once and after each change.
        """
        from migrate.interfaces import LocalAddress

        s = Setup(self, Echo)
        s.port.stopListening()
        monitor = FakeMonitor()
        monitor.local = [LocalAddress("eth0", SERVER_HOST, 4)]
        locator = StaticLocator()
        # The wildcard socket is at the server's host.
        s.net.clientHost = SERVER_HOST
        port = listenDatagram(
            s.clock, 7001, Factory.forProtocol(s.build), interface="",
            options=s.options, monitor=monitor, locator=locator, publishName="srv.example",
        )
        self.addCleanup(port.stopListening)
        self.assertEqual(locator.published, [("srv.example", [SERVER_HOST])])
        s.net.clientHost = CLIENT_HOST
        client = Recorder()
        connectDatagram(s.clock, SERVER_HOST, 7001, client, options=s.options, monitor=None)
        s.net.deliver()
        self.addCleanup(lambda: client.transport and client.transport.loseConnection())
        conn = s.session(client).conn
        self.assertEqual(conn._peerAdvertSeq, 1)
        monitor.local.append(LocalAddress("eth1", "192.0.2.7", 4))
        monitor.emit("address-added", "eth1", "192.0.2.7")
        s.net.deliver()
        self.assertEqual(locator.published[-1], ("srv.example", ["192.0.2.7", SERVER_HOST]))
        self.assertEqual(conn._peerAdvertSeq, 2)


class CapacityTests(SynchronousTestCase):
    """
    A port bounds its detached sessions (C{maxDetached}) and counts the
    sessions it brings back from the store against C{maxSessions}.
    """

    def connectOne(self, s: Setup) -> tuple[Recorder, Any, Endpoint]:
        """
        A client with one exchange done, its server session and its address.
        """
        client = s.connect()
        s.exchange(client)
        session = list(s.port.sessions.values())[-1]
        return client, session, session.conn.path.address

    def cutOff(self, s: Setup, *addresses: Endpoint) -> None:
        """
        Lose every datagram from or to C{addresses}.
        """
        lost = set(addresses)
        s.net.drop = lambda d, src, dst: src in lost or dst in lost

    def test_detachedEndWithoutStore(self) -> None:
        """
        Without a store, past C{maxDetached} the longest-suspended session
        ends with L{SessionExpired} "server at capacity"; the newer one
        stays, and resumes once heard again; attached ones are not counted.
        """
        s = Setup(self, Counter, maxDetached=1, suspendAfter=50.0)
        s.stop(s.port)
        s.port = s.listen(store=None)
        first, firstSession, firstAddress = self.connectOne(s)
        second, secondSession, secondAddress = self.connectOne(s)
        third, thirdSession, _ = self.connectOne(s)
        self.cutOff(s, firstAddress)
        s.net.run(3.0)
        self.assertEqual(firstSession.state, "detached")
        self.cutOff(s, firstAddress, secondAddress)
        s.net.run(3.0)
        self.assertEqual(firstSession.state, "closed")
        self.assertIsInstance(firstSession.endReason, SessionExpired)
        self.assertIn("server at capacity", str(firstSession.endReason))
        self.assertEqual(s.servers[0].stopped, 1)
        self.assertEqual((secondSession.state, thirdSession.state), ("detached", "attached"))
        self.assertEqual(set(s.port.sessions.values()), {secondSession, thirdSession})
        self.cutOff(s, firstAddress)
        s.net.run(3.0)
        self.assertEqual(secondSession.state, "attached")
        self.assertEqual(s.exchange(second), b"2")

    def test_detachedHibernateWithStore(self) -> None:
        """
        With a store, past C{maxDetached} the longest-suspended session
        hibernates at once (before C{suspendAfter}), and comes back when
        its client is heard again.
        """
        s = Setup(self, Counter, maxDetached=1, suspendAfter=50.0)
        first, firstSession, firstAddress = self.connectOne(s)
        second, secondSession, secondAddress = self.connectOne(s)
        sid = firstSession.conn.sessionID
        self.cutOff(s, firstAddress)
        s.net.run(3.0)
        self.assertIn(sid, s.port.sessions)
        self.cutOff(s, firstAddress, secondAddress)
        s.net.run(3.0)
        self.assertEqual(firstSession.state, "hibernated")
        self.assertNotIn(sid, s.port.sessions)
        self.assertIn(sid, s.store.rows)
        self.assertEqual(secondSession.state, "detached")
        self.assertEqual(len(s.watch.named("aboutToHibernate")), 1)
        s.heal()
        s.net.run(3.0)
        self.assertIn(sid, s.port.sessions)
        self.assertEqual(s.exchange(first), b"2")
        self.assertEqual(s.exchange(second), b"2")

    def test_restoreCountsAgainstMaxSessions(self) -> None:
        """
        A hibernated session is not brought back while the port holds
        C{maxSessions}: its datagrams are dropped and its resume refused as
        busy ("server at capacity"), nothing changed; once a session ends,
        it comes back.
        """
        s = Setup(self, Counter, maxSessions=1)
        first, firstSession, firstAddress = self.connectOne(s)
        sid = firstSession.conn.sessionID
        self.cutOff(s, firstAddress)
        s.net.run(8.0)
        self.assertIn(sid, s.port.hibernated)
        second, secondSession, _ = self.connectOne(s)
        s.heal()
        s.net.run(5.0)
        self.assertNotIn(sid, s.port.sessions)
        self.assertIn(sid, s.port.hibernated)
        self.assertIn(sid, s.store.rows)
        self.assertEqual(s.session(first).state, "detached")
        busy = [
            d for d, src, _ in s.net.log
            if src[0] == SERVER_HOST and d[0] == _dgram.HANDSHAKE and d[9] == _wire.REJECT
        ]
        self.assertTrue(busy)
        self.assertIn(b"server at capacity", busy[-1])
        second.transport.loseConnection()  # type: ignore[union-attr]
        s.net.run(5.0)
        self.assertIn(sid, s.port.sessions)
        self.assertEqual(s.session(first).state, "attached")
        self.assertEqual(s.exchange(first), b"2")
