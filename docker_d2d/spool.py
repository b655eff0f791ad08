"""The spool directory: checked before any engine is contacted (a run that would fail after
minutes of transfer because of it fails at once, in one line), and the private directories a run
spools into there, which a later run removes when the run that made them died (SIGKILL, power)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .archive import PRIVATE_DIR
from .errors import D2DError, UsageError

# Held (flock) by the run that owns a private directory for as long as it lives: the kernel
# releases it however the run ends, so a lock that can be taken means its run is gone.
_OWNER = ".owner"
_NEW = "d2d-new-"  # a private directory before its owner holds it: never swept

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


@contextlib.contextmanager
def private_dir(base: Path | None) -> Iterator[Path]:
    """A directory of this run's own in the spool directory (`base`, or the temp dir), removed at
    the end; the leftovers of runs that died are removed first. It gets its name (PRIVATE_DIR...)
    only once its owner lock is held, so that a sweeping run never takes one being made."""
    base = base if base is not None else Path(tempfile.gettempdir())
    sweep(base)
    made = Path(tempfile.mkdtemp(prefix=_NEW, dir=base))
    fd = -1
    try:
        fd = os.open(made / _OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = base / (PRIVATE_DIR + made.name[len(_NEW) :])
        os.rename(made, path)
        made = path
        yield path
    finally:
        shutil.rmtree(made, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def sweep(base: Path) -> None:
    """Remove the private directories in `base` of this user's runs that are gone (their owner
    lock is free). Best effort: whatever cannot be read or removed stays."""
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PRIVATE_DIR)]
    except OSError:
        return
    uid = os.getuid()
    for path in candidates:
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            fd = os.open(path / _OWNER, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # not ours to judge: no owner lock (another tool's, or an older version's)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its run is alive
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
