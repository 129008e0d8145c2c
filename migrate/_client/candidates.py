# -*- test-case-name: tests.test_moves,tests.test_race,tests.test_locate,tests.test_advertise -*-
"""
Where a client connects: the endpoint as configured, the addresses the peer
advertised, and what its locators say it is at now.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.defer import gatherResults
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure

from .._race import RacingEndpoint
from .._address import formatAddress
from .._session import Session
from .base import ConnectorBase

# The shortest time between two fresh lookups of the peer's name.
_LOOKUP_INTERVAL = 0.5

# Seconds between the starts of racing candidates.
_STAGGER = 0.05


class Candidates(ConnectorBase):
    """
    The candidates role of a client connector: which endpoint or address
    each attempt tries, looking the peer's name up again through the
    locators, and following the peer to the address it prefers.

    It owns C{endpointFor}, C{endpointTo}, C{locators}, C{peerName},
    C{_located} (the locators' last answer), C{_lastLookup} and
    C{_migrating} (the address the next attempt moves to).
    """

    def candidates(self) -> list[str]:
        """
        Where the peer may be now, in the order tried: the addresses it
        advertised (newest first), then the endpoint as configured (which
        looks its name up again).
        """
        session = self.session
        if session is None or self.endpointTo is None:
            return [""]
        advertised = list(session.trustedPeerAddresses)
        located = [a for a in self._located if a not in advertised]
        return advertised + located + [""]

    def _relocate(self, urgent: bool = False) -> None:
        """
        Look the peer's name up again (a new reconnect round, or a
        connectivity change when C{urgent}): a new answer joins the
        candidates, and a detached session tries it at once.
        """
        session = self.session
        if not self.locators or not self.peerName or session is None:
            return
        port = getattr(session.lastPeer, "port", None)
        now = self.clock.seconds()
        if port is None or (not urgent and now - self._lastLookup < _LOOKUP_INTERVAL):
            return
        self._lastLookup = now

        def found(addresses: list[str]) -> None:
            new = [("[%s]:%d" if ":" in a else "%s:%d") % (a, port) for a in addresses]
            if new == self._located:
                return
            self.log.info(
                "session {sid}: {name} is at {addresses}",
                sid=session.hexID,
                name=self.peerName,
                addresses=new,
            )
            self._located = new
            if not self._stopped and session.carrier is None and not session.ended:
                # Somewhere new to try: now, not after the backoff.
                if self._connecting is not None or self._carrier is not None:
                    self._abandonAttempt()
                self._retryNow()

        def failedLookup(f: Failure) -> list[str]:
            self.log.info("lookup of {name} failed: {e}", name=self.peerName, e=f.getErrorMessage())
            return []

        name = self.peerName
        lookups = []
        for locator in session.policy.chooseLocators(self.locators):
            lookups.append(locator.resolve(name, True).addErrback(failedLookup))

        def merge(answers: list[list[str]]) -> None:
            merged: list[str] = []
            for answer in answers:
                merged += [a for a in answer if a not in merged]
            found(merged)

        gatherResults(lookups).addCallback(merge)

    def _candidateEndpoint(self, choice: str, source: Optional[str]) -> IStreamClientEndpoint:
        if choice and self.endpointTo is not None:
            host, _, port = choice.rpartition(":")
            try:
                return self.endpointTo(host.strip("[]"), int(port))
            except ValueError:
                pass
        if source is not None and self.endpointFor is not None:
            return self.endpointFor(source)
        return self.endpoint

    def _pickEndpoint(self, source: Optional[str]) -> IStreamClientEndpoint:
        """
        The endpoint of this attempt: a move goes to the peer's preferred
        address; otherwise every candidate races, happy-eyeballs style, in
        order, a short stagger apart.
        """
        if self._migrating is not None:
            choice, self._migrating = self._migrating, None
            return self._candidateEndpoint(choice, source)
        candidates = self.candidates()
        if len(candidates) == 1:
            return self._candidateEndpoint(candidates[0], source)
        return RacingEndpoint(
            self.clock, [self._candidateEndpoint(c, source) for c in candidates], _STAGGER
        )

    def _peerAddresses(self, session: Session) -> None:
        """
        The peer advertised its addresses.  If its preferred one is not the
        one this carrier goes to (the server moved, or is moving), make a
        carrier to it now, while the old path may still work.
        """
        if self._stopped or not session.trustedPeerAddresses or self.endpointTo is None:
            return
        preferred = session.trustedPeerAddresses[0]
        current = formatAddress(session.lastPeer)
        if session.carrier is None or preferred == current:
            return
        if self._carrier is not None or self._connecting is not None or self._queued is not None:
            return
        self.log.info(
            "session {sid}: peer prefers {new}, moving from {old}",
            sid=session.hexID,
            new=preferred,
            old=current,
        )
        self._migrating = preferred
        self._retryNow()
