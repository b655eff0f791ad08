"""One export of the source, read by several destinations at their own pace.

A thread writes the source's `docker save` stream into a private spool file; each destination
reads that file from the start, following the writer as it grows. The source is read once, a fast
destination is never held back by a slow one (the file is the buffer, on disk, not in memory), and
a destination can start loading before the export has finished. An error in the export reaches
every reader.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..engine.protocol import Exporter
from ..model import Platform
from .spool import Spool


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
        self._spool = Spool(spool_dir, "d2d-export-", what)
        self._thread = threading.Thread(target=self._write, name="d2d-export", daemon=True)
        self._starting = threading.Lock()

    def __enter__(self) -> SharedExport:
        return self  # the export starts with its first reader: a fleet reading a store may need none

    def __exit__(self, *exc: object) -> None:
        self.cancel()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        self._spool.remove()

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
        with self._starting:
            if self._thread.ident is None:
                self._thread.start()
        yield self._spool.follow()
