"""Orchestration: endpoints -> engines -> plan -> archive stream -> load -> verify -> tags.

Every command (copy, push, pull) comes through `copy_images`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from .archive import Progress, Rewriter, RewriteResult, StreamSpec, WrittenImage
from .compress import Compression, Counted, choose, compressed
from .endpoint import Endpoint
from .engine import Engine
from .errors import ArchiveError, D2DError, EngineError, ImageNotFound, PlatformError, VerifyError
from .model import (
    EngineInfo,
    EngineKind,
    ImageInfo,
    ImageRef,
    Platform,
    as_id_ref,
    could_be_id,
    parse_ref,
    short,
)
from .plan import ImagePlan, TransferPlan, holdings, layer_sizes, plan_transfer, stream_spec
from .prefetch import prefetch
from .probe import Descriptor, held_as, uncompressed
from .registry import layer_descriptors


class Reporter(Progress, Protocol):
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None: ...
    def planned(self, plan: TransferPlan) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass(frozen=True)
class CopyOptions:
    dry_run: bool = False
    spool_dir: Path | None = None
    compress: Compression = Compression.AUTO
    platform: Platform | None = None  # of a multi-platform image; default: the destination's


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
    # Every rewrite begun, also those whose load failed: what a failed run may have to remove.
    begun: list[RewriteResult] = field(default_factory=list, repr=False)

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
        platform = options.platform or dst_info.platform
        requested = [_resolve(src, ref, platform, explicit=options.platform is not None) for ref in parsed]
        held = dst.all_images()
        plan = plan_transfer(requested, src_info.kind, holdings(dst_info.kind, held))
        reporter.planned(plan)
        result = CopyResult(plan, src_info, dst_info, compression=choose(options.compress, destination, dst_info))
        if options.dry_run:
            result.elapsed = time.monotonic() - started
            return result
        dest_ids = {p.source.id: p.present_as for p in plan.images if p.present_as}
        if plan.exported:
            dest_ids.update(_transfer_and_verify(src, dst, plan, held, reporter, options, result))
        for image in plan.images:
            dest_id = dest_ids[image.source.id]
            if image.ref.tagged:
                dst.tag(dest_id, image.ref.repository, image.ref.tag)
                result.tagged.append(image.ref.tagged)
            else:
                result.untagged.append(f"{image.ref.raw} -> {short(dest_id)}")
    result.elapsed = time.monotonic() - started
    return result


def _resolve(
    src: Engine, ref: ImageRef, platform: Platform, *, explicit: bool
) -> tuple[ImageRef, ImageInfo, tuple[int | None, ...]]:
    try:
        image = src.inspect(ref.raw)
    except ImageNotFound as exc:
        raise ImageNotFound(f"no such image: {ref.raw}", side=exc.side, endpoint=exc.endpoint) from None
    if could_be_id(ref) and ref.tagged not in image.repo_tags and f"localhost/{ref.tagged}" not in image.repo_tags:
        ref = as_id_ref(ref)  # a bare hex string that matched an id, not a name
    assert src.info
    if src.info.kind is EngineKind.CONTAINERD:
        image = _one_platform(src, ref, image, platform, explicit)
        if image.export_platform:
            sizes = src.history_sizes(image.export_as, image.export_platform)
            return ref, image, layer_sizes(sizes, len(image.diff_ids))
    return ref, image, layer_sizes(src.history_sizes(image.id), len(image.diff_ids))


def _one_platform(src: Engine, ref: ImageRef, image: ImageInfo, platform: Platform, explicit: bool) -> ImageInfo:
    """At a containerd store only one platform travels: the one asked for, else the destination's.
    A single-platform image of another platform goes as it is unless a platform was asked for."""
    assert src.info
    if not src.speaks("1.49"):
        # Inspect and export answer for the engine's own platform; the stream is filtered to it.
        if image.platform and platform.matches(image.platform.as_json()):
            return image
        if explicit:
            raise PlatformError(
                f"{ref.raw}: the source engine (API {src.server_api}) exports one platform only as its own "
                f"({image.platform}), not {platform}; use Docker 28.5 or later there, or copy without --platform",
                side="source",
                endpoint=str(src.endpoint),
            )
        return image
    described = src.inspect_platform(image.id, None)
    try:
        chosen = src.inspect_platform(image.id, platform)
    except ImageNotFound:
        if not explicit and not described.is_index:
            return image
        raise PlatformError(
            f"{ref.raw} has no content for {platform} at the source "
            f"(run `docker pull --platform {platform} {ref.raw}` there)",
            side="source",
            endpoint=str(src.endpoint),
        ) from None
    return replace(chosen, export_as=image.id, export_platform=platform)


def _transfer_and_verify(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    held: Sequence[ImageInfo],
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
        if src.info.kind is EngineKind.CONTAINERD and not _save_platform(batch):
            # The export holds every platform present; only the images' own layers travel.
            spec = replace(spec, keep=frozenset(d for p in batch.exported for d in p.source.diff_ids))
        dest_ids.update(_load_batch(src, dst, batch, spec, held, reporter, options, result))
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
    held: Sequence[ImageInfo],
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> dict[str, str]:
    assert src.info and dst.info
    if dst.info.kind is not EngineKind.CONTAINERD:
        rewritten = _transfer(src, dst, batch, spec, reporter, options, result)
        result.transfers.append(rewritten)
        return _verify(dst, batch, src.info.kind, rewritten)
    before = set(dst.list_image_ids())
    if spec.skip:
        spec = _name_left_out(src, dst, batch, spec, held, reporter)
    try:
        rewritten = _transfer(src, dst, batch, spec, reporter, options, result)
        result.transfers.append(rewritten)
        rewritten = _complete(src, dst, batch, spec, held, rewritten, reporter, options, result)
        return _verify(dst, batch, src.info.kind, rewritten)
    except D2DError:
        # Leave no incomplete or unverified image of ours behind (a tagged image stays tagged).
        for transfer in result.begun:
            for image in transfer.images:
                if image.manifest_digest and image.manifest_digest not in before:
                    dst.remove(image.manifest_digest)
        raise


def _probe(
    dst: Engine, held: Sequence[ImageInfo], wanted: frozenset[str], candidates: Callable[[str], list[Descriptor]]
) -> dict[str, Descriptor]:
    """Which digest the store holds each wanted layer under. Probes name a prefix of one of the
    store's own images, whose snapshots it has, so nothing is unpacked (see probe.py)."""
    found: dict[str, Descriptor] = {}
    tried: set[tuple[str, ...]] = set()
    for image in sorted(held, key=lambda i: len(i.diff_ids)):  # short prefixes: fewer other layers to name
        while True:
            open_ = [i for i, d in enumerate(image.diff_ids) if d in wanted and d not in found]
            prefix = tuple(image.diff_ids[: open_[-1] + 1]) if open_ else ()
            if not prefix or prefix in tried:
                break
            tried.add(prefix)
            found.update(held_as(dst, prefix, {d: [found[d]] if d in found else candidates(d) for d in prefix}))
    return {d: desc for d, desc in found.items() if d in wanted}


def _chain_held(batch: TransferPlan, held: Sequence[ImageInfo]) -> frozenset[str]:
    """Layers the store holds as snapshots under the same parents in every image of the batch:
    naming such a layer by a digest the store lacks leaves an incomplete image, any other fails
    the load (the store then needs the blob to unpack it)."""
    chains = {c for image in held for c in image.chain_ids}
    ok: set[str] = set()
    bad: set[str] = set()
    for plan in batch.exported:
        for diff, chain in zip(plan.source.diff_ids, plan.source.chain_ids):
            (ok if chain in chains else bad).add(diff)
    return frozenset(ok - bad)


def _name_left_out(
    src: Engine, dst: Engine, batch: TransferPlan, spec: StreamSpec, held: Sequence[ImageInfo], reporter: Reporter
) -> StreamSpec:
    """Before the stream: which left-out layers the containerd store holds under their uncompressed
    digest (layers docker-d2d or `docker load` put there). The others it holds compressed, as a
    registry pull or its own build left them; a containerd source has them under its own
    compressed digest, learned from its export, which is what a store that pulled from the same
    registry (or got them from this source) holds too; for any other source the registry manifest
    of the destination's own image may name them; else they travel."""
    assert src.info
    found = _probe(dst, held, spec.skip, lambda d: [uncompressed(d)])
    unnamed = spec.skip - found.keys()
    if src.info.kind is EngineKind.CONTAINERD:
        # Named by the source's descriptor, checked after the load; only where a wrong guess
        # leaves an incomplete image to repair rather than a failed load.
        guessed = unnamed & _chain_held(batch, held)
        unnamed -= guessed
        if unnamed:
            reporter.note(f"the destination holds {len(unnamed)} layer(s) under other parents only: sending them")
        return replace(spec, skip=frozenset(found) | guessed, left_out=found, prefer_source=True)
    pulled = _registry_candidates(held, dst, unnamed) if unnamed else {}
    if pulled:
        known = dict(found)

        def candidates(diff: str) -> list[Descriptor]:
            named = [known.get(diff), pulled.get(diff), uncompressed(diff)]
            return [d for d in named if d is not None]

        found = _probe(dst, held, spec.skip, candidates)
        unnamed = spec.skip - found.keys()
    if unnamed:
        reporter.note(
            f"the destination holds {len(unnamed)} layer(s) only under digests the source cannot name "
            "(compressed by a registry pull or its own build): sending them"
        )
    return replace(spec, skip=frozenset(found), left_out=found)


def _registry_candidates(held: Sequence[ImageInfo], dst: Engine, diff_ids: frozenset[str]) -> dict[str, Descriptor]:
    """The registry digests of layers the store pulled: from the manifests its images' repo
    digests name (best effort, see registry.py)."""
    assert dst.info
    found: dict[str, Descriptor] = {}
    for image in held:
        for repo_digest in image.repo_digests:
            if not (diff_ids - found.keys()) & set(image.diff_ids):
                break
            for diff, desc in layer_descriptors(repo_digest, image.diff_ids, dst.info.platform).items():
                found.setdefault(diff, desc)
    return {d: desc for d, desc in found.items() if d in diff_ids}


def _complete(
    src: Engine,
    dst: Engine,
    batch: TransferPlan,
    spec: StreamSpec,
    held: Sequence[ImageInfo],
    rewritten: RewriteResult,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> RewriteResult:
    """The containerd store loads a thin archive 'successfully' whatever it holds (engines.md):
    check each loaded image; where one is incomplete, find out by probes exactly which left-out
    layers the store lacks under every name we know and send just those."""
    incomplete = _incomplete(dst, rewritten)
    if not incomplete:
        return rewritten
    if spec.skip:
        pulled = _registry_candidates(held, dst, spec.skip)

        def candidates(diff: str) -> list[Descriptor]:
            named = [
                rewritten.left_out.get(diff),
                uncompressed(diff),
                rewritten.source_layers.get(diff),
                pulled.get(diff),
            ]
            return [d for d in named if d is not None]

        found = _probe(dst, held, spec.skip, candidates)
        missing = spec.skip - found.keys()
        reporter.note(f"the destination lacks {len(missing)} left-out layer(s) under any digest we know: sending those")
        # What the first load sent is in the store now (its image record keeps it): named, not sent again.
        known = {**rewritten.sent, **found}
        retry = replace(spec, skip=frozenset(known), left_out=known, prefer_source=False)
        first = incomplete
        rewritten = _transfer(src, dst, batch, retry, reporter, options, result)
        result.transfers.append(rewritten)
        incomplete = _incomplete(dst, rewritten)
        if not incomplete:
            written = {w.manifest_digest for w in rewritten.images}
            for digest in first:
                if digest not in written:
                    dst.remove(digest)
    if incomplete:
        raise VerifyError(
            f"the loaded image {short(incomplete[0])} is incomplete (the engine lacks some of its content)",
            side="destination",
            endpoint=str(dst.endpoint),
        )
    return rewritten


def _incomplete(dst: Engine, rewritten: RewriteResult) -> list[str]:
    return [
        w.manifest_digest for w in rewritten.images if w.manifest_digest and not dst.image_complete(w.manifest_digest)
    ]


def _save_platform(plan: TransferPlan) -> Platform | None:
    """The platform to ask the export for (API 1.48): when every image is one platform of an index."""
    platforms = {p.source.export_platform for p in plan.exported}
    return platforms.pop() if len(platforms) == 1 else None


def _transfer(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    spec: StreamSpec,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> RewriteResult:
    platform = _save_platform(plan)
    ids = list(dict.fromkeys((p.source.export_as if platform else "") or p.source.id for p in plan.exported))
    try:
        with (
            tempfile.TemporaryDirectory(prefix="d2d-", dir=options.spool_dir) as spool,
            src.save(ids, platform) as raw,
            prefetch(raw) as chunks,
        ):
            rewriter = Rewriter(chunks, spec, reporter, Path(spool))
            result.begun.append(rewriter.result)
            wire = Counted()
            try:
                dst.load(compressed(rewriter.stream(), result.compression, wire, lambda: rewriter.emitting_compressed))
            except D2DError as exc:
                # Raised inside the body generator (the source's stream or its archive) unless named already.
                raise exc.with_side("source", str(src.endpoint)) from exc
            finally:
                result.wire_bytes += wire.bytes
    except (ArchiveError, EngineError) as exc:
        assert src.info and dst.info
        if src.info.kind is EngineKind.CONTAINERD and exc.side == "source" and _missing_content(exc):
            # A store without a platform's content (never pulled, or pulled lazily) exports an
            # archive without its blobs, or fails: say which platform and how to get it.
            wanted = options.platform or dst.info.platform
            refs = ", ".join(p.ref.raw for p in plan.exported)
            raise PlatformError(
                f"the store lacks content of {refs} for {wanted} ({exc.message}): pull it there with "
                f"`docker pull --platform {wanted} {plan.exported[0].ref.raw}` (a pull skips the blobs of layers "
                "the store has already: remove the images that hold them first)",
                side="source",
                endpoint=str(src.endpoint),
            ) from exc
        raise
    return rewriter.result


def _missing_content(exc: D2DError) -> bool:
    return "not found" in exc.message or "lacks" in exc.message


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
