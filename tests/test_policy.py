"""
The default policy's decisions.
"""

from __future__ import annotations

import random

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from migrate import SessionOptions
from migrate.interfaces import IMigratePolicy, LocalAddress
from migrate.policy import DefaultPolicy

WLAN = LocalAddress("wlan0", "10.0.0.2", 4)
ETH = LocalAddress("eth0", "10.0.1.2", 4)
LTE = LocalAddress("wwan0", "10.0.2.2", 4)


class DefaultPolicyTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        The default policy provides the interface fully.
        """
        self.assertTrue(verifyObject(IMigratePolicy, DefaultPolicy()))

    def test_reconnectSchedule(self) -> None:
        """
        Immediately after a loss, then exponential backoff with 50-100 %
        jitter, capped by C{reconnectMax}.
        """
        p = DefaultPolicy(SessionOptions(reconnectInitial=0.1, reconnectMax=1.0), rng=random.Random(3))
        self.assertEqual(p.reconnectDelay(0), 0.0)
        for failures, base in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (40, 1.0)):
            d = p.reconnectDelay(failures)
            self.assertTrue(base * 0.5 <= d <= base, (failures, d))

    def test_attemptTimeout(self) -> None:
        """
        Attempts on a known fast path give up after a second; on a slow path
        later; never past C{connectTimeout}.
        """
        p = DefaultPolicy(SessionOptions(connectTimeout=5))
        self.assertEqual(p.attemptTimeout(None), 5)
        self.assertEqual(p.attemptTimeout(0.001), 1.0)
        self.assertEqual(p.attemptTimeout(0.3), 2.4)
        self.assertEqual(p.attemptTimeout(2.0), 5)

    def test_silenceLimit(self) -> None:
        """
        The bound is C{deadAfter}, raised to three timeouts on slow paths.
        """
        p = DefaultPolicy(SessionOptions(deadAfter=2.0))
        self.assertEqual(p.silenceLimit(None, None), 2.0)
        self.assertEqual(p.silenceLimit(0.01, 0.005), 2.0)
        self.assertAlmostEqual(p.silenceLimit(1.0, 0.5), 9.0)

    def test_preferAndAvoid(self) -> None:
        """
        The most preferred usable address is chosen; an avoided one never,
        unless nothing else is up (then the system chooses).
        """
        p = DefaultPolicy(prefer=["eth0", "wlan0"], avoid=["wwan0"])
        self.assertEqual(p.chooseSource([WLAN, ETH, LTE]), ETH.address)
        self.assertEqual(p.chooseSource([WLAN, LTE]), WLAN.address)
        self.assertIsNone(p.chooseSource([LTE]))
        self.assertIsNone(DefaultPolicy().chooseSource([WLAN, ETH]))
        avoidOnly = DefaultPolicy(avoid=["10.0.2.2"])
        self.assertEqual(avoidOnly.chooseSource([LTE, WLAN]), WLAN.address)

    def test_fromOptions(self) -> None:
        """
        Preferences and moves come from the options (and so from endpoint
        strings).
        """
        p = DefaultPolicy(SessionOptions(prefer="eth0, wlan0", avoid="wwan0", acceptMoves="no"))
        self.assertEqual(p.prefer, ("eth0", "wlan0"))
        self.assertEqual(p.avoid, ("wwan0",))
        self.assertFalse(p.acceptMoves)

    def test_acceptMoves(self) -> None:
        """
        With moves refused, only resumes from the same host are accepted.
        """
        a = IPv4Address("TCP", "10.0.0.2", 1000)
        a2 = IPv4Address("TCP", "10.0.0.2", 2000)
        b = IPv4Address("TCP", "10.0.0.9", 1000)
        strict = DefaultPolicy(acceptMoves=False)
        self.assertTrue(strict.acceptResumeFrom(a, a2))
        self.assertFalse(strict.acceptResumeFrom(a, b))
        self.assertTrue(DefaultPolicy().acceptResumeFrom(a, b))

    def test_bufferLimits(self) -> None:
        """
        Buffer limits come from the options.
        """
        p = DefaultPolicy(SessionOptions(highWater=10, hardCap=20))
        self.assertEqual(p.bufferLimits(), (10, 20))
