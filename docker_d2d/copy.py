"""Orchestration: endpoints -> engines -> plan -> archive stream -> load -> verify -> tags.

Every command (copy, push, pull) comes through `copy_images`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from . import checkpoints
from .archive import PARTIAL_LABEL, Progress, Rewriter, RewriteResult, StreamSpec
from .compress import Compression, accepts_zstd_layers, choose, far
from .endpoint import Endpoint, Scheme
from .engine import Engine
from .errors import ArchiveError, D2DError, EngineError, ImageNotFound, PlatformError, VerifyError
from .job import CopyOptions, CopyResult, Reporter, Requested, Source
from .loading import Compressing, Outgoing, load_archives
from .lock import destination_lock
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
from .plan import Decision, ImagePlan, TransferPlan, holdings, layer_sizes, plan_transfer, stream_spec
from .prefetch import prefetch
from .probe import Descriptor, held_as, held_sizes, uncompressed
from .registry_first import PulledBase, RegistryFirst, find_bases, pull_bases
from .registry_layers import layer_descriptors
from .shared_rewrite import SharedSource
from .spool import private_dir


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
    with (
        Engine(source, "source", options.timeouts) as src,
        Engine(destination, "destination", options.timeouts) as dst,
        one_copy_at_a_time(destination, reporter, options),
    ):
        src_info = src.connect()
        reporter.connected("source", source, src_info)
        dst_info = dst.connect()
        reporter.connected("destination", destination, dst_info)
        platform = options.platform or dst_info.platform
        requested = [resolve(src, ref, platform, explicit=options.platform is not None) for ref in parsed]
        result = plan_for(src_info, dst, requested, reporter, options, src.all_images)
        if not options.dry_run:
            try:
                deliver(src, dst, result, reporter, options)
            except (EngineError, VerifyError) as exc:
                if not stale_holdings(dst, result, exc):
                    raise
                tell_stale(dst, reporter, "planned again")
                result = plan_for(src_info, dst, requested, reporter, options, src.all_images)
                deliver(src, dst, result, reporter, options)
    result.elapsed = time.monotonic() - started
    return result


def stale_holdings(dst: Engine, result: CopyResult, failure: D2DError) -> bool:
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


def tell_stale(dst: Engine, reporter: Reporter, then: str) -> None:
    """Note, once, the cache entries the destination contradicted."""
    reporter.note(
        f"the destination's inspect cache was wrong about {len(dst.stale)} image(s) (changed behind docker-d2d's "
        f"back): dropped those entries and {then}"
    )
    dst.stale.clear()


def plan_for(
    src_info: EngineInfo,
    dst: Engine,
    requested: Sequence[Requested],
    reporter: Reporter,
    options: CopyOptions,
    source_images: Callable[[], Sequence[ImageInfo]] | None = None,
) -> CopyResult:
    """The plan against a connected destination. With registry-first, bases the destination lacks
    are pulled there first (`source_images`: what the source holds, asked only when needed), and the
    plan is made again against what it then holds."""
    assert dst.info
    held = dst.all_images()
    if dst.stale:
        tell_stale(dst, reporter, "asked the engine")
    plan = plan_transfer(requested, src_info.kind, holdings(dst.info.kind, held))
    pulled: dict[str, PulledBase] = {}
    if options.registry_first is RegistryFirst.AUTO and source_images and not options.dry_run and _lacks_lower(plan):
        bases = find_bases(plan, [i for i in source_images() if i.repo_digests])
        if bases:
            pulled = pull_bases(dst, bases, options.docker_config, os.environ, reporter.note)
        if pulled:
            held = dst.all_images()
            plan = plan_transfer(requested, src_info.kind, holdings(dst.info.kind, held))
    reporter.planned(plan)
    resumed = checkpoints.partial_refs(held, (p.source.id for p in plan.exported))
    if resumed:
        reporter.note(checkpoints.resume_note(resumed))
    result = CopyResult(plan, src_info, dst.info, compression=choose(options.compress, dst.endpoint, dst.info))
    result.pulled_bases, result.held = pulled, held
    return result


def _lacks_lower(plan: TransferPlan) -> bool:
    """Whether the destination lacks a layer below some image's top: only then can a base help, and
    only then is the source's image list worth asking for (an update sends just its top layers)."""
    return any(lay.decision is Decision.SEND for p in plan.exported for lay in p.layers[:-1])


def deliver(
    src: Source,
    dst: Engine,
    result: CopyResult,
    reporter: Reporter,
    options: CopyOptions,
    exported: Sequence[ImageInfo] = (),
    stop: threading.Event | None = None,
) -> None:
    """Send what the plan says, verify, then tag. `exported`: every image in the source's export when it
    holds more than this destination needs (one export shared by several destinations). `stop`: set
    when the run was interrupted on another thread (a fleet's): then nothing is tagged."""
    plan = result.plan
    dest_ids = {p.source.id: p.present_as for p in plan.images if p.present_as}
    try:
        with _leftovers_removed_on_interrupt(dst, result, reporter):
            if plan.exported:
                dest_ids.update(_Transfer(src, dst, reporter, options, result).run(plan, exported))
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


def _drop_partials(dst: Engine, result: CopyResult) -> None:
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


def _drop_pulled_bases(dst: Engine, result: CopyResult, keep: set[str]) -> None:
    """A base pulled for registry-first was not asked for: its name goes again (the layers stay,
    held by the copied image), so the destination holds exactly what was requested."""
    for base_id in result.pulled_bases:
        if base_id not in keep:
            with contextlib.suppress(D2DError):
                dst.remove(base_id)


def apply_tags(dst: Engine, result: CopyResult, dest_ids: dict[str, str]) -> None:
    """The last step, once every image is verified: exactly the tags asked for."""
    for image in result.plan.images:
        dest_id = dest_ids[image.source.id]
        if image.ref.tagged:
            dst.tag(dest_id, image.ref.repository, image.ref.tag)
            result.tagged.append(image.ref.tagged)
        else:
            result.untagged.append(f"{image.ref.raw} -> {short(dest_id)}")


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
def _leftovers_removed_on_interrupt(dst: Engine, result: CopyResult, reporter: Reporter) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (cli raises a subclass)
        if result.loaded:
            _remove_leftovers(dst, list(dict.fromkeys(result.loaded)), reporter)
        raise


def _remove_leftovers(dst: Engine, ids: list[str], reporter: Reporter) -> None:
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


def resolve(src: Engine, ref: ImageRef, platform: Platform, *, explicit: bool) -> Requested:
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


@dataclass
class _Transfer:
    """One destination's transfer, from the plan's exported images to verified images at the
    destination: what sending, loading and the containerd store's repairs all share."""

    src: Source
    dst: Engine
    reporter: Reporter
    options: CopyOptions
    result: CopyResult

    def run(self, plan: TransferPlan, exported: Sequence[ImageInfo] = ()) -> dict[str, str]:
        """Send and verify; the destination's id of each source image."""
        src, dst = self.src, self.dst
        assert src.info and dst.info
        dest_ids: dict[str, str] = {}
        for batch in _batches(plan, dst.info.kind):
            # Layers loaded by an earlier batch are at the destination now.
            loaded = frozenset(d for p in plan.exported if p.source.id in dest_ids for d in p.source.diff_ids)
            skip = batch.skip | loaded
            spec = stream_spec(
                batch,
                src.info,
                dst.info.kind,
                skip=skip,
                exported=exported,
                decompress_zstd=not accepts_zstd_layers(dst.info),
            )
            if src.info.kind is EngineKind.CONTAINERD and not save_platform(batch):
                # The export holds every platform present; only the images' own layers travel.
                spec = replace(spec, keep=frozenset(d for p in batch.exported for d in p.source.diff_ids))
            dest_ids.update(self._load_batch(batch, spec))
        return dest_ids

    def _load_batch(self, batch: TransferPlan, spec: StreamSpec) -> dict[str, str]:
        src, dst, result = self.src, self.dst, self.result
        assert src.info and dst.info
        if dst.info.kind is not EngineKind.CONTAINERD:
            rewritten = self._send(batch, spec)
            result.transfers.append(rewritten)
            return _verify(dst, batch, src.info.kind, rewritten)
        before = set(dst.list_image_ids())
        if spec.skip:
            spec = self._name_left_out(batch, spec)
        try:
            rewritten = self._send(batch, spec)
            result.transfers.append(rewritten)
            rewritten = self._complete(batch, spec, rewritten)
            rewritten = self._sized(batch, spec, rewritten)
            return _verify(dst, batch, src.info.kind, rewritten)
        except D2DError:
            # Leave no incomplete or unverified image of ours behind (a tagged image stays tagged).
            for transfer in result.begun:
                for image in transfer.images:
                    if image.manifest_digest and image.manifest_digest not in before:
                        dst.remove(image.manifest_digest)
            raise

    def _name_left_out(self, batch: TransferPlan, spec: StreamSpec) -> StreamSpec:
        """Before the stream: which left-out layers the containerd store holds under their uncompressed
        digest (layers docker-d2d or `docker load` put there). The others it holds compressed, as a
        registry pull or its own build left them; a containerd source has them under its own
        compressed digest, learned from its export, which is what a store that pulled from the same
        registry (or got them from this source) holds too; for any other source the registry manifest
        of the destination's own image may name them; else they travel."""
        src, dst, held = self.src, self.dst, self.result.held
        assert src.info
        found = _probe(dst, held, spec.skip, lambda d: [uncompressed(d)])
        unnamed = spec.skip - found.keys()
        if src.info.kind is EngineKind.CONTAINERD:
            # Named by the source's descriptor, checked after the load; only where a wrong guess
            # leaves an incomplete image to repair rather than a failed load.
            guessed = unnamed & _chain_held(batch, held)
            unnamed -= guessed
            if unnamed:
                self.reporter.note(
                    f"the destination holds {len(unnamed)} layer(s) under other parents only: sending them"
                )
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
            self.reporter.note(
                f"the destination holds {len(unnamed)} layer(s) only under digests the source cannot name "
                "(compressed by a registry pull or its own build): sending them"
            )
        return replace(spec, skip=frozenset(found), left_out=found)

    def _complete(self, batch: TransferPlan, spec: StreamSpec, rewritten: RewriteResult) -> RewriteResult:
        """The containerd store loads a thin archive 'successfully' whatever it holds (engines.md):
        check each loaded image; where one is incomplete, find out by probes exactly which left-out
        layers the store lacks under every name we know and send just those."""
        dst, held = self.dst, self.result.held
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
            self.reporter.note(
                f"the destination lacks {len(missing)} left-out layer(s) under any digest we know: sending those"
            )
            # What the first load sent is in the store now (its image record keeps it): named, not sent again.
            return self._load_again(batch, spec, {**rewritten.sent, **found}, incomplete)
        _fail_if_incomplete(dst, incomplete)
        return rewritten

    def _sized(self, batch: TransferPlan, spec: StreamSpec, rewritten: RewriteResult) -> RewriteResult:
        """A layer the export leaves out (non-distributable) that the store holds uncompressed was named
        without its size, which no probe tells. Loaded so, the image is complete but does not export: the
        store writes each blob by its manifest's size, and `docker save` then breaks off at that blob.
        Learn the sizes from the store's own export of an image holding them and load the image's
        manifest again with them; everything is at the destination by now, so no layer travels again."""
        if not rewritten.unsized:
            return rewritten
        dst = self.dst
        sizes = held_sizes(dst, self.result.held, rewritten.unsized)
        unknown = [d for d in rewritten.unsized if d not in sizes]
        if unknown:
            raise VerifyError(
                f"the export leaves out layer {short(unknown[0])} and the destination holds it, but not in an "
                "image whose export tells its size: the image would load, but not save",
                side="destination",
                endpoint=str(dst.endpoint),
            )
        self.reporter.note(
            f"read the size of {len(sizes)} left-out layer(s) from the destination's own export: loading the "
            "image's manifest again with it"
        )
        known = {**rewritten.left_out, **rewritten.sent, **{d: uncompressed(d, n) for d, n in sizes.items()}}
        first = [w.manifest_digest for w in rewritten.images if w.manifest_digest]
        return self._load_again(batch, spec, known, first)

    def _load_again(
        self, batch: TransferPlan, spec: StreamSpec, known: dict[str, Descriptor], replaced: list[str]
    ) -> RewriteResult:
        """Load the batch again with the left-out layers named as `known` (the digests and sizes the store
        holds them under). The images of the load it repairs (`replaced`, manifest digests) go, unless
        the store held them before this run; an image still incomplete fails the copy."""
        dst = self.dst
        retry = replace(spec, skip=frozenset(known), left_out=known, prefer_source=False)
        rewritten = self._send(batch, retry)
        self.result.transfers.append(rewritten)
        _fail_if_incomplete(dst, _incomplete(dst, rewritten))
        written = {w.manifest_digest for w in rewritten.images}
        there_before = {i.id for i in self.result.held}
        for digest in replaced:
            if digest not in written and digest not in there_before:
                dst.remove(digest)
        return rewritten

    def _send(self, plan: TransferPlan, spec: StreamSpec) -> RewriteResult:
        """One rewrite of the source's export into the destination's load (or loads, with checkpoints)."""
        src, dst, reporter, options, result = self.src, self.dst, self.reporter, self.options, self.result
        platform = save_platform(plan)
        ids = list(dict.fromkeys((p.source.export_as if platform else "") or p.source.id for p in plan.exported))
        assert dst.info is not None
        every = checkpoints.every(options.checkpoint, far(src.endpoint) or far(dst.endpoint))
        spec = _with_checkpoints(spec, plan, dst.info, every)
        progress = _Recorded(reporter, result)
        if (
            src.endpoint.scheme is Scheme.SSH
            and isinstance(src, Engine)  # not an export already shared by several destinations
            and platform is None  # the agent asks for the whole image
        ):
            from .remote.run import remote_transfer

            filtered = remote_transfer(src, dst, plan, ids, spec, reporter, options, result, progress)
            if filtered is not None:
                return filtered
        try:
            with _outgoing(src, ids, platform, spec, result.compression, progress, options) as outgoing:
                result.begun.append(outgoing.result)
                layers = plan.unique_layers()
                reporter.sending({d: lay.size for d, lay in layers.items() if d not in spec.skip}, result.compression)
                load_archives(src, dst, outgoing, reporter, result)
        except (ArchiveError, EngineError) as exc:
            assert src.info
            if src.info.kind is EngineKind.CONTAINERD and exc.side == "source" and _missing_content(exc):
                # A store without a platform's content (never pulled, or pulled lazily) exports an
                # archive without its blobs, or fails: say which platform and how to get it.
                wanted = options.platform or dst.info.platform
                refs = ", ".join(p.ref.raw for p in plan.exported)
                raise PlatformError(
                    f"the store lacks content of {refs} for {wanted} ({exc.message}): pull it there with "
                    f"`docker pull --platform {wanted} {plan.exported[0].ref.raw}` (a pull skips the blobs of "
                    "layers the store has already: remove the images that hold them first)",
                    side="source",
                    endpoint=str(src.endpoint),
                ) from exc
            raise
        reporter.phase("verifying")
        return outgoing.result


def _batches(plan: TransferPlan, dest: EngineKind) -> list[TransferPlan]:
    """One archive for all images, except for Podman 4, which loads one image per OCI archive."""
    if dest is not EngineKind.PODMAN:
        return [TransferPlan(plan.exported)]
    by_id: dict[str, list[ImagePlan]] = {}
    for image in plan.exported:
        by_id.setdefault(image.source.id, []).append(image)
    return [TransferPlan(tuple(images)) for images in by_id.values()]


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


def _fail_if_incomplete(dst: Engine, incomplete: list[str]) -> None:
    if incomplete:
        raise VerifyError(
            f"the loaded image {short(incomplete[0])} is incomplete (the engine lacks some of its content)",
            side="destination",
            endpoint=str(dst.endpoint),
        )


def _incomplete(dst: Engine, rewritten: RewriteResult) -> list[str]:
    return [
        w.manifest_digest for w in rewritten.images if w.manifest_digest and not dst.image_complete(w.manifest_digest)
    ]


def save_platform(plan: TransferPlan) -> Platform | None:
    """The platform to ask the export for (API 1.48): when every image is one platform of an index."""
    platforms = {p.source.export_platform for p in plan.exported}
    return platforms.pop() if len(platforms) == 1 else None


@contextmanager
def _outgoing(
    src: Source,
    ids: list[str],
    platform: Platform | None,
    spec: StreamSpec,
    how: Compression,
    progress: Progress,
    options: CopyOptions,
) -> Iterator[Outgoing]:
    """The rewrite of the source's export this destination is sent: its own, or, from a fleet's
    shared export, the one every destination with the same stream reads."""
    if isinstance(src, SharedSource):
        yield src.outgoing(spec, how, progress, options.spool_dir)
        return
    assert isinstance(src, Engine)
    with (
        private_dir(options.spool_dir) as spool,
        src.save(ids, platform) as raw,
        prefetch(raw) as chunks,
    ):
        yield Compressing(Rewriter(chunks, spec, progress, spool), how)


def _with_checkpoints(spec: StreamSpec, plan: TransferPlan, dest: EngineInfo, every: int | None) -> StreamSpec:
    if every is None or plan.bytes_to_send <= every:
        return spec  # no checkpoint would come: layers need not wait for the ones below them
    image = plan.exported[0].source
    platform = image.export_platform or image.platform or dest.platform
    chains = {p.source.id: p.source.diff_ids for p in plan.exported}
    return replace(spec, checkpoint=every, chains=chains, platform=platform.as_json())


def _missing_content(exc: D2DError) -> bool:
    return "not found" in exc.message or "lacks" in exc.message


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
        self.reporter.layer_started(key, size)

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self.reporter.layer_advanced(key, nbytes)

    def layer_finished(self, key: str) -> None:
        self.reporter.layer_finished(key)


def _verify(dst: Engine, plan: TransferPlan, source_kind: EngineKind, rewritten: RewriteResult) -> dict[str, str]:
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
