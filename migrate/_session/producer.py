# -*- test-case-name: tests.test_session,tests.test_channels -*-
"""
The application's writes and its producer: buffer limits, the reasons the
producer is paused, the carriers' producer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.internet.interfaces import IDelayedCall, IPullProducer, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from ..errors import BufferFull, BufferOverflow

from .state import SessionState, _BUDGET, _BUFFER, _CARRIER


@implementer(IPushProducer)
class _PullDriver:
    """
    Drive a pull producer as a push producer, the way Twisted's TCP
    transport does: ask it for data at once when it is registered, then
    again in a later reactor turn for as long as it keeps writing, never
    while paused.  A producer that wrote nothing since it was last asked is
    not asked again until it is resumed after a pause, so an idle producer
    costs nothing.

    @ivar _producer: the application's pull producer.
    @ivar _written: returns how much has been written so far.
    @ivar _onError: called with the failure when the producer raises.
    @ivar _mark: what L{_written} said after the last pull.
    """

    def __init__(
        self,
        producer: IPullProducer,
        clock: IReactorTime,
        written: Callable[[], int],
        onError: Callable[[Failure], None],
    ) -> None:
        self._producer = producer
        self._clock = clock
        self._written = written
        self._onError = onError
        self._paused = False
        self._stopped = False
        self._mark = -1
        self._call: IDelayedCall | None = None

    def start(self, backlog: bool) -> None:
        """
        Ask for data now, as Twisted's transports do on registration; if
        C{backlog} (data written before is still unacknowledged), ask once
        more later whatever it writes now, as they do once their buffer
        drains.
        """
        if not backlog:
            self._mark = self._written()
        self._pull()

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._stopped:
            self._call = self._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._call = None
        if self._stopped:
            return
        try:
            self._producer.resumeProducing()
        except BaseException:
            self._cancel()
            self._onError(Failure())
            return
        written = self._written()
        if written != self._mark:
            self._mark = written
            self._schedule()

    def _cancel(self) -> None:
        self._stopped = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def pauseProducing(self) -> None:
        self._paused = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._cancel()
        self._producer.stopProducing()

    def halt(self) -> None:
        """
        Stop pulling without telling the producer (it was unregistered).
        """
        self._cancel()


class ProducerRole(SessionState):
    """
    The application's writes and its producer: buffer limits, the reasons
    the producer is paused, the carriers' producer.
    """

    if not TYPE_CHECKING:
        # (Slots at run time, so that a session has no __dict__; the type
        # checker sees the attributes the session declares.)
        __slots__ = ()

    def setBufferSize(self, size: int) -> None:
        """
        Pause the application's producer above C{size} unacknowledged bytes
        from now on (resume below half of it); the hard cap is raised to
        C{size} if it was lower.

        @raise ValueError: C{size} is not positive.
        """
        if self.newBufferSize(size):
            self._resumeFor(_BUFFER)

    def write(self, data: bytes) -> None:
        """
        Send application data (see L{MigrateTransport.write}).

        @raise TypeError: C{data} is not C{bytes}.
        """
        if not isinstance(data, bytes):
            raise TypeError("Data must be bytes")
        if self.noWrites or not data:
            return
        engine = self.engine
        n = len(data)
        if self.overCap(n):
            if self.options.overflow == "raise":
                raise BufferFull(
                    "session buffer at its hard cap of %d bytes" % (self.hardCap,)
                )
            self.log.warn(
                "session {sid} closed: buffer passed its hard cap of {cap} bytes",
                sid=self.hexID,
                cap=self.hardCap,
            )
            self._depth += 1
            try:
                self._abort(Failure(BufferOverflow("session buffer passed its hard cap")))
            finally:
                self._depth -= 1
            return
        carrier = self.carrier
        zero = self._zero
        if zero is not None and zero.limit and not zero.fits(engine.sent, engine.sent + n):
            # Past the peer's window on our first stream (a session with
            # channels): buffered now, framed when the window opens.
            ackSent = engine.ackSent
            engine.send(data)
            engine.ackSent = ackSent
            self._zeroFlush()
        elif n <= self._smallWrite:
            frame = engine.sendSmall(data)
            if carrier is not None:
                carrier.transport.write(frame)
                if zero is not None:
                    zero.written = engine.sent
        else:
            frames = engine.send(data)
            if carrier is not None:
                carrier.transport.writeSequence(frames)
                if zero is not None:
                    zero.written = engine.sent
        if not self._watching:
            self._watch()
        if engine.sent - engine.acked > self.highWater:
            self._depth += 1
            try:
                self._checkBuffer()
            finally:
                self._depth -= 1

    def _checkBuffer(self) -> None:
        if self.bufferFull():
            if _BUFFER not in self.pauseReasons:
                self.onBufferHigh()
            self._pauseFor(_BUFFER)

    def pauseForBudget(self, paused: bool) -> None:
        """
        The server is over (C{True}) or back under (C{False}) its memory
        budget: pause or resume the application's producer.
        """
        if paused:
            self._pauseFor(_BUDGET)
        else:
            self._resumeFor(_BUDGET)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        """
        Register the application's producer.

        @raise RuntimeError: one is registered already.
        """
        self._depth += 1
        try:
            self._registerProducer(producer, streaming)
        finally:
            self._depth -= 1

    def _registerProducer(self, producer: object, streaming: bool) -> None:
        if self._appProducer is not None:
            raise RuntimeError(
                "Cannot register producer %s, because producer %s was never "
                "unregistered." % (producer, self._appProducer)
            )
        if self.appLost:
            producer.stopProducing()  # type: ignore[attr-defined]
            return
        self._appProducer = producer
        if streaming:
            self._producer = producer  # type: ignore[assignment]
            if self.producerRegistered():
                producer.pauseProducing()  # type: ignore[attr-defined]
        else:
            driver = _PullDriver(
                producer,  # type: ignore[arg-type]
                self.clock,
                lambda: self.engine.sent,
                self._appFailed,
            )
            self._pullDriver = driver
            self._producer = driver
            if self.producerRegistered():
                driver.pauseProducing()
            driver.start(self.engine.buffered > 0)

    def unregisterProducer(self) -> None:
        """
        Unregister the application's producer; a pending FIN goes out.
        """
        self._depth += 1
        try:
            self._unregisterProducer()
        finally:
            self._depth -= 1

    def _unregisterProducer(self) -> None:
        driver = self._pullDriver
        self._producer = self._appProducer = self._pullDriver = None
        if driver is not None:
            driver.halt()
        if self.finPending and not self.appLost:
            self._sendFin()

    def _pauseFor(self, reason: str) -> None:
        producer = self._producer
        if self.pauseFor(reason, producer is not None):
            assert producer is not None
            try:
                producer.pauseProducing()
            except BaseException:
                self._appFailed(Failure())

    def _resumeFor(self, reason: str) -> None:
        producer = self._producer
        if self.resumeFor(reason, producer is not None):
            assert producer is not None
            try:
                producer.resumeProducing()
            except BaseException:
                self._appFailed(Failure())

    def pauseProducing(self) -> None:
        """
        The carrier's send buffer is full.
        """
        if self.carrier is not None:
            self.carrier.writeBlocked = True
        self._pauseFor(_CARRIER)
        if self.channels is not None:
            self.channels.setWriteBlocked(True)

    def resumeProducing(self) -> None:
        """
        The carrier's send buffer drained.
        """
        if self.carrier is not None:
            self.carrier.writeBlocked = False
        self._resumeFor(_CARRIER)
        if self.channels is not None:
            self.channels.setWriteBlocked(False)

    def stopProducing(self) -> None:
        """
        The carrier is going away; its loss detaches us, nothing to do here.
        """

