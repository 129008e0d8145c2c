# -*- test-case-name: tests.test_wire -*-
"""
Migrate's wire format: frame layouts, encoders and an incremental parser.

Every frame starts with a five-byte header: a one-byte frame type and a
four-byte big-endian body length.  Data frames carry an eight-byte cumulative
acknowledgement in front of the payload, so their fixed head is thirteen
bytes; the payload is streamed straight to the receiver as it arrives and is
never reassembled, so a large frame costs no extra copy.  Every other frame
is a small control frame whose body is collected (bounded by
L{MAX_CONTROL_BODY}) and handed over whole.

This module is pure: no reactor, no sockets, no clocks.  The full
specification is C{docs/protocol.md}.

@var VERSION: the protocol version this implementation speaks.
@var MAGIC: the four bytes that open the server's first frame body.
@var MAX_CONTROL_BODY: the largest body a control frame may have.
@var DEFAULT_MAX_PAYLOAD: the default largest data-frame payload accepted.
"""

from __future__ import annotations

from .errors import FrameError

import struct
from typing import Callable, Optional, Protocol

VERSION = 1
#: The highest generation a resume may carry (generations number a
#: session's carriers; advertisement sequence numbers are built on them).
MAX_GENERATION = 2**32 - 1
MAGIC = b"MGRT"

# Frame types: handshake.
SERVER_HELLO = 0x01
OPEN = 0x02
OPEN_ACCEPT = 0x03
OPEN_CONFIRM = 0x04
RESUME = 0x05
RESUME_ACCEPT = 0x06
REJECT = 0x07
OPENED = 0x08

# Frame types: established session.
DATA = 0x10
ACK = 0x11
FIN = 0x12
ABORT = 0x13
PING = 0x14
PONG = 0x15
ADDRESSES = 0x16

# Channels (see docs/protocol.md, "Channels").
CHANNEL = 0x18
CHANNEL_OPEN = 0x19
CHANNEL_OPENED = 0x1A
CHANNEL_REFUSED = 0x1B
CHANNEL_RESUME = 0x1C
CHANNEL_WINDOW = 0x1D
CHANNEL_CLOSE = 0x1E

#: Longest channel name, in bytes of UTF-8.
MAX_CHANNEL_NAME = 200
#: Highest channel number.
MAX_CHANNEL_ID = 2**32 - 1
#: A CHANNEL_CLOSE flag: the channel's carrier closed cleanly (the peer
#: read everything before it); without it, the channel was dropped.
CLOSE_GRACEFUL = 0x01
#: A CHANNEL_CLOSE flag: the channel was aborted; the reason follows.
CLOSE_ABORTED = 0x02

# Reject codes.
REJECT_VERSION = 1
REJECT_UNKNOWN_SESSION = 2
REJECT_BAD_PROOF = 3
REJECT_STALE = 4
REJECT_BUSY = 5
REJECT_PROTOCOL = 6
REJECT_REFUSED = 7

NONCE_SIZE = 32
KEY_SIZE = 32
SID_SIZE = 16
MAC_SIZE = 32

MAX_CONTROL_BODY = 512
MAX_REASON = 200
DEFAULT_MAX_PAYLOAD = 1 << 20

_HEAD = struct.Struct(">BI")
_DATA_HEAD = struct.Struct(">BIQ")
_POS = struct.Struct(">Q")
_CHAN_HEAD = struct.Struct(">BII")
_CHAN_OPEN = struct.Struct(">II")
_CHAN_ID = struct.Struct(">I")
_CHAN_RESUME = struct.Struct(">IQI")
_CHAN_WINDOW = struct.Struct(">IQ")
_CHAN_CLOSE = struct.Struct(">IB")
_U16 = struct.Struct(">H")
_HEAD_SIZE = _HEAD.size
_DATA_HEAD_SIZE = _DATA_HEAD.size
_CHAN_HEAD_SIZE = _CHAN_HEAD.size

#: How much a channel frame may carry beyond the largest data payload (the
#: channel's own frame heads).
CHANNEL_OVERHEAD = 64

_SERVER_HELLO = struct.Struct(">4sBB%ds" % NONCE_SIZE)
_OPEN = struct.Struct(">BB%ds%ds" % (KEY_SIZE, NONCE_SIZE))
_OPEN_ACCEPT = struct.Struct(">%ds%ds%ds" % (KEY_SIZE, SID_SIZE, MAC_SIZE))
_OPEN_CONFIRM = struct.Struct(">%ds" % MAC_SIZE)
_RESUME = struct.Struct(">BB%dsQ%dsQ%ds" % (SID_SIZE, NONCE_SIZE, MAC_SIZE))

#: Handshake flag (in C{SERVER_HELLO}, C{OPEN} and C{RESUME}): the sender's
#: end of this carrier is TLS, so it can bind the handshake to the TLS
#: connection's exporter.
FLAG_TLS = 0x01
_RESUME_ACCEPT = struct.Struct(">Q%ds" % MAC_SIZE)

_CONTROL_SIZES = {
    SERVER_HELLO: _SERVER_HELLO.size,
    OPEN: _OPEN.size,
    OPEN_ACCEPT: _OPEN_ACCEPT.size,
    OPEN_CONFIRM: _OPEN_CONFIRM.size,
    OPENED: 0,
    RESUME: _RESUME.size,
    RESUME_ACCEPT: _RESUME_ACCEPT.size,
    ACK: _POS.size,
    FIN: _POS.size,
    PING: _POS.size,
    PONG: _POS.size,
    CHANNEL_OPENED: _CHAN_OPEN.size,
    CHANNEL_RESUME: _CHAN_RESUME.size,
    CHANNEL_WINDOW: _CHAN_WINDOW.size,
}
MAX_ADDRESSES = 16
_VARIABLE_CONTROL = {
    REJECT: 3 + MAX_REASON,
    ABORT: MAX_REASON,
    ADDRESSES: 8 + 2 + MAX_ADDRESSES * 48 + MAC_SIZE,
    CHANNEL_OPEN: _CHAN_OPEN.size + MAX_CHANNEL_NAME,
    CHANNEL_REFUSED: _CHAN_ID.size + MAX_REASON,
    CHANNEL_CLOSE: _CHAN_CLOSE.size + MAX_REASON,
}


class IFrameReceiver(Protocol):
    """
    What a L{FrameParser} delivers parsed frames to.
    """

    def dataFrameStarted(self, ack: int, length: int) -> None:
        """
        A data frame's head arrived: C{ack} is the peer's cumulative
        acknowledgement and C{length} the payload length that follows.
        """

    def payloadReceived(self, payload: bytes) -> None:
        """
        Some payload bytes of the current data frame.
        """

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        """
        A complete control frame.
        """

    def channelFrameStarted(self, channel: int, length: int) -> None:
        """
        A channel frame's head arrived: C{length} bytes of channel
        C{channel}'s own frames follow.
        """

    def channelPayloadReceived(self, payload: bytes) -> None:
        """
        Some bytes of the current channel frame.
        """


def encodeFrame(frameType: int, body: bytes) -> bytes:
    """
    Encode a control frame.

    @param frameType: the frame type.
    @param body: the frame body.
    @return: the encoded frame.
    """
    return _HEAD.pack(frameType, len(body)) + body


def dataHead(ack: int, length: int) -> bytes:
    """
    Encode the head of a data frame whose payload of C{length} bytes follows.

    @param ack: our cumulative acknowledgement of the peer's stream.
    @param length: payload length.
    """
    return _DATA_HEAD.pack(DATA, length, ack)


def encodeAck(ack: int) -> bytes:
    """
    Encode a standalone acknowledgement.
    """
    return _HEAD.pack(ACK, 8) + _POS.pack(ack)


def encodeFin(ack: int) -> bytes:
    """
    Encode an end-of-stream marker, which also carries an acknowledgement.
    """
    return _HEAD.pack(FIN, 8) + _POS.pack(ack)


def encodePing(token: int) -> bytes:
    """
    Encode a heartbeat with a token the answer echoes.
    """
    return _HEAD.pack(PING, 8) + _POS.pack(token)


def encodePong(body: bytes) -> bytes:
    """
    Encode the answer to a heartbeat whose body (token) was C{body}.
    """
    return _HEAD.pack(PONG, 8) + body


# Flags of an ADDRESSES frame.
ADDRESSES_CONFIGURED = 0x01


#: The longest entry of an advertisement (C{"[IPv6]:port"} in its
#: shortest form fits: at most 47 characters).
MAX_ADDRESS_ENTRY = 47


def addressFits(address: str) -> bool:
    """
    Whether C{address} can be an entry of an advertisement (ASCII, at most
    L{MAX_ADDRESS_ENTRY} characters): the receiver refuses a frame longer
    than L{MAX_ADDRESSES} such entries.
    """
    return address.isascii() and 0 < len(address) <= MAX_ADDRESS_ENTRY


def encodeAddresses(seq: int, flags: int, addresses: list[str], mac: bytes) -> bytes:
    """
    Encode an advertisement of the addresses the sender can be reached at
    (C{"host:port"} each, at most L{MAX_ADDRESSES}), with its proof.

    @param flags: L{ADDRESSES_CONFIGURED} when the sender's operator chose
        the addresses (so they hold behind address translation).
    """
    parts = [_POS.pack(seq), bytes([flags, len(addresses)])]
    for a in addresses:
        raw = a.encode("ascii")
        parts.append(bytes([len(raw)]) + raw)
    parts.append(mac)
    return encodeFrame(ADDRESSES, b"".join(parts))


def decodeAddresses(body: bytes) -> tuple[int, int, list[str], bytes]:
    """
    @return: C{(seq, flags, addresses, mac)}
    @raise FrameError: malformed.
    """
    try:
        seq = _POS.unpack_from(body)[0]
        flags = body[8]
        count = body[9]
        offset = 10
        addresses = []
        if count > MAX_ADDRESSES:
            raise FrameError("too many addresses")
        for _ in range(count):
            n = body[offset]
            raw = body[offset + 1 : offset + 1 + n]
            if len(raw) != n:
                raise FrameError("truncated address")
            addresses.append(raw.decode("ascii"))
            offset += 1 + n
        mac = body[offset:]
    except (IndexError, struct.error, UnicodeDecodeError):
        raise FrameError("malformed address advertisement")
    if len(mac) != MAC_SIZE:
        raise FrameError("malformed address advertisement")
    return int(seq), flags, addresses, mac


def decodePosition(body: bytes) -> int:
    """
    Decode the body of an L{ACK} or L{FIN} frame.
    """
    return int(_POS.unpack(body)[0])


def encodeServerHello(nonce: bytes, flags: int = 0) -> bytes:
    """
    Encode the server's greeting: magic, version, flags, fresh nonce.
    """
    return encodeFrame(SERVER_HELLO, _SERVER_HELLO.pack(MAGIC, VERSION, flags, nonce))


def decodeServerHello(body: bytes) -> tuple[int, bytes, int]:
    """
    Decode a server greeting.

    @return: C{(version, nonce, flags)}
    @raise FrameError: the magic is wrong.
    """
    magic, version, flags, nonce = _SERVER_HELLO.unpack(body)
    if magic != MAGIC:
        raise FrameError("not a Migrate server (bad magic)")
    return version, nonce, flags


def encodeOpen(publicKey: bytes, nonce: bytes, flags: int = 0) -> bytes:
    """
    Encode a session opening request.
    """
    return encodeFrame(OPEN, _OPEN.pack(VERSION, flags, publicKey, nonce))


def decodeOpen(body: bytes) -> tuple[int, bytes, bytes, int]:
    """
    @return: C{(version, publicKey, nonce, flags)}
    """
    version, flags, publicKey, nonce = _OPEN.unpack(body)
    return version, publicKey, nonce, flags


def encodeOpenAccept(publicKey: bytes, sessionID: bytes, mac: bytes) -> bytes:
    """
    Encode the server's answer to an opening.
    """
    return encodeFrame(OPEN_ACCEPT, _OPEN_ACCEPT.pack(publicKey, sessionID, mac))


def decodeOpenAccept(body: bytes) -> tuple[bytes, bytes, bytes]:
    """
    @return: C{(publicKey, sessionID, mac)}
    """
    publicKey, sessionID, mac = _OPEN_ACCEPT.unpack(body)
    return publicKey, sessionID, mac


def encodeOpened() -> bytes:
    """
    Encode the server's word that the session now exists.
    """
    return encodeFrame(OPENED, b"")


def encodeOpenConfirm(mac: bytes) -> bytes:
    """
    Encode the client's proof that it holds the new session key.
    """
    return encodeFrame(OPEN_CONFIRM, mac)


def encodeResume(
    sessionID: bytes, generation: int, nonce: bytes, received: int, mac: bytes, flags: int = 0
) -> bytes:
    """
    Encode a resume request.
    """
    return encodeFrame(
        RESUME, _RESUME.pack(VERSION, flags, sessionID, generation, nonce, received, mac)
    )


def decodeResume(body: bytes) -> tuple[int, bytes, int, bytes, int, bytes, int]:
    """
    @return: C{(version, sessionID, generation, nonce, received, mac, flags)}
    """
    version, flags, sessionID, generation, nonce, received, mac = _RESUME.unpack(body)
    return version, sessionID, generation, nonce, received, mac, flags


def encodeResumeAccept(received: int, mac: bytes) -> bytes:
    """
    Encode the server's proof of a resume, with its received position.
    """
    return encodeFrame(RESUME_ACCEPT, _RESUME_ACCEPT.pack(received, mac))


def decodeResumeAccept(body: bytes) -> tuple[int, bytes]:
    """
    @return: C{(received, mac)}
    """
    received, mac = _RESUME_ACCEPT.unpack(body)
    return received, mac


def encodeReject(code: int, reason: str, retryAfter: float = 0.0) -> bytes:
    """
    Encode a handshake refusal with a short human-readable reason.

    @param retryAfter: for L{REJECT_BUSY}, seconds after which trying again
        may succeed (sent in milliseconds, at most 65.535 s).
    """
    text = reason.encode("utf-8", "replace")[:MAX_REASON]
    millis = max(0, min(0xFFFF, round(retryAfter * 1000)))
    return encodeFrame(REJECT, bytes([code]) + _U16.pack(millis) + text)


def decodeReject(body: bytes) -> tuple[int, float, str]:
    """
    @return: C{(code, retryAfter, reason)}
    @raise FrameError: too short.
    """
    if len(body) < 3:
        raise FrameError("malformed reject")
    return body[0], _U16.unpack_from(body, 1)[0] / 1000.0, body[3:].decode("utf-8", "replace")


def encodeAbort(reason: str) -> bytes:
    """
    Encode an abort of the session.
    """
    return encodeFrame(ABORT, reason.encode("utf-8", "replace")[:MAX_REASON])


def channelHead(channel: int, length: int) -> bytes:
    """
    Encode the head of a channel frame carrying C{length} bytes of channel
    C{channel}'s frames.
    """
    return _CHAN_HEAD.pack(CHANNEL, length, channel)


def encodeChannelOpen(channel: int, window: int, name: bytes) -> bytes:
    """
    Encode a request to open channel C{channel}, named C{name} (at most
    L{MAX_CHANNEL_NAME} bytes), granting the peer C{window} bytes.
    """
    if len(name) > MAX_CHANNEL_NAME:
        raise ValueError("channel name longer than %d bytes" % (MAX_CHANNEL_NAME,))
    return encodeFrame(CHANNEL_OPEN, _CHAN_OPEN.pack(channel, window) + name)


def decodeChannelOpen(body: bytes) -> tuple[int, int, bytes]:
    """
    Decode a C{CHANNEL_OPEN} body.

    @return: the channel, the window it grants, and its name.
    @raise FrameError: too short.
    """
    if len(body) < _CHAN_OPEN.size:
        raise FrameError("short CHANNEL_OPEN")
    channel, window = _CHAN_OPEN.unpack_from(body)
    return channel, window, body[_CHAN_OPEN.size :]


def encodeChannelOpened(channel: int, window: int) -> bytes:
    """
    Encode the acceptance of channel C{channel}, granting C{window} bytes.
    """
    return encodeFrame(CHANNEL_OPENED, _CHAN_OPEN.pack(channel, window))


def decodeChannelOpened(body: bytes) -> tuple[int, int]:
    """
    Decode a C{CHANNEL_OPENED} body: the channel and the window it grants.
    """
    channel, window = _CHAN_OPEN.unpack(body)
    return channel, window


def encodeChannelRefused(channel: int, reason: str) -> bytes:
    """
    Encode the refusal of channel C{channel}.
    """
    text = reason.encode("utf-8", "replace")[:MAX_REASON]
    return encodeFrame(CHANNEL_REFUSED, _CHAN_ID.pack(channel) + text)


def decodeChannelRefused(body: bytes) -> tuple[int, str]:
    """
    Decode a C{CHANNEL_REFUSED} body: the channel and the reason.

    @raise FrameError: too short.
    """
    if len(body) < _CHAN_ID.size:
        raise FrameError("short CHANNEL_REFUSED")
    (channel,) = _CHAN_ID.unpack_from(body)
    return channel, body[_CHAN_ID.size :].decode("utf-8", "replace")


def encodeChannelResume(channel: int, received: int, window: int) -> bytes:
    """
    Encode how far we received channel C{channel}'s stream, for a carrier
    that just took over the session, granting C{window} bytes on it.
    """
    return encodeFrame(CHANNEL_RESUME, _CHAN_RESUME.pack(channel, received, window))


def decodeChannelResume(body: bytes) -> tuple[int, int, int]:
    """
    Decode a C{CHANNEL_RESUME} body: channel, received position, window.
    """
    channel, received, window = _CHAN_RESUME.unpack(body)
    return channel, received, window


def encodeChannelWindow(channel: int, limit: int) -> bytes:
    """
    Encode a window update: the peer may send channel C{channel} frames up
    to C{limit} bytes on this carrier.
    """
    return encodeFrame(CHANNEL_WINDOW, _CHAN_WINDOW.pack(channel, limit))


def decodeChannelWindow(body: bytes) -> tuple[int, int]:
    """
    Decode a C{CHANNEL_WINDOW} body: the channel and its new limit.
    """
    channel, limit = _CHAN_WINDOW.unpack(body)
    return channel, limit


def encodeChannelClose(channel: int, graceful: bool, aborted: Optional[str] = None) -> bytes:
    """
    Encode the closing of channel C{channel}'s part of this carrier:
    C{graceful} after reading everything, or dropped; C{aborted}, the
    reason its side aborted the channel, if it did.
    """
    flags = CLOSE_GRACEFUL if graceful else 0
    reason = b""
    if aborted is not None:
        flags |= CLOSE_ABORTED
        reason = aborted.encode("utf-8", "replace")[:MAX_REASON]
    return encodeFrame(CHANNEL_CLOSE, _CHAN_CLOSE.pack(channel, flags) + reason)


def decodeChannelClose(body: bytes) -> tuple[int, bool, Optional[str]]:
    """
    Decode a C{CHANNEL_CLOSE} body: the channel, whether it closed
    cleanly, and the reason it was aborted (C{None} if it was not).

    @raise FrameError: too short.
    """
    if len(body) < _CHAN_CLOSE.size:
        raise FrameError("short CHANNEL_CLOSE")
    channel, flags = _CHAN_CLOSE.unpack_from(body)
    aborted = None
    if flags & CLOSE_ABORTED:
        aborted = body[_CHAN_CLOSE.size :].decode("utf-8", "replace")
    return channel, bool(flags & CLOSE_GRACEFUL), aborted


class NullReceiver:
    """
    A frame receiver that drops everything: what a parser delivers to
    before it has a receiver, and after its carrier is closed (nothing
    should arrive then, and if it did, it would not matter).
    """

    def dataFrameStarted(self, ack: int, length: int) -> None:
        pass

    def payloadReceived(self, payload: bytes) -> None:
        pass

    def controlFrameReceived(self, frameType: int, body: bytes) -> None:
        pass

    def channelFrameStarted(self, channel: int, length: int) -> None:
        pass

    def channelPayloadReceived(self, payload: bytes) -> None:
        pass


#: The one L{NullReceiver}.
NOWHERE = NullReceiver()


def _noSink(payload: bytes) -> None:
    """
    Where a parser would send payload before any data frame began (never
    called: a payload follows its head).
    """


#: The (never appended to) body of a parser between control frames.
_NO_BODY: list[bytes] = []


class FrameParser:
    """
    Incremental, bounded frame parser.

    Bytes go in through L{feed}; frames come out as calls on the receiver.
    Data payloads are passed on as they arrive (a read that falls wholly
    inside a payload is passed on without being copied).  Parsing can be
    paused between frames or inside a payload with L{pause}; bytes already
    fed are then kept and processed by L{resume}.

    @ivar _receiver: where frames go.
    @ivar _maxPayload: largest accepted data payload.
    @ivar _head: bytes of a head collected so far (heads split across reads).
    @ivar _type: type of the frame whose body is being read, or C{None}
        between frames.
    @ivar _remaining: body (or payload) bytes still to come for that frame.
    @ivar _body: collected control-frame body pieces.
    @ivar _pending: bytes fed while paused, or left over when paused.
    @ivar _paused: whether delivery is paused.
    @ivar _sink: where the payload of the current data or channel frame
        goes.
    """

    __slots__ = (
        "_receiver",
        "_maxPayload",
        "_head",
        "_type",
        "_remaining",
        "_body",
        "_pending",
        "_paused",
        "_sink",
    )

    def __init__(self, receiver: IFrameReceiver, maxPayload: int) -> None:
        self._receiver = receiver
        self._maxPayload = maxPayload
        self._head = b""
        self._type: int | None = None
        self._remaining = 0
        self._body: list[bytes] = _NO_BODY
        self._pending = b""
        self._paused = False
        # (Set at each data or channel frame's head.)
        self._sink: Callable[[bytes], None] = _noSink

    def setReceiver(self, receiver: IFrameReceiver) -> None:
        """
        Deliver frames to C{receiver} from now on (between frames).
        """
        self._receiver = receiver

    @property
    def pendingBytes(self) -> int:
        """
        Bytes fed and kept undelivered while paused.
        """
        return len(self._pending)

    def pause(self) -> None:
        """
        Stop delivering; later bytes are kept until L{resume}.
        """
        self._paused = True

    def resume(self) -> None:
        """
        Deliver whatever was kept while paused.
        """
        self._paused = False
        if self._pending:
            pending, self._pending = self._pending, b""
            self.feed(pending)

    def feed(self, data: bytes) -> None:
        """
        Parse some bytes from the carrier.

        @raise FrameError: the bytes are not a valid frame sequence.
        """
        if self._paused:
            self._pending += data
            return
        end = len(data)
        if self._type is None and not self._head and end >= _HEAD_SIZE:
            first = data[0]
            if first != DATA:
                if first != CHANNEL:
                    # Fast path: a read holding exactly one control frame of
                    # a fixed size (a heartbeat, its answer, an
                    # acknowledgement: what an idle session reads).
                    frameType, length = _HEAD.unpack_from(data)
                    if length + _HEAD_SIZE == end and _CONTROL_SIZES.get(frameType) == length:
                        self._receiver.controlFrameReceived(frameType, data[_HEAD_SIZE:])
                        return
            elif end > _DATA_HEAD_SIZE:
                # Fast path: a read holding exactly one data frame.
                _, length, ack = _DATA_HEAD.unpack_from(data)
                if length + _DATA_HEAD_SIZE == end and length <= self._maxPayload:
                    receiver = self._receiver
                    receiver.dataFrameStarted(ack, length)
                    if self._paused:
                        # The head's acknowledgement paused us: the payload
                        # waits, as on the slow path.
                        if length:
                            self._type = DATA
                            self._sink = receiver.payloadReceived
                            self._remaining = length
                            self._pending = data[_DATA_HEAD_SIZE:]
                        return
                    receiver.payloadReceived(data[_DATA_HEAD_SIZE:])
                    return
        offset = 0
        while offset < end:
            if self._paused:
                self._pending = data[offset:]
                return
            frameType = self._type
            if frameType == DATA:
                n = self._remaining
                avail = end - offset
                if avail >= n:
                    chunk = data[offset : offset + n] if (offset or n != end) else data
                    offset += n
                    self._type = None
                    self._remaining = 0
                else:
                    chunk = data[offset:] if offset else data
                    offset = end
                    self._remaining = n - avail
                if chunk:
                    self._sink(chunk)
                continue
            if frameType is not None:
                n = self._remaining
                piece = data[offset : offset + n]
                offset += len(piece)
                pieces = self._body
                if pieces is _NO_BODY:
                    pieces = self._body = []
                pieces.append(piece)
                self._remaining = n - len(piece)
                if self._remaining == 0:
                    self._body = _NO_BODY
                    self._type = None
                    self._receiver.controlFrameReceived(frameType, b"".join(pieces))
                continue
            # Between frames: parse a head.
            if self._head or end - offset < _DATA_HEAD_SIZE:
                # Slow path: the head may be split across reads.
                head = self._head
                first = head[0] if head else data[offset]
                need = (
                    _DATA_HEAD_SIZE
                    if first == DATA
                    else _CHAN_HEAD_SIZE
                    if first == CHANNEL
                    else _HEAD_SIZE
                )
                take = data[offset : offset + need - len(head)]
                offset += len(take)
                head += take
                if len(head) < need:
                    self._head = head
                    continue
                self._head = b""
                self._startFrame(head, 0)
                continue
            first = data[offset]
            self._startFrame(data, offset)
            offset += (
                _DATA_HEAD_SIZE
                if first == DATA
                else _CHAN_HEAD_SIZE
                if first == CHANNEL
                else _HEAD_SIZE
            )

    def _startFrame(self, buf: bytes, offset: int) -> None:
        """
        Act on a complete frame head found at C{buf[offset:]}.
        """
        if buf[offset] == DATA:
            _, length, ack = _DATA_HEAD.unpack_from(buf, offset)
            if length > self._maxPayload:
                raise FrameError(
                    "data frame of %d bytes exceeds the limit of %d"
                    % (length, self._maxPayload)
                )
            receiver = self._receiver
            self._sink = receiver.payloadReceived
            receiver.dataFrameStarted(ack, length)
            if length:
                self._type = DATA
                self._remaining = length
            return
        if buf[offset] == CHANNEL:
            _, length, channel = _CHAN_HEAD.unpack_from(buf, offset)
            if length > self._maxPayload + CHANNEL_OVERHEAD:
                raise FrameError(
                    "channel frame of %d bytes exceeds the limit of %d"
                    % (length, self._maxPayload + CHANNEL_OVERHEAD)
                )
            receiver = self._receiver
            self._sink = receiver.channelPayloadReceived
            receiver.channelFrameStarted(channel, length)
            if length:
                # Streamed like a data payload.
                self._type = DATA
                self._remaining = length
            return
        frameType, length = _HEAD.unpack_from(buf, offset)
        fixed = _CONTROL_SIZES.get(frameType)
        if fixed is not None:
            if length != fixed:
                raise FrameError(
                    "frame type 0x%02x has length %d, expected %d"
                    % (frameType, length, fixed)
                )
        else:
            limit = _VARIABLE_CONTROL.get(frameType)
            if limit is None:
                raise FrameError("unknown frame type 0x%02x" % (frameType,))
            if length > limit:
                raise FrameError(
                    "frame type 0x%02x has length %d, over the limit of %d"
                    % (frameType, length, limit)
                )
        if length == 0:
            self._receiver.controlFrameReceived(frameType, b"")
            return
        self._type = frameType
        self._remaining = length

