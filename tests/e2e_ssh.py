"""
Three ssh logins and a bulk transfer through one forwarded port, for the
C{--multiplex} namespace test: run inside the mobile host's namespace.

Usage: e2e_ssh.py PORT KEY SECONDS BULK

Each login runs C{cat} on the server and is fed a distinct stream, paced
over about SECONDS seconds; what comes back must be the same bytes.  The
bulk transfer asks the server for BULK deterministic bytes (made by a
Python one-liner there) and checks them.  Prints one JSON line: for each
login and for the bulk, the bytes expected, received and whether they are
exact, plus the exit statuses.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time

port, key, seconds, bulk = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])

SSH = [
    "ssh",
    "-p",
    port,
    "-i",
    key,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    "LogLevel=ERROR",
    # The path moves under the session: ssh must not give up on its own.
    "-o",
    "ServerAliveInterval=0",
    "root@127.0.0.1",
]


def pattern(seed: int, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:n])


results: dict[str, dict[str, object]] = {}


def login(index: int) -> None:
    data = pattern(index, 200_000)
    proc = subprocess.Popen(SSH + ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    received = bytearray()

    def reader() -> None:
        assert proc.stdout is not None
        while True:
            chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                return
            received.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    assert proc.stdin is not None
    step = 4000
    pause = seconds / (len(data) / step)
    for i in range(0, len(data), step):
        proc.stdin.write(data[i : i + step])
        proc.stdin.flush()
        time.sleep(pause)
    proc.stdin.close()
    t.join()
    code = proc.wait()
    results["login%d" % index] = {
        "expected": len(data),
        "received": len(received),
        "exact": bytes(received) == data,
        "code": code,
    }


def bulkTransfer() -> None:
    script = (
        "import hashlib,sys;o=sys.stdout.buffer;n=%d;c=0;w=0\n"
        "while w<n:\n"
        " b=hashlib.sha256(b'bulk:%%d'%%c).digest()*1024;b=b[:n-w];o.write(b);w+=len(b);c+=1\n"
    ) % (bulk,)
    # (Hex, so that the remote shell sees one plain word.)
    command = "python3 -c \"exec(bytes.fromhex('%s').decode())\"" % (script.encode().hex(),)
    proc = subprocess.run(SSH + [command], capture_output=True)
    expected = bytearray()
    c = 0
    while len(expected) < bulk:
        expected += (hashlib.sha256(b"bulk:%d" % (c,)).digest() * 1024)[: bulk - len(expected)]
        c += 1
    results["bulk"] = {
        "expected": bulk,
        "received": len(proc.stdout),
        "exact": proc.stdout == bytes(expected),
        "code": proc.returncode,
        "stderr": proc.stderr.decode("utf-8", "replace")[-300:],
    }


threads = [threading.Thread(target=login, args=(i,)) for i in range(3)]
threads.append(threading.Thread(target=bulkTransfer))
for t in threads:
    t.start()
    time.sleep(0.1)
for t in threads:
    t.join()
print(json.dumps(results, sort_keys=True))
