# -*- test-case-name: tests.test_session -*-
"""
The client side: L{ClientConnector} opens a session through any inner
endpoint and keeps it attached; L{AttemptLimiter} bounds the attempts of an
endpoint's sessions.
"""

from .connector import AttemptLimiter, ClientConnector

__all__ = ["AttemptLimiter", "ClientConnector"]
