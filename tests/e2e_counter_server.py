"""
A server whose application is migratable: it answers each line with
"N:line", N counting the lines of the session.  Its sessions hibernate into
a SQLite store after 0.3 s detached, so a killed and restarted process
resumes them.

    python tests/e2e_counter_server.py PORT STOREDIR LOGFILE
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from migrate.interfaces import IMigratable


@implementer(IMigratable)
class Counter(LineReceiver):
    count = 0

    def lineReceived(self, line: bytes) -> None:
        self.count += 1
        self.sendLine(b"%d:%s" % (self.count, line))

    def saveMigrationState(self) -> bytes:
        return json.dumps({"count": self.count}).encode()

    def restoreMigrationState(self, state: bytes) -> None:
        self.count = json.loads(state)["count"]

    def validateResume(self, asleep: float, peer: object) -> bool:
        return True


def main(reactor, port: str, store: str, log: str) -> defer.Deferred[None]:  # type: ignore[no-untyped-def]
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(open(log, "a"))], redirectStandardIO=False
    )
    endpoint = serverFromString(
        reactor,
        "migrate:tcp:%s:interface=127.0.0.1:store=%s:suspendAfter=0.3" % (port, store),
    )
    d = endpoint.listen(Factory.forProtocol(Counter))
    d.addCallback(lambda _: print("ready", flush=True))
    d.addCallback(lambda _: defer.Deferred())
    return d


if __name__ == "__main__":
    task.react(main, sys.argv[1:4])
