"""
Command-line tools for a C{twistd migrate --status ...} process:

  - C{python -m migrate status URL} prints its sessions as a table
    (C{--json}: the raw JSON, with every field of every session);
  - C{python -m migrate expire URL SESSIONID} ends one session now, live or
    hibernated.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Sequence

from ._status import renderTable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="show the sessions of a twistd migrate process")
    status.add_argument("url", help="the --status address, e.g. http://127.0.0.1:7080/")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    expire = commands.add_parser("expire", help="end a session now")
    expire.add_argument("url", help="the --status address")
    expire.add_argument("session", help="the session id (hex)")
    args = parser.parse_args(argv)
    url = args.url
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    if args.command == "expire":
        target = url.rstrip("/").removesuffix("/sessions.json") + "/sessions/%s/expire" % (args.session,)
        request = urllib.request.Request(target, data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                json.load(response)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                print("no session %s" % (args.session,), file=sys.stderr)
                return 1
            print("cannot expire: %s" % (e,), file=sys.stderr)
            return 1
        except (OSError, ValueError) as e:
            print("cannot reach %s: %s" % (target, e), file=sys.stderr)
            return 1
        print("session %s expired" % (args.session,))
        return 0
    if not url.endswith("sessions.json"):
        url = url.rstrip("/") + "/sessions.json"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            report = json.load(response)
    except (OSError, ValueError) as e:
        print("cannot read %s: %s" % (url, e), file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0
    rows = renderTable(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    hibernated = report.get("hibernated", [])
    print(
        "%d live session(s), %d hibernated, %d recently ended"
        % (len(report["sessions"]), len(hibernated), len(report["ended"]))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
