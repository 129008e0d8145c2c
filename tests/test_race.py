"""
Happy-eyeballs racing of candidate endpoints.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from migrate._race import RacingEndpoint


class Fake:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.d: Deferred[Any] = Deferred(lambda d: log.append("cancel " + name))

    def connect(self, factory: Any) -> Deferred[Any]:
        self.log.append("start " + self.name)
        return self.d


class RaceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.log: list[str] = []
        self.a, self.b, self.c = (Fake(n, self.log) for n in "abc")
        self.race = RacingEndpoint(self.clock, [self.a, self.b, self.c], stagger=0.05)

    def test_firstWinsAlone(self) -> None:
        """
        A candidate that connects before the stagger is the only one tried.
        """
        d = self.race.connect(Factory.forProtocol(Protocol))
        p = Protocol()
        self.a.d.callback(p)
        self.assertIs(self.successResultOf(d), p)
        self.clock.advance(1)
        self.assertEqual(self.log, ["start a"])

    def test_staggeredWinnerThenStop(self) -> None:
        """
        A slow first candidate does not hold up the next, started a stagger
        later; the first to connect wins, no further candidate starts, and
        the others go on until the race is stopped.
        """
        race = RacingEndpoint(self.clock, [self.a, self.b, self.c, Fake("d", self.log)], stagger=0.05)
        d = race.connect(Factory.forProtocol(Protocol))
        self.clock.advance(0.05)
        self.clock.advance(0.05)
        self.assertEqual(self.log, ["start a", "start b", "start c"])
        p = Protocol()
        self.b.d.callback(p)
        self.assertIs(self.successResultOf(d), p)
        self.clock.advance(1)
        self.assertEqual(self.log, ["start a", "start b", "start c"])
        self.c.d.callback(Protocol())  # a reserve connection: no effect here
        race.stop()
        self.assertEqual(self.log[3:], ["cancel a"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failureStartsNextAtOnce(self) -> None:
        """
        A candidate that fails makes the next start at once.
        """
        d = self.race.connect(Factory.forProtocol(Protocol))
        self.a.d.errback(ConnectionRefusedError())
        self.assertEqual(self.log, ["start a", "start b"])
        self.b.d.errback(ConnectionRefusedError())
        self.c.d.errback(ConnectionRefusedError())
        self.failureResultOf(d, ConnectionRefusedError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling the race cancels every attempt and the stagger timer.
        """
        d = self.race.connect(Factory.forProtocol(Protocol))
        self.clock.advance(0.05)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(sorted(self.log), ["cancel a", "cancel b", "start a", "start b"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noCandidates(self) -> None:
        """
        A race needs a candidate.
        """
        self.assertRaises(ValueError, RacingEndpoint, self.clock, [])


class SearchOnTests(SynchronousTestCase):
    def test_startNextAfterFailedWinner(self) -> None:
        """
        When the winner turns out useless, C{startNext} starts the next
        candidate; when all are used up, C{onExhausted} is called.
        """
        clock = Clock()
        log: list[str] = []
        a, b = Fake("a", log), Fake("b", log)
        race = RacingEndpoint(clock, [a, b], stagger=0.05)
        exhausted: list[bool] = []
        race.onExhausted = lambda: exhausted.append(True)
        d = race.connect(Factory.forProtocol(Protocol))
        a.d.callback(Protocol())
        self.successResultOf(d)
        self.assertTrue(race.more())
        race.startNext()
        self.assertEqual(log, ["start a", "start b"])
        b.d.errback(ConnectionRefusedError())
        self.assertEqual(exhausted, [True])
        self.assertFalse(race.more())
        self.assertEqual(clock.getDelayedCalls(), [])
