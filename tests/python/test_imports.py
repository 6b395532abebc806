"""The package's import graph: no module imports itself back through others, and only the
applications that drive the engine import the service layer.

Every import counts, at module level or deferred into a function (a deferred import that
closes a loop is still a loop, only one that fails later), except those under
``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "recserve"
#: What may import recserve.service: the service itself and the programs built on it.
SERVICE_USERS = (
    "recserve.service",
    "recserve.cli",
    "recserve.evaluate",
    "recserve.retrain",
    "recserve.sim",
)


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(nodes: list[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from imports_in(list(node.orelse))
        else:
            yield from imports_in(list(ast.iter_child_nodes(node)))


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import sub`` is ``pkg.sub``)."""
    files = {module_name(p, package): p for p in package.rglob("*.py")}
    modules = set(files) | {f"{package.name}._core"}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in imports_in([ast.parse(path.read_text(), str(path))]):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:  # relative: from the module's package up
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_package_has_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


def test_only_the_applications_import_the_service() -> None:
    offenders = {
        name: sorted(t for t in targets if t.startswith("recserve.service"))
        for name, targets in import_graph(PACKAGE).items()
        if not name.startswith(SERVICE_USERS)
    }
    assert {name: t for name, t in offenders.items() if t} == {}


def test_a_cycle_through_a_deferred_import_is_found(tmp_path: Path) -> None:
    package = write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import f\n",
            "b.py": "def f():\n    from pkg import a\n",
            "c.py": "from pkg import a\n",
        },
    )
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_type_checking_and_relative_imports(tmp_path: Path) -> None:
    package = write(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
            "b.py": "from . import a\n",
            "sub/__init__.py": "from .. import b\n",
            "sub/c.py": "from ..sub import d\nfrom .. import a\n",
            "sub/d.py": "import pkg.sub.c\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.a"] == set()  # only for the type checker
    assert graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.b"}
    assert graph["pkg.sub.c"] == {"pkg.sub.d", "pkg.a"}
    assert cycles(graph) == [["pkg.sub.c", "pkg.sub.d"]]
