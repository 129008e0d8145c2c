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

from typing import Optional

from twisted.internet.error import ConnectionLost

# The errors of what a peer sends (the sans-IO layer raises them; a carrier
# that brings one is dropped): listed here too, so that every exception of
# the package is found in this module.
from ._sansio.errors import FrameError, HandshakeFailed, PacketError, ProtocolViolation


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


class StoreUnavailable(Exception):
    """
    The store cannot be used now: its database is unreadable, unwritable,
    replaced by something that is not a database, or SQLite fails.  The
    message is one line.  The store logs the condition itself, once (and
    again at most every C{logInterval} seconds, and on recovery): callers
    need not log each failure (see
    L{migrate.store.SQLiteSessionStore.broken}).  Any L{ISessionStore} may
    fail with it for a condition that may pass: a server then asks clients
    to come back later rather than end their sessions.

    @ivar reason: why, on one line (it names the path).
    """

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())
        Exception.__init__(self, "session store unavailable: %s" % (reason,))
        self.reason = reason


class CorruptRecord(Exception):
    """
    A store entry could not be read back intact (checksum mismatch,
    truncation, impossible positions).  The entry is unusable; other entries
    are unaffected.

    @ivar sessionID: the id of the entry, if known.
    """

    def __init__(self, sessionID: Optional[bytes], reason: str) -> None:
        Exception.__init__(
            self,
            "session %s: store entry unusable: %s"
            % (sessionID.hex() if sessionID else "?", reason),
        )
        self.sessionID = sessionID


class UnsafeStore(ValueError):
    """
    The store's directory or one of its files cannot be trusted with
    session keys: writable by group or others, owned by another user, a
    symbolic link, or not a regular file.  Nothing was changed; the
    message names the path and says what to fix.

    @ivar path: the offending path.
    """

    def __init__(self, path: str, message: str) -> None:
        ValueError.__init__(self, message)
        self.path = path


class ListenFailed(Exception):
    """
    A listening endpoint of C{twistd migrate} could not listen: the process
    must not run on without it.
    """


__all__ = [
    "SessionExpired",
    "BufferOverflow",
    "PeerAborted",
    "HandshakeError",
    "BufferFull",
    "ChannelRefused",
    "ChannelReset",
    "LocatorError",
    "StoreUnavailable",
    "CorruptRecord",
    "UnsafeStore",
    "ListenFailed",
    "FrameError",
    "ProtocolViolation",
    "HandshakeFailed",
    "PacketError",
]
