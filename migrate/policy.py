# -*- test-case-name: tests.test_policy -*-
"""
The default L{IMigratePolicy}.

L{DefaultPolicy} takes its numbers from L{SessionOptions} (so endpoint
strings and C{twistd migrate} options set them) and adds the choices that
are not numbers: which local addresses to prefer or avoid, and whether a
resume may come from a new peer address.  Subclass it, or write any other
L{IMigratePolicy} provider, to decide differently; see
C{examples/custom_policy.py}.
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any, Optional, Sequence

from twisted.internet.interfaces import IAddress
from zope.interface import implementer

from ._options import SessionOptions
from .interfaces import ILocator, IMigratePolicy, LocalAddress

__all__ = ["DefaultPolicy"]


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@implementer(IMigratePolicy)
class DefaultPolicy:
    """
    Reconnect at once, then with exponential backoff and jitter; declare a
    silent path dead after C{options.deadAfter} seconds (or three
    retransmission timeouts on a slow path); prefer and avoid local
    addresses by interface name or address.

    @ivar options: where the numbers come from.
    @ivar prefer: interface names or addresses, most preferred first.
    @ivar avoid: interface names or addresses used only when nothing else is.
    @ivar acceptMoves: whether a resume may come from a new peer host.
    """

    def __init__(
        self,
        options: Optional[SessionOptions] = None,
        prefer: Optional[Sequence[str]] = None,
        avoid: Optional[Sequence[str]] = None,
        acceptMoves: Optional[bool] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.options = options if options is not None else SessionOptions()
        self.prefer = tuple(prefer) if prefer is not None else _names(self.options.prefer)
        self.avoid = tuple(avoid) if avoid is not None else _names(self.options.avoid)
        self.acceptMoves = (
            acceptMoves if acceptMoves is not None else self.options.acceptMoves == "yes"
        )
        self.rng = rng if rng is not None else random.Random()

    def reconnectDelay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        o = self.options
        delay = min(o.reconnectMax, o.reconnectInitial * 2 ** min(failures - 1, 30))
        return delay * self.rng.uniform(0.5, 1.0)

    def slowRetryInterval(self, detachedFor: float) -> Optional[float]:
        o = self.options
        if detachedFor < o.reconnectSlowAfter:
            return None
        return o.reconnectSlowInterval * self.rng.uniform(0.5, 1.0)

    def attemptTimeout(self, srtt: Optional[float]) -> float:
        limit = self.options.connectTimeout
        if srtt is None:
            return limit
        # A handshake takes about three round trips after the connection.
        return min(limit, max(1.0, 8 * srtt))

    def heartbeatInterval(self) -> float:
        return self.options.heartbeatInterval

    def keepaliveInterval(self) -> float:
        return self.options.keepaliveInterval

    def silenceLimit(self, srtt: Optional[float], rttvar: Optional[float]) -> float:
        bound = self.options.deadAfter
        if srtt is None:
            return bound
        return max(bound, 3 * (srtt + 4 * (rttvar or 0.0)))

    def probeTimeout(self, srtt: Optional[float], rttvar: Optional[float]) -> float:
        if srtt is None:
            return min(1.0, self.options.deadAfter)
        return min(self.options.deadAfter, max(0.2, 3 * (srtt + 4 * (rttvar or 0.0))))

    def suspendAfter(self) -> Optional[float]:
        return self.options.suspendAfter

    def expireAfter(self) -> float:
        return self.options.sessionTimeout

    def bufferLimits(self) -> tuple[int, int]:
        return self.options.highWater, self.options.hardCap

    def _position(self, names: tuple[str, ...], candidate: LocalAddress) -> Optional[int]:
        for i, name in enumerate(names):
            if name in (candidate.interface, candidate.address):
                return i
        return None

    def chooseSource(self, candidates: Sequence[LocalAddress]) -> Optional[str]:
        """
        The most preferred usable address that is not avoided; failing
        that, any address not avoided when some are; else the system's
        choice (C{None}).  Avoided addresses are never chosen: when only
        they are up, the system's choice lets the connection go out anyway.
        """
        usable = [c for c in candidates if self._position(self.avoid, c) is None]
        ranked = sorted(
            (p, i, c)
            for i, c in enumerate(usable)
            for p in [self._position(self.prefer, c)]
            if p is not None
        )
        if ranked:
            return ranked[0][2].address
        if usable and len(usable) < len(candidates):
            return usable[0].address
        return None

    def settings(self) -> dict[str, Any]:
        """
        This policy's settings as plain data (for a session checkpoint).
        """
        return {
            "options": {f.name: getattr(self.options, f.name) for f in fields(self.options)},
            "prefer": list(self.prefer),
            "avoid": list(self.avoid),
            "acceptMoves": self.acceptMoves,
        }

    @classmethod
    def fromSettings(cls, settings: dict[str, Any]) -> DefaultPolicy:
        """
        The policy L{settings} describe.

        @raise ValueError: they do not describe one.
        """
        try:
            options = SessionOptions(**settings["options"])
            return cls(options, settings["prefer"], settings["avoid"], settings["acceptMoves"])
        except (KeyError, TypeError) as e:
            raise ValueError("bad policy settings: %s" % (e,))

    def chooseLocators(self, available: Sequence[ILocator]) -> Sequence[ILocator]:
        return list(available)

    def republishInterval(self) -> Optional[float]:
        return self.options.republishInterval

    def acceptResumeFrom(self, previous: Optional[IAddress], new: IAddress) -> bool:
        if self.acceptMoves or previous is None:
            return True
        return getattr(previous, "host", None) == getattr(new, "host", None)
