"""The one-pass rewrite: a source's entries in, a thin archive in the format the destination loads out.

    entries (readers/: a `docker save` stream; stores/: an engine's own storage)
      -> the filter (filter.py: leave out, send, spool, hold back)
      -> the writer (writers.py: legacy manifest.json or OCI index.json)
      -> tar bytes, one archive, or a series of them with checkpoints (checkpoint.py)

A layer body is never held in memory: it passes from the source to the output as it comes, or
through a spool file when it must be read before deciding. Every check (digests against names
and configs, configs against what the source promised, sizes against inspect) happens before
the archive that would complete the image is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .checkpoint import cut
from .digests import sha256, short
from .entries import (
    BARRIER,
    END,
    Barrier,
    Cut,
    Document,
    Entry,
    Expect,
    Link,
    NoProgress,
    OutFile,
    Progress,
    RewriteResult,
)
from .errors import ArchiveError
from .filter import Filter
from .readers.export import ExportReader
from .readers.oci import collect_aliases
from .spec import StreamSpec
from .writers import TarOut, writer_for

if TYPE_CHECKING:
    from .entries import Buffer, Item, Output

# Links inside an export (Docker < 25 writes a repeated layer as a symlink to the first) are
# followed this many hops at most.
MAX_LINK_HOPS = 8


class Archive:
    """One archive of `Rewrite.archives()`: iterate it for its bytes; then `cut` tells whether it
    ended at a checkpoint (and with which partial images) or was the last. `barrier` is called
    before its image entries: loads of earlier archives may still be going on until then."""

    def __init__(self, items: Iterator[Item]) -> None:
        self._items = items
        self.cut: Cut | None = None
        self.ended = False
        self.barrier: Callable[[], None] = lambda: None

    def __iter__(self) -> Iterator[Buffer]:
        for item in self._items:
            if isinstance(item, Cut):
                self.cut = item
                break
            if isinstance(item, Barrier):
                self.barrier()
                continue
            yield item
        self.ended = True


class _Turn(Protocol):
    ended: bool
    cut: Cut | None


T = TypeVar("T", bound=_Turn)


def in_turn(next_archive: Callable[[], T]) -> Iterator[T]:
    """Archives of a series, each once the one before was read to its end; the last has no cut."""
    while True:
        archive = next_archive()
        yield archive
        if not archive.ended:
            raise RuntimeError("an archive was not read to its end")
        if archive.cut is None:
            return


class Rewrite:
    """The rewrite of a source of entries. Use `stream()` as the load request's body (or
    `archives()` with checkpoints, or `files()` for the output file by file); `result` is
    complete once it is exhausted."""

    def __init__(
        self,
        entries: Iterable[Entry],
        spec: StreamSpec,
        progress: Progress | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self.spec = spec
        self.progress = progress or NoProgress()
        self.spool_dir = spool_dir
        self.result = RewriteResult()
        self._entries = entries
        self.writer = writer_for(spec, self.result)
        self.filter = Filter(spec, self.progress, self.result, self.writer.layer_path, spool_dir)
        self._tar = TarOut()
        self._documents: dict[str, bytes] = {}
        self._links: dict[str, str] = {}  # link entry name -> the path it points to

    @property
    def emitting_compressed(self) -> bool:
        """True while the chunks being yielded belong to an already compressed blob, so that wire
        compression can store them instead of compressing them again."""
        return self._tar.emitting_compressed

    def stream(self) -> Iterator[Buffer]:
        """The whole output as one archive (spec.checkpoint must be None)."""
        for item in self._tar.items(self.files()):
            assert not isinstance(item, Cut), "a checkpointed stream is read with archives()"
            if not isinstance(item, Barrier):
                yield item

    def archives(self) -> Iterator[Archive]:
        """The output as a series of archives, each loaded on its own: all but the last end at a
        checkpoint with partial images. Read each archive to its end before asking for the next."""
        items = self._tar.items(self.files())
        return in_turn(lambda: Archive(items))

    def files(self) -> Iterator[Output]:
        """The output file by file, with the markers between archives."""
        try:
            for entry in self._entries:
                if isinstance(entry, Link):
                    self._links[entry.name] = entry.target
                    continue
                if isinstance(entry, Expect):
                    self.filter.expect(entry.diff_ids)
                    continue
                if isinstance(entry, Document):
                    self._documents[entry.name] = entry.data
                else:
                    yield from self.filter.layer(entry)
                if self.spec.checkpoint is not None:
                    yield from self._cut()
                    yield from self.filter.release(self._cut)
            self.filter.held.flushing = True
            yield from self.filter.release(self._cut)
            yield BARRIER
            yield from self._finish()
            yield END
        finally:
            self.filter.held.close()

    def _cut(self) -> Iterator[Output]:
        return cut(self.spec, self.filter, self.writer, self.result)

    # --- the end: the images manifest.json lists ----------------------------------------------

    def _finish(self) -> Iterator[OutFile]:
        manifest = _manifest(self._documents)
        collect_aliases(self._documents, self.result)
        wanted = None
        if self.spec.wanted is not None:
            wanted = {self.result.aliases.get(i, i) for i in self.spec.wanted}
        for item in manifest:
            config_name = item["Config"]
            config = self._documents.get(self._follow(config_name))
            if config is None:
                raise ArchiveError(f"the export lacks the config {config_name}")
            config_digest = sha256(config)
            if wanted is not None and config_digest not in wanted:
                continue  # another destination's image, in an export they share
            self._check_config(config_name, config_digest)
            diff_ids = _config_diff_ids(config_name, config)
            if len(diff_ids) != len(item["Layers"]):
                raise ArchiveError(f"{config_name}: {len(item['Layers'])} layer files for {len(diff_ids)} layers")
            layers = [
                self.filter.resolve(self._follow(path), path, diff) for path, diff in zip(item["Layers"], diff_ids)
            ]
            written = yield from self.writer.image(config, diff_ids, layers)
            self.result.images.append(written)
        self._check_all_there()
        yield from self.writer.index()

    def _follow(self, path: str) -> str:
        """The path a (chain of) link entries points to; Docker < 25 and Podman write layers
        that occur again as symlinks."""
        for _ in range(MAX_LINK_HOPS):
            if path not in self._links or path in self.filter.layers or path in self._documents:
                return path
            path = self._links[path]
        raise ArchiveError(f"the export's links around {path[:100]!r} go in a loop")

    def _check_config(self, name: str, digest: str) -> None:
        """The config must be what the source promised: its image id, or in the containerd store
        the config the manifest of that id names (manifests were checked against their digests)."""
        promised = {self.result.aliases.get(i, i) for i in self.spec.image_ids}
        if promised and digest not in promised:
            raise ArchiveError(
                f"the export's config {name[:100]} hashes to {short(digest)}, not to the config of any image "
                "asked for (altered on the way?)"
            )

    def _check_all_there(self) -> None:
        written = {w.config_digest for w in self.result.images}
        for image_id in sorted(self.spec.image_ids):
            if self.result.aliases.get(image_id, image_id) not in written:
                raise ArchiveError(f"the export does not carry the image {short(image_id)} that was asked for")


class Rewriter(Rewrite):
    """The rewrite of a source engine's `docker save` stream (an iterator of its chunks)."""

    def __init__(
        self, source: Iterator[bytes], spec: StreamSpec, progress: Progress | None = None, spool_dir: Path | None = None
    ) -> None:
        super().__init__(ExportReader(source, spec), spec, progress, spool_dir)


def _manifest(documents: Mapping[str, bytes]) -> list[dict[str, Any]]:
    if "manifest.json" not in documents:
        raise ArchiveError("the export has no manifest.json")
    try:
        manifest = json.loads(documents["manifest.json"])
    except ValueError as exc:
        raise ArchiveError(f"the export's manifest.json is not JSON: {exc}") from exc
    if not isinstance(manifest, list) or not all(
        isinstance(item, dict)
        and isinstance(item.get("Config"), str)
        and isinstance(item.get("Layers"), list)
        and all(isinstance(p, str) for p in item["Layers"])
        for item in manifest
    ):
        raise ArchiveError("the export's manifest.json is malformed (not a list of Config and Layers)")
    return manifest


def _config_diff_ids(name: str, config: bytes) -> tuple[str, ...]:
    try:
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"the export's config {name[:100]} is malformed (no rootfs.diff_ids)") from exc
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ArchiveError(f"the export's config {name[:100]} is malformed (rootfs.diff_ids is not a list of digests)")
    return tuple(diff_ids)
