# -*- test-case-name: tests.test_multiplex -*-
"""
One session for many connections: L{MultiplexingEndpoint}.

Wrapped around a C{migrate:} client endpoint, it makes the first
C{connect} open a session (its protocol is the session's first stream)
and every later one a channel of that same session, while it lasts.  A
move then costs one handshake and one resume, whatever the number of
connections.  C{twistd migrate --multiplex} forwards every TCP connection
it accepts this way.

When the session ends (its last channel closed, or it expired) the next
C{connect} opens a new one.  A channel the peer refuses (it is at its
channel limit, or the session is closing) is opened as a new session
instead, so a C{connect} fails only when a session cannot be opened.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .errors import ChannelRefused
from .interfaces import IMigrateTransport


@implementer(IStreamClientEndpoint)
class MultiplexingEndpoint:
    """
    Connections as channels of one session of C{endpoint}.

    @ivar endpoint: the C{migrate:} client endpoint sessions are opened
        with.
    @ivar sessions: how many sessions it opened.
    @ivar _current: the transport of the current session's first stream
        (channels are opened through it, even once that stream closed),
        or C{None} when there is none.
    @ivar _opening: fires when a session being opened is ready (or
        failed): C{connect}s made meanwhile wait for it.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.endpoint = endpoint
        self.sessions = 0
        self._current: Optional[IMigrateTransport] = None
        self._opening: Optional[list[Deferred[None]]] = None

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect C{protocolFactory}'s protocol as a channel of the current
        session, or as the first stream of a new one.
        """
        if self._opening is not None:
            waiter: Deferred[None] = Deferred()
            self._opening.append(waiter)
            return waiter.addCallback(lambda _: self.connect(protocolFactory))
        current = self._current
        if current is None:
            return self._newSession(protocolFactory)
        d = current.openChannel(protocolFactory)

        def refused(reason: Failure) -> Any:
            reason.trap(ChannelRefused)
            self.log.info(
                "channel refused ({reason}); opening another session",
                reason=reason.value,
            )
            if self._current is current:
                self._current = None
            return self.connect(protocolFactory)

        return d.addErrback(refused)

    def _newSession(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        self._opening = []
        d = self.endpoint.connect(protocolFactory)

        def opened(protocol: IProtocol) -> IProtocol:
            transport = IMigrateTransport(protocol.transport)  # type: ignore[attr-defined]
            self.sessions += 1
            self._current = transport
            transport.whenEnded().addBoth(self._ended, transport)
            self._release()
            return protocol

        def failed(reason: Failure) -> Failure:
            self._release()
            return reason

        return d.addCallbacks(opened, failed)

    def _release(self) -> None:
        waiting, self._opening = self._opening, None
        for waiter in waiting or ():
            waiter.callback(None)

    def _ended(self, result: object, transport: IMigrateTransport) -> None:
        if self._current is transport:
            self._current = None
