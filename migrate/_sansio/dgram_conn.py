# -*- test-case-name: tests.test_datagram_core -*-
"""
The sans-IO state machine of one open datagram session.

It protects and unprotects packets (L{migrate._sansio.dgram}), follows the peer's
address (the path of the newest authentic datagram), validates new paths
and bounds what is sent to an unvalidated one to three times what it sent
(anti-amplification), keeps the session alive and notices silence
(keepalives, probes, suspension, expiry), and bounds the application's send
rate with a token bucket.

Its API, aioquic-style: L{DatagramConnection.sendApp} (the hot path: a
sealed datagram or C{None}), L{DatagramConnection.receive} (an application
datagram or C{None}), L{DatagramConnection.datagramsToSend},
L{DatagramConnection.nextTimer}, L{DatagramConnection.handleTimer} and
L{DatagramConnection.nextEvent}.  Time is passed in as C{now}; addresses
are opaque hashable values (the driver's C{(host, port)} tuples).
No Twisted imports.
"""

from __future__ import annotations

import json
import random
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, Union

from . import dgram as _dgram

#: An address, opaque here (the driver's C{(host, port)} tuples): hashable.
Address = Any

#: Paths remembered per session at most.
MAX_PATHS = 8
#: Until a path is validated, at most this many times the bytes received on
#: it may be sent to it.
AMPLIFICATION = 3
#: Path challenges sent to one path at most.
MAX_CHALLENGES = 3

_APP = _dgram.APP
_OVERHEAD = _dgram.OVERHEAD


class LivenessPolicy(Protocol):
    """
    The part of L{migrate.interfaces.IMigratePolicy} a datagram session
    uses (any provider of that interface is one).
    """

    def heartbeatInterval(self) -> float: ...

    def keepaliveInterval(self) -> float: ...

    def silenceLimit(self, srtt: Optional[float], rttvar: Optional[float]) -> float: ...

    def probeTimeout(self, srtt: Optional[float], rttvar: Optional[float]) -> float: ...

    def reconnectDelay(self, failures: int) -> float: ...

    def expireAfter(self) -> float: ...

    def suspendAfter(self) -> Optional[float]: ...


# Events, returned by nextEvent().


@dataclass(frozen=True)
class PeerMoved:
    """
    The peer's address changed (the newest authentic datagram came from
    C{new}).
    """

    old: Address
    new: Address


@dataclass(frozen=True)
class PathValidated:
    """
    The peer answered a path challenge sent to C{address}.
    """

    address: Address


@dataclass(frozen=True)
class Suspended:
    """
    Nothing authentic was heard for too long.
    """

    reason: str


@dataclass(frozen=True)
class Resumed:
    """
    An authentic datagram arrived after a suspension.
    """

    previous: Address
    new: Address
    downtime: float


@dataclass(frozen=True)
class AddressesAdvertised:
    """
    The peer said where it can be reached.
    """

    seq: int
    flags: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class HibernateDue:
    """
    A server's session has been suspended for its policy's
    C{suspendAfter()}: time to checkpoint it (when the driver has a store).
    """


@dataclass(frozen=True)
class Ended:
    """
    The session is over: C{how} is C{"closed"} (by us), C{"peer-closed"},
    C{"expired"} or C{"refused"} (a client's resume was refused: the
    server no longer knows the session, or will not have it back).
    """

    how: str
    reason: str


Event = Union[PeerMoved, PathValidated, Suspended, Resumed, AddressesAdvertised, HibernateDue, Ended]

#: What starts a checkpoint's encoding (L{encodeCheckpoint}).
CHECKPOINT_MAGIC = b"migrate/1 datagram checkpoint\n"


@dataclass
class Checkpoint:
    """
    What a server keeps of a hibernated datagram session, besides its id,
    key and generation: the packet numbers (so that no nonce is ever used
    twice under a key, and no replay is accepted), where the peer was, and
    the counters the live view shows.

    @ivar nextPN: the number the next packet sent would have had.
    @ivar highest: the highest packet number received (-1: none).
    @ivar peer: the peer's last address, C{[host, port]}.
    @ivar local: our address the peer reached, or C{None}.
    @ivar suspendedAt: when the session was suspended (clock seconds).
    @ivar heardAt: when the peer was last heard.
    """

    nextPN: int
    highest: int
    peer: list[Any]
    local: Optional[str]
    createdAt: float
    suspendedAt: float
    heardAt: float
    advertSeq: int
    peerAdvertSeq: int
    appSent: int = 0
    appReceived: int = 0
    bytesSent: int = 0
    bytesReceived: int = 0
    dropped: int = 0
    moves: int = 0
    resumes: int = 0


def encodeCheckpoint(checkpoint: Checkpoint) -> bytes:
    """
    A checkpoint as bytes (L{CHECKPOINT_MAGIC}, then JSON).
    """
    return CHECKPOINT_MAGIC + json.dumps(asdict(checkpoint), sort_keys=True).encode("ascii")


def decodeCheckpoint(data: bytes) -> Checkpoint:
    """
    @raise ValueError: not a checkpoint of a datagram session (a stream
        session's record in a shared store, say), or malformed.
    """
    if not data.startswith(CHECKPOINT_MAGIC):
        raise ValueError("not a datagram session's checkpoint")
    try:
        fields = json.loads(data[len(CHECKPOINT_MAGIC) :].decode("ascii"))
        checkpoint = Checkpoint(**fields)
    except (UnicodeDecodeError, TypeError) as e:
        raise ValueError("malformed datagram checkpoint: %s" % (e,))
    if (
        not isinstance(checkpoint.nextPN, int)
        or not 0 <= checkpoint.nextPN <= _dgram.MAX_PN
        or not isinstance(checkpoint.highest, int)
        or checkpoint.highest < -1
        or not isinstance(checkpoint.peer, list)
        or len(checkpoint.peer) != 2
    ):
        raise ValueError("malformed datagram checkpoint")
    return checkpoint
Outgoing = tuple[bytes, Address, Any]


class Path:
    """
    One peer address and what went through it.

    @ivar received: bytes of authentic datagrams received from it.
    @ivar sent: bytes sent to it.
    @ivar validated: the peer proved it receives there.
    @ivar chosen: we chose it (a configured, advertised or looked-up
        address): probes may go there without the amplification bound.
    @ivar local: our address the peer reached on this path (what a server
        answers from), or C{None}.
    """

    __slots__ = ("address", "received", "sent", "validated", "chosen", "local",
                 "challenge", "challenges", "challengedAt", "usedAt")

    def __init__(self, address: Address, local: Any, now: float) -> None:
        self.address = address
        self.local = local
        self.received = 0
        self.sent = 0
        self.validated = False
        self.chosen = False
        self.challenge: Optional[int] = None
        self.challenges = 0
        self.challengedAt = 0.0
        self.usedAt = now

    def allows(self, size: int) -> bool:
        """
        Whether C{size} more bytes may be sent here.
        """
        return self.validated or self.sent + size <= AMPLIFICATION * self.received


class TokenBucket:
    """
    A byte budget refilled at C{rate} bytes a second, holding at most
    C{burst}.
    """

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = now

    def take(self, size: int, now: float) -> bool:
        """
        Take C{size} bytes if the budget holds them.
        """
        tokens = self.tokens
        if now > self.at:
            tokens = min(self.burst, tokens + (now - self.at) * self.rate)
            self.at = now
        if tokens < size:
            self.tokens = tokens
            return False
        self.tokens = tokens - size
        return True


def hostPort(text: str) -> Optional[tuple[str, int]]:
    """
    Parse C{"host:port"} or C{"[host]:port"}, or C{None}.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


class DatagramConnection:
    """
    One open datagram session, one end.

    @ivar isClient: which end.
    @ivar sessionID: the 16-byte session id.
    @ivar generation: the key generation (0 for an opened session).
    @ivar path: the current path (where datagrams go).
    @ivar suspended: whether the session is suspended (silent too long).
    @ivar ended: the L{Ended} event once the session is over.
    @ivar srtt: the smoothed round-trip time from PING/PONG, or C{None}.
    """

    def __init__(
        self,
        isClient: bool,
        sessionID: bytes,
        key: bytes,
        peer: Address,
        now: float,
        policy: LivenessPolicy,
        sendRate: float,
        sendBurst: float,
        local: Any = None,
        generation: int = 0,
        acceptMove: Callable[[Address, Address], bool] = lambda old, new: True,
        rng: Optional[random.Random] = None,
        nextPN: int = 0,
        highest: int = -1,
    ) -> None:
        """
        @param peer: the peer's address: a client's server, or the address
            a server's opening was confirmed from (validated by the
            handshake).
        @param local: on a server, our address the peer reached.
        @param acceptMove: asked before following the peer to a new
            address; C{False} drops the datagram that came from it.
        @param nextPN: the first packet number to send (a session restored
            from a L{Checkpoint} under its old keys: see L{restore}).
        @param highest: the highest packet number received before (idem).
        """
        self.isClient = isClient
        self.sessionID = sessionID
        self.key = key
        self.generation = generation
        self.policy = policy
        self._sealer = _dgram.Sealer(key, sessionID, generation, isClient, nextPN)
        self._opener = _dgram.Opener(key, sessionID, generation, not isClient, highest)
        self._rng = rng if rng is not None else random.SystemRandom()
        self._acceptMove = acceptMove
        self.path = Path(peer, local, now)
        self.path.validated = True
        self.path.chosen = isClient
        self._paths: dict[Address, Path] = {peer: self.path}
        self._bucket = TokenBucket(sendRate, sendBurst, now)
        self._out: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self.ended: Optional[Ended] = None
        self._seal = self._sealer.seal
        self._open = self._opener.open
        self.appSent = self.appReceived = self.dropped = 0
        self.rateDrops = self.amplificationDrops = self.moves = 0
        self.resumes = 0
        self.bytesSent = 0
        self.bytesReceived = 0
        self.createdAt = now
        #: Set when a deadline may have moved earlier (the driver then
        #: asks L{nextTimer} again and clears it).
        self.timerMoved = False
        # Liveness.
        self.heardAt = now
        self.sentAt = now
        self._appAt = now
        self.expecting = False
        self._waitingSince = now
        self._pingToken: Optional[int] = None
        self._pingSentAt = 0.0
        self._eventDeadline: Optional[float] = None
        self.suspended = False
        self._suspendedAt = 0.0
        self._suspendedPeer: Address = peer
        self._failures = 0
        self._probeAt = 0.0
        #: Probe rounds of a suspended client so far (a driver starts a
        #: resume attempt on one).
        self.probes = 0
        #: Whether a server's suspended session may hibernate (the driver
        #: has a store): L{HibernateDue} is then queued after the policy's
        #: C{suspendAfter()}.
        self.canHibernate = False
        self._hibernateQueued = False
        self._hibernateFrom = now
        self.candidates: list[Address] = []
        self.srtt: Optional[float] = None
        self.rttvar: Optional[float] = None
        # Advertisements.
        self._advertSeq = 0
        self._peerAdvertSeq = -1

    # The hot paths.

    def sendApp(self, payload: bytes, now: float) -> Optional[Outgoing]:
        """
        Seal an application datagram for the current path.

        @return: C{(datagram, address, local)} to send, or C{None} when the
            rate bound or the path's amplification bound refuses it (it is
            dropped and counted).
        """
        size = len(payload) + _OVERHEAD
        path = self.path
        if not path.validated and path.sent + size > AMPLIFICATION * path.received:
            self.amplificationDrops += 1
            return None
        # TokenBucket.take, inlined: this is the sending hot path.
        bucket = self._bucket
        tokens = bucket.tokens
        if now > bucket.at:
            tokens += (now - bucket.at) * bucket.rate
            if tokens > bucket.burst:
                tokens = bucket.burst
            bucket.at = now
        if tokens < size:
            bucket.tokens = tokens
            self.rateDrops += 1
            return None
        bucket.tokens = tokens - size
        packet = self._seal(_APP, payload)
        path.sent += size
        self.bytesSent += size
        self.appSent += 1
        self.sentAt = self._appAt = now
        if not self.expecting:
            self.expecting = True
            self._waitingSince = now
            self.timerMoved = True
        return packet, path.address, path.local

    def receive(self, datagram: bytes, address: Address, local: Any, now: float) -> Optional[bytes]:
        """
        A protected packet of this session arrived from C{address} (at our
        address C{local}).

        @return: the application datagram it carried, if any.  Control
            packets queue datagrams (L{datagramsToSend}) and events
            (L{nextEvent}).
        """
        if self.ended is not None:
            return None
        try:
            pn, newest, kind, body = self._open(datagram)
            if kind != _APP:
                _dgram.checkBody(kind, body)
        except _dgram.PacketError:
            self.dropped += 1
            return None
        path = self._paths.get(address)
        if path is None:
            path = self._addPath(address, local, now)
        size = len(datagram)
        path.received += size
        path.usedAt = now
        if local is not None:
            path.local = local
        self.bytesReceived += size
        self.heardAt = now
        self._eventDeadline = None
        if newest and path is not self.path:
            if not self._acceptMove(self.path.address, address):
                self.dropped += 1
                return None
            self._move(path, now)
        if self.suspended:
            self.suspended = False
            self._hibernateQueued = False
            self.timerMoved = True
            self._events.append(Resumed(self._suspendedPeer, self.path.address, now - self._suspendedAt))
        if kind == _APP:
            self.appReceived += 1
            self._appAt = now
            if not self.expecting:
                self.expecting = True
                self._waitingSince = now
                self.timerMoved = True
            return body
        self._control(kind, body, path, now)
        return None

    def authentic(self, datagram: bytes) -> bool:
        """
        Whether C{datagram} is an authentic, fresh packet of this session
        (changes nothing).
        """
        return self.ended is None and self._opener.check(datagram)

    @property
    def stats(self) -> dict[str, int]:
        """
        Counters: C{sent} and C{received} (application datagrams),
        C{dropped} (datagrams refused: not authentic, replayed, malformed,
        from a move the policy refused), C{rateDrops},
        C{amplificationDrops}, C{moves}.
        """
        return {
            "sent": self.appSent,
            "received": self.appReceived,
            "dropped": self.dropped,
            "rateDrops": self.rateDrops,
            "amplificationDrops": self.amplificationDrops,
            "moves": self.moves,
            "resumes": self.resumes,
        }

    # Checkpoints and new keys.

    @classmethod
    def restore(
        cls,
        sessionID: bytes,
        key: bytes,
        generation: int,
        checkpoint: Checkpoint,
        now: float,
        policy: LivenessPolicy,
        sendRate: float,
        sendBurst: float,
        acceptMove: Callable[[Address, Address], bool] = lambda old, new: True,
        rng: Optional[random.Random] = None,
    ) -> DatagramConnection:
        """
        A server's session back from its L{Checkpoint}, still suspended
        (the first authentic datagram resumes it), under its old keys: it
        sends from the checkpoint's next packet number plus
        L{_dgram.PN_MARGIN}, and counts every packet number up to the
        checkpoint's highest as received.

        The caller must make sure that the checkpoint can never be restored
        again (delete it from its store, and wait for that) before the
        connection sends anything: two connections restored from one
        checkpoint would use the same nonces.
        """
        peer = (checkpoint.peer[0], checkpoint.peer[1])
        conn = cls(
            False, sessionID, key, peer, now, policy, sendRate, sendBurst,
            local=checkpoint.local, generation=generation, acceptMove=acceptMove, rng=rng,
            nextPN=min(checkpoint.nextPN + _dgram.PN_MARGIN, _dgram.MAX_PN),
            highest=checkpoint.highest,
        )
        conn.createdAt = checkpoint.createdAt
        conn.heardAt = checkpoint.heardAt
        conn.suspended = True
        conn._suspendedAt = checkpoint.suspendedAt
        conn._advertSeq = checkpoint.advertSeq
        conn._peerAdvertSeq = checkpoint.peerAdvertSeq
        conn.appSent = checkpoint.appSent
        conn.appReceived = checkpoint.appReceived
        conn.bytesSent = checkpoint.bytesSent
        conn.bytesReceived = checkpoint.bytesReceived
        conn.dropped = checkpoint.dropped
        conn.moves = checkpoint.moves
        conn.resumes = checkpoint.resumes
        return conn

    def checkpoint(self, now: float) -> Checkpoint:
        """
        What a server keeps of this session while it hibernates.  The
        connection is frozen from now on: it sends nothing more (so the
        checkpoint's next packet number is never used under these keys by
        this connection), receives nothing, and has no timer.
        """
        checkpoint = Checkpoint(
            nextPN=self._sealer.nextPN,
            highest=self._opener.window.highest,
            peer=list(self.path.address),
            local=self.path.local,
            createdAt=self.createdAt,
            suspendedAt=self._suspendedAt if self.suspended else now,
            heardAt=self.heardAt,
            advertSeq=self._advertSeq,
            peerAdvertSeq=self._peerAdvertSeq,
            appSent=self.appSent,
            appReceived=self.appReceived,
            bytesSent=self.bytesSent,
            bytesReceived=self.bytesReceived,
            dropped=self.dropped,
            moves=self.moves,
            resumes=self.resumes,
        )
        self.freeze()
        return checkpoint

    def freeze(self) -> None:
        """
        Stop for good without a word to the peer and without an event
        (the session hibernates: its checkpoint stands for it): nothing is
        sent or received any more, and only the current path is kept.
        """
        if self.ended is None:
            self.ended = Ended("hibernated", "")
        self.timerMoved = True
        self._paths = {self.path.address: self.path}
        self._out = []
        self._events.clear()
        self.candidates = []

    def rekey(self, generation: int, now: float, peer: Optional[Address] = None, local: Any = None) -> None:
        """
        A resume was accepted (server) or its acceptance verified (client):
        use the traffic keys of C{generation} from now on, packet numbers
        from 0 and a fresh replay window.  The handshake authenticated the
        peer: a suspended session resumes.

        @param peer: on a server, where the resume came from: the peer's
            path from now on (validated: the resume proves its sender read
            the server's greeting sent there).
        @param local: on a server, our address the resume reached.
        """
        if self.ended is not None:
            return
        self.generation = generation
        self._sealer = _dgram.Sealer(self.key, self.sessionID, generation, self.isClient)
        self._opener = _dgram.Opener(self.key, self.sessionID, generation, not self.isClient)
        self._seal = self._sealer.seal
        self._open = self._opener.open
        self.resumes += 1
        self._pingToken = None
        self.heardAt = now
        self._eventDeadline = None
        self.timerMoved = True
        if peer is not None and peer != self.path.address:
            path = self._paths.get(peer) or self._addPath(peer, local, now)
            path.validated = True
            if local is not None:
                path.local = local
            old = self.path.address
            self.path = path
            self.moves += 1
            self._events.append(PeerMoved(old, peer))
        elif local is not None:
            self.path.local = local
        if self.suspended:
            self.suspended = False
            self._hibernateQueued = False
            self._events.append(Resumed(self._suspendedPeer, self.path.address, now - self._suspendedAt))

    def abandon(self, reason: str) -> None:
        """
        A client's resume was refused for good: the session is over,
        without a word to the server (it does not know the session, or
        will not have it back).
        """
        self._end("refused", reason)

    # Control packets.

    def _addPath(self, address: Address, local: Any, now: float) -> Path:
        if len(self._paths) >= MAX_PATHS:
            spare = [p for p in self._paths.values() if p is not self.path and not p.validated]
            if not spare:
                spare = [p for p in self._paths.values() if p is not self.path]
            oldest = min(spare, key=lambda p: p.usedAt)
            del self._paths[oldest.address]
        path = Path(address, local, now)
        self._paths[address] = path
        return path

    def _move(self, path: Path, now: float) -> None:
        old = self.path.address
        self.path = path
        self.timerMoved = True
        self.moves += 1
        self._events.append(PeerMoved(old, path.address))
        if not path.validated and (path.challenge is None or path.challenges >= MAX_CHALLENGES):
            # (A challenge still outstanding, say a probe's, is awaited.)
            path.challenges = 0
            self._challenge(path, now)

    def _challenge(self, path: Path, now: float) -> None:
        path.challenge = self._rng.getrandbits(64)
        path.challenges += 1
        path.challengedAt = now
        self._send(_dgram.PATH_CHALLENGE, _dgram.encodeToken(path.challenge), path, now)

    def _send(self, kind: int, body: bytes, path: Path, now: float, bounded: bool = True) -> bool:
        if self.ended is not None:
            return False
        size = _dgram.HEADER_SIZE + 1 + len(body) + _dgram.TAG_SIZE
        if bounded and not path.chosen and not path.allows(size):
            self.amplificationDrops += 1
            return False
        self._out.append((self._sealer.seal(kind, body), path.address, path.local))
        path.sent += size
        self.bytesSent += size
        self.sentAt = now
        return True

    def _control(self, kind: int, body: bytes, path: Path, now: float) -> None:
        if kind == _dgram.PING:
            self._send(_dgram.PONG, body, path, now)
        elif kind == _dgram.PONG:
            token = _dgram.decodeToken(body)
            if token == self._pingToken:
                self._pingToken = None
                self._rttSample(now - self._pingSentAt)
                if self._appAt < self._pingSentAt:
                    self.expecting = False
        elif kind == _dgram.PATH_CHALLENGE:
            self._send(_dgram.PATH_RESPONSE, body, path, now)
        elif kind == _dgram.PATH_RESPONSE:
            token = _dgram.decodeToken(body)
            for candidate in self._paths.values():
                if candidate.challenge is not None and candidate.challenge == token:
                    candidate.challenge = None
                    if not candidate.validated:
                        candidate.validated = True
                        self._events.append(PathValidated(candidate.address))
        elif kind == _dgram.CLOSE:
            self._end("peer-closed", _dgram.decodeClose(body))
        elif kind == _dgram.ADDRESSES:
            self._advertised(body, now)

    def _advertised(self, body: bytes, now: float) -> None:
        try:
            seq, flags, addresses = _dgram.decodeAddresses(body)
        except _dgram.PacketError:
            self.dropped += 1
            return
        if seq <= self._peerAdvertSeq:
            return
        self._peerAdvertSeq = seq
        self._events.append(AddressesAdvertised(seq, flags, tuple(addresses)))
        if not self.isClient or not addresses:
            return
        # The advertisement is authentic, but an address in it may not be
        # reachable from here (the server's private address behind NAT):
        # the preferred one is only probed, and the session moves there
        # when an authentic answer comes from it.  The address in use
        # stays as long as the server lists it first.
        preferred = hostPort(addresses[0])
        if preferred is not None and preferred != self.path.address:
            self.probe([preferred], now)

    def _rttSample(self, rtt: float) -> None:
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    # Things the driver asks for.

    def probe(self, addresses: Sequence[Address], now: float) -> None:
        """
        Challenge addresses we chose (advertised by the peer, or found by a
        locator); an authentic answer from one moves the session there.
        """
        for address in addresses:
            path = self._paths.get(address)
            if path is None:
                path = self._addPath(address, None, now)
            path.chosen = True
            path.challenges = 0
            self._challenge(path, now)

    def ping(self, now: float) -> None:
        """
        Send a C{PING} on the current path (and to the candidates while
        suspended), and wait for the answer.
        """
        self._pingToken = self._rng.getrandbits(64)
        self._pingSentAt = now
        self.timerMoved = True
        if not self.expecting:
            self.expecting = True
            self._waitingSince = now
        body = _dgram.encodeToken(self._pingToken)
        self._send(_dgram.PING, body, self.path, now)
        if self.suspended:
            for address in self.candidates:
                if address != self.path.address:
                    path = self._paths.get(address) or self._addPath(address, None, now)
                    path.chosen = True
                    self._send(_dgram.PING, body, path, now)

    def connectivityChanged(self, now: float) -> None:
        """
        A local connectivity event: probe at once, and expect an answer
        within the probe timeout.
        """
        if self.ended is not None:
            return
        self.ping(now)
        self._eventDeadline = now + self.policy.probeTimeout(self.srtt, self.rttvar)
        if self.suspended:
            self._failures = 0

    def advertise(self, addresses: list[str], flags: int, now: float, local: Any = None) -> None:
        """
        Tell the peer where we can be reached (preferred first), from our
        address C{local} (C{None}: the system's choice).
        """
        if self.ended is not None:
            return
        # Numbered above anything sent under an earlier generation (as
        # stream sessions do).
        self._advertSeq = max(self._advertSeq + 1, (self.generation << 32) + 1)
        body = _dgram.encodeAddresses(self._advertSeq, flags, addresses)
        if local is not None:
            self.path.local = local
        self._send(_dgram.ADDRESSES, body, self.path, now)

    def close(self, reason: str, now: float) -> None:
        """
        End the session, telling the peer.
        """
        if self.ended is not None:
            return
        self._send(_dgram.CLOSE, _dgram.encodeClose(reason), self.path, now)
        self._end("closed", reason)

    def _end(self, how: str, reason: str) -> None:
        self.timerMoved = True
        if self.ended is None:
            self.ended = Ended(how, reason)
            self._events.append(self.ended)

    def datagramsToSend(self) -> list[Outgoing]:
        """
        Control datagrams to send now, as C{(datagram, address, local)}.
        """
        out, self._out = self._out, []
        return out

    def nextEvent(self) -> Optional[Event]:
        """
        The next event, or C{None}.
        """
        return self._events.popleft() if self._events else None

    # Timers.

    def _deadlines(self) -> list[tuple[float, str]]:
        p = self.policy
        found = [(self.heardAt + p.expireAfter(), "expire")]
        if self.isClient:
            if self.suspended:
                found.append((self._probeAt, "probe"))
            elif self.expecting:
                base = max(self.heardAt, self._waitingSince)
                found.append((base + p.silenceLimit(self.srtt, self.rttvar), "dead"))
                last = self._pingSentAt if self._pingToken is not None and self._pingSentAt > base else base
                found.append((last + p.heartbeatInterval(), "ping"))
            else:
                found.append((self.sentAt + p.keepaliveInterval(), "ping"))
            if self._eventDeadline is not None and not self.suspended:
                found.append((self._eventDeadline, "dead"))
        elif not self.suspended:
            found.append((self.heardAt + 2 * p.keepaliveInterval(), "dead"))
        elif self.canHibernate and not self._hibernateQueued:
            suspendAfter = p.suspendAfter()
            if suspendAfter is not None:
                found.append((self._hibernateFrom + suspendAfter, "hibernate"))
        path = self.path
        if not path.validated and path.challenge is not None and path.challenges < MAX_CHALLENGES:
            found.append((path.challengedAt + p.probeTimeout(self.srtt, self.rttvar), "challenge"))
        return found

    def nextTimer(self) -> Optional[float]:
        """
        When L{handleTimer} must run next, or C{None} once the session is
        over.
        """
        if self.ended is not None:
            return None
        return min(when for when, _ in self._deadlines())

    def handleTimer(self, now: float) -> None:
        """
        Do what is due at C{now}.
        """
        if self.ended is not None:
            return
        due = {what for when, what in self._deadlines() if when <= now}
        if "expire" in due:
            self._end("expired", "no authentic datagram for %g s" % (self.policy.expireAfter(),))
            return
        if "dead" in due:
            self.suspended = True
            self._suspendedAt = self._hibernateFrom = now
            self._suspendedPeer = self.path.address
            self._eventDeadline = None
            self._failures = 0
            self._probeAt = now
            self._events.append(Suspended("path-dead"))
            if self.isClient:
                due.add("probe")
        if "hibernate" in due and self.suspended:
            self._hibernateQueued = True
            self._events.append(HibernateDue())
        if "probe" in due and self.suspended:
            self.probes += 1
            self._failures += 1
            self._probeAt = now + max(0.01, self.policy.reconnectDelay(self._failures))
            self.ping(now)
        elif "ping" in due:
            self.ping(now)
        if "challenge" in due:
            self._challenge(self.path, now)

    def snapshot(self) -> dict[str, object]:
        """
        Counters and state, as plain data.
        """
        return dict(
            self.stats,
            datagramsSent=self.appSent,
            datagramsReceived=self.appReceived,
            bytesSent=self.bytesSent,
            bytesReceived=self.bytesReceived,
            validated=self.path.validated,
            suspended=self.suspended,
            rtt=self.srtt,
        )

    @property
    def suspendedAt(self) -> Optional[float]:
        """
        When the session was suspended, or C{None} while it is not.
        """
        return self._suspendedAt if self.suspended else None
