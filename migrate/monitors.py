# -*- test-case-name: tests.test_monitors -*-
"""
Connectivity monitors: what tells sessions, at once, that the host's
connectivity changed.

  - L{NetlinkMonitor} (Linux): the kernel's rtnetlink notifications of
    links, addresses and routes, read through the reactor (a reader
    registered with C{IReactorFDSet}: no thread, no polling).  Route changes
    matter as much as addresses: after renumbering, the re-added default
    route is what says a connection can succeed again.  Lost notifications
    (C{ENOBUFS}) are reported as an "unknown" change and the address table
    is read again.
  - L{WakeMonitor}: notices that the machine slept (the boot-time clock
    moved further than the monotonic clock, which stops during suspend).
  - L{PollingMonitor}: elsewhere, polls the interfaces with C{psutil} (an
    optional, well-kept dependency: C{pip install txmigrate[poll]}).
  - L{CombinedMonitor}: several monitors as one.

L{defaultMonitor} picks what the platform offers.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import time
from typing import Any, Callable, Iterator, Optional, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .interfaces import ConnectivityEvent, IConnectivityMonitor, LocalAddress

__all__ = [
    "NetlinkMonitor",
    "WakeMonitor",
    "PollingMonitor",
    "CombinedMonitor",
    "defaultMonitor",
]

Listener = Callable[[ConnectivityEvent], None]


class _Listeners:
    """
    Listener bookkeeping shared by the monitors.
    """

    log = Logger()

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def addListener(self, listener: Listener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def removeListener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: ConnectivityEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("connectivity listener raised on {event}", event=event)


# rtnetlink constants (linux/rtnetlink.h, linux/netlink.h, linux/if.h).
_NETLINK_ROUTE = 0
_RTMGRP_LINK = 0x1
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV4_ROUTE = 0x40
_RTMGRP_IPV6_IFADDR = 0x100
_RTMGRP_IPV6_ROUTE = 0x400
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSG_OVERRUN = 4
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_GETLINK = 18
_RTM_NEWADDR = 20
_RTM_DELADDR = 21
_RTM_GETADDR = 22
_RTM_NEWROUTE = 24
_RTM_DELROUTE = 25
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFLA_IFNAME = 3
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_FLAGS = 8
_IFA_F_DEPRECATED = 0x20
_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
_RT_SCOPE_UNIVERSE = 0
_RT_TABLE_MAIN = 254

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_RTA_OIF = 4


def _attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """
    The (type, value) route attributes from C{offset} to the end.
    """
    end = len(data)
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            return
        yield kind, data[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3


def parseMessages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """
    Split a netlink datagram into C{(type, seq, payload)} messages; a
    truncated or malformed tail is ignored.
    """
    offset = 0
    end = len(data)
    while offset + _NLMSGHDR.size <= end:
        length, kind, flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > end:
            return
        yield kind, seq, data[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


@implementer(IConnectivityMonitor, IReadDescriptor)
class NetlinkMonitor(_Listeners):
    """
    Linux rtnetlink notifications of links, addresses and routes.

    @ivar links: interface index to C{(name, usable)}.
    @ivar table: C{(index, address)} to L{LocalAddress}, for global-scope
        addresses.
    """

    def __init__(self, reactor: IReactorFDSet) -> None:
        _Listeners.__init__(self)
        self._reactor = reactor
        self._socket: Optional[socket.socket] = None
        self.links: dict[int, tuple[str, bool]] = {}
        self.table: dict[tuple[int, str], LocalAddress] = {}

    def logPrefix(self) -> str:
        return "NetlinkMonitor"

    def start(self) -> None:
        if self._socket is not None:
            return
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind(
                (
                    0,
                    _RTMGRP_LINK
                    | _RTMGRP_IPV4_IFADDR
                    | _RTMGRP_IPV6_IFADDR
                    | _RTMGRP_IPV4_ROUTE
                    | _RTMGRP_IPV6_ROUTE,
                )
            )
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._socket = s
        self._readTables()
        self._reactor.addReader(self)

    def stop(self) -> None:
        s, self._socket = self._socket, None
        if s is not None:
            self._reactor.removeReader(self)
            s.close()

    def fileno(self) -> int:
        return self._socket.fileno() if self._socket is not None else -1

    def connectionLost(self, reason: Failure) -> None:
        self.stop()

    def addresses(self) -> Sequence[LocalAddress]:
        return [
            a
            for (index, _), a in sorted(self.table.items())
            if self.links.get(index, ("", True))[1]
        ]

    def interfaceOf(self, address: str) -> Optional[str]:
        for (index, known), a in self.table.items():
            if known == address:
                return self.links.get(index, (a.interface, False))[0]
        return None

    def _readTables(self) -> None:
        """
        Read the links and addresses now, on a separate blocking socket.
        """
        self.links.clear()
        self.table.clear()
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as s:
            s.settimeout(2.0)
            for seq, (request, body) in enumerate(
                ((_RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0)), (_RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0))),
                start=1,
            ):
                s.send(
                    _NLMSGHDR.pack(
                        _NLMSGHDR.size + len(body), request, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0
                    )
                    + body
                )
                done = False
                while not done:
                    data = s.recv(1 << 16)
                    for kind, _, payload in parseMessages(data):
                        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                            done = True
                            break
                        self._apply(kind, payload, quiet=True)

    def doRead(self) -> None:
        s = self._socket
        if s is None:
            return
        for _ in range(64):
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    # The kernel dropped notifications: start again from a
                    # fresh table and say that something changed.
                    self.log.info("netlink notifications lost; rereading the tables")
                    self._readTables()
                    self._emit(ConnectivityEvent(ConnectivityEvent.UNKNOWN))
                    continue
                raise
            for kind, _, payload in parseMessages(data):
                if kind == _NLMSG_OVERRUN:
                    self._readTables()
                    self._emit(ConnectivityEvent(ConnectivityEvent.UNKNOWN))
                else:
                    self._apply(kind, payload)

    def _apply(self, kind: int, payload: bytes, quiet: bool = False) -> None:
        """
        Update the tables from one message and emit what it means.
        """
        for event in self.interpret(kind, payload):
            if not quiet:
                self._emit(event)

    def interpret(self, kind: int, payload: bytes) -> list[ConnectivityEvent]:
        """
        Apply one rtnetlink message to the tables.

        @return: the events it amounts to (none for messages that change
            nothing that matters).
        """
        if kind in (_RTM_NEWLINK, _RTM_DELLINK) and len(payload) >= _IFINFOMSG.size:
            family, devtype, index, flags, change = _IFINFOMSG.unpack_from(payload)
            name = self.links.get(index, ("if%d" % index, False))[0]
            for attr, value in _attributes(payload, _IFINFOMSG.size):
                if attr == _IFLA_IFNAME:
                    name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
            usable = kind == _RTM_NEWLINK and bool(flags & _IFF_UP) and bool(flags & _IFF_LOWER_UP)
            before = self.links.get(index)
            if kind == _RTM_DELLINK:
                self.links.pop(index, None)
            else:
                self.links[index] = (name, usable)
            if before is None and kind == _RTM_NEWLINK:
                return [ConnectivityEvent(ConnectivityEvent.LINK_UP if usable else ConnectivityEvent.LINK_DOWN, name)]
            if before is not None and before[1] != usable:
                return [ConnectivityEvent(ConnectivityEvent.LINK_UP if usable else ConnectivityEvent.LINK_DOWN, name)]
            return []
        if kind in (_RTM_NEWADDR, _RTM_DELADDR) and len(payload) >= _IFADDRMSG.size:
            family, prefix, flags, scope, index = _IFADDRMSG.unpack_from(payload)
            if scope != _RT_SCOPE_UNIVERSE or family not in (socket.AF_INET, socket.AF_INET6):
                return []
            raw: Optional[bytes] = None
            for attr, value in _attributes(payload, _IFADDRMSG.size):
                if attr == _IFA_LOCAL or (attr == _IFA_ADDRESS and raw is None):
                    raw = value
                elif attr == _IFA_FLAGS and len(value) >= 4:
                    flags |= struct.unpack("=I", value[:4])[0]
            if raw is None:
                return []
            try:
                address = socket.inet_ntop(family, raw)
            except ValueError:
                return []
            name = self.links.get(index, ("if%d" % index, True))[0]
            key = (index, address)
            if kind == _RTM_NEWADDR and flags & _IFA_F_DEPRECATED:
                # Still works for what uses it, but is going away: no longer
                # one of our usable addresses.
                if self.table.pop(key, None) is None:
                    return []
                return [ConnectivityEvent(ConnectivityEvent.ADDRESS_DEPRECATED, name, address)]
            if kind == _RTM_NEWADDR:
                known = key in self.table
                self.table[key] = LocalAddress(name, address, 4 if family == socket.AF_INET else 6)
                return [] if known else [ConnectivityEvent(ConnectivityEvent.ADDRESS_ADDED, name, address)]
            if self.table.pop(key, None) is None:
                return []
            return [ConnectivityEvent(ConnectivityEvent.ADDRESS_REMOVED, name, address)]
        if kind in (_RTM_NEWROUTE, _RTM_DELROUTE) and len(payload) >= _RTMSG.size:
            fields = _RTMSG.unpack_from(payload)
            table = fields[4]
            if table != _RT_TABLE_MAIN:
                return []
            oif: Optional[str] = None
            for attr, value in _attributes(payload, _RTMSG.size):
                if attr == _RTA_OIF and len(value) >= 4:
                    link = self.links.get(struct.unpack("=i", value[:4])[0])
                    oif = link[0] if link is not None else None
            return [ConnectivityEvent(ConnectivityEvent.ROUTE_CHANGED, oif)]
        return []


def _bootClock() -> Optional[Callable[[], float]]:
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is None:
        return None
    return lambda: time.clock_gettime(clock_id)


@implementer(IConnectivityMonitor)
class WakeMonitor(_Listeners):
    """
    Notice that the machine slept: every C{interval} seconds, compare how far
    the boot-time clock (which counts suspended time) and the monotonic
    clock (which does not) moved; a gap above C{threshold} is a wake.

    @ivar interval: seconds between checks.
    @ivar threshold: seconds of unexplained gap that count as a sleep.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float = 1.0,
        threshold: float = 1.0,
        bootClock: Optional[Callable[[], float]] = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        _Listeners.__init__(self)
        self._clock = clock
        self.interval = interval
        self.threshold = threshold
        self._boot = bootClock if bootClock is not None else _bootClock()
        self._monotonic = monotonic
        self._call: Optional[IDelayedCall] = None
        self._last: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        if self._call is not None or self._boot is None:
            return
        self._last = (self._boot(), self._monotonic())
        self._call = self._clock.callLater(self.interval, self._check)

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def addresses(self) -> Sequence[LocalAddress]:
        return []

    def interfaceOf(self, address: str) -> Optional[str]:
        return None

    def _check(self) -> None:
        assert self._boot is not None
        boot, mono = self._boot(), self._monotonic()
        lastBoot, lastMono = self._last
        self._last = (boot, mono)
        self._call = self._clock.callLater(self.interval, self._check)
        slept = (boot - lastBoot) - (mono - lastMono)
        if slept > self.threshold:
            self.log.info("woke from about {slept:.1f} s of sleep", slept=slept)
            self._emit(ConnectivityEvent(ConnectivityEvent.WAKE))


@implementer(IConnectivityMonitor)
class PollingMonitor(_Listeners):
    """
    Poll the interfaces with C{psutil} every C{interval} seconds and report
    the differences: for platforms without netlink.

    @raise ImportError: C{psutil} is not installed.
    """

    def __init__(self, clock: IReactorTime, interval: float = 2.0, psutil: Any = None) -> None:
        _Listeners.__init__(self)
        if psutil is None:
            import psutil as _psutil

            psutil = _psutil
        self._psutil = psutil
        self._clock = clock
        self.interval = interval
        self._call: Optional[IDelayedCall] = None
        self._links: dict[str, bool] = {}
        self._addresses: set[LocalAddress] = set()

    def _read(self) -> tuple[dict[str, bool], set[LocalAddress]]:
        stats = self._psutil.net_if_stats()
        links = {name: bool(s.isup) for name, s in stats.items()}
        found = set()
        for name, addrs in self._psutil.net_if_addrs().items():
            for a in addrs:
                if a.family == socket.AF_INET and not a.address.startswith("127."):
                    found.add(LocalAddress(name, a.address, 4))
                elif a.family == socket.AF_INET6 and not (
                    a.address.startswith("fe80") or a.address == "::1"
                ):
                    found.add(LocalAddress(name, a.address.split("%")[0], 6))
        return links, found

    def start(self) -> None:
        if self._call is not None:
            return
        self._links, self._addresses = self._read()
        self._call = self._clock.callLater(self.interval, self._poll)

    def stop(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def addresses(self) -> Sequence[LocalAddress]:
        return sorted(
            (a for a in self._addresses if self._links.get(a.interface, True)),
            key=lambda a: (a.interface, a.address),
        )

    def interfaceOf(self, address: str) -> Optional[str]:
        for a in self._addresses:
            if a.address == address:
                return a.interface
        return None

    def _poll(self) -> None:
        self._call = self._clock.callLater(self.interval, self._poll)
        links, found = self._read()
        events = []
        for name, up in sorted(links.items()):
            if self._links.get(name) != up:
                events.append(ConnectivityEvent(ConnectivityEvent.LINK_UP if up else ConnectivityEvent.LINK_DOWN, name))
        for a in sorted(self._addresses - found, key=lambda a: a.address):
            events.append(ConnectivityEvent(ConnectivityEvent.ADDRESS_REMOVED, a.interface, a.address))
        for a in sorted(found - self._addresses, key=lambda a: a.address):
            events.append(ConnectivityEvent(ConnectivityEvent.ADDRESS_ADDED, a.interface, a.address))
        self._links, self._addresses = links, found
        for event in events:
            self._emit(event)


@implementer(IConnectivityMonitor)
class CombinedMonitor(_Listeners):
    """
    Several monitors as one: events from any, addresses from the first that
    knows some.
    """

    def __init__(self, *monitors: IConnectivityMonitor) -> None:
        _Listeners.__init__(self)
        self.monitors = monitors
        for m in monitors:
            m.addListener(self._emit)

    def start(self) -> None:
        for m in self.monitors:
            m.start()

    def stop(self) -> None:
        for m in self.monitors:
            m.stop()

    def addresses(self) -> Sequence[LocalAddress]:
        for m in self.monitors:
            found = m.addresses()
            if found:
                return found
        return []

    def interfaceOf(self, address: str) -> Optional[str]:
        for m in self.monitors:
            found = m.interfaceOf(address)
            if found is not None:
                return found
        return None


class MonitorLease:
    """
    A monitor shared by the sessions of an endpoint: started when the first
    session needs it, stopped (every socket and timer released) when the
    last one ends.  A monitor that fails to start is logged once and not
    used.

    @ivar monitor: the monitor.
    @ivar users: sessions using it now.
    """

    log = Logger()

    def __init__(self, monitor: IConnectivityMonitor) -> None:
        self.monitor = monitor
        self.users = 0
        self.failed = False

    def acquire(self, listener: Listener) -> bool:
        """
        Start listening (starting the monitor if needed).

        @return: whether the monitor is in use (C{False} if it failed).
        """
        if self.failed:
            return False
        if self.users == 0:
            try:
                self.monitor.start()
            except OSError:
                self.log.failure("connectivity monitor {m!r} failed to start", m=self.monitor)
                self.failed = True
                return False
        self.users += 1
        self.monitor.addListener(listener)
        return True

    def release(self, listener: Listener) -> None:
        """
        Stop listening (stopping the monitor when nobody listens).
        """
        self.monitor.removeListener(listener)
        self.users -= 1
        if self.users == 0:
            self.monitor.stop()

    def addresses(self) -> Sequence[LocalAddress]:
        return self.monitor.addresses()

    def interfaceOf(self, address: str) -> Optional[str]:
        return self.monitor.interfaceOf(address)


def defaultMonitor(reactor: Any) -> IConnectivityMonitor:
    """
    The best monitor this platform offers: netlink and wake detection on
    Linux; elsewhere polling (if C{psutil} is installed) and wake detection
    (where the platform has a boot-time clock).
    """
    parts: list[IConnectivityMonitor] = []
    if sys.platform.startswith("linux") and hasattr(socket, "AF_NETLINK"):
        parts.append(NetlinkMonitor(reactor))
    else:
        try:
            parts.append(PollingMonitor(reactor))
        except ImportError:
            pass
    parts.append(WakeMonitor(reactor))
    return CombinedMonitor(*parts)
