# -*- test-case-name: tests.test_session,tests.test_handshake,tests.test_hibernation -*-
"""
The client side of the handshake: answer the server's greeting with an
opening or a resume, and act on its acceptance or refusal.
"""

from __future__ import annotations

from twisted.internet.error import NoProtocol
from twisted.python.failure import Failure

from .._protocol import Carrier
from .._sansio import wire as _wire
from .._sansio.handshake import ClientHandshake, HandshakeFailed
from .._sansio.stream import ProtocolViolation
from .._session import Session
from .._transport import MigrateTransport
from ..errors import HandshakeError, SessionExpired
from .attempt import _OPEN_RETRIES
from .base import ConnectorBase

# Reject codes after which trying again cannot help.
_FATAL = {
    _wire.REJECT_UNKNOWN_SESSION,
    _wire.REJECT_BAD_PROOF,
    _wire.REJECT_STALE,
    _wire.REJECT_VERSION,
    _wire.REJECT_REFUSED,
}


class ClientHandshaking(ConnectorBase):
    """
    The handshake role of a client connector: the frames of the attempt's
    carrier before it is attached, the new session of an opening, the
    application connected once the server holds the session.

    It owns C{_handshake} (the handshake of the attempt's carrier) and
    C{_generation} (the last generation used in a resume attempt).
    """

    def handshakeFrame(self, carrier: Carrier, frameType: int, body: bytes) -> None:
        if carrier is not self._carrier:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "stale carrier")
        if frameType == _wire.SERVER_HELLO:
            session = self.session
            if session is None:
                handshake = ClientHandshake.forOpen(carrier.exporter)
            else:
                if session.secure and not carrier.secure:
                    # Never over anything weaker than what it was opened on.
                    raise HandshakeFailed(
                        _wire.REJECT_PROTOCOL,
                        "this session was opened over TLS and resumes only over TLS",
                    )
                if session.carrier is not None:
                    # Moving to a new carrier while the old one works: stop
                    # reading the old one before saying how far we got.
                    session.dropCarrier("moving")
                self._generation = max(self._generation, session.generation) + 1
                if self._generation > _wire.MAX_GENERATION:
                    raise HandshakeFailed(
                        _wire.REJECT_PROTOCOL, "the session has used every generation"
                    )
                handshake = ClientHandshake.forResume(
                    session.sessionID,
                    session.key,
                    self._generation,
                    session.engine.received,
                    carrier.exporter,
                )
            self._handshake = handshake
            carrier.transport.write(handshake.receiveHello(body))
            return
        if frameType == _wire.REJECT:
            # (A busy server refuses before it greets.)
            code, retryAfter, reason = _wire.decodeReject(body)
            self._rejected(carrier, code, reason, retryAfter)
            return
        current = self._handshake
        if current is None:
            raise HandshakeFailed(_wire.REJECT_PROTOCOL, "no greeting")
        handshake = current
        if frameType == _wire.ABORT and not self._confirmed:
            # The server's application refused the session.
            self._rejected(carrier, _wire.REJECT_PROTOCOL, body.decode("utf-8", "replace"))
        elif frameType == _wire.OPEN_ACCEPT and self.session is None:
            confirm = handshake.receiveOpenAccept(body)
            self._openAccepted(carrier, handshake, confirm)
        elif (
            frameType == _wire.OPENED
            and self.session is not None
            and not self._confirmed
            and not handshake.generation
        ):
            self._confirm(carrier, 0)
        elif frameType == _wire.RESUME_ACCEPT and self.session is not None:
            received = handshake.receiveResumeAccept(body)
            self._resumeAccepted(carrier, handshake, received)
        else:
            raise HandshakeFailed(
                _wire.REJECT_PROTOCOL, "unexpected frame type 0x%02x" % (frameType,)
            )

    def _openAccepted(
        self, carrier: Carrier, handshake: ClientHandshake, confirm: bytes
    ) -> None:
        """
        The server proved the new key: prove ours.  The session exists on
        the server once it has our proof, which it says with C{OPENED}; only
        then is the application connected.
        """
        session = Session(
            self.clock,
            handshake.sessionID,
            handshake.key,
            True,
            self.options,
            self.policy,
            self.upcalls,
        )
        session.setChannelFactories(self.appFactory, self.channelFactories)
        session.setOwner(
            self._sessionDetached,
            self._sessionEnded,
            timers=self.timers,
            peerAddresses=self._peerAddresses,
        )
        self.session = session
        carrier.transport.write(confirm)

    def _confirm(self, carrier: Carrier, received: int) -> None:
        """
        The server holds the session: connect the application.
        """
        session = self.session
        assert session is not None
        self._finishAttempt()
        self._confirmed = True
        session.handshakeDone(
            carrier.transport.getHost(), session.generation, False, carrier.secure
        )
        opened, self._opened = self._opened, None
        app = self.appFactory.buildProtocol(carrier.transport.getPeer())
        if app is None:
            self._stop()
            carrier.transport.write(_wire.encodeAbort("application refused"))
            carrier.retire("application refused", graceful=True)
            if opened is not None:
                opened.errback(Failure(NoProtocol()))
            return
        session.attach(carrier, received)
        self.log.info("session {sid} opened", sid=session.hexID, event="opened")
        session.connectApp(app, MigrateTransport(session))
        if opened is not None:
            opened.callback(app)

    def _resumeAccepted(
        self, carrier: Carrier, handshake: ClientHandshake, received: int
    ) -> None:
        session = self.session
        assert session is not None
        try:
            session.engine.checkResume(received)
        except ProtocolViolation as e:
            self._finishAttempt()
            carrier.retire(str(e))
            session.end(SessionExpired("server resumed at an impossible position"))
            return
        confirmed = self._confirmed
        session.handshakeDone(carrier.transport.getHost(), handshake.generation, confirmed)
        if not confirmed:
            self._confirm(carrier, received)
            return
        self._finishAttempt()
        self.log.info(
            "session {sid} resumed (generation {generation})",
            sid=session.hexID,
            generation=handshake.generation,
            event="resumed",
        )
        session.attach(carrier, received)

    def _rejected(self, carrier: Carrier, code: int, reason: str, retryAfter: float = 0.0) -> None:
        carrier.retire("refused: %s" % (reason,))
        session = self.session
        if code == _wire.REJECT_BUSY:
            # Transient, like a dropped SYN: try again after what the server
            # asked, with backoff and jitter; an opening until its
            # connectTimeout, a resume until the session's timeout.
            self._carrier = None
            self._attemptFailed("server busy: %s" % (reason,), None, retryAfter)
            return
        if (
            session is not None
            and not self._confirmed
            and code == _wire.REJECT_UNKNOWN_SESSION
            and self._openRetries < _OPEN_RETRIES
        ):
            # Our confirmation never reached the server: open afresh (a
            # bounded number of times: a server that keeps saying so is not
            # one we can open a session with).
            self._openRetries += 1
            self.session = None
            self._clearAttempt()
            self._retryCall = self.clock.callLater(0, self._attempt)
            return
        if session is None or not self._confirmed:
            self._finishAttempt()
            self._stop()
            opened, self._opened = self._opened, None
            if opened is not None:
                opened.errback(Failure(HandshakeError("server refused: %s" % (reason,), code)))
            return
        if code in _FATAL:
            if self._inAttempt and self._tryAnotherCandidate("refused: %s" % (reason,)):
                # A refusal is not signed: another candidate may be the
                # server that knows the session.
                return
            self._finishAttempt()
            self.log.info(
                "session {sid}: server refused the resume: {reason}",
                sid=session.hexID,
                reason=reason,
            )
            session.end(SessionExpired("server refused the resume: %s" % (reason,)))
            return
        self._carrier = None
        self._attemptFailed("refused: %s" % (reason,), None)
