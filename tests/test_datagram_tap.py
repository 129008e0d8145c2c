"""
C{twistd migrate --udp}: the options and the service they make, with and
without the live view (C{--status}).

Skipped until C{migrate/tap.py} has the C{--udp} flag (the forwarder
itself is L{migrate._udpforward}, tested in
C{tests/test_datagram_forward.py}).
"""

from __future__ import annotations

import sys

from twisted.application import service
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from migrate import tap
from migrate._status import SessionRegistry, StatusSite
from migrate._udpforward import UDPForwardService


class UDPOptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not any(flag[0] == "udp" for flag in tap.Options.optFlags):
            raise SkipTest("migrate/tap.py has no --udp flag yet")

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def test_service(self) -> None:
        """
        Both directions make the UDP forwarding service, with the session
        options given on the command line (and twistd's defaults).
        """
        options = self.parse(
            "--udp", "--listen", "udp:5353:interface=127.0.0.1",
            "--connect", "migrate-udp:192.0.2.1:7053", "--keepalive-interval", "10",
        )
        made = tap.makeService(options)
        self.assertIsInstance(made, UDPForwardService)
        assert isinstance(made, UDPForwardService)
        self.assertEqual((made.listen.kind, made.target.kind), ("udp", "migrate-udp"))
        self.assertEqual(made.options.keepaliveInterval, 10.0)
        self.assertEqual(made.options.sessionTimeout, 86400.0)
        options = self.parse("--udp", "--listen", "migrate-udp:7053", "--connect", "udp:127.0.0.1:53")
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertEqual((made.listen.kind, made.listen.port), ("migrate-udp", 7053))

    def test_refused(self) -> None:
        """
        Strings that are not one udp: and one migrate-udp: side are usage
        errors.
        """
        for args, message in [
            (("--listen", "udp:5353", "--connect", "udp:127.0.0.1:53"), "one of each"),
            (("--listen", "tcp:5353", "--connect", "migrate-udp:h:1"), "give udp: or migrate-udp:"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--udp", *args)
            self.assertIn(message, str(caught.exception))

    def test_status(self) -> None:
        """
        With C{--status}, the service is the forwarder and the live view (on
        loopback), sharing one registry, which the forwarder tells of its
        sessions.
        """
        self.patch(sys, "excepthook", sys.excepthook)
        options = self.parse(
            "--udp", "--listen", "migrate-udp:7053", "--connect", "udp:127.0.0.1:53",
            "--status", "tcp:0", "--status-host", "status.example",
        )
        self.assertEqual(options["status"], "tcp:0:interface=127.0.0.1")
        made = tap.makeService(options)
        self.assertIsInstance(made, service.MultiService)
        forwarder, view = list(made)  # type: ignore[call-overload]
        self.assertIsInstance(forwarder, UDPForwardService)
        registry = made.registry  # type: ignore[attr-defined]
        self.assertIsInstance(registry, SessionRegistry)
        self.assertIs(forwarder.registry, registry)
        self.assertIsInstance(view.factory, StatusSite)
        self.assertIs(view.factory.resource.registry, registry)
        self.assertIn("status.example", view.factory.resource.allowedHosts)

    def test_defaultStore(self) -> None:
        """
        A listening C{migrate-udp:} side gets the default store directory
        of C{twistd migrate} (one per endpoint), unless C{--no-store} or its
        own C{store=}; a C{udp:} listening side gets none.
        """
        import os

        self.patch(os, "environ", {"STATE_DIRECTORY": "/var/lib/migrate"})
        options = self.parse("--udp", "--listen", "migrate-udp:7053", "--connect", "udp:127.0.0.1:53")
        expected = tap.defaultStoreDirectory("migrate-udp:7053")
        self.assertTrue(expected.startswith("/var/lib/migrate/"))
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertEqual(made.listen.options["store"], expected)
        options = self.parse(
            "--udp", "--no-store", "--listen", "migrate-udp:7053", "--connect", "udp:127.0.0.1:53"
        )
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertNotIn("store", made.listen.options)
        options = self.parse(
            "--udp", "--listen", "migrate-udp:7053:store=/srv/s\\:1", "--connect", "udp:127.0.0.1:53"
        )
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertEqual(made.listen.options["store"], "/srv/s:1")
        # --store DIR, as for a TCP forwarder.
        options = self.parse(
            "--udp", "--store", "/srv/u", "--listen", "migrate-udp:7053", "--connect", "udp:127.0.0.1:53"
        )
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertEqual(made.listen.options["store"], "/srv/u")
        options = self.parse(
            "--udp", "--listen", "udp:5353", "--connect", "migrate-udp:192.0.2.1:7053"
        )
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertNotIn("store", made.target.options)

    def test_locatorOptions(self) -> None:
        """
        Locator and publishing options in C{migrate-udp:} strings are
        checked as the options are parsed.
        """
        options = self.parse(
            "--udp", "--no-store", "--listen",
            "migrate-udp:7053:locator=127.0.0.1:zone=example.org:publish=s.example.org"
            ":tsigName=k:tsigSecret=c2VjcmV0",
            "--connect", "udp:127.0.0.1:53",
        )
        made = tap.makeService(options)
        assert isinstance(made, UDPForwardService)
        self.assertEqual(made.listen.options["publish"], "s.example.org")
        with self.assertRaises(usage.UsageError) as caught:
            self.parse(
                "--udp", "--listen", "migrate-udp:7053:publish=s.example.org",
                "--connect", "udp:127.0.0.1:53",
            )
        self.assertIn("publish= needs locator=", str(caught.exception))
