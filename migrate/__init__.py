# -*- test-case-name: tests -*-
"""
Migrate: session-layer mobility for Twisted.

Wrap any protocol factory and its connections survive the loss of their TCP
connections, changes of address and long absences::

    from twisted.internet.endpoints import serverFromString
    serverFromString(reactor, "migrate:tcp:7001").listen(factory)

The public names are listed in C{__all__}; everything else is private.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._endpoints import MigrateClientEndpoint, MigrateServerEndpoint
from ._multiplex import MultiplexingEndpoint
from ._options import SessionOptions
from ._server import MigrateServerFactory
from .errors import (
    BufferFull,
    BufferOverflow,
    ChannelRefused,
    ChannelReset,
    HandshakeError,
    PeerAborted,
    SessionExpired,
)
from .interfaces import IMigrateTransport

try:
    __version__: str = _version("txmigrate")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "MigrateClientEndpoint",
    "MigrateServerEndpoint",
    "MigrateServerFactory",
    "MultiplexingEndpoint",
    "SessionOptions",
    "IMigrateTransport",
    "SessionExpired",
    "BufferOverflow",
    "BufferFull",
    "PeerAborted",
    "HandshakeError",
    "ChannelRefused",
    "ChannelReset",
]
