# -*- test-case-name: tests.test_wire -*-
"""
The errors of the sans-IO layer: what the peer sent is not acceptable.

Each means that the carrier it came on must be dropped; none changes a
session's state.  (The errors applications see are in L{migrate.errors}.)
"""

from __future__ import annotations


class FrameError(Exception):
    """
    The peer sent bytes that are not a valid Migrate frame sequence.  The
    carrier that carried them must be closed; no session state may change.
    """


class ProtocolViolation(Exception):
    """
    The peer broke the stream rules (acknowledged bytes never sent, sent data
    after its end of stream, ...).  The carrier must be dropped; the session's
    state is left as it was before the offending frame.
    """


class HandshakeFailed(Exception):
    """
    The handshake on one carrier failed; that carrier must be closed.

    @ivar code: the L{wire} reject code to tell the peer, if any.
    @ivar retryAfter: for a busy refusal, seconds after which the peer may
        try again.
    """

    def __init__(self, code: int, reason: str, retryAfter: float = 0.0) -> None:
        Exception.__init__(self, reason)
        self.code = code
        self.reason = reason
        self.retryAfter = retryAfter


class PacketError(Exception):
    """
    A datagram that is not a valid packet of this session: it must be
    dropped, and nothing may change because of it.
    """
