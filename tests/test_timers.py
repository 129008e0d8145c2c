"""
Many sessions' timers on one reactor timer (L{migrate._timers}).
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from migrate._timers import TimerSet

from .helpers import Pair


class TimerSetTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.timers = TimerSet(self.clock, slack=0.25)
        self.fired: list[Any] = []

    def test_firesOnTimeWithArguments(self) -> None:
        """
        A near timer fires when due (not before), with its arguments, once.
        """
        t = self.timers.callLater(0.5, lambda *a, **k: self.fired.append((a, k)), 1, x=2)
        self.clock.advance(0.49)
        self.assertEqual(self.fired, [])
        self.assertTrue(t.active())
        self.clock.advance(0.01)
        self.assertEqual(self.fired, [((1,), {"x": 2})])
        self.assertFalse(t.active())
        self.assertRaises(AlreadyCalled, t.cancel)
        self.clock.advance(10)
        self.assertEqual(len(self.fired), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        A cancelled timer never fires; cancelling twice raises, as for
        Twisted's own delayed calls; once none is left, nothing is scheduled
        on the clock.
        """
        t = self.timers.callLater(1, self.fired.append, "x")
        t.cancel()
        self.assertFalse(t.active())
        self.assertRaises(AlreadyCancelled, t.cancel)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(2)
        self.assertEqual(self.fired, [])

    def test_resetAndDelay(self) -> None:
        """
        C{reset} and C{delay} move a timer, later or earlier.
        """
        t = self.timers.callLater(1, self.fired.append, "x")
        t.reset(3)
        self.assertEqual(t.getTime(), 3)
        self.clock.advance(2.9)
        self.assertEqual(self.fired, [])
        t.delay(-1)
        self.clock.advance(0)
        self.assertEqual(self.fired, ["x"])

    def test_oneReactorCall(self) -> None:
        """
        However many timers are pending, the clock holds one call.
        """
        for i in range(1000):
            self.timers.callLater(random.uniform(0, 100), self.fired.append, i)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.timers.getDelayedCalls()), 1000)
        self.clock.pump([1] * 101)
        self.assertEqual(sorted(self.fired), list(range(1000)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_farTimersShareWakeups(self) -> None:
        """
        Timers due far away (more than four slack periods) are rounded up to
        the next multiple of the slack: 1,000 of them spread over 10 s wake
        the process at most 41 times, each no more than the slack late.
        """
        rng = random.Random(1)
        late: list[float] = []
        wakeups = []
        real = self.timers._fire

        def fire() -> None:
            wakeups.append(self.clock.seconds())
            real()

        self.timers._fire = fire  # type: ignore[method-assign]
        for i in range(1000):
            due = rng.uniform(10, 20)
            self.timers.callLater(due, lambda due=due: late.append(self.clock.seconds() - due))
        while self.clock.getDelayedCalls():
            self.clock.advance(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds())
        self.assertEqual(len(late), 1000)
        self.assertLessEqual(len(wakeups), 41)
        self.assertGreaterEqual(min(late), 0)
        self.assertLessEqual(max(late), 0.25 + 1e-9)

    def test_setDuringRoundWaits(self) -> None:
        """
        A timer set by a callback, even with no delay, fires in the next
        round, not within the one that set it (a callback that re-arms
        itself cannot loop forever within one reactor turn).
        """
        rounds: list[float] = []
        perWakeup: list[int] = []
        real = self.timers._fire

        def fire() -> None:
            before = len(rounds)
            real()
            perWakeup.append(len(rounds) - before)

        self.timers._fire = fire  # type: ignore[method-assign]

        def again() -> None:
            rounds.append(self.clock.seconds())
            if len(rounds) < 3:
                self.timers.callLater(0, again)

        self.timers.callLater(1, again)
        # (Twisted's Clock runs the calls made due by a call within the same
        # advance; a reactor runs them in its next turn.)
        self.clock.advance(1)
        self.assertEqual(len(rounds), 3)
        self.assertEqual(perWakeup, [1, 1, 1])

    def test_cancelledByEarlierInRound(self) -> None:
        """
        A timer cancelled (or moved) by another one due in the same round
        does not fire.
        """
        second = self.timers.callLater(1, self.fired.append, "second")
        third = self.timers.callLater(1, self.fired.append, "third")

        def first() -> None:
            self.fired.append("first")
            second.cancel()
            third.reset(5)

        self.timers.callLater(0.5, first)
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.fired, ["first"])
        # (Moved at 0.5 to 5 s from then.)
        self.clock.advance(4.4)
        self.assertEqual(self.fired, ["first"])
        self.clock.advance(0.2)
        self.assertEqual(self.fired, ["first", "third"])

    def test_raisingCallbackLogged(self) -> None:
        """
        A callback that raises is logged; the others of its round run.
        """
        self.timers.callLater(1, lambda: 1 / 0)
        self.timers.callLater(1, self.fired.append, "after")
        self.clock.advance(1)
        self.assertEqual(self.fired, ["after"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_compaction(self) -> None:
        """
        Timers moved and cancelled over and over do not grow the heap
        without bound.
        """
        keep = [self.timers.callLater(100, self.fired.append, i) for i in range(10)]
        for i in range(10000):
            self.timers.callLater(50, self.fired.append, "x").cancel()
            keep[i % 10].reset(100 + i / 1000)
        self.assertLess(len(self.timers._heap), 200)
        self.clock.advance(200)
        self.assertEqual(sorted(self.fired), list(range(10)))


class SharedBySessionsTests(SynchronousTestCase):
    def test_idleSessionsShareOneTimer(self) -> None:
        """
        200 idle sessions (a server's and a client endpoint's) hold one
        reactor call per side between them, not one each; their keepalives
        still go out.
        """
        pair = Pair()
        for i in range(200):
            pair.servers.clear()
            pair.clock.advance(0.01)
            pair.open()
        pair.settle(1, 0.1)
        calls = pair.clock.getDelayedCalls()
        self.assertLessEqual(len(calls), 2, calls)
        sessions = list(pair.factory.sessions.values())
        self.assertEqual(len(sessions), 200)
        heard = [s._heard for s in sessions]
        pair.settle(30, 1.0)
        self.assertTrue(all(s._heard > h for s, h in zip(sessions, heard)))
