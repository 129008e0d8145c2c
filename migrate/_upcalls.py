# -*- test-case-name: tests.test_upcalls -*-
"""
Delivery of upcalls to the application protocol (when it provides
L{IMigrateUpcalls}) and to added observers.

Every upcall is optional for a listener; one that raises is logged and
skipped, never breaking the session.  Upcalls that let the application
decide (L{Upcalls.decide}) combine the answers: any C{False} refuses; any
Deferred delays the decision until all have fired.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from .interfaces import IMigrateUpcalls


class Upcalls:
    """
    The listeners of one session's upcalls.

    @ivar observers: observers added to the endpoint or factory.
    @ivar app: the application protocol, once built.
    """

    log = Logger()

    def __init__(self, observers: list[Any]) -> None:
        self.observers = observers
        self.app: Optional[Any] = None

    def _targets(self) -> list[Any]:
        targets = []
        provider = IMigrateUpcalls(self.app, None) if self.app is not None else None
        if provider is not None:
            targets.append(provider)
        targets.extend(self.observers)
        return targets

    def notify(self, name: str, *args: Any) -> list[Any]:
        """
        Call upcall C{name} on every listener that has it.

        @return: the results of those that did not raise.
        """
        results = []
        for target in self._targets():
            method = getattr(target, name, None)
            if method is None:
                continue
            try:
                results.append(method(*args))
            except Exception:
                self.log.failure("upcall {name} of {target!r} raised", name=name, target=target)
        return results

    def decide(self, name: str, *args: Any) -> bool | Deferred[bool]:
        """
        Ask every listener; C{False} from any refuses.

        @return: C{True}/C{False}, or a Deferred firing with it when some
            listener answered with a Deferred (a failed Deferred is logged
            and counts as no objection).
        """
        results = self.notify(name, *args)
        pending = [r for r in results if isinstance(r, Deferred)]
        if any(r is False for r in results):
            for d in pending:
                d.addErrback(lambda f: None)
            return False
        if not pending:
            return True

        def logged(f: Any) -> None:
            self.log.failure("upcall {name} failed", f, name=name)
            return None

        return gatherResults([d.addErrback(logged) for d in pending]).addCallback(
            lambda answers: all(a is not False for a in answers)
        )


class _NoUpcalls(Upcalls):
    """
    The upcalls of a session's channel: none (upcalls are about the
    session, and go to its first stream's protocol and its observers).
    One instance serves every channel: it keeps no application.
    """

    def __init__(self) -> None:
        Upcalls.__init__(self, [])

    @property
    def app(self) -> None:
        return None

    @app.setter
    def app(self, value: object) -> None:
        pass

    def notify(self, name: str, *args: Any) -> list[Any]:
        return []


#: The upcalls of every channel.
NO_UPCALLS: Upcalls = _NoUpcalls()
