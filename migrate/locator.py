# -*- test-case-name: tests.test_locate,tests.test_locator_hostile,tests.test_locator_tcp -*-
"""
The embedded locator: moved to L{migrate.locating.server}.

This module is kept for one release so that imports of C{migrate.locator}
keep working; import from L{migrate.locating.server} instead.
"""

from __future__ import annotations

from .locating.server import LocatorServer, LocatorStream, LocatorStreamFactory, RecordTable

__all__ = ["LocatorServer", "LocatorStream", "LocatorStreamFactory", "RecordTable"]
