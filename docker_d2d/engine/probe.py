"""Ask a containerd-store engine under which digest it holds a layer's blob.

The Engine API cannot list blobs (docker/roadmap #842). A probe can: a tiny image (a config
and a manifest, no layer data) whose manifest names candidate digests for a prefix of an
image's layers, loaded, checked for completeness and removed. The store imports it whatever
it holds; the image is complete exactly when every named blob is there. The probe's layers
are the image's own lower layers in their order, so the store already has their snapshots
and unpacks nothing (a chain it lacked would be unpacked, or fail the load).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence

from ..errors import D2DError, EngineError
from ..formats.oci import Descriptor
from ..formats.readers.export import SMALL_BLOB
from ..formats.readers.oci import blobs, layer_sizes
from ..formats.writers import oci_archive
from ..model import ImageInfo, Platform
from .protocol import DestinationEngine


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
    return oci_archive(config, [{k: d[k] for k in ("mediaType", "digest", "size")} for d in layers])


def holds(dst: DestinationEngine, diff_ids: Sequence[str], layers: Sequence[Descriptor]) -> bool:
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
    dst: DestinationEngine, diff_ids: Sequence[str], candidates: Mapping[str, Sequence[Descriptor]]
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


def held_sizes(dst: DestinationEngine, held: Sequence[ImageInfo], diff_ids: Iterable[str]) -> dict[str, int]:
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
                _read_sizes(raw, wanted, sizes)
        except D2DError:
            continue  # e.g. an image whose own export breaks: another may tell
        if wanted <= sizes.keys():
            break
    return sizes


def _read_sizes(raw: Iterator[bytes], wanted: set[str], sizes: dict[str, int]) -> None:
    for blob in blobs(raw):
        if blob.digest in wanted and blob.size:
            sizes[blob.digest] = blob.size  # its header tells: the body need not be read
        elif blob.size <= SMALL_BLOB:
            sizes.update(layer_sizes(blob.read(), wanted - sizes.keys()))
        if wanted <= sizes.keys():
            return


def _unique(descs: Sequence[Descriptor]) -> Iterator[Descriptor]:
    seen: set[str] = set()
    for d in descs:
        if d["digest"] not in seen:
            seen.add(d["digest"])
            yield d
