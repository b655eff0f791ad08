"""The spool directory, checked before any engine is contacted (a run that would fail after
minutes of transfer because of it fails at once, in one line); and a spool file several read
while one writes it (shared exports and rewrites)."""

from __future__ import annotations

import errno
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import Cancelled, D2DError, UsageError
from ..formats.digests import human_size
from ..formats.spooling import spooling

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


CHUNK = 1 << 20


class Spool:
    """A private file one thread appends to while others read it from the start, each at its own
    pace. The writer may also leave marks: things that happened after so many bytes, which a
    reader meets in order as it passes them (see shared_rewrite.py)."""

    def __init__(self, spool_dir: Path | None, prefix: str, what: str) -> None:
        self.what = what  # what it holds, for the one line a full spool directory gives
        with spooling(spool_dir, what):
            fd, name = tempfile.mkstemp(prefix=prefix, dir=spool_dir)
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
