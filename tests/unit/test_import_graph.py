"""The import graph, computed from the source: no cycles between modules or between packages, no
import upward, at most 9 package levels from main; and formats/ (what travels to a source host)
imports nothing of docker_d2d outside itself, only the standard library, and runs on Python 3.8.

A package is a folder directly under docker_d2d/ or a top-level module. Every import counts:
inside functions and under TYPE_CHECKING too."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "docker_d2d"
# Each package's layer, top first: a package imports only packages of lower layers.
LAYERS = [
    {"main"},
    {"app"},
    {"transfer"},
    {"remote"},
    {"engine", "registry"},
    {"endpoint", "model"},
    {"errors"},
    {"formats"},
    {"__init__"},  # docker_d2d/__init__.py: the version
]
MAX_LEVELS = 9
PYTHON38 = Path("/root/.pyenv/versions/3.8.18/bin/python3")
# Imported inside `try: ... except ImportError` where the host's python may lack them.
OPTIONAL = {"zstandard"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in `module`; `from package import name` counts as
    the module `package.name` when that is one."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                yield (f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target), node.lineno


@cache
def module_graph() -> dict[str, frozenset[str]]:
    graph = {}
    for module in MODULES:
        targets = set()
        for name, _ in _imports(module):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = frozenset(targets)
    return graph


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        graph.setdefault(package(module), set()).update(package(t) for t in targets if package(t) != package(module))
    return graph


def cycles(graph: dict[str, frozenset[str]] | dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def levels(graph: dict[str, set[str]], start: str) -> int:
    """Packages on the longest import path from `start` (the graph has no cycles)."""

    @cache
    def depth(node: str) -> int:
        return 1 + max((depth(n) for n in graph.get(node, ())), default=0)

    return depth(start)


def test_no_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_no_cycle_between_packages() -> None:
    assert cycles(package_graph()) == []


def test_nothing_imports_upward() -> None:
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    assert set(package_graph()) <= set(rank), "a new package: give it a layer in LAYERS"
    upward = [
        f"{module} imports {target}"
        for module, targets in module_graph().items()
        for target in targets
        if package(target) != package(module) and rank[package(target)] <= rank[package(module)]
    ]
    assert upward == []


def test_at_most_nine_package_levels_from_main() -> None:
    assert levels(package_graph(), "main") <= MAX_LEVELS


def test_the_checks_see_cycles_and_depth() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert levels({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == 3


# --- formats/: what travels to the source host ---------------------------------------------------


def test_formats_imports_nothing_of_docker_d2d_outside_it() -> None:
    outside = [
        f"{module} imports {target}"
        for module, targets in module_graph().items()
        if package(module) == "formats"
        for target in targets
        if package(target) != "formats"
    ]
    assert outside == []


def test_formats_imports_only_the_standard_library() -> None:
    foreign = [
        f"{module}:{line} imports {name}"
        for module in MODULES
        if package(module) == "formats"
        for name, line in _imports(module)
        if not name.startswith("docker_d2d")
        and name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in OPTIONAL
    ]
    assert foreign == []


def test_the_pack_is_the_formats_folder() -> None:
    from docker_d2d.remote import pack

    sources, packages = pack.modules()
    travelling = {m for m in MODULES if package(m) == "formats"}
    assert set(sources) == travelling | {"docker_d2d"} and sources["docker_d2d"] == ""
    assert set(packages) == {m for m in travelling if MODULES[m].name == "__init__.py"} | {"docker_d2d"}


def test_formats_alone_imports_on_python_3_8(tmp_path: Path) -> None:
    """Every module of formats/, copied alone below an empty docker_d2d package (as the host gets
    them), imports on Python 3.8: nothing else of docker_d2d, nothing newer than 3.8."""
    (tmp_path / "docker_d2d").mkdir()
    (tmp_path / "docker_d2d" / "__init__.py").write_text("")
    shutil.copytree(ROOT / "formats", tmp_path / "docker_d2d" / "formats", ignore=shutil.ignore_patterns("__pycache__"))
    travelling = sorted(m for m in MODULES if package(m) == "formats")
    script = f"import importlib\nfor name in {travelling!r}:\n    importlib.import_module(name)\nprint('ok')\n"
    proc = subprocess.run(
        [str(PYTHON38), "-E", "-s", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
