# -*- test-case-name: tests.test_hostile,tests.test_hibernation,tests.test_moves -*-
"""
The server side: a wrapping protocol factory that keeps a table of sessions.

L{MigrateServerFactory} is one class with several roles, each a mixin in a
module of its own (all deriving from L{migrate._server.state.ServerState},
which declares the state they share):

  - L{migrate._server.factory}: the factory itself (wiring, start, stop);
  - L{migrate._server.handshaking}: handshakes of new carriers (pending
    limits, opening, live and stored resume);
  - L{migrate._server.table}: the session table (live, detached and closed
    sessions, per-address accounting);
  - L{migrate._server.budget}: the memory budget;
  - L{migrate._server.hibernation}: checkpoints into the store, restores,
    expiry and store failures;
  - L{migrate._server.presence}: our addresses, advertisements and locator
    publication;
  - L{migrate._server.admin}: the operator's requests (list, expire,
    drain, end);
  - L{migrate._server.shutdown}: stopping with the reactor;

and small helpers: L{migrate._server.constants},
L{migrate._server.addresses} and L{migrate._server.pending}.

This package re-exports what other modules and tests import from
C{migrate._server}.
"""

from __future__ import annotations

# Session and State were names of the module migrate._server before it
# became this package; they are still found here.
from .._session import Session, State
from .addresses import _hostOf, _shareOf
from .constants import (
    HANDSHAKE_COST,
    RECORD_COST,
    _BUSY_RETRY,
    _FULL_RETRY,
    _RESTART_NOTICE,
    _SHUTDOWN_NOTICE,
    _STOPPING_RETRY,
    _TRIM_AFTER,
)
from .factory import MigrateServerFactory
from .handshaking import _both, _checkSecure
from .pending import _PendingCarrier

__all__ = [
    "MigrateServerFactory",
    "HANDSHAKE_COST",
    "RECORD_COST",
    "Session",
    "State",
    "_BUSY_RETRY",
    "_FULL_RETRY",
    "_PendingCarrier",
    "_RESTART_NOTICE",
    "_SHUTDOWN_NOTICE",
    "_STOPPING_RETRY",
    "_TRIM_AFTER",
    "_both",
    "_checkSecure",
    "_hostOf",
    "_shareOf",
]
