"""
Twisted plugin dropin for Migrate: the C{migrate:} endpoint-string prefix
for servers and clients, and the C{twistd migrate} service maker.  Imports
nothing heavy and never the reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _MigrateServerParser:
    """
    C{migrate:INNER...} server endpoints.
    """

    prefix = "migrate"

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: Any) -> Any:
        from migrate._endpoints import serverEndpointFromArgs

        return serverEndpointFromArgs(reactor, args, kwargs)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class _MigrateClientParser:
    """
    C{migrate:INNER...} client endpoints.
    """

    prefix = "migrate"

    def parseStreamClient(self, reactor: Any, *args: object, **kwargs: Any) -> Any:
        from migrate._endpoints import clientEndpointFromArgs

        return clientEndpointFromArgs(reactor, args, kwargs)


migrateServerParser = _MigrateServerParser()
migrateClientParser = _MigrateClientParser()


@implementer(IPlugin, IServiceMaker)
class _MigrateServiceMaker:
    """
    C{twistd migrate}: forward a TCP service through Migrate sessions.
    """

    tapname = "migrate"
    description = "Forward TCP through Migrate sessions that survive roaming."

    @property
    def options(self) -> Any:
        from migrate.tap import Options

        return Options

    def makeService(self, options: Any) -> Any:
        from migrate.tap import makeService

        return makeService(options)


migrateServiceMaker = _MigrateServiceMaker()


@implementer(IPlugin, IServiceMaker)
class _LocatorServiceMaker:
    """
    C{twistd migrate-locator}: the embedded DNS locator.
    """

    tapname = "migrate-locator"
    description = "A small DNS server that mobile Migrate hosts publish their addresses to."

    @property
    def options(self) -> Any:
        from migrate.tap import LocatorOptions

        return LocatorOptions

    def makeService(self, options: Any) -> Any:
        from migrate.tap import makeLocatorService

        return makeLocatorService(options)


locatorServiceMaker = _LocatorServiceMaker()
