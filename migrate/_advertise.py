# -*- test-case-name: tests.test_advertise -*-
"""
What a server tells each client about where it can be reached.

A client follows a server's advertised addresses only when they can be
trusted to lead to the same server: when the operator configured them
(C{advertise=HOST:PORT,...}: an address behind NAT, a port forward or a load
balancer is the operator's to state), or when the address the client
actually reached is among them (so nothing translated the path).  With the
default, C{advertise=auto}, a server advertises to each session only
addresses of the same kind as the one that session's client reached
(loopback, link-local, private, global), never addresses on container
bridges or tunnels unless the client came through that very interface, and
always the address in use first as long as it lasts: clients are asked to
move only when the address they use goes away (removed or deprecated),
never because another address appeared.

Pure functions; no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from twisted.internet.abstract import isIPAddress, isIPv6Address

from ._address import formatHostPort

# Interfaces whose addresses only their own peers can reach: container
# bridges, virtual machine networks, tunnels and VPNs.
_ISOLATED_PREFIXES = (
    "docker",
    "br-",
    "veth",
    "virbr",
    "vnet",
    "cni",
    "flannel",
    "cali",
    "weave",
    "kube",
    "podman",
    "lxcbr",
    "lxdbr",
    "vboxnet",
    "vmnet",
    "tun",
    "tap",
    "wg",
    "tailscale",
    "zt",
    "utun",
)


def addressClass(address: str) -> str:
    """
    The kind of an IP address: C{"loopback"}, C{"link-local"},
    C{"private"} (anything not globally routable) or C{"global"}; C{"other"}
    for what is not an IP address.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "other"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_global:
        return "global"
    return "private"


def isolatedInterface(name: Optional[str]) -> bool:
    """
    Whether an interface (by name) belongs to a container bridge, a virtual
    machine network or a tunnel.
    """
    return bool(name) and str(name).startswith(_ISOLATED_PREFIXES)


@dataclass(frozen=True)
class AdvertisePolicy:
    """
    A server's rule for what it advertises.

    @ivar mode: C{"auto"}, C{"none"} or C{"configured"}.
    @ivar configured: the operator's C{"host:port"} list (mode
        C{"configured"}).
    """

    mode: str = "auto"
    configured: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: Optional[str]) -> AdvertisePolicy:
        """
        Parse an C{advertise=} value: C{auto}, C{none}, or a comma-separated
        list of C{HOST:PORT} (C{[HOST]:PORT} for IPv6).

        @raise ValueError: a malformed value, with what is expected.
        """
        if text is None or text == "auto":
            return cls()
        if text == "none":
            return cls("none")
        entries = [e.strip() for e in text.split(",") if e.strip()]
        if not entries:
            raise ValueError("advertise: expected auto, none or HOST:PORT[,HOST:PORT...]")
        out = []
        for entry in entries:
            host, sep, port = entry.rpartition(":")
            host = host.strip("[]")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    "advertise: %r is not HOST:PORT (expected auto, none or "
                    "HOST:PORT[,HOST:PORT...])" % (entry,)
                )
            if "%" in host:
                raise ValueError(
                    "advertise: %r: a scoped address (with a %%zone) means "
                    "nothing to another host" % (entry,)
                )
            if not (isIPAddress(host) or isIPv6Address(host)):
                # Clients compare the address they reached with these, and
                # dial them as given: a name would never match (and would
                # send them round in circles) or be looked up anew each time.
                raise ValueError(
                    "advertise: %r: give an IP address, not a name (clients "
                    "compare the address they reached with these)" % (entry,)
                )
            # In its shortest form, so that every entry fits the frame.
            host = ipaddress.ip_address(host).compressed
            out.append(formatHostPort(host, int(port)))
        return cls("configured", tuple(out))

    def addresses(
        self,
        reached: Optional[str],
        port: Optional[int],
        ours: Sequence[str],
        interfaces: Mapping[str, str],
        newest: Optional[str],
    ) -> list[str]:
        """
        The addresses to advertise to one session, preferred first.

        @param reached: our address the session's client reached (its
            carrier's local address).
        @param port: the port its carriers arrive on.
        @param ours: this host's usable service addresses now (deprecated
            ones left out).
        @param interfaces: the interface of each of C{ours}.
        @param newest: the address this host gained most recently, if any.
        """
        if self.mode == "none":
            return []
        if self.mode == "configured":
            return list(self.configured)
        if reached is None or port is None:
            return []
        kind = addressClass(reached)
        reachedOn = interfaces.get(reached)

        def fits(address: str) -> bool:
            if address == reached:
                return True
            if addressClass(address) != kind:
                return False
            interface = interfaces.get(address)
            return not isolatedInterface(interface) or interface == reachedOn

        usable = [a for a in ours if fits(a)]
        order: list[str] = []
        if reached in usable:
            # The address in use comes first for as long as it lasts.
            order.append(reached)
        if newest in usable and newest not in order:
            order.append(newest)
        order += [a for a in usable if a not in order]
        return [formatHostPort(a, port) for a in order]
