# -*- test-case-name: tests.test_hostile -*-
"""
The state the server keeps for each carrier still in its handshake.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall

from .._sansio.handshake import ServerHandshake


class _PendingCarrier:
    """
    Per-carrier handshake state kept by the server.

    @ivar handshake: the sans-IO handshake.
    @ivar host: what it counts against (see
        L{_shareOf <migrate._server.addresses._shareOf>}).
    @ivar deadline: the handshake deadline call.
    """

    def __init__(self, handshake: ServerHandshake, host: str, deadline: IDelayedCall):
        self.handshake = handshake
        self.host = host
        self.deadline = deadline
        self.deciding = False
