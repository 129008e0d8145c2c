# -*- test-case-name: tests.test_session -*-
"""
Exceptions and failure reasons that Migrate hands to applications.

An application protocol's C{connectionLost} receives:
  - L{twisted.internet.error.ConnectionDone} after a clean close from either
    side, once every byte written was delivered;
  - L{SessionExpired} (a L{twisted.internet.error.ConnectionLost}) when the
    session could not be resumed in time, or the peer no longer knows it;
  - L{BufferOverflow} (a L{twisted.internet.error.ConnectionLost}) when a
    writer without a producer overran the buffer's hard cap;
  - L{PeerAborted} (a L{twisted.internet.error.ConnectionLost}) when the peer
    called C{abortConnection};
  - L{twisted.internet.error.ConnectionAborted} after our own
    C{abortConnection}.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionLost


class SessionExpired(ConnectionLost):
    """
    The session ended without a clean close: it stayed detached longer than
    its timeout, or a resume was refused because the peer no longer knows it
    (or no longer trusts it).
    """


class BufferOverflow(ConnectionLost):
    """
    The session's unacknowledged buffer passed its hard cap with no
    producer registered to slow the writer, and the overflow policy is to
    close.
    """


class PeerAborted(ConnectionLost):
    """
    The peer aborted the session.
    """


class HandshakeError(Exception):
    """
    A session could not be opened: the server refused it, spoke another
    protocol, or did not answer in time.  The connection Deferred of a
    client endpoint fails with this.

    @ivar code: the server's reject code, or C{None} when the failure was
        local (timeout, bad proof, carrier lost).
    """

    def __init__(self, reason: str, code: int | None = None) -> None:
        Exception.__init__(self, reason)
        self.code = code


class BufferFull(Exception):
    """
    Raised by C{write} when the session's buffer is at its hard cap and the
    overflow policy is C{"raise"}; the data was not accepted.
    """


class ChannelRefused(Exception):
    """
    A channel could not be opened: the peer refused its name (or is at its
    channel limit), this side is at its own limit, or the session ended
    before the peer answered.  The Deferred of
    L{IMigrateTransport.openChannel<migrate.interfaces.IMigrateTransport.openChannel>}
    fails with this.

    @ivar reason: why, as the peer (or this side) said it.
    """

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)
        self.reason = reason


class ChannelReset(ConnectionLost):
    """
    A channel ended without a clean close because its peer channel is gone
    (it broke the channel's rules, or its side dropped it).  The other
    channels of the session are not affected.
    """


class LocatorError(Exception):
    """
    The locator refused or did not answer; the message says why.
    """
