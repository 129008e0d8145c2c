# -*- test-case-name: tests.test_transport -*-
"""
Migrate's public interfaces.

The first thing to read: everything an application can rely on is named
here.

  - L{IMigrateTransport}: what an application protocol's C{transport}
    provides in addition to Twisted's own C{ITransport}, C{IConsumer} and
    C{IPushProducer}.
  - L{IConnectivityMonitor}: a source of local connectivity events
    (L{ConnectivityEvent}) that makes sessions react at once.
  - L{IMigratePolicy}: the decisions taken for a session (reconnect
    schedule, liveness bounds, buffer limits, source address, moves).
  - L{IMigrateUpcalls}: what the application hears, and where it can take
    part (veto or delay a resume, choose a policy).
  - L{ISessionStore} and L{SessionRecord}: where hibernated sessions go.
  - L{IMigratable}: an application protocol that can be dropped while its
    session hibernates and rebuilt when it resumes.
  - L{ILocator}: names to current addresses, and publishing one's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    ITransport,
    IUDPTransport,
)
from twisted.python.failure import Failure
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

# (Defined in migrate.errors with every other exception; still found here.)
from .errors import CorruptRecord, StoreUnavailable


@dataclass(frozen=True)
class LocalAddress:
    """
    A usable address of this host.

    @ivar interface: the interface name (e.g. C{"eth0"}).
    @ivar address: the address, as text.
    @ivar family: C{4} or C{6}.
    """

    interface: str
    address: str
    family: int


@dataclass(frozen=True)
class ConnectivityEvent:
    """
    Something changed in this host's connectivity.

    @ivar kind: one of the C{ConnectivityEvent} kind constants.
    @ivar interface: the interface concerned, if known.
    @ivar address: the address concerned, if any.
    """

    kind: str
    interface: Optional[str] = None
    address: Optional[str] = None

    ADDRESS_ADDED = "address-added"
    ADDRESS_REMOVED = "address-removed"
    ADDRESS_DEPRECATED = "address-deprecated"
    LINK_UP = "link-up"
    LINK_DOWN = "link-down"
    ROUTE_CHANGED = "route-changed"
    WAKE = "wake"
    UNKNOWN = "unknown"


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
    channel = Attribute(
        "Which channel of the session this transport is: 0 for the stream "
        "the endpoint connected, 1, 3, 5, ... for channels the client "
        "opened, 2, 4, 6, ... for those the server opened."
    )

    def openChannel(factory: IProtocolFactory, name: str = "") -> "Deferred[IProtocol]":
        """
        Open another channel of this session: an ordered, reliable byte
        stream of its own, with its own transport (which provides this
        interface too) and its own flow control, that moves, resumes and
        hibernates with the session (one handshake and one resume for all
        of a session's channels).

        The peer decides what C{name} means: a server maps names to
        factories (C{channels=} of L{migrate.MigrateServerFactory} and the
        endpoints; by default C{""} is built by the factory of the session's
        first stream), and its application may refuse a channel with
        L{IMigrateUpcalls.channelRequested}.  Either side may open channels;
        a client's default is the same (C{""}, built by the factory it
        connected with).

        The session lasts while any of its channels is open: closing the
        first stream (C{loseConnection} on channel 0) closes only it, and
        the session ends cleanly when its last channel closes.  Aborting
        channel 0 aborts the whole session, every channel with it; abort
        another channel to drop just that one.

        @param factory: builds this side's protocol once the peer accepted;
            it hears C{connectionMade} then.
        @param name: what the peer builds (at most 200 bytes of UTF-8).
        @return: a Deferred firing with the connected protocol, or failing
            with L{migrate.errors.ChannelRefused} (the peer refused the
            name or is at its channel limit, this side is at its own
            C{maxChannels}, or the session ended first).  Cancelling it
            drops the channel.
        @raise ValueError: C{name} is too long.
        """

    def loseWriteConnection() -> None:
        """
        Half-close: end our direction of the stream once everything written
        was sent, keep receiving.  The peer's application hears
        C{readConnectionLost} if it provides C{IHalfCloseableProtocol}.
        """

    def abortConnection() -> None:
        """
        End the session at once, dropping unsent data.  The application
        hears C{connectionLost} with C{ConnectionAborted} in the next
        reactor turn; the peer with L{migrate.errors.PeerAborted} (the abort
        is delivered through later carriers if the current one is lost).
        """

    def whenEnded() -> "Deferred[None]":
        """
        A Deferred that fires once the session is entirely over: after the
        application's C{connectionLost}, a session may still finish its
        close in the background (the last acknowledgements, an abort that
        must reach the peer), for at most C{closeTimeout}.  Once this fires
        nothing of the session is left on the reactor; a test that checks
        the reactor is clean waits for it, as it would wait for a TCP
        connection to close.
        """

    def isAttached() -> bool:
        """
        Whether a carrier is currently up.
        """

    def snapshot() -> dict[str, object]:
        """
        The session's state now, as JSON-ready data: C{id}, C{side}
        (C{"client"} or C{"server"}), C{state}, C{local} and C{peer}
        (C{"host:port"} of the current or last carrier), C{age} and
        C{detachedFor} (seconds, the latter C{None} while attached),
        C{generation}, C{handoffs}, C{bytesSent}, C{bytesAcknowledged},
        C{bytesBuffered}, C{bytesReceived}, C{bytesRetransmitted}, C{rtt}
        (smoothed, seconds, C{None} until measured) and C{lastRtt}.
        """


class IDatagramSession(IUDPTransport):
    """
    The transport of a datagram session (L{migrate.datagram}), as seen by
    its C{DatagramProtocol}: an C{IUDPTransport} whose C{write} goes to the
    session's peer wherever it is now (its C{addr} is ignored), whose
    C{getPeer()} is that peer's current address, and whose C{connect}
    raises C{RuntimeError}.  Datagram semantics: no retransmission, no
    ordering; see C{docs/datagram.md}.
    """

    sessionID = Attribute(
        "The session's id as a 32-character lowercase hex C{str}; the same on "
        "both ends."
    )
    state = Attribute(
        'C{"attached"} (the peer is heard from), C{"detached"} (suspended: '
        'silent past the silence limit), C{"hibernated"} (a server\'s session '
        'checkpointed into its store, its application kept in memory) or '
        'C{"closed"}.'
    )
    generation = Attribute(
        "The key generation: 0 for an opened session, above the last on each resume."
    )
    handoffs = Attribute("How many times the peer moved to a new address.")

    def getPeer() -> IAddress:
        """
        The peer's current address.
        """

    def loseConnection() -> None:
        """
        End the session, telling the peer; C{stopProtocol} runs in the next
        reactor turn.
        """

    def isAttached() -> bool:
        """
        Whether the peer is heard from (the session is not suspended).
        """

    def whenEnded() -> "Deferred[None]":
        """
        A Deferred that fires once the session is over and nothing of it is
        left on the reactor.
        """

    def snapshot() -> dict[str, object]:
        """
        The session's state now, as JSON-ready data (C{kind} is
        C{"datagram"}).
        """


class IConnectivityMonitor(Interface):
    """
    A source of local connectivity events: addresses appearing and
    disappearing, links going up and down, routes changing, the machine
    waking from sleep.  Sessions react at once, without waiting for a
    heartbeat to time out.
    """

    def start() -> None:
        """
        Begin watching.  Calling it again does nothing.

        @raise OSError: the platform facility could not be opened.
        """

    def stop() -> None:
        """
        Stop watching and release every resource (sockets, timers).
        Calling it again does nothing.
        """

    def addListener(listener: Callable[[ConnectivityEvent], None]) -> None:
        """
        Call C{listener} with each L{ConnectivityEvent} from now on.
        """

    def removeListener(listener: Callable[[ConnectivityEvent], None]) -> None:
        """
        Stop calling C{listener}; unknown listeners are ignored.
        """

    def addresses() -> Sequence[LocalAddress]:
        """
        The usable local addresses known now (possibly empty when the monitor
        cannot tell).
        """

    def interfaceOf(address: str) -> Optional[str]:
        """
        The interface that C{address} is on (or was last seen on, if its link
        is down), or C{None} if unknown.
        """


class IMigratePolicy(Interface):
    """
    The decisions Migrate takes for a session.  One policy may serve many
    sessions; an application can choose one per session through
    L{IMigrateUpcalls.choosePolicy}.
    """

    def reconnectDelay(failures: int) -> float:
        """
        Seconds to wait before the next reconnect attempt after C{failures}
        failed attempts in a row (0 right after the carrier was lost).
        A connectivity event makes the next attempt at once, whatever this
        says.
        """

    def slowRetryInterval(detachedFor: float) -> Optional[float]:
        """
        The least delay between reconnect attempts once the session has been
        detached for C{detachedFor} seconds, or C{None} for no floor (the
        L{reconnectDelay} schedule alone).  The default keeps retrying fast
        for half a minute, then about every 15 s: connectivity events (a
        link or address change, a wake from sleep) still make an attempt at
        once, so a device away for long is not woken every second.
        (A policy without this method gets no floor.)
        """

    def attemptTimeout(srtt: Optional[float]) -> float:
        """
        Seconds one reconnect attempt (connection and handshake) may take,
        given the smoothed round-trip time seen so far (C{None} if unknown).
        """

    def heartbeatInterval() -> float:
        """
        Seconds of silence on a carrier, while the session waits to hear
        from the peer (its data or FIN unacknowledged, a heartbeat
        unanswered, the application not reading), after which a heartbeat
        is sent.
        """

    def keepaliveInterval() -> float:
        """
        Seconds of silence on an idle carrier (nothing outstanding either
        way) after which the client sends a keepalive heartbeat.  The server
        never sends one on a carrier the client keeps alive: it checks an
        idle carrier only after twice this long without a word.  An idle
        session learns of a dead path on its next write, on its keepalive,
        or at once from a connectivity event.
        """

    def silenceLimit(srtt: Optional[float], rttvar: Optional[float]) -> float:
        """
        Seconds of silence, heartbeats unanswered, after which a carrier's
        path is declared dead.
        """

    def probeTimeout(srtt: Optional[float], rttvar: Optional[float]) -> float:
        """
        Seconds to wait for an answer to a probe sent after a connectivity
        event before the carrier's path is declared dead.
        """

    def suspendAfter() -> Optional[float]:
        """
        Seconds a session may stay detached before it is suspended to
        hibernation, or C{None} never to.
        """

    def expireAfter() -> float:
        """
        Seconds a session may stay detached before it expires.
        """

    def bufferLimits() -> tuple[int, int]:
        """
        C{(highWater, hardCap)}: unacknowledged bytes above which the
        application's producer is paused, and the most a session may hold.
        """

    def chooseSource(candidates: Sequence[LocalAddress]) -> Optional[str]:
        """
        The local address a new carrier should be made from, among the
        usable C{candidates}, or C{None} to let the system choose.
        """

    def chooseLocators(available: Sequence[ILocator]) -> Sequence[ILocator]:
        """
        Which of the endpoint's locators a session uses (to look its peer
        up, or to publish a server's addresses), in order.
        """

    def republishInterval() -> Optional[float]:
        """
        Seconds between publications of a server's addresses to its locator
        when nothing changed, or C{None} to publish only on changes.
        """

    def acceptResumeFrom(previous: Optional[IAddress], new: IAddress) -> bool:
        """
        Whether a server accepts a resume that comes from C{new} when the
        session's last carrier came from C{previous}.
        """


class IMigrateUpcalls(Interface):
    """
    What an application (its protocol, when it provides this interface) or
    an added observer hears about its sessions.  Every method is optional
    for observers (a missing one is not called); an upcall that raises is
    logged and never breaks the session.  C{session} is the session's
    L{IMigrateTransport} (its L{IDatagramSession} for a datagram session).
    """

    def sessionEstablished(session: IMigrateTransport) -> None:
        """
        The session is open.
        """

    def choosePolicy(session: IMigrateTransport) -> Optional[IMigratePolicy]:
        """
        Return a policy for this session, or C{None} to keep the default.
        Called once, at establishment.
        """

    def sessionSuspended(session: IMigrateTransport, reason: str) -> None:
        """
        The session lost its carrier and is detached.  C{reason} is one of
        C{"carrier-lost"}, C{"path-dead"}, C{"address-gone"},
        C{"link-down"}, C{"protocol-error"}, C{"replaced"}.
        """

    def reconnectAttempt(
        session: IMigrateTransport, attempt: int, source: Optional[str]
    ) -> object:
        """
        The client is about to try to resume (attempt number C{attempt} since
        the last success, from local address C{source} or the system's
        choice).  Return C{False} to skip this attempt, or a Deferred to
        delay it until it fires (with C{False} to skip); anything else goes
        ahead.
        """

    def resumeRequested(
        session: IMigrateTransport,
        previousPeer: Optional[IAddress],
        newPeer: IAddress,
        downtime: float,
    ) -> object:
        """
        Server side: a verified resume arrived.  Return C{False} to refuse
        it (the session then ends on both sides with L{SessionExpired}), or a
        Deferred to delay the decision (bounded by the handshake timeout);
        anything else accepts it.
        """

    def sessionResumed(
        session: IMigrateTransport,
        previousPeer: Optional[IAddress],
        newPeer: IAddress,
        downtime: float,
        retransmitted: int,
    ) -> None:
        """
        The session is attached again: C{downtime} seconds after it was
        suspended, retransmitting C{retransmitted} bytes.
        """

    def peerMoved(session: IMigrateTransport, old: str, new: str) -> None:
        """
        The peer is now at another address (C{"host:port"} each): a server
        that moved (stream sessions), or either end of a datagram session
        whose newest authentic datagram came from a new address.
        """

    def channelRequested(session: IMigrateTransport, name: str) -> bool:
        """
        The peer asks to open a channel named C{name} on this session (one
        this side has a factory for).  Return C{False} to refuse it (the
        peer's L{IMigrateTransport.openChannel} fails with
        L{migrate.errors.ChannelRefused}); anything else accepts it.  The
        answer must be given now (a Deferred counts as acceptance).
        """

    def addressesChanged(session: IMigrateTransport, event: ConnectivityEvent) -> None:
        """
        A local connectivity event concerns this session's host.
        """

    def aboutToHibernate(session: IMigrateTransport) -> None:
        """
        The session will be suspended to hibernation.
        """

    def sessionEnded(session: IMigrateTransport, reason: Failure) -> None:
        """
        The session is over (the application protocol also hears
        C{connectionLost} with the same reason).
        """


@dataclass
class SessionRecord:
    """
    A session checkpointed into a store: everything needed to resume it,
    in this process or another one.

    @ivar sessionID: the 16-byte session id.
    @ivar side: C{"server"} or C{"client"}.
    @ivar key: the 32-byte session key (secret: stored with mode 0600, never
        logged).
    @ivar generation: the last accepted generation.
    @ivar sent: our stream position after the last data byte.
    @ivar acked: how far the peer acknowledged our stream.
    @ivar received: how far we received the peer's stream.
    @ivar finSent: whether our stream ended.
    @ivar finReceived: whether the peer's stream ended.
    @ivar buffer: our unacknowledged bytes (C{sent - acked} of them).
    @ivar peer: the last peer address, as C{"host:port"}.
    @ivar host: our last address, as C{"host:port"}.
    @ivar createdAt: when the session opened (clock seconds).
    @ivar detachedSince: when its last carrier was lost.
    @ivar hibernatedAt: when it was checkpointed.
    @ivar expiresAt: when it expires unless resumed.
    @ivar handoffs: resumes so far.
    @ivar appState: what the application saved (L{IMigratable}), or
        C{None} if its protocol is not migratable.
    @ivar secure: the session was opened over TLS: it resumes only over
        TLS.
    @ivar policy: the settings of the session's policy when it is a
        L{migrate.policy.DefaultPolicy} (its options, preferences and
        moves), so that a restored session keeps them; C{None} for other
        policies (a restored session then gets its factory's).
    @ivar kind: C{"stream"}, or C{"datagram"} for a datagram session's
        checkpoint (L{migrate.datagram}: its own state is in C{buffer}).
    @ivar channels: the session's other channels (see
        L{IMigrateTransport.openChannel}), C{None} if it has none: a dict
        with C{"next"} (the number its next channel of its own gets) and
        C{"list"}, one dict per channel with C{"channel"}, C{"name"}, the
        positions and C{"handoffs"} as for the session, and C{"buffer"}
        and C{"appState"} as base64 text (C{appState} C{None} when the
        channel's protocol is not migratable).
    """

    sessionID: bytes
    side: str
    key: bytes
    generation: int
    sent: int
    acked: int
    received: int
    finSent: bool
    finReceived: bool
    buffer: bytes
    peer: str
    host: str
    createdAt: float
    detachedSince: float
    hibernatedAt: float
    expiresAt: float
    handoffs: int = 0
    appState: Optional[bytes] = None
    policy: Optional[dict[str, Any]] = None
    secure: bool = False
    kind: str = "stream"
    channels: Optional[dict[str, Any]] = None




class ISessionStore(Interface):
    """
    Where hibernated sessions are kept.  Every method returns a Deferred;
    implementations must not block the reactor for long.
    """

    def save(record: SessionRecord) -> Any:
        """
        Store (or replace) a record.  Fires with C{None} once it is durable.
        """

    def load(sessionID: bytes) -> Any:
        """
        Fire with the record of C{sessionID}, or C{None} if there is none;
        fail with L{CorruptRecord} if the entry is unusable.
        """

    def delete(sessionID: bytes) -> Any:
        """
        Forget a record (no error if there is none).
        """

    def list(side: Optional[str] = None) -> Any:
        """
        Fire with a list of C{(sessionID, side, expiresAt, peer)} for every
        record (of C{side}, if given), without loading their buffers.
        """

    def purgeExpired(now: float) -> Any:
        """
        Delete every record that expired at or before C{now}; fire with the
        ids deleted.
        """

    def close() -> Any:
        """
        Release the store's resources (connections, threads).
        """


class IMigratable(Interface):
    """
    An application protocol that can be dropped while its session
    hibernates, rebuilt when it resumes (in this process or after a
    restart), and asked whether a resume may go ahead.
    """

    def saveMigrationState() -> bytes:
        """
        The session hibernates: return everything needed to rebuild this
        protocol.  After this the object is dropped: it hears no
        C{connectionLost}.
        """

    def restoreMigrationState(state: bytes) -> None:
        """
        Called on a new protocol object (built by the same factory) instead
        of C{connectionMade}, when a hibernated session resumes;
        C{self.transport} is already set.
        """

    def validateResume(asleep: float, peer: IAddress) -> object:
        """
        Contextual validation: the session slept C{asleep} seconds and comes
        back from C{peer}.  Return C{False} (or a Deferred firing with it)
        to refuse: the session then ends on both sides with
        L{migrate.errors.SessionExpired}.
        """


class ILocator(Interface):
    """
    Maps a host's name to where it is now, and lets a host say where it is.
    """

    def resolve(name: str, fresh: bool = False) -> Any:
        """
        Fire with the addresses (text, IPv4 or IPv6) C{name} leads to now,
        possibly empty.  Implementations honour the records' lifetimes:
        repeated calls within a record's TTL may answer from memory, unless
        C{fresh} asks to look again (a reconnect round does: the last
        answer just failed).
        """

    def publish(name: str, addresses: Sequence[str]) -> Any:
        """
        Make C{name} lead to C{addresses}.  Fires with C{None} once the
        locator accepted it; fails with a clear reason when it refused.
        """
