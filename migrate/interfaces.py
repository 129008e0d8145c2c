# -*- test-case-name: tests.test_transport -*-
"""
Migrate's public interfaces.

The first thing to read: everything an application can rely on is named
here.  L{IMigrateTransport} is what an application protocol's C{transport}
provides in addition to Twisted's own C{ITransport}, C{IConsumer} and
C{IPushProducer}.
"""

from __future__ import annotations

from zope.interface import Attribute
from twisted.internet.interfaces import ITransport


class IMigrateTransport(ITransport):
    """
    The transport of a Migrate session, as seen by the application protocol.

    It stays the same object for the whole session, across every carrier
    (TCP connection) that comes and goes underneath.  C{getPeer()} and
    C{getHost()} return the addresses of the current carrier, or of the last
    one while the session is detached.
    """

    sessionID = Attribute(
        "The session's id as a 32-character lowercase hex C{str}; the same on "
        "both ends."
    )
    state = Attribute(
        'The session state, a C{str}: C{"attached"} (a carrier is up), '
        'C{"detached"} (waiting for a resume), C{"closing"} (a close is in '
        'progress) or C{"closed"}.'
    )
    generation = Attribute(
        "The number of the current carrier's resume: 0 for the carrier that "
        "opened the session, growing by at least one with every resume."
    )
    handoffs = Attribute("How many times the session was resumed.")

    def loseWriteConnection() -> None:
        """
        Half-close: end our direction of the stream once everything written
        was sent, keep receiving.  The peer's application hears
        C{readConnectionLost} if it provides C{IHalfCloseableProtocol}.
        """

    def abortConnection() -> None:
        """
        End the session at once, dropping unsent data.  The application
        hears C{connectionLost} with C{ConnectionAborted}; the peer, if
        reachable now, with L{migrate.errors.PeerAborted}.
        """

    def isAttached() -> bool:
        """
        Whether a carrier is currently up.
        """
