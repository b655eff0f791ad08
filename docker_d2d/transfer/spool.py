"""The spool directory: checked before any engine is contacted (a run that would fail after
minutes of transfer because of it fails at once, in one line); the private directories a run
spools into there, which a later run removes when the run that made them died (SIGKILL, power);
and a spool file several read while one writes it (shared exports and rewrites)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import Cancelled, D2DError, UsageError
from ..formats.digests import human_size
from ..formats.spooling import PRIVATE_DIR, spooling

MIN_FREE = 1 << 20  # below this the directory is as good as full
# Held (flock) by the run that owns a private directory for as long as it lives: the kernel
# releases it however the run ends, so a lock that can be taken means its run is gone.
_OWNER = ".owner"
# A private directory before its owner holds it. A run killed right then leaves one: swept once
# its owner file is missing for HALF_MADE seconds (no run takes that long between the two steps)
# or can be locked; a maker that finds its directory swept meanwhile makes another.
_NEW = "d2d-new-"
HALF_MADE = 1.0


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
    made, fd = _made(base)
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)
        os.close(fd)


def _made(base: Path) -> tuple[Path, int]:
    """A private directory, named once its owner lock is held; and that lock."""
    for _ in range(8):
        made = Path(tempfile.mkdtemp(prefix=_NEW, dir=base))
        fd = -1
        try:
            fd = os.open(made / _OWNER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = base / (PRIVATE_DIR + made.name[len(_NEW) :])
            os.rename(made, path)
            return path, fd
        except FileNotFoundError:  # swept while half made (see _NEW): make another
            if fd >= 0:
                os.close(fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            shutil.rmtree(made, ignore_errors=True)
            raise
    raise D2DError(f"cannot make a private directory in {base}: it keeps disappearing", side="local")


def sweep(base: Path) -> None:
    """Remove the private directories in `base` of this user's runs that are gone (their owner
    lock is free). Best effort: whatever cannot be read or removed stays."""
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith((PRIVATE_DIR, _NEW))]
    except OSError:
        return
    uid = os.getuid()
    for path in candidates:
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            fd = os.open(path / _OWNER, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            if path.name.startswith(_NEW) and time.time() - st.st_mtime > HALF_MADE:
                shutil.rmtree(path, ignore_errors=True)  # its run died before it held the lock
            continue  # else not ours to judge: no owner lock (another tool's, or an older version's)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its run is alive
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


CHUNK = 1 << 20


class Spool:
    """A private file one thread appends to while others read it from the start, each at its own
    pace. The writer may also leave marks: things that happened after so many bytes, which a
    reader meets in order as it passes them (see shared_rewrite.py). It lives in a private
    directory of the run's (`directory`, gone with `remove`), where its writer may keep other
    files of its own."""

    def __init__(self, spool_dir: Path | None, prefix: str, what: str) -> None:
        self.what = what  # what it holds, for the one line a full spool directory gives
        self._dir = contextlib.ExitStack()
        try:
            self.directory = self._dir.enter_context(private_dir(spool_dir))
            with spooling(self.directory, what):
                fd, name = tempfile.mkstemp(prefix=prefix, dir=self.directory)
        except BaseException:
            self._dir.close()
            raise
        self._out = os.fdopen(fd, "wb", buffering=0)
        self.path = Path(name)
        self.size = 0
        self.marks: list[tuple[int, object]] = []  # (bytes written before it, what)
        self._done = False
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes | memoryview) -> None:
        """Append; raises Cancelled once the spool is cancelled."""
        view = memoryview(data)
        with spooling(self.path.parent, f"{self.what} ({human_size(self.size)} written)"):
            while view:  # an unbuffered write may take part of it (a file system filling up)
                view = view[self._out.write(view) or 0 :]
        with self._cond:
            if self._closed:
                raise Cancelled()
            self.size += len(data)
            self._cond.notify_all()

    def mark(self, what: object) -> None:
        with self._cond:
            self.marks.append((self.size, what))
            self._cond.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        """The writer is done; `error`, if any, is raised to every reader at the end of the data."""
        self._out.close()
        with self._cond:
            self._error = error
            self._done = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Every reader still waiting, and the writer at its next write, raise Cancelled."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self._dir.close()

    def wait(self, offset: int, marks_seen: int = 0) -> tuple[int, int, bool]:
        """Wait until there is more than `offset` bytes or `marks_seen` marks; return how many
        there are, and whether the writer is done. With nothing more to come: raise the writer's
        error, if any."""
        with self._cond:
            while offset >= self.size and marks_seen >= len(self.marks) and not self._done and not self._closed:
                self._cond.wait()
            if self._closed:
                raise Cancelled()
            size, marks, done, error = self.size, len(self.marks), self._done, self._error
        if offset >= size and marks_seen >= marks and error is not None:
            raise error
        return size, marks, done

    def read(self, fd: int, offset: int, end: int) -> Iterator[bytes]:
        """Bytes [offset, end) of the file, opened by the reader as `fd`."""
        while offset < end:
            if self._closed:  # what is written may be read on, but the readers are stopping
                raise Cancelled()
            chunk = os.pread(fd, min(CHUNK, end - offset), offset)
            if not chunk:
                raise OSError(f"spool file {self.path} was cut short")
            offset += len(chunk)
            yield chunk

    def follow(self) -> Iterator[bytes]:
        """The whole file, from its first byte, as it arrives."""
        with open(self.path, "rb", buffering=0) as f:
            offset = 0
            while True:
                size, _, _ = self.wait(offset)
                if offset >= size:
                    return
                yield from self.read(f.fileno(), offset, size)
                offset = size
