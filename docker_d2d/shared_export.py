"""One export of the source, read by several destinations at their own pace.

A thread writes the source's `docker save` stream into a private spool file; each destination
reads that file from the start, following the writer as it grows. The source is read once, a fast
destination is never held back by a slow one (the file is the buffer, on disk, not in memory), and
a destination can start loading before the export has finished. An error in the export reaches
every reader.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

from .archive import spooling
from .errors import Cancelled
from .model import Platform, human_size
from .spool import private_dir

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


class Exporter(Protocol):
    def save(
        self, names: Sequence[str], platform: Platform | None = None
    ) -> AbstractContextManager[Iterator[bytes]]: ...


class SharedExport:
    def __init__(
        self,
        source: Exporter,
        ids: Sequence[str],
        spool_dir: Path | None,
        platform: Platform | None = None,
        what: str = "the source's export",
    ) -> None:
        self.ids = list(ids)
        self.platform = platform
        self.what = what
        self._source = source
        with ExitStack() as stack:
            self._spool = Spool(stack.enter_context(private_dir(spool_dir)), "d2d-export-", what)
            self._dir = stack.pop_all()  # closed in __exit__
        self._thread = threading.Thread(target=self._write, name="d2d-export", daemon=True)

    def __enter__(self) -> SharedExport:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
        self._thread.join(timeout=10)
        self._spool.remove()
        self._dir.close()

    def cancel(self) -> None:
        """Stop the export; every reader still reading raises Cancelled."""
        self._spool.cancel()

    @property
    def size(self) -> int:
        """Bytes read from the source so far."""
        return self._spool.size

    def _write(self) -> None:
        error: BaseException | None = None
        try:
            with self._source.save(self.ids, self.platform) as chunks:
                for chunk in chunks:
                    self._spool.write(chunk)
        except BaseException as exc:  # handed to every reader (Cancelled too: they stop either way)
            error = exc
        finally:
            self._spool.end(error)

    @contextmanager
    def reader(self) -> Iterator[Iterator[bytes]]:
        """The whole export, from its first byte, as it arrives."""
        yield self._spool.follow()
