"""Ask a containerd-store engine under which digest it holds a layer's blob.

The Engine API cannot list blobs (docker/roadmap #842). A probe can: a tiny image (a config
and a manifest, no layer data) whose manifest names candidate digests for a prefix of an
image's layers, loaded, checked for completeness and removed. The store imports it whatever
it holds; the image is complete exactly when every named blob is there. The probe's layers
are the image's own lower layers in their order, so the store already has their snapshots
and unpacks nothing (a chain it lacked would be unpacked, or fail the load).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .archive import MT_CONFIG, MT_LAYER, MT_MANIFEST, SMALL_BLOB, _blob_name
from .engine import Engine
from .errors import D2DError, EngineError
from .model import ImageInfo, Platform
from .tarstream import END_OF_ARCHIVE, ChunkReader, file_entry, read_entries

Descriptor = dict[str, Any]  # an OCI descriptor: mediaType, digest, size


def uncompressed(diff_id: str, size: int = 0) -> Descriptor:
    return {"mediaType": MT_LAYER, "digest": diff_id, "size": size}


def probe_archive(platform: Platform, diff_ids: Sequence[str], layers: Sequence[Descriptor]) -> tuple[bytes, str]:
    """An OCI archive holding only a config and a manifest; returns it and the manifest digest.
    A random label makes the probe an image no engine holds yet."""
    config = json.dumps(
        {
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Labels": {"org.docker-d2d.probe": uuid.uuid4().hex}},
            "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{k: d[k] for k in ("mediaType", "digest", "size")} for d in layers],
        }
    ).encode()
    digest = _digest(manifest)
    index = json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": MT_MANIFEST, "digest": digest, "size": len(manifest)}]}
    ).encode()
    parts: list[bytes] = []
    for name, data in (
        (f"blobs/sha256/{_digest(config)[7:]}", config),
        (f"blobs/sha256/{digest[7:]}", manifest),
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", index),
    ):
        parts.extend(file_entry(name, data))
    parts.append(END_OF_ARCHIVE)
    return b"".join(parts), digest


def holds(dst: Engine, diff_ids: Sequence[str], layers: Sequence[Descriptor]) -> bool:
    """Whether `dst` holds every blob `layers` names (for the layer chain `diff_ids`)."""
    assert dst.info is not None
    archive, digest = probe_archive(dst.info.platform, diff_ids, layers)
    try:
        dst.load([archive])
        return dst.image_complete(digest)
    except EngineError:
        return False  # e.g. "failed to unpack": a blob is missing where no snapshot stands in
    finally:
        dst.remove(digest)


def held_as(
    dst: Engine, diff_ids: Sequence[str], candidates: Mapping[str, Sequence[Descriptor]]
) -> dict[str, Descriptor]:
    """For a prefix of an image's layers that `dst` holds as snapshots, the candidate each
    layer's blob is held under. One probe when the first candidates are all right; else one
    per layer and candidate, in order, up to the first layer held under none (the layers
    above it cannot be probed: their probe would lack that blob too). Layers not found are
    absent from the answer."""
    first = [candidates[d][0] for d in diff_ids]
    if not diff_ids or holds(dst, diff_ids, first):
        return dict(zip(diff_ids, first))
    found: dict[str, Descriptor] = {}
    for i, diff in enumerate(diff_ids):
        below = [found[d] for d in diff_ids[:i]]
        hit = next((c for c in _unique(candidates[diff]) if holds(dst, diff_ids[: i + 1], [*below, c])), None)
        if hit is None:
            break
        found[diff] = hit
    return found


def held_sizes(dst: Engine, held: Sequence[ImageInfo], diff_ids: Iterable[str]) -> dict[str, int]:
    """The sizes of the uncompressed blobs (named by their diff ids) the store holds, which no probe
    tells: from its own export of images that hold them, a blob's entry header or an image manifest
    naming it, whichever comes first (blobs come in lexical order); the rest of the export is not
    read. Layers not found are absent from the answer."""
    wanted = set(diff_ids)
    sizes: dict[str, int] = {}
    for image in sorted(held, key=lambda i: len(i.diff_ids)):  # small images first: less to read
        if not (wanted - sizes.keys()) & set(image.diff_ids):
            continue
        try:
            with dst.save([image.id]) as raw:
                _read_sizes(ChunkReader(raw), wanted, sizes)
        except D2DError:
            continue  # e.g. an image whose own export breaks: another may tell
        if wanted <= sizes.keys():
            break
    return sizes


def _read_sizes(reader: ChunkReader, wanted: set[str], sizes: dict[str, int]) -> None:
    for entry in read_entries(reader):
        digest = _blob_name(entry.name)
        if digest in wanted and entry.size:
            sizes[digest] = entry.size  # its header tells: the body need not be read
        elif digest and entry.size <= SMALL_BLOB:
            sizes.update(_manifest_sizes(reader.read_exact(entry.size), wanted - sizes.keys()))
            if wanted <= sizes.keys():
                return
            continue
        if wanted <= sizes.keys():
            return
        reader.skip(entry.size)


def _manifest_sizes(data: bytes, wanted: set[str]) -> dict[str, int]:
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


def _unique(descs: Sequence[Descriptor]) -> Iterator[Descriptor]:
    seen: set[str] = set()
    for d in descs:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            yield d


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
