"""OCI-layout exports: Docker >= 25 with a graphdriver (layers as uncompressed blobs named by their
diff ids) and the containerd image store (blobs as the store holds them, often compressed, and
other platforms' blobs beside); both with manifest.json. Their manifests tell which config an
image id names and how the source holds each layer."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Any

from ..entries import RewriteResult
from ..oci import blob_name, blob_path
from ..tarstream import ChunkReader, read_entries
from .base import SaveFormat


class OciLayout(SaveFormat):
    @staticmethod
    def expected_names(images: Sequence[Sequence[str]]) -> tuple[dict[str, str], list[str]]:
        return {blob_path(d): d for diff_ids in images for d in diff_ids}, []

    def claims(self, name: str) -> tuple[str | None, str | None]:
        blob = blob_name(name)
        return (blob, None) if blob and blob.startswith("sha256:") else (None, None)


class ContainerdStore(OciLayout):
    @staticmethod
    def expected_names(images: Sequence[Sequence[str]]) -> tuple[dict[str, str], list[str]]:
        named, _ = OciLayout.expected_names(images)
        # The content store may hold any layer compressed, under a digest we cannot predict.
        return named, sorted({d for diff_ids in images for d in diff_ids})


def collect_aliases(documents: Mapping[str, bytes], result: RewriteResult) -> None:
    """From the export's OCI manifests and indexes: which config each manifest or index digest
    names (`result.aliases`), and the source's descriptor of each layer (`result.source_layers`)."""
    docs: dict[str, dict[str, Any]] = {}
    for name, data in documents.items():
        digest = blob_name(name)
        try:
            doc = json.loads(data) if digest else None
        except ValueError:
            continue
        if digest and isinstance(doc, dict):
            docs[digest] = doc
    for digest, doc in docs.items():
        # An OCI/Docker manifest; legacy v1 json blobs also have a "config", without a digest.
        if isinstance(doc.get("config"), dict) and isinstance(doc["config"].get("digest"), str):
            result.aliases[digest] = doc["config"]["digest"]
            _collect_layers(doc, docs.get(doc["config"]["digest"]), result)
    for digest, doc in docs.items():
        # An index: it stands for its first manifest found here.
        manifests = doc.get("manifests")
        for desc in manifests if isinstance(manifests, list) else []:
            if isinstance(desc, dict) and isinstance(desc.get("digest"), str) and desc["digest"] in result.aliases:
                result.aliases[digest] = result.aliases[desc["digest"]]
                break


def _collect_layers(manifest: dict[str, Any], config: dict[str, Any] | None, result: RewriteResult) -> None:
    try:
        diff_ids = config["rootfs"]["diff_ids"] if config else []
        layers = manifest.get("layers") or []
        if len(diff_ids) != len(layers):
            return
        for diff, desc in zip(diff_ids, layers):
            if isinstance(diff, str) and isinstance(desc, dict) and {"mediaType", "digest", "size"} <= set(desc):
                result.source_layers.setdefault(diff, {k: desc[k] for k in ("mediaType", "digest", "size")})
    except (KeyError, TypeError):
        return  # not an image manifest we understand: its layers are named uncompressed


class Blob:
    """One blob of an OCI layout as it passes: `read()` its bytes, or leave them (they are skipped)."""

    def __init__(self, tar: ChunkReader, digest: str, size: int) -> None:
        self.digest, self.size = digest, size
        self._tar = tar
        self.read_already = False

    def read(self) -> bytes:
        self.read_already = True
        return self._tar.read_exact(self.size)


def blobs(chunks: Iterator[bytes]) -> Iterator[Blob]:
    """The blobs of an OCI-layout stream (an export of the containerd store), in the order they come."""
    tar = ChunkReader(chunks)
    for entry in read_entries(tar):
        digest = blob_name(entry.name)
        if digest is None:
            tar.skip(entry.size)
            continue
        blob = Blob(tar, digest, entry.size)
        yield blob
        if not blob.read_already:
            tar.skip(entry.size)


def layer_sizes(data: bytes, wanted: Set[str]) -> dict[str, int]:
    """The sizes an image manifest gives the wanted layer digests; nothing when `data` is no manifest."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return {}  # a small layer, not a manifest
    layers = doc.get("layers") if isinstance(doc, dict) else None
    return {
        d["digest"]: d["size"]
        for d in (layers if isinstance(layers, list) else [])
        if isinstance(d, dict) and d.get("digest") in wanted and isinstance(d.get("size"), int) and d["size"] > 0
    }
