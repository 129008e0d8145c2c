# -*- test-case-name: tests.test_advertise -*-
"""
Address advertisements (C{ADDRESSES} frames): their numbering, proofs and
replay check, without I/O.

Each side tells the other where it can be reached, authenticated by the
session key (C{proof(K, "addresses", sender, seq, flags, addr...)}) and
numbered so that an old advertisement cannot be replayed: the numbers only
grow, and start above C{generation << 32} after each resume so that a
session restored in a new process still counts upwards.  Whether to follow
what the peer advertised is the session's decision (it depends on the path
it uses); this only says what the peer authentically advertised.  The
caller keeps the two numbers (ours, and the peer's last accepted).
"""

from __future__ import annotations

from typing import Sequence

from . import crypto, wire
from .errors import ProtocolViolation


def _proof(key: bytes, sender: bytes, seq: int, flags: int, addresses: Sequence[str]) -> bytes:
    return crypto.prove(key, b"addresses", sender, seq, flags, *(a.encode("ascii") for a in addresses))


def nextAdvert(
    lastSeq: int,
    key: bytes,
    isClient: bool,
    generation: int,
    addresses: Sequence[str],
    configured: bool,
) -> tuple[int, bytes]:
    """
    Our next advertisement of C{addresses}, numbered and proven.

    @param lastSeq: the number of our previous advertisement (0 if none).
    @param configured: the operator chose these addresses.
    @return: its number, and the frame.
    """
    seq = max(lastSeq + 1, (generation << 32) + 1)
    sender = b"client" if isClient else b"server"
    flags = wire.ADDRESSES_CONFIGURED if configured else 0
    mac = _proof(key, sender, seq, flags, addresses)
    return seq, wire.encodeAddresses(seq, flags, list(addresses), mac)


def checkAdvert(
    peerLastSeq: int, key: bytes, isClient: bool, body: bytes
) -> tuple[int, list[str], bool]:
    """
    The peer's advertisement arrived: check it.

    @param peerLastSeq: the number of the peer's last one we accepted.
    @return: its number, the addresses, and whether the peer's operator
        configured them.
    @raise ProtocolViolation: it does not decode, its proof is wrong, or its
        number is not above C{peerLastSeq} (a replay).
    """
    try:
        seq, flags, addresses, mac = wire.decodeAddresses(body)
    except wire.FrameError as e:
        raise ProtocolViolation(str(e))
    sender = b"server" if isClient else b"client"
    if not crypto.verify(_proof(key, sender, seq, flags, addresses), mac):
        raise ProtocolViolation("forged address advertisement")
    if seq <= peerLastSeq:
        raise ProtocolViolation("replayed address advertisement")
    return seq, addresses, bool(flags & wire.ADDRESSES_CONFIGURED)
