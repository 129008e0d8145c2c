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

    def test_upcalls(self) -> None:
        """
        The upcalls example hears its session's life and holds an attempt.
        """
        out = self.runExample("upcalls.py")
        self.assertIn(b"client: suspended (carrier-lost)", out)
        self.assertIn(b"held until off the metered link", out)
        self.assertIn(b"server received 1190 bytes", out)
