"""One transfer: from one source to one destination, plan -> send -> verify -> tag.

A single copy is one Transfer (copy.py); a fleet is one per destination over a shared source
(fleet.py). The source is chosen once (sources.py); the containerd store's repairs are repair.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from ..endpoint import Endpoint
from ..engine.containerd.node import NodeEngine
from ..engine.protocol import DestinationEngine
from ..errors import D2DError, VerifyError
from ..formats.checkpoint import PARTIAL_LABEL
from ..formats.digests import short
from ..formats.entries import RewriteResult
from ..formats.spec import StreamSpec
from ..model import EngineInfo, EngineKind, ImageInfo
from . import checkpoints, repair
from .bases import PulledBase, find_bases, pull_bases
from .compress import accepts_zstd_layers, choose, far
from .job import CopyOptions, CopyResult, RegistryFirst, Reporter, Requested, TagMove
from .lock import destination_lock
from .plan import Decision, ImagePlan, TransferPlan, holdings, plan_transfer, sending
from .requests import save_platform
from .sources import Send, Source
from .spec import stream_spec

log = logging.getLogger("docker_d2d.transfer")


def plan_for(
    src_info: EngineInfo,
    dst: DestinationEngine,
    requested: Sequence[Requested],
    reporter: Reporter,
    options: CopyOptions,
    source_images: Callable[[], Sequence[ImageInfo]] | None = None,
) -> CopyResult:
    """The plan against a connected destination. With registry-first, bases the destination lacks
    are pulled there first (`source_images`: what the source holds, asked only when needed), and the
    plan is made again against what it then holds."""
    assert dst.info
    node = isinstance(dst, NodeEngine)
    held = _requested_held(dst, requested, src_info.kind)
    blobs = None  # a node's layers count as held only where their blobs are (a no-op needs none)
    if held is None:
        held = dst.all_images()
        if dst.stale:
            tell_stale(dst, reporter, "asked the engine")
        blobs = dst.layer_blobs() if isinstance(dst, NodeEngine) else None
    plan = plan_transfer(requested, src_info.kind, holdings(dst.info.kind, held, blobs))
    pulled: dict[str, PulledBase] = {}
    if (
        not node  # a node pulls nothing for us: registry-first is for engines
        and _registry_first(options.registry_first, dst.endpoint)
        and source_images
        and not options.dry_run
        and _lacks_lower(plan)
    ):
        bases = find_bases(plan, [i for i in source_images() if i.repo_digests])
        if bases:
            pulled = pull_bases(dst, bases, options.docker_config, os.environ, reporter.note)
        if pulled:
            held = dst.all_images()
            plan = plan_transfer(requested, src_info.kind, holdings(dst.info.kind, held))
    named = None
    if dst.info.kind is EngineKind.CONTAINERD and plan.skip:
        # Which left-out layers the store can reuse is known only by probes: asked now, so that
        # the plan, and --dry-run, say exactly what will travel.
        named = repair.naming(dst, held, src_info.kind, plan, plan.skip, options.docker_config, reporter.note)
        plan = sending(plan, named.travels)
    reporter.planned(plan)
    resumed = checkpoints.partial_refs(held, (p.source.id for p in plan.exported))
    if resumed:
        reporter.note(checkpoints.resume_note(resumed))
    result = CopyResult(plan, src_info, dst.info, compression=choose(options.compress, dst.endpoint, dst.info))
    result.pulled_bases, result.held, result.naming = pulled, held, named
    return result


def stale_holdings(dst: DestinationEngine, result: CopyResult, failure: D2DError) -> bool:
    """After the destination refused what the plan sent: whether the inspect cache misled the plan
    (then its wrong entries are dropped). The images it counted on for the layers left out are
    inspected afresh; an engine that fails that too keeps the first failure."""
    if failure.side != "destination" or not dst.answers(2.0):  # gone or going: not a question of the cache
        return False
    skipped = result.plan.skip
    counted = [image.id for image in result.held if skipped & set(image.diff_ids)]
    try:
        return bool(dst.recheck(counted))
    except D2DError:
        return False


def tell_stale(dst: DestinationEngine, reporter: Reporter, then: str) -> None:
    """Note, once, the cache entries the destination contradicted."""
    reporter.note(
        f"the destination's inspect cache was wrong about {len(dst.stale)} image(s) (changed behind docker-d2d's "
        f"back): dropped those entries and {then}"
    )
    dst.stale.clear()


def _requested_held(
    dst: DestinationEngine, requested: Sequence[Requested], source_kind: EngineKind
) -> list[ImageInfo] | None:
    """The requested images, when the destination holds every one of them (asked for by the source's
    id, then by the requested name): the usual rerun then costs a round trip or two, however many
    images the destination holds. None when one is missing: then the plan needs all it holds."""
    assert dst.info
    found: list[ImageInfo] = []
    for ref, image, _ in requested:
        for name in dict.fromkeys((image.id, ref.tagged or ref.raw)):
            there = dst.find(name)
            if there is not None and holdings(dst.info.kind, [there]).find_image(image, source_kind):
                found.append(there)
                break
        else:
            return None
    return found


def _registry_first(how: RegistryFirst, destination: Endpoint) -> bool:
    return how is RegistryFirst.ALWAYS or (how is RegistryFirst.AUTO and far(destination))


def _lacks_lower(plan: TransferPlan) -> bool:
    """Whether the destination lacks a layer below some image's top: only then can a base help, and
    only then is the source's image list worth asking for (an update sends just its top layers)."""
    return any(lay.decision is Decision.SEND for p in plan.exported for lay in p.layers[:-1])


@dataclass
class Transfer:
    """One destination's transfer, from the plan's exported images to verified, tagged images at
    the destination: what sending, loading and the containerd store's repairs all share."""

    source: Source
    dst: DestinationEngine
    reporter: Reporter
    options: CopyOptions
    result: CopyResult

    @property
    def source_info(self) -> EngineInfo:
        assert self.source.info is not None
        return self.source.info

    def deliver(self, exported: Sequence[ImageInfo] = (), stop: threading.Event | None = None) -> None:
        """Send what the plan says, verify, then tag. `exported`: every image in the source's export when
        it holds more than this destination needs (one export shared by several destinations). `stop`:
        set when the run was interrupted on another thread (a fleet's): then nothing is tagged."""
        dst, result, reporter = self.dst, self.result, self.reporter
        plan = result.plan
        dest_ids = {p.source.id: p.present_as for p in plan.images if p.present_as}
        try:
            with _leftovers_removed_on_interrupt(dst, result, reporter):
                if plan.exported:
                    dest_ids.update(self._send_all(plan, exported))
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                apply_tags(dst, result, dest_ids)
        except (KeyboardInterrupt, D2DError):
            if result.partials:
                reporter.note(checkpoints.kept_note(result.partials, str(dst.endpoint)))
            raise
        finally:
            _drop_pulled_bases(dst, result, set(dest_ids.values()))
        _drop_partials(dst, result)

    def _send_all(self, plan: TransferPlan, exported: Sequence[ImageInfo]) -> dict[str, str]:
        """Send and verify; the destination's id of each source image."""
        src, dst = self.source_info, self.dst
        assert dst.info
        dest_ids: dict[str, str] = {}
        for batch in _batches(plan, dst.info.kind):
            # Layers loaded by an earlier batch are at the destination now.
            loaded = frozenset(d for p in plan.exported if p.source.id in dest_ids for d in p.source.diff_ids)
            skip = batch.skip | loaded
            spec = stream_spec(
                batch,
                src,
                dst.info.kind,
                skip=skip,
                exported=exported,
                decompress_zstd=not accepts_zstd_layers(dst.info),
            )
            if src.kind is EngineKind.CONTAINERD and not save_platform(batch):
                # The export holds every platform present; only the images' own layers travel.
                spec = replace(spec, keep=frozenset(d for p in batch.exported for d in p.source.diff_ids))
            dest_ids.update(self._load_batch(batch, spec))
        return dest_ids

    def _load_batch(self, batch: TransferPlan, spec: StreamSpec) -> dict[str, str]:
        dst, result = self.dst, self.result
        kind = self.source_info.kind
        assert dst.info
        if isinstance(dst, NodeEngine):
            return self._load_node(dst, batch, spec)
        if dst.info.kind is not EngineKind.CONTAINERD:
            rewritten = self.send(batch, spec)
            result.transfers.append(rewritten)
            return _verify(dst, batch, kind, rewritten)
        before = set(dst.list_image_ids())
        if spec.skip:
            spec = repair.name_left_out(self, batch, spec)
        try:
            rewritten = self.send(batch, spec)
            result.transfers.append(rewritten)
            rewritten = repair.complete(self, batch, spec, rewritten)
            rewritten = repair.sized(self, batch, spec, rewritten)
            return _verify(dst, batch, kind, rewritten)
        except D2DError:
            # Leave no incomplete or unverified image of ours behind (a tagged image stays tagged).
            for transfer in result.begun:
                for image in transfer.images:
                    if image.manifest_digest and image.manifest_digest not in before:
                        dst.remove(image.manifest_digest)
            raise

    def _load_node(self, dst: NodeEngine, batch: TransferPlan, spec: StreamSpec) -> dict[str, str]:
        """A node: the archive names each layer it leaves out by the descriptor of the blob the
        node holds for it (compressed as pulled); verified with its snapshots; whatever this run
        imported goes again on failure, so no half image stays."""
        held = dst.layer_blobs()
        spec = replace(spec, left_out={d: held[d] for d in spec.skip if d in held})
        try:
            rewritten = self.send(batch, spec)
            self.result.transfers.append(rewritten)
            dest_ids = _verify(dst, batch, self.source_info.kind, rewritten)
            for image in rewritten.images:
                if image.manifest_digest:
                    dst.verify(image.manifest_digest)
            return dest_ids
        except BaseException:
            with contextlib.suppress(D2DError):
                dst.remove_imports()
            raise

    def send(self, plan: TransferPlan, spec: StreamSpec) -> RewriteResult:
        """One rewrite of the source's export into the destination's load (or loads, with checkpoints)."""
        dst, options = self.dst, self.options
        platform = save_platform(plan)
        ids = list(dict.fromkeys((p.source.export_as if platform else "") or p.source.id for p in plan.exported))
        assert dst.info is not None
        every = checkpoints.every(options.checkpoint, far(self.source.endpoint) or far(dst.endpoint))
        if dst.info.kind is EngineKind.NODE:
            every = None  # an import is whole or nothing: a node gets no partial images
        spec = _with_checkpoints(spec, plan, dst.info, every)
        progress = _Recorded(self.reporter, self.result)
        return self.source.send(Send(plan, ids, platform, spec, dst, self.reporter, options, self.result, progress))


def _drop_partials(dst: DestinationEngine, result: CopyResult) -> None:
    """The images are there: the partial images of this run and of interrupted ones go (their
    layers stay, held by the images). Also untagged ones: a load whose connection dropped after
    its archive went out whole may still have landed, without the name we could not give it."""
    # Every image asked for: one already there may have been copied by other means since.
    sources = [p.source.id for p in result.plan.images]
    refs = set(result.partials) | set(checkpoints.partial_refs(result.held, sources))
    with contextlib.suppress(D2DError):
        for ref in sorted(refs):
            dst.untag(ref)
        for source_id in sources:
            for image_id in dst.labelled(PARTIAL_LABEL, source_id):
                dst.remove_untagged(image_id)


def _drop_pulled_bases(dst: DestinationEngine, result: CopyResult, keep: set[str]) -> None:
    """A base pulled for registry-first was not asked for: its name goes again (the layers stay,
    held by the copied image), so the destination holds exactly what was requested."""
    for base_id in result.pulled_bases:
        if base_id not in keep:
            with contextlib.suppress(D2DError):
                dst.remove(base_id)


def apply_tags(dst: DestinationEngine, result: CopyResult, dest_ids: dict[str, str]) -> None:
    """The last step, once every image is verified: exactly the tags asked for. A tag that named
    another platform's image there (`--platform`) is recorded as moved."""
    named = {tag: image for image in result.held for tag in image.repo_tags}
    for image in result.plan.images:
        dest_id = dest_ids[image.source.id]
        if image.ref.tagged:
            dst.tag(dest_id, image.ref.repository, image.ref.tag)
            result.tagged.append(image.ref.tagged)
            before = named.get(image.ref.tagged) or named.get(f"localhost/{image.ref.tagged}")
            if before is not None and before.id != dest_id and _other_platform(before, image.source):
                old, new = str(before.platform), str(image.source.platform)
                result.moved.append(TagMove(image.ref.tagged, before.id, old, dest_id, new))
        else:
            result.untagged.append(f"{image.ref.raw} -> {short(dest_id)}")


def _other_platform(a: ImageInfo, b: ImageInfo) -> bool:
    return a.platform is not None and b.platform is not None and str(a.platform) != str(b.platform)


def one_copy_at_a_time(
    destination: Endpoint, reporter: Reporter, options: CopyOptions
) -> contextlib.AbstractContextManager[None]:
    """Two runs to one destination would both plan against what it held before either loaded
    anything, and both send everything: the second waits, then plans against what the first loaded."""
    if options.dry_run:
        return contextlib.nullcontext()

    def waiting() -> None:
        reporter.note(f"another docker-d2d is copying to {destination}; waiting for it to finish")

    return destination_lock(destination, waiting)


@contextlib.contextmanager
def _leftovers_removed_on_interrupt(dst: DestinationEngine, result: CopyResult, reporter: Reporter) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (the application raises a subclass)
        if isinstance(dst, NodeEngine):
            # An import ends with its ctr (cut off, it makes nothing): what the run imported goes.
            with contextlib.suppress(D2DError):
                dst.remove_imports()
        elif result.loaded:
            _remove_leftovers(dst, list(dict.fromkeys(result.loaded)), reporter)
        raise


def _remove_leftovers(dst: DestinationEngine, ids: list[str], reporter: Reporter) -> None:
    """The archive went out whole before the interrupt: the destination made (or may still make)
    an untagged image of it. Remove it if it is there; else name it."""
    for image_id in ids:
        try:
            if dst.remove_untagged(image_id):
                reporter.note(f"removed the untagged image {short(image_id)} the interrupted load made")
                continue
            there = dst.find(image_id) is not None  # and tagged: someone else's now
        except (KeyboardInterrupt, D2DError):
            there = False
        if not there:
            reporter.note(
                f"the destination may still finish loading image {image_id} (untagged): "
                f"remove it with `docker rmi {short(image_id)}` at {dst.endpoint}"
            )


def _batches(plan: TransferPlan, dest: EngineKind) -> list[TransferPlan]:
    """One archive for all images, except for Podman 4, which loads one image per OCI archive."""
    if dest is not EngineKind.PODMAN:
        return [TransferPlan(plan.exported)]
    by_id: dict[str, list[ImagePlan]] = {}
    for image in plan.exported:
        by_id.setdefault(image.source.id, []).append(image)
    return [TransferPlan(tuple(images)) for images in by_id.values()]


def _with_checkpoints(spec: StreamSpec, plan: TransferPlan, dest: EngineInfo, every: int | None) -> StreamSpec:
    if every is None or plan.bytes_to_send <= every:
        return spec  # no checkpoint would come: layers need not wait for the ones below them
    image = plan.exported[0].source
    platform = image.export_platform or image.platform or dest.platform
    chains = {p.source.id: p.source.diff_ids for p in plan.exported}
    return replace(spec, checkpoint=every, chains=chains, platform=platform.as_json())


class _Recorded:
    """Passes the archive's layer events on, and keeps them in the result: the summary then
    counts what the plan lines showed."""

    def __init__(self, reporter: Reporter, result: CopyResult) -> None:
        self.reporter, self.result = reporter, result

    def layer_skipped(self, key: str, size: int) -> None:
        self.result.layers_left_out.setdefault(key, size)
        self.reporter.layer_skipped(key, size)

    def layer_started(self, key: str, size: int) -> None:
        self.result.layers_sent[key] = size
        how = self.result.read_from[key] = self.result.reading.get(key, self.result.reading_default)
        log.info("layer %s: read from %s", short(key), how)
        self.reporter.layer_read_from(key, how)
        self.reporter.layer_started(key, size)

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self.reporter.layer_advanced(key, nbytes)

    def layer_finished(self, key: str) -> None:
        self.reporter.layer_finished(key)


def _verify(
    dst: DestinationEngine, plan: TransferPlan, source_kind: EngineKind, rewritten: RewriteResult
) -> dict[str, str]:
    """Check that the destination holds each image with the source's config and layers;
    return source id -> destination id. The config must be the one the source promised (its id,
    or the config its manifest names in the containerd store): matching layers alone do not do,
    a config altered on the way would land as another image."""
    written = {w.config_digest: w for w in rewritten.images}
    dest_ids: dict[str, str] = {}
    for image in plan.exported:
        config = image.source.id if source_kind is not EngineKind.CONTAINERD else rewritten.aliases.get(image.source.id)
        w = written.get(config or "")
        if w is None:
            promised = short(config or image.source.id)
            raise VerifyError(
                f"{image.ref}: the export lacks the config the source promised ({promised})", side="source"
            )
        if w.diff_ids != image.source.diff_ids:
            raise VerifyError(f"{image.ref}: the export's layers differ from the source's inspect", side="source")
        by_manifest = dst.info and dst.info.kind in (EngineKind.CONTAINERD, EngineKind.NODE)
        dest_id = w.manifest_digest if by_manifest else w.config_digest
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
