# -*- test-case-name: tests.test_race -*-
"""
Happy-eyeballs connection racing over several candidate endpoints.

L{RacingEndpoint} starts the first candidate at once and each next one a
short stagger later (or at once when the one before it failed); its
Deferred fires with the first connection made, and no further candidate is
started.  Attempts already under way go on until L{RacingEndpoint.stop}:
the Migrate client keeps connections that arrive meanwhile in reserve, so
that if the first one's authenticated resume fails, the next one's resume
is tried at once; the first authenticated resume wins and everything else
is stopped.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class RacingEndpoint:
    """
    Connect through whichever of C{endpoints} connects first.

    @ivar stagger: seconds between the starts of successive candidates.
    """

    def __init__(
        self, clock: IReactorTime, endpoints: Sequence[IStreamClientEndpoint], stagger: float = 0.05
    ) -> None:
        if not endpoints:
            raise ValueError("no candidate endpoints")
        self.clock = clock
        self.endpoints = list(endpoints)
        self.stagger = stagger
        self._stop: Any = lambda: None
        self._next: Any = lambda: None
        self._more: Any = lambda: False
        self.onExhausted: Any = None

    def stop(self) -> None:
        """
        Cancel every attempt still under way, and start no more.
        """
        self._stop()

    def startNext(self) -> None:
        """
        The connection that won did not do (its handshake failed): start the
        next candidate now, if one is left.  When none is left and nothing
        is under way, C{onExhausted} is called.
        """
        self._next()

    def more(self) -> bool:
        """
        Whether a candidate is left to start or still under way.
        """
        return bool(self._more())

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        endpoints = self.endpoints
        pending: dict[int, Deferred[Any]] = {}
        failures: list[Failure] = []
        # next: the next candidate to start; won: a connection is in use
        # (start no more); done: the race is over.
        state = {"next": 0, "won": False, "done": False}
        timer: list[Optional[IDelayedCall]] = [None]

        def cancelTimer() -> None:
            if timer[0] is not None and timer[0].active():
                timer[0].cancel()
            timer[0] = None

        def stop() -> None:
            state["done"] = True
            cancelTimer()
            for d in list(pending.values()):
                d.cancel()
            pending.clear()

        def exhausted() -> None:
            state["done"] = True
            cancelTimer()
            if self.onExhausted is not None:
                self.onExhausted()

        def startNext() -> None:
            timer[0] = None
            if state["done"] or state["next"] >= len(endpoints):
                return
            i = state["next"]
            state["next"] += 1
            try:
                d = endpoints[i].connect(factory)
            except Exception:
                d = Deferred()
                d.errback(Failure())
            pending[i] = d
            d.addCallbacks(won, lost, callbackArgs=(i,), errbackArgs=(i,))
            if (
                state["next"] < len(endpoints)
                and not state["done"]
                and not state["won"]
                and timer[0] is None
            ):
                timer[0] = self.clock.callLater(self.stagger, startNext)

        def searchOn() -> None:
            if state["done"]:
                return
            state["won"] = False
            if state["next"] < len(endpoints):
                cancelTimer()
                startNext()
            elif not pending:
                exhausted()

        def won(protocol: IProtocol, i: int) -> None:
            pending.pop(i, None)
            if state["done"]:
                transport = getattr(protocol, "transport", None)
                if transport is not None:
                    transport.abortConnection()
                return
            if state["won"]:
                # A reserve connection: its owner already has it.
                return
            state["won"] = True
            cancelTimer()
            if not result.called:
                result.callback(protocol)

        def lost(failure: Failure, i: int) -> None:
            pending.pop(i, None)
            if state["done"]:
                return
            if not result.called:
                failures.append(failure)
                if state["next"] < len(endpoints):
                    # Do not wait for the stagger: the next one starts now.
                    cancelTimer()
                    startNext()
                elif not pending:
                    state["done"] = True
                    result.errback(failures[-1])
            elif not state["won"]:
                searchOn()

        self._stop = stop
        self._next = searchOn
        self._more = lambda: not state["done"] and (
            bool(pending) or state["next"] < len(endpoints)
        )
        result: Deferred[IProtocol] = Deferred(lambda d: stop())
        startNext()
        return result
