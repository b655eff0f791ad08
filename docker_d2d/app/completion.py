"""Shell completion: cobra's `__complete` protocol (what `docker completion bash|zsh|fish`
asks of plugins), `__completeNoDesc` (Debian's static bash script), and the candidate
functions typer's own completion of `docker-d2d` uses. Only the image lists contact an
engine, with a short timeout: a slow or dead engine never freezes the shell.

Commands, options and their values come from `command_table.py`, which is derived from the
typer app at development time (`python -m tests.harness.command_table` rewrites it; a unit test
checks it is current): importing typer and the app would cost __complete ~300 ms, the table
costs nothing."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from .command_table import COMMANDS

T = TypeVar("T")

SCHEMES = ("unix://", "tcp://", "containerd+ssh://", "containerd://", "kind://", "k3d://")
# The labels kind and k3d give their node containers (engine/sides.py CLUSTER_LABELS).
CLUSTER_LABELS = {"kind": "io.x-k8s.kind.cluster", "k3d": "k3d.cluster"}
IMAGE_TIMEOUT = 1.5

# cobra ShellCompDirective bits
NO_SPACE, NO_FILE, FILTER_DIRS = 2, 4, 16


def ssh_hosts(config: Path | None = None) -> list[str]:
    path = config or Path.home() / ".ssh" / "config"
    hosts: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return hosts
    for line in lines:
        m = re.match(r"\s*Host\s+(.+)", line, re.IGNORECASE)
        if m:
            hosts.extend(h for h in m.group(1).split() if not any(c in h for c in "*?!"))
    return hosts


def endpoint_candidates(current: str = "") -> list[tuple[str, str]]:
    from .contexts import ContextStore, config_dir
    from .options import GlobalOptions

    names = ContextStore(config_dir(GlobalOptions(), os.environ)).names()
    out = [("default", "Docker context"), *((n, "Docker context") for n in names)]
    hosts = ssh_hosts()
    out += [(h, "ssh host") for h in hosts if h not in names]
    out += [(s, "address") for s in SCHEMES]
    if current.startswith("containerd+ssh://"):
        out += [(f"containerd+ssh://{h}", "Kubernetes node over ssh") for h in hosts]
    if any(f"{tool}://".startswith(current[: len(tool) + 3]) for tool in CLUSTER_LABELS):
        out += _bounded(_clusters, max(0.2, IMAGE_TIMEOUT - 0.1 - _since_start())) or []
    return out


def _clusters() -> list[tuple[str, str]]:
    """kind:// and k3d:// clusters (and their nodes) among the local engine's containers."""
    import json
    from urllib.parse import quote

    from ..endpoint import Scheme
    from .contexts import local_engine
    from .options import GlobalOptions

    endpoint = local_engine(GlobalOptions(), os.environ)
    if endpoint.scheme is not Scheme.UNIX:
        return []
    out: list[tuple[str, str]] = []
    for tool, label in CLUSTER_LABELS.items():
        listed = _get_unix(endpoint.path, "/containers/json?filters=" + quote(json.dumps({"label": [label]})))
        clusters: dict[str, list[str]] = {}
        for container in listed:
            name = (container.get("Labels") or {}).get(label)
            if name:
                clusters.setdefault(name, []).extend(n.lstrip("/") for n in container.get("Names") or ())
        for name, nodes in sorted(clusters.items()):
            out.append((f"{tool}://{name}", f"{tool} cluster ({len(nodes)} nodes)"))
            out += [(f"{tool}://{name}/{node}", f"{tool} node") for node in sorted(nodes)]
    return out


def image_candidates(source: str | None) -> list[tuple[str, str]]:
    """Tags at the source engine; nothing when it does not answer within IMAGE_TIMEOUT."""
    # The promise is for the whole answer: Python's start and imports count against it.
    images = _bounded(lambda: _list_images(source), max(0.2, IMAGE_TIMEOUT - 0.1 - _since_start()))
    tags = sorted({t for img in images or [] for t in img.get("RepoTags") or [] if t != "<none>:<none>"})
    return [(t, "image") for t in tags]


def _list_images(source: str | None) -> list[dict[str, Any]]:
    from ..endpoint import Scheme
    from .contexts import resolve
    from .options import GlobalOptions

    endpoint = resolve(source, GlobalOptions(), os.environ)
    if endpoint.scheme is Scheme.UNIX and endpoint.path:
        return list(_get_unix(endpoint.path, "/images/json"))
    import httpx

    from ..engine.pool import SSHPool
    from ..engine.timeouts import Timeouts
    from ..engine.transports import make_transport

    limit = Timeouts(connect=IMAGE_TIMEOUT, stall=IMAGE_TIMEOUT)
    with SSHPool() as ssh:
        transport, base = make_transport(endpoint, limit, ssh=ssh)
        with httpx.Client(transport=transport, base_url=base, timeout=IMAGE_TIMEOUT) as client:
            return list(client.get("/images/json").json())


def _get_unix(path: str, url: str) -> Any:
    """GET `url` from the engine on the unix socket `path` with the standard library: importing
    httpx would cost this Tab ~60 ms, more than the engine takes to answer. HTTP/1.0, so that the
    engine answers unchunked and closes the connection at the end of its answer."""
    import json
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(IMAGE_TIMEOUT)
        sock.connect(path)
        sock.sendall(f"GET {url} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        answer = bytearray()
        while chunk := sock.recv(1 << 16):
            answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise OSError(f"{url}: {head[:80]!r}")
    return json.loads(body)


def _since_start() -> float:
    """Seconds since this process started (Linux /proc; 0 where unknown)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _bounded(contact: Callable[[], T], seconds: float) -> T | None:
    """`contact()` within `seconds` as a whole (an ssh host may take its connect, banner and
    channel timeouts one after the other), else None; never raises. The thread left behind is a
    daemon and dies with the process."""
    box: list[T] = []

    def run() -> None:
        with contextlib.suppress(Exception):  # completion must never fail loudly
            box.append(contact())

    thread = threading.Thread(target=run, name="d2d-complete", daemon=True)
    thread.start()
    thread.join(seconds)
    return box[0] if box else None


Node = dict[str, Any]


def _option(node: Node, word: str) -> Node | None:
    return next((o for o in node["options"] if word in o["names"]), None)


def _values(
    kind: str | None, choices: list[str], source: str | None, current: str = ""
) -> tuple[list[tuple[str, str]], int]:
    if kind == "endpoint":
        return endpoint_candidates(current), NO_FILE
    if kind == "dir":
        return [], FILTER_DIRS
    if kind == "images":
        return image_candidates(source), NO_FILE
    if kind == "choice":
        return [(c, "") for c in choices], NO_FILE
    return [], NO_FILE


def candidates(words: list[str], current: str) -> tuple[list[tuple[str, str]], int]:
    """Completions for `docker-d2d <words...> <current>`; returns (value, description) pairs and a directive."""
    node: Node = COMMANDS
    positionals: list[str] = []
    source: str | None = None
    pending: Node | None = None  # an option whose value is the next word
    if words and words[0].startswith("-") and _option(node, words[0]) is None:
        node = node["commands"]["copy"]  # the original tool's form: `docker-d2d -s SRC -d DST IMAGE...`
    for word in words:
        if pending is not None:
            if pending["dest"] == "source":
                source = word
            pending = None
        elif word.startswith("-"):
            opt = _option(node, word)
            pending = opt if opt and opt["value"] else None
        elif not positionals and word in node["commands"]:
            node = node["commands"][word]
        else:
            if node["arguments"][:1] and node["arguments"][0]["dest"] == "source" and not positionals:
                source = word
            positionals.append(word)
    if pending is not None:
        return _values(pending["value"], pending["choices"], source, current)
    if current.startswith("-"):
        return [(n, o["help"]) for o in node["options"] for n in o["names"] if n.startswith("--")], NO_FILE
    if node["commands"] and not positionals:
        return [(name, sub["help"]) for name, sub in node["commands"].items()], NO_FILE
    args = node["arguments"]
    if not args:
        return [], NO_FILE
    arg = args[min(len(positionals), len(args) - 1)]
    if len(positionals) >= len(args) and arg["nargs"] != -1:
        return [], NO_FILE
    return _values(arg["value"], arg["choices"], source, current)


def _filter(pairs: Iterable[tuple[str, str]], current: str) -> list[tuple[str, str]]:
    return [(v, d) for v, d in pairs if v.startswith(current)]


def cobra_complete(mode: str, args: list[str]) -> str:
    """`__complete d2d <args...> <current>` or `__completeNoDesc <args...> <current>`."""
    if args[:1] == ["d2d"]:
        args = args[1:]
    args = ["" if a == "''" else a for a in args]
    words, current = (args[:-1], args[-1]) if args else ([], "")
    pairs, directive = candidates(words, current)
    with_desc = mode == "__complete"
    lines = [f"{v}\t{d}" if with_desc and d else v for v, d in _filter(pairs, current)]
    return "\n".join([*lines, f":{directive}"])


def completion_script(shell: str) -> str:
    """The completion script of the standalone docker-d2d for `shell`: typer's own, from a module
    it keeps private (typer/_completion_shared.py `get_completion_script`; pinned in pyproject.toml,
    tests/unit/app/test_pinned_typer.py fails when it changes)."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="docker-d2d", complete_var="_DOCKER_D2D_COMPLETE", shell=shell)
