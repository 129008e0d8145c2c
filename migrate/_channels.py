# -*- test-case-name: tests.test_channels -*-
"""
Channels: more byte streams in one session.

A session's first stream, channel 0, is the one its endpoint connects.  Any
number of further channels may be opened on a live session by either side
(L{IMigrateTransport.openChannel<migrate.interfaces.IMigrateTransport.openChannel>}).
Each is a complete stream of its own, with everything a session's stream
has (its own positions and retransmission buffer, FIN, abort, half-close,
producers, the exact transport rules): each channel is run by a
L{Session<migrate._session.Session>} of its own, whose carrier is a
L{ChannelCarrier} on the session's real carrier.  What a channel does not
have is what belongs to the session: handshakes, resumes, liveness,
address advertisements, expiry.

On the wire a channel's frames travel inside C{CHANNEL} frames of the
session's carrier.  A L{ChannelCarrier} lasts as long as the real carrier
under it: when that is lost, every channel is detached; when the session
resumes on a new carrier, each side sends one C{CHANNEL_RESUME} per
channel (how far it received it), and each channel retransmits from there
on its new channel carrier, exactly as a session does after C{RESUME}.

Flow control is per channel and per carrier, in bytes of C{CHANNEL} frame
bodies: the receiver grants a window (C{CHANNEL_OPEN}, C{CHANNEL_OPENED},
C{CHANNEL_RESUME}, then C{CHANNEL_WINDOW} as its application reads), and
the sender holds back what does not fit, pausing that channel's producer.
A channel whose application paused reading stops granting, so it stops
only itself: the carrier is always read.
"""

from __future__ import annotations

import base64
from collections import deque
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol, IProtocolFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._sansio import wire as _wire
from ._sansio.stream import ProtocolViolation
from ._upcalls import NO_UPCALLS
from .errors import ChannelRefused, ChannelReset, PeerAborted
from .interfaces import IMigratable

if TYPE_CHECKING:
    from ._session import Session

#: The most bytes of channel frames gathered (see L{ChannelTable.holdOutput})
#: before they are written out.
BATCH_LIMIT = 16 * 1024

#: How many closed channels a session remembers (with how they closed), to
#: answer a peer that resumes one whose close it did not hear.
CLOSED_MEMORY = 64


class ChannelCarrier:
    """
    One channel's carrier on one carrier of its session: what the channel's
    L{Session} writes goes into C{CHANNEL} frames of the session's carrier
    (within the window the peer granted), and what arrives for the channel
    is parsed by this carrier's own parser.

    It is its own transport (the channel's session calls
    C{carrier.transport.write} as on a real carrier).

    @ivar table: the session's channel table.
    @ivar channel: the channel number.
    @ivar session: the channel's session, once adopted.
    @ivar parser: parses the channel's frames.
    @ivar retired: the channel let go of this carrier.
    @ivar closed: nothing more is sent or received on it.
    @ivar writeBlocked: the window is used up (or the session's carrier is
        full): the channel's producer is paused.
    @ivar limit: how many bytes the peer lets us send on this carrier.
    @ivar sent: how many we sent.
    @ivar granted: how many we let the peer send.
    @ivar received: how many the peer sent.
    """

    __slots__ = (
        "table",
        "channel",
        "session",
        "parser",
        "retired",
        "closed",
        "writeBlocked",
        "limit",
        "sent",
        "granted",
        "received",
        "_queue",
        "_queued",
        "_producer",
        "_waitForPeer",
        "_resumeCall",
        "under",
    )

    def __init__(self, table: ChannelTable, channel: int, maxPayload: int) -> None:
        self.table = table
        self.channel = channel
        # The session's carrier this one is part of: nothing is ever sent
        # on another (a stale channel carrier must not speak on a new one).
        self.under: object = table.root.carrier
        self.session: Optional[Session] = None
        self.parser = _wire.FrameParser(_Nowhere, maxPayload)
        self.retired = False
        self.closed = False
        self.writeBlocked = False
        self.limit = 0
        self.sent = 0
        self.granted = table.window
        self.received = 0
        self._queue: Optional[deque[bytes]] = None
        self._queued = 0
        self._producer: Any = None
        self._waitForPeer = False
        self._resumeCall: Optional[IDelayedCall] = None

    @property
    def transport(self) -> ChannelCarrier:
        """
        Itself: what a channel's session writes to.
        """
        return self

    def adopt(self, session: Session) -> None:
        """
        Belong to C{session}: from now on frames go to it.
        """
        self.session = session
        self.parser.setReceiver(session)

    # What the channel's session calls as its carrier's transport

    def write(self, data: bytes) -> None:
        """
        Send C{data} (frames of the channel) to the peer's channel.
        """
        if self.closed or (self.retired and not self._waitForPeer):
            return
        if self._queue is None and self.sent + len(data) <= self.limit:
            self.sent += len(data)
            self.table.sendEnvelope(self, (data,), len(data))
            return
        self._hold(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """
        Send the concatenation of C{data}.
        """
        pieces = list(data)
        n = 0
        for piece in pieces:
            n += len(piece)
        if self.closed or (self.retired and not self._waitForPeer):
            return
        if self._queue is None and self.sent + n <= self.limit:
            self.sent += n
            self.table.sendEnvelope(self, pieces, n)
            return
        for piece in pieces:
            self._hold(piece)

    def _hold(self, data: bytes) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(data)
        self._queued += len(data)
        self._flush()
        if self._queue is not None and not self.writeBlocked:
            self.writeBlocked = True
            producer = self._producer
            if producer is not None:
                producer.pauseProducing()

    def _flush(self) -> None:
        """
        Send what the window now allows of what was held back.
        """
        queue = self._queue
        if queue is None or self.closed:
            return
        room = self.limit - self.sent
        while queue and room > 0:
            piece = queue[0]
            if len(piece) <= room:
                queue.popleft()
            else:
                queue[0] = piece[room:]
                piece = piece[:room]
            room -= len(piece)
            self._queued -= len(piece)
            self.sent += len(piece)
            self.table.sendEnvelope(self, (piece,), len(piece))
        if not queue:
            self._queue = None
            if self.writeBlocked and not self.table.writeBlocked:
                self.writeBlocked = False
                producer = self._producer
                if producer is not None:
                    producer.resumeProducing()

    @property
    def queued(self) -> int:
        """
        Bytes held back for want of window.
        """
        return self._queued

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producer = producer
        if self.writeBlocked or self.table.writeBlocked:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    def getPeer(self) -> IAddress:
        return self.table.peerAddress()

    def getHost(self) -> IAddress:
        return self.table.hostAddress()

    # What the session's carrier is told, through the table

    def windowGranted(self, limit: int) -> None:
        """
        The peer lets us send up to C{limit} bytes.
        """
        if limit > self.limit:
            self.limit = limit
            self._flush()
            if self._queue is None and self.writeBlocked and not self.table.writeBlocked:
                self.writeBlocked = False
                producer = self._producer
                if producer is not None:
                    producer.resumeProducing()

    def carrierBlocked(self, blocked: bool) -> None:
        """
        The session's carrier is (or no longer is) full.
        """
        producer = self._producer
        if producer is None:
            return
        if blocked:
            producer.pauseProducing()
        elif self._queue is None:
            self.writeBlocked = False
            producer.resumeProducing()

    def frameStarted(self, length: int) -> None:
        """
        A C{CHANNEL} frame of C{length} bytes for us begins.

        @raise ProtocolViolation: it goes past the window we granted.
        """
        if self.received + length > self.granted:
            raise ProtocolViolation(
                "channel %d: %d bytes past the window of %d"
                % (self.channel, self.received + length - self.granted, self.granted)
            )
        self.received += length

    def deliver(self, data: bytes) -> None:
        """
        Bytes of the channel's frames arrived: parse them (a paused parser
        keeps them, within the window), and grant more window as they are
        read.
        """
        if self.retired and not self._waitForPeer:
            return
        session = self.session
        if session is None:
            return
        session.reading(self.parser.feed, data)
        self._grant()

    def _grant(self) -> None:
        consumed = self.received - self.parser.pendingBytes
        window = self.table.window
        if self.granted - consumed <= window // 2 and not self.closed:
            self.granted = consumed + window
            self.table.sendFrame(_wire.encodeChannelWindow(self.channel, self.granted), self)

    def pauseReading(self) -> None:
        """
        The channel's application paused: keep what arrives, grant nothing
        more.
        """
        self._cancelResume()
        self.parser.pause()

    def resumeReading(self) -> None:
        """
        Deliver what was kept, in the next reactor turn.
        """
        if self._resumeCall is None and not self.closed:
            self._resumeCall = self.table.clock.callLater(0, self._resumeParser)

    def _resumeParser(self) -> None:
        self._resumeCall = None
        if self.closed or self.session is None:
            return
        try:
            self.session.reading(lambda _: self.parser.resume(), b"")
        except (_wire.FrameError, ProtocolViolation) as e:
            self.table.channelFailed(self.channel, str(e))
            return
        self._grant()

    def _cancelResume(self) -> None:
        call, self._resumeCall = self._resumeCall, None
        if call is not None and call.active():
            call.cancel()

    def retire(
        self, reason: str, graceful: bool = False, waitForPeer: bool = False, patient: bool = False
    ) -> None:
        """
        The channel lets go of this carrier: the peer's channel is told at
        once with a C{CHANNEL_CLOSE} (graceful or not, with the reason if
        the channel was aborted), or (if C{waitForPeer}, a finished channel
        waiting to know its last acknowledgement arrived) once the peer's
        channel closes it.  What is held back for want of window is
        dropped: a channel closes gracefully only once the peer
        acknowledged all of it, and otherwise it no longer matters.
        """
        if self.retired:
            return
        self.retired = True
        self._producer = None
        if self.closed:
            return
        session = self.session
        if waitForPeer:
            # Until the peer's channel closes it too, which confirms that it
            # read everything (our abort, told in our close, if we abort).
            self._waitForPeer = True
            if session is not None:
                session.carrierClosing(self)
                aborting = session.abortingNotice
                if aborting is not None:
                    self.table.sendFrame(
                        _wire.encodeChannelClose(self.channel, False, aborting), self
                    )
            return
        self._sendClose(graceful, session.endNotice if session is not None else None)

    def _sendClose(self, graceful: bool, notice: Optional[str] = None) -> None:
        self.table.sendFrame(_wire.encodeChannelClose(self.channel, graceful, notice), self)
        self.table.remember(self.channel, graceful, notice)
        self._close()

    def _close(self) -> None:
        """
        Nothing more goes in or out.
        """
        self.closed = True
        self.retired = True
        self._queue = None
        self._queued = 0
        self._cancelResume()
        self.parser.setReceiver(_Nowhere)
        session = self.session
        if session is not None:
            session.carrierClosed(self)

    def lost(self, clean: bool, reason: str) -> None:
        """
        This carrier is over: the session's carrier was lost (C{clean} is
        false), or the peer's channel closed it (C{clean} if it did so
        after reading everything).
        """
        if self.closed:
            return
        session = self.session
        self.closed = True
        if session is not None:
            session.carrierLost(self, reason, clean=clean)
        self._close()

    def abandon(self) -> None:
        """
        The reactor is stopping: forget this carrier.
        """
        self.retired = self.closed = True
        self._cancelResume()


_Nowhere = _wire.NOWHERE


class _Entry:
    """
    A channel as its session's table knows it.

    @ivar channel: its number.
    @ivar name: its name.
    @ivar session: the session that runs its stream.
    @ivar carrier: its carrier on the session's current carrier, if any.
    @ivar opening: we asked the peer to open it and have no answer yet.
    @ivar attached: its carrier was synchronised with the peer's (an
        answer to the opening, or the peer's resume position, arrived).
    @ivar opened: fires with the protocol once the peer accepted it (ours).
    @ivar factory: builds its protocol once accepted (ours).
    """

    __slots__ = ("channel", "name", "session", "carrier", "opening", "attached", "opened", "factory")

    def __init__(self, channel: int, name: str, session: Session) -> None:
        self.channel = channel
        self.name = name
        self.session = session
        self.carrier: Optional[ChannelCarrier] = None
        self.opening = False
        self.attached = False
        self.opened: Optional[Deferred[IProtocol]] = None
        self.factory: Optional[IProtocolFactory] = None


class ChannelTable:
    """
    The channels of one session (besides channel 0, its own stream).

    @ivar root: the session.
    @ivar window: how many bytes we grant a channel at a time.
    @ivar maxChannels: how many channels may be open at once.
    @ivar writeBlocked: the session's carrier is full.
    @ivar opened: how many channels were ever opened (both ways).
    """

    log = Logger()

    def __init__(self, root: Session) -> None:
        self.root = root
        self.clock = root.clock
        options = root.options
        self.window: int = options.channelWindow
        self.maxChannels: int = options.maxChannels
        self._maxPayload = options.maxFrame
        self._entries: dict[int, _Entry] = {}
        self._closed: deque[tuple[int, bool, Optional[str]]] = deque(maxlen=CLOSED_MEMORY)
        self._peerHighest = 0
        self._next = 1 if root.isClient else 2
        self._current: Optional[ChannelCarrier] = None
        self._currentLeft = 0
        self.writeBlocked = False
        self.opened = 0
        self._turn = 0
        self._needAck: dict[Session, None] = {}
        self._ackCall: Optional[IDelayedCall] = None
        self._names: Optional[Mapping[int, str]] = None
        self._batch: Optional[list[bytes]] = None
        self._batchBytes = 0
        self._batchCarrier: Any = None

    def __len__(self) -> int:
        return len(self._entries)

    def sessions(self) -> list[Session]:
        """
        The sessions of the open channels, by channel number.
        """
        return [self._entries[k].session for k in sorted(self._entries)]

    def names(self) -> Mapping[int, str]:
        """
        The name of every open channel, by number (read-only; built once
        until a channel opens or closes, so that a snapshot of every
        channel, which asks once per channel, is not quadratic).
        """
        names = self._names
        if names is None:
            names = self._names = MappingProxyType({k: e.name for k, e in self._entries.items()})
        return names

    def _add(self, entry: _Entry) -> None:
        self._entries[entry.channel] = entry
        self._names = None

    def _remove(self, channel: int) -> Optional[_Entry]:
        self._names = None
        return self._entries.pop(channel, None)

    # Output to the session's carrier

    def sendEnvelope(self, sender: ChannelCarrier, pieces: Iterable[bytes], length: int) -> None:
        """
        Send C{pieces} (C{length} bytes of channel frames) from C{sender},
        if the session's carrier is still the one it is part of.
        """
        carrier = self.root.carrier
        if carrier is not None and carrier is sender.under:
            batch = self._batch
            if batch is not None and carrier is self._batchCarrier:
                batch.append(_wire.channelHead(sender.channel, length))
                batch.extend(pieces)
                self._batchBytes += length
                if self._batchBytes >= BATCH_LIMIT:
                    self._sendBatch()
            else:
                carrier.transport.writeSequence([_wire.channelHead(sender.channel, length), *pieces])

    def sendFrame(self, frame: bytes, sender: Optional[ChannelCarrier] = None) -> None:
        """
        Send a channel control frame on the session's carrier (if it is
        still C{sender}'s, when given).
        """
        carrier = self.root.carrier
        if carrier is not None and (sender is None or carrier is sender.under):
            batch = self._batch
            if batch is not None and carrier is self._batchCarrier:
                batch.append(frame)
                self._batchBytes += len(frame)
                if self._batchBytes >= BATCH_LIMIT:
                    self._sendBatch()
            else:
                carrier.transport.write(frame)

    def holdOutput(self) -> bool:
        """
        From now until L{flushOutput}, gather what the channels send on the
        session's carrier and send it in one write then (in the order it
        was sent), rather than one write per frame.  Nothing but the
        channels may write on the carrier meanwhile.

        @return: whether this call started the gathering (and its caller
            is the one to flush); false if it was already on.
        """
        if self._batch is not None or self.root.carrier is None:
            return False
        self._batch = []
        self._batchBytes = 0
        self._batchCarrier = self.root.carrier
        return True

    def _sendBatch(self) -> None:
        """
        Send what was gathered so far, and go on gathering: the carrier's
        transport sees the bytes, so a full one pauses the producers in
        time (a streaming producer writes until it is paused).
        """
        batch = self._batch
        assert batch is not None
        self._batch = []
        self._batchBytes = 0
        carrier = self.root.carrier
        if carrier is not None and carrier is self._batchCarrier:
            carrier.transport.writeSequence(batch)

    def flushOutput(self) -> None:
        """
        Send what was gathered since L{holdOutput} on the carrier it was
        gathered for, if that is still the session's carrier or has not
        been let go of yet (else it is dropped, as it would have been lost
        with that carrier: the channels resend it after the resume).
        """
        batch, self._batch = self._batch, None
        under, self._batchCarrier = self._batchCarrier, None
        if batch and under is not None and (under is self.root.carrier or not under.retired):
            under.transport.writeSequence(batch)

    def peerAddress(self) -> IAddress:
        peer = self.root.lastPeer
        assert peer is not None
        return peer

    def hostAddress(self) -> IAddress:
        host = self.root.lastHost
        assert host is not None
        return host

    # Opening

    def open(self, factory: IProtocolFactory, name: str) -> Deferred[IProtocol]:
        """
        Ask the peer to open a channel named C{name}; its protocol is built
        by C{factory} once the peer accepts.

        @return: fires with the protocol (connected), or fails with
            L{ChannelRefused}.
        """
        encoded = name.encode("utf-8")
        if len(encoded) > _wire.MAX_CHANNEL_NAME:
            raise ValueError(
                "channel name of %d bytes; at most %d" % (len(encoded), _wire.MAX_CHANNEL_NAME)
            )
        root = self.root
        if root.ended or root.closingSession:
            return _failed(ChannelRefused("the session is over"))
        if len(self._entries) >= self.maxChannels:
            return _failed(
                ChannelRefused("this side's channel limit (%d) is reached" % (self.maxChannels,))
            )
        if self._next > _wire.MAX_CHANNEL_ID:
            return _failed(ChannelRefused("channel numbers are used up"))
        channel = self._next
        self._next += 2
        entry = _Entry(channel, name, self._makeSession(channel))
        entry.opening = True
        entry.factory = factory
        d: Deferred[IProtocol] = Deferred(lambda _: self._cancelOpen(entry))
        entry.opened = d
        self._add(entry)
        self.opened += 1
        if root.carrier is not None:
            entry.carrier = self._newCarrier(channel)
            self.sendFrame(_wire.encodeChannelOpen(channel, self.window, encoded))
        return d

    def _cancelOpen(self, entry: _Entry) -> None:
        entry.opened = None
        if entry.opening:
            # The peer may have opened it: it hears it closed.
            self._drop(entry, ChannelRefused("opening cancelled"))

    def _makeSession(self, channel: int) -> Session:
        root = self.root
        session = type(root)(
            root.clock,
            root.sessionID,
            root.key,
            root.isClient,
            root.options,
            root.policy,
            NO_UPCALLS,
        )
        session.makeChannel(root, channel)
        return session

    def _newCarrier(self, channel: int) -> ChannelCarrier:
        return ChannelCarrier(self, channel, self._maxPayload)

    def _acceptor(self, name: str) -> Optional[IProtocolFactory]:
        root = self.root
        factories: Optional[Mapping[str, IProtocolFactory]] = root.channelFactories
        if factories is None:
            return root.appFactory if name == "" else None
        return factories.get(name)

    def _peerOpens(self, channel: int, window: int, rawName: bytes) -> None:
        if channel % 2 == self._next % 2 or channel == 0:
            raise ProtocolViolation("channel %d is not the peer's to open" % (channel,))
        entry = self._entries.get(channel)
        if entry is None and channel <= self._peerHighest:
            # Asked again after a resume for a channel we opened and closed
            # since (the peer heard neither): it is over.
            self.sendFrame(self._closedAnswer(channel))
            return
        self._peerHighest = max(self._peerHighest, channel)
        if entry is not None:
            # Asked again after a resume: the peer never heard our answer,
            # and our resume position for it answers now.
            carrier = entry.carrier
            if carrier is not None and not entry.attached:
                entry.attached = True
                carrier.limit = window
                entry.session.attach(carrier, 0)
            return
        try:
            name = rawName.decode("utf-8")
        except UnicodeDecodeError:
            self.sendFrame(_wire.encodeChannelRefused(channel, "the name is not UTF-8"))
            return
        root = self.root
        if root.ended or root.closingSession:
            self.sendFrame(_wire.encodeChannelRefused(channel, "the session is closing"))
            return
        if len(self._entries) >= self.maxChannels:
            self.log.info(
                "session {sid}: channel {name!r} refused: {n} channels open",
                sid=root.hexID,
                name=name,
                n=len(self._entries),
            )
            self.sendFrame(
                _wire.encodeChannelRefused(
                    channel, "channel limit (%d) reached" % (self.maxChannels,)
                )
            )
            return
        budget = root.channelAdmission
        if budget is not None:
            refusal = budget()
            if refusal is not None:
                self.sendFrame(_wire.encodeChannelRefused(channel, refusal))
                return
        factory = self._acceptor(name)
        if factory is None:
            self.sendFrame(
                _wire.encodeChannelRefused(channel, "no channel named %r here" % (name,))
            )
            return
        if root.transport is not None and any(
            answer is False
            for answer in root.upcalls.notify("channelRequested", root.transport, name)
        ):
            self.sendFrame(_wire.encodeChannelRefused(channel, "refused by the application"))
            return
        peer = root.lastPeer
        try:
            app = factory.buildProtocol(peer)  # type: ignore[arg-type]
        except Exception:
            self.log.failure("session {sid}: building channel {name!r} raised", sid=root.hexID, name=name)
            app = None
        if app is None:
            self.sendFrame(_wire.encodeChannelRefused(channel, "refused by the application"))
            return
        entry = _Entry(channel, name, self._makeSession(channel))
        self._add(entry)
        self.opened += 1
        carrier = entry.carrier = self._newCarrier(channel)
        carrier.limit = window
        entry.attached = True
        self.sendFrame(_wire.encodeChannelOpened(channel, self.window))
        entry.session.attach(carrier, 0)
        self._connect(entry, app)

    def _connect(self, entry: _Entry, app: IProtocol) -> None:
        from ._transport import MigrateTransport

        session = entry.session
        session.connectApp(app, MigrateTransport(session))

    def _accepted(self, channel: int, window: int) -> None:
        entry = self._entries.get(channel)
        if entry is None:
            return
        if not entry.opening or entry.attached:
            raise ProtocolViolation("channel %d accepted twice" % (channel,))
        self._confirm(entry, window, 0)

    def _confirm(self, entry: _Entry, window: int, received: int) -> None:
        entry.opening = False
        entry.attached = True
        carrier = entry.carrier
        assert carrier is not None
        carrier.limit = window
        session = entry.session
        session.engine.checkResume(received)
        session.attach(carrier, received)
        factory, entry.factory = entry.factory, None
        d, entry.opened = entry.opened, None
        app: Optional[IProtocol] = None
        if factory is not None:
            try:
                app = factory.buildProtocol(self.root.lastPeer)  # type: ignore[arg-type]
            except Exception:
                self.log.failure("session {sid}: a channel factory raised", sid=self.root.hexID)
                app = None
        if app is None:
            self._drop(entry, ChannelRefused("the factory built no protocol"))
            if d is not None:
                d.errback(Failure(ChannelRefused("the factory built no protocol")))
            return
        self._connect(entry, app)
        if d is not None:
            d.callback(app)

    def _refused(self, channel: int, reason: str) -> None:
        entry = self._entries.get(channel)
        if entry is None or not entry.opening:
            return
        d, entry.opened = entry.opened, None
        self._forget(entry, graceful=True)
        entry.session.end(ChannelRefused(reason))
        if d is not None:
            d.errback(Failure(ChannelRefused(reason)))

    # Resumes

    def carrierAttached(self) -> None:
        """
        The session has a new carrier: give every channel one on it and
        tell the peer how far we received each.
        """
        # Carriers of a session's carrier that was replaced without being
        # lost first (a resume that overtook the old one's loss) are over.
        self.carrierLost("replaced")
        frames = []
        for channel, entry in self._entries.items():
            entry.carrier = self._newCarrier(channel)
            entry.attached = False
            if entry.opening:
                frames.append(
                    _wire.encodeChannelOpen(channel, self.window, entry.name.encode("utf-8"))
                )
            else:
                frames.append(
                    _wire.encodeChannelResume(
                        channel, entry.session.engine.received, self.window
                    )
                )
        if frames:
            carrier = self.root.carrier
            assert carrier is not None
            carrier.transport.writeSequence(frames)

    def _peerResumes(self, channel: int, received: int, window: int) -> None:
        entry = self._entries.get(channel)
        if entry is None:
            self.sendFrame(self._closedAnswer(channel))
            return
        if entry.attached:
            raise ProtocolViolation("channel %d resumed twice on one carrier" % (channel,))
        carrier = entry.carrier
        if carrier is None:
            raise ProtocolViolation("channel %d resumed before the session" % (channel,))
        if entry.opening:
            self._confirm(entry, window, received)
            return
        try:
            entry.session.engine.checkResume(received)
        except ProtocolViolation as e:
            self.channelFailed(channel, str(e))
            return
        entry.attached = True
        carrier.limit = window
        entry.session.countHandoff()
        entry.session.attach(carrier, received)

    def carrierLost(self, reason: str) -> None:
        """
        The session's carrier is gone: so are its channel carriers.
        """
        self._current = None
        self.writeBlocked = False
        for entry in list(self._entries.values()):
            carrier, entry.carrier = entry.carrier, None
            entry.attached = False
            if carrier is not None:
                carrier.lost(False, reason)

    def setWriteBlocked(self, blocked: bool) -> None:
        """
        The session's carrier is full (or no longer): pause (or resume)
        every channel's producer.
        """
        if blocked == self.writeBlocked:
            return
        self.writeBlocked = blocked
        entries = list(self._entries.values())
        if not blocked and entries:
            # Each channel in turn is resumed first: the one whose writes
            # fill the carrier again must not always be the same.
            start = self._turn % len(entries)
            self._turn += 1
            entries = entries[start:] + entries[:start]
        for entry in entries:
            if not blocked and self.writeBlocked:
                # Full again: the others wait for the next drain (they are
                # still paused), rather than write into a full carrier.
                break
            carrier = entry.carrier
            if carrier is not None and not carrier.closed:
                carrier.carrierBlocked(blocked)

    # Input from the session's carrier

    def frameStarted(self, channel: int, length: int) -> None:
        entry = self._entries.get(channel)
        carrier = entry.carrier if entry is not None else None
        if carrier is None or carrier.closed or not entry.attached:  # type: ignore[union-attr]
            # A channel we closed (its frames were on the way), or one the
            # peer has no right to send on: dropped.
            self._current = None
            return
        carrier.frameStarted(length)
        self._current = carrier

    def payload(self, data: bytes) -> None:
        carrier = self._current
        if carrier is None:
            return
        try:
            carrier.deliver(data)
        except (_wire.FrameError, ProtocolViolation) as e:
            self._current = None
            self.channelFailed(carrier.channel, str(e))

    def controlFrame(self, frameType: int, body: bytes) -> None:
        """
        A channel control frame from the peer.

        @raise ProtocolViolation: it breaks the channel rules.
        """
        try:
            if frameType == _wire.CHANNEL_WINDOW:
                channel, limit = _wire.decodeChannelWindow(body)
                entry = self._entries.get(channel)
                if entry is not None and entry.carrier is not None and entry.attached:
                    entry.carrier.windowGranted(limit)
            elif frameType == _wire.CHANNEL_OPEN:
                self._peerOpens(*_wire.decodeChannelOpen(body))
            elif frameType == _wire.CHANNEL_OPENED:
                self._accepted(*_wire.decodeChannelOpened(body))
            elif frameType == _wire.CHANNEL_REFUSED:
                self._refused(*_wire.decodeChannelRefused(body))
            elif frameType == _wire.CHANNEL_RESUME:
                self._peerResumes(*_wire.decodeChannelResume(body))
            elif frameType == _wire.CHANNEL_CLOSE:
                self._peerCloses(*_wire.decodeChannelClose(body))
            else:
                raise ProtocolViolation("unexpected frame type 0x%02x" % (frameType,))
        except _wire.FrameError as e:
            raise ProtocolViolation(str(e))

    def _peerCloses(self, channel: int, graceful: bool, aborted: Optional[str]) -> None:
        confirmation = graceful and aborted is None
        entry = self._entries.get(channel)
        carrier = entry.carrier if entry is not None else None
        if not confirmation and not self.writeBlocked:
            # Our close in return tells the peer's channel, which waits for
            # it, that we read its abort (never answered itself, so the two
            # sides do not answer each other forever).
            if carrier is None or carrier.closed:
                self.sendFrame(_wire.encodeChannelClose(channel, True))
            else:
                self.sendFrame(_wire.encodeChannelClose(channel, True), carrier)
        if entry is None or carrier is None or carrier.closed:
            return
        entry.carrier = None
        session = entry.session
        carrier.lost(graceful and aborted is None, "closed by the peer")
        if not session.ended:
            if aborted is not None:
                reason: Exception = PeerAborted("peer aborted the channel: %s" % (aborted,))
            elif graceful:
                reason = ChannelReset("the peer closed the channel")
            else:
                reason = ChannelReset("the peer's channel is gone")
            session.end(reason)

    def channelFailed(self, channel: int, reason: str) -> None:
        """
        The peer broke channel C{channel}'s rules: drop that channel only.
        """
        entry = self._entries.get(channel)
        if entry is None:
            return
        self.log.warn(
            "session {sid}: channel {channel} dropped: {reason}",
            sid=self.root.hexID,
            channel=channel,
            reason=reason,
        )
        self._drop(entry, ChannelReset("protocol error on the channel: %s" % (reason,)))

    def _drop(self, entry: _Entry, reason: Exception) -> None:
        carrier, entry.carrier = entry.carrier, None
        if carrier is not None and not carrier.closed:
            carrier._sendClose(False)
        self._forget(entry, graceful=False)
        entry.session.end(reason)

    # Ends

    def _forget(self, entry: _Entry, graceful: bool) -> None:
        if self._remove(entry.channel) is not None:
            # (A channel the peer aborted counts as closed cleanly: we read
            # its abort.)
            graceful = graceful or isinstance(entry.session.endReason, PeerAborted)
            self.remember(entry.channel, graceful, entry.session.endNotice)

    def remember(self, channel: int, graceful: bool, notice: Optional[str]) -> None:
        """
        Keep how channel C{channel} closed (for a while: the last
        L{CLOSED_MEMORY}), to tell a peer that resumes it.
        """
        for i, (known, _, _) in enumerate(self._closed):
            if known == channel:
                del self._closed[i]
                break
        self._closed.append((channel, graceful, notice))

    def _closedAnswer(self, channel: int) -> bytes:
        """
        What to tell a peer that asks for a channel we no longer have: how
        it closed, if we remember; else that it is gone.
        """
        for known, graceful, notice in self._closed:
            if known == channel:
                return _wire.encodeChannelClose(channel, graceful, notice)
        return _wire.encodeChannelClose(channel, False)

    def channelEnded(self, session: Session) -> None:
        """
        The session of one of our channels ended.
        """
        channel = session.channelID
        entry = self._entries.get(channel)
        if entry is None or entry.session is not session:
            return
        self._forget(entry, graceful=isinstance(session.endReason, ConnectionDone))
        d, entry.opened = entry.opened, None
        if d is not None:
            d.errback(Failure(ChannelRefused("the channel ended before it opened")))
        self.root.channelSettled()

    def sessionEnded(self, reason: Exception) -> None:
        """
        The session ended: so does every channel, with the same reason.
        """
        self._current = None
        self._stopAcks()
        for entry in list(self._entries.values()):
            entry.carrier = None
            entry.session.abandonCarrier()
            d, entry.opened = entry.opened, None
            entry.session.end(reason)
            if d is not None:
                d.errback(Failure(ChannelRefused("the session ended: %s" % (reason,))))
        self._entries.clear()
        self._names = None

    def shutdown(self) -> None:
        """
        The reactor is stopping: end every channel now.
        """
        for session in self.sessions():
            session.shutdown()

    # Delayed acknowledgements

    def ackSoon(self, session: Session) -> None:
        """
        Channel C{session} received data: acknowledge it within
        C{ackDelay}, on one timer for every channel of the session.
        """
        self._needAck[session] = None
        if self._ackCall is None:
            self._ackCall = self.clock.callLater(self.root.options.ackDelay, self._ackAll)

    def _ackAll(self) -> None:
        self._ackCall = None
        waiting, self._needAck = self._needAck, {}
        # One write for all of them (as many as the channels that read).
        mine = self.holdOutput()
        try:
            for session in waiting:
                session.acknowledgeNow()
        finally:
            if mine:
                self.flushOutput()

    def _stopAcks(self) -> None:
        call, self._ackCall = self._ackCall, None
        if call is not None and call.active():
            call.cancel()
        self._needAck = {}

    # Hibernation

    def checkpoint(self) -> dict[str, Any]:
        """
        The channels as stored with their session's checkpoint (see
        L{SessionRecord.channels<migrate.interfaces.SessionRecord>}): each
        migratable protocol is asked for its state.
        """
        entries = []
        for channel in sorted(self._entries):
            entry = self._entries[channel]
            session = entry.session
            engine = session.engine
            state: Optional[bytes] = None
            migratable = IMigratable(session.app, None)
            if migratable is not None and not entry.opening:
                try:
                    state = migratable.saveMigrationState()
                except Exception:
                    self.log.failure(
                        "channel {sid}: saveMigrationState raised; keeping it in memory",
                        sid=session.hexID,
                    )
            entries.append(
                {
                    "channel": channel,
                    "name": entry.name,
                    "opening": entry.opening,
                    "sent": engine.sent,
                    "acked": engine.acked,
                    "received": engine.received,
                    "finSent": engine.finSent,
                    "finReceived": engine.finReceived,
                    "handoffs": session.handoffs,
                    "buffer": base64.b64encode(engine.unacknowledgedBytes()).decode("ascii"),
                    "appState": base64.b64encode(state).decode("ascii") if state is not None else None,
                }
            )
        return {"next": self._next, "list": entries}

    @staticmethod
    def restorable(channels: Optional[dict[str, Any]]) -> bool:
        """
        Whether every channel of a checkpoint can be rebuilt from it (its
        protocol saved its state, and it was not still opening).
        """
        if channels is None:
            return True
        return all(
            c["appState"] is not None and not c.get("opening") for c in channels["list"]
        )

    def hibernate(self) -> None:
        """
        The session is hibernating: give back the channels' buffers too.
        """
        self._stopAcks()
        for entry in self._entries.values():
            entry.session.hibernate()

    def wake(self, channels: Optional[dict[str, Any]]) -> None:
        """
        A hibernated session kept in memory is resumed: take the channels'
        buffers back from its checkpoint.
        """
        byNumber = {c["channel"]: c for c in (channels or {"list": []})["list"]}
        for channel, entry in self._entries.items():
            stored = byNumber.get(channel)
            entry.session.wakeBuffer(
                base64.b64decode(stored["buffer"]) if stored is not None else None
            )

    def restore(self, channels: dict[str, Any]) -> None:
        """
        Rebuild the channels of a restored session, and their migratable
        protocols (which hear C{restoreMigrationState}, not
        C{connectionMade}).  A channel that cannot be rebuilt is left out:
        the peer hears it was dropped when it resumes.
        """
        from ._transport import MigrateTransport

        root = self.root
        self._next = max(self._next, int(channels["next"]))
        for stored in channels["list"]:
            channel, name = stored["channel"], stored["name"]
            factory = self._acceptor(name)
            state = stored["appState"]
            session = self._makeSession(channel)
            session.restoreStream(
                stored["sent"],
                stored["acked"],
                stored["received"],
                stored["finSent"],
                stored["finReceived"],
                base64.b64decode(stored["buffer"]),
                stored["handoffs"],
                root.detachedSince,
            )
            app: Any = None
            if factory is not None and state is not None:
                try:
                    app = factory.buildProtocol(root.lastPeer)  # type: ignore[arg-type]
                except Exception:
                    self.log.failure("channel {sid}: the factory raised", sid=session.hexID)
            migratable = IMigratable(app, None)
            if migratable is None or state is None:
                self.log.info(
                    "channel {sid} ({name!r}) cannot be restored; dropped",
                    sid=session.hexID,
                    name=name,
                )
                session.end(ChannelReset("not restorable"))
                continue
            transport = MigrateTransport(session)
            session.setApp(app, transport)
            app.transport = transport
            app.connected = True
            entry = _Entry(channel, name, session)
            self._add(entry)
            try:
                migratable.restoreMigrationState(base64.b64decode(state))
            except Exception:
                self.log.failure(
                    "channel {sid}: restoreMigrationState raised; dropped", sid=session.hexID
                )
                self._remove(channel)
                session.dropApp()
                session.end(ChannelReset("application state could not be restored"))

    # Accounting

    def allLingering(self) -> bool:
        """
        (Client) whether every channel is complete and only waits for the
        server's confirmation (which the server's closing of the session's
        carrier gives for all of them).
        """
        return all(entry.session.lingering for entry in self._entries.values())

    def waiting(self) -> bool:
        """
        Whether any channel waits to hear from the peer.
        """
        for entry in self._entries.values():
            if not entry.session.engine.allAcked:
                return True
        return False

    def held(self) -> int:
        """
        Bytes the channels hold for the peer: unacknowledged data, and what
        waits for window.
        """
        total = 0
        for entry in self._entries.values():
            total += entry.session.engine.buffered
            carrier = entry.carrier
            if carrier is not None:
                total += carrier.parser.pendingBytes
        return total


def _failed(reason: Exception) -> Deferred[IProtocol]:
    d: Deferred[IProtocol] = Deferred()
    d.errback(Failure(reason))
    return d


__all__ = ["ChannelCarrier", "ChannelTable", "CLOSED_MEMORY"]
