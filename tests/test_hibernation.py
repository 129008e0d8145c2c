"""
Hibernation, deterministically: detached sessions checkpointed into a store
and their resources released; resumed transparently, with data in flight
both ways; migratable applications dropped and rebuilt; contextual
validation; memory pressure; expiry; corrupt entries; management.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from migrate.testing import sessionOf
from migrate import SessionExpired, SessionOptions
from migrate._client import AttemptLimiter
from migrate.interfaces import IMigratable
from migrate.store import MemorySessionStore

from .helpers import Pair, Recorder


@implementer(IMigratable)
class Counter(Recorder):
    """
    A migratable server application: numbers every chunk it receives and
    remembers how many it saw.
    """

    built: list["Counter"] = []
    verdict: Any = True

    def __init__(self) -> None:
        Recorder.__init__(self)
        self.count = 0
        self.restored: bytes | None = None
        self.asked: list[tuple[float, Any]] = []
        Counter.built.append(self)

    def dataReceived(self, data: bytes) -> None:
        Recorder.dataReceived(self, data)
        self.count += 1

    def saveMigrationState(self) -> bytes:
        return json.dumps({"count": self.count, "received": self.received.decode("latin-1")}).encode()

    def restoreMigrationState(self, state: bytes) -> None:
        self.restored = state
        saved = json.loads(state)
        self.count = saved["count"]
        self.chunks = [saved["received"].encode("latin-1")]

    def validateResume(self, asleep: float, peer: Any) -> Any:
        self.asked.append((asleep, peer))
        return Counter.verdict


def hibernatingPair(serverProtocol: Any = Counter, **options: Any) -> tuple[Pair, MemorySessionStore]:
    Counter.built = []
    Counter.verdict = True
    store = MemorySessionStore()
    settings: dict[str, Any] = dict(suspendAfter=10, sessionTimeout=600, purgeInterval=30)
    settings.update(options)
    opts = SessionOptions(**settings)
    pair = Pair(opts, serverProtocol=serverProtocol)
    pair.factory.store = store
    pair.factory.startFactory()
    pair.open()
    return pair, store


def detach(pair: Pair) -> None:
    pair.net.refuse = True
    pair.net.cutAll()
    pair.settle()


class HibernationTests(SynchronousTestCase):
    def test_inFlightBothWays(self) -> None:
        """
        Bytes in flight both ways when the carrier dies survive the server's
        hibernation (buffer and positions in the store, the application
        rebuilt from its state) and arrive exactly once.
        """
        pair, store = hibernatingPair()
        pair.client.transport.write(b"early ")
        pair.settle()
        pair.client.transport.write(b"c" * 3000)
        pair.server.transport.write(b"s" * 4000)
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=11, step=0.5)
        sid = bytes.fromhex(pair.client.transport.sessionID)
        self.assertIn(sid, store.rows)
        self.assertNotIn(sid, pair.factory.sessions)
        self.assertEqual(len(Counter.built), 1)
        pair.client.transport.write(b"later")
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        self.assertEqual(len(Counter.built), 2)
        restored = Counter.built[1]
        self.assertIsNotNone(restored.restored)
        self.assertEqual(restored.received, b"early " + b"c" * 3000 + b"later")
        self.assertEqual(pair.client.received, b"s" * 4000)
        self.assertEqual(restored.made, 0)
        self.assertEqual(Counter.built[0].lost, [])
        self.assertNotIn(sid, store.rows)
        self.assertEqual(pair.client.transport.state, "attached")
        restored.transport.write(b"from the restored app")
        pair.settle()
        self.assertEqual(pair.client.received, b"s" * 4000 + b"from the restored app")

    def test_resourcesReleased(self) -> None:
        """
        A hibernated migratable session leaves nothing in memory but its
        checkpoint on the way to the store: no session object, no timer.
        """
        pair, store = hibernatingPair()
        detach(pair)
        pair.settle(seconds=11, step=0.5)
        self.assertEqual(pair.factory.sessions, {})
        self.assertEqual(pair.factory._saving, {})
        server = [c for c in pair.clock.getDelayedCalls() if "Session" in repr(c.func) and c.func.__self__.isClient is False]  # type: ignore[attr-defined]
        self.assertEqual(server, [])

    def test_validationRefuses(self) -> None:
        """
        An application that refuses a resume after its sleep ends the
        session on both sides.
        """
        pair, store = hibernatingPair()
        detach(pair)
        pair.settle(seconds=11, step=0.5)
        Counter.verdict = False
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        pair.client.lost[0].trap(SessionExpired)
        self.assertEqual(len(Counter.built[1].asked), 1)
        asleep, peer = Counter.built[1].asked[0]
        self.assertGreater(asleep, 10)
        self.assertEqual(peer.host, "10.0.0.2")
        Counter.built[1].lost[0].trap(SessionExpired)

    def test_notMigratableKeepsApp(self) -> None:
        """
        An application that is not migratable stays in memory, but the
        session's buffer goes to the store; writes it makes meanwhile are
        kept; the resume delivers everything.
        """
        pair, store = hibernatingPair(serverProtocol=Recorder)
        pair.server.transport.write(b"before ")
        detach(pair)
        pair.settle(seconds=11, step=0.5)
        session = pair.serverSession
        self.assertTrue(session.hibernated)
        self.assertEqual(session.engine.unacknowledgedBytes(), b"")
        pair.server.transport.write(b"during")
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        self.assertEqual(pair.client.received, b"before during")
        self.assertFalse(session.hibernated)

    def test_memoryPressure(self) -> None:
        """
        Past C{maxDetached} detached sessions, the longest-detached ones
        hibernate at once.
        """
        Counter.built = []
        store = MemorySessionStore()
        pair = Pair(SessionOptions(suspendAfter=1000, maxDetached=2), serverProtocol=Counter)
        pair.factory.store = store
        for _ in range(4):
            pair.servers.clear()
            pair.open()
        pair.net.refuse = True
        for link in list(pair.net.links):
            link.cut()
            pair.net.flush()
        self.assertEqual(len(store.rows), 2)
        self.assertEqual(len(pair.factory.sessions), 2)

    def test_expiryPurged(self) -> None:
        """
        A hibernated session past its expiry is purged from the store; a
        late resume finds nothing and the client hears L{SessionExpired}.
        """
        pair, store = hibernatingPair(sessionTimeout=60)
        sessionOf(pair.client).setPolicy(
            sessionOf(pair.client).policy.__class__(SessionOptions(sessionTimeout=600))
        )
        detach(pair)
        pair.settle(seconds=11, step=0.5)
        self.assertEqual(len(store.rows), 1)
        pair.clock.advance(120)
        self.assertEqual(store.rows, {})
        pair.net.refuse = False
        # (Detached for over reconnectSlowAfter: the client tries about
        # every reconnectSlowInterval.)
        pair.settle(seconds=SessionOptions().reconnectSlowInterval + 1, step=0.05)
        pair.client.lost[0].trap(SessionExpired)

    def test_corruptEntry(self) -> None:
        """
        A corrupted entry is reported clearly (with its session id) and its
        session ends; another hibernated session resumes normally.
        """
        Counter.built = []
        store = MemorySessionStore()
        pair = Pair(SessionOptions(suspendAfter=5), serverProtocol=Counter)
        pair.factory.store = store
        pair.open()
        first = pair.client
        pair.servers.clear()
        pair.open()
        second = pair.client
        detach(pair)
        pair.settle(seconds=6, step=0.5)
        self.assertEqual(len(store.rows), 2)
        bad = bytes.fromhex(first.transport.sessionID)
        row = list(store.rows[bad])
        row[3] = row[3] + b"x"  # the buffer, truncated/extended on disk
        store.rows[bad] = tuple(row)  # type: ignore[assignment]
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        first.lost[0].trap(SessionExpired)
        self.assertEqual(second.transport.state, "attached")
        errors = [e for e in self.flushLoggedErrors()]
        self.assertEqual(errors, [])
        self.assertNotIn(bad, store.rows)

    def test_management(self) -> None:
        """
        Sessions can be listed (live and hibernated) and expired.
        """
        Counter.built = []
        store = MemorySessionStore()
        pair = Pair(SessionOptions(suspendAfter=5), serverProtocol=Counter)
        pair.factory.store = store
        pair.open()
        live = pair.client
        liveServer = pair.server
        pair.servers.clear()
        pair.open()
        sleeper = pair.client
        pair.net.refuse = True
        pair.net.links[-1].cut()
        pair.settle(seconds=6, step=0.5)
        listed = self.successResultOf(pair.factory.listSessions())
        byId = {s["id"]: s for s in listed}
        self.assertFalse(byId[live.transport.sessionID]["hibernated"])
        self.assertTrue(byId[sleeper.transport.sessionID]["hibernated"])
        self.assertTrue(self.successResultOf(pair.factory.expireSession(bytes.fromhex(sleeper.transport.sessionID))))
        self.assertEqual(store.rows, {})
        self.assertTrue(self.successResultOf(pair.factory.expireSession(bytes.fromhex(live.transport.sessionID))))
        pair.settle()
        liveServer.lost[0].trap(SessionExpired)
        self.assertFalse(self.successResultOf(pair.factory.expireSession(b"x" * 16)))


class LimiterTests(SynchronousTestCase):
    def test_bounded(self) -> None:
        """
        No more than the limit run at once; the rest start in order as
        slots free up; a cancelled waiter is skipped.
        """
        limiter = AttemptLimiter(2)
        started: list[int] = []
        cancels = [limiter.acquire(lambda i=i: started.append(i)) for i in range(5)]
        self.assertEqual(started, [0, 1])
        cancels[2]()
        limiter.release()
        self.assertEqual(started, [0, 1, 3])
        limiter.release()
        self.assertEqual(started, [0, 1, 3, 4])
        self.assertEqual(limiter.active, 2)

    def test_storm(self) -> None:
        """
        Fifty sessions cut at once all resume through an endpoint that lets
        three attempts run at a time.
        """
        pair = Pair(SessionOptions(maxConcurrentResumes=3))
        clients = []
        for _ in range(50):
            pair.servers.clear()
            clients.append(pair.open().client)
        pair.net.cutAll()
        self.assertLessEqual(pair.endpoint.limiter.active, 3)
        pair.settle(seconds=1)
        self.assertEqual({c.transport.generation for c in clients}, {1})
        self.assertEqual(pair.endpoint.limiter.active, 0)


class ClientPersistenceTests(SynchronousTestCase):
    def test_suspendAndResumeInNewProcess(self) -> None:
        """
        A client endpoint puts its migratable sessions into its store; a new
        endpoint (as in a new process) on the same store resumes them, with
        the application's state and every byte in flight both ways.
        """
        from migrate import MigrateClientEndpoint

        Counter.built = []
        store = MemorySessionStore()
        pair = Pair(clientProtocol=Counter)
        pair.endpoint.store = store
        pair.open()
        pair.server.transport.write(b"one")
        pair.settle()
        pair.client.transport.write(b"in flight up")
        pair.server.transport.write(b" in flight down")
        stored = self.successResultOf(pair.endpoint.suspendAll())
        self.assertEqual(stored, 1)
        self.assertEqual(len(store.rows), 1)
        pair.settle(seconds=2)
        self.assertEqual(pair.server.transport.state, "detached")
        old = pair.client
        self.assertEqual(old.lost, [])

        fresh = MigrateClientEndpoint(pair.clock, pair.net.clientEndpoint(), monitor=None, store=store)
        restored = self.successResultOf(fresh.resumeStored(Factory.forProtocol(Counter)))
        pair.settle(seconds=1)
        self.assertEqual(len(restored), 1)
        app = restored[0]
        self.assertIsNot(app, old)
        self.assertEqual(json.loads(app.restored)["count"], old.count)
        self.assertEqual(app.count, old.count + 1)
        self.assertEqual(app.transport.state, "attached")
        self.assertEqual(pair.server.received, b"in flight up")
        self.assertEqual(app.received, b"one in flight down")
        self.assertEqual(store.rows, {})
        app.transport.write(b"!")
        pair.settle()
        self.assertEqual(pair.server.received, b"in flight up!")


class PolicyKeptTests(SynchronousTestCase):
    def test_policyRestored(self) -> None:
        """
        A session's own default policy (e.g. one chosen by its application)
        is stored with it and restored with it.
        """
        from migrate.policy import DefaultPolicy
        from migrate.store import decodeRecord, encodeRecord

        pair, store = hibernatingPair()
        session = pair.serverSession
        session.setPolicy(DefaultPolicy(SessionOptions(sessionTimeout=1234), prefer=["eth0"], acceptMoves=False))
        record = session.checkpoint(b"{}")
        back = decodeRecord(*encodeRecord(record))
        from migrate._session import Session
        from migrate._upcalls import Upcalls

        restored = Session.fromRecord(pair.clock, back, SessionOptions(), None, Upcalls([]))
        self.assertEqual(restored.policy.expireAfter(), 1234)
        self.assertEqual(restored.policy.prefer, ("eth0",))
        self.assertFalse(restored.policy.acceptMoves)
        restored._end(SessionExpired("done"))


class LongAbsenceTests(SynchronousTestCase):
    """
    C{twistd migrate}'s defaults keep a session through a long absence at
    next to no cost.
    """

    def test_eightHoursAway(self) -> None:
        """
        With C{twistd migrate}'s defaults (a day's C{sessionTimeout}, a
        store, everything else the library's), a session whose client is
        away for 8 hours hibernates after C{suspendAfter} (its buffers go to
        the store: the server holds nothing for it in memory), and resumes
        when the client comes back, with what each side wrote meanwhile.
        The application (not migratable, like a forwarder's) stays.
        """
        from migrate.tap import TWISTD_DEFAULTS

        options = SessionOptions(**TWISTD_DEFAULTS)  # type: ignore[arg-type]
        pair = Pair(options)
        store = MemorySessionStore()
        pair.factory.store = store
        pair.factory.startFactory()
        pair.open()
        sid = bytes.fromhex(pair.client.transport.sessionID)
        pair.server.transport.write(b"s" * 100000)
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(options.suspendAfter + 1, 1.0)
        self.assertIn(sid, store.rows)
        session = pair.factory.sessions[sid]
        self.assertTrue(session.hibernated)
        # Its buffer is in the store, not in memory.
        self.assertEqual(session.engine.unacknowledgedBytes(), b"")
        self.assertEqual(pair.factory.held(), 0)
        self.assertEqual(pair.factory.sessions[sid].carrier, None)
        pair.client.transport.write(b"written while away")
        pair.settle(8 * 3600, 60.0)
        self.assertEqual(pair.client.lost, [])
        self.assertEqual(pair.server.lost, [])
        pair.net.refuse = False
        # Away that long, the client tries about every
        # reconnectSlowInterval (a connectivity event would try at once).
        pair.settle(options.reconnectSlowInterval + 1, 0.05)
        self.assertEqual(pair.client.transport.state, "attached")
        self.assertEqual(pair.server.received, b"written while away")
        self.assertEqual(pair.client.received, b"s" * 100000)
        self.assertEqual(pair.client.lost, [])
        self.assertNotIn(sid, store.rows)


class ChannelHibernationTests(SynchronousTestCase):
    """
    A session's channels hibernate and come back with it.
    """

    def openChannel(self, pair: Pair) -> Any:
        results: list[Any] = []
        pair.client.transport.openChannel(Factory.forProtocol(Recorder)).addBoth(results.append)
        pair.settle()
        return results[0]

    def test_channelsHibernateTogether(self) -> None:
        """
        A server session with two channels, bytes in flight on each both
        ways, hibernates into the store whole (every protocol migratable:
        all dropped from memory) and is rebuilt at the resume: each
        channel's protocol from its state, each stream exactly once.
        """
        pair, store = hibernatingPair()
        one, two = self.openChannel(pair), self.openChannel(pair)
        self.assertEqual(len(Counter.built), 3)
        one.transport.write(b"one early ")
        two.transport.write(b"two early ")
        pair.settle()
        one.transport.write(b"1" * 3000)
        Counter.built[2].transport.write(b"2" * 5000)
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=11, step=0.5)
        sid = bytes.fromhex(pair.client.transport.sessionID)
        self.assertIn(sid, store.rows)
        self.assertNotIn(sid, pair.factory.sessions)
        two.transport.write(b"two later")
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        self.assertEqual(len(Counter.built), 6)
        restored = {c.transport.channel: c for c in Counter.built[3:]}
        self.assertEqual(sorted(restored), [0, 1, 3])
        self.assertEqual(restored[1].received, b"one early " + b"1" * 3000)
        self.assertEqual(restored[3].received, b"two early two later")
        self.assertEqual(two.received, b"2" * 5000)
        self.assertTrue(all(c.made == 0 for c in restored.values()))
        self.assertEqual(one.lost, [])
        self.assertEqual(two.lost, [])
        restored[1].transport.write(b"back on one")
        pair.settle()
        self.assertEqual(one.received, b"back on one")
        self.assertEqual(one.transport.handoffs, 1)

    def test_unmigratableChannelKeepsApps(self) -> None:
        """
        A channel whose protocol cannot be saved keeps the session's
        protocols in memory (its buffers still go to the store) and the
        session resumes with every channel.
        """
        pair, store = hibernatingPair()
        # (The factory's mapping is given to sessions as they open.)
        pair.serverSession.channelFactories = {"": Factory.forProtocol(Recorder)}
        one = self.openChannel(pair)
        one.transport.write(b"abc")
        pair.settle()
        serverSide = pair.serverSession.channels.sessions()[0].app
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=11, step=0.5)
        sid = bytes.fromhex(pair.client.transport.sessionID)
        self.assertIn(sid, store.rows)
        self.assertIn(sid, pair.factory.sessions)
        one.transport.write(b"def")
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        self.assertEqual(serverSide.received, b"abcdef")
        self.assertEqual(len(Counter.built), 1)

    def test_storedChannelsChecked(self) -> None:
        """
        A stored record whose channels are impossible is refused as
        corrupt.
        """
        from migrate.interfaces import CorruptRecord, SessionRecord
        from migrate.store import decodeRecord, encodeRecord

        base = dict(
            sessionID=b"s" * 16, side="server", key=b"k" * 32, generation=1, sent=0, acked=0,
            received=0, finSent=False, finReceived=False, buffer=b"", peer="1.2.3.4:5",
            host="1.2.3.4:6", createdAt=0.0, detachedSince=0.0, hibernatedAt=0.0, expiresAt=1.0,
        )
        good = {"channel": 1, "name": "", "sent": 3, "acked": 0, "received": 0, "finSent": False,
                "finReceived": False, "handoffs": 0, "buffer": "YWJj", "appState": None}
        record = SessionRecord(channels={"next": 3, "list": [good]}, **base)  # type: ignore[arg-type]
        self.assertEqual(decodeRecord(*encodeRecord(record)).channels, record.channels)
        for broken in (
            dict(good, buffer="YWI="),
            dict(good, channel=0),
            dict(good, name="x" * 201),
            dict(good, acked=9),
        ):
            bad = SessionRecord(channels={"next": 3, "list": [broken]}, **base)  # type: ignore[arg-type]
            self.assertRaises(CorruptRecord, decodeRecord, *encodeRecord(bad))
