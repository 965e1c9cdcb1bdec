"""The house of ../shared/DESIGN.md, beyond what the import-linter contracts check: no import
circles anywhere (imports under TYPE_CHECKING and inside functions included), and the command
line's light paths never import Braket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).parents[2]
PACKAGES = ("qorch", "api", "orchestrator", "nodes", "qorchestra", "proto", "migrations")


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    imported = graph.find_modules_directly_imported_by(child)
                    work.append((child, iter(sorted(imported))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_has_no_circles() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False, cache_dir=None)
    assert _circles(graph) == []


def test_circles_are_found() -> None:
    """The check above can fail: a graph with a circle of three reports it."""
    graph = grimp.ImportGraph()
    for a, b in (("x.a", "x.b"), ("x.b", "x.c"), ("x.c", "x.a"), ("x.c", "x.d")):
        graph.add_import(importer=a, imported=b)
    assert _circles(graph) == [["x.a", "x.b", "x.c"]]


def _braket_modules_after(code: str) -> list[str]:
    """The Braket modules a fresh interpreter has imported after running ``code``."""
    probe = code + "\nimport sys\nprint(sum(m.split('.')[0] == 'braket' for m in sys.modules))\n"
    env = {"QORCH_API_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip().splitlines()[-1:]


def _imports_braket(*argv: str) -> bool:
    """Whether running ``qorch ARGV`` in a fresh interpreter imports any Braket module."""
    code = (
        "import sys\n"
        "from qorch.cli import main\n"
        f"sys.argv = ['qorch', *{list(argv)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    return _braket_modules_after(code) != ["0"]


def test_the_probe_sees_braket() -> None:
    """The two checks below can fail: the domain's program analysis does import Braket."""
    assert _braket_modules_after("import qorchestra.qasm") != ["0"]


def test_qorch_help_does_not_import_braket() -> None:
    assert not _imports_braket("--help")


def test_client_commands_do_not_import_braket() -> None:
    """``qorch jobs`` (here against an API that is not there) stays on the SDK side."""
    assert not _imports_braket("jobs")


def test_the_sdk_imports_with_the_client_dependencies_alone() -> None:
    """``qorch.client`` imports in an interpreter where every server- and node-side package
    (and the shared library) fails to import, as on a machine with the SDK installed alone."""
    blocked = (
        "api", "orchestrator", "nodes", "qorchestra", "migrations", "braket", "sqlalchemy",
        "fastapi", "confluent_kafka", "numpy", "boto3", "psycopg", "alembic", "pydantic",
    )  # fmt: skip
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ImportError('not installed: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import qorch.client\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "ok", out.stderr
