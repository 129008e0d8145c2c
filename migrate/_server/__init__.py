# -*- test-case-name: tests.test_hostile,tests.test_hibernation,tests.test_moves -*-
"""
The server side: see L{migrate._server.factory}.
"""

from __future__ import annotations

from .._session import Session, State
from .factory import (
    HANDSHAKE_COST,
    RECORD_COST,
    MigrateServerFactory,
    _hostOf,
    _PendingCarrier,
    _shareOf,
)

__all__ = [
    "HANDSHAKE_COST",
    "RECORD_COST",
    "MigrateServerFactory",
    "Session",
    "State",
    "_PendingCarrier",
    "_hostOf",
    "_shareOf",
]
