"""Orchestration: endpoints -> engines -> plan -> archive stream -> load -> verify -> tags.

Every command (copy, push, pull) comes through `copy_images`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .archive import Progress, Rewriter, RewriteResult, StreamSpec, WrittenImage
from .compress import Compression, Counted, choose, compressed
from .endpoint import Endpoint, Scheme
from .engine import Engine
from .errors import D2DError, ImageNotFound, VerifyError
from .model import EngineInfo, EngineKind, ImageInfo, ImageRef, as_id_ref, could_be_id, parse_ref, short
from .plan import ImagePlan, TransferPlan, holdings, layer_sizes, plan_transfer, stream_spec
from .prefetch import prefetch
from .remote import RemoteFilter


class Reporter(Progress, Protocol):
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None: ...
    def planned(self, plan: TransferPlan) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class CopyOptions:
    dry_run: bool = False
    spool_dir: Path | None = None
    compress: Compression = Compression.AUTO
    remote_filter: RemoteFilter = RemoteFilter.AUTO


@dataclass
class CopyResult:
    plan: TransferPlan
    source: EngineInfo
    destination: EngineInfo
    transfers: list[RewriteResult] = field(default_factory=list)
    tagged: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)  # "<ref> -> <id>" for digest and id references
    elapsed: float = 0.0
    compression: Compression = Compression.NONE
    wire_bytes: int = 0  # what the load requests carried, after compression

    @property
    def bytes_sent(self) -> int:
        return sum(t.bytes_sent for t in self.transfers)


def copy_images(
    source: Endpoint,
    destination: Endpoint,
    refs: Sequence[str],
    reporter: Reporter,
    options: CopyOptions | None = None,
) -> CopyResult:
    options = options or CopyOptions()
    started = time.monotonic()
    parsed = [parse_ref(r) for r in refs]
    try:
        return _copy(source, destination, parsed, reporter, options, started)
    finally:
        from .transport.ssh import close_all

        close_all()


def _copy(
    source: Endpoint,
    destination: Endpoint,
    parsed: list[ImageRef],
    reporter: Reporter,
    options: CopyOptions,
    started: float,
) -> CopyResult:
    with Engine(source, "source") as src, Engine(destination, "destination") as dst:
        src_info = src.connect()
        reporter.connected("source", source, src_info)
        dst_info = dst.connect()
        reporter.connected("destination", destination, dst_info)
        requested = [_resolve(src, ref) for ref in parsed]
        plan = plan_transfer(requested, src_info.kind, holdings(dst_info.kind, dst.all_images()))
        reporter.planned(plan)
        result = CopyResult(plan, src_info, dst_info, compression=choose(options.compress, destination, dst_info))
        if options.dry_run:
            result.elapsed = time.monotonic() - started
            return result
        dest_ids = {p.source.id: p.present_as for p in plan.images if p.present_as}
        if plan.exported:
            dest_ids.update(_transfer_and_verify(src, dst, plan, reporter, options, result))
        for image in plan.images:
            dest_id = dest_ids[image.source.id]
            if image.ref.tagged:
                dst.tag(dest_id, image.ref.repository, image.ref.tag)
                result.tagged.append(image.ref.tagged)
            else:
                result.untagged.append(f"{image.ref.raw} -> {short(dest_id)}")
    result.elapsed = time.monotonic() - started
    return result


def _resolve(src: Engine, ref: ImageRef) -> tuple[ImageRef, ImageInfo, tuple[int | None, ...]]:
    try:
        image = src.inspect(ref.raw)
    except ImageNotFound as exc:
        raise ImageNotFound(f"no such image: {ref.raw}", side=exc.side, endpoint=exc.endpoint) from None
    if could_be_id(ref) and ref.tagged not in image.repo_tags and f"localhost/{ref.tagged}" not in image.repo_tags:
        ref = as_id_ref(ref)  # a bare hex string that matched an id, not a name
    return ref, image, layer_sizes(src.history_sizes(image.id), len(image.diff_ids))


def _transfer_and_verify(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> dict[str, str]:
    assert src.info and dst.info
    dest_ids: dict[str, str] = {}
    for batch in _batches(plan, dst.info.kind):
        # Layers loaded by an earlier batch are at the destination now.
        skip = batch.skip | frozenset(d for p in plan.exported if p.source.id in dest_ids for d in p.source.diff_ids)
        spec = stream_spec(batch, src.info, dst.info.kind, skip=skip)
        dest_ids.update(_load_batch(src, dst, batch, spec, reporter, options, result))
    return dest_ids


def _batches(plan: TransferPlan, dest: EngineKind) -> list[TransferPlan]:
    """One archive for all images, except for Podman 4, which loads one image per OCI archive."""
    if dest is not EngineKind.PODMAN:
        return [TransferPlan(plan.exported)]
    by_id: dict[str, list[ImagePlan]] = {}
    for image in plan.exported:
        by_id.setdefault(image.source.id, []).append(image)
    return [TransferPlan(tuple(images)) for images in by_id.values()]


def _load_batch(
    src: Engine,
    dst: Engine,
    batch: TransferPlan,
    spec: StreamSpec,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> dict[str, str]:
    assert src.info and dst.info
    rewritten = _transfer(src, dst, batch, spec, reporter, options, result)
    result.transfers.append(rewritten)
    dest_ids = _verify(dst, batch, src.info.kind, rewritten)
    incomplete = _incomplete(dst, dest_ids.values())
    if incomplete and spec.skip:
        # The containerd store took the thin archive but lacks some left-out layers under their
        # uncompressed digest (e.g. it holds them compressed, from a registry or its own builds):
        # the image is incomplete. Send every layer so that no image stays incomplete.
        reporter.note(
            "the destination's content store lacks some left-out layers under their uncompressed digest; "
            "sending the image whole"
        )
        full = StreamSpec(spec.output, frozenset(), spec.named, spec.unnamed)
        rewritten = _transfer(src, dst, batch, full, reporter, options, result)
        result.transfers.append(rewritten)
        dest_ids = _verify(dst, batch, src.info.kind, rewritten)
        incomplete = _incomplete(dst, dest_ids.values())
    if incomplete:
        raise VerifyError(
            f"the loaded image {short(incomplete[0])} is incomplete (the engine does not list it)",
            side="destination",
            endpoint=str(dst.endpoint),
        )
    return dest_ids


def _incomplete(dst: Engine, ids: Iterable[str]) -> list[str]:
    """The containerd store loads a thin archive 'successfully' even when it lacks left-out
    blobs, and then hides the image from its list: that is how we tell."""
    if dst.info is None or dst.info.kind is not EngineKind.CONTAINERD:
        return []
    listed = set(dst.list_image_ids())
    return [i for i in set(ids) if i not in listed]


def _transfer(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    spec: StreamSpec,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> RewriteResult:
    ids = list(dict.fromkeys(p.source.id for p in plan.exported))
    if src.endpoint.scheme is Scheme.SSH:
        from .remote.run import remote_transfer

        filtered = remote_transfer(src, dst, plan, ids, spec, reporter, options, result)
        if filtered is not None:
            return filtered
    with (
        tempfile.TemporaryDirectory(prefix="d2d-", dir=options.spool_dir) as spool,
        src.save(ids) as raw,
        prefetch(raw) as chunks,
    ):
        rewriter = Rewriter(chunks, spec, reporter, Path(spool))
        wire = Counted()
        try:
            dst.load(compressed(rewriter.stream(), result.compression, wire, lambda: rewriter.emitting_compressed))
        except D2DError as exc:
            # Raised inside the body generator (the source's stream or its archive) unless named already.
            raise exc.with_side("source", str(src.endpoint)) from exc
        finally:
            result.wire_bytes += wire.bytes
    return rewriter.result


def _verify(dst: Engine, plan: TransferPlan, source_kind: EngineKind, rewritten: RewriteResult) -> dict[str, str]:
    """Check that the destination holds each image with the source's config and layers;
    return source id -> destination id."""
    written = {w.config_digest: w for w in rewritten.images}
    dest_ids: dict[str, str] = {}
    for image in plan.exported:
        config = image.source.id if source_kind is not EngineKind.CONTAINERD else rewritten.aliases.get(image.source.id)
        w = written.get(config or "")
        if w is None:
            w = _only_match(rewritten, image)
        if w.diff_ids != image.source.diff_ids:
            raise VerifyError(f"{image.ref}: the export's layers differ from the source's inspect", side="source")
        dest_id = w.manifest_digest if dst.info and dst.info.kind is EngineKind.CONTAINERD else w.config_digest
        assert dest_id
        loaded = dst.find(dest_id)
        if loaded is None:
            raise VerifyError(
                f"{image.ref}: image {short(dest_id)} is not there after the load",
                side="destination",
                endpoint=str(dst.endpoint),
            )
        if loaded.diff_ids != image.source.diff_ids:
            raise VerifyError(
                f"{image.ref}: the loaded image has layers {[short(d) for d in loaded.diff_ids]}, "
                f"the source {[short(d) for d in image.source.diff_ids]}",
                side="destination",
                endpoint=str(dst.endpoint),
            )
        dest_ids[image.source.id] = loaded.id
    return dest_ids


def _only_match(rewritten: RewriteResult, image: ImagePlan) -> WrittenImage:
    matches = [w for w in rewritten.images if w.diff_ids == image.source.diff_ids]
    if len(matches) != 1:
        raise VerifyError(f"{image.ref}: cannot find the image in the source's export", side="source")
    return matches[0]
