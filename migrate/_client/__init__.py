# -*- test-case-name: tests.test_session,tests.test_layering -*-
"""
The client side: L{ClientConnector} opens a session through any inner
endpoint and keeps it attached; L{AttemptLimiter} bounds the attempts of an
endpoint's sessions.

One module per role of the connector (see L{migrate._client.base}):
L{connector<migrate._client.connector>},
L{attempt<migrate._client.attempt>},
L{handshaking<migrate._client.handshaking>},
L{candidates<migrate._client.candidates>} and
L{mobility<migrate._client.mobility>}.
"""

from .attempt import _OPEN_RETRIES, _SUMMARY_INTERVAL, AttemptLimiter, _CarrierFactory
from .candidates import _LOOKUP_INTERVAL, _STAGGER
from .connector import ClientConnector
from .handshaking import _FATAL

__all__ = [
    "AttemptLimiter",
    "ClientConnector",
    "_CarrierFactory",
    "_FATAL",
    "_LOOKUP_INTERVAL",
    "_OPEN_RETRIES",
    "_STAGGER",
    "_SUMMARY_INTERVAL",
]
