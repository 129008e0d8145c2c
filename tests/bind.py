"""
A real BIND 9 (Debian's C{bind9}, installed by C{.ci/run}) for locator
tests: a zone that accepts TSIG-signed dynamic updates.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Optional

NAMED = shutil.which("named") or "/usr/sbin/named"


def skipReason() -> Optional[str]:
    if not os.path.exists(NAMED):
        return "BIND 9 (named) is not installed"
    return None


class Bind:
    """
    One named process serving C{zone} from C{directory}, updatable with the
    TSIG key C{keyName}/C{secret}.
    """

    def __init__(
        self, directory: str, address: str, port: int, zone: str, keyName: str, secret: str, ns: Optional[str] = None
    ) -> None:
        os.makedirs(directory, exist_ok=True)
        zone = zone.rstrip(".")
        conf = os.path.join(directory, "named.conf")
        with open(conf, "w") as f:
            f.write(
                'options { directory "%(d)s"; listen-on port %(p)d { %(a)s; }; listen-on-v6 { none; };'
                ' pid-file "%(d)s/named.pid"; recursion no; dnssec-validation no; allow-query { any; };'
                ' session-keyfile "%(d)s/session.key"; };\n'
                'key "%(k)s" { algorithm hmac-sha256; secret "%(s)s"; };\n'
                'controls { };\n'
                'zone "%(z)s" { type primary; file "%(d)s/zone.db"; allow-update { key "%(k)s"; }; };\n'
                % {"d": directory, "p": port, "a": address, "k": keyName, "s": secret, "z": zone}
            )
        with open(os.path.join(directory, "zone.db"), "w") as f:
            f.write(
                "$TTL 10\n@ IN SOA ns.%(z)s. admin.%(z)s. 1 60 60 600 10\n@ IN NS ns.%(z)s.\n"
                "ns IN A %(a)s\n" % {"z": zone, "a": address}
            )
        self.log = open(os.path.join(directory, "named.log"), "wb")
        cmd = [NAMED, "-g", "-n", "1", "-c", conf]
        if ns is not None:
            cmd = ["ip", "netns", "exec", ns] + cmd
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
