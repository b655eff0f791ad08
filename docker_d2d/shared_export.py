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
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from .errors import Cancelled
from .model import Platform

CHUNK = 1 << 20


class Exporter(Protocol):
    def save(
        self, names: Sequence[str], platform: Platform | None = None
    ) -> AbstractContextManager[Iterator[bytes]]: ...


class SharedExport:
    def __init__(
        self, source: Exporter, ids: Sequence[str], spool_dir: Path | None, platform: Platform | None = None
    ) -> None:
        self.ids = list(ids)
        self.platform = platform
        self._source = source
        fd, name = tempfile.mkstemp(prefix="d2d-export-", dir=spool_dir)
        os.close(fd)
        self._path = Path(name)
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._write, name="d2d-export", daemon=True)

    def __enter__(self) -> SharedExport:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
        self._thread.join(timeout=10)
        self._path.unlink(missing_ok=True)

    def cancel(self) -> None:
        """Stop the export; every reader still reading raises Cancelled."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def size(self) -> int:
        """Bytes read from the source so far."""
        with self._cond:
            return self._size

    def _write(self) -> None:
        try:
            with self._source.save(self.ids, self.platform) as chunks, open(self._path, "wb", buffering=0) as out:
                for chunk in chunks:
                    out.write(chunk)
                    with self._cond:
                        if self._closed:
                            return
                        self._size += len(chunk)
                        self._cond.notify_all()
        except BaseException as exc:  # handed to every reader
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    @contextmanager
    def reader(self) -> Iterator[Iterator[bytes]]:
        """The whole export, from its first byte, as it arrives."""
        with open(self._path, "rb", buffering=0) as f:
            yield self._follow(f.fileno())

    def _follow(self, fd: int) -> Iterator[bytes]:
        offset = 0
        while True:
            with self._cond:
                while offset >= self._size and not self._done and not self._closed:
                    self._cond.wait()
                if self._closed and not self._done:
                    raise Cancelled()
                available, done, error = self._size, self._done, self._error
            if offset >= available:
                if error is not None:
                    raise error
                if done:
                    return
            while offset < available:
                chunk = os.pread(fd, min(CHUNK, available - offset), offset)
                offset += len(chunk)
                yield chunk
