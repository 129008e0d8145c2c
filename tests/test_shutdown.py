"""
Stopping a server: draining for rolling restarts, ending sessions with a
notice their clients hear at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory
from twisted.trial.unittest import SynchronousTestCase

from .helpers import Pair


class DrainTests(SynchronousTestCase):
    """
    L{MigrateServerFactory.drain} stops new sessions and waits for the
    existing ones, which go on (resuming as usual), up to a bound.
    """

    def connect(self, pair: Pair) -> list[Any]:
        results: list[Any] = []
        pair.servers.clear()
        pair.endpoint.connect(Factory.forProtocol(pair.clientProtocol)).addBoth(results.append)
        pair.net.flush()
        return results

    def test_drainWaitsForSessions(self) -> None:
        """
        While draining, an opening is refused as busy ("server draining")
        and its client gives up after C{connectTimeout} with that reason; a
        live session resumes after a cut and carries data; the drain ends
        when the last session has.
        """
        pair = Pair()
        pair.open()
        client, server = pair.client, pair.server
        drained: list[Any] = []
        pair.factory.drain(600).addCallback(drained.append)
        self.assertEqual(drained, [])
        results = self.connect(pair)
        self.assertEqual(results, [])
        pair.settle(pair.options.connectTimeout + 1, 0.1)
        self.assertEqual(len(results), 1)
        self.assertIn("server draining: no new sessions", results[0].getErrorMessage())
        self.assertEqual(pair.servers, [])
        # The live session goes on through a cut.
        pair.net.cutAll()
        client.transport.write(b"still here")
        pair.settle(2, 0.05)
        self.assertEqual(server.received, b"still here")
        self.assertEqual(drained, [])
        client.transport.loseConnection()
        pair.settle(1, 0.05)
        self.assertEqual(drained, [None])
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_drainBounded(self) -> None:
        """
        A session that does not end within the bound does not hold the
        drain: it fires at the timeout, and L{endSessions} then ends the
        session with its notice, told to the client.
        """
        pair = Pair()
        pair.open()
        drained: list[Any] = []
        pair.factory.drain(30).addCallback(drained.append)
        pair.settle(29, 1)
        self.assertEqual(drained, [])
        pair.settle(2, 1)
        self.assertEqual(drained, [None])
        pair.factory.endSessions()
        pair.net.flush()
        self.assertEqual(len(pair.client.lost), 1)
        self.assertIn("server shut down", pair.client.lost[0].getErrorMessage())

    def test_drainWithoutSessions(self) -> None:
        """
        With no session, the drain is over at once.
        """
        pair = Pair()
        drained: list[Any] = []
        pair.factory.drain(30).addCallback(drained.append)
        self.assertEqual(drained, [None])


class ReconnectLogTests(SynchronousTestCase):
    """
    An outage is logged in summary, not a line per attempt.
    """

    def test_attemptsSummarised(self) -> None:
        """
        A client that keeps failing to reconnect for 80 s logs (at info
        level and above) the first failure, then a summary every 30 s or
        so (at the first failure after 30 s) with the number of attempts
        and the last error, then the resume: four lines, whatever the
        number of attempts.
        """
        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level", LogLevel.info) >= LogLevel.info:
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        pair = Pair()
        pair.open()
        del events[:]
        pair.net.refuse = True
        pair.net.cutAll()
        pair.settle(80, 0.05)
        connector = pair.clientSession.onCarrierLost.__self__
        self.assertGreater(connector.attempts, 30)
        pair.net.refuse = False
        pair.settle(pair.options.reconnectSlowInterval + 1, 0.05)
        client = [
            formatEvent(e)
            for e in events
            if "session %s" % (pair.client.transport.sessionID,) in formatEvent(e)
            and e.get("log_namespace", "").startswith("migrate._client")
        ]
        self.assertEqual(len(client), 4, client)
        self.assertIn("reconnecting: ", client[0])
        self.assertRegex(client[1], r"still trying: \d+ attempts in (3\d|4[0-5]) s, last error: .*refused")
        self.assertRegex(client[2], r"still trying: \d+ attempts in (3\d|4[0-5]) s, last error: .*refused")
        self.assertIn("resumed", client[3])
