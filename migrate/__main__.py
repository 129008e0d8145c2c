"""
Command-line tools for a C{twistd migrate --status ...} process:

  - C{python -m migrate status URL} prints every session it knows, as
    tables with units: live ones (attached, detached with the time they
    have left, closing), hibernated ones (in memory, being saved, in the
    store) and recently ended ones (with their reason code and words); and
    a summary line (C{--json}: the raw JSON, with every field of every
    session);
  - C{python -m migrate expire URL SESSIONID} ends one session now, live or
    hibernated: it reads the view's token (the C{X-Migrate-Token} header of
    a C{GET}) and sends it with its C{POST}.

Credentials for a view started with C{--status-auth} come from the URL
(C{http://user:password@127.0.0.1:7080/}) or, failing that, from the
environment variable C{MIGRATE_STATUS_AUTH} (C{user:password}).  Proxies
from the environment are not used, and redirects are not followed, so that
neither the credentials nor the token go anywhere but to the view.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from http.client import HTTPResponse
from typing import Any, Mapping, Sequence
from urllib.parse import unquote, urlsplit, urlunsplit

from ._status import TOKEN_HEADER, renderText

AUTH_VARIABLE = "MIGRATE_STATUS_AUTH"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """
    Refuse redirects: the view never sends one to these tools, and a
    redirect would carry the credentials elsewhere.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """
        Follow no redirect (the 3xx response is raised as an error).

        @return: L{None}.
        """
        return None


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


class _View:
    """
    A status view's address and the credentials to read it with.

    @ivar base: the view's URL without credentials, without a final C{/}
        and without C{/sessions.json}.
    @ivar authorization: the C{Authorization} header's value, or L{None}.
    """

    def __init__(self, url: str, environ: Mapping[str, str]) -> None:
        """
        @param url: the view's address as given: C{http://...}, or
            C{HOST:PORT}; may hold C{user:password@}.
        @param environ: where to find C{MIGRATE_STATUS_AUTH} when the URL
            has no credentials.
        """
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        credentials = None
        if parts.username is not None:
            credentials = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
        elif environ.get(AUTH_VARIABLE):
            credentials = environ[AUTH_VARIABLE]
        self.authorization = (
            "Basic " + base64.b64encode(credentials.encode("utf-8")).decode("ascii")
            if credentials is not None
            else None
        )
        path = parts.path.rstrip("/").removesuffix("/sessions.json").rstrip("/")
        self.base = urlunsplit((parts.scheme, netloc, path, "", ""))

    def open(self, path: str, data: bytes | None = None, token: str | None = None) -> HTTPResponse:
        """
        Send a request to the view.

        @param path: the path under the view's URL, e.g. C{/sessions.json}.
        @param data: a body to C{POST}, or L{None} to C{GET}.
        @param token: the view's token, sent as C{X-Migrate-Token}.
        @return: the response.
        @raise urllib.error.HTTPError: the view refused.
        @raise OSError: the view cannot be reached.
        """
        request = urllib.request.Request(
            self.base + path, data=data, method="GET" if data is None else "POST"
        )
        if self.authorization is not None:
            request.add_header("Authorization", self.authorization)
        if token is not None:
            request.add_header(TOKEN_HEADER.decode("ascii"), token)
        response: HTTPResponse = _opener.open(request, timeout=10)
        return response


def _refusal(e: urllib.error.HTTPError, view: _View) -> str:
    """
    Say why the view refused a request.

    @param e: the refusal.
    @param view: the view.
    @return: a line for the operator.
    """
    if e.code == 401:
        if view.authorization is None:
            return "the status view needs credentials: http://USER:PASSWORD@HOST:PORT/ or %s=USER:PASSWORD" % (
                AUTH_VARIABLE,
            )
        return "the status view refused these credentials"
    try:
        text = e.read(500).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return "HTTP %d %s%s" % (e.code, e.reason, ": " + text if text else "")


def _expire(view: _View, session: str) -> int:
    """
    End a session: read the view's token, then post the expiry with it.

    @param view: the view.
    @param session: the session id (hex).
    @return: the exit status.
    """
    try:
        with view.open("/sessions.json") as response:
            token = response.headers.get(TOKEN_HEADER.decode("ascii"))
    except urllib.error.HTTPError as e:
        print("cannot read %s/sessions.json: %s" % (view.base, _refusal(e, view)), file=sys.stderr)
        return 1
    except OSError as e:
        print("cannot reach %s: %s" % (view.base, e), file=sys.stderr)
        return 1
    target = "/sessions/%s/expire" % (session,)
    try:
        with view.open(target, data=b"", token=token) as response:
            json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            print("no session %s" % (session,), file=sys.stderr)
            return 1
        print("cannot expire: %s" % (_refusal(e, view),), file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print("cannot reach %s%s: %s" % (view.base, target, e), file=sys.stderr)
        return 1
    print("session %s expired" % (session,))
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """
    Run a command.

    @param argv: the arguments (without the program's name); L{sys.argv}'s
        if L{None}.
    @param environ: the environment (for C{MIGRATE_STATUS_AUTH});
        L{os.environ} if L{None}.
    @return: the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m migrate",
        epilog="Credentials for a view with --status-auth: http://USER:PASSWORD@HOST:PORT/ "
        "or the environment variable %s=USER:PASSWORD." % (AUTH_VARIABLE,),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="show the sessions of a twistd migrate process")
    status.add_argument("url", help="the --status address, e.g. http://127.0.0.1:7080/")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    expire = commands.add_parser("expire", help="end a session now")
    expire.add_argument("url", help="the --status address")
    expire.add_argument("session", help="the session id (hex)")
    args = parser.parse_args(argv)
    view = _View(args.url, os.environ if environ is None else environ)
    if args.command == "expire":
        return _expire(view, args.session)
    url = view.base + "/sessions.json"
    try:
        with view.open("/sessions.json") as response:
            report = json.load(response)
    except urllib.error.HTTPError as e:
        print("cannot read %s: %s" % (url, _refusal(e, view)), file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print("cannot read %s: %s" % (url, e), file=sys.stderr)
        return 1
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0
    sys.stdout.write(renderText(report))
    return 0


def run() -> int:
    """
    L{main}, quiet when the reader of its output goes away (C{| head}).
    """
    try:
        status = main()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # As Python's documentation advises: no more output can go
        # anywhere, and the interpreter must not try to flush it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(run())
