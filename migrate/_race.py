# -*- test-case-name: tests.test_race -*-
"""
Happy-eyeballs connection racing over several candidate endpoints.

L{RacingEndpoint} starts the first candidate at once and each next one a
short stagger later (or at once when the one before it failed); the first
connection made wins and every other attempt is cancelled (or, if it
connected too, closed by its owner).  The session handshake then runs on
the winner; a candidate that connects but fails the handshake costs one
round, after which all candidates race again.
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

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        endpoints = self.endpoints
        pending: dict[int, Deferred[Any]] = {}
        failures: list[Failure] = []
        state = {"next": 0, "done": False}
        timer: list[Optional[IDelayedCall]] = [None]

        def stop() -> None:
            state["done"] = True
            if timer[0] is not None and timer[0].active():
                timer[0].cancel()
            timer[0] = None
            for d in list(pending.values()):
                d.cancel()
            pending.clear()

        result: Deferred[IProtocol] = Deferred(lambda d: stop())

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
            if state["next"] < len(endpoints) and not state["done"] and timer[0] is None:
                timer[0] = self.clock.callLater(self.stagger, startNext)

        def won(protocol: IProtocol, i: int) -> None:
            pending.pop(i, None)
            if state["done"]:
                transport = getattr(protocol, "transport", None)
                if transport is not None:
                    transport.abortConnection()
                return
            stop()
            result.callback(protocol)

        def lost(failure: Failure, i: int) -> None:
            pending.pop(i, None)
            if state["done"]:
                return
            failures.append(failure)
            if state["next"] < len(endpoints):
                # Do not wait for the stagger: the next one starts now.
                if timer[0] is not None and timer[0].active():
                    timer[0].cancel()
                startNext()
            elif not pending:
                state["done"] = True
                result.errback(failures[-1])

        startNext()
        return result
