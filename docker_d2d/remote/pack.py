"""Pack the agent: the formats/ folder, read from the installed package at run time.

The host runs `python3 -c BOOTSTRAP`; the bootstrap reads one length-prefixed, zlib-compressed
JSON document from stdin (module sources and the job), serves those modules to `import` from
memory (a `sys.meta_path` finder: nothing touches the host's disk) and calls the agent's
`main(job)`. The same files run here and there: there is no second copy to drift.
"""

from __future__ import annotations

import json
import shlex
import zlib
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Traversable

# What travels: the formats/ folder, whole (its modules import nothing else of docker_d2d; a unit
# test proves it), below an empty docker_d2d package.
ROOT = "docker_d2d"
FOLDER = "formats"
MAIN = "docker_d2d.formats.agent"
EXIT_TOO_OLD = 96

# Must parse on any python3 (and say so when it is too old): no f-strings, no single quotes.
BOOTSTRAP = r"""
import sys
if sys.version_info < (3, 8):
    sys.stderr.write("docker-d2d: python %d.%d is older than 3.8\n" % tuple(sys.version_info[:2]))
    sys.exit(96)
import importlib.abc, importlib.util, json, linecache, zlib
r = sys.stdin.buffer
p = json.loads(zlib.decompress(r.read(int(r.readline()))).decode())
m = p["modules"]
class F(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in m:
            return importlib.util.spec_from_loader(name, self, is_package=name in p["packages"])
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        fn = "<d2d>/" + module.__name__.replace(".", "/") + ".py"
        linecache.cache[fn] = (len(m[module.__name__]), None, m[module.__name__].splitlines(True), fn)
        exec(compile(m[module.__name__], fn, "exec"), module.__dict__)
sys.meta_path.insert(0, F())
importlib.import_module(p["main"]).main(p["job"])
"""


def _walk(node: Traversable, name: str) -> Iterator[tuple[str, str, bool]]:
    """(module, source, is a package) for every module below `node`, the package `name`."""
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir() and child.joinpath("__init__.py").is_file():
            yield from _walk(child, f"{name}.{child.name}")
        elif child.name == "__init__.py":
            yield name, child.read_text(encoding="utf-8"), True
        elif child.name.endswith(".py"):
            yield f"{name}.{child.name[:-3]}", child.read_text(encoding="utf-8"), False


def modules() -> tuple[dict[str, str], list[str]]:
    """Every module that travels (name -> source) and which of them are packages."""
    found = list(_walk(resources.files(ROOT).joinpath(FOLDER), f"{ROOT}.{FOLDER}"))
    sources = {ROOT: "", **{name: text for name, text, _ in found}}
    return sources, [ROOT, *(name for name, _, package in found if package)]


def command(python: str = "python3", sudo: bool = False) -> str:
    """The exec request: `exec` so no shell lingers between sshd and python. `sudo`: through
    `sudo -n`, which never prompts (it fails at once where a password would be needed)."""
    run = f"exec sudo -n {shlex.quote(python)}" if sudo else f"exec {shlex.quote(python)}"
    return f"{run} -c {shlex.quote(BOOTSTRAP)}"


def program(job: dict[str, Any]) -> bytes:
    """What the bootstrap reads from stdin."""
    sources, packages = modules()
    doc = {"modules": sources, "packages": packages, "main": MAIN, "job": job}
    packed = zlib.compress(json.dumps(doc).encode(), 9)
    return b"%d\n" % len(packed) + packed
