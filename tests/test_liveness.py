"""
Path liveness and reactions to connectivity events, deterministically: a
silently dead path is found by heartbeats within the policy's bound; local
events make sessions drop dead carriers, probe doubtful ones and retry at
once.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from migrate import SessionOptions
from migrate.interfaces import ConnectivityEvent, LocalAddress
from migrate.testing import FakeMonitor

from .helpers import Echo, Pair


class Suspensions:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.resumed: list[tuple] = []

    def sessionSuspended(self, session: object, reason: str) -> None:
        self.reasons.append(reason)

    def sessionResumed(self, session, previous, new, downtime, retransmitted) -> None:  # type: ignore[no-untyped-def]
        self.resumed.append((previous, new, downtime, retransmitted))


class HeartbeatTests(SynchronousTestCase):
    def test_idleKeepalive(self) -> None:
        """
        An idle session costs one keepalive per C{keepaliveInterval} (25 s),
        sent by the client and answered by the server, which sends none of
        its own; it stays attached and has a round-trip estimate.
        """
        pair = Pair().open()
        pair.settle(seconds=101, step=0.5)
        # One per keepalive interval at most (the next interval counts from
        # the answer): at 25, 50.5 and 76 s.
        self.assertEqual(pair.clientSession._pingToken, 3)
        self.assertEqual(pair.serverSession._pingToken, 0)
        self.assertIsNotNone(pair.clientSession.srtt)
        self.assertEqual(pair.client.transport.generation, 0)
        self.assertEqual(pair.client.transport.state, "attached")

    def test_idleTimerOnly(self) -> None:
        """
        An idle session has one liveness timer, a keepalive interval away,
        not one every heartbeat interval.
        """
        pair = Pair().open()
        pair.settle(seconds=1, step=0.1)
        for session, limit in ((pair.clientSession, 25.0), (pair.serverSession, 50.0)):
            call = session._liveCall
            self.assertIsNotNone(call)
            self.assertGreater(call.getTime() - pair.clock.seconds(), limit - 2)

    def test_noHeartbeatsWhileDataFlows(self) -> None:
        """
        While data flows both ways, no heartbeat is sent.
        """
        pair = Pair(serverProtocol=Echo).open()
        for _ in range(50):
            pair.client.transport.write(b"tick")
            pair.settle(seconds=0.1, step=0.1)
        self.assertEqual(pair.clientSession._pingToken, 0)
        self.assertEqual(pair.serverSession._pingToken, 0)

    def _blackhole(self, pair: Pair) -> Suspensions:
        watcher = Suspensions()
        pair.clientSession.upcalls.observers.append(watcher)
        pair.net.refuse = True
        pair.net.links[0].blackholed = True
        return watcher

    def _detectedWithin(self, pair: Pair, limit: float) -> float:
        start = pair.clock.seconds()
        while pair.client.transport.state == "attached":
            pair.clock.advance(0.05)
            pair.net.flush()
            self.assertLess(pair.clock.seconds() - start, limit)
        return pair.clock.seconds() - start

    def test_silentDeathDetected(self) -> None:
        """
        A path that silently drops everything while data is outstanding is
        declared dead within C{deadAfter} plus one heartbeat interval; the
        session is suspended with reason "path-dead" and the client tries
        to reconnect.
        """
        pair = Pair(SessionOptions(deadAfter=2.0, heartbeatInterval=0.5)).open()
        pair.settle(seconds=1, step=0.05)
        watcher = self._blackhole(pair)
        pair.client.transport.write(b"into the void")
        self._detectedWithin(pair, 2.55)
        self.assertEqual(watcher.reasons, ["path-dead"])
        before = pair.net.connects
        pair.net.flush()
        self.assertGreater(pair.net.connects, before - 1)
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.05)
        self.assertEqual(pair.client.transport.state, "attached")
        self.assertEqual(len(watcher.resumed), 1)

    def test_writeAfterIdleCountsFromWrite(self) -> None:
        """
        A write after a long idle spell is watched from the moment it is
        made: the idle silence before it does not count against the path,
        and a dead path is still found within the silence limit.
        """
        pair = Pair().open()
        pair.settle(seconds=20, step=0.5)
        watcher = self._blackhole(pair)
        pair.client.transport.write(b"late")
        pair.settle(seconds=1.5, step=0.05)
        self.assertEqual(pair.client.transport.state, "attached")
        self._detectedWithin(pair, 1.05)
        self.assertEqual(watcher.reasons, ["path-dead"])

    def test_idleDeathFoundByKeepalive(self) -> None:
        """
        An idle session whose path dies silently learns of it from its
        next keepalive: within C{keepaliveInterval} plus the silence limit.
        """
        pair = Pair().open()
        pair.settle(seconds=1, step=0.1)
        watcher = self._blackhole(pair)
        took = self._detectedWithin(pair, 25 + 2.5)
        self.assertGreater(took, 20)
        self.assertEqual(watcher.reasons, ["path-dead"])

    def test_serverNoticesSilentClient(self) -> None:
        """
        A server whose idle client stopped keeping the carrier alive checks
        it after twice the keepalive interval and detaches within the
        silence limit after that.
        """
        pair = Pair().open()
        pair.settle(seconds=1, step=0.1)
        pair.net.refuse = True
        pair.net.links[0].blackholed = True
        # The client, which would find out first, is kept from reacting.
        pair.clientSession._stopLiveness()
        start = pair.clock.seconds()
        while pair.server.transport.state == "attached":
            pair.clock.advance(0.1)
            pair.net.flush()
            self.assertLess(pair.clock.seconds() - start, 50 + 2.6)
        self.assertGreater(pair.clock.seconds() - start, 49)

    def test_slowPathNotDeclaredDead(self) -> None:
        """
        The silence limit grows with a slow path's round-trip time.
        """
        pair = Pair().open()
        session = pair.clientSession
        session.srtt, session.rttvar = 1.0, 0.25
        self.assertEqual(session.policy.silenceLimit(session.srtt, session.rttvar), 6.0)

    def test_pausedReaderNotJudged(self) -> None:
        """
        A session whose application paused reading does not declare its
        path dead (it cannot hear the answers) but keeps sending heartbeats,
        so its peer does not either.
        """
        pair = Pair().open()
        pair.client.transport.pauseProducing()
        pair.settle(seconds=10, step=0.1)
        self.assertEqual(pair.client.transport.state, "attached")
        self.assertEqual(pair.server.transport.state, "attached")
        self.assertEqual(pair.clientSession.generation, 0)


class ConnectivityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.monitor = FakeMonitor()
        self.pair = Pair(monitor=self.monitor).open()
        self.watcher = Suspensions()
        self.pair.clientSession.upcalls.observers.append(self.watcher)

    def test_monitorLease(self) -> None:
        """
        The endpoint's monitor is started for the first session and stopped
        when the last one ends.
        """
        self.assertTrue(self.monitor.started)
        self.pair.client.transport.loseConnection()
        self.pair.settle(seconds=1)
        self.assertFalse(self.monitor.started)
        self.assertEqual(self.monitor.listeners, [])

    def test_addressGone(self) -> None:
        """
        When the carrier's local address disappears, the carrier is dropped
        at once and the client resumes from the new address at once.
        """
        pair = self.pair
        pair.net.clientHost = "10.0.9.9"
        self.monitor.emit(ConnectivityEvent.ADDRESS_REMOVED, "wlan0", "10.0.0.2")
        self.assertEqual(self.watcher.reasons, ["address-gone"])
        pair.net.flush()
        self.assertEqual(pair.client.transport.generation, 1)
        self.assertEqual(pair.server.transport.getPeer().host, "10.0.9.9")

    def test_otherAddressGoneIgnored(self) -> None:
        """
        An address that is not the carrier's going away only probes the
        path, which answers: nothing is dropped.
        """
        self.monitor.emit(ConnectivityEvent.ADDRESS_REMOVED, "eth1", "192.0.2.7")
        self.pair.settle(seconds=2, step=0.05)
        self.assertEqual(self.watcher.reasons, [])
        self.assertEqual(self.pair.client.transport.generation, 0)

    def test_linkDown(self) -> None:
        """
        The carrier's link going down drops the carrier at once.
        """
        self.monitor.interfaces["10.0.0.2"] = "wlan0"
        self.monitor.emit(ConnectivityEvent.LINK_DOWN, "eth9")
        self.assertEqual(self.watcher.reasons, [])
        self.monitor.emit(ConnectivityEvent.LINK_DOWN, "wlan0")
        self.assertEqual(self.watcher.reasons, ["link-down"])

    def test_probeDeadPath(self) -> None:
        """
        An event that does not name the carrier (a new address, a route
        change, a wake) probes it: a dead path is dropped within the probe
        timeout, long before the silence limit.
        """
        pair = self.pair
        pair.net.links[0].blackholed = True
        self.monitor.emit(ConnectivityEvent.ROUTE_CHANGED, "eth0")
        pair.settle(seconds=1.05, step=0.05)
        self.assertEqual(self.watcher.reasons, ["path-dead"])

    def test_eventWhileDetachedRetriesNow(self) -> None:
        """
        A detached session waiting out its backoff tries again at once when
        connectivity changes.
        """
        pair = self.pair
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(seconds=3, step=0.1)
        pair.net.refuse = False
        before = pair.net.connects
        self.monitor.emit(ConnectivityEvent.ROUTE_CHANGED, "eth0")
        self.assertEqual(pair.net.connects, before + 1)
        pair.net.flush()
        self.assertEqual(pair.client.transport.state, "attached")

    def test_longDetachmentSlowsDown(self) -> None:
        """
        A detached client retries fast (at most C{reconnectMax} apart) for
        the first C{reconnectSlowAfter} (30 s), then only every 7.5-15 s
        (C{reconnectSlowInterval} with jitter): 90 more seconds cost at most
        12 attempts, not 90; a connectivity event still makes an attempt
        at once, and a path that simply comes back is found on the next
        slow attempt.  Default options.
        """
        pair = self.pair
        options = pair.options
        pair.net.refuse = True
        pair.net.cutAll()
        start = pair.net.connects
        pair.settle(seconds=options.reconnectSlowAfter, step=0.1)
        fast = pair.net.connects - start
        self.assertGreaterEqual(fast, options.reconnectSlowAfter / options.reconnectMax - 2)
        pair.settle(seconds=90, step=0.5)
        slow = pair.net.connects - start - fast
        self.assertLessEqual(slow, 90 / (options.reconnectSlowInterval * 0.5))
        self.assertGreaterEqual(slow, 90 / options.reconnectSlowInterval - 1)
        before = pair.net.connects
        self.monitor.emit(ConnectivityEvent.ROUTE_CHANGED, "eth0")
        self.assertEqual(pair.net.connects, before + 1)
        pair.net.refuse = False
        pair.settle(seconds=options.reconnectSlowInterval + 0.5, step=0.5)
        self.assertEqual(pair.client.transport.state, "attached")

    def test_eventAbandonsStuckAttempt(self) -> None:
        """
        An attempt stuck on a dead route (no answer) is abandoned for a new
        one when connectivity changes.
        """
        pair = self.pair
        pair.net.hold = True
        pair.net.cutAll()
        pair.net.flush()
        self.assertIsNotNone(pair.clientSession)
        pair.net.hold = False
        before = pair.net.connects
        self.monitor.emit(ConnectivityEvent.ADDRESS_ADDED, "eth0", "10.0.0.3")
        self.assertEqual(pair.net.connects, before + 1)
        pair.net.flush()
        self.assertEqual(pair.client.transport.state, "attached")


class SourceTests(SynchronousTestCase):
    def test_preferredSourceUsed(self) -> None:
        """
        The policy's choice of local address reaches the inner endpoint of
        each reconnect attempt.
        """
        monitor = FakeMonitor()
        monitor.local = [LocalAddress("wlan0", "10.0.0.2", 4), LocalAddress("eth0", "10.0.5.5", 4)]
        chosen = []
        holder: list[Pair] = []
        pair = Pair(
            SessionOptions(prefer="eth0"),
            monitor=monitor,
            endpointFor=lambda source: (chosen.append(source), holder[0].net.clientEndpoint())[1],
        )
        holder.append(pair)
        pair.open()
        self.assertEqual(chosen, ["10.0.5.5"])
        pair.net.cutAll()
        pair.net.flush()
        self.assertEqual(chosen, ["10.0.5.5", "10.0.5.5"])


class PureLivenessTests(SynchronousTestCase):
    """
    L{migrate._sansio.liveness.Liveness} alone: times and marks in,
    decisions out, no reactor.
    """

    HEARTBEAT, IDLE, SILENCE = 0.5, 25.0, 2.0

    def tick(self, live: Any, now: float, mark: object, waiting: bool = True, paused: bool = False) -> object:
        return live.liveTick(now, mark, waiting, paused, self.HEARTBEAT, self.IDLE, self.SILENCE)

    def setUp(self) -> None:
        from migrate._sansio.liveness import Liveness

        self.live = Liveness()
        self.live.liveStart(0.0, "m0")

    def test_idleCarrierLooksAtKeepalive(self) -> None:
        """
        Nothing waited for: the timer is set for the keepalive, which then
        pings once and counts the silence anew.
        """
        from migrate._sansio.liveness import PING

        self.assertEqual(self.live.liveDelay(0.0, False, self.HEARTBEAT, self.IDLE), self.IDLE)
        self.assertEqual(self.tick(self.live, 25.0, "m0", waiting=False), PING)
        self.assertEqual(self.live.liveSilence(25.0), 0.0)

    def test_waitingPingsThenDeclaresDead(self) -> None:
        """
        While waiting: a heartbeat after a heartbeat interval of silence,
        the path dead after the silence limit; any progress resets it.
        """
        from migrate._sansio.liveness import DEAD, PING

        live = self.live
        self.assertEqual(live.liveDelay(0.0, True, self.HEARTBEAT, self.IDLE), self.HEARTBEAT)
        self.assertEqual(self.tick(live, 0.5, "m0"), PING)
        live.livePinged(0.5)
        self.assertEqual(self.tick(live, 1.0, "m0"), PING)
        # Something arrived (the mark changed): silence counts from now.
        self.assertIsNone(self.tick(live, 1.2, "m1"))
        self.assertEqual(self.tick(live, 3.2, "m1"), DEAD)

    def test_pausedReaderOnlyPings(self) -> None:
        """
        A paused reader cannot judge the path: it keeps the peer informed,
        never declares it dead.
        """
        from migrate._sansio.liveness import PING

        live = self.live
        live.liveDelay(0.0, True, self.HEARTBEAT, self.IDLE)
        for t in (0.5, 5.0, 50.0):
            self.assertEqual(self.tick(live, t, "m0", paused=True), PING)

    def test_rttFromLatestAnswer(self) -> None:
        """
        Only the answer to the latest heartbeat times the round trip; RTT
        is smoothed as TCP does; an answer to a token never sent is
        ignored.
        """
        live = self.live
        first = live.livePinged(1.0)
        second = live.livePinged(2.0)
        live.livePong(first, 2.1)
        self.assertIsNone(live.srtt)
        live.livePong(second + 5, 2.2)
        self.assertIsNone(live.srtt)
        live.livePinged(3.0)
        live.livePong(second + 1, 3.2)
        self.assertAlmostEqual(live.srtt or 0, 0.2)
        self.assertAlmostEqual(live.rttvar or 0, 0.1)
        token = live.livePinged(4.0)
        live.livePong(token, 4.6)
        self.assertAlmostEqual(live.srtt or 0, 0.875 * 0.2 + 0.125 * 0.6)

    def test_watchRestartsSilenceOnce(self) -> None:
        """
        Starting to wait on an idle carrier counts the silence from then
        (the timer is to be set again); while already watching, nothing
        changes.
        """
        live = self.live
        live.liveDelay(0.0, False, self.HEARTBEAT, self.IDLE)
        self.assertTrue(live.liveWatch(10.0, "m0"))
        self.assertEqual(live.liveSilence(10.0), 0.0)
        live.liveDelay(10.0, True, self.HEARTBEAT, self.IDLE)
        self.assertFalse(live.liveWatch(11.0, "m0"))
        self.assertEqual(live.liveSilence(11.0), 1.0)
