# -*- test-case-name: tests.test_moves,tests.test_advertise -*-
"""
Where the server is: its addresses, what each peer is told of them, and
their publication in the locators.
"""

from __future__ import annotations

from .._session import Session
from ..interfaces import ConnectivityEvent
from .state import ServerState


class Presence(ServerState):
    """
    Where the server can be reached: our addresses (from the connectivity
    monitor, or the one the listening socket is bound to), what each
    session's peer is told of them, and their publication under
    C{publishName}.

    It owns C{_addresses}, C{_interfaces}, C{_preferred},
    C{listeningHost} and C{_republishCall}.
    """

    def setListeningHost(self, host: str) -> None:
        """
        The address the listening socket is bound to: when it is not a
        wildcard, only that address is ever advertised or published (the
        others do not lead to this service).
        """
        self.listeningHost = host
        if self.monitor is not None and self._monitorHeld:
            self._addresses = self._ourAddresses()
            self._publish()

    def _ourAddresses(self) -> list[str]:
        assert self.monitor is not None
        bound = self.listeningHost
        if bound not in (None, "", "0.0.0.0", "::"):
            return [bound]
        found = [
            a
            for a in self.monitor.addresses()
            if self.serviceInterface is None or a.interface == self.serviceInterface
        ]
        self._interfaces = {a.address: a.interface for a in found}
        return [a.address for a in found]

    def _publish(self) -> None:
        """
        Tell the locator where we are now (preferred address first); again
        every C{republishInterval} of the policy.
        """
        if not self.locators or not self.publishName:
            return
        if self._republishCall is not None and self._republishCall.active():
            self._republishCall.cancel()
        self._republishCall = None
        interval = self.policy.republishInterval()
        if interval is not None and self._monitorHeld:
            self._republishCall = self.clock.callLater(interval, self._publish)
        if not self._addresses:
            return
        order = [self._preferred] if self._preferred in self._addresses else []
        order += [a for a in self._addresses if a not in order]
        name = self.publishName
        for locator in self.policy.chooseLocators(self.locators):
            locator.publish(name, order).addCallbacks(
                lambda _: self.log.info("published {name} at {addresses}", name=name, addresses=order),
                lambda f: self.log.warn(
                    "could not publish {name}: {reason}", name=name, reason=f.getErrorMessage()
                ),
            )

    def _setAdvertisement(self, session: Session, send: bool = True) -> None:
        """
        Work out what C{session}'s peer is told about where we are (see
        L{migrate._advertise}); tell it now if C{send} and it changed.
        """
        policy = self.advertisePolicy
        advert = policy.addresses(
            getattr(session.lastHost, "host", None),
            getattr(session.lastHost, "port", None),
            self._addresses,
            self._interfaces,
            self._preferred,
        )
        configured = policy.mode == "configured"
        if send:
            if advert and advert != session.advertised:
                session.advertise(advert, configured)
        else:
            session.advertise(advert, configured, send=False)

    def _connectivityChanged(self, event: ConnectivityEvent) -> None:
        """
        Our addresses changed: tell every attached peer (a new address comes
        first, so clients move to it while the old one still works); drop
        carriers whose local address is gone.
        """
        assert self.monitor is not None
        current = self._ourAddresses()
        kept = [a for a in self._addresses if a in current]
        before = self._addresses
        self._addresses = kept + [a for a in current if a not in kept]
        if event.kind == ConnectivityEvent.ADDRESS_ADDED and event.address in current:
            self._preferred = event.address
        elif self._preferred not in current:
            self._preferred = None
        if set(before) != set(self._addresses):
            self._publish()
        for session in list(self.sessions.values()):
            if session.ended or session.carrier is None:
                continue
            host = getattr(session.lastHost, "host", None)
            if event.kind == ConnectivityEvent.ADDRESS_REMOVED and host == event.address:
                session.dropCarrier("address-gone")
                continue
            self._setAdvertisement(session)
