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
        self.assertNotIn(b" 0 cuts", result.stdout)
