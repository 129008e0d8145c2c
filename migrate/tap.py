# -*- test-case-name: tests.test_tap -*-
"""
C{twistd migrate}: forward a TCP service through Migrate sessions.

Server side, in front of the real service::

    twistd -n migrate --listen migrate:tcp:7001 --connect tcp:127.0.0.1:22

Mobile side, where the client program connects::

    twistd -n migrate --listen tcp:2222:interface=127.0.0.1 \\
        --connect migrate:tcp:host=server.example:port=7001
"""

from __future__ import annotations

import base64
import os
import re
import sys
from dataclasses import fields
from typing import Any, Mapping, Optional

from twisted.application import internet, service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.logger import Logger
from twisted.python import usage


from ._endpoints import MigrateClientEndpoint, MigrateServerEndpoint, redact
from .errors import ListenFailed
from ._forward import ForwardingFactory
from ._multiplex import MultiplexingEndpoint
from ._status import SessionRegistry, StatusResource, StatusSite, normalizeHostName, readCredentials
from ._options import SessionOptions


def _dashed(name: str) -> str:
    return "".join("-" + c.lower() if c.isupper() else c for c in name)


#: Where C{twistd migrate}'s defaults differ from the library's: a
#: detached session waits a day (a laptop carried home and back, a phone
#: asleep overnight), hibernated into the default store meanwhile.
TWISTD_DEFAULTS = {"sessionTimeout": 86400.0}


def defaultStoreDirectory(listen: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """
    The store C{twistd migrate} uses when C{--store} is not given: one
    directory per C{--listen} endpoint (so that two instances never share
    one) under systemd's C{$STATE_DIRECTORY}, else C{$XDG_STATE_HOME/migrate},
    else C{~/.local/state/migrate}.
    """
    env = os.environ if environ is None else environ
    base = env.get("STATE_DIRECTORY", "").split(":")[0]
    if not base:
        xdg = env.get("XDG_STATE_HOME") or os.path.join(
            env.get("HOME") or os.path.expanduser("~"), ".local", "state"
        )
        base = os.path.join(xdg, "migrate")
    # Named after the endpoint's kind, port and interface only: never
    # after its other options (a tsigSecret= must not become a file name).
    kept = []
    for part in re.split(r"(?<!\\):", listen):
        key, equals, value = part.partition("=")
        if not equals:
            kept.append(part)
        elif key in ("port", "interface"):
            kept.append(value)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(kept)).strip("_")[:100] or "default"
    return os.path.join(base, name)


_HELP = {
    "sessionTimeout": "seconds a detached session waits for a resume",
    "handshakeTimeout": "seconds a new carrier may take to finish its handshake",
    "connectTimeout": "seconds one client connection attempt may take",
    "closeTimeout": "seconds a close may wait for the peer",
    "drainTimeout": "seconds a carrier being let go may take to close before it is aborted",
    "closedLinger": "seconds a server remembers a closed session",
    "maxClosedPerHost": "closed sessions a server remembers per peer address",
    "maxOpenRate": "openings per second taken without question (past it, the busiest addresses wait)",
    "memoryBudget": "bytes a server may hold for its peers over all sessions (0: a quarter of physical memory)",
    "highWater": "unacknowledged bytes above which the sender is paused",
    "hardCap": "unacknowledged bytes a session may hold at most",
    "overflow": 'what a write past the cap does: "close" or "raise"',
    "ackEvery": "received bytes after which an acknowledgement is sent",
    "ackDelay": "seconds a received byte may wait for its acknowledgement",
    "maxFrame": "largest data frame accepted from the peer",
    "sendFrame": "largest data frame sent",
    "maxSessions": "sessions a server holds at most",
    "maxPending": "carriers a server lets handshake at once",
    "maxPendingPerHost": "carriers one host may have handshaking at once",
    "reconnectInitial": "first reconnect delay after the immediate attempt",
    "reconnectMax": "longest reconnect delay",
    "reconnectSlowAfter": "seconds detached after which reconnect attempts slow down",
    "reconnectSlowInterval": "seconds between reconnect attempts once slowed down (events still retry at once)",
    "heartbeatInterval": "seconds of silence, while waiting to hear from the peer, before a heartbeat is sent",
    "keepaliveInterval": "seconds of silence on an idle carrier before the client sends a keepalive (the server checks after twice this)",
    "deadAfter": "seconds of unanswered silence before a path is declared dead",
    "prefer": "comma-separated interfaces or addresses to connect from, best first",
    "avoid": "comma-separated interfaces or addresses to avoid (e.g. metered)",
    "acceptMoves": 'whether a server accepts resumes from a new address: "yes" or "no"',
    "suspendAfter": "seconds a detached session stays in memory before it hibernates (with --store)",
    "maxDetached": "detached sessions kept in memory at most; more hibernate (with --store) or end (without)",
    "maxConcurrentResumes": "reconnect attempts made at once by a client side",
    "purgeInterval": "seconds between purges of expired sessions from the store",
    "republishInterval": "seconds between publications of unchanged addresses to the locator",
    "maxChannels": "channels a session may have open at once besides its first",
    "channelWindow": "bytes a channel's peer may send ahead of what its reader read",
}


class _BriefUsage:
    """
    Usage errors of a C{twistd} subcommand in one line, C{--help} whole.

    @cvar command: the subcommand's name.
    """

    command = "migrate"

    def getUsage(self, width: int | None = None) -> str:
        """
        The usage shown above a usage error: one line (C{--help} shows
        every option; see L{_briefUsage}).
        """
        return _briefUsage(self, self.command)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """
        The whole help, every option described (what C{--help} prints).
        """
        return self.getSynopsis() + "\n" + usage.Options.getUsage(self, width=None)  # type: ignore[attr-defined,arg-type]


class Options(_BriefUsage, usage.Options):
    """
    Command-line options of C{twistd migrate}.
    """

    synopsis = "--listen ENDPOINT --connect ENDPOINT [options]"

    def opt_version(self) -> None:
        """
        Print Migrate's version (and Twisted's) and exit.
        """
        import twisted

        import migrate

        print("migrate %s (Twisted %s)" % (migrate.__version__, twisted.__version__))
        sys.exit(0)

    longdesc = (
        "Forward every connection accepted on --listen to a new connection "
        "made to --connect, with flow control and half-close passed through. "
        "Put migrate: in front of either endpoint to carry that side over "
        "Migrate sessions that survive address changes and outages. Session "
        "options below apply to the migrate: endpoint(s) unless the endpoint "
        "string sets them itself."
    )

    optParameters: list[Any] = [
        ["listen", "l", None, "endpoint to accept connections on"],
        ["connect", "c", None, "endpoint to forward each connection to"],
        [
            "store",
            None,
            None,
            "directory where detached sessions of the migrate: --listen side "
            "hibernate (and survive a restart, for migratable applications)",
        ],
        [
            "advertise",
            None,
            None,
            "what clients of the migrate: --listen side are told about where "
            "this server can be reached: auto (default; only what a direct "
            "client can verify), none, or HOST:PORT[,HOST:PORT...] (the "
            "public address behind NAT, a port forward or a load balancer)",
        ],
        [
            "status",
            "s",
            None,
            "endpoint to serve the live view of the sessions on (HTML at /, "
            "JSON at /sessions.json), e.g. 7080 or tcp:7080; a port, or a "
            "tcp:, tcp6: or ssl: endpoint without interface=, listens on "
            "loopback only (127.0.0.1, ::1 for tcp6:): give "
            "tcp:7080:interface=0.0.0.0 to listen on every address",
        ],
        [
            "status-auth",
            None,
            None,
            "file of user:password lines (mode 600): every request to the "
            "live view then needs HTTP basic auth with one of them",
        ],
    ] + [
        [
            "drain",
            None,
            "0",
            "on SIGTERM, first stop taking new sessions and wait up to this "
            "many seconds for the live ones to end (rolling restarts), then "
            "end the rest, their clients told",
        ],
    ] + [
        [
            _dashed(f.name),
            None,
            None,
            "%s (default %s)" % (_HELP[f.name], TWISTD_DEFAULTS.get(f.name, f.default)),
        ]
        for f in fields(SessionOptions)
    ]

    optFlags: list[Any] = [
        [
            "udp",
            None,
            "forward UDP instead of TCP: --listen and --connect are then one "
            "udp: and one migrate-udp: endpoint (e.g. --listen udp:5353 "
            "--connect migrate-udp:server.example:7053), each local peer of the "
            "udp: side getting its own datagram session; see docs/datagram.md",
        ],
        [
            "multiplex",
            None,
            "carry every connection accepted on --listen as a channel of one "
            "session to the migrate: --connect endpoint (a new session only "
            "once that one has ended), so that a move costs one resume for "
            "all of them; the server side needs no option",
        ],
        [
            "no-store",
            None,
            "keep detached sessions in memory only, instead of the default "
            "store (a directory under $STATE_DIRECTORY, $XDG_STATE_HOME or "
            "~/.local/state: see --store)",
        ],
    ]

    def __init__(self) -> None:
        """
        Start with no C{--status-host} names and no credentials.
        """
        usage.Options.__init__(self)
        self["statusHosts"] = []
        self["statusCredentials"] = None

    def opt_status_host(self, value: str) -> None:
        """
        A host name (or IP address) the live view answers to besides its own address and localhost (repeatable, or comma-separated; without a port).
        """
        for name in value.split(","):
            try:
                self["statusHosts"].append(normalizeHostName(name))
            except ValueError as e:
                raise usage.UsageError("--status-host: %s (give names without a port)" % (e,))

    def postOptions(self) -> None:
        for required in ("listen", "connect"):
            if not self[required]:
                raise usage.UsageError("--%s is required" % (required,))
        self["listenGiven"] = self["listen"]
        self["connectGiven"] = self["connect"]
        try:
            self["drain"] = float(self["drain"])
            if not self["drain"] >= 0:
                raise ValueError()
        except ValueError:
            raise usage.UsageError("--drain takes seconds (a number, 0 or more), not %r" % (self["drain"],))
        if self["no-store"] and self["store"]:
            raise usage.UsageError("--store and --no-store: give one of them")
        if (
            not self["store"]
            and not self["no-store"]
            and self["listen"].startswith("migrate:")
            and "store=" not in self["listen"]
        ):
            self["store"] = defaultStoreDirectory(self["listen"])
        given = {
            f.name: self[_dashed(f.name)]
            for f in fields(SessionOptions)
            if self[_dashed(f.name)] is not None
        }
        for name, value in TWISTD_DEFAULTS.items():
            given.setdefault(name, repr(value))
        try:
            SessionOptions.fromStrings(given)
        except ValueError as e:
            raise usage.UsageError(str(e))
        self["sessionOptions"] = given
        for name in ("listen", "connect"):
            self[name] = _withOptions(self[name], given)
        for name in ("store", "advertise"):
            if self[name]:
                if name == "store" and self["udp"] and self["listen"].startswith("migrate-udp:"):
                    # (The --udp branch below puts it in the string.)
                    continue
                if not self["listen"].startswith("migrate:"):
                    raise usage.UsageError("--%s needs a migrate: --listen endpoint" % (name,))
                self["listen"] = _withOptions(self["listen"], {name: self[name]})
        self._statusOptions()
        if self["multiplex"]:
            if self["udp"]:
                raise usage.UsageError("--multiplex is for TCP forwarding, not --udp")
            if not self["connect"].startswith("migrate:"):
                raise usage.UsageError(
                    "--multiplex needs a migrate: --connect endpoint (it carries "
                    "connections as channels of one session to it)"
                )
        if self["udp"]:
            from ._udpforward import checkUDPForward

            # As for migrate:, a listening migrate-udp: side hibernates its
            # sessions into a default store unless told otherwise.
            if (
                not self["no-store"]
                and self["listen"].startswith("migrate-udp:")
                and ":store=" not in self["listen"]
            ):
                self["listen"] = "%s:store=%s" % (
                    self["listen"],
                    _escape(self["store"] or defaultStoreDirectory(self["listen"])),
                )
            try:
                checkUDPForward(self["listen"], self["connect"])
            except ValueError as e:
                raise usage.UsageError(str(e))
        from twisted.internet import reactor

        for name, parse in (
            ("listen", serverFromString),
            ("connect", clientFromString),
            ("status", serverFromString),
        ):
            if self[name] is None or (self["udp"] and name != "status"):
                self[name + "Endpoint"] = None
                continue
            try:
                self[name + "Endpoint"] = parse(reactor, self[name])
            except Exception as e:
                raise _badEndpoint("--" + name, self.get(name + "Given", self[name]), e)

    def _statusOptions(self) -> None:
        """
        Put the live view on loopback unless its endpoint says otherwise,
        and read its credentials.

        @raise usage.UsageError: C{--status-host} or C{--status-auth} without
            C{--status}, or a C{--status-auth} file that cannot be used.
        """
        if self["status"] is None:
            for name, given in (("status-host", self["statusHosts"]), ("status-auth", self["status-auth"])):
                if given:
                    raise usage.UsageError("--%s needs --status" % (name,))
            return
        self["status"] = _onLoopback(self["status"])
        if self["status-auth"]:
            try:
                self["statusCredentials"] = readCredentials(self["status-auth"])
            except ValueError as e:
                raise usage.UsageError("--status-auth: %s" % (e,))


# The index of the interface among each endpoint type's positional
# arguments after the type, and its loopback address (escaped).
_INTERFACE_POSITION = {"tcp": 1, "tcp6": 2, "ssl": 4}
_LOOPBACK = {"tcp": "127.0.0.1", "tcp6": "\\:\\:1", "ssl": "127.0.0.1"}


def _arguments(description: str) -> list[tuple[str, bool]]:
    """
    Split an endpoint string as Twisted does (unescaped colons separate the
    arguments; the first unescaped C{=} of one makes it a keyword argument).

    @param description: the endpoint string.
    @return: for each argument (the type first), its value or keyword, and
        whether it is a keyword argument.
    """
    result: list[tuple[str, bool]] = []
    current, keyword, escaped = "", False, False
    for c in description:
        if escaped:
            escaped = False
            if not keyword:
                current += c
        elif c == "\\":
            escaped = True
        elif c == ":":
            result.append((current, keyword))
            current, keyword = "", False
        elif c == "=" and not keyword:
            keyword = True
        elif not keyword:
            current += c
    result.append((current, keyword))
    return result


def _onLoopback(description: str) -> str:
    """
    The C{--status} endpoint string, on loopback unless it names its
    interface: a bare port becomes C{tcp:PORT:interface=127.0.0.1}; a
    C{tcp:}, C{tcp6:} or C{ssl:} string without an interface (keyword or
    positional) gets C{interface=127.0.0.1} (C{::1} for C{tcp6:}); other
    strings are kept as given.

    @param description: the endpoint string or port given.
    @return: the endpoint string to listen on.
    """
    if description.isascii() and description.isdigit():
        return "tcp:%s:interface=%s" % (description, _LOOPBACK["tcp"])
    arguments = _arguments(description)
    kind = arguments[0][0]
    if kind not in _INTERFACE_POSITION:
        return description
    positional = [value for value, keyword in arguments[1:] if not keyword]
    keywords = [value for value, keyword in arguments[1:] if keyword]
    if "interface" in keywords or len(positional) > _INTERFACE_POSITION[kind]:
        return description
    return "%s:interface=%s" % (description, _LOOPBACK[kind])


def _escape(value: str) -> str:
    """
    Quote a value for an endpoint string (its colons would split it).
    """
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _withOptions(description: str, given: dict[str, str]) -> str:
    """
    Add session options to a C{migrate:} endpoint string that does not set
    them itself.
    """
    if not description.startswith("migrate:"):
        return description
    extra = [
        "%s=%s" % (k, _escape(v))
        for k, v in sorted(given.items())
        if (":%s=" % (k,)) not in description
    ]
    return ":".join([description] + extra)


def _briefUsage(options: usage.Options, command: str) -> str:
    """
    What C{twistd} shows of a subcommand's usage above one of its usage
    errors.  C{twistd} prints C{str()} of its own options, which is its
    synopsis line followed by the subcommand's L{usage.Options.getUsage}:
    by default the whole help, a hundred lines that push the one line that
    matters (the error, printed last) off the screen.  This is one line
    instead: the subcommand's synopsis, and where the whole help is.

    @param options: the subcommand's options.
    @param command: the subcommand's name.
    """
    synopsis = getattr(options, "synopsis", "[options]")
    return "       %s %s  (twistd %s --help lists every option)" % (command, synopsis, command)


def _badEndpoint(option: str, description: str, error: Exception) -> usage.UsageError:
    """
    The usage error for an endpoint string that does not parse: one line,
    naming the option, showing the string with its secrets hidden (see
    L{migrate._endpoints.redact}), and what is wrong with it.

    @param option: the option that gave it, e.g. C{"--listen"}.
    @param description: the endpoint string.
    @param error: what its parser raised (whose message shows no secret).
    """
    from ._endpoints import redact

    return usage.UsageError("bad %s endpoint '%s': %s" % (option, redact(description), error))



class _ListeningService(internet.StreamServerEndpointService):
    """
    A L{internet.StreamServerEndpointService} whose failure to listen stops
    the process: C{twistd} exits non-zero (a daemon's parent too, through
    twistd's status pipe) with one line that says what could not listen and
    why, instead of logging the error and running on without its port.

    @ivar option: the option that named the endpoint, for the message.
    """

    _raiseSynchronously = True
    log = Logger()

    def __init__(self, endpoint: Any, factory: Any, option: str, description: str) -> None:
        internet.StreamServerEndpointService.__init__(self, endpoint, factory)
        self.option = option
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            internet.StreamServerEndpointService.privilegedStartService(self)
        except Exception as e:
            raise ListenFailed(
                "%s %s: cannot listen: %s" % (self.option, redact(self.description), e)
            ) from None
        waiting = self._waitingForPort
        if waiting is not None:
            # A listen that fails later (an endpoint that listens
            # asynchronously) stops the process too.
            waiting.addErrback(self._failedLater)

    #: Seconds to drain for on SIGTERM before the sessions end (C{--drain}).
    drainSeconds = 0.0

    _ending: Optional[Deferred[Any]] = None

    def endSessions(self) -> Deferred[Any]:
        """
        The process is stopping: the sessions of a Migrate server end, their
        clients told "server shut down" (rather than left retrying until
        their sessions time out); with C{--drain}, only after the server
        stopped taking new sessions and waited up to that long for the
        live ones to end (still listening: they resume as usual).  Called
        again, waits for the same end.
        """
        if self._ending is None:
            factory = getattr(self.endpoint, "factory", None)
            endSessions = getattr(factory, "endSessions", None)
            if endSessions is None:
                self._ending = succeed(None)
            elif self.drainSeconds > 0:
                self._ending = factory.drain(self.drainSeconds).addCallback(  # type: ignore[union-attr]
                    lambda _: endSessions()
                )
            else:
                self._ending = endSessions()
        ending: Deferred[Any] = Deferred()

        def done(result: object) -> object:
            ending.callback(None)
            return result

        self._ending.addBoth(done)
        return ending

    def stopService(self) -> Any:
        """
        Stop listening once the sessions ended (after the drain, if any):
        until then, their clients can still resume.
        """
        return self.endSessions().addCallback(
            lambda _: internet.StreamServerEndpointService.stopService(self)
        )

    def _failedLater(self, failure: Any) -> None:
        from twisted.internet import reactor

        self.log.critical(
            "{option} {description}: cannot listen: {reason}; stopping",
            option=self.option,
            description=redact(self.description),
            reason=failure.getErrorMessage(),
        )
        reactor.stop()


def _reportListenFailed(previous: Any) -> Any:
    """
    A C{sys.excepthook} that prints a L{ListenFailed} as one line (it is an
    operator's error, not a bug) and leaves everything else to C{previous}.
    """

    def hook(kind: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ListenFailed):
            sys.stderr.write("twistd migrate: %s\n" % (value,))
        else:
            previous(kind, value, tb)

    return hook


def makeService(options: Options) -> service.IService:
    """
    Build the forwarding service, and the live view if asked for.

    @raise usage.UsageError: an endpoint string is invalid.
    """
    from twisted.internet import reactor

    if options["udp"]:
        from ._udpforward import makeUDPService

        udpRegistry = SessionRegistry(reactor)
        udpForwarder = makeUDPService(
            options["listen"],
            options["connect"],
            SessionOptions.fromStrings(options["sessionOptions"]),
            reactor,
            udpRegistry,
        )
        if options["statusEndpoint"] is None:
            return udpForwarder
        sys.excepthook = _reportListenFailed(sys.excepthook)
        udpTop = service.MultiService()
        udpForwarder.setServiceParent(udpTop)
        udpSite = StatusSite(
            StatusResource(
                udpRegistry, allowedHosts=options["statusHosts"], credentials=options["statusCredentials"]
            )
        )
        udpSite.noisy = False
        _ListeningService(options["statusEndpoint"], udpSite, "--status", options["status"]).setServiceParent(
            udpTop
        )
        udpTop.registry = udpRegistry  # type: ignore[attr-defined]
        return udpTop
    listen = options["listenEndpoint"]
    target = options["connectEndpoint"]
    top = service.MultiService()
    registry = SessionRegistry(reactor)
    for endpoint in (listen, target):
        if isinstance(endpoint, (MigrateServerEndpoint, MigrateClientEndpoint)):
            endpoint.addObserver(registry)
        if isinstance(endpoint, MigrateServerEndpoint):
            registry.watchServer(endpoint)
    sys.excepthook = _reportListenFailed(sys.excepthook)
    forwardTo = MultiplexingEndpoint(target) if options["multiplex"] else target
    forwarder = _ListeningService(
        listen, ForwardingFactory(forwardTo), "--listen", options.get("listenGiven", options["listen"])
    )
    forwarder.drainSeconds = options["drain"]
    forwarder.setServiceParent(top)
    # First of the shutdown triggers (the sessions' own end them silently):
    # the peers of this process's sessions are told they end.
    reactor.addSystemEventTrigger("before", "shutdown", forwarder.endSessions)
    if isinstance(target, MigrateClientEndpoint):
        reactor.addSystemEventTrigger("before", "shutdown", target.endSessions)
    statusEndpoint = options["statusEndpoint"]
    if statusEndpoint is not None:
        site = StatusSite(
            StatusResource(
                registry,
                allowedHosts=options["statusHosts"],
                credentials=options["statusCredentials"],
            )
        )
        site.noisy = False
        _ListeningService(statusEndpoint, site, "--status", options["status"]).setServiceParent(top)
    top.registry = registry  # type: ignore[attr-defined]
    return top


class LocatorOptions(_BriefUsage, usage.Options):
    """
    Command-line options of C{twistd migrate-locator}.
    """

    command = "migrate-locator"

    synopsis = "--zone ZONE --key-file FILE [options]"
    longdesc = (
        "A small authoritative DNS server for a zone of mobile hosts, over "
        "UDP and TCP on the same port: it "
        "answers A/AAAA queries from its records and accepts RFC 2136 "
        "updates signed with TSIG (hmac-sha256) by one of its keys, refusing "
        "unsigned, forged, replayed, stale, out-of-zone and too frequent "
        "ones. Migrate servers publish their addresses here; clients look "
        "them up when they reconnect."
    )
    optParameters: list[Any] = [
        ["zone", "z", None, "the zone served, e.g. mobile.example."],
        ["port", "p", "53", "UDP and TCP port"],
        ["interface", "i", "127.0.0.1", "address to listen on"],
        ["store", None, None, "directory for the records (SQLite); in memory if omitted"],
        ["max-ttl", None, "60", "longest TTL stored"],
        ["rate", None, "60", "updates accepted per key per minute"],
        ["tcp-connections", None, "256", "TCP connections open at once, in all"],
        ["tcp-per-address", None, "16", "TCP connections open at once from one address"],
        ["tcp-idle", None, "10", "seconds a TCP connection may stay without a complete message"],
    ]

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["keys"] = {}

    def _addKey(self, value: str, where: str) -> None:
        """
        Add a key given as NAME:BASE64SECRET; C{where} names its origin in
        errors (which never show the secret).
        """
        name, sep, secret = value.partition(":")
        name, secret = name.strip(), secret.strip()
        if not sep or not name or not secret:
            raise usage.UsageError("%s takes NAME:BASE64SECRET" % (where,))
        try:
            base64.b64decode(secret, validate=True)
        except ValueError:
            raise usage.UsageError("%s: the secret for %s is not base64" % (where, name))
        self["keys"][name if name.endswith(".") else name + "."] = secret

    def opt_key(self, value: str) -> None:
        """
        A TSIG key as NAME:BASE64SECRET (seen in process lists: prefer --key-file).
        """
        self._addKey(value, "--key")

    def opt_key_file(self, path: str) -> None:
        """
        A file of TSIG keys, NAME:BASE64SECRET a line, # comments; mode 600.
        """
        import os
        import stat

        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOCTTY", 0))
        except OSError as e:
            raise usage.UsageError("--key-file %s: %s" % (path, e.strerror))
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise usage.UsageError("--key-file %s is not a regular file" % (path,))
        with os.fdopen(fd, "rb") as f:
            if mode & 0o077:
                raise usage.UsageError(
                    "--key-file %s has mode %04o: it must not be readable (or writable) by group or others;"
                    " chmod 600 %s" % (path, stat.S_IMODE(mode), path)
                )
            data = f.read(1 << 20)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise usage.UsageError("--key-file %s is not UTF-8 text" % (path,))
        before = len(self["keys"])
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                self._addKey(line, "--key-file %s, line %d" % (path, number))
        if len(self["keys"]) == before:
            raise usage.UsageError("--key-file %s holds no key" % (path,))

    def postOptions(self) -> None:
        if not self["zone"]:
            raise usage.UsageError("--zone is required")
        if not self["keys"]:
            raise usage.UsageError("at least one --key-file or --key is required")
        for name in ("port", "max-ttl", "rate", "tcp-connections", "tcp-per-address"):
            try:
                self[name] = int(self[name])
            except ValueError:
                raise usage.UsageError("--%s takes a number, not %r" % (name, self[name]))
        try:
            self["tcp-idle"] = float(self["tcp-idle"])
        except ValueError:
            raise usage.UsageError("--tcp-idle takes a number of seconds")
        if not self["zone"].endswith("."):
            self["zone"] += "."


def makeLocatorService(options: LocatorOptions) -> service.IService:
    """
    Build the embedded locator's DNS service: one server, listening on UDP
    and on TCP (services named C{"udp"} and C{"tcp"}) on the same port and
    interface.
    """
    from twisted.internet import reactor

    from .locator import LocatorServer, LocatorStreamFactory, RecordTable

    table = RecordTable(options["store"])
    server = LocatorServer(
        reactor, options["zone"], options["keys"], table, options["max-ttl"], options["rate"]
    )
    streams = LocatorStreamFactory(
        server,
        maxConnections=options["tcp-connections"],
        maxPerAddress=options["tcp-per-address"],
        idleTimeout=options["tcp-idle"],
    )
    top = service.MultiService()
    udp = internet.UDPServer(options["port"], server, interface=options["interface"])
    udp.setName("udp")
    udp.setServiceParent(top)
    tcp = internet.TCPServer(options["port"], streams, interface=options["interface"])
    tcp.setName("tcp")
    tcp.setServiceParent(top)
    return top
