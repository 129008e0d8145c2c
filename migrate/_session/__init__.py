# -*- test-case-name: tests.test_session,tests.test_channels,tests.test_machine -*-
"""
A session: one application protocol, many carriers over its lifetime.

L{Session} joins the sans-IO L{SessionMachine
<migrate._sansio.session.SessionMachine>} (how the stream ends, the
deadlines), L{StreamEngine <migrate._sansio.stream.StreamEngine>}
(positions, retransmission) and L{Liveness
<migrate._sansio.liveness.Liveness>} to the world: it writes their frames to
the current carrier, passes received payload to the application, keeps one
timer for the machine's deadlines on an injected clock, and implements the
producer/consumer rules of the wrapper:

  - the session, never the application's producer, is registered as the
    producer of every carrier, so a dying carrier cannot stop the
    application's producer;
  - the application's producer is paused for any of four reasons (the
    carrier's buffer is full, the session is detached, too many bytes await
    acknowledgement, the server is over its memory budget) and resumed only
    when none remains;
  - an application that paused reading stays paused on every new carrier.

L{Session} is one class with several roles, each a mixin in a module of its
own (all deriving from L{migrate._session.state.SessionState}, which
declares the state they share):

  - L{migrate._session.core}: the session itself (its owner, its carriers,
    the frames they bring, the one timer), and L{restoreSession};
  - L{migrate._session.closing}: how it ends (close, half close, abort,
    lingering, expiry) and telling the application;
  - L{migrate._session.producer}: the application's writes and producer;
  - L{migrate._session.reading}: the application's reading;
  - L{migrate._session.liveness}: watching the carrier's path, and
    advertising our addresses;
  - L{migrate._session.hibernation}: checkpoints and hibernation;
  - L{migrate._session.channels}: a session's channels.

States::

    ATTACHED <--> DETACHED          (carrier lost / verified resume)
        \\          /
         -> CLOSED                  (clean close, expiry, abort, overflow)
"""

from __future__ import annotations

from .core import Session, restoreSession
from .producer import _PullDriver
from .state import State

__all__ = ["Session", "State", "restoreSession", "_PullDriver"]
