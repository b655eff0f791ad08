"""A source's `docker save` stream read once into typed entries (entries.py).

Each entry's name is read by the save format it belongs to: the formats' names never overlap
(legacy '<v1 id>/layer.tar', Podman '<diff id>.tar', OCI 'blobs/sha256/<digest>'), so one reader
takes any export. A name the stream spec knows (`named`) is a layer of known diff id; metadata
is read whole, bounded, and checked against its name when that is a digest; a layer body is
never held in memory (a small blob is: it may be a manifest or a config).
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from collections.abc import Iterator

from ..entries import Document, Entry, Layer, Link
from ..errors import ArchiveError
from ..oci import blob_name
from ..spec import StreamSpec
from ..tarstream import ChunkReader, read_entries
from ..tarstream import Entry as TarEntry
from .base import SaveFormat
from .legacy import Legacy
from .oci import OciLayout
from .podman import DockerArchive

# Blobs up to this size are read into memory and sniffed: configs, manifests and v1 json.
SMALL_BLOB = 4 << 20
# Bounds on what is read into memory on an entry header's word (manifests, configs, v1 json):
# one entry, and all of them together. Real ones are kilobytes (a 100-layer config is ~100 kB).
MAX_METADATA = 16 << 20
MAX_METADATA_TOTAL = 64 << 20


def link_target(entry: TarEntry) -> str:
    # Symlinks are relative to their own directory, hardlinks name a path from the archive's root.
    target = entry.linkname
    if entry.type == tarfile.SYMTYPE:
        target = posixpath.join(posixpath.dirname(entry.name), target)
    return posixpath.normpath(target)  # never "./x": normpath drops it (and removeprefix is 3.9+)


class ExportReader:
    """Iterate for the entries; a Layer's body must be read whole (or not at all: the reader then
    skips it) before the next entry is asked for."""

    def __init__(self, chunks: Iterator[bytes], spec: StreamSpec) -> None:
        self.spec = spec
        self._tar = ChunkReader(chunks)
        self._formats: tuple[SaveFormat, ...] = (OciLayout(), Legacy(spec), DockerArchive())
        self._metadata = 0  # bytes of metadata read so far

    def __iter__(self) -> Iterator[Entry]:
        for entry in read_entries(self._tar):
            if entry.is_link:
                yield Link(entry.name, link_target(entry))
            if entry.is_file:
                yield from self._file(entry)

    def _file(self, entry: TarEntry) -> Iterator[Entry]:
        name = entry.name
        blob = blob_name(name)
        diff = self.spec.named.get(name)
        if diff is not None:
            self._check_size(entry, self.spec.limits.get(diff))
            yield from self._layer(Layer(name, entry.size, self._tar.iter_exact(entry.size), diff, blob or diff))
            return
        if (blob and entry.size <= SMALL_BLOB) or (not blob and not any(f.layer_name(name) for f in self._formats)):
            data = self._read_small(entry, self._claims(name)[0])
            if not blob or data[:1] == b"{":
                yield Document(name, data)
                for fmt in self._formats:
                    yield from fmt.document(name, data)
                return
            yield from self._layer(Layer(name, entry.size, iter([memoryview(data)]), None, blob, in_memory=True))
            return
        self._check_size(entry, self.spec.max_layer)
        yield from self._layer(Layer(name, entry.size, self._tar.iter_exact(entry.size), None, blob))

    def _layer(self, layer: Layer) -> Iterator[Entry]:
        layer.claimed = self._claims(layer.name)
        yield layer
        for _ in layer.body:  # what the consumer left unread: the next entry starts after it
            pass

    def _claims(self, name: str) -> tuple[str | None, str | None]:
        for fmt in self._formats:
            claimed = fmt.claims(name)
            if claimed != (None, None):
                return claimed
        return None, None

    def _read_small(self, entry: TarEntry, claimed: str | None) -> bytes:
        """A metadata entry, read whole: bounded, and checked against its name when that is a digest."""
        self._metadata += entry.size
        if entry.size > MAX_METADATA or self._metadata > MAX_METADATA_TOTAL:
            raise ArchiveError(
                f"the export's entry {entry.name[:100]!r} is {entry.size} bytes; metadata beyond "
                f"{MAX_METADATA >> 20} MiB an entry or {MAX_METADATA_TOTAL >> 20} MiB in all is refused"
            )
        data = self._tar.read_exact(entry.size)
        if claimed and "sha256:" + hashlib.sha256(data).hexdigest() != claimed:
            raise ArchiveError(f"the export's {entry.name} does not match its digest (altered on the way?)")
        return data

    def _check_size(self, entry: TarEntry, limit: int | None) -> None:
        """Refuse, at its header, a layer far larger than the source's inspect promised (see
        transfer/spec.py layer_limit for the margin): a broken or hostile source must not stream
        without end into the destination."""
        if limit is not None and entry.size > limit:
            raise ArchiveError(
                f"the export's layer {entry.name[:100]!r} is {entry.size} bytes, far more than the source's "
                f"inspect promised (at most {limit}); refusing it"
            )
