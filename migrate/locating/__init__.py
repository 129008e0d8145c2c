# -*- test-case-name: tests.test_locate -*-
"""
Locating mobile hosts through DNS.

  - L{migrate.locating.client}: the locators a session asks where a host
    is now, and through which a server publishes its addresses
    (L{DNSLocator<migrate.locating.client.DNSLocator>},
    L{StaticLocator<migrate.locating.client.StaticLocator>}).
  - L{migrate.locating.server}: the embedded DNS locator server
    (L{LocatorServer<migrate.locating.server.LocatorServer>},
    C{twistd migrate-locator}).

Nothing is imported here: import the submodule you need.
"""
