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

import hashlib
import json
import tempfile
import zlib
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .errors import ArchiveError
from .tarstream import CHUNK, END_OF_ARCHIVE, ChunkReader, Entry, file_entry, file_header, padding, read_entries

# Blobs up to this size are read into memory and sniffed: configs, manifests and v1 json.
SMALL_BLOB = 4 << 20

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


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


@dataclass
class LayerEntry:
    source_name: str
    size: int  # as stored in the source archive
    diff_id: str | None
    blob_digest: str | None  # digest of the bytes we send (compressed blobs keep theirs)
    media_type: str = MT_LAYER
    uncompressed_size: int | None = None
    out_name: str | None = None  # None: left out


@dataclass(frozen=True)
class WrittenImage:
    config_digest: str
    diff_ids: tuple[str, ...]
    manifest_digest: str | None = None  # OCI output only


@dataclass
class RewriteResult:
    images: list[WrittenImage] = field(default_factory=list)
    # source manifest or index digest -> config digest (the containerd store names images by manifest)
    aliases: dict[str, str] = field(default_factory=dict)
    layers_sent: int = 0
    layers_skipped: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    spooled_bytes: int = 0


def _media_type(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return MT_LAYER + "+gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return MT_LAYER + "+zstd"
    return MT_LAYER


class _DiffHasher:
    """sha256 of the bytes as they come and of their decompressed form (the diff id)."""

    def __init__(self) -> None:
        self.raw = hashlib.sha256()
        self.diff = hashlib.sha256()
        self.media_type: str | None = None
        self.uncompressed = 0
        self._decomp: Any = None

    def update(self, data: bytes | memoryview) -> None:
        if self.media_type is None:
            self.media_type = _media_type(bytes(data[:4]))
            if self.media_type.endswith("+gzip"):
                self._decomp = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif self.media_type.endswith("+zstd"):
                import zstandard

                self._decomp = zstandard.ZstdDecompressor().decompressobj()
        self.raw.update(data)
        plain = self._decomp.decompress(data) if self._decomp else data
        self.diff.update(plain)
        self.uncompressed += len(plain)


def _blob_name(name: str) -> str | None:
    """'blobs/sha256/<hex>' -> 'sha256:<hex>'."""
    parts = name.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and len(parts[2]) == 64:
        return f"{parts[1]}:{parts[2]}"
    return None


def _is_layer_name(name: str) -> bool:
    # Legacy '<v1id>/layer.tar' and Podman's '<diffid>.tar'.
    return name.endswith("/layer.tar") or (name.endswith(".tar") and "/" not in name)


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
        self._layers: dict[str, LayerEntry] = {}
        self._sent_by_digest: dict[str, str] = {}  # blob digest -> output name: each blob goes once
        self._remaining = Counter(spec.unnamed)
        self._distrust = False
        # True while the chunks being yielded belong to an already compressed blob, so that
        # wire compression can store them instead of compressing them again.
        self.emitting_compressed = False

    # --- the input side -----------------------------------------------------------------

    def stream(self) -> Iterator[Buffer]:
        for entry in read_entries(self._reader):
            if not entry.is_file:
                continue
            yield from self._entry(entry)
        yield from self._finish()
        yield END_OF_ARCHIVE

    def _entry(self, entry: Entry) -> Iterator[Buffer]:
        name = entry.name
        diff = self.spec.named.get(name)
        if diff is not None:
            yield from self._layer(entry, diff, _blob_name(name) or diff, self._reader.iter_exact(entry.size))
            return
        blob: str | None = _blob_name(name)
        if (blob and entry.size <= SMALL_BLOB) or (not blob and not _is_layer_name(name)):
            data = self._reader.read_exact(entry.size)
            if not blob or data[:1] == b"{":
                self._small[name] = data
                if name.endswith("/json"):
                    self._check_legacy_prediction(name, data)
                return
            yield from self._unknown_layer(entry, blob, iter([memoryview(data)]), in_memory=True)
            return
        yield from self._unknown_layer(entry, blob, self._reader.iter_exact(entry.size), in_memory=False)

    def _check_legacy_prediction(self, name: str, data: bytes) -> None:
        """Legacy exports write '<v1id>/json' just before '<v1id>/layer.tar'. Lower layers carry the
        epoch as their creation time; one we did not predict means this engine computes v1 ids
        differently, so stop trusting the predicted names and treat their layers as unnamed."""
        if self._distrust or f"{name[: -len('json')]}layer.tar" in self.spec.named:
            return
        try:
            created = json.loads(data).get("created", "")
        except ValueError:
            return
        if created.startswith("1970-01-01T00:00:00"):
            self._distrust = True
            seen = {lay.diff_id for lay in self._layers.values()}
            self._remaining.update(d for d in self.spec.named.values() if d not in seen)

    def _unknown_layer(
        self, entry: Entry, blob: str | None, body: Iterator[memoryview], *, in_memory: bool
    ) -> LayerWriter:
        candidates = {d for d, n in self._remaining.items() if n > 0}
        may_skip = candidates & self.spec.skip
        if len(candidates) == 1 and not in_memory:
            diff = candidates.pop()
            return (yield from self._layer(entry, diff, blob or diff, body))
        if not may_skip and not in_memory and (blob or self.spec.output is OutputFormat.LEGACY):
            # Nothing still to come may be left out: send it now, learn which layer it is from manifest.json.
            return (yield from self._layer(entry, None, blob, body))
        return (yield from self._spooled_layer(entry, body))

    def _spooled_layer(self, entry: Entry, body: Iterator[memoryview]) -> LayerWriter:
        hasher = _DiffHasher()
        with tempfile.TemporaryFile(dir=self.spool_dir, prefix="d2d-spool-") as spool:
            for chunk in body:
                hasher.update(chunk)
                spool.write(chunk)
            self.result.spooled_bytes += entry.size
            diff = "sha256:" + hasher.diff.hexdigest()
            spool.seek(0)
            layer = yield from self._layer(
                entry, diff, "sha256:" + hasher.raw.hexdigest(), _read_file(spool), media_type=hasher.media_type
            )
            layer.uncompressed_size = hasher.uncompressed
            return layer

    def _layer(
        self,
        entry: Entry,
        diff: str | None,
        blob: str | None,
        body: Iterator[memoryview],
        media_type: str | None = None,
    ) -> LayerWriter:
        layer = LayerEntry(entry.name, entry.size, diff, blob)
        self._layers[entry.name] = layer
        if diff is not None and self._remaining[diff] > 0:
            self._remaining[diff] -= 1
        key = diff or blob or entry.name
        if (diff is not None and diff in self.spec.skip) or (blob is not None and blob in self._sent_by_digest):
            for _ in body:
                pass
            layer.out_name = self._sent_by_digest.get(blob or "")
            if layer.out_name is None:
                self.result.layers_skipped += 1
                self.result.bytes_skipped += entry.size
                self.progress.layer_skipped(key, entry.size)
            return layer
        layer.out_name = self._output_name(blob or diff or "", entry.name)
        if blob:
            self._sent_by_digest[blob] = layer.out_name
        self.progress.layer_started(key, entry.size)
        yield file_header(layer.out_name, entry.size)
        first = True
        for chunk in body:
            if first:
                layer.media_type = media_type or _media_type(bytes(chunk[:4]))
                self.emitting_compressed = layer.media_type != MT_LAYER
                first = False
            yield chunk
            self.progress.layer_advanced(key, len(chunk))
        self.emitting_compressed = False
        yield padding(entry.size)
        self.progress.layer_finished(key)
        self.result.layers_sent += 1
        self.result.bytes_sent += entry.size
        return layer

    def _output_name(self, digest: str, source_name: str) -> str:
        hexpart = digest.split(":")[-1] or hashlib.sha256(source_name.encode()).hexdigest()
        if self.spec.output is OutputFormat.OCI:
            return f"blobs/sha256/{hexpart}"
        return f"{hexpart}/layer.tar"

    # --- the end: manifests ---------------------------------------------------------------

    def _finish(self) -> Iterator[Buffer]:
        if "manifest.json" not in self._small:
            raise ArchiveError("the export has no manifest.json")
        try:
            manifest = json.loads(self._small["manifest.json"])
        except ValueError as exc:
            raise ArchiveError(f"the export's manifest.json is not JSON: {exc}") from exc
        self._collect_aliases()
        out_manifest: list[dict[str, Any]] = []
        index: list[dict[str, Any]] = []
        for item in manifest:
            config_name = item["Config"]
            config = self._small.get(config_name)
            if config is None:
                raise ArchiveError(f"the export lacks the config {config_name}")
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            diff_ids = tuple(json.loads(config)["rootfs"]["diff_ids"])
            if len(diff_ids) != len(item["Layers"]):
                raise ArchiveError(f"{config_name}: {len(item['Layers'])} layer files for {len(diff_ids)} layers")
            layers = [self._resolve(path, diff) for path, diff in zip(item["Layers"], diff_ids)]
            written = WrittenImage(config_digest, diff_ids)
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
            else:
                yield from file_entry(f"blobs/sha256/{config_digest[7:]}", config)
                oci_manifest = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": MT_MANIFEST,
                        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config)},
                        "layers": [_descriptor(lay) for lay in layers],
                    },
                    separators=(",", ":"),
                ).encode()
                digest = "sha256:" + hashlib.sha256(oci_manifest).hexdigest()
                yield from file_entry(f"blobs/sha256/{digest[7:]}", oci_manifest)
                index.append({"mediaType": MT_MANIFEST, "digest": digest, "size": len(oci_manifest)})
                written = WrittenImage(config_digest, diff_ids, digest)
            self.result.images.append(written)
        if self.spec.output is OutputFormat.LEGACY:
            yield from file_entry("manifest.json", json.dumps(out_manifest).encode())
        else:
            yield from file_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            yield from file_entry("index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())

    def _resolve(self, path: str, diff: str) -> LayerEntry:
        layer = self._layers.get(path)
        if layer is None:
            raise ArchiveError(f"the export lacks the layer file {path}")
        if layer.diff_id is None:
            layer.diff_id = diff
        elif layer.diff_id != diff:
            raise ArchiveError(f"layer file {path} holds {layer.diff_id}, the config says {diff}")
        if layer.out_name is None and layer.blob_digest in self._sent_by_digest:
            layer.out_name = self._sent_by_digest[layer.blob_digest]
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
            if isinstance(doc.get("config"), dict) and "digest" in doc["config"]:
                self.result.aliases[digest] = doc["config"]["digest"]
        for digest, doc in docs.items():
            # An index: it stands for its first manifest found here.
            manifests = doc.get("manifests")
            for desc in manifests if isinstance(manifests, list) else []:
                if isinstance(desc, dict) and desc.get("digest") in self.result.aliases:
                    self.result.aliases[digest] = self.result.aliases[desc["digest"]]
                    break


def _descriptor(layer: LayerEntry) -> dict[str, Any]:
    if layer.out_name is None:
        # Left out: the destination must find it under its uncompressed digest.
        size = layer.uncompressed_size if layer.uncompressed_size is not None else layer.size
        return {"mediaType": MT_LAYER, "digest": layer.diff_id, "size": size}
    return {"mediaType": layer.media_type, "digest": layer.blob_digest or layer.diff_id, "size": layer.size}


def _read_file(f: BinaryIO) -> Iterator[memoryview]:
    while chunk := f.read(CHUNK):
        yield memoryview(chunk)
