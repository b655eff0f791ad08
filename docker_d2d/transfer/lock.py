"""One copy at a time into one destination: an advisory lock per destination endpoint.

Two runs of the same image to one engine would otherwise both plan against what the engine
held before either loaded anything, and both send every layer. The second run waits for the
first, then plans against what the first loaded. Advisory (flock): it binds docker-d2d runs
of this user on this machine; it is released by the kernel when a run dies.

The lock file goes when its holder is done, so that a file per destination ever used does not
stay behind. That is race-free because a run that got the lock checks that it holds the file
that is at the path now: one that waited on a file its holder removed meanwhile opens the path
again (and a file a killed run left is taken, and removed, by the next run to that destination).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..endpoint import Endpoint

log = logging.getLogger(__name__)


def lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "docker-d2d"
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "docker-d2d" / "locks"


def endpoint_key(endpoint: Endpoint) -> str:
    """The engine an endpoint reaches, however it was named (a context or its address)."""
    if endpoint.node:  # one node container of a kind or k3d cluster
        return f"{endpoint.scheme.value}://{endpoint.host}/{endpoint.node}"
    if not endpoint.host:
        return f"{endpoint.scheme.value}://{endpoint.path}"
    return f"{endpoint.scheme.value}://{endpoint.user or ''}@{endpoint.host}:{endpoint.port}{endpoint.path}"


@contextlib.contextmanager
def destination_lock(endpoint: Endpoint, on_wait: Callable[[], None]) -> Iterator[None]:
    """Hold the lock for `endpoint`; `on_wait` is called once if another run holds it.
    Where no lock file can be made (a read-only home), the copy goes on without one."""
    path = lock_dir() / (hashlib.sha256(endpoint_key(endpoint).encode()).hexdigest()[:32] + ".lock")
    waited = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.info("no destination lock (%s): %s", path, exc)
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited:
                    on_wait()
                    waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C / SIGTERM interrupt the wait
        except BaseException:
            os.close(fd)
            raise
        if _is_at(fd, path):
            break
        os.close(fd)  # its holder removed it while we waited: lock the file at the path now
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still holding it: a run that opened it meanwhile opens the path again
        os.close(fd)


def _is_at(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
