# -*- test-case-name: tests.test_timers -*-
"""
Many sessions' timers on one reactor timer.

Every attached session has a liveness deadline (a keepalive due, a heartbeat
unanswered).  Rather than one reactor C{DelayedCall} each, a server's (or a
client endpoint's) sessions share one L{TimerSet}: a heap of light timers
and a single reactor call, armed for the earliest of them.  Deadlines far
away (an idle carrier's keepalive, seconds off) are rounded up to whole
slots of L{TimerSet.slack} seconds, so that thousands of them wake the
process once per slot, not once each; near ones fire on time.
"""

from __future__ import annotations

import heapq
import math
from itertools import count
from typing import Any, Callable, Optional

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer


@implementer(IDelayedCall)
class Timer:
    """
    One timer of a L{TimerSet}: an L{IDelayedCall}.

    @ivar time: when it is due.
    """

    __slots__ = ("time", "_owner", "_func", "_args", "_kw", "_state", "_seq")

    def __init__(
        self, owner: TimerSet, time: float, func: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]
    ) -> None:
        self._owner = owner
        self.time = time
        self._func = func
        self._args = args
        self._kw = kw
        # 0 pending, 1 called, 2 cancelled.
        self._state = 0
        self._seq = 0

    def getTime(self) -> float:
        return self.time

    def active(self) -> bool:
        return self._state == 0

    def cancel(self) -> None:
        if self._state == 1:
            raise AlreadyCalled()
        if self._state == 2:
            raise AlreadyCancelled()
        self._state = 2
        self._owner._dropped(self)

    def reset(self, secondsFromNow: float) -> None:
        self._moveTo(self._owner.seconds() + secondsFromNow)

    def delay(self, secondsLater: float) -> None:
        self._moveTo(self.time + secondsLater)

    def _moveTo(self, when: float) -> None:
        if self._state == 1:
            raise AlreadyCalled()
        if self._state == 2:
            raise AlreadyCancelled()
        self._owner._move(self, when)

    def __repr__(self) -> str:
        return "<Timer %s at %.3f%s>" % (
            getattr(self._func, "__qualname__", self._func),
            self.time,
            "" if self._state == 0 else (" called" if self._state == 1 else " cancelled"),
        )


@implementer(IReactorTime)
class TimerSet:
    """
    Timers for many sessions over one reactor call: an L{IReactorTime}
    whose C{callLater} gives light L{Timer}s.

    @ivar slack: timers due more than C{4 * slack} seconds from now fire up
        to C{slack} seconds late (the next multiple of C{slack}), so that
        far deadlines share wakeups; nearer ones fire on time.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, slack: float = 0.25) -> None:
        self._clock = clock
        self.slack = slack
        self._heap: list[tuple[float, int, int, Timer]] = []
        self._live = 0
        self._dead = 0
        self._seq = count()
        self._call: Optional[IDelayedCall] = None
        self._armedFor = math.inf
        self._firing = False

    # IReactorTime

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Timer:
        timer = Timer(self, 0.0, callable, args, kw)
        self._live += 1
        now = self._clock.seconds()
        self._push(timer, now + delay if delay > 0 else now, now)
        return timer

    def getDelayedCalls(self) -> list[Timer]:
        return [entry[3] for entry in self._heap if entry[3]._state == 0 and entry[2] == entry[3]._seq]

    # Bookkeeping

    def _push(self, timer: Timer, when: float, now: Optional[float] = None) -> None:
        if now is None:
            now = self._clock.seconds()
        slack = self.slack
        due = when
        if slack > 0 and when - now > 4 * slack:
            due = math.ceil(when / slack) * slack
        timer.time = when
        timer._seq = seq = next(self._seq)
        heapq.heappush(self._heap, (due, seq, seq, timer))
        if not self._firing and due < self._armedFor:
            self._arm(due)

    def _move(self, timer: Timer, when: float) -> None:
        # The old entry stays in the heap, dead (its sequence number no
        # longer the timer's).
        self._dead += 1
        self._push(timer, when)
        self._compact()

    def _dropped(self, timer: Timer) -> None:
        self._live -= 1
        self._dead += 1
        if not self._live:
            self._heap.clear()
            self._dead = 0
            self._disarm()
            return
        self._compact()

    def _compact(self) -> None:
        if self._dead > 64 and self._dead > self._live:
            self._heap = [e for e in self._heap if e[3]._state == 0 and e[2] == e[3]._seq]
            heapq.heapify(self._heap)
            self._dead = 0

    def _arm(self, due: float) -> None:
        self._disarm()
        self._armedFor = due
        self._call = self._clock.callLater(max(0.0, due - self.seconds()), self._fire)

    def _disarm(self) -> None:
        call, self._call = self._call, None
        self._armedFor = math.inf
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._call = None
        self._armedFor = math.inf
        now = self.seconds()
        heap = self._heap
        due: list[tuple[int, Timer]] = []
        while heap and heap[0][0] <= now:
            _, _, seq, timer = heapq.heappop(heap)
            if timer._state != 0 or seq != timer._seq:
                self._dead -= 1
            else:
                due.append((seq, timer))
        # Timers set by these callbacks wait for the next round, as on the
        # reactor.
        self._firing = True
        try:
            for seq, timer in due:
                if timer._state != 0 or seq != timer._seq:
                    # Cancelled or moved by an earlier one of this round.
                    continue
                timer._state = 1
                self._live -= 1
                try:
                    timer._func(*timer._args, **timer._kw)
                except BaseException:
                    self.log.failure("timer {timer} raised", timer=timer)
        finally:
            self._firing = False
        while heap and (heap[0][3]._state != 0 or heap[0][2] != heap[0][3]._seq):
            heapq.heappop(heap)
            self._dead -= 1
        if heap:
            self._arm(heap[0][0])
        elif not self._live:
            self._dead = 0
