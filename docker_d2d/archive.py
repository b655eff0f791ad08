"""The one-pass archive rewrite: a source engine's `docker save` stream in, a thin archive
in the format the destination loads out.

Reads every source format (Docker < 25 legacy, Docker >= 25 OCI layout + manifest.json,
the containerd store's OCI layout with compressed blobs, Podman's docker-archive) and
writes a legacy archive (manifest.json, for graphdriver engines) or an OCI layout
(index.json, for the containerd store and Podman). Layers in `skip` are left out.

A layer body is never held in memory. It is passed straight through when its entry name
tells which layer it is (or when no layer that may be skipped is still to come); only
otherwise is it spooled to a private temp file to learn its digest before deciding.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import posixpath
import re
import tarfile
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar, Union, cast

from .errors import ArchiveError, SpoolFull, ZstdUnavailable
from .model import human_size, short
from .tarstream import CHUNK, END_OF_ARCHIVE, ChunkReader, Entry, file_entry, file_header, padding, read_entries

# Blobs up to this size are read into memory and sniffed: configs, manifests and v1 json.
SMALL_BLOB = 4 << 20
# Bounds on what is read into memory on an entry header's word (manifests, configs, v1 json):
# one entry, and all of them together. Real ones are kilobytes (a 100-layer config is ~100 kB).
MAX_METADATA = 16 << 20
MAX_METADATA_TOTAL = 64 << 20
# Links inside an export (Docker < 25 writes a repeated layer as a symlink to the first) are
# followed this many hops at most.
MAX_LINK_HOPS = 8
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Compressed input handed to zlib per call. When a gzip member ends, zlib copies all the input
# after it into `unused_data`: small steps keep that copy small for a layer of many tiny members.
_GZIP_STEP = 64 << 10

# A local run spools into a private directory of its own inside the spool directory (--spool-dir).
PRIVATE_DIR = "d2d-run-"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_ZSTD = MT_LAYER + "+zstd"


# Output chunks: headers as bytes, bodies as views of the source's buffers (no copies).
# Aliases for the type checker only: this module also runs on a source host's Python 3.8 (remote/).
if TYPE_CHECKING:
    Buffer = bytes | memoryview
    LayerWriter = Generator[Buffer, None, "LayerEntry"]


class OutputFormat(Enum):
    LEGACY = "docker-archive"  # manifest.json: what graphdriver engines load thin
    OCI = "oci-layout"  # index.json: what the containerd store and Podman load thin


class Progress(Protocol):
    def layer_skipped(self, key: str, size: int) -> None: ...
    def layer_started(self, key: str, size: int) -> None: ...
    def layer_advanced(self, key: str, nbytes: int) -> None: ...
    def layer_finished(self, key: str) -> None: ...


class NoProgress:
    def layer_skipped(self, key: str, size: int) -> None:
        pass

    def layer_started(self, key: str, size: int) -> None:
        pass

    def layer_advanced(self, key: str, nbytes: int) -> None:
        pass

    def layer_finished(self, key: str) -> None:
        pass


@dataclass(frozen=True)
class StreamSpec:
    output: OutputFormat
    skip: frozenset[str]  # diff ids to leave out
    named: Mapping[str, str]  # source entry name -> diff id, where the name tells
    unnamed: tuple[str, ...] = ()  # diff ids (one per entry) whose entry names cannot be predicted
    wanted: frozenset[str] | None = None  # source image ids to write, when the export holds others too
    # What the source promised, checked as the bytes pass (empty: not checked). Image ids are
    # config digests, or in the containerd store the manifest or index digest naming the config.
    image_ids: frozenset[str] = frozenset()
    limits: Mapping[str, int] = field(default_factory=dict)  # diff id -> most bytes its entry may hold
    max_layer: int | None = None  # most bytes a layer entry not known by name may hold
    # How the output manifest names a left-out layer (OCI output): the descriptor the destination
    # is known to hold it under; else, with prefer_source, the source's own (compressed) descriptor;
    # else its uncompressed digest.
    left_out: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prefer_source: bool = False
    # The only layers the output may carry, where the export holds more (every platform of an
    # index, from a containerd store that cannot export one platform): the rest is dropped.
    keep: frozenset[str] | None = None
    # Resumable copies: once this many layer bytes went into one archive, it ends, at the first
    # point where partial images (prefixes of `chains`) hold every layer it carried; a new
    # archive goes on (see `Rewriter.archives`). None: one archive.
    checkpoint: int | None = None
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # source image id -> diff ids
    platform: Mapping[str, str] = field(default_factory=dict)  # os, architecture[, variant] of partial configs
    # The destination cannot take zstd layers (Docker < 23 reads them as a broken tar, Podman 4
    # stores them and then cannot save the image): a zstd blob the source holds goes out as the
    # plain tar it decompresses to, under its diff id.
    decompress_zstd: bool = False


# Partial images carry this label (value: the source image's id) and nothing else of the source's config.
PARTIAL_LABEL = "org.docker-d2d.partial-of"


def partial_config(source_id: str, diff_ids: tuple[str, ...], platform: Mapping[str, str]) -> bytes:
    """The config of a partial image: the first layers of `source_id`, enough to hold them at the
    destination. Deterministic, so that the same prefix is the same image on every run."""
    doc = {
        **platform,
        "config": {"Labels": {PARTIAL_LABEL: source_id}},
        "created": "1970-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class LayerEntry:
    source_name: str
    size: int  # as stored in the source archive; as sent, for a blob sent decompressed
    diff_id: str | None
    blob_digest: str | None  # digest of the bytes we send (compressed blobs keep theirs)
    media_type: str = MT_LAYER
    uncompressed_size: int | None = None
    out_name: str | None = None  # None: left out
    absent: bool = False  # a left-out layer the export did not carry: its sizes are unknown here


@dataclass(frozen=True)
class WrittenImage:
    config_digest: str
    diff_ids: tuple[str, ...]
    manifest_digest: str | None = None  # OCI output only

    def loaded_as(self, store: bool) -> str:
        """The id the destination gives it: the manifest digest in a containerd store."""
        return (self.manifest_digest if store else None) or self.config_digest


@dataclass(frozen=True)
class Cut:
    """The end of one archive of a resumable stream: the partial images it holds, each with the
    source image it is the first layers of."""

    images: tuple[WrittenImage, ...]
    sources: tuple[str, ...]


class Barrier:
    """In a checkpointed stream, before an archive's image entries: what comes next names layers
    that earlier archives carried, so their loads must be done (see Archive.barrier)."""


BARRIER = Barrier()
Item = Union["Buffer", Cut, Barrier]


class Archive:
    """One archive of `Rewriter.archives()`: iterate it for its bytes; then `cut` tells whether it
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


@dataclass
class RewriteResult:
    images: list[WrittenImage] = field(default_factory=list)
    partials: list[WrittenImage] = field(default_factory=list)  # written at checkpoints
    # source manifest or index digest -> config digest (the containerd store names images by manifest)
    aliases: dict[str, str] = field(default_factory=dict)
    # diff id -> the source manifest's descriptor of that layer (OCI-layout exports)
    source_layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # diff id -> the descriptor an output manifest named a left-out layer by, and a sent one
    left_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Left-out layers the export did not carry, named by their diff id with no size known (0): a
    # containerd store exports a blob by its manifest's size, so it could not export such an image.
    unsized: list[str] = field(default_factory=list)
    layers_sent: int = 0
    layers_skipped: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    spooled_bytes: int = 0


def _media_type(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return MT_LAYER + "+gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return MT_ZSTD
    return MT_LAYER


def _peek(body: Iterator[memoryview], n: int = 4) -> tuple[bytes, Iterator[memoryview]]:
    """A body's first `n` bytes (fewer if it is shorter), and the whole body, still to be read."""
    taken: list[memoryview] = []
    size = 0
    for chunk in body:
        taken.append(chunk)
        size += len(chunk)
        if size >= n:
            break
    return b"".join(bytes(c[:n]) for c in taken)[:n], itertools.chain(taken, body)


@contextmanager
def spooling(directory: Path | None, what: str, local: bool = True) -> Iterator[None]:
    """A full file system under a spool (ENOSPC, EDQUOT) becomes one SpoolFull that names the
    directory, its room and `what` was being spooled. `directory` None: the temp dir (on the
    source host, for the agent); a run's private directory is named by the spool directory it is in."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise spool_full(directory, what, local) from exc


def spool_full(directory: Path | None, what: str, local: bool) -> SpoolFull:
    shown = directory if directory is not None else Path(tempfile.gettempdir())
    if shown.name.startswith(PRIVATE_DIR):
        shown = shown.parent
    try:
        st = os.statvfs(shown)
        room = f" ({human_size(st.f_blocks * st.f_frsize)} in all, {human_size(st.f_bavail * st.f_frsize)} free)"
    except OSError:
        room = ""
    if local:
        hint = "give --spool-dir a directory with more room"
        message = f"no space left in the spool directory {shown}{room} for {what}: {hint}"
        return SpoolFull(message, directory=str(shown), side="local")
    hint = "make room there, or point TMPDIR elsewhere for its ssh sessions"
    return SpoolFull(f"no space left in {shown} on the source host{room} for {what}: {hint}", directory=str(shown))


class _DiffHasher:
    """sha256 of the bytes as they come (the blob digest) and of their uncompressed form (the diff
    id; one hash when the blob is not compressed). Compressed blobs are inflated in bounded steps,
    so one that inflates hugely costs time, not memory; `limit` stops it early. `inflate_to`: a
    file that also gets the inflated bytes of a zstd blob."""

    def __init__(self, limit: int | None = None, inflate_to: IO[bytes] | None = None) -> None:
        self.raw = hashlib.sha256()
        self.media_type: str | None = None
        self.uncompressed = 0
        self._limit = limit
        self._inflate_to = inflate_to
        self._diff: Any = None  # a second hash, for compressed blobs only
        self._head = b""  # the first bytes, until there are enough to tell the compression
        self._gzip: Any = None
        self._zstd: Any = None

    def update(self, data: bytes | memoryview) -> None:
        self.raw.update(data)
        if self.media_type is None:
            if self._head or len(data) < 4:
                # A body that starts in a tiny chunk: gather 4 bytes before telling the compression.
                self._head += bytes(data)
                if len(self._head) < 4:
                    return
                data, self._head = self._head, b""
            self._start(bytes(data[:4]))
        self._plain_or_inflate(data)

    def _start(self, head: bytes) -> None:
        self.media_type = _media_type(head)
        if self.media_type.endswith("+gzip"):
            self._gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.media_type.endswith("+zstd"):
            try:
                import zstandard
            except ImportError as exc:  # a source host's python (remote/): the local side has it
                raise ZstdUnavailable("a layer is zstd-compressed, and this python lacks the zstandard module") from exc

            sink = cast(IO[bytes], _Sink(self._plain if self._inflate_to is None else self._plain_kept))
            self._zstd = zstandard.ZstdDecompressor().stream_writer(sink, write_size=CHUNK)
        if self._gzip is not None or self._zstd is not None:
            self._diff = hashlib.sha256()

    def _plain_or_inflate(self, data: bytes | memoryview) -> None:
        try:
            if self._gzip is not None:
                self._inflate_gzip(data)
            elif self._zstd is not None:
                self._zstd.write(data)
            else:
                self._count(len(data))
        except ArchiveError:
            raise
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            raise ArchiveError(f"a layer's {self.media_type} stream is corrupt: {exc}") from exc

    def _inflate_gzip(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), _GZIP_STEP):
            buf: bytes | memoryview = view[start : start + _GZIP_STEP]
            while buf:
                if self._gzip.eof:  # another member follows (gzip allows concatenated members: eStargz)
                    self._gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._plain(self._gzip.decompress(buf, CHUNK))
                # Once a member has ended, all the input after it is in unused_data. CPython (3.8 to
                # 3.13) leaves the same bytes in unconsumed_tail too when the member ended on a call
                # that hit the output limit: feeding both inflated the next member twice.
                buf = self._gzip.unused_data if self._gzip.eof else self._gzip.unconsumed_tail

    def _plain(self, data: bytes) -> None:
        self._diff.update(data)
        self._count(len(data))

    def _plain_kept(self, data: bytes) -> None:
        self._plain(data)  # counted first: the limit stops a zstd bomb before it fills the disk
        assert self._inflate_to is not None
        self._inflate_to.write(data)

    def _count(self, n: int) -> None:
        self.uncompressed += n
        if self._limit is not None and self.uncompressed > self._limit:
            raise ArchiveError(
                f"a layer holds more than {self._limit} bytes uncompressed, far more than the source's inspect "
                "promised; refusing it"
            )

    def finish(self) -> None:
        if self.media_type is None:  # fewer than 4 bytes in all
            self._start(self._head)
            self._plain_or_inflate(self._head)
        if self._gzip is not None:
            self._plain(self._gzip.flush())
        elif self._zstd is not None:
            self._zstd.flush()

    def raw_digest(self) -> str:
        return "sha256:" + self.raw.hexdigest()

    def diff_digest(self) -> str:
        return "sha256:" + (self._diff or self.raw).hexdigest()


class _Sink:
    """Where zstandard's stream writer puts inflated bytes."""

    def __init__(self, write: Any) -> None:
        self.write = write

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _blob_name(name: str) -> str | None:
    """'blobs/sha256/<hex>' -> 'sha256:<hex>'."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and len(parts[2]) == 64:
        return f"{parts[1]}:{parts[2]}"
    return None


def _is_layer_name(name: str) -> bool:
    # Legacy '<v1id>/layer.tar' and Podman's '<diffid>.tar'.
    return name.endswith("/layer.tar") or (name.endswith(".tar") and "/" not in name)


def _claimed_digests(name: str) -> tuple[str | None, str | None]:
    """What an entry's name says its content hashes to: (blob digest, diff id). OCI blobs are
    named by the digest of their bytes, Podman's layer files by their diff id, a legacy config
    '<hex>.json' by its digest."""
    blob = _blob_name(name)
    if blob and blob.startswith("sha256:"):
        return blob, None
    stem, dot, ext = name.partition(".")
    if dot and "/" not in name and _HEX64.match(stem):
        return ("sha256:" + stem, None) if ext == "json" else (None, "sha256:" + stem) if ext == "tar" else (None, None)
    return None, None


def _link_target(entry: Entry) -> str:
    # Symlinks are relative to their own directory, hardlinks name a path from the archive's root.
    target = entry.linkname
    if entry.type == tarfile.SYMTYPE:
        target = posixpath.join(posixpath.dirname(entry.name), target)
    return posixpath.normpath(target)  # never "./x": normpath drops it (and removeprefix is 3.9+: remote/)


class Rewriter:
    """Use `stream()` as the load request's body; `result` is complete once it is exhausted."""

    def __init__(
        self,
        source: Iterator[bytes],
        spec: StreamSpec,
        progress: Progress | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self._reader = ChunkReader(source)
        self.spec = spec
        self.progress = progress or NoProgress()
        self.spool_dir = spool_dir
        self.result = RewriteResult()
        self._small: dict[str, bytes] = {}
        self._small_total = 0
        self._layers: dict[str, LayerEntry] = {}
        self._links: dict[str, str] = {}  # link entry name -> the path it points to
        self._sent_by_digest: dict[str, str] = {}  # blob digest -> output name: each blob goes once
        self._remaining = Counter(spec.unnamed)
        self._distrust = False
        # True while the chunks being yielded belong to an already compressed blob, so that
        # wire compression can store them instead of compressing them again.
        self.emitting_compressed = False
        # Checkpoints (spec.checkpoint): layers sent in any archive, and in the current one.
        self._emitted: set[str] = set()
        self._segment: set[str] = set()
        self._segment_bytes = 0
        self._by_diff: dict[str, LayerEntry] = {}  # layers the export has passed, sent or not
        # Layers that came before a layer below them was sent: held back in a spool until it is.
        self._deferred: dict[str, tuple[Entry, str | None, IO[bytes], _DiffHasher]] = {}
        self._flushing = False

    # --- the input side -----------------------------------------------------------------

    def stream(self) -> Iterator[Buffer]:
        """The whole output as one archive (spec.checkpoint must be None)."""
        for item in self._items():
            assert not isinstance(item, Cut), "a checkpointed stream is read with archives()"
            if not isinstance(item, Barrier):
                yield item

    def archives(self) -> Iterator[Archive]:
        """The output as a series of archives, each loaded on its own: all but the last end at a
        checkpoint with partial images. Read each archive to its end before asking for the next."""
        items = self._items()
        return in_turn(lambda: Archive(items))

    def _items(self) -> Iterator[Item]:
        try:
            for entry in read_entries(self._reader):
                if entry.is_link:
                    self._links[entry.name] = _link_target(entry)
                if not entry.is_file:
                    continue
                yield from self._entry(entry)
                if self.spec.checkpoint is not None:
                    yield from self._checkpoint()
            self._flushing = True
            yield from self._release()
            yield BARRIER
            yield from self._finish()
            yield END_OF_ARCHIVE
        finally:
            for _, _, spool, _ in self._deferred.values():
                spool.close()

    def _entry(self, entry: Entry) -> Iterator[Buffer]:
        name = entry.name
        diff = self.spec.named.get(name)
        if diff is not None:
            self._check_size(entry, self.spec.limits.get(diff))
            yield from self._layer(entry, diff, _blob_name(name) or diff, self._reader.iter_exact(entry.size))
            return
        blob: str | None = _blob_name(name)
        if (blob and entry.size <= SMALL_BLOB) or (not blob and not _is_layer_name(name)):
            data = self._read_small(entry)
            if not blob or data[:1] == b"{":
                self._small[name] = data
                if name.endswith("/json"):
                    self._check_legacy_prediction(name, data)
                return
            yield from self._unknown_layer(entry, blob, iter([memoryview(data)]), in_memory=True)
            return
        self._check_size(entry, self.spec.max_layer)
        yield from self._unknown_layer(entry, blob, self._reader.iter_exact(entry.size), in_memory=False)

    def _read_small(self, entry: Entry) -> bytes:
        """A metadata entry, read whole: bounded, and checked against its name when that is a digest."""
        self._small_total += entry.size
        if entry.size > MAX_METADATA or self._small_total > MAX_METADATA_TOTAL:
            raise ArchiveError(
                f"the export's entry {entry.name[:100]!r} is {entry.size} bytes; metadata beyond "
                f"{MAX_METADATA >> 20} MiB an entry or {MAX_METADATA_TOTAL >> 20} MiB in all is refused"
            )
        data = self._reader.read_exact(entry.size)
        claimed, _ = _claimed_digests(entry.name)
        if claimed and "sha256:" + hashlib.sha256(data).hexdigest() != claimed:
            raise ArchiveError(f"the export's {entry.name} does not match its digest (altered on the way?)")
        return data

    def _check_size(self, entry: Entry, limit: int | None) -> None:
        """Refuse, at its header, a layer far larger than the source's inspect promised (see
        plan.layer_limit for the margin): a broken or hostile source must not stream without end
        into the destination."""
        if limit is not None and entry.size > limit:
            raise ArchiveError(
                f"the export's layer {entry.name[:100]!r} is {entry.size} bytes, far more than the source's "
                f"inspect promised (at most {limit}); refusing it"
            )

    def _check_legacy_prediction(self, name: str, data: bytes) -> None:
        """Legacy exports write '<v1id>/json' just before '<v1id>/layer.tar'. Lower layers carry the
        epoch as their creation time; one we did not predict means this engine computes v1 ids
        differently, so stop trusting the predicted names and treat their layers as unnamed."""
        if self._distrust or f"{name[: -len('json')]}layer.tar" in self.spec.named:
            return
        try:
            doc = json.loads(data)
        except ValueError:
            return
        created = doc.get("created") if isinstance(doc, dict) else None
        if isinstance(created, str) and created.startswith("1970-01-01T00:00:00"):
            self._distrust = True
            seen = {lay.diff_id for lay in self._layers.values()}
            self._remaining.update(d for d in self.spec.named.values() if d not in seen)

    def _unknown_layer(
        self, entry: Entry, blob: str | None, body: Iterator[memoryview], *, in_memory: bool
    ) -> LayerWriter:
        if self.spec.keep is not None or self.spec.checkpoint is not None:
            # Other platforms' blobs are in the export too, or each layer must go out after the
            # ones below it: learn which layer it is first.
            return (yield from self._spooled_layer(entry, body))
        candidates = {d for d, n in self._remaining.items() if n > 0}
        may_skip = candidates & self.spec.skip
        if len(candidates) == 1 and not in_memory:
            diff = candidates.pop()
            return (yield from self._layer(entry, diff, blob or diff, body))
        if not may_skip and not in_memory and (blob or self.spec.output is OutputFormat.LEGACY):
            # Nothing still to come may be left out: send it now, learn which layer it is from manifest.json.
            return (yield from self._layer(entry, None, blob, body))
        return (yield from self._spooled_layer(entry, body))

    def _spooling(self, what: str) -> AbstractContextManager[None]:
        # The agent (remote/) spools into the source host's temp dir: a local run always names its own.
        return spooling(self.spool_dir, what, local=self.spool_dir is not None)

    def _spooled_layer(self, entry: Entry, body: Iterator[memoryview]) -> LayerWriter:
        hasher = _DiffHasher(self.spec.max_layer)
        what = "a layer of " + human_size(entry.size)
        with self._spooling(what), tempfile.TemporaryFile(dir=self.spool_dir, prefix="d2d-spool-") as spool:
            for chunk in body:
                hasher.update(chunk)
                spool.write(chunk)
            hasher.finish()
            self.result.spooled_bytes += entry.size
            _check_claims(entry.name, hasher)
            spool.seek(0)
            layer = yield from self._layer(
                entry, self._diff_of(hasher, None), hasher.raw_digest(), _read_file(spool), hashed=hasher
            )
            layer.uncompressed_size = hasher.uncompressed
            return layer

    def _layer(
        self,
        entry: Entry,
        diff: str | None,
        blob: str | None,
        body: Iterator[memoryview],
        hashed: _DiffHasher | None = None,
    ) -> LayerWriter:
        """Send a layer or leave it out. A sent layer is hashed as its bytes pass (unless it was,
        on its way into the spool): its content decides its diff id, which `_resolve` checks
        against the config, and a name that is a digest must match before the next entry."""
        layer = LayerEntry(entry.name, entry.size, diff, blob)
        self._layers[entry.name] = layer
        if self.spec.keep is not None and diff is not None and diff not in self.spec.keep:
            for _ in body:  # another platform's layer: it does not travel
                pass
            return layer
        if diff is not None:
            # Each layer's content comes once in an export; later occurrences are links.
            self._remaining[diff] = 0
        key = diff or blob or entry.name
        if (diff is not None and diff in self.spec.skip) or (blob is not None and blob in self._sent_by_digest):
            for _ in body:
                pass
            layer.out_name = self._sent_by_digest.get(blob or "")
            if diff is not None and layer.out_name is None:
                self._by_diff.setdefault(diff, layer)
            if layer.out_name is None:
                self.result.layers_skipped += 1
                self.result.bytes_skipped += entry.size
                self.progress.layer_skipped(key, entry.size)
            return layer
        if diff is not None and self._held_back(diff):
            return self._defer(layer, entry, blob, body, hashed)
        if self.spec.decompress_zstd:
            if hashed is not None:
                zstd = hashed.media_type == MT_ZSTD
            else:
                head, body = _peek(body)
                zstd = _media_type(head) == MT_ZSTD
            if zstd:
                return (yield from self._inflated(entry, layer, key, body))
        layer.out_name = self._output_name(blob or diff or "", entry.name)
        if blob:
            self._sent_by_digest[blob] = layer.out_name
        self.progress.layer_started(key, entry.size)
        yield file_header(layer.out_name, entry.size)
        hasher = hashed or _DiffHasher(self.spec.limits.get(diff or "", self.spec.max_layer))
        first = True
        for chunk in body:
            if first:
                self.emitting_compressed = _media_type(bytes(chunk[:4])) != MT_LAYER
                first = False
            if hashed is None:
                hasher.update(chunk)
            yield chunk
            self.progress.layer_advanced(key, len(chunk))
        self.emitting_compressed = False
        if hashed is None:
            hasher.finish()
            _check_claims(entry.name, hasher)
        layer.diff_id = self._diff_of(hasher, diff)
        layer.media_type = (hasher.media_type or MT_LAYER) if layer.diff_id != hasher.raw_digest() else MT_LAYER
        layer.uncompressed_size = hasher.uncompressed
        self._remaining[layer.diff_id] = 0
        yield padding(entry.size)
        self._finished(key, layer, layer.diff_id, entry.size)
        return layer

    def _inflated(self, entry: Entry, layer: LayerEntry, key: str, body: Iterator[memoryview]) -> LayerWriter:
        """Send a zstd blob as the plain tar it inflates to, for a destination that cannot take zstd.
        A tar header names its entry's size before the body, so the blob is inflated into a spool
        first (a spooled blob, once more from its spool: only layers that travel are inflated)."""
        what = f"a zstd layer of {human_size(entry.size)} inflated"
        with self._spooling(what), tempfile.TemporaryFile(dir=self.spool_dir, prefix="d2d-inflate-") as plain:
            hasher = _DiffHasher(self.spec.limits.get(layer.diff_id or "", self.spec.max_layer), inflate_to=plain)
            for chunk in body:
                hasher.update(chunk)
            hasher.finish()
            _check_claims(entry.name, hasher)
            diff, size = hasher.diff_digest(), hasher.uncompressed
            self.result.spooled_bytes += size
            layer.diff_id = layer.blob_digest = diff
            layer.media_type, layer.size, layer.uncompressed_size = MT_LAYER, size, size
            layer.out_name = self._output_name(diff, entry.name)
            # Either digest names this content from here on: a later copy of it is not sent again.
            self._sent_by_digest[hasher.raw_digest()] = layer.out_name
            self._sent_by_digest.setdefault(diff, layer.out_name)
            self._remaining[diff] = 0
            self.progress.layer_started(key, size)
            yield file_header(layer.out_name, size)
            plain.seek(0)
            for chunk in _read_file(plain):
                yield chunk
                self.progress.layer_advanced(key, len(chunk))
        yield padding(size)
        self._finished(key, layer, diff, size)
        return layer

    def _finished(self, key: str, layer: LayerEntry, diff: str, size: int) -> None:
        """A layer went out whole: counted, and known to this archive's checkpoint."""
        self.progress.layer_finished(key)
        self.result.layers_sent += 1
        self.result.bytes_sent += size
        self._by_diff[diff] = layer
        self._emitted.add(diff)
        self._segment.add(diff)
        self._segment_bytes += size

    # --- checkpoints: archives that end with partial images ----------------------------------

    def _held_back(self, diff: str) -> bool:
        """Whether a layer must wait: an archive may only carry layers that partial images can
        hold, so with checkpoints each goes out after the layers below it (in some image)."""
        return self.spec.checkpoint is not None and not self._flushing and not self._ready(diff)

    def _ready(self, diff: str) -> bool:
        chains = [chain for chain in self.spec.chains.values() if diff in chain]
        return not chains or any(
            all(d in self.spec.skip or d in self._emitted for d in chain[: chain.index(diff)]) for chain in chains
        )

    def _defer(
        self, layer: LayerEntry, entry: Entry, blob: str | None, body: Iterator[memoryview], hashed: _DiffHasher | None
    ) -> LayerEntry:
        # Closed when the layer goes out (_release) or the stream ends (_items).
        what = f"a layer of {human_size(entry.size)} held back until the layers below it are out"
        with self._spooling(what):
            spool = tempfile.TemporaryFile(dir=self.spool_dir, prefix="d2d-held-")  # noqa: SIM115
            hasher = hashed or _DiffHasher(self.spec.limits.get(str(layer.diff_id), self.spec.max_layer))
            try:
                for chunk in body:
                    if hashed is None:
                        hasher.update(chunk)
                    spool.write(chunk)
                if hashed is None:
                    hasher.finish()
                    _check_claims(entry.name, hasher)
                spool.seek(0)
            except BaseException:
                spool.close()
                raise
        self.result.spooled_bytes += entry.size
        self._deferred[str(layer.diff_id)] = (entry, blob, spool, hasher)
        return layer

    def _release(self) -> Iterator[Item]:
        """Send the held-back layers whose lower layers are out now (all of them at the end),
        with a checkpoint after each where one is due."""
        while True:
            ready = [d for d in self._deferred if self._flushing or self._ready(d)]
            if not ready:
                return
            entry, blob, spool, hasher = self._deferred.pop(ready[0])
            with spool:
                layer = yield from self._layer(entry, ready[0], blob, _read_file(spool), hashed=hasher)
            layer.uncompressed_size = hasher.uncompressed
            if not self._flushing:
                yield from self._cut()

    def _checkpoint(self) -> Iterator[Item]:
        yield from self._cut()
        yield from self._release()

    def _cut(self) -> Iterator[Item]:
        assert self.spec.checkpoint is not None
        if self._segment_bytes < self.spec.checkpoint:
            return
        if all(all(map(self._placed, c)) for c in self.spec.chains.values()):
            return  # every layer is out: the images themselves come next, in this archive
        partials: dict[tuple[str, ...], str] = {}
        for source_id, chain in self.spec.chains.items():
            n = 0
            while n < len(chain) and self._placed(chain[n]):
                n += 1
            if self._segment & set(chain[:n]):
                partials.setdefault(tuple(chain[:n]), source_id)
        covered = {d for prefix in partials for d in prefix}
        if not partials or not self._segment <= covered:
            return  # a layer sent out of order (its name did not tell which it was): not yet
        yield BARRIER
        out_manifest: list[dict[str, Any]] = []
        index: list[dict[str, Any]] = []
        images = []
        for prefix, source_id in partials.items():
            config = partial_config(source_id, prefix, self.spec.platform)
            layers = [self._by_diff.get(d) or LayerEntry("", 0, d, None) for d in prefix]
            written = yield from self._write_image(config, prefix, layers, out_manifest, index)
            images.append(written)
        yield from self._write_index(out_manifest, index)
        yield END_OF_ARCHIVE
        self.result.partials.extend(images)
        self._segment, self._segment_bytes = set(), 0
        yield Cut(tuple(images), tuple(partials.values()))

    def _placed(self, diff: str) -> bool:
        """Whether a partial image can name this layer now: sent in this or an earlier archive, or
        held by the destination under a name known for sure (a legacy archive names it by its
        diff id and the engine looks at its chain; an OCI manifest needs its size and digest)."""
        if diff in self._emitted:
            return True
        if diff not in self.spec.skip:
            return False
        if self.spec.output is OutputFormat.LEGACY or diff in self.spec.left_out:
            return True
        seen = self._by_diff.get(diff)
        return seen is not None and not (self.spec.prefer_source and seen.blob_digest not in (None, diff))

    def _diff_of(self, hasher: _DiffHasher, expected: str | None) -> str:
        """A layer's diff id from its content. A plain layer whose first bytes merely look like
        gzip or zstd is known by its raw digest being the one expected (or still to come)."""
        raw = hasher.raw_digest()
        if raw == expected or (expected is None and self._remaining[raw] > 0):
            return raw
        return hasher.diff_digest()

    def _output_name(self, digest: str, source_name: str) -> str:
        hexpart = digest.split(":")[-1] or hashlib.sha256(source_name.encode()).hexdigest()
        if self.spec.output is OutputFormat.OCI:
            return f"blobs/sha256/{hexpart}"
        return f"{hexpart}/layer.tar"

    # --- the end: manifests ---------------------------------------------------------------

    def _finish(self) -> Iterator[Buffer]:
        manifest = self._manifest()
        self._collect_aliases()
        out_manifest: list[dict[str, Any]] = []
        index: list[dict[str, Any]] = []
        wanted = None
        if self.spec.wanted is not None:
            wanted = {self.result.aliases.get(i, i) for i in self.spec.wanted}
        for item in manifest:
            config_name = item["Config"]
            config = self._small.get(self._follow(config_name))
            if config is None:
                raise ArchiveError(f"the export lacks the config {config_name}")
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            if wanted is not None and config_digest not in wanted:
                continue  # another destination's image, in an export they share
            self._check_config(config_name, config_digest)
            diff_ids = _config_diff_ids(config_name, config)
            if len(diff_ids) != len(item["Layers"]):
                raise ArchiveError(f"{config_name}: {len(item['Layers'])} layer files for {len(diff_ids)} layers")
            layers = [self._resolve(path, diff) for path, diff in zip(item["Layers"], diff_ids)]
            written = yield from self._write_image(config, diff_ids, layers, out_manifest, index)
            self.result.images.append(written)
        self._check_all_there()
        yield from self._write_index(out_manifest, index)

    def _write_image(
        self,
        config: bytes,
        diff_ids: tuple[str, ...],
        layers: list[LayerEntry],
        out_manifest: list[dict[str, Any]],
        index: list[dict[str, Any]],
    ) -> Generator[Buffer, None, WrittenImage]:
        """An image's config (and OCI manifest) entries; its line in manifest.json or index.json."""
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        if self.spec.output is OutputFormat.LEGACY:
            name = f"{config_digest[7:]}.json"
            yield from file_entry(name, config)
            out_manifest.append(
                {
                    "Config": name,
                    "RepoTags": None,
                    "Layers": [lay.out_name or f"{str(lay.diff_id)[7:]}/layer.tar" for lay in layers],
                }
            )
            return WrittenImage(config_digest, diff_ids)
        yield from file_entry(f"blobs/sha256/{config_digest[7:]}", config)
        oci_manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [self._descriptor(lay) for lay in layers],
            },
            separators=(",", ":"),
        ).encode()
        digest = "sha256:" + hashlib.sha256(oci_manifest).hexdigest()
        yield from file_entry(f"blobs/sha256/{digest[7:]}", oci_manifest)
        index.append({"mediaType": MT_MANIFEST, "digest": digest, "size": len(oci_manifest)})
        return WrittenImage(config_digest, diff_ids, digest)

    def _write_index(self, out_manifest: list[dict[str, Any]], index: list[dict[str, Any]]) -> Iterator[Buffer]:
        if self.spec.output is OutputFormat.LEGACY:
            yield from file_entry("manifest.json", json.dumps(out_manifest).encode())
        else:
            yield from file_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            yield from file_entry("index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())

    # --- checks at the end, before anything that completes the archive is written ------------

    def _manifest(self) -> list[dict[str, Any]]:
        if "manifest.json" not in self._small:
            raise ArchiveError("the export has no manifest.json")
        try:
            manifest = json.loads(self._small["manifest.json"])
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

    def _follow(self, path: str) -> str:
        """The path a (chain of) link entries points to; Docker < 25 and Podman write layers
        that occur again as symlinks."""
        for _ in range(MAX_LINK_HOPS):
            if path not in self._links or path in self._layers or path in self._small:
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

    def _resolve(self, path: str, diff: str) -> LayerEntry:
        layer = self._layers.get(self._follow(path))
        if layer is None:
            layer = self._absent(path, diff)
        if layer.diff_id is None:
            layer.diff_id = diff
        elif layer.diff_id != diff:
            raise ArchiveError(
                f"the export's layer file {path} holds {short(layer.diff_id)}, its config says {short(diff)} "
                "(altered on the way?)"
            )
        if layer.out_name is None and layer.blob_digest in self._sent_by_digest:
            layer.out_name = self._sent_by_digest[layer.blob_digest]
        return layer

    def _absent(self, path: str, diff: str) -> LayerEntry:
        """A layer file the export does not carry. The containerd store's export leaves out
        non-distributable blobs (moby daemon/containerd/image_exporter.go) and blobs a pull skipped.
        A layer the destination holds needs none: the config's diff id names it in the output."""
        if diff not in self.spec.skip:
            desc = self.result.source_layers.get(diff) or {}
            media_type = str(desc.get("mediaType", ""))
            if "nondistributable" in media_type or "foreign" in media_type:
                raise ArchiveError(
                    f"the export leaves out layer {short(diff)}, as it does every non-distributable one "
                    f"({media_type}); copy to a destination that holds it already (load its base there first)"
                )
            raise ArchiveError(f"the export lacks the layer file {path}")
        layer = LayerEntry(path, 0, diff, None, absent=True)
        self._layers[path] = layer
        self.result.layers_skipped += 1
        self.progress.layer_skipped(diff, 0)
        return layer

    def _collect_aliases(self) -> None:
        docs: dict[str, dict[str, Any]] = {}
        for name, data in self._small.items():
            digest = _blob_name(name)
            try:
                doc = json.loads(data) if digest else None
            except ValueError:
                continue
            if digest and isinstance(doc, dict):
                docs[digest] = doc
        for digest, doc in docs.items():
            # An OCI/Docker manifest; legacy v1 json blobs also have a "config", without a digest.
            if isinstance(doc.get("config"), dict) and isinstance(doc["config"].get("digest"), str):
                self.result.aliases[digest] = doc["config"]["digest"]
                self._collect_layers(doc, docs.get(doc["config"]["digest"]))
        for digest, doc in docs.items():
            # An index: it stands for its first manifest found here.
            manifests = doc.get("manifests")
            for desc in manifests if isinstance(manifests, list) else []:
                if (
                    isinstance(desc, dict)
                    and isinstance(desc.get("digest"), str)
                    and desc["digest"] in self.result.aliases
                ):
                    self.result.aliases[digest] = self.result.aliases[desc["digest"]]
                    break

    def _collect_layers(self, manifest: dict[str, Any], config: dict[str, Any] | None) -> None:
        try:
            diff_ids = config["rootfs"]["diff_ids"] if config else []
            layers = manifest.get("layers") or []
            if len(diff_ids) != len(layers):
                return
            for diff, desc in zip(diff_ids, layers):
                if isinstance(diff, str) and isinstance(desc, dict) and {"mediaType", "digest", "size"} <= set(desc):
                    self.result.source_layers.setdefault(diff, {k: desc[k] for k in ("mediaType", "digest", "size")})
        except (KeyError, TypeError):
            return  # not an image manifest we understand: its layers are named uncompressed

    def _descriptor(self, layer: LayerEntry) -> dict[str, Any]:
        if layer.out_name is not None:
            sent = {"mediaType": layer.media_type, "digest": layer.blob_digest or layer.diff_id, "size": layer.size}
            self.result.sent[str(layer.diff_id)] = sent
            return dict(sent)
        # Left out: name it by a digest the destination holds (see StreamSpec.left_out).
        diff = str(layer.diff_id)
        desc = self.spec.left_out.get(diff)
        if desc is None and self.spec.prefer_source:
            desc = self.result.source_layers.get(diff)
        if layer.absent and (desc is None or desc["digest"] == diff):
            # Only the destination can tell this size (StreamSpec.left_out); 0 is no tar's size.
            desc = {"mediaType": MT_LAYER, "digest": diff, "size": desc["size"] if desc else 0}
            if not desc["size"] and diff not in self.result.unsized:
                self.result.unsized.append(diff)
        elif desc is None or desc["digest"] == diff:
            size = layer.uncompressed_size if layer.uncompressed_size is not None else layer.size
            desc = {"mediaType": MT_LAYER, "digest": diff, "size": size}
        self.result.left_out[diff] = dict(desc)
        return dict(desc)


def _config_diff_ids(name: str, config: bytes) -> tuple[str, ...]:
    try:
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"the export's config {name[:100]} is malformed (no rootfs.diff_ids)") from exc
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ArchiveError(f"the export's config {name[:100]} is malformed (rootfs.diff_ids is not a list of digests)")
    return tuple(diff_ids)


def _check_claims(name: str, hasher: _DiffHasher) -> None:
    blob, diff = _claimed_digests(name)
    if (blob and hasher.raw_digest() != blob) or (diff and diff not in (hasher.raw_digest(), hasher.diff_digest())):
        raise ArchiveError(f"the export's layer {name} does not match its digest (altered on the way?)")


def _read_file(f: IO[bytes]) -> Iterator[memoryview]:
    while chunk := f.read(CHUNK):
        yield memoryview(chunk)
