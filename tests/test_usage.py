"""
Usage errors of C{twistd migrate} and C{twistd migrate-locator}, with real
processes: a mistake on the command line is a few lines that name the
option, the value and what is expected (not the whole help first), exit
non-zero, and never show a secret.
"""

from __future__ import annotations

import os
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from .test_twistd import ENV, ROOT, TWISTD

# A TSIG secret (base64) that must never appear in any output.
SECRET = "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1zaG93"

LOCATOR = "locator=127.0.0.1:zone=mobile.example.:tsigName=server."
PUBLISH = "migrate:tcp:0:interface=127.0.0.1:publish=server.mobile.example.:" + LOCATOR

class UsageErrorTests(SynchronousTestCase):
    """
    One C{twistd} process per mistake.
    """

    def twistd(self, *args: str) -> tuple[int, str]:
        """
        Run C{twistd ARGS}, its state (a default session store) in a
        directory of this test's.

        @return: its exit status, and its standard output and error
            together.
        """
        env = dict(ENV, XDG_STATE_HOME=os.path.abspath(self.mktemp()))
        env.pop("STATE_DIRECTORY", None)
        done = subprocess.run(
            TWISTD + list(args), cwd=ROOT, env=env, capture_output=True, timeout=120
        )
        return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")

    def refused(self, args: list[str], *expected: str) -> str:
        """
        C{twistd ARGS} exits non-zero after at most three lines (twistd's
        "Usage:" line, the subcommand's synopsis, the error), the last of
        which holds every one of C{expected}; nothing shows L{SECRET}.

        @return: the last line.
        """
        code, output = self.twistd(*args)
        lines = output.strip("\n").splitlines()
        self.assertNotEqual(code, 0, output)
        self.assertLessEqual(len(lines), 3, output)
        self.assertNotIn(SECRET, output)
        for text in expected:
            self.assertIn(text, lines[-1])
        return lines[-1]

    def test_unknownOption(self) -> None:
        """
        An option C{twistd migrate} does not have.
        """
        self.refused(["migrate", "--bogus", "1"], "--bogus", "not recognized")

    def test_missingOption(self) -> None:
        """
        A required option left out.
        """
        self.refused(["migrate", "--listen", "tcp:0"], "--connect is required")

    def test_badSessionOption(self) -> None:
        """
        A session option that is not a number: the value and the option.
        """
        self.refused(
            ["migrate", "--listen", "tcp:0", "--connect", "migrate:tcp:host=a.example:port=1",
             "--session-timeout", "soon"],
            "'soon'",
            "sessionTimeout",
        )

    def test_badSessionOptionSaysExpected(self) -> None:
        """
        ... and what it should be.
        """
        self.refused(
            ["migrate", "--listen", "tcp:0", "--connect", "migrate:tcp:host=a.example:port=1",
             "--session-timeout", "soon"],
            "number",
        )


    def test_badPort(self) -> None:
        """
        A port that is not a number, in a C{migrate:} endpoint string.
        """
        self.refused(
            ["migrate", "--listen", "migrate:tcp:70x1", "--connect", "tcp:127.0.0.1:1"],
            "--listen",
            "'70x1' is not a whole number",
        )

    def test_badInnerOption(self) -> None:
        """
        An option the inner endpoint does not take: named, with what it
        takes.
        """
        self.refused(
            ["migrate", "--listen", "migrate:tcp:7001:bogus=1", "--connect", "tcp:127.0.0.1:22"],
            "bad --listen endpoint",
            "unknown option bogus=",
            "a tcp: server endpoint takes port, interface=, backlog=",
        )

    def test_missingTrustRoots(self) -> None:
        """
        A C{trustRoots=} directory that does not exist.
        """
        self.refused(
            ["migrate", "--listen", "tcp:0", "--connect",
             "migrate:tls:host=example.org:port=7001:trustRoots=/nonexistent-dir"],
            "bad --connect endpoint",
            "trustRoots= takes a directory",
            "No such file or directory: '/nonexistent-dir'",
        )

    def test_secretInBadString(self) -> None:
        """
        A bad endpoint string that holds a TSIG secret: the error does not
        show it.
        """
        self.refused(
            ["migrate", "--listen", "tcp:0", "--connect",
             "migrate:tcp:host=server.mobile.example:port=7001:%s:tsigSecret=%s:bogus=1" % (LOCATOR, SECRET)],
            "unknown option bogus=",
            "tsigSecret=***",
        )


    def test_secretNotBase64(self) -> None:
        """
        A TSIG secret that is not base64: refused, not shown.
        """
        self.refused(
            ["migrate", "--listen", PUBLISH + ":tsigSecret=" + SECRET + "!", "--connect", "tcp:127.0.0.1:1"],
            "tsigSecret= is not base64 (the value is not shown)",
        )


    def test_secretFileMode(self) -> None:
        """
        A secret file others may read: the file and its mode, not its
        content.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(path, 0o644)
        self.refused(
            ["migrate", "--listen", PUBLISH + ":tsigSecretFile=" + path, "--connect", "tcp:127.0.0.1:1"],
            "tsigSecretFile=%s has mode 0644" % (path,),
            "chmod 600 " + path,
        )

    def test_locatorBadPort(self) -> None:
        """
        C{twistd migrate-locator} with a port that is not a number.
        """
        self.refused(
            ["migrate-locator", "--zone", "mobile.example", "--key", "a:" + SECRET, "--port", "abc"],
            "--port takes a number",
        )

    def test_locatorKeyFileMissing(self) -> None:
        """
        C{twistd migrate-locator} with a key file that does not exist.
        """
        path = os.path.abspath(self.mktemp())
        self.refused(
            ["migrate-locator", "--zone", "mobile.example", "--key-file", path],
            "--key-file %s: No such file" % (path,),
        )

    def test_locatorBadKey(self) -> None:
        """
        C{twistd migrate-locator} with a key whose secret is not base64:
        refused without showing it.
        """
        self.refused(
            ["migrate-locator", "--zone", "mobile.example", "--key", "a:" + SECRET + "!"],
            "--key: the secret for a is not base64",
        )

    def test_noSuchServiceInterface(self) -> None:
        """
        C{serviceInterface=} naming no interface of this host: C{twistd}
        exits non-zero at once, its one line of error naming the interfaces
        there are.
        """
        log = os.path.abspath(self.mktemp() + ".log")
        code, output = self.twistd(
            "-n", "--pidfile=", "--logfile=" + log, "migrate",
            "--listen", "migrate:tcp:0:interface=127.0.0.1:serviceInterface=nosuch0",
            "--connect", "tcp:127.0.0.1:1",
        )
        self.assertNotEqual(code, 0, output)
        with open(log) as f:
            errors = [line for line in f if "cannot listen" in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("serviceInterface=nosuch0: no such interface (have: ", errors[0])
        self.assertIn("lo", errors[0].rsplit("(have: ", 1)[1])

    def test_help(self) -> None:
        """
        C{--help} still prints every option, and exits 0.
        """
        for command, option in (("migrate", "--session-timeout"), ("migrate-locator", "--tcp-idle")):
            code, output = self.twistd(command, "--help")
            self.assertEqual(code, 0, output)
            self.assertIn(option, output)
            self.assertGreater(len(output.splitlines()), 20)
