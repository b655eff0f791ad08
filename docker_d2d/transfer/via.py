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
from pathlib import Path

from ..engine.protocol import DestinationEngine, SourceEngine
from ..errors import VerifyError
from ..formats.digests import short
from ..formats.entries import OutFile
from ..formats.oci import MT_MANIFEST, blob_name
from ..formats.readers.export import SMALL_BLOB
from ..formats.rewrite import Rewriter
from ..model import EngineKind, ImageInfo
from ..registry.client import Registry
from .job import CopyResult, Pushed, PushResult, Reporter, Requested
from .plan import Holdings, plan_transfer
from .spec import stream_spec
from .spool import private_dir
from .transfer import apply_tags


def push_to_registry(
    src: SourceEngine,
    requested: Sequence[Requested],
    registry: Registry,
    reporter: Reporter,
    spool_dir: Path | None,
    decompress_zstd: bool = False,
) -> PushResult:
    """`decompress_zstd`: some destination cannot take zstd layers (compress.py accepts_zstd_layers),
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
        for out in rewriter.files():  # the OCI layout the rewrite writes, file by file
            digest = blob_name(out.name) if isinstance(out, OutFile) else None
            if not isinstance(out, OutFile) or digest is None:
                continue  # index.json, oci-layout: the manifests are put below
            if out.size <= SMALL_BLOB:
                data = small[digest] = b"".join(bytes(c) for c in out.body)
                if digest in present or _is_manifest(data):
                    continue
                registry.upload_blob(digest, [data])
            elif digest in present or registry.has_blob(digest):
                continue  # (the rewrite reads what is left of its body)
            else:
                registry.upload_blob(digest, out.body)  # type: ignore[arg-type]  # httpx writes any buffer
            result.blobs_sent += 1
            result.bytes_sent += out.size
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
    dst: DestinationEngine, result: CopyResult, pushed: PushResult, auth: str | None, reporter: Reporter
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
        by_manifest = dst.info.kind in (EngineKind.CONTAINERD, EngineKind.NODE)
        expected = where.manifest_digest if by_manifest else where.config_digest
        _verify_pulled(dst, image.source, loaded, expected)
        dest_ids[image.source.id] = loaded.id
    apply_tags(dst, result, dest_ids)
    if not result.untagged:  # an untagged result keeps the registry's name: it is the image's only one
        for name in pulled:
            dst.untag(name)


def _verify_pulled(dst: DestinationEngine, source: ImageInfo, loaded: ImageInfo, expected_id: str) -> None:
    if loaded.id != expected_id or loaded.diff_ids != source.diff_ids:
        raise VerifyError(
            f"the image pulled from the registry is {short(loaded.id)} with layers "
            f"{[short(d) for d in loaded.diff_ids]}; expected {short(expected_id)} with the source's",
            side="destination",
            endpoint=str(dst.endpoint),
        )
