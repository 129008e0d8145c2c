# -*- test-case-name: tests.test_layering -*-
"""
The shape of the code: the sans-IO layer imports nothing from Twisted, and
no module of the package imports, directly or not, a module that imports
it back.

Imports are read from the source (every C{import} statement, in functions
too), except those under C{if TYPE_CHECKING:}, which only the type checker
runs.
"""

from __future__ import annotations

import ast
import os
from typing import Iterator

from twisted.trial.unittest import SynchronousTestCase

import migrate

PACKAGE = os.path.dirname(os.path.abspath(migrate.__file__))


def modules() -> dict[str, str]:
    """
    Every module of the package: dotted name to file.
    """
    found = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")]
            dotted = relative.replace(os.sep, ".")
            if dotted.endswith(".__init__"):
                dotted = dotted[: -len(".__init__")]
            found[dotted] = path
    return found


def _typeCheckingOnly(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if _typeCheckingOnly(child):
            continue
        yield child
        yield from _walk(child)


def imports(name: str, path: str) -> set[str]:
    """
    The modules C{name} imports at run time (absolute dotted names).
    """
    tree = ast.parse(open(path).read(), path)
    isPackage = path.endswith("__init__.py")
    base = name.split(".") if isPackage else name.split(".")[:-1]
    found: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                module = ".".join(parent + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # "from . import x" imports the module x.
            for alias in node.names:
                found.add(module + "." + alias.name)
    return found


_SESSION_NAMES = ("session", "root", "parent")


def _isSession(node: ast.AST) -> bool:
    """
    Whether C{node} names a session: a name or attribute ending in
    C{session}, or C{root} or C{parent} (the names the package gives them).
    """
    if isinstance(node, ast.Name):
        name = node.id
    elif isinstance(node, ast.Attribute):
        name = node.attr
    else:
        return False
    return name.lower().endswith(_SESSION_NAMES) and not name.startswith("self")


def _underSession(node: ast.Attribute) -> bool:
    value: ast.AST = node.value
    while isinstance(value, ast.Attribute):
        if _isSession(value):
            return True
        value = value.value
    return _isSession(value)


def sessionOffences(name: str, source: str) -> list[str]:
    """
    Where C{source} (module C{name}) assigns an attribute of a session (or
    of something it holds), or uses a private attribute of one.
    """
    offences = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for one in target.elts if isinstance(target, ast.Tuple) else [target]:
                if isinstance(one, ast.Attribute) and _underSession(one):
                    offences.append("%s:%d assigns %s" % (name, node.lineno, ast.unparse(one)))
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and _isSession(node.value)
        ):
            offences.append("%s:%d uses %s" % (name, node.lineno, ast.unparse(node)))
    return sorted(offences, key=lambda o: int(o.split(":")[1].split()[0]))


class LayeringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.modules = modules()
        self.graph = {
            name: {m for m in imports(name, path) if m in self.modules and m != name}
            for name, path in self.modules.items()
        }

    def test_sansIOImportsNoTwisted(self) -> None:
        """
        Nothing in C{migrate._sansio} imports Twisted, zope, or any module of
        the package outside C{migrate._sansio}.
        """
        offences = []
        for name, path in self.modules.items():
            if not name.startswith("migrate._sansio"):
                continue
            for imported in imports(name, path):
                top = imported.split(".")[0]
                if top in ("twisted", "zope") or (
                    top == "migrate" and not imported.startswith("migrate._sansio")
                ):
                    offences.append("%s imports %s" % (name, imported))
        self.assertEqual(offences, [])

    def test_noCycles(self) -> None:
        """
        The import graph of the package has no cycle.
        """
        graph = self.graph
        cycles = []
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(node: str) -> None:
            state[node] = 1
            stack.append(node)
            for nxt in sorted(graph[node]):
                # A package imports its own modules to re-export them.
                if node == "migrate" or nxt == "migrate":
                    continue
                if state.get(nxt) == 1:
                    cycles.append(stack[stack.index(nxt) :] + [nxt])
                elif nxt not in state:
                    visit(nxt)
            stack.pop()
            state[node] = 2

        for node in sorted(graph):
            if node not in state:
                visit(node)
        self.assertEqual([" -> ".join(c) for c in cycles], [])

    def test_sessionStateThroughMethods(self) -> None:
        """
        Outside the package C{migrate._session}, nothing assigns a session's attributes
        or touches its private ones: other modules change a session through
        its public methods.  (C{migrate.datagram} is left out, its sessions
        being its own private class.)
        """
        offences = []
        for name, path in self.modules.items():
            if name.startswith("migrate._session") or name == "migrate.datagram":
                continue
            offences.extend(sessionOffences(name, open(path).read()))
        self.assertEqual(offences, [])

    def test_sessionOffencesFound(self) -> None:
        """
        (L{sessionOffences} finds what it looks for, and only that.)
        """
        source = (
            "session.generation = 1\n"
            "entry.session.upcalls.app = None\n"
            "root.handoffs += 1\n"
            "self.session = session\n"
            "session._end(reason)\n"
            "session.end(reason)\n"
        )
        self.assertEqual(
            sessionOffences("m", source),
            [
                "m:1 assigns session.generation",
                "m:2 assigns entry.session.upcalls.app",
                "m:3 assigns root.handoffs",
                "m:5 uses session._end",
            ],
        )

    def test_exceptionsInOnePlace(self) -> None:
        """
        Every exception class of the package is defined in C{migrate.errors}
        (those applications and operators see) or C{migrate._sansio.errors}
        (what a peer sends; it cannot import Twisted), and
        C{migrate.errors} lists them all.
        """
        import importlib

        import migrate.errors

        found = {}
        for name in self.modules:
            module = importlib.import_module(name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseException)
                    and value.__module__.startswith("migrate")
                ):
                    found[value.__qualname__] = value.__module__
        self.assertEqual(
            {k: v for k, v in found.items() if v not in ("migrate.errors", "migrate._sansio.errors")},
            {},
        )
        self.assertEqual(sorted(found), sorted(migrate.errors.__all__))

    def test_graphIsReal(self) -> None:
        """
        (The graph is read correctly: known edges are in it.)
        """
        self.assertIn("migrate._sansio.wire", self.graph["migrate._session.core"])
        self.assertIn("migrate._sansio.errors", self.graph["migrate._sansio.stream"])
        self.assertIn("migrate._session", self.graph["migrate._server"])


class PackagingTests(SynchronousTestCase):
    def test_everySubpackageInstalled(self) -> None:
        """
        The packages C{setup.cfg} installs include every package of
        C{migrate} (a subpackage left out works from the source tree and
        breaks an installed C{twistd migrate}), and Twisted's plugin
        directory.
        """
        from setuptools.config.setupcfg import read_configuration

        root = os.path.dirname(PACKAGE)
        here = os.getcwd()
        os.chdir(root)
        try:
            packages = set(read_configuration(os.path.join(root, "setup.cfg"))["options"]["packages"])
        finally:
            os.chdir(here)
        wanted = {name for name, path in modules().items() if path.endswith("__init__.py")}
        self.assertEqual(wanted - packages, set())
        self.assertIn("twisted.plugins", packages)
        self.assertIn("migrate._sansio", packages)
