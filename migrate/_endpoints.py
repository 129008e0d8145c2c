# -*- test-case-name: tests.test_endpoints -*-
"""
Endpoints and endpoint-string parsers.

C{migrate:} is a prefix that wraps any inner endpoint string, the way
Twisted's C{haproxy:} does: C{migrate:tcp:7001} listens with Migrate on top
of C{tcp:7001}; C{migrate:tls:host=example.org:port=7001} connects with
Migrate on top of a verified TLS connection.  Keyword arguments named after
L{SessionOptions} fields configure Migrate and are removed before the rest
is handed to the inner parser.
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Optional

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    clientFromString,
    quoteStringArgument,
    serverFromString,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from zope.interface import implementer

from ._client import ClientConnector
from ._options import SessionOptions
from ._server import MigrateServerFactory


@implementer(IStreamServerEndpoint)
class MigrateServerEndpoint:
    """
    Listen for Migrate sessions on any stream server endpoint.

    @ivar clock: the clock for session timers (usually the reactor).
    @ivar endpoint: the inner endpoint carriers arrive on.
    @ivar options: session options.
    @ivar factory: the wrapping factory of the last C{listen}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamServerEndpoint,
        options: Optional[SessionOptions] = None,
    ) -> None:
        self.clock = clock
        self.endpoint = endpoint
        self.options = options if options is not None else SessionOptions()
        self.factory: MigrateServerFactory | None = None

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen with C{protocolFactory}'s protocols wrapped in sessions.

        @return: a Deferred firing with the inner endpoint's listening port
            (its C{getHost()} is the real address).
        """
        self.factory = MigrateServerFactory(protocolFactory, self.clock, self.options)
        return self.endpoint.listen(self.factory)


@implementer(IStreamClientEndpoint)
class MigrateClientEndpoint:
    """
    Open Migrate sessions through any stream client endpoint; each session
    reconnects through the same endpoint when its carrier is lost.

    @ivar clock: the clock for session timers (usually the reactor).
    @ivar endpoint: the inner endpoint carriers are made with.
    @ivar options: session options.
    @ivar rng: the random source of reconnect jitter.
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        options: Optional[SessionOptions] = None,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.clock = clock
        self.endpoint = endpoint
        self.options = options if options is not None else SessionOptions()
        self.rng = rng if rng is not None else random.Random()

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Open a session.

        @return: a Deferred firing with the application protocol once the
            session is established, or failing with the inner endpoint's
            error or L{migrate.errors.HandshakeError}.
        """
        connector = ClientConnector(
            self.clock, self.endpoint, protocolFactory, self.options, self.rng
        )
        return connector.open()


def _split(kwargs: Mapping[str, Any]) -> tuple[SessionOptions, dict[str, Any]]:
    names = SessionOptions.names()
    ours = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return SessionOptions.fromStrings(ours), rest


def _unparse(args: tuple[object, ...], kwargs: Mapping[str, object]) -> str:
    return ":".join(
        [quoteStringArgument(str(arg)) for arg in args]
        + sorted(
            "%s=%s" % (quoteStringArgument(str(k)), quoteStringArgument(str(v)))
            for k, v in kwargs.items()
        )
    )


def serverEndpointFromArgs(
    reactor: Any, args: tuple[object, ...], kwargs: Mapping[str, Any]
) -> MigrateServerEndpoint:
    """
    Build a server endpoint from parsed C{migrate:} arguments.

    @raise ValueError: no inner endpoint, or bad Migrate options.
    """
    if not args:
        raise ValueError("migrate: needs an inner endpoint, e.g. migrate:tcp:7001")
    options, rest = _split(kwargs)
    return MigrateServerEndpoint(
        reactor, serverFromString(reactor, _unparse(args, rest)), options
    )


def clientEndpointFromArgs(
    reactor: Any, args: tuple[object, ...], kwargs: Mapping[str, Any]
) -> MigrateClientEndpoint:
    """
    Build a client endpoint from parsed C{migrate:} arguments.

    @raise ValueError: no inner endpoint, or bad Migrate options.
    """
    if not args:
        raise ValueError(
            "migrate: needs an inner endpoint, e.g. migrate:tcp:host=example.org:port=7001"
        )
    options, rest = _split(kwargs)
    return MigrateClientEndpoint(
        reactor, clientFromString(reactor, _unparse(args, rest)), options
    )
