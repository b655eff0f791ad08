"""Shell completion: cobra's `__complete` protocol (what `docker completion bash|zsh|fish`
asks of plugins), `__completeNoDesc` (Debian's static bash script), and the candidate
functions typer's own completion of `docker-d2d` uses. Only the image lists contact an
engine, with a short timeout: a slow or dead engine never freezes the shell."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SUBCOMMANDS = {
    "copy": "Copy images from a source engine to a destination engine",
    "push": "Push images from the local engine to a destination",
    "pull": "Pull images from a source into the local engine",
    "completion": "Print the shell completion script for docker-d2d",
    "plugin": "Install or uninstall docker-d2d as a Docker CLI plugin",
    "version": "Print the version",
}
COMMON_FLAGS = {
    "--dry-run": "Show the plan and stop",
    "--quiet": "Print nothing but errors",
    "--json": "One JSON object per line",
    "--debug": "Show tracebacks",
    "--spool-dir": "Where to spool layers",
    "--help": "Show help",
}
FLAGS = {
    "copy": {"--source": "Source engine", "--destination": "Destination engine", **COMMON_FLAGS},
    "push": COMMON_FLAGS,
    "pull": COMMON_FLAGS,
    "completion": {"--help": "Show help"},
    "plugin": {"--help": "Show help"},
    "version": {},
}
ENDPOINT_FLAGS = {"-s", "--source", "-d", "--destination"}
VALUE_FLAGS = ENDPOINT_FLAGS | {"--spool-dir"}
SCHEMES = ("unix://", "tcp://")
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


def endpoint_candidates() -> list[tuple[str, str]]:
    from .contexts import ContextStore, config_dir
    from .options import GlobalOptions

    names = ContextStore(config_dir(GlobalOptions(), os.environ)).names()
    out = [("default", "Docker context"), *((n, "Docker context") for n in names)]
    out += [(h, "ssh host") for h in ssh_hosts() if h not in names]
    out += [(s, "address") for s in SCHEMES]
    return out


def image_candidates(source: str | None) -> list[tuple[str, str]]:
    """Tags at the source engine; nothing when it does not answer within IMAGE_TIMEOUT."""
    # The promise is for the whole answer: Python's start and imports count against it.
    images = _bounded(lambda: _list_images(source), max(0.2, IMAGE_TIMEOUT - 0.1 - _since_start()))
    tags = sorted({t for img in images or [] for t in img.get("RepoTags") or [] if t != "<none>:<none>"})
    return [(t, "image") for t in tags]


def _list_images(source: str | None) -> list[dict[str, Any]]:
    import httpx

    from .contexts import resolve
    from .options import GlobalOptions
    from .transport import Timeouts, make_transport

    limit = Timeouts(connect=IMAGE_TIMEOUT, stall=IMAGE_TIMEOUT)
    transport, base = make_transport(resolve(source, GlobalOptions(), os.environ), limit)
    with httpx.Client(transport=transport, base_url=base, timeout=IMAGE_TIMEOUT) as client:
        return list(client.get("/images/json").json())


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


def candidates(words: list[str], current: str) -> tuple[list[tuple[str, str]], int]:
    """Completions for `docker-d2d <words...> <current>`; returns (value, description) pairs and a directive."""
    if not words:
        if current.startswith("-"):
            return [("--help", "Show help")], NO_FILE
        return list(SUBCOMMANDS.items()), NO_FILE
    command = words[0]
    if command not in SUBCOMMANDS:
        return [], NO_FILE
    prev = words[-1] if len(words) > 1 else ""
    if prev in ENDPOINT_FLAGS:
        return endpoint_candidates(), NO_FILE
    if prev == "--spool-dir":
        return [], FILTER_DIRS
    if current.startswith("-"):
        return list(FLAGS[command].items()), NO_FILE
    positionals, source, skip = [], None, False
    for i, word in enumerate(words[1:], 1):
        if skip:
            skip = False
            continue
        if word in VALUE_FLAGS:
            skip = True
            if word in ("-s", "--source") and i + 1 < len(words):
                source = words[i + 1]
            continue
        if not word.startswith("-"):
            positionals.append(word)
    if command == "completion":
        return ([(s, "shell") for s in ("bash", "zsh", "fish")] if not positionals else []), NO_FILE
    if command == "plugin":
        return (
            [("install", "Install into cli-plugins"), ("uninstall", "Remove it")] if not positionals else []
        ), NO_FILE
    if command == "version":
        return [], NO_FILE
    if command in ("push", "pull") and not positionals:
        return endpoint_candidates(), NO_FILE
    if command == "pull":
        source = positionals[0]
    return image_candidates(source), NO_FILE


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
