"""
Connectivity monitors: netlink messages interpreted, sleep noticed, polling
differences, combination, and a real netlink socket in a namespace.
"""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from migrate import monitors
from migrate.interfaces import ConnectivityEvent as E, IConnectivityMonitor, LocalAddress
from migrate.testing import FakeMonitor

from . import netns


def rtattr(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + b"\0" * ((-length) % 4)


def link(index: int, name: str, up: bool) -> bytes:
    flags = (0x1 | 0x10000) if up else 0x1
    return struct.pack("=BxHiII", 0, 1, index, flags, 0) + rtattr(3, name.encode() + b"\0")


def addr(index: int, address: str, scope: int = 0) -> bytes:
    return struct.pack("=BBBBI", socket.AF_INET, 24, 0, scope, index) + rtattr(
        2, socket.inet_aton(address)
    )


def route(table: int, oif: int) -> bytes:
    return struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, table, 0, 0, 1, 0) + rtattr(
        4, struct.pack("=i", oif)
    )


class NetlinkInterpretTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.m = monitors.NetlinkMonitor(reactor)  # type: ignore[arg-type]

    def test_interface(self) -> None:
        """
        Every monitor provides the interface.
        """
        for m in (
            self.m,
            monitors.WakeMonitor(Clock()),
            monitors.CombinedMonitor(),
            FakeMonitor(),
        ):
            self.assertTrue(verifyObject(IConnectivityMonitor, m))

    def test_links(self) -> None:
        """
        A link's first appearance and every change of usability are events;
        a repeat is not.
        """
        self.assertEqual(self.m.interpret(16, link(2, "eth0", True)), [E(E.LINK_UP, "eth0")])
        self.assertEqual(self.m.interpret(16, link(2, "eth0", True)), [])
        self.assertEqual(self.m.interpret(16, link(2, "eth0", False)), [E(E.LINK_DOWN, "eth0")])

    def test_addresses(self) -> None:
        """
        Global addresses come and go as events and in the table; addresses
        on a down link are not offered; host-scope ones are ignored.
        """
        self.m.interpret(16, link(2, "eth0", True))
        self.assertEqual(
            self.m.interpret(20, addr(2, "10.1.2.3")), [E(E.ADDRESS_ADDED, "eth0", "10.1.2.3")]
        )
        self.assertEqual(self.m.interpret(20, addr(1, "127.0.0.1", scope=254)), [])
        self.assertEqual(self.m.addresses(), [LocalAddress("eth0", "10.1.2.3", 4)])
        self.m.interpret(16, link(2, "eth0", False))
        self.assertEqual(self.m.addresses(), [])
        self.assertEqual(self.m.interfaceOf("10.1.2.3"), "eth0")
        self.assertEqual(
            self.m.interpret(21, addr(2, "10.1.2.3")), [E(E.ADDRESS_REMOVED, "eth0", "10.1.2.3")]
        )
        self.assertEqual(self.m.interpret(21, addr(2, "10.1.2.3")), [])

    def test_routes(self) -> None:
        """
        Main-table route changes are events (naming the interface); others
        are not.
        """
        self.m.interpret(16, link(3, "wlan0", True))
        self.assertEqual(self.m.interpret(24, route(254, 3)), [E(E.ROUTE_CHANGED, "wlan0")])
        self.assertEqual(self.m.interpret(24, route(255, 3)), [])

    def test_malformed(self) -> None:
        """
        Truncated messages and attributes are ignored, not fatal.
        """
        self.assertEqual(self.m.interpret(20, b"\x02"), [])
        self.assertEqual(list(monitors.parseMessages(b"\xff\xff\x00\x00" + b"\x00" * 12)), [])
        good = addr(5, "10.0.0.1")
        self.assertEqual(self.m.interpret(20, good[:10]), [])


class WakeTests(SynchronousTestCase):
    def test_sleepNoticed(self) -> None:
        """
        A gap between the boot-time and monotonic clocks is a wake event;
        normal ticking is not.
        """
        clock = Clock()
        times = {"boot": 100.0, "mono": 50.0}
        m = monitors.WakeMonitor(
            clock, interval=1.0, threshold=1.0, bootClock=lambda: times["boot"], monotonic=lambda: times["mono"]
        )
        events: list[Any] = []
        m.addListener(events.append)
        m.start()
        for _ in range(3):
            times["boot"] += 1.0
            times["mono"] += 1.0
            clock.advance(1.0)
        self.assertEqual(events, [])
        times["boot"] += 3600.0
        times["mono"] += 1.0
        clock.advance(1.0)
        self.assertEqual(events, [E(E.WAKE)])
        m.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class PollingTests(SynchronousTestCase):
    def test_differences(self) -> None:
        """
        Polling reports links and addresses that changed between polls.
        """
        state: dict[str, Any] = {
            "stats": {"eth0": SimpleNamespace(isup=True)},
            "addrs": {"eth0": [SimpleNamespace(family=socket.AF_INET, address="10.0.0.5")]},
        }
        fake = SimpleNamespace(
            net_if_stats=lambda: state["stats"], net_if_addrs=lambda: state["addrs"]
        )
        clock = Clock()
        m = monitors.PollingMonitor(clock, interval=2.0, psutil=fake)
        events: list[Any] = []
        m.addListener(events.append)
        m.start()
        self.assertEqual(m.addresses(), [LocalAddress("eth0", "10.0.0.5", 4)])
        state["addrs"] = {"eth0": [SimpleNamespace(family=socket.AF_INET, address="10.0.0.6")]}
        state["stats"] = {"eth0": SimpleNamespace(isup=True), "wlan0": SimpleNamespace(isup=False)}
        clock.advance(2.0)
        self.assertEqual(
            events,
            [
                E(E.LINK_DOWN, "wlan0"),
                E(E.ADDRESS_REMOVED, "eth0", "10.0.0.5"),
                E(E.ADDRESS_ADDED, "eth0", "10.0.0.6"),
            ],
        )
        m.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class CombinedTests(SynchronousTestCase):
    def test_combined(self) -> None:
        """
        Events from any part reach the listeners; addresses come from the
        first part that knows some.
        """
        a, b = FakeMonitor(), FakeMonitor()
        b.local = [LocalAddress("eth0", "10.0.0.1", 4)]
        c = monitors.CombinedMonitor(a, b)
        events: list[Any] = []
        c.addListener(events.append)
        c.start()
        self.assertTrue(a.started and b.started)
        a.emit(E.WAKE)
        b.emit(E.ROUTE_CHANGED)
        self.assertEqual([e.kind for e in events], [E.WAKE, E.ROUTE_CHANGED])
        self.assertEqual(c.addresses(), b.local)
        c.stop()
        self.assertFalse(a.started or b.started)

    def test_leaseFailure(self) -> None:
        """
        A monitor that cannot start is logged once and not used.
        """

        class Broken(FakeMonitor):
            def start(self) -> None:
                raise OSError("no netlink here")

        lease = monitors.MonitorLease(Broken())
        self.assertFalse(lease.acquire(lambda e: None))
        self.assertFalse(lease.acquire(lambda e: None))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class RealNetlinkTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        reason = netns.skipReason()
        if reason:
            raise SkipTest(reason)
        self.topology = netns.Topology()
        self.addCleanup(self.topology.destroy)

    @inlineCallbacks
    def test_events(self) -> Any:
        """
        In a namespace, the kernel's notifications arrive through the
        reactor: a link going down, an address replaced, a route re-added.
        """
        with netns.namespace(self.topology.mobile):
            m = monitors.NetlinkMonitor(reactor)  # type: ignore[arg-type]
            m.start()
        self.addCleanup(m.stop)
        self.assertEqual(
            sorted(a.address for a in m.addresses()), ["10.77.1.2", "10.77.2.2"]
        )
        events: list[Any] = []
        m.addListener(events.append)
        self.topology.setLink("a", False)
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertIn(E(E.LINK_DOWN, "ma"), events)
        self.assertEqual([a.address for a in m.addresses()], ["10.77.2.2"])
        events.clear()
        self.topology.replaceAddress("b", 9)
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertIn(E(E.ADDRESS_REMOVED, "mb", "10.77.2.2"), events)
        self.assertIn(E(E.ADDRESS_ADDED, "mb", "10.77.2.9"), events)
        self.assertIn(E(E.ROUTE_CHANGED, "mb"), events)
