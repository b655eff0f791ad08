"""The spool directory, checked before any engine is contacted: a run that would fail after
minutes of transfer because of it fails at once, in one line."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import D2DError, UsageError

MIN_FREE = 1 << 20  # below this the directory is as good as full


def check_spool_dir(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"--spool-dir {path}: no such directory")
    if not path.is_dir():
        raise UsageError(f"--spool-dir {path}: not a directory")
    try:
        stat = os.statvfs(path)
    except OSError as exc:
        raise D2DError(f"--spool-dir {path}: {exc.strerror}") from exc
    if stat.f_flag & os.ST_RDONLY:
        raise D2DError(f"--spool-dir {path}: read-only file system")
    if stat.f_bavail * stat.f_frsize < MIN_FREE:
        raise D2DError(f"--spool-dir {path}: the file system is full ({stat.f_bavail * stat.f_frsize} bytes free)")
    try:
        # What the run will do there (permissions, and root on a read-only bind mount).
        with tempfile.TemporaryDirectory(prefix="d2d-check-", dir=path):
            pass
    except OSError as exc:
        cause = "the file system is full" if exc.errno == errno.ENOSPC else exc.strerror
        raise D2DError(f"--spool-dir {path}: cannot create files there ({cause})") from exc
