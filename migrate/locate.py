# -*- test-case-name: tests.test_locate -*-
"""
Locators: moved to L{migrate.locating.client}.

This module is kept for one release so that imports of C{migrate.locate}
keep working; import from L{migrate.locating.client} instead.
"""

from __future__ import annotations

from .errors import LocatorError
from .locating.client import DNSLocator, StaticLocator, locatorList
from .locating.client import _queryTCP as _queryTCP

__all__ = ["DNSLocator", "StaticLocator", "LocatorError", "locatorList"]
