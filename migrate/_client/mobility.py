# -*- test-case-name: tests.test_mobility,tests.test_monitors,tests.test_moves -*-
"""
How a client reacts to connectivity events from its monitor.
"""

from __future__ import annotations

from ..interfaces import ConnectivityEvent
from .base import ConnectorBase


class Mobility(ConnectorBase):
    """
    The mobility role of a client connector: react at once to the events of
    its connectivity monitor (the connector acquires and releases the
    monitor's lease).  It owns no state of its own.
    """

    def _connectivityChanged(self, event: ConnectivityEvent) -> None:
        """
        React at once: a detached session tries now (abandoning an attempt
        that may be stuck on a dead route); an attached one drops a carrier
        whose address or link is gone, and probes its path otherwise.
        """
        session = self.session
        if self._stopped or session is None or session.ended or not self._confirmed:
            return
        if session.transport is not None:
            self.upcalls.notify("addressesChanged", session.transport, event)
        carrier = session.carrier
        if carrier is None:
            if event.kind in (ConnectivityEvent.ADDRESS_REMOVED, ConnectivityEvent.LINK_DOWN):
                return
            if self._connecting is not None or self._carrier is not None:
                # The attempt in progress may be stuck on the old route.
                self._abandonAttempt()
            self.attempts = 0
            self._relocate(urgent=True)
            self._retryNow()
            return
        host = getattr(session.lastHost, "host", None)
        if event.kind == ConnectivityEvent.ADDRESS_REMOVED and event.address == host:
            session.dropCarrier("address-gone")
        elif (
            event.kind == ConnectivityEvent.LINK_DOWN
            and event.interface is not None
            and self.monitor is not None
            and host is not None
            and event.interface == self.monitor.interfaceOf(host)
        ):
            session.dropCarrier("link-down")
        else:
            session.probe()
