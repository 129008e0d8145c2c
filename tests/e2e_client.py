"""
A plain-socket client (no Twisted) for end-to-end tests: it sends a
deterministic stream through an echo service, reads the echo, half-closes,
and reports what it saw as one JSON line.

    python tests/e2e_client.py HOST PORT TOTAL [CHUNK] [PAUSE]
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def pattern(n: int, seed: int = 5) -> bytes:
    cycle = bytes((i * 13 + seed) % 253 for i in range(253))
    whole, rest = divmod(n, 253)
    return cycle * whole + cycle[:rest]


def main() -> None:
    host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 16384
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    data = pattern(total)
    s = socket.create_connection((host, port), timeout=60)
    s.settimeout(60)
    started = time.monotonic()

    def send() -> None:
        for i in range(0, total, chunk):
            s.sendall(data[i : i + chunk])
            if pause:
                time.sleep(pause)
        s.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    got = bytearray()
    eof = False
    try:
        while True:
            piece = s.recv(65536)
            if not piece:
                eof = True
                break
            got += piece
    except OSError as e:
        print(json.dumps({"error": str(e), "received": len(got)}), flush=True)
        sys.exit(1)
    sender.join()
    s.close()
    print(
        json.dumps(
            {
                "received": len(got),
                "exact": bytes(got) == data,
                "eof": eof,
                "seconds": time.monotonic() - started,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
