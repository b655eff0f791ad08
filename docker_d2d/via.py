"""`--via REGISTRY`: push the blobs the registry lacks once, then have each destination pull.

The source's export goes through the same one-pass rewrite as a direct copy, written as an OCI
layout that leaves out the layers the registry already holds; each blob of that stream is uploaded
as it passes (nothing is spooled), and each image's manifest is put under a tag named after the
source image id. Each destination then pulls through its Engine API, is verified like a load, gets
the requested tags, and loses the registry's name again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .archive import MT_MANIFEST, SMALL_BLOB, Rewriter, _blob_name
from .copy import apply_tags
from .engine import Engine
from .errors import VerifyError
from .job import CopyResult, Reporter, Requested
from .model import EngineKind, ImageInfo, short
from .plan import Holdings, plan_transfer, stream_spec
from .registry import Registry
from .spool import private_dir
from .tarstream import ChunkReader, read_entries


@dataclass(frozen=True)
class Pushed:
    """One image in the registry: where, and what a destination must end up with."""

    ref: str  # host/repository
    tag: str
    config_digest: str
    manifest_digest: str


@dataclass
class PushResult:
    images: dict[str, Pushed]  # source id -> where it is in the registry
    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_there: int = 0


def push_to_registry(
    src: Engine,
    requested: Sequence[Requested],
    registry: Registry,
    reporter: Reporter,
    spool_dir: Path | None,
    decompress_zstd: bool = False,
) -> PushResult:
    """`decompress_zstd`: some destination cannot take zstd layers (compress.accepts_zstd_layers),
    so the source's zstd blobs go to the registry as the tars they inflate to, for every one."""
    assert src.info is not None
    images = list({info.id: info for _, info, _ in requested}.values())
    diff_ids = list(dict.fromkeys(d for image in images for d in image.diff_ids))
    with ThreadPoolExecutor(max_workers=8) as pool:
        present = {d for d, there in zip(diff_ids, pool.map(registry.has_blob, diff_ids)) if there}
    # The registry reuses a layer by its digest, as Podman and the containerd store do.
    plan = plan_transfer(requested, src.info.kind, Holdings(EngineKind.PODMAN, frozenset(), frozenset(present), ()))
    spec = stream_spec(plan, src.info, EngineKind.PODMAN, decompress_zstd=decompress_zstd)
    result = PushResult({}, blobs_there=len(present))
    small: dict[str, bytes] = {}
    with (
        private_dir(spool_dir) as spool,
        src.save([i.id for i in images]) as raw,
    ):
        rewriter = Rewriter(raw, spec, reporter, spool)
        reader = ChunkReader(iter(rewriter.stream()))  # type: ignore[arg-type]
        for entry in read_entries(reader):
            digest = _blob_name(entry.name)
            if digest is None:
                reader.skip(entry.size)  # index.json, oci-layout: the manifests are put below
                continue
            if entry.size <= SMALL_BLOB:
                data = small[digest] = reader.read_exact(entry.size)
                if digest in present or _is_manifest(data):
                    continue
                registry.upload_blob(digest, [data])
            elif digest in present or registry.has_blob(digest):
                reader.skip(entry.size)
                continue
            else:
                registry.upload_blob(digest, reader.iter_exact(entry.size))  # type: ignore[arg-type]
            result.blobs_sent += 1
            result.bytes_sent += entry.size
    written = {w.config_digest: w for w in rewriter.result.images}
    for image in images:
        config = image.id if src.info.kind is not EngineKind.CONTAINERD else rewriter.result.aliases.get(image.id)
        w = written.get(config or "")
        if w is None or w.manifest_digest is None:
            raise VerifyError(f"image {short(image.id)} is missing from the source's export", side="source")
        tag = "d2d-" + image.id.split(":")[-1]
        registry.put_manifest(tag, MT_MANIFEST, small[w.manifest_digest])
        where = f"{registry.ref.host}/{registry.ref.repository}"
        result.images[image.id] = Pushed(where, tag, w.config_digest, w.manifest_digest)
    return result


def _is_manifest(data: bytes) -> bool:
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("mediaType") == MT_MANIFEST


def pull_from_registry(
    dst: Engine, result: CopyResult, pushed: PushResult, auth: str | None, reporter: Reporter
) -> None:
    """Pull, verify against the source, tag as asked, drop the registry's name."""
    assert dst.info is not None
    dest_ids = {p.source.id: p.present_as for p in result.plan.images if p.present_as}
    pulled = []
    for image in result.plan.exported:
        if image.source.id in dest_ids:
            continue
        where = pushed.images[image.source.id]
        name = f"{where.ref}:{where.tag}"
        statuses = [str(m.get("status", "")) for m in dst.pull(where.ref, where.tag, auth) if m.get("id")]
        # Docker says "Pull complete" and "Already exists" per layer; Podman says neither.
        fetched, there = statuses.count("Pull complete"), statuses.count("Already exists")
        counts = f" ({fetched} layer(s) downloaded, {there} already there)" if fetched or there else ""
        reporter.note(f"pulled {image.ref.raw} from {name}{counts}")
        pulled.append(name)
        loaded = dst.inspect(name)
        expected = where.manifest_digest if dst.info.kind is EngineKind.CONTAINERD else where.config_digest
        _verify_pulled(dst, image.source, loaded, expected)
        dest_ids[image.source.id] = loaded.id
    apply_tags(dst, result, dest_ids)
    if not result.untagged:  # an untagged result keeps the registry's name: it is the image's only one
        for name in pulled:
            dst.untag(name)


def _verify_pulled(dst: Engine, source: ImageInfo, loaded: ImageInfo, expected_id: str) -> None:
    if loaded.id != expected_id or loaded.diff_ids != source.diff_ids:
        raise VerifyError(
            f"the image pulled from the registry is {short(loaded.id)} with layers "
            f"{[short(d) for d in loaded.diff_ids]}; expected {short(expected_id)} with the source's",
            side="destination",
            endpoint=str(dst.endpoint),
        )
