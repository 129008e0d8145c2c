# -*- test-case-name: tests.test_session -*-
"""
Addresses as text: the one way Migrate writes and reads C{host:port}.

IPv6 hosts are written in brackets (C{"[::1]:7001"}), IPv4 hosts and names
as they are (C{"10.0.0.1:7001"}).  Logs, snapshots, stored records and
advertisements all use these.
"""

from __future__ import annotations

from typing import Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress


def formatHostPort(host: str, port: int) -> str:
    """
    C{"host:port"}, or C{"[host]:port"} for IPv6.
    """
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def formatAddress(address: Optional[IAddress]) -> str:
    """
    C{"host:port"} (C{"[host]:port"} for IPv6) of an address, C{""} for
    none, or the address's own text when it has no host and port.
    """
    if address is None:
        return ""
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address)
    return ("[%s]:%s" if ":" in host else "%s:%s") % (host, port)


def parseAddress(text: str) -> Optional[IAddress]:
    """
    The address L{formatAddress} wrote, as a TCP address, or C{None}.
    """
    if not text or ":" not in text:
        return None
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        return None
    if host.startswith("["):
        return IPv6Address("TCP", host.strip("[]"), number)
    return IPv4Address("TCP", host, number)


def hostOf(address: IAddress) -> str:
    """
    The host part of an address, as text (the address's own text when it
    has no host).
    """
    return str(getattr(address, "host", address))
