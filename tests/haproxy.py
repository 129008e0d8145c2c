"""
A real HAProxy in TCP mode, started and restarted by tests and benchmarks
(Debian package C{haproxy}; C{.ci/run} installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Optional

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)

_CONFIG = """\
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend front
    bind 127.0.0.1:{front}
    default_backend back
backend back
    server migrate 127.0.0.1:{back}
"""


def skipReason() -> Optional[str]:
    """
    Why HAProxy tests cannot run here, or C{None}.
    """
    if HAPROXY is None:
        return "haproxy is not installed (apt-get install haproxy)"
    return None


def _waitForPort(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.02)


class HAProxy:
    """
    HAProxy in TCP mode on 127.0.0.1:C{front}, forwarding to
    127.0.0.1:C{back}, with a configuration written for it.
    """

    def __init__(self, front: int, back: int) -> None:
        assert HAPROXY is not None
        self.front = front
        self.directory = tempfile.mkdtemp(prefix="migrate-haproxy-")
        self.config = os.path.join(self.directory, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write(_CONFIG.format(front=front, back=back))
        self.process: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        """
        Start it and wait until it accepts connections.
        """
        assert HAPROXY is not None
        self.process = subprocess.Popen(
            [HAPROXY, "-db", "-f", self.config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _waitForPort(self.front)

    def kill(self) -> None:
        """
        Kill it at once: every connection through it is cut.
        """
        p, self.process = self.process, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def restart(self) -> None:
        """
        Kill it and start it again.
        """
        self.kill()
        self.start()

    def stop(self) -> None:
        """
        Stop it and remove its files.
        """
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
