# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
How a session ends, as decided by L{migrate._sansio.session.SessionMachine}:
close, half close, abort, lingering, expiry, and telling the application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.python import context
from twisted.python.failure import Failure

from .._sansio import wire as _wire
from .._sansio import session as _machine
from ..errors import BufferOverflow, SessionExpired

if TYPE_CHECKING:
    from .._protocol import Carrier
    from .state import AnyCarrier


from .state import SessionState, State


class ClosingRole(SessionState):
    """
    How a session ends, as decided by
    L{migrate._sansio.session.SessionMachine}: close, half close, abort,
    lingering, expiry, and telling the application.
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    def _expire(self) -> None:
        self._end(
            SessionExpired(
                "session detached for more than %g seconds" % (self.policy.expireAfter(),)
            )
        )

    def loseWriteConnection(self) -> None:
        """
        End our direction once the producer, if any, is unregistered (until
        then its writes still go out, as on Twisted's TCP transport).
        """
        self._depth += 1
        try:
            self._loseWriteConnection()
        finally:
            self._depth -= 1

    def _loseWriteConnection(self) -> None:
        if self.halfClose(self._appProducer is not None):
            self._sendFin()

    def loseConnection(self) -> None:
        """
        Close: no more data to the application, FIN after every byte
        written.  As on Twisted's TCP transport, the application hears
        C{connectionLost} once the FIN is written to a carrier; the session
        then finishes in the background (retransmitting through
        detachments, acknowledging the peer's FIN) up to C{closeTimeout}.
        """
        self._depth += 1
        try:
            self._loseConnection()
        finally:
            self._depth -= 1

    def _loseConnection(self) -> None:
        step = self.close()
        if step is None:
            return
        if step == _machine.HALF_CLOSE:
            self._loseWriteConnection()
        elif step == _machine.CLOSE_DONE:
            self._closeDone()
        self._checkFinished()

    def _sendFin(self) -> None:
        # (A close, not a half-close, gets its deadline: after a half-close
        # the other direction may carry data for as long as it likes, as on
        # TCP.)
        frame = self.finish(self.clock.seconds())
        self._arm()
        carrier = self.carrier
        zero = self._zero
        if zero is not None and zero.limit:
            # After everything the peer's window lets out before it.
            self._zeroFlush()
        elif carrier is not None:
            carrier.transport.write(frame)
            self._watch()
            self._finWrittenOut()
        self._checkFinished()

    def _finWrittenOut(self) -> None:
        """
        Our FIN was written to a carrier: a full close is done for the
        application; a half-closing application hears
        C{writeConnectionLost}.
        """
        if self.finWrittenOut():
            self._closeDone()
        elif not self.appLost:
            halfCloseable = IHalfCloseableProtocol(self.app, None)
            if halfCloseable is not None:
                self.clock.callLater(0, self._writeConnectionLost, halfCloseable)

    def _writeConnectionLost(self, halfCloseable: IHalfCloseableProtocol) -> None:
        if self.appLost:
            return
        try:
            context.call(self._logContext, halfCloseable.writeConnectionLost)
        except BaseException:
            self._appFailed(Failure())

    def _closeDone(self) -> None:
        """
        The application's full close is complete on our side.
        """
        self._appGone(Failure(ConnectionDone("session closed cleanly")))
        if self.unreadAfterClose and self.aborting is None:
            self._resetAfterClose()

    def _resetAfterClose(self) -> None:
        """
        The peer sent data after the application closed: as a TCP close
        with unread data resets the connection, abort the session.
        """
        self.log.info(
            "session {sid}: the peer sent data after the close; aborted", sid=self.hexID
        )
        self._abortPeer("connection closed by the peer; data after the close discarded")

    def _closeTimedOut(self) -> None:
        if self.engine.acked >= self.engine.sent:
            reason: Exception = ConnectionDone("closed; the peer did not finish its close")
        else:
            reason = SessionExpired("close did not complete in time")
        carrier = self.carrier
        self.carrier = None
        if carrier is not None:
            carrier.retire("close timed out", graceful=True)
        self._end(reason)

    def _checkFinished(self) -> None:
        if not self.finishReady():
            return
        channels = self.channels
        # Our own stream may be complete while the session lives on in its
        # other channels (a client's, unless they all linger too).
        live = channels is not None and bool(channels) and not (
            self.isClient and channels.allLingering()
        )
        carrier = self.carrier
        step = self.finishStep(live, carrier is not None, self.clock.seconds())
        self._arm()
        if step == _machine.WAIT_CHANNELS:
            return
        if step == _machine.LINGER:
            # The server learns that its stream arrived from our
            # acknowledgements only, and closes the carrier once it has
            # them all: linger until it has.
            assert carrier is not None
            self._stopLiveness()
            if self.engine.unacknowledged:
                carrier.transport.write(self.engine.ackFrame())
            carrier.retire("session closed", waitForPeer=True, patient=True)
            if self.parent is not None:
                self.parent.channelSettled()
            return
        self.carrier = None
        if carrier is not None:
            if self.engine.unacknowledged:
                carrier.transport.write(self.engine.ackFrame())
            carrier.retire("session closed", graceful=True)
        self._end(ConnectionDone("session closed cleanly"))

    def abort(self, reason: Optional[Failure] = None) -> None:
        """
        End at once, dropping what is unsent: the application hears
        C{connectionLost} (with C{reason}, by default L{ConnectionAborted})
        in the next reactor turn, and the peer is told.  A second call, or
        a call after the end, does nothing.
        """
        self._depth += 1
        try:
            self._abort(reason)
        finally:
            self._depth -= 1

    def _abort(self, reason: Optional[Failure] = None) -> None:
        if self.appLost:
            return
        if self.ended:
            self._appGone(reason if reason is not None else Failure(ConnectionAborted()))
            return
        if reason is None:
            reason = Failure(ConnectionAborted())
        self._appGone(reason)
        if reason.check(BufferOverflow):
            notice = "buffer overflow"
        elif reason.check(ConnectionAborted):
            notice = "aborted"
        else:
            notice = "application error"
        if self._lostCall is not None:
            # As Twisted's TCP, whose reset goes out when the aborting
            # side's connectionLost is delivered: the peer does not hear of
            # the abort before the application that made it.
            self._abortNotice = notice
            return
        self._abortPeer(notice)

    def _abortPeer(self, notice: str) -> None:
        """
        Make our abort reach the peer.  Attached: an C{ABORT} frame, then the
        carrier is closed by the peer once it read it.  A server is done at
        once: it remembers the ended session for a while and tells a peer
        that resumes it.  A client keeps the session until the peer closed
        a carrier after its abort, resuming to deliver it if need be (up to
        C{closeTimeout}).
        """
        if self.ended:
            return
        if self.abortPeer(notice, self.clock.seconds()):
            self._arm()
            self._stopLiveness()
            if self.carrier is not None:
                self._sendAbort(notice)
            return
        carrier = self.carrier
        self.carrier = None
        if carrier is not None:
            # If it does not arrive, the peer resumes and is told then.
            carrier.transport.write(_wire.encodeAbort(notice))
            carrier.retire("session aborted", graceful=True)
        self._end(ConnectionAborted(notice))

    def _sendAbort(self, notice: str) -> None:
        carrier = self.carrier
        assert carrier is not None
        carrier.transport.write(_wire.encodeAbort(notice))
        # The session keeps the carrier: its clean close by the peer ends
        # the session (see carrierLost); losing it otherwise means trying
        # again on another.
        carrier.retire("session aborted", waitForPeer=True)

    def _lingerTimedOut(self) -> None:
        self.log.info(
            "session {sid}: the server did not confirm our last acknowledgement in time",
            sid=self.hexID,
        )
        self._end(ConnectionDone("session closed cleanly"))

    def _abortTimedOut(self) -> None:
        self.log.info("session {sid}: the abort did not reach the peer in time", sid=self.hexID)
        self._end(ConnectionAborted("aborted"))

    def _appFailed(self, failure: Failure) -> None:
        """
        An application callback raised: log it once and abort the session,
        the application hearing the error itself (as from Twisted's
        transports).
        """
        self.log.failure(
            "session {sid}: the application raised; session aborted", failure, sid=self.hexID
        )
        self._abort(failure)

    def _appGone(self, reason: Failure) -> None:
        """
        The application's connection is over: no more writes, no more data;
        C{connectionLost} is delivered at once when the end comes from the
        network or a timer (as Twisted's transports do), and in the next
        reactor turn when it comes from within the application's own call
        (never re-entrantly).
        """
        if not self.appGone():
            return
        driver = self._pullDriver
        if driver is not None:
            driver.halt()
        if self._readPaused:
            # Reading is no longer the application's to pause: what still
            # comes (acknowledgements, the peer's FIN or ABORT) finishes the
            # session.
            self._readPaused = False
            if self._held is not None:
                if self._heldCall is None:
                    self._heldCall = self.clock.callLater(0, self._flushHeld)
            elif self.carrier is not None and not self.carrier.retired:
                self.carrier.resumeReading()
        self._lostReason = reason
        if self._depth:
            self._lostCall = self.clock.callLater(0, self._deliverLost, reason)
        else:
            self._deliverLost(reason)

    def _deliverLost(self, reason: Failure) -> None:
        self._lostCall = None
        try:
            self._tellLost(reason)
        finally:
            notice, self._abortNotice = self._abortNotice, None
            if notice is not None:
                self._abortPeer(notice)

    def _tellLost(self, reason: Failure) -> None:
        producer = self._producer
        self._producer = self._appProducer = self._pullDriver = None
        if producer is not None:
            try:
                producer.stopProducing()
            except BaseException:
                self.log.failure("producer's stopProducing raised")
        if self.transport is not None:
            self.upcalls.notify("sessionEnded", self.transport, reason)
        app = self.app
        if app is not None:
            try:
                context.call(self._logContext, app.connectionLost, reason)
            except BaseException:
                self.log.failure("connectionLost raised")

    def _end(self, reason: Exception) -> None:
        """
        End the session: cancel every timer, abort a carrier still held,
        and tell the application (once) if it was not told already.
        """
        if not self.markEnded():
            return
        self.endReason = reason
        self.state = State.CLOSED
        self._stopLiveness()
        self._arm()
        call, self._heldCall = self._heldCall, None
        if call is not None and call.active():
            call.cancel()
        carrier = self.carrier
        if carrier is not None:
            self.carrier = None
            carrier.retire("session ended")
        if self.channels is not None:
            self.channels.sessionEnded(reason)
        self._tellAppEnded(reason)
        detail = " ".join(str(a) for a in reason.args if a)
        self.log.info(
            "session {sid} ended: {reason}{detail}",
            sid=self.hexID,
            reason=reason.__class__.__name__,
            detail=" (%s)" % (detail,) if detail else "",
            event="ended",
        )
        parent = self.parent
        if parent is not None and parent.channels is not None:
            parent.channels.channelEnded(self.session)
        self.onEnd(self.session)
        if not self._closingCarriers:
            self._fireEnded()

    def _tellAppEnded(self, reason: Exception) -> None:
        """
        Tell the application that the session ended with C{reason}, unless
        it is a half-closing application whose both directions ended
        cleanly: that one keeps its connection until it closes it, as on
        Twisted's TCP.
        """
        if not (
            isinstance(reason, ConnectionDone)
            and not self.closeRequested
            and IHalfCloseableProtocol.providedBy(self.app)
        ):
            self._appGone(Failure(reason))

    def carriers(self) -> list[Carrier]:
        """
        Every carrier this session still holds: its current one and those
        closing.  (A channel's carriers are parts of its session's, which
        are the ones that matter to whoever waits for them: only a
        session's own are asked for.)
        """
        held = list(self._closingCarriers or ())
        if self.carrier is not None and self.carrier not in held:
            held.append(self.carrier)
        return cast("list[Carrier]", held)

    def carrierClosing(self, carrier: AnyCarrier) -> None:
        """
        A carrier of ours is closing (flushing, or waiting for the peer to
        close it): the session is not over until it has.
        """
        if self._closingCarriers is None:
            self._closingCarriers = set()
        self._closingCarriers.add(carrier)

    def carrierClosed(self, carrier: AnyCarrier) -> None:
        """
        A carrier of ours has closed.
        """
        closing = self._closingCarriers
        if closing is not None:
            closing.discard(carrier)
            if not closing:
                self._closingCarriers = None
                if self.ended:
                    self._fireEnded()

    def _fireEnded(self) -> None:
        waiting, self._endWaiters = self._endWaiters, None
        for d in waiting or ():
            d.callback(None)

    def end(self, reason: Exception, notice: Optional[str] = None) -> None:
        """
        End the session now (expiry by the operator, a refused resume, a
        server at capacity, ...): the application hears C{reason}.

        @param notice: why, as told to the peer: now in an C{ABORT} if
            attached, and (on a server) to a client that resumes it later.
        """
        if self.ended:
            return
        if notice is not None:
            self.endNotice = notice
            carrier = self.carrier
            if carrier is not None:
                self.carrier = None
                carrier.transport.write(_wire.encodeAbort(notice))
                carrier.retire("session ended: %s" % (notice,), graceful=True)
        self._end(reason)

    def whenEnded(self) -> Deferred[None]:
        """
        A Deferred that fires once the session is entirely over: ended, and
        every carrier it had closed.
        """
        if self.ended and not self._closingCarriers:
            return succeed(None)
        d: Deferred[None] = Deferred()
        if self._endWaiters is None:
            self._endWaiters = []
        self._endWaiters.append(d)
        return d

    def shutdown(self) -> None:
        """
        The reactor is stopping: end now, and tell the application now (it
        would not get another reactor turn).
        """
        carrier, self.carrier = self.carrier, None
        if carrier is not None:
            carrier.abandon()
        if self.channels is not None:
            self.channels.shutdown()
        reason = ConnectionLost("the reactor is shutting down")
        self._end(reason)
        self._appGone(Failure(reason))
        call = self._lostCall
        if call is not None and call.active() and self._lostReason is not None:
            call.cancel()
            self._deliverLost(self._lostReason)

    @property
    def closing(self) -> bool:
        """
        Whether a close was requested and has not completed.
        """
        return self.writeClosed and not self.appLost

