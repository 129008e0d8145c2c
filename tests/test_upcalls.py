"""
Application upcalls and observers: what they hear, and where they decide.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from migrate import SessionExpired, SessionOptions
from migrate.interfaces import IMigrateUpcalls
from migrate.policy import DefaultPolicy

from .helpers import Pair, Recorder


class Log:
    """
    An observer that logs every upcall.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.resumeAnswer: Any = None
        self.attemptAnswer: Any = None
        self.policy: Any = None

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def sessionEstablished(self, session: Any) -> None:
        self.calls.append(("established", ()))

    def choosePolicy(self, session: Any) -> Any:
        self.calls.append(("choosePolicy", ()))
        return self.policy

    def sessionSuspended(self, session: Any, reason: str) -> None:
        self.calls.append(("suspended", (reason,)))

    def reconnectAttempt(self, session: Any, attempt: int, source: Any) -> Any:
        self.calls.append(("attempt", (attempt, source)))
        return self.attemptAnswer

    def resumeRequested(self, session: Any, previous: Any, new: Any, downtime: float) -> Any:
        self.calls.append(("resumeRequested", (previous, new, downtime)))
        return self.resumeAnswer

    def sessionResumed(self, session: Any, previous: Any, new: Any, downtime: float, resent: int) -> None:
        self.calls.append(("resumed", (previous, new, downtime, resent)))

    def addressesChanged(self, session: Any, event: Any) -> None:
        self.calls.append(("addresses", (event,)))

    def aboutToHibernate(self, session: Any) -> None:
        self.calls.append(("hibernate", ()))

    def sessionEnded(self, session: Any, reason: Any) -> None:
        self.calls.append(("ended", (reason,)))


@implementer(IMigrateUpcalls)
class UpcallApp(Recorder, Log):
    def __init__(self) -> None:
        Recorder.__init__(self)
        Log.__init__(self)


class UpcallTests(SynchronousTestCase):
    def test_lifecycle(self) -> None:
        """
        An application that provides L{IMigrateUpcalls} hears establishment,
        suspension with its reason, the resume with the old and new
        addresses, the downtime and the bytes retransmitted, and the end.
        """
        pair = Pair(clientProtocol=UpcallApp).open()
        app = pair.client
        self.assertEqual(app.names(), ["choosePolicy", "established"])
        pair.net.refuse = True
        pair.server.transport.write(b"x" * 100)
        pair.net.cutAll()
        self.assertEqual(app.calls[-2:], [("suspended", ("carrier-lost",)), ("attempt", (1, None))])
        pair.settle(seconds=2, step=0.1)
        pair.net.clientHost = "10.0.0.77"
        pair.net.refuse = False
        pair.settle(seconds=2, step=0.1)
        resumed = [args for name, args in app.calls if name == "resumed"]
        self.assertEqual(len(resumed), 1)
        previous, new, downtime, resent = resumed[0]
        self.assertEqual(new, pair.client.transport.getPeer())
        self.assertGreater(downtime, 1.9)
        self.assertIn("attempt", app.names())
        pair.client.transport.loseConnection()
        pair.settle(seconds=1)
        self.assertEqual(app.names()[-1], "ended")
        app.calls[-1][1][0].trap(ConnectionDone)

    def test_retransmittedCounted(self) -> None:
        """
        The bytes retransmitted by a resume are reported.
        """
        pair = Pair().open()
        log = Log()
        pair.serverSession.upcalls.observers.append(log)
        pair.server.transport.write(b"y" * 500)
        pair.net.cutAll()
        pair.settle()
        resumed = [args for name, args in log.calls if name == "resumed"]
        self.assertEqual(resumed[0][3], 500)

    def test_observers(self) -> None:
        """
        Observers added to an endpoint or factory hear every session.
        """
        pair = Pair()
        clientLog, serverLog = Log(), Log()
        pair.endpoint.addObserver(clientLog)
        pair.factory.addObserver(serverLog)
        pair.open()
        self.assertIn("established", clientLog.names())
        self.assertIn("established", serverLog.names())

    def test_raisingUpcall(self) -> None:
        """
        An upcall that raises is logged; the session goes on.
        """

        class Bad:
            def sessionSuspended(self, session: Any, reason: str) -> None:
                raise ZeroDivisionError()

        pair = Pair().open()
        pair.clientSession.upcalls.observers.append(Bad())
        pair.net.cutAll()
        pair.settle()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(pair.client.transport.state, "attached")

    def test_vetoResume(self) -> None:
        """
        A server application that refuses a resume ends the session on both
        sides with L{SessionExpired}.
        """
        pair = Pair(serverProtocol=UpcallApp).open()
        pair.server.resumeAnswer = False
        pair.net.cutAll()
        pair.settle(seconds=1)
        pair.server.lost[0].trap(SessionExpired)
        pair.client.lost[0].trap(SessionExpired)
        self.assertIn("refused", pair.client.lost[0].getErrorMessage())
        self.assertEqual(pair.clock.getDelayedCalls(), [])

    def test_delayResume(self) -> None:
        """
        A Deferred from C{resumeRequested} holds the resume until it fires.
        """
        pair = Pair(serverProtocol=UpcallApp).open()
        gate: Deferred[bool] = Deferred()
        pair.server.resumeAnswer = gate
        pair.client.transport.write(b"held")
        pair.net.cutAll()
        pair.settle(seconds=0.5)
        self.assertEqual(pair.client.transport.state, "detached")
        gate.callback(True)
        pair.settle()
        self.assertEqual(pair.client.transport.state, "attached")
        self.assertEqual(pair.server.received, b"held")

    def test_refusedByPolicy(self) -> None:
        """
        A server policy that refuses moves ends a session resumed from a
        new host.
        """
        pair = Pair(serverPolicy=DefaultPolicy(acceptMoves=False)).open()
        pair.net.clientHost = "10.0.0.99"
        pair.net.cutAll()
        pair.settle(seconds=1)
        pair.client.lost[0].trap(SessionExpired)

    def test_choosePolicy(self) -> None:
        """
        The policy an application chooses governs its session.
        """
        chosen = DefaultPolicy(SessionOptions(sessionTimeout=7))
        pair = Pair(clientProtocol=UpcallApp)
        original = pair.endpoint.connect

        def connect(factory: Any) -> Any:
            build = factory.buildProtocol

            def buildProtocol(addr: Any) -> Any:
                p = build(addr)
                p.policy = chosen
                return p

            factory.buildProtocol = buildProtocol
            return original(factory)

        pair.endpoint.connect = connect  # type: ignore[method-assign]
        pair.open()
        self.assertIs(pair.clientSession.policy, chosen)

    def test_skipAttempt(self) -> None:
        """
        C{reconnectAttempt} returning C{False} skips that attempt; a Deferred
        delays it.
        """
        pair = Pair(clientProtocol=UpcallApp).open()
        pair.client.attemptAnswer = False
        before = pair.net.connects
        pair.net.cutAll()
        pair.settle(seconds=0.5, step=0.05)
        self.assertEqual(pair.net.connects, before)
        gate: Deferred[bool] = Deferred()
        pair.client.attemptAnswer = gate
        pair.settle(seconds=2, step=0.05)
        self.assertEqual(pair.net.connects, before)
        gate.callback(True)
        pair.settle()
        self.assertEqual(pair.client.transport.state, "attached")
