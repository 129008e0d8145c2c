"""
Command-line tools: C{python -m migrate status URL} prints the sessions a
C{twistd migrate --status ...} process serves, as a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from typing import Sequence

from ._status import renderTable


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="show the sessions of a twistd migrate process")
    status.add_argument("url", help="the --status address, e.g. http://127.0.0.1:7080/")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    args = parser.parse_args(argv)
    url = args.url
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
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
