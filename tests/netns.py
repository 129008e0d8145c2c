"""
Network namespaces for mobility tests: a server host and a mobile host with
two interfaces on different subnets, built per test and always removed.

Everything runs in the test's own process: a socket belongs to the network
namespace its creating thread is in when it is created, so the test enters
a namespace (with C{setns}) just around the calls that create sockets
there — listening, connecting, opening the netlink monitor.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import subprocess
from typing import Any, Iterator

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer

_CLONE_NEWNET = 0x40000000
_counter = itertools.count()


def skipReason() -> str | None:
    """
    Why namespace tests cannot run here, or C{None} if they can.
    """
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if not os.path.exists("/usr/sbin/ip") and not os.path.exists("/sbin/ip"):
        return "network namespace tests need iproute2 (ip)"
    return None


def ip(*args: str, check: bool = True) -> str:
    """
    Run C{ip ARGS} and return its output.
    """
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and result.returncode:
        raise RuntimeError("ip %s: %s" % (" ".join(args), result.stderr.strip()))
    return result.stdout


def sysctl(ns: str, key: str, value: str) -> None:
    with namespace(ns):
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(value)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def namespace(name: str) -> Iterator[None]:
    """
    Run the block with this thread in network namespace C{name}.
    """
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/%s" % (name,), os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


@implementer(IStreamClientEndpoint)
class NamespacedEndpoint:
    """
    A client endpoint whose connections are made from inside a namespace.
    """

    def __init__(self, ns: str, endpoint: IStreamClientEndpoint) -> None:
        self.ns = ns
        self.endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> "Deferred[Any]":
        with namespace(self.ns):
            return self.endpoint.connect(factory)


class NamespacedReactor:
    """
    The reactor, but the sockets it creates belong to a namespace (for code
    that creates sockets itself, such as a DNS resolver).
    """

    def __init__(self, ns: str, reactor: Any) -> None:
        self._ns = ns
        self._reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
        with namespace(self._ns):
            return self._reactor.listenUDP(*args, **kwargs)

    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        with namespace(self._ns):
            return self._reactor.connectTCP(*args, **kwargs)


class Topology:
    """
    Two hosts: C{server} (service address 10.77.0.1 on its loopback) and
    C{mobile}, joined by two links, C{a} (10.77.1.0/24) and C{b}
    (10.77.2.0/24), like Wi-Fi and Ethernet.  The mobile host has a default
    route through each, C{a} preferred.

    @ivar server: the server namespace's name.
    @ivar mobile: the mobile namespace's name.
    """

    serviceAddress = "10.77.0.1"

    dnsAddress = "10.77.9.2"

    def __init__(self, dns: bool = False) -> None:
        """
        @param dns: also build a third host, C{dns}, for a DNS server at
            L{dnsAddress}, reached through the server host.
        """
        tag = "mg%d%d" % (os.getpid() % 100000, next(_counter))
        self.server = tag + "s"
        self.mobile = tag + "m"
        self.dns = tag + "d"
        self.created: list[str] = []
        try:
            self._build(tag)
            if dns:
                self._buildDNS(tag)
        except BaseException:
            self.destroy()
            raise

    def _buildDNS(self, tag: str) -> None:
        ip("netns", "add", self.dns)
        self.created.append(self.dns)
        ip("-n", self.dns, "link", "set", "dev", "lo", "up")
        ip("link", "add", tag + "dd", "netns", self.dns, "type", "veth", "peer", "name", tag + "sd", "netns", self.server)
        ip("-n", self.dns, "link", "set", "dev", tag + "dd", "name", "dd")
        ip("-n", self.server, "link", "set", "dev", tag + "sd", "name", "sd")
        ip("-n", self.dns, "addr", "add", self.dnsAddress + "/24", "dev", "dd")
        ip("-n", self.server, "addr", "add", "10.77.9.1/24", "dev", "sd")
        ip("-n", self.dns, "link", "set", "dev", "dd", "up")
        ip("-n", self.server, "link", "set", "dev", "sd", "up")
        ip("-n", self.dns, "route", "add", "default", "via", "10.77.9.1")
        sysctl(self.server, "net.ipv4.ip_forward", "1")
        sysctl(self.server, "net.ipv4.conf.sd.rp_filter", "0")

    def _build(self, tag: str) -> None:
        for ns in (self.server, self.mobile):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "dev", "lo", "up")
        sysctl(self.mobile, "net.ipv4.conf.all.arp_announce", "2")
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            sysctl(self.server, key, "0")
        ip("-n", self.server, "addr", "add", self.serviceAddress + "/32", "dev", "lo")
        for link, net in (("a", 1), ("b", 2)):
            mobileDev, serverDev = "m" + link, "s" + link
            ip(
                "link", "add", tag + mobileDev, "netns", self.mobile, "type", "veth",
                "peer", "name", tag + serverDev, "netns", self.server,
            )
            ip("-n", self.mobile, "link", "set", "dev", tag + mobileDev, "name", mobileDev)
            ip("-n", self.server, "link", "set", "dev", tag + serverDev, "name", serverDev)
            ip("-n", self.server, "addr", "add", "10.77.%d.1/24" % net, "dev", serverDev)
            ip("-n", self.mobile, "addr", "add", "10.77.%d.2/24" % net, "dev", mobileDev)
            ip("-n", self.server, "link", "set", "dev", serverDev, "up")
            ip("-n", self.mobile, "link", "set", "dev", mobileDev, "up")
            sysctl(self.server, "net.ipv4.conf.%s.rp_filter" % serverDev, "0")
        self.addDefaultRoute("a")
        self.addDefaultRoute("b")

    def addDefaultRoute(self, link: str) -> None:
        net = {"a": 1, "b": 2}[link]
        ip(
            "-n", self.mobile, "route", "replace", "default", "via", "10.77.%d.1" % net,
            "dev", "m" + link, "metric", "100" if link == "a" else "200",
        )

    def mobileAddress(self, link: str) -> str:
        out = ip("-n", self.mobile, "-4", "-o", "addr", "show", "dev", "m" + link)
        return out.split()[3].split("/")[0] if out.strip() else ""

    def setLink(self, link: str, up: bool) -> None:
        """
        Bring the mobile host's interface C{link} up or down (its server-side
        peer follows, as a cable or radio link would).
        """
        state = "up" if up else "down"
        ip("-n", self.mobile, "link", "set", "dev", "m" + link, state)
        if up:
            ip("-n", self.mobile, "neigh", "flush", "dev", "m" + link)
            ip("-n", self.server, "neigh", "flush", "dev", "s" + link)
            self.addDefaultRoute(link)

    def replaceAddress(self, link: str, host: int) -> str:
        """
        Replace the mobile host's address on C{link} with another in the
        same subnet, and put the default route back, as DHCP would.
        """
        net = {"a": 1, "b": 2}[link]
        old = self.mobileAddress(link)
        new = "10.77.%d.%d" % (net, host)
        ip("-n", self.mobile, "addr", "del", old + "/24", "dev", "m" + link)
        ip("-n", self.mobile, "addr", "add", new + "/24", "dev", "m" + link)
        self.addDefaultRoute(link)
        return new

    def blackhole(self, on: bool) -> None:
        """
        Silently drop everything the server sends to the mobile host (no
        local event on either side).
        """
        action = "add" if on else "del"
        for net in (1, 2):
            ip("-n", self.server, "route", action, "blackhole", "10.77.%d.0/25" % net)

    def destroy(self) -> None:
        for ns in self.created:
            ip("netns", "del", ns, check=False)
        self.created = []


class NATTopology:
    """
    Three hosts: C{mobile}, C{router} and C{server}.  The server has only a
    private address, L{privateAddress}; the router publishes its service on
    L{publicAddress} with a DNAT (and masquerades, as a home or cloud NAT
    does).  The mobile host reaches the router over two links, C{a}
    (10.66.1.0/24) and C{b} (10.66.2.0/24), C{a} preferred.  Packets that
    the mobile side sends to the private address are counted and dropped:
    L{privateSyns} says how many connection attempts went there.
    """

    publicAddress = "198.51.100.1"
    privateAddress = "10.99.0.2"

    def __init__(self, port: int) -> None:
        tag = "mn%d%d" % (os.getpid() % 100000, next(_counter))
        self.mobile, self.router, self.server = tag + "m", tag + "r", tag + "s"
        self.created: list[str] = []
        try:
            self._build(tag, port)
        except BaseException:
            self.destroy()
            raise

    def _veth(self, tag: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        ip("link", "add", tag + a[1], "netns", a[0], "type", "veth", "peer", "name", tag + b[1], "netns", b[0])
        for ns, dev in (a, b):
            ip("-n", ns, "link", "set", "dev", tag + dev, "name", dev)
            ip("-n", ns, "link", "set", "dev", dev, "up")

    def _build(self, tag: str, port: int) -> None:
        for ns in (self.mobile, self.router, self.server):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "dev", "lo", "up")
        sysctl(self.mobile, "net.ipv4.conf.all.arp_announce", "2")
        sysctl(self.router, "net.ipv4.ip_forward", "1")
        for key in ("net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            sysctl(self.router, key, "0")
        for link, net in (("a", 1), ("b", 2)):
            self._veth(tag, (self.mobile, "m" + link), (self.router, "r" + link))
            ip("-n", self.router, "addr", "add", "10.66.%d.1/24" % net, "dev", "r" + link)
            ip("-n", self.mobile, "addr", "add", "10.66.%d.2/24" % net, "dev", "m" + link)
        self._veth(tag, (self.router, "rs"), (self.server, "sr"))
        ip("-n", self.router, "addr", "add", "10.99.0.1/24", "dev", "rs")
        ip("-n", self.server, "addr", "add", self.privateAddress + "/24", "dev", "sr")
        ip("-n", self.server, "route", "add", "default", "via", "10.99.0.1")
        ip("-n", self.router, "addr", "add", self.publicAddress + "/32", "dev", "lo")
        self.addDefaultRoute("a")
        self.addDefaultRoute("b")
        rules = """
table ip nat {
    chain pre {
        type nat hook prerouting priority -100;
        ip daddr %(public)s tcp dport %(port)d dnat to %(private)s:%(port)d
    }
    chain post {
        type nat hook postrouting priority 100;
        oifname "rs" masquerade
    }
}
table ip watch {
    chain pre {
        type filter hook prerouting priority -300;
        iifname != "rs" ip daddr %(private)s tcp flags & syn == syn counter drop
        iifname != "rs" ip daddr %(private)s counter drop
    }
}
""" % {"public": self.publicAddress, "private": self.privateAddress, "port": port}
        result = subprocess.run(
            ["ip", "netns", "exec", self.router, "nft", "-f", "-"],
            input=rules, capture_output=True, text=True, timeout=20,
        )
        if result.returncode:
            raise RuntimeError("nft: %s" % (result.stderr.strip(),))

    def addDefaultRoute(self, link: str) -> None:
        net = {"a": 1, "b": 2}[link]
        ip(
            "-n", self.mobile, "route", "replace", "default", "via", "10.66.%d.1" % net,
            "dev", "m" + link, "metric", "100" if link == "a" else "200",
        )

    def mobileAddress(self, link: str) -> str:
        out = ip("-n", self.mobile, "-4", "-o", "addr", "show", "dev", "m" + link)
        return out.split()[3].split("/")[0] if out.strip() else ""

    def replaceAddress(self, link: str, host: int) -> str:
        net = {"a": 1, "b": 2}[link]
        old = self.mobileAddress(link)
        new = "10.66.%d.%d" % (net, host)
        ip("-n", self.mobile, "addr", "del", old + "/24", "dev", "m" + link)
        ip("-n", self.mobile, "addr", "add", new + "/24", "dev", "m" + link)
        self.addDefaultRoute(link)
        return new

    def setLinks(self, up: bool) -> None:
        """
        Bring both of the mobile host's links down, or up again.
        """
        for link in ("a", "b"):
            ip("-n", self.mobile, "link", "set", "dev", "m" + link, "up" if up else "down")
            if up:
                ip("-n", self.mobile, "neigh", "flush", "dev", "m" + link)
                ip("-n", self.router, "neigh", "flush", "dev", "r" + link)
        if up:
            self.addDefaultRoute("a")
            self.addDefaultRoute("b")

    def privateSyns(self) -> int:
        """
        Connection attempts (SYNs) from the mobile side to the server's
        private address, counted at the router.
        """
        result = subprocess.run(
            ["ip", "netns", "exec", self.router, "nft", "list", "chain", "ip", "watch", "pre"],
            capture_output=True, text=True, timeout=20,
        )
        for line in result.stdout.splitlines():
            if "syn" in line and "counter packets" in line:
                return int(line.split("counter packets")[1].split()[0])
        raise RuntimeError("no SYN counter in: %s" % (result.stdout,))

    def destroy(self) -> None:
        for ns in self.created:
            ip("netns", "del", ns, check=False)
        self.created = []
