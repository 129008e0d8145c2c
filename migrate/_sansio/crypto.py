# -*- test-case-name: tests.test_handshake -*-
"""
The cryptography of session establishment and resumption.

A session key is agreed with ephemeral X25519 at establishment and expanded
with HKDF-SHA256 over both nonces and both public keys.  Every later proof is
an HMAC-SHA256 under that key over a transcript that names its purpose, so a
proof made for one purpose (say, the server's answer to an opening) can never
be accepted for another.  Pure functions; randomness comes from C{os.urandom}
through L{randomBytes} so tests may substitute it.
"""

from __future__ import annotations

import hmac
import os
import struct
from hashlib import sha256

from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_U64 = struct.Struct(">Q")


def randomBytes(n: int) -> bytes:
    """
    Return C{n} bytes from the operating system's secure random source.
    """
    return os.urandom(n)


class KeyPair:
    """
    An ephemeral X25519 key pair.

    @ivar publicBytes: the raw 32-byte public key.
    """

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.publicBytes = self._private.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )

    def sharedSecret(self, peerPublic: bytes) -> bytes:
        """
        Compute the X25519 shared secret with the peer's raw public key.

        @raise ValueError: the peer's key is malformed or of low order.
        """
        return self._private.exchange(X25519PublicKey.from_public_bytes(peerPublic))


def deriveSessionKey(
    shared: bytes,
    serverNonce: bytes,
    clientNonce: bytes,
    clientPublic: bytes,
    serverPublic: bytes,
    binding: bytes = b"",
) -> bytes:
    """
    Expand an X25519 shared secret into the 32-byte session key.

    @param binding: the TLS exporter value of the carrier the session is
        opened on, when both ends are TLS (the key is then bound to that
        TLS connection), else empty.
    """
    return HKDF(
        algorithm=SHA256(),
        length=32,
        salt=serverNonce + clientNonce,
        info=b"migrate/1 session key" + clientPublic + serverPublic + binding,
    ).derive(shared)


def prove(key: bytes, label: bytes, *parts: bytes | int) -> bytes:
    """
    Compute a proof: HMAC-SHA256 over a purpose label and the parts.

    Integers are encoded as unsigned 64-bit big-endian; byte strings are
    length-prefixed, so no two different part lists share an encoding.
    """
    mac = hmac.new(key, label, sha256)
    for part in parts:
        if isinstance(part, int):
            mac.update(_U64.pack(part))
        else:
            mac.update(_U64.pack(len(part)))
            mac.update(part)
    return mac.digest()


def verify(expected: bytes, given: bytes) -> bool:
    """
    Compare two proofs in constant time.
    """
    return hmac.compare_digest(expected, given)
