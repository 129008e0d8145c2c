# -*- test-case-name: tests.test_hostile -*-
"""
What the server counts a peer under, for its per-address limits.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.interfaces import IAddress

from .._address import hostOf


_hostOf = hostOf


def _shareOf(address: IAddress) -> str:
    """
    What the per-address limits count C{address} under: its host, but for
    IPv6 its /64 network (one subscriber's, which it may spread over as
    many addresses as it likes), and an IPv4-mapped IPv6 address as the
    IPv4 address it is.
    """
    host = _hostOf(address)
    if ":" not in host:
        return host
    try:
        parsed = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
