"""A full file system under a spool, said as one error that names the directory and its room.

Runs on the source host too (the agent's spool is its temp dir): Python 3.8, standard library only.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .digests import human_size
from .errors import SpoolFull

# A local run spools into private directories of its own inside the spool directory (--spool-dir).
PRIVATE_DIR = "d2d-run-"


@contextmanager
def spooling(directory: Path | None, what: str, local: bool = True) -> Iterator[None]:
    """A full file system under a spool (ENOSPC, EDQUOT) becomes one SpoolFull that names the
    directory, its room and `what` was being spooled. `directory` None: the temp dir (on the
    source host, for the agent); a run's private directory is named by the spool directory it is in."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise spool_full(directory, what, local) from exc


def spool_full(directory: Path | None, what: str, local: bool) -> SpoolFull:
    shown = directory if directory is not None else Path(tempfile.gettempdir())
    if shown.name.startswith(PRIVATE_DIR):
        shown = shown.parent
    try:
        st = os.statvfs(shown)
        room = f" ({human_size(st.f_blocks * st.f_frsize)} in all, {human_size(st.f_bavail * st.f_frsize)} free)"
    except OSError:
        room = ""
    if local:
        hint = "give --spool-dir a directory with more room"
        message = f"no space left in the spool directory {shown}{room} for {what}: {hint}"
        return SpoolFull(message, directory=str(shown), side="local")
    hint = "make room there, or point TMPDIR elsewhere for its ssh sessions"
    return SpoolFull(f"no space left in {shown} on the source host{room} for {what}: {hint}", directory=str(shown))
