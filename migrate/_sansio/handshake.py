# -*- test-case-name: tests.test_handshake -*-
"""
Sans-IO handshakes that turn a fresh carrier into part of a session.

Every carrier starts with the server's greeting, which carries a fresh nonce
C{Ns}.  Then the client either opens a new session or resumes one:

Opening::

    S -> C  SERVER_HELLO  magic, version, Ns
    C -> S  OPEN          version, Pc, Nc
    S -> C  OPEN_ACCEPT   Ps, sid, proof(K, "open-server", transcript)
    C -> S  OPEN_CONFIRM  proof(K, "open-client", transcript)

where C{K} is derived from X25519 over the ephemeral keys C{Pc} and C{Ps}
and the transcript is C{Ns, Pc, Nc, Ps, sid}.  The server creates nothing
(no session, no application protocol) until C{OPEN_CONFIRM} verifies; a
replayed opening fails because C{Ns} is new on every carrier.

Resuming::

    S -> C  SERVER_HELLO  magic, version, Ns
    C -> S  RESUME        version, sid, g, Nc, Rc, proof(K, "resume-client", Ns, sid, g, Nc, Rc)
    S -> C  RESUME_ACCEPT Rs, proof(K, "resume-server", Ns, sid, g, Nc, Rc, Rs)

The server accepts only a generation C{g} above every one it accepted before
for that session, and changes nothing until the proof verifies.  The client
believes the server only when its proof verifies.  C{Rc} and C{Rs} are the
stream positions each side has received.

TLS binding: C{SERVER_HELLO}, C{OPEN} and C{RESUME} carry a flags byte whose
L{_wire.FLAG_TLS} says the sender's end of the carrier is TLS.  When either
flag is set, every proof also covers both flags (as each side sent or
received them) and, when both are set, the carrier's TLS exporter value
C{B} (RFC 5705, label L{EXPORTER_LABEL}), which also goes into the key
derivation of an opening: a session opened over end-to-end TLS has a key
bound to that TLS connection, each resume over TLS is bound to its own,
and a flag stripped or added on the way makes the proofs disagree.
"""

from __future__ import annotations

from .errors import HandshakeFailed

from dataclasses import dataclass
from typing import Callable, Optional, Union

from . import crypto as _crypto, wire as _wire

#: The RFC 5705 exporter label of Migrate's TLS binding.
EXPORTER_LABEL = b"EXPORTER-migrate-channel-binding"


def _bindingParts(
    serverFlags: int, clientFlags: int, exporter: Optional[Callable[[], bytes]]
) -> list[Union[bytes, int]]:
    """
    The parts a proof covers for TLS binding: none on a carrier neither
    end calls TLS (so proofs are what they were); else both flags and, if
    both ends are TLS, the exporter value.
    """
    if not (serverFlags or clientFlags):
        return []
    binding = b""
    if serverFlags & clientFlags & _wire.FLAG_TLS:
        if exporter is None:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "TLS binding without TLS")
        binding = exporter()
    return [serverFlags, clientFlags, binding]


@dataclass
class ResumeRequest:
    """
    A parsed (not yet verified) resume request.
    """

    sessionID: bytes
    generation: int
    nonce: bytes
    received: int
    mac: bytes
    binding: tuple[Union[bytes, int], ...] = ()


@dataclass
class OpenedKeys:
    """
    What an opening agreed.
    """

    sessionID: bytes
    key: bytes


class ServerHandshake:
    """
    The server's half of the handshake on one carrier.

    @ivar nonce: this carrier's fresh server nonce.
    @ivar _pending: the keys of an opening awaiting its confirmation.
    @ivar _transcript: that opening's transcript.
    """

    def __init__(self, exporter: Optional[Callable[[], bytes]] = None) -> None:
        """
        @param exporter: on a TLS carrier, what gives its exporter value
            (called once the TLS handshake is over: when the client's
            first frame arrives); C{None} on any other carrier.
        """
        self.nonce = _crypto.randomBytes(_wire.NONCE_SIZE)
        self._exporter = exporter
        self.flags = _wire.FLAG_TLS if exporter is not None else 0
        self._pending: OpenedKeys | None = None
        self._transcript: tuple[Union[bytes, int], ...] = ()

    def hello(self) -> bytes:
        """
        The greeting to send as soon as the carrier is up.
        """
        return _wire.encodeServerHello(self.nonce, self.flags)

    def receiveOpen(self, body: bytes) -> bytes:
        """
        Answer an opening request.

        @return: the C{OPEN_ACCEPT} frame to send.
        @raise HandshakeFailed: wrong version, bad key, or a second opening.
        """
        if self._pending is not None:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "second opening")
        version, clientPublic, clientNonce, clientFlags = _wire.decodeOpen(body)
        if version != _wire.VERSION:
            raise HandshakeFailed(
                _wire.REJECT_VERSION, "unsupported version %d" % (version,)
            )
        binding = _bindingParts(self.flags, clientFlags, self._exporter)
        pair = _crypto.KeyPair()
        try:
            shared = pair.sharedSecret(clientPublic)
        except ValueError:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "bad public key")
        key = _crypto.deriveSessionKey(
            shared,
            self.nonce,
            clientNonce,
            clientPublic,
            pair.publicBytes,
            binding[2] if binding else b"",  # type: ignore[arg-type]
        )
        sessionID = _crypto.randomBytes(_wire.SID_SIZE)
        self._pending = OpenedKeys(sessionID, key)
        self._transcript = (
            self.nonce,
            clientPublic,
            clientNonce,
            pair.publicBytes,
            sessionID,
            *binding,
        )
        mac = _crypto.prove(key, b"open-server", *self._transcript)
        return _wire.encodeOpenAccept(pair.publicBytes, sessionID, mac)

    def receiveOpenConfirm(self, body: bytes) -> OpenedKeys:
        """
        Verify the client's proof of the new session key.

        @return: the new session's id and key.
        @raise HandshakeFailed: no opening pending, or the proof is wrong.
        """
        pending = self._pending
        if pending is None:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "confirm without opening")
        expected = _crypto.prove(pending.key, b"open-client", *self._transcript)
        if not _crypto.verify(expected, body):
            raise HandshakeFailed(_wire.REJECT_BAD_PROOF, "bad opening proof")
        self._pending = None
        return pending

    def parseResume(self, body: bytes) -> ResumeRequest:
        """
        Parse a resume request (verification needs the session's key: see
        L{verifyResume}).

        @raise HandshakeFailed: wrong version.
        """
        version, sessionID, generation, nonce, received, mac, flags = _wire.decodeResume(
            body
        )
        if version != _wire.VERSION:
            raise HandshakeFailed(
                _wire.REJECT_VERSION, "unsupported version %d" % (version,)
            )
        if not 0 < generation <= _wire.MAX_GENERATION:
            raise HandshakeFailed(
                _wire.REJECT_PROTOCOL, "generation %d out of range" % (generation,)
            )
        return ResumeRequest(
            sessionID,
            generation,
            nonce,
            received,
            mac,
            tuple(_bindingParts(self.flags, flags, self._exporter)),
        )

    def verifyResume(
        self, request: ResumeRequest, key: bytes, lastGeneration: int
    ) -> None:
        """
        Verify a resume request against the session it names.

        @raise HandshakeFailed: the proof is wrong or the generation is not
            above C{lastGeneration}.
        """
        expected = _crypto.prove(
            key,
            b"resume-client",
            self.nonce,
            request.sessionID,
            request.generation,
            request.nonce,
            request.received,
            *request.binding,
        )
        if not _crypto.verify(expected, request.mac):
            raise HandshakeFailed(_wire.REJECT_BAD_PROOF, "bad resume proof")
        if request.generation <= lastGeneration:
            raise HandshakeFailed(
                _wire.REJECT_STALE,
                "stale generation %d (last %d)" % (request.generation, lastGeneration),
            )

    def acceptResume(self, request: ResumeRequest, key: bytes, received: int) -> bytes:
        """
        The C{RESUME_ACCEPT} frame for a verified request.
        """
        mac = _crypto.prove(
            key,
            b"resume-server",
            self.nonce,
            request.sessionID,
            request.generation,
            request.nonce,
            request.received,
            received,
            *request.binding,
        )
        return _wire.encodeResumeAccept(received, mac)


class ClientHandshake:
    """
    The client's half of the handshake on one carrier.

    Build it with L{forOpen} or L{forResume}; feed it the server's frames.

    @ivar sessionID: the session's id (known after an opening's accept).
    @ivar key: the session key (known after an opening's accept).
    """

    def __init__(self, exporter: Optional[Callable[[], bytes]] = None) -> None:
        self.sessionID = b""
        self.key = b""
        self.generation = 0
        self.received = 0
        self._resuming = False
        self._serverNonce = b""
        self._nonce = _crypto.randomBytes(_wire.NONCE_SIZE)
        self._pair: _crypto.KeyPair | None = None
        self._exporter = exporter
        self.flags = _wire.FLAG_TLS if exporter is not None else 0
        self._binding: list[Union[bytes, int]] = []

    @property
    def bound(self) -> bool:
        """
        Whether this carrier's handshake is bound to its TLS connection
        (both ends are TLS).
        """
        return bool(self._binding and self._binding[2])

    @classmethod
    def forOpen(cls, exporter: Optional[Callable[[], bytes]] = None) -> ClientHandshake:
        """
        A handshake that opens a new session.

        @param exporter: on a TLS carrier, what gives its exporter value;
            C{None} on any other.
        """
        return cls(exporter)

    @classmethod
    def forResume(
        cls,
        sessionID: bytes,
        key: bytes,
        generation: int,
        received: int,
        exporter: Optional[Callable[[], bytes]] = None,
    ) -> ClientHandshake:
        """
        A handshake that resumes a session.

        @param generation: the new generation, above any used before.
        @param received: how far we have received the server's stream.
        @param exporter: as for L{forOpen}.
        """
        self = cls(exporter)
        self._resuming = True
        self.sessionID = sessionID
        self.key = key
        self.generation = generation
        self.received = received
        return self

    def receiveHello(self, body: bytes) -> bytes:
        """
        Answer the server's greeting.

        @return: the C{OPEN} or C{RESUME} frame to send.
        @raise HandshakeFailed: not a Migrate server, or a version we do not
            speak, or a greeting that came twice.
        """
        if self._serverNonce:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "second greeting")
        try:
            version, nonce, serverFlags = _wire.decodeServerHello(body)
        except _wire.FrameError as e:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, str(e))
        if version != _wire.VERSION:
            raise HandshakeFailed(
                _wire.REJECT_VERSION, "server speaks version %d" % (version,)
            )
        self._serverNonce = nonce
        self._binding = _bindingParts(serverFlags, self.flags, self._exporter)
        if not self._resuming:
            self._pair = _crypto.KeyPair()
            return _wire.encodeOpen(self._pair.publicBytes, self._nonce, self.flags)
        mac = _crypto.prove(
            self.key,
            b"resume-client",
            nonce,
            self.sessionID,
            self.generation,
            self._nonce,
            self.received,
            *self._binding,
        )
        return _wire.encodeResume(
            self.sessionID, self.generation, self._nonce, self.received, mac, self.flags
        )

    def receiveOpenAccept(self, body: bytes) -> bytes:
        """
        Verify the server's answer to our opening.

        @return: the C{OPEN_CONFIRM} frame to send; L{sessionID} and L{key}
            are set.
        @raise HandshakeFailed: unexpected, bad key, or bad proof.
        """
        pair = self._pair
        if pair is None or self.key:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "unexpected open accept")
        serverPublic, sessionID, mac = _wire.decodeOpenAccept(body)
        try:
            shared = pair.sharedSecret(serverPublic)
        except ValueError:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "bad server public key")
        key = _crypto.deriveSessionKey(
            shared,
            self._serverNonce,
            self._nonce,
            pair.publicBytes,
            serverPublic,
            self._binding[2] if self._binding else b"",  # type: ignore[arg-type]
        )
        transcript = (
            self._serverNonce,
            pair.publicBytes,
            self._nonce,
            serverPublic,
            sessionID,
            *self._binding,
        )
        if not _crypto.verify(_crypto.prove(key, b"open-server", *transcript), mac):
            raise HandshakeFailed(_wire.REJECT_BAD_PROOF, "bad server opening proof")
        self.key = key
        self.sessionID = sessionID
        return _wire.encodeOpenConfirm(
            _crypto.prove(key, b"open-client", *transcript)
        )

    def receiveResumeAccept(self, body: bytes) -> int:
        """
        Verify the server's answer to our resume.

        @return: how far the server has received our stream.
        @raise HandshakeFailed: unexpected or bad proof.
        """
        if not self._resuming or not self._serverNonce:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "unexpected resume accept")
        received, mac = _wire.decodeResumeAccept(body)
        expected = _crypto.prove(
            self.key,
            b"resume-server",
            self._serverNonce,
            self.sessionID,
            self.generation,
            self._nonce,
            self.received,
            received,
            *self._binding,
        )
        if not _crypto.verify(expected, mac):
            raise HandshakeFailed(_wire.REJECT_BAD_PROOF, "bad server resume proof")
        return received
