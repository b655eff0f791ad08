"""One rewrite and one compression for every destination of a fleet that would be sent the same
bytes.

Destinations of one kind that lack the same layers get the same thin archive, compressed the same
way: rewriting and compressing it once per destination spends the client's CPU, on a fleet the
scarcest thing there is, on identical work. So a destination asks for its stream by what decides
its bytes (the stream's spec and the compression); the first to ask starts a rewrite of the shared
export into a spool file, and every destination asking the same reads that file at its own pace.

What the rewrite reports (layer progress, the barrier before image entries, the end of each
archive) is kept as marks at the byte offset where it happened, and replayed to each reader as it
passes that offset, so each destination's progress follows its own link.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..endpoint import Endpoint
from ..errors import StoreError
from ..formats.entries import BARRIER, Cut, Entry, Progress, RewriteResult
from ..formats.readers.export import ExportReader
from ..formats.rewrite import Rewrite, in_turn
from ..formats.spec import StreamSpec, spec_to_json
from ..formats.stores.common import Store
from ..formats.stores.reading import Opened, Refused, entries
from ..model import EngineInfo
from .compress import Compression, compressed
from .loading import Outgoing, WireArchive
from .shared_export import SharedExport
from .sources import Send, send_outgoing
from .spool import Spool
from .stores import StoreSource

if TYPE_CHECKING:
    from ..formats.entries import Buffer


@dataclass(frozen=True)
class _End:
    """An archive ends here; with a cut, another follows."""

    cut: Cut | None


@dataclass(frozen=True)
class _Progress:
    method: str  # of archive.Progress
    args: tuple[str] | tuple[str, int]


class _Marking:
    """The rewrite's progress, kept as marks in its spool."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def layer_skipped(self, key: str, size: int) -> None:
        self.spool.mark(_Progress("layer_skipped", (key, size)))

    def layer_started(self, key: str, size: int) -> None:
        self.spool.mark(_Progress("layer_started", (key, size)))

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self.spool.mark(_Progress("layer_advanced", (key, nbytes)))

    def layer_finished(self, key: str) -> None:
        self.spool.mark(_Progress("layer_finished", (key,)))


class _Rewrite:
    """The shared export (or the source's store), rewritten as `spec` says and compressed, into a
    spool, on a thread."""

    def __init__(
        self,
        entries: Callable[[ExitStack], Iterable[Entry]],
        spec: StreamSpec,
        how: Compression,
        spool_dir: Path | None,
        what: str,
    ) -> None:
        self.spec = spec
        self.spool = Spool(spool_dir, "d2d-rewrite-", f"the rewrite of {what}")
        self._stack = ExitStack()
        source = entries(self._stack)
        # What the store gave and refused, for each destination that reads this stream to be told.
        self.opened = (source.opened, source.refused) if isinstance(source, _FromStore) else None
        # The layers it spools live beside the rewrite, until close(): readers follow the rewrite.
        self.rewriter = Rewrite(source, spec, _Marking(self.spool), self.spool.directory)
        self._how = how
        self._thread = threading.Thread(target=self._write, name="d2d-rewrite", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        error: BaseException | None = None
        try:
            for archive in self.rewriter.archives():
                archive.barrier = lambda: self.spool.mark(BARRIER)
                for chunk in compressed(archive, self._how, lambda: self.rewriter.emitting_compressed):
                    self.spool.write(chunk)
                self.spool.mark(_End(archive.cut))
        except BaseException as exc:  # handed to every reader where it happened in the stream (Cancelled too)
            error = exc
        finally:
            self.spool.end(error)
            self._stack.close()

    def close(self) -> None:
        self.spool.cancel()
        self._thread.join(timeout=10)
        self.spool.remove()


class _Replayed:
    """One destination's reading of a shared rewrite (loading.Outgoing)."""

    def __init__(self, rewrite: _Rewrite, progress: Progress) -> None:
        self.rewrite = rewrite
        self.progress = progress
        self.offset = 0  # bytes read, and marks met, so far: the next archive starts there
        self.marks_seen = 0

    @property
    def checkpointed(self) -> bool:
        return self.rewrite.spec.checkpoint is not None

    @property
    def result(self) -> RewriteResult:
        return self.rewrite.rewriter.result

    def archives(self) -> Iterator[WireArchive]:
        return in_turn(lambda: _ReplayedArchive(self))


class _ReplayedArchive:
    def __init__(self, reading: _Replayed) -> None:
        self._reading = reading
        self.cut: Cut | None = None
        self.ended = False
        self.barrier: Callable[[], None] = lambda: None

    def __iter__(self) -> Iterator[Buffer]:
        reading = self._reading
        spool = reading.rewrite.spool
        with open(spool.path, "rb", buffering=0) as f:
            while True:
                size, marks, done = spool.wait(reading.offset, reading.marks_seen)
                # What happened up to here, before the bytes that came after it.
                while reading.marks_seen < marks and spool.marks[reading.marks_seen][0] <= reading.offset:
                    what = spool.marks[reading.marks_seen][1]
                    reading.marks_seen += 1
                    if isinstance(what, _End):
                        self.cut = what.cut
                        self.ended = True
                        return
                    if what is BARRIER:
                        self.barrier()
                    elif isinstance(what, _Progress):
                        getattr(reading.progress, what.method)(*what.args)
                until = spool.marks[reading.marks_seen][0] if reading.marks_seen < marks else size
                if until <= reading.offset and reading.marks_seen >= marks and done:
                    spool.wait(reading.offset, reading.marks_seen)  # raises the rewrite's error
                    raise RuntimeError("the shared rewrite ended without the end of its archive")
                for chunk in spool.read(f.fileno(), reading.offset, until):
                    yield chunk
                    reading.offset += len(chunk)


@dataclass
class _FromStore:
    """A stream's entries read from the store, with what it opened and refused."""

    opened: list[Opened]
    refused: list[Refused]
    source: Iterator[Entry]

    def __iter__(self) -> Iterator[Entry]:
        return self.source


class SharedSource:
    """The source as the destinations of a fleet see it: one export, and one rewrite per distinct
    stream, shared by every destination that asks for the same. With `store` (a source engine on
    this machine whose storage can be read), a stream reads the layers it sends from the store and
    the export is made only for images the store refuses (stores.py tells how it decides)."""

    def __init__(
        self, endpoint: Endpoint, info: EngineInfo | None, export: SharedExport, store: StoreSource | None = None
    ) -> None:
        self.endpoint = endpoint
        self.info = info
        self.export = export
        self.store = store
        self._rewrites: dict[str, _Rewrite] = {}
        self._lock = threading.Lock()
        self.streams = 0  # distinct streams rewritten for the destinations
        self._closed_store_bytes = 0

    @property
    def store_bytes(self) -> int:
        """Layer bytes the streams read from the store."""
        with self._lock:
            return self._closed_store_bytes + _store_bytes(self._rewrites)

    def send(self, job: Send) -> RewriteResult:
        store = self.store
        readable = store.readable(job) if store is not None else None
        if store is not None and readable is not None:
            try:
                return self._send(job, "store", lambda stack: self._from_store(readable, job, stack))
            except StoreError as exc:
                store.mismatched(job, readable, exc)
        return self._send(job, "export", self._from_export(job.spec))

    def _send(self, job: Send, key: str, entries: Callable[[ExitStack], Iterable[Entry]]) -> RewriteResult:
        rewrite = self._rewrite(key, job.spec, job.result.compression, job.options.spool_dir, entries)
        if rewrite.opened is not None:
            opened, refused = rewrite.opened
            assert self.store is not None
            self.store.told(job, opened, refused)
        try:
            return send_outgoing(self, job, self._outgoing(rewrite, job.progress))
        finally:
            job.result.reading = {}

    def _from_export(self, spec: StreamSpec) -> Callable[[ExitStack], Iterable[Entry]]:
        def entries(stack: ExitStack) -> Iterable[Entry]:
            return ExportReader(stack.enter_context(self.export.reader()), spec)

        return entries

    def _from_store(self, store: Store, job: Send, stack: ExitStack) -> Iterable[Entry]:
        assert self.store is not None
        opened, refused = self.store.open(store, job)
        export = ExportReader(stack.enter_context(self.export.reader()), job.spec) if refused else None
        return _FromStore(opened, refused, entries(opened, export))

    @contextmanager
    def _outgoing(self, rewrite: _Rewrite, progress: Progress) -> Iterator[Outgoing]:
        yield _Replayed(rewrite, progress)

    def outgoing(self, spec: StreamSpec, how: Compression, progress: Progress, spool_dir: Path | None) -> Outgoing:
        """What a destination whose stream `spec` and `how` decide is sent, from the export."""
        return _Replayed(self._rewrite("export", spec, how, spool_dir, self._from_export(spec)), progress)

    def _rewrite(
        self,
        source: str,
        spec: StreamSpec,
        how: Compression,
        spool_dir: Path | None,
        entries: Callable[[ExitStack], Iterable[Entry]],
    ) -> _Rewrite:
        # where from, and every field, in a stable form
        key = source + json.dumps([spec_to_json(spec), how.value], sort_keys=True)
        with self._lock:
            rewrite = self._rewrites.get(key)
            if rewrite is None:
                rewrite = self._rewrites[key] = _Rewrite(entries, spec, how, spool_dir, self.export.what)
                self.streams += 1
        return rewrite

    def cancel(self) -> None:
        """Stop the export and every reader of every rewrite, even of what is written already."""
        self.export.cancel()
        with self._lock:
            for rewrite in self._rewrites.values():
                rewrite.spool.cancel()

    def close(self) -> None:
        with self._lock:
            self._closed_store_bytes += _store_bytes(self._rewrites)
            rewrites, self._rewrites = list(self._rewrites.values()), {}
        for rewrite in rewrites:
            rewrite.close()


def _store_bytes(rewrites: dict[str, _Rewrite]) -> int:
    return sum(r.rewriter.result.bytes_sent for key, r in rewrites.items() if key.startswith("store"))
