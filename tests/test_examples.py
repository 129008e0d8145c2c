"""
The examples run as written.
"""

from __future__ import annotations

import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ExampleTests(SynchronousTestCase):
    def test_echoSurvivesCuts(self) -> None:
        """
        The echo example gets every line back, in order, across its cuts.
        """
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "examples", "echo_survives_cuts.py"), "--seconds", "1.5"],
            capture_output=True,
            timeout=60,
            cwd=ROOT,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertIn(b", 0 wrong;", result.stdout)
        import re

        match = re.search(rb"(\d+) cuts, (\d+) resumes", result.stdout)
        assert match is not None, result.stdout
        cuts, resumes = int(match.group(1)), int(match.group(2))
        self.assertGreater(cuts, 0)
        self.assertGreater(resumes, 0)

    def runExample(self, name: str) -> bytes:
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "examples", name)],
            capture_output=True,
            timeout=60,
            cwd=ROOT,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        return result.stdout

    def test_customPolicy(self) -> None:
        """
        The custom policy example paces its attempts by its own schedule and
        delivers everything.
        """
        out = self.runExample("custom_policy.py")
        self.assertIn(b"echoed: one two three", out)
        self.assertIn(b"reconnect delays asked for failures: [1, 2", out)

    def test_channels(self) -> None:
        """
        The channels example carries a chat and a file in one session
        through three cuts, exactly, one resume per cut.
        """
        out = self.runExample("channels.py")
        self.assertIn(b"file: 2000000 bytes, exact", out)
        self.assertIn(b"chat: exact", out)
        self.assertIn(b"3 cuts, 3 resumes, one session", out)

    def test_upcalls(self) -> None:
        """
        The upcalls example hears its session's life and holds an attempt.
        """
        out = self.runExample("upcalls.py")
        self.assertIn(b"client: suspended (carrier-lost)", out)
        self.assertIn(b"held until off the metered link", out)
        self.assertIn(b"server received 1190 bytes", out)


class SystemdUnitTests(SynchronousTestCase):
    """
    The systemd units under C{examples/systemd} are valid, and their
    C{ExecStart} is a C{twistd migrate} command line that parses.
    """

    def units(self) -> list[str]:
        directory = os.path.join(ROOT, "examples", "systemd")
        return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".service")]

    def execStart(self, path: str) -> list[str]:
        """
        The arguments after C{migrate} in the unit's C{ExecStart}, the
        instance name C{%i} filled in.
        """
        import shlex

        with open(path) as f:
            text = f.read().replace("\\\n", " ")
        (line,) = [l for l in text.splitlines() if l.startswith("ExecStart=")]
        words = shlex.split(line[len("ExecStart="):].replace("%i", "server.example.org"))
        self.assertEqual(words[:2], ["/usr/bin/env", "twistd"])
        self.assertIn("-n", words)
        self.assertIn("--pidfile=", words)
        return words[words.index("migrate") + 1 :]

    def test_execStartParses(self) -> None:
        """
        Each unit's C{twistd migrate} options parse (the endpoints too).
        """
        from migrate.tap import Options

        units = self.units()
        self.assertEqual(len(units), 2)
        for path in units:
            options = Options()
            options.parseOptions(self.execStart(path))
            self.assertIsNotNone(options["listenEndpoint"])
            self.assertIsNotNone(options["connectEndpoint"])

    def test_systemdAnalyzeVerify(self) -> None:
        """
        C{systemd-analyze verify} accepts each unit (a template under an
        instance name), when systemd is installed.
        """
        import shutil
        import tempfile

        from twisted.trial.unittest import SkipTest

        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed (the ExecStart test still runs)")
        for path in self.units():
            name = os.path.basename(path).replace("@.service", "@server.example.org.service")
            with tempfile.TemporaryDirectory() as d:
                copy = os.path.join(d, name)
                shutil.copy(path, copy)
                result = subprocess.run([analyze, "verify", copy], capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, (path, result.stdout, result.stderr))
            self.assertEqual(result.stderr.strip(), "", path)
