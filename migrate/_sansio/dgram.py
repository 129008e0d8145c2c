# -*- test-case-name: tests.test_datagram_core -*-
"""
Datagram sessions' packets: layouts, traffic keys, AEAD protection and the
replay window.

Every datagram of an open session is a protected packet::

    0x40 (1) | sid (16) | pn (8) | ChaCha20-Poly1305(kind (1) | body)

with the 25-byte header as associated data and the nonce made of the
direction's IV and the packet number.  Handshake packets (the opening) are
cleartext: C{0x51 | hid (8) | one stream frame | padding}.

Pure: no reactor, no sockets, no clocks.  The specification is
C{docs/datagram.md}.
"""

from __future__ import annotations

import struct
from typing import Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import wire as _wire
from .errors import PacketError

#: First byte of a protected packet.
PROTECTED = 0x40
#: First byte of a handshake packet.
HANDSHAKE = 0x51

#: The client's first handshake frame: "send me your greeting".
INIT = 0x09

# Payload kinds of protected packets.
APP = 0x00
PING = 0x01
PONG = 0x02
PATH_CHALLENGE = 0x03
PATH_RESPONSE = 0x04
CLOSE = 0x05
ADDRESSES = 0x06

KINDS = frozenset([APP, PING, PONG, PATH_CHALLENGE, PATH_RESPONSE, CLOSE, ADDRESSES])
_TOKEN_KINDS = frozenset([PING, PONG, PATH_CHALLENGE, PATH_RESPONSE])

SID_SIZE = _wire.SID_SIZE
HID_SIZE = 8
TAG_SIZE = 16
_HEADER = struct.Struct(">B%dsQ" % SID_SIZE)
HEADER_SIZE = _HEADER.size
_HS_HEADER = struct.Struct(">B%ds" % HID_SIZE)
HS_HEADER_SIZE = _HS_HEADER.size
_U64 = struct.Struct(">Q")

#: Bytes a protected packet adds to an application datagram.
OVERHEAD = HEADER_SIZE + 1 + TAG_SIZE
#: The largest application datagram: the largest UDP payload over IPv4
#: minus L{OVERHEAD}.
MAX_DATAGRAM = 65507 - OVERHEAD
#: Client handshake datagrams are padded to this size; the server's
#: answers are never larger.
HANDSHAKE_PAD = 256
#: The largest packet number a sender uses.
MAX_PN = 2**62
#: Packet numbers a sender restored from a checkpoint skips (defence in
#: depth: nothing is ever sealed after a checkpoint is taken, and a
#: checkpoint is deleted from its store before its session sends again).
PN_MARGIN = 2**16
#: Packets of the replay window.
WINDOW = 1024

_NONCE_PAD = b"\x00\x00\x00\x00"
_PREFIX_SIZE = 1 + SID_SIZE
_MIN_PROTECTED = HEADER_SIZE + 1 + TAG_SIZE
_KIND_BYTES = [bytes((k,)) for k in range(256)]



def trafficKey(key: bytes, sessionID: bytes, generation: int, fromClient: bool) -> bytes:
    """
    The 32-byte AEAD key of one direction of a session.

    @param key: the session key C{K}.
    @param fromClient: the direction: C{True} for client to server.
    """
    direction = b"client->server" if fromClient else b"server->client"
    return HKDF(
        algorithm=SHA256(),
        length=32,
        salt=sessionID,
        info=b"migrate/1 datagram " + direction + _U64.pack(generation),
    ).derive(key)


def parseSessionID(datagram: bytes) -> Optional[bytes]:
    """
    The session id of a protected packet, or C{None} if C{datagram} cannot
    be one.
    """
    if len(datagram) < _MIN_PROTECTED or datagram[0] != PROTECTED:
        return None
    return datagram[1 : 1 + SID_SIZE]


class Sealer:
    """
    Protects the packets of one direction: numbers them and encrypts them.

    The nonce is four zero bytes and the packet number (as WireGuard's): each
    direction of each session generation has its own key, and a packet
    number is never used twice under a key.

    @ivar nextPN: the number the next packet gets.
    """

    def __init__(
        self, key: bytes, sessionID: bytes, generation: int, fromClient: bool, nextPN: int = 0
    ) -> None:
        """
        @param nextPN: the first packet number to use: 0 for fresh keys; for
            keys restored from a checkpoint, above any number used before.
        """
        self._encrypt = ChaCha20Poly1305(trafficKey(key, sessionID, generation, fromClient)).encrypt
        self._prefix = bytes((PROTECTED,)) + sessionID
        self.nextPN = nextPN

    def seal(self, kind: int, body: bytes) -> bytes:
        """
        One protected packet carrying C{kind} and C{body}.

        @raise PacketError: the packet numbers are exhausted.
        """
        pn = self.nextPN
        if pn >= MAX_PN:
            raise PacketError("packet numbers exhausted")
        self.nextPN = pn + 1
        number = pn.to_bytes(8, "big")
        header = self._prefix + number
        return header + self._encrypt(_NONCE_PAD + number, _KIND_BYTES[kind] + body, header)


class ReplayWindow:
    """
    Which packet numbers were received: the highest, and a bitmap of the
    L{WINDOW} below it (bit C{i} is C{highest - i}).

    @ivar highest: the highest packet number received, or C{-1}.
    """

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.mask = (1 << size) - 1
        self.highest = -1
        self.bits = 0

    def fresh(self, pn: int) -> bool:
        """
        Whether C{pn} may be accepted: above the highest, or inside the
        window and not seen.  Changes nothing.
        """
        if pn > self.highest:
            return True
        offset = self.highest - pn
        if offset >= self.size:
            return False
        return not (self.bits >> offset) & 1

    def mark(self, pn: int) -> bool:
        """
        Record C{pn} (which L{fresh} accepted).

        @return: whether it is the new highest.
        """
        if pn > self.highest:
            shift = pn - self.highest
            if shift >= self.size:
                self.bits = 1
            else:
                self.bits = ((self.bits << shift) | 1) & self.mask
            self.highest = pn
            return True
        self.bits |= 1 << (self.highest - pn)
        return False


class Opener:
    """
    Verifies and decrypts the packets of one direction, refusing replays.

    @ivar window: the L{ReplayWindow}.
    """

    def __init__(
        self, key: bytes, sessionID: bytes, generation: int, fromClient: bool, highest: int = -1
    ) -> None:
        """
        @param highest: for keys restored from a checkpoint, the highest
            packet number received before: it and every number below count
            as received (the window's bitmap is not kept).
        """
        self._decrypt = ChaCha20Poly1305(trafficKey(key, sessionID, generation, fromClient)).decrypt
        self._prefix = bytes((PROTECTED,)) + sessionID
        self.window = ReplayWindow()
        if highest >= 0:
            self.window.highest = highest
            self.window.bits = self.window.mask

    def check(self, datagram: bytes) -> bool:
        """
        Whether C{datagram} is an authentic, fresh packet of this session;
        changes nothing (not even the window).
        """
        if len(datagram) < _MIN_PROTECTED or not datagram.startswith(self._prefix):
            return False
        number = datagram[_PREFIX_SIZE:HEADER_SIZE]
        if not self.window.fresh(int.from_bytes(number, "big")):
            return False
        try:
            self._decrypt(_NONCE_PAD + number, datagram[HEADER_SIZE:], datagram[:HEADER_SIZE])
        except InvalidTag:
            return False
        return True

    def open(self, datagram: bytes) -> tuple[int, bool, int, bytes]:
        """
        Verify and decrypt a protected packet, and record its number.

        Nothing changes unless it is authentic and fresh.

        @return: C{(pn, newest, kind, body)}: C{newest} says C{pn} is the
            highest received so far.
        @raise PacketError: not a packet of this session, a replay, or not
            authentic.
        """
        if len(datagram) < _MIN_PROTECTED or not datagram.startswith(self._prefix):
            raise PacketError("not this session's packet")
        number = datagram[_PREFIX_SIZE:HEADER_SIZE]
        pn = int.from_bytes(number, "big")
        window = self.window
        highest = window.highest
        if pn <= highest:
            offset = highest - pn
            if offset >= window.size or (window.bits >> offset) & 1:
                raise PacketError("replayed or too old")
        try:
            plain = self._decrypt(_NONCE_PAD + number, datagram[HEADER_SIZE:], datagram[:HEADER_SIZE])
        except InvalidTag:
            raise PacketError("not authentic")
        # ReplayWindow.mark, inlined: this is the receiving hot path.
        if pn > highest:
            shift = pn - highest
            window.bits = 1 if shift >= window.size else ((window.bits << shift) | 1) & window.mask
            window.highest = pn
            return pn, True, plain[0], plain[1:]
        window.bits |= 1 << offset
        return pn, False, plain[0], plain[1:]


def encodeToken(token: int) -> bytes:
    """
    The body of a C{PING}, C{PONG}, C{PATH_CHALLENGE} or C{PATH_RESPONSE}.
    """
    return _U64.pack(token)


def decodeToken(body: bytes) -> int:
    """
    @raise PacketError: not eight bytes.
    """
    if len(body) != 8:
        raise PacketError("malformed token")
    return int(_U64.unpack(body)[0])


def encodeClose(reason: str) -> bytes:
    """
    The body of a C{CLOSE}.
    """
    return reason.encode("utf-8", "replace")[: _wire.MAX_REASON]


def decodeClose(body: bytes) -> str:
    """
    @raise PacketError: too long.
    """
    if len(body) > _wire.MAX_REASON:
        raise PacketError("malformed close")
    return body.decode("utf-8", "replace")


def encodeAddresses(seq: int, flags: int, addresses: list[str]) -> bytes:
    """
    The body of an C{ADDRESSES}: the stream frame's layout without its
    HMAC (the AEAD authenticates it).
    """
    frame = _wire.encodeAddresses(seq, flags, addresses, b"\x00" * _wire.MAC_SIZE)
    return frame[5 : -_wire.MAC_SIZE]


def decodeAddresses(body: bytes) -> tuple[int, int, list[str]]:
    """
    @return: C{(seq, flags, addresses)}
    @raise PacketError: malformed.
    """
    try:
        seq, flags, addresses, _ = _wire.decodeAddresses(body + b"\x00" * _wire.MAC_SIZE)
    except _wire.FrameError as e:
        raise PacketError(str(e))
    return seq, flags, addresses


def checkBody(kind: int, body: bytes) -> None:
    """
    Check the size of a payload of C{kind}.

    @raise PacketError: unknown kind or a body of the wrong size.
    """
    if kind not in KINDS:
        raise PacketError("unknown kind %d" % (kind,))
    if kind in _TOKEN_KINDS and len(body) != 8:
        raise PacketError("malformed token")
    if kind == CLOSE and len(body) > _wire.MAX_REASON:
        raise PacketError("malformed close")


def encodeHandshake(hid: bytes, frame: bytes, pad: bool) -> bytes:
    """
    A handshake packet carrying one stream frame; padded to
    L{HANDSHAKE_PAD} when the client sends it.
    """
    packet = _HS_HEADER.pack(HANDSHAKE, hid) + frame
    if pad and len(packet) < HANDSHAKE_PAD:
        packet += b"\x00" * (HANDSHAKE_PAD - len(packet))
    return packet


def decodeHandshake(datagram: bytes) -> tuple[bytes, int, bytes]:
    """
    Parse a handshake packet (padding after its frame is ignored).

    @return: C{(hid, frameType, body)}
    @raise PacketError: malformed.
    """
    if len(datagram) < HS_HEADER_SIZE + 5 or datagram[0] != HANDSHAKE:
        raise PacketError("not a handshake packet")
    hid = datagram[1 : 1 + HID_SIZE]
    frameType, length = struct.unpack_from(">BI", datagram, HS_HEADER_SIZE)
    start = HS_HEADER_SIZE + 5
    if length > _wire.MAX_CONTROL_BODY or start + length > len(datagram):
        raise PacketError("truncated handshake frame")
    body = datagram[start : start + length]
    if any(datagram[start + length :]):
        raise PacketError("padding is not zeros")
    return hid, frameType, body


def encodeInit() -> bytes:
    """
    The client's first handshake frame.
    """
    return _wire.encodeFrame(INIT, b"")
