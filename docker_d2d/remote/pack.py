"""Pack the agent: the project's own modules, read from the installed package at run time.

The host runs `python3 -c BOOTSTRAP`; the bootstrap reads one length-prefixed, zlib-compressed
JSON document from stdin (module sources and the job), serves those modules to `import` from
memory (a `sys.meta_path` finder: nothing touches the host's disk) and calls the agent's
`main(job)`. The same files run here and there: there is no second copy to drift.
"""

from __future__ import annotations

import json
import shlex
import zlib
from importlib import resources
from typing import Any

# Every module the agent imports, with the packages among them.
MODULES = (
    "docker_d2d",
    "docker_d2d.errors",
    "docker_d2d.model",
    "docker_d2d.tarstream",
    "docker_d2d.archive",
    "docker_d2d.prefetch",
    "docker_d2d.remote",
    "docker_d2d.remote.agent",
)
PACKAGES = ("docker_d2d", "docker_d2d.remote")
MAIN = "docker_d2d.remote.agent"
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


def _source(module: str) -> str:
    parts = module.split(".")
    node = resources.files(parts[0])
    for part in parts[1:] if module in PACKAGES else parts[1:-1]:
        node = node.joinpath(part)
    return node.joinpath("__init__.py" if module in PACKAGES else parts[-1] + ".py").read_text(encoding="utf-8")


def sources() -> dict[str, str]:
    return {name: _source(name) for name in MODULES}


def command(python: str = "python3") -> str:
    """The exec request: `exec` so no shell lingers between sshd and python."""
    return f"exec {shlex.quote(python)} -c {shlex.quote(BOOTSTRAP)}"


def program(job: dict[str, Any]) -> bytes:
    """What the bootstrap reads from stdin."""
    doc = {"modules": sources(), "packages": list(PACKAGES), "main": MAIN, "job": job}
    packed = zlib.compress(json.dumps(doc).encode(), 9)
    return b"%d\n" % len(packed) + packed
