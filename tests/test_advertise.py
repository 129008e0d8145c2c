"""
What a server advertises to each session (L{migrate._advertise}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from migrate._advertise import AdvertisePolicy, addressClass, isolatedInterface


class ParseTests(SynchronousTestCase):
    def test_modes(self) -> None:
        """
        C{auto} (also the default), C{none} and a list of C{HOST:PORT}.
        """
        self.assertEqual(AdvertisePolicy.parse(None).mode, "auto")
        self.assertEqual(AdvertisePolicy.parse("auto").mode, "auto")
        self.assertEqual(AdvertisePolicy.parse("none").mode, "none")
        policy = AdvertisePolicy.parse("198.51.100.4:7001,[2001:db8::1]:443")
        self.assertEqual(policy.mode, "configured")
        self.assertEqual(policy.configured, ("198.51.100.4:7001", "[2001:db8::1]:443"))

    def test_bad(self) -> None:
        """
        A malformed value is a C{ValueError} that says what is expected.
        """
        for bad in ("", "host", "host:", "host:0", "host:99999", ":80", "a:b"):
            e = self.assertRaises(ValueError, AdvertisePolicy.parse, bad)
            self.assertIn("HOST:PORT", str(e))

    def test_nameRefused(self) -> None:
        """
        A name is refused: clients compare the address they reached with
        the advertised ones, so a name would never match and would send
        them moving round in circles.
        """
        e = self.assertRaises(ValueError, AdvertisePolicy.parse, "198.51.100.4:7001,localhost:7001")
        self.assertIn("'localhost:7001'", str(e))
        self.assertIn("IP address", str(e))

    def test_endpointString(self) -> None:
        """
        In a server endpoint string, the colons of C{advertise=} are
        escaped (as Twisted's endpoint strings require), and a bad value is
        an error at parse time.
        """
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.testing import MemoryReactor

        endpoint = serverFromString(
            MemoryReactor(), "migrate:tcp:7001:advertise=198.51.100.4\\:7001,[2001\\:db8\\:\\:1]\\:443"
        )
        self.assertEqual(
            endpoint.advertise.configured, ("198.51.100.4:7001", "[2001:db8::1]:443")
        )
        self.assertRaises(
            ValueError, serverFromString, MemoryReactor(), "migrate:tcp:7001:advertise=nowhere"
        )


class AutoTests(SynchronousTestCase):
    ours = ["127.0.0.1", "192.168.1.5", "172.17.0.1", "93.184.216.34", "10.8.0.2"]
    interfaces = {
        "127.0.0.1": "lo",
        "192.168.1.5": "eth0",
        "172.17.0.1": "docker0",
        "93.184.216.34": "eth1",
        "10.8.0.2": "tun0",
    }

    def advert(self, reached: str, newest: str | None = None, ours: list[str] | None = None) -> list[str]:
        return AdvertisePolicy().addresses(
            reached, 7001, self.ours if ours is None else ours, self.interfaces, newest
        )

    def test_classes(self) -> None:
        """
        Addresses are loopback, link-local, private or global.
        """
        self.assertEqual(addressClass("127.0.0.1"), "loopback")
        self.assertEqual(addressClass("::1"), "loopback")
        self.assertEqual(addressClass("fe80::1"), "link-local")
        self.assertEqual(addressClass("169.254.1.1"), "link-local")
        self.assertEqual(addressClass("10.0.0.1"), "private")
        self.assertEqual(addressClass("100.64.0.1"), "private")
        self.assertEqual(addressClass("8.8.8.8"), "global")
        self.assertEqual(addressClass("2606:4700::1"), "global")
        self.assertTrue(isolatedInterface("docker0"))
        self.assertTrue(isolatedInterface("br-1a2b"))
        self.assertTrue(isolatedInterface("wg0"))
        self.assertFalse(isolatedInterface("eth0"))
        self.assertFalse(isolatedInterface(None))

    def test_sameKindOnly(self) -> None:
        """
        A client that reached a global address is told only global ones; one
        that reached a private address, private ones not on container
        bridges or tunnels; one on loopback, loopback.
        """
        self.assertEqual(self.advert("93.184.216.34"), ["93.184.216.34:7001"])
        self.assertEqual(self.advert("192.168.1.5"), ["192.168.1.5:7001"])
        self.assertEqual(self.advert("127.0.0.1"), ["127.0.0.1:7001"])

    def test_isolatedInterfaceOnlyToItsPeers(self) -> None:
        """
        A client that came through a container bridge is told that address
        (and the other private ones).
        """
        self.assertEqual(self.advert("172.17.0.1"), ["172.17.0.1:7001", "192.168.1.5:7001"])

    def test_inUseFirst(self) -> None:
        """
        The address in use stays first while it lasts, even when a newer
        one appeared; once it is gone, the newest comes first.
        """
        ours = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        self.assertEqual(
            self.advert("10.0.0.1", newest="10.0.0.3", ours=ours),
            ["10.0.0.1:7001", "10.0.0.3:7001", "10.0.0.2:7001"],
        )
        self.assertEqual(
            self.advert("10.0.0.1", newest="10.0.0.3", ours=["10.0.0.2", "10.0.0.3"]),
            ["10.0.0.3:7001", "10.0.0.2:7001"],
        )

    def test_noneAndConfigured(self) -> None:
        """
        C{none} advertises nothing; a configured list is advertised as it is.
        """
        self.assertEqual(AdvertisePolicy("none").addresses("10.0.0.1", 7001, ["10.0.0.1"], {}, None), [])
        configured = AdvertisePolicy.parse("198.51.100.4:443")
        self.assertEqual(configured.addresses("10.0.0.1", 7001, ["10.0.0.1"], {}, None), ["198.51.100.4:443"])


class PureAdvertTests(SynchronousTestCase):
    """
    L{migrate._sansio.adverts} alone: numbering, proofs and the replay
    check, with no session.
    """

    KEY = b"k" * 32

    def test_roundTrip(self) -> None:
        """
        What one side advertises, the other accepts, with the configured
        flag; numbers start above the generation's.
        """
        from migrate._sansio.adverts import checkAdvert, nextAdvert

        seq, frame = nextAdvert(0, self.KEY, False, 3, ["10.0.0.1:7001"], True)
        self.assertEqual(seq, (3 << 32) + 1)
        body = frame[5:]
        self.assertEqual(
            checkAdvert(0, self.KEY, True, body), (seq, ["10.0.0.1:7001"], True)
        )
        again, _ = nextAdvert(seq, self.KEY, False, 3, ["10.0.0.1:7001"], False)
        self.assertEqual(again, seq + 1)

    def test_replayForgeryAndWrongSide(self) -> None:
        """
        An advertisement not above the last accepted one, one proven with
        another key, or one coming back to the side that sent it is a
        protocol error.
        """
        from migrate._sansio.adverts import checkAdvert, nextAdvert
        from migrate._sansio.errors import ProtocolViolation

        seq, frame = nextAdvert(0, self.KEY, False, 0, ["10.0.0.1:7001"], False)
        body = frame[5:]
        self.assertRaises(ProtocolViolation, checkAdvert, seq, self.KEY, True, body)
        self.assertRaises(ProtocolViolation, checkAdvert, 0, b"x" * 32, True, body)
        self.assertRaises(ProtocolViolation, checkAdvert, 0, self.KEY, False, body)
        self.assertRaises(ProtocolViolation, checkAdvert, 0, self.KEY, True, body[:-1])
