"""Per layer of the source: leave it out, send it, spool it to learn which it is, or hold it back.

A layer whose identity is known (its name or its source tells) is decided at once; one that is
not is sent straight through when nothing still to come may be left out, else spooled to a
private temp file to learn its digest first. A sent layer is hashed as it passes and must be
what its source claimed; a zstd blob goes out inflated to a destination that cannot take zstd.
With checkpoints (spec.checkpoint), a layer that comes before a layer below it waits in a spool
until that one is out, so that every archive can end with partial images (checkpoint.py).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .digests import human_size, short
from .entries import Layer, LayerRecord, OutFile, Progress, RewriteResult
from .errors import ArchiveError
from .hasher import DiffHasher, peek, read_file
from .oci import MT_LAYER, MT_ZSTD, media_type
from .spec import OutputFormat, StreamSpec
from .spooling import spooling

if TYPE_CHECKING:  # for the type checker only: this module also runs on the host's Python 3.8
    from .entries import Output

    Sending = Generator[OutFile, None, LayerRecord]


class Filter:
    def __init__(
        self,
        spec: StreamSpec,
        progress: Progress,
        result: RewriteResult,
        path: Callable[[str, str], str],
        spool_dir: Path | None,
    ) -> None:
        self.spec = spec
        self.progress = progress
        self.result = result
        self.path = path  # the output's name for a blob: (digest, source name) -> entry name
        self.spool_dir = spool_dir
        self.layers: dict[str, LayerRecord] = {}  # by source name
        self.by_diff: dict[str, LayerRecord] = {}  # layers the source has passed, sent or not
        self.sent_by_digest: dict[str, str] = {}  # blob digest -> output name: each blob goes once
        self._remaining = Counter(spec.unnamed)
        # Checkpoints: layers sent in any archive, and in the current one.
        self.emitted: set[str] = set()
        self.segment: set[str] = set()
        self.segment_bytes = 0
        self.held = HeldBack(spec, self.emitted, result, spool_dir)

    def expect(self, diff_ids: tuple[str, ...]) -> None:
        """Layers the source will bring under names that do not tell which they are."""
        seen = {lay.diff_id for lay in self.layers.values()}
        self._remaining.update(d for d in diff_ids if d not in seen)

    # --- deciding ------------------------------------------------------------------------------

    def layer(self, layer: Layer) -> Sending:
        """Decide about one layer of the source; yields what goes out (at most one file)."""
        if layer.diff_id is not None:
            return (yield from self._layer(layer, layer.diff_id, layer.digest, layer.body))
        if self.spec.keep is not None or self.spec.checkpoint is not None:
            # Other platforms' blobs are in the export too, or each layer must go out after the
            # ones below it: learn which layer it is first.
            return (yield from self._spooled(layer))
        candidates = {d for d, n in self._remaining.items() if n > 0}
        may_skip = candidates & self.spec.skip
        if len(candidates) == 1 and not layer.in_memory:
            diff = candidates.pop()
            return (yield from self._layer(layer, diff, layer.digest or diff, layer.body))
        if not may_skip and not layer.in_memory and (layer.digest or self.spec.output is OutputFormat.LEGACY):
            # Nothing still to come may be left out: send it now, learn which layer it is from manifest.json.
            return (yield from self._layer(layer, None, layer.digest, layer.body))
        return (yield from self._spooled(layer))

    def _spooled(self, layer: Layer) -> Sending:
        hasher = DiffHasher(self.spec.max_layer)
        what = "a layer of " + human_size(layer.size)
        with _spool_file(self.spool_dir, "d2d-spool-", what) as spool:
            for chunk in layer.body:
                hasher.update(chunk)
                spool.write(chunk)
            hasher.finish()
            self.result.spooled_bytes += layer.size
            _check_claims(layer, hasher)
            spool.seek(0)
            record = yield from self._layer(
                layer, self._diff_of(hasher, None), hasher.raw_digest(), read_file(spool), hashed=hasher
            )
            record.uncompressed_size = hasher.uncompressed
            return record

    def _layer(
        self,
        layer: Layer,
        diff: str | None,
        blob: str | None,
        body: Iterator[memoryview],
        hashed: DiffHasher | None = None,
    ) -> Sending:
        """Send a layer or leave it out. A sent layer is hashed as its bytes pass (unless it was,
        on its way into the spool): its content decides its diff id, which `resolve` checks
        against the config, and a digest its source claimed must match before the next entry."""
        record = LayerRecord(layer.name, layer.size, diff, blob)
        self.layers[layer.name] = record
        # A layer that does not travel is not read here: its source skips what was left unread
        # (an export's reader reads past it; a store's is never opened).
        if self.spec.keep is not None and diff is not None and diff not in self.spec.keep:
            return record  # another platform's layer
        if diff is not None:
            # Each layer's content comes once in an export; later occurrences are links.
            self._remaining[diff] = 0
        key = diff or blob or layer.name
        if (diff is not None and diff in self.spec.skip) or (blob is not None and blob in self.sent_by_digest):
            record.out_name = self.sent_by_digest.get(blob or "")
            if hashed is None and diff is not None and blob not in (None, diff):
                # Named by a source that holds it compressed (a store, stores/), never read: how big
                # its tar is, nobody here knows (the containerd store's repair asks the destination).
                record.absent = True
            if diff is not None and record.out_name is None:
                self.by_diff.setdefault(diff, record)
            if record.out_name is None:
                self.result.layers_skipped += 1
                self.result.bytes_skipped += layer.size
                self.progress.layer_skipped(key, layer.size)
            return record
        if diff is not None and self.held.due(diff):
            return self.held.hold(record, layer, body, hashed)
        if self.spec.decompress_zstd:
            if hashed is not None:
                zstd = hashed.media_type == MT_ZSTD
            else:
                head, body = peek(body)
                zstd = media_type(head) == MT_ZSTD
            if zstd:
                return (yield from self._inflated(layer, record, key, body))
        record.out_name = self.path(blob or diff or "", layer.name)
        if blob:
            self.sent_by_digest[blob] = record.out_name
        self.progress.layer_started(key, layer.size)
        yield from _whole(
            OutFile(record.out_name, layer.size, self._sent(layer, record, key, body, hashed), sniff=True)
        )
        return record

    def _sent(
        self, layer: Layer, record: LayerRecord, key: str, body: Iterator[memoryview], hashed: DiffHasher | None
    ) -> Iterator[memoryview]:
        """A sent layer's bytes, hashed and counted as they pass."""
        hasher = hashed or DiffHasher(self.spec.limits.get(record.diff_id or "", self.spec.max_layer))
        for chunk in body:
            if hashed is None:
                hasher.update(chunk)
            yield chunk
            self.progress.layer_advanced(key, len(chunk))
        if hashed is None:
            hasher.finish()
            _check_claims(layer, hasher)
        record.diff_id = self._diff_of(hasher, record.diff_id)
        record.media_type = (hasher.media_type or MT_LAYER) if record.diff_id != hasher.raw_digest() else MT_LAYER
        record.uncompressed_size = hasher.uncompressed
        self._remaining[record.diff_id] = 0
        self._finished(key, record, record.diff_id, layer.size)

    def _inflated(self, layer: Layer, record: LayerRecord, key: str, body: Iterator[memoryview]) -> Sending:
        """Send a zstd blob as the plain tar it inflates to, for a destination that cannot take zstd.
        A tar header names its entry's size before the body, so the blob is inflated into a spool
        first (a spooled blob, once more from its spool: only layers that travel are inflated)."""
        what = f"a zstd layer of {human_size(layer.size)} inflated"
        with _spool_file(self.spool_dir, "d2d-inflate-", what) as plain:
            hasher = DiffHasher(self.spec.limits.get(record.diff_id or "", self.spec.max_layer), inflate_to=plain)
            for chunk in body:
                hasher.update(chunk)
            hasher.finish()
            _check_claims(layer, hasher)
            diff, size = hasher.diff_digest(), hasher.uncompressed
            self.result.spooled_bytes += size
            record.diff_id = record.blob_digest = diff
            record.media_type, record.size, record.uncompressed_size = MT_LAYER, size, size
            record.out_name = self.path(diff, layer.name)
            # Either digest names this content from here on: a later copy of it is not sent again.
            self.sent_by_digest[hasher.raw_digest()] = record.out_name
            self.sent_by_digest.setdefault(diff, record.out_name)
            self._remaining[diff] = 0
            self.progress.layer_started(key, size)
            plain.seek(0)
            yield from _whole(OutFile(record.out_name, size, self._replayed(plain, key, record, diff, size)))
        return record

    def _replayed(self, plain: IO[bytes], key: str, record: LayerRecord, diff: str, size: int) -> Iterator[memoryview]:
        for chunk in read_file(plain):
            yield chunk
            self.progress.layer_advanced(key, len(chunk))
        self._finished(key, record, diff, size)

    def _finished(self, key: str, record: LayerRecord, diff: str, size: int) -> None:
        """A layer went out whole: counted, and known to this archive's checkpoint."""
        self.progress.layer_finished(key)
        self.result.layers_sent += 1
        self.result.bytes_sent += size
        self.by_diff[diff] = record
        self.emitted.add(diff)
        self.segment.add(diff)
        self.segment_bytes += size

    def _diff_of(self, hasher: DiffHasher, expected: str | None) -> str:
        """A layer's diff id from its content. A plain layer whose first bytes merely look like
        gzip or zstd is known by its raw digest being the one expected (or still to come)."""
        raw = hasher.raw_digest()
        if raw == expected or (expected is None and self._remaining[raw] > 0):
            return raw
        return hasher.diff_digest()

    # --- checkpoints ------------------------------------------------------------------------------

    def release(self, cut: Callable[[], Iterator[Output]]) -> Iterator[Output]:
        """Send the held-back layers whose lower layers are out now (all of them once the source
        ended), with `cut()` after each (a checkpoint where one is due)."""
        for layer, held, spool, hasher in self.held.ready():
            with spool:
                record = yield from self._layer(layer, held.diff_id, held.blob_digest, read_file(spool), hashed=hasher)
            record.uncompressed_size = hasher.uncompressed
            if not self.held.flushing:
                yield from cut()

    def placed(self, diff: str) -> bool:
        """Whether a partial image can name this layer now: sent in this or an earlier archive, or
        held by the destination under a name known for sure (a legacy archive names it by its
        diff id and the engine looks at its chain; an OCI manifest needs its size and digest)."""
        if diff in self.emitted:
            return True
        if diff not in self.spec.skip:
            return False
        if self.spec.output is OutputFormat.LEGACY or diff in self.spec.left_out:
            return True
        seen = self.by_diff.get(diff)
        return seen is not None and not (self.spec.prefer_source and seen.blob_digest not in (None, diff))

    # --- at the end: the layers manifest.json names ----------------------------------------------

    def resolve(self, name: str, path: str, diff: str) -> LayerRecord:
        """The record of the layer entry `name` (`path`, links followed) that the config says is `diff`."""
        record = self.layers.get(name)
        if record is None:
            record = self._absent(path, diff)
        if record.diff_id is None:
            record.diff_id = diff
        elif record.diff_id != diff:
            raise ArchiveError(
                f"the export's layer file {path} holds {short(record.diff_id)}, its config says {short(diff)} "
                "(altered on the way?)"
            )
        if record.out_name is None and record.blob_digest in self.sent_by_digest:
            record.out_name = self.sent_by_digest[record.blob_digest]
        return record

    def _absent(self, path: str, diff: str) -> LayerRecord:
        """A layer file the export does not carry. The containerd store's export leaves out
        non-distributable blobs (moby daemon/containerd/image_exporter.go) and blobs a pull skipped.
        A layer the destination holds needs none: the config's diff id names it in the output."""
        if diff not in self.spec.skip:
            desc = self.result.source_layers.get(diff) or {}
            kind = str(desc.get("mediaType", ""))
            if "nondistributable" in kind or "foreign" in kind:
                raise ArchiveError(
                    f"the export leaves out layer {short(diff)}, as it does every non-distributable one "
                    f"({kind}); copy to a destination that holds it already (load its base there first)"
                )
            raise ArchiveError(f"the export lacks the layer file {path}")
        record = LayerRecord(path, 0, diff, None, absent=True)
        self.layers[path] = record
        self.result.layers_skipped += 1
        self.progress.layer_skipped(diff, 0)
        return record


class HeldBack:
    """Layers that came before a layer below them was sent, each in a spool until it is: with
    checkpoints an archive may only carry layers that partial images can hold, so each goes out
    after the layers below it (in some image)."""

    def __init__(self, spec: StreamSpec, emitted: set[str], result: RewriteResult, spool_dir: Path | None) -> None:
        self.spec = spec
        self.emitted = emitted  # layers sent so far (the filter's)
        self.result = result
        self.spool_dir = spool_dir
        self._held: dict[str, tuple[Layer, LayerRecord, IO[bytes], DiffHasher]] = {}
        self.flushing = False  # the source ended: whatever is held back goes now

    def due(self, diff: str) -> bool:
        """Whether a layer must wait."""
        return self.spec.checkpoint is not None and not self.flushing and not self._ready(diff)

    def _ready(self, diff: str) -> bool:
        chains = [chain for chain in self.spec.chains.values() if diff in chain]
        return not chains or any(
            all(d in self.spec.skip or d in self.emitted for d in chain[: chain.index(diff)]) for chain in chains
        )

    def hold(
        self, record: LayerRecord, layer: Layer, body: Iterator[memoryview], hashed: DiffHasher | None
    ) -> LayerRecord:
        # Closed when the layer goes out (ready) or the stream ends (close).
        what = f"a layer of {human_size(layer.size)} held back until the layers below it are out"
        with _spooling(self.spool_dir, what):
            spool = tempfile.TemporaryFile(dir=self.spool_dir, prefix="d2d-held-")  # noqa: SIM115
            hasher = hashed or DiffHasher(self.spec.limits.get(str(record.diff_id), self.spec.max_layer))
            try:
                for chunk in body:
                    if hashed is None:
                        hasher.update(chunk)
                    spool.write(chunk)
                if hashed is None:
                    hasher.finish()
                    _check_claims(layer, hasher)
                spool.seek(0)
            except BaseException:
                spool.close()
                raise
        self.result.spooled_bytes += layer.size
        self._held[str(record.diff_id)] = (layer, record, spool, hasher)
        return record

    def ready(self) -> Iterator[tuple[Layer, LayerRecord, IO[bytes], DiffHasher]]:
        """The held layers that may go now, one by one (asked again after each: sending one may
        let others go)."""
        while True:
            ready = [d for d in self._held if self.flushing or self._ready(d)]
            if not ready:
                return
            yield self._held.pop(ready[0])

    def close(self) -> None:
        for _, _, spool, _ in self._held.values():
            spool.close()


def _spooling(spool_dir: Path | None, what: str) -> AbstractContextManager[None]:
    # The agent (formats/agent.py) spools into the source host's temp dir; a local run always
    # gives the rewrite a directory of its own.
    return spooling(spool_dir, what, local=spool_dir is not None)


@contextmanager
def _spool_file(spool_dir: Path | None, prefix: str, what: str) -> Iterator[IO[bytes]]:
    """A private temp file, whose writes that find the file system full say so in one error."""
    with _spooling(spool_dir, what), tempfile.TemporaryFile(dir=spool_dir, prefix=prefix) as f:
        yield f


def _whole(out: OutFile) -> Iterator[OutFile]:
    """`out`, whose body is then read to its end if its reader left some (its bookkeeping runs there)."""
    yield out
    for _ in out.body:
        pass


def _check_claims(layer: Layer, hasher: DiffHasher) -> None:
    blob, diff = layer.claimed
    if (blob and hasher.raw_digest() != blob) or (diff and diff not in (hasher.raw_digest(), hasher.diff_digest())):
        raise ArchiveError(f"the export's layer {layer.name} does not match its digest (altered on the way?)")
