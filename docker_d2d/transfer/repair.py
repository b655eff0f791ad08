"""The containerd store's repair: naming left-out layers by the digests it holds them under, and
loading again what a thin load left it lacking.

The store "successfully" loads a thin archive whatever it holds, reuses blobs by digest, and
holds a layer uncompressed or compressed (as a registry pull or its own build left it); the
Engine API cannot list blobs, so probes ask (engine/probe.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from ..engine.probe import held_as, held_sizes
from ..engine.protocol import DestinationEngine
from ..errors import VerifyError
from ..formats.digests import short
from ..formats.entries import RewriteResult
from ..formats.oci import Descriptor, uncompressed
from ..formats.spec import StreamSpec
from ..model import EngineInfo, EngineKind, ImageInfo
from ..registry.layers import layer_descriptors
from .job import CopyOptions, CopyResult, Reporter
from .naming import Naming
from .plan import TransferPlan


class Loads(Protocol):
    """What the repair needs of a transfer: its destination, its run's result, and a way to send
    a batch again with another spec."""

    dst: DestinationEngine
    reporter: Reporter
    result: CopyResult
    options: CopyOptions

    @property
    def source_info(self) -> EngineInfo: ...

    def send(self, plan: TransferPlan, spec: StreamSpec) -> RewriteResult: ...


def naming(
    dst: DestinationEngine,
    held: Sequence[ImageInfo],
    source_kind: EngineKind,
    batch: TransferPlan,
    skip: frozenset[str],
    docker_config: Path | None,
    note: Callable[[str], None],
) -> Naming:
    """The digest the containerd store holds each left-out layer (`skip`) under, by its own
    descriptors as far as they can be had: uncompressed (layers docker-d2d or `docker load` put
    there), or as the registry manifest of the destination's own image lists them (a base it
    pulled); probes confirm each. What is still unnamed: from a containerd source, named by the
    source's descriptor (what a store that got them from this source, or from the registry the
    source pulled from, holds too) and checked after the load; from any other source it travels.
    Made when planning, so that the plan (and --dry-run) says what will travel."""
    found = _probe(dst, held, skip, lambda d: [uncompressed(d)])
    unnamed = skip - found.keys()
    pulled = _registry_candidates(held, dst, unnamed, docker_config) if unnamed else {}
    if pulled:
        known = dict(found)

        def candidates(diff: str) -> list[Descriptor]:
            named = [known.get(diff), pulled.get(diff), uncompressed(diff)]
            return [d for d in named if d is not None]

        found = _probe(dst, held, skip, candidates)
        unnamed = skip - found.keys()
    guessed: frozenset[str] = frozenset()
    if source_kind is EngineKind.CONTAINERD:
        # Only where a wrong guess leaves an incomplete image to repair rather than a failed load.
        guessed = unnamed & _chain_held(batch, held)
        unnamed -= guessed
        if unnamed:
            note(f"the destination holds {len(unnamed)} layer(s) under other parents only: sending them")
    elif unnamed:
        note(
            f"the destination holds {len(unnamed)} layer(s) only under digests the source cannot name "
            "(compressed by a registry pull or its own build): sending them"
        )
    return Naming(skip, found, guessed)


def name_left_out(transfer: Loads, batch: TransferPlan, spec: StreamSpec) -> StreamSpec:
    """The stream's left-out layers named as the store holds them: as planned, or found out now
    for layers an earlier batch of this run loaded."""
    planned = transfer.result.naming
    if planned is not None and planned.covers(spec.skip):
        named = planned
    else:
        dst, held = transfer.dst, transfer.result.held
        config = transfer.options.docker_config
        named = naming(dst, held, transfer.source_info.kind, batch, spec.skip, config, transfer.reporter.note)
    found = {d: desc for d, desc in named.found.items() if d in spec.skip}
    return replace(
        spec,
        skip=frozenset(found) | (named.guessed & spec.skip),
        left_out=found,
        prefer_source=transfer.source_info.kind is EngineKind.CONTAINERD,
    )


def complete(transfer: Loads, batch: TransferPlan, spec: StreamSpec, rewritten: RewriteResult) -> RewriteResult:
    """The containerd store loads a thin archive 'successfully' whatever it holds (engines.md):
    check each loaded image; where one is incomplete, find out by probes exactly which left-out
    layers the store lacks under every name we know and send just those."""
    dst, held = transfer.dst, transfer.result.held
    incomplete = _incomplete(dst, rewritten)
    if not incomplete:
        return rewritten
    if spec.skip:
        pulled = _registry_candidates(held, dst, spec.skip, transfer.options.docker_config)

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
        transfer.reporter.note(
            f"the destination lacks {len(missing)} left-out layer(s) under any digest we know: sending those"
        )
        # What the first load sent is in the store now (its image record keeps it): named, not sent again.
        return load_again(transfer, batch, spec, {**rewritten.sent, **found}, incomplete)
    _fail_if_incomplete(dst, incomplete)
    return rewritten


def sized(transfer: Loads, batch: TransferPlan, spec: StreamSpec, rewritten: RewriteResult) -> RewriteResult:
    """A layer the export leaves out (non-distributable) that the store holds uncompressed was named
    without its size, which no probe tells. Loaded so, the image is complete but does not export: the
    store writes each blob by its manifest's size, and `docker save` then breaks off at that blob.
    Learn the sizes from the store's own export of an image holding them and load the image's
    manifest again with them; everything is at the destination by now, so no layer travels again."""
    if not rewritten.unsized:
        return rewritten
    dst = transfer.dst
    sizes = held_sizes(dst, transfer.result.held, rewritten.unsized)
    unknown = [d for d in rewritten.unsized if d not in sizes]
    if unknown:
        raise VerifyError(
            f"the export leaves out layer {short(unknown[0])} and the destination holds it, but not in an "
            "image whose export tells its size: the image would load, but not save",
            side="destination",
            endpoint=str(dst.endpoint),
        )
    transfer.reporter.note(
        f"read the size of {len(sizes)} left-out layer(s) from the destination's own export: loading the "
        "image's manifest again with it"
    )
    known = {**rewritten.left_out, **rewritten.sent, **{d: uncompressed(d, n) for d, n in sizes.items()}}
    first = [w.manifest_digest for w in rewritten.images if w.manifest_digest]
    return load_again(transfer, batch, spec, known, first)


def load_again(
    transfer: Loads, batch: TransferPlan, spec: StreamSpec, known: dict[str, Descriptor], replaced: list[str]
) -> RewriteResult:
    """Load the batch again with the left-out layers named as `known` (the digests and sizes the store
    holds them under). The images of the load it repairs (`replaced`, manifest digests) go, unless
    the store held them before this run; an image still incomplete fails the copy."""
    dst = transfer.dst
    retry = replace(spec, skip=frozenset(known), left_out=known, prefer_source=False)
    rewritten = transfer.send(batch, retry)
    transfer.result.transfers.append(rewritten)
    _fail_if_incomplete(dst, _incomplete(dst, rewritten))
    written = {w.manifest_digest for w in rewritten.images}
    there_before = {i.id for i in transfer.result.held}
    for digest in replaced:
        if digest not in written and digest not in there_before:
            dst.remove(digest)
    return rewritten


def _probe(
    dst: DestinationEngine,
    held: Sequence[ImageInfo],
    wanted: frozenset[str],
    candidates: Callable[[str], list[Descriptor]],
) -> dict[str, Descriptor]:
    """Which digest the store holds each wanted layer under. Probes name a prefix of one of the
    store's own images, whose snapshots it has, so nothing is unpacked (see engine/probe.py)."""
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


def _registry_candidates(
    held: Sequence[ImageInfo], dst: DestinationEngine, diff_ids: frozenset[str], docker_config: Path | None
) -> dict[str, Descriptor]:
    """The registry digests of layers the store pulled: from the manifests its images' repo
    digests name, read with the user's credentials (best effort, see registry/layers.py)."""
    assert dst.info
    found: dict[str, Descriptor] = {}
    for image in held:
        for repo_digest in image.repo_digests:
            if not (diff_ids - found.keys()) & set(image.diff_ids):
                break
            for diff, desc in layer_descriptors(repo_digest, image.diff_ids, dst.info.platform, docker_config).items():
                found.setdefault(diff, desc)
    return {d: desc for d, desc in found.items() if d in diff_ids}


def _fail_if_incomplete(dst: DestinationEngine, incomplete: list[str]) -> None:
    if incomplete:
        raise VerifyError(
            f"the loaded image {short(incomplete[0])} is incomplete (the engine lacks some of its content)",
            side="destination",
            endpoint=str(dst.endpoint),
        )


def _incomplete(dst: DestinationEngine, rewritten: RewriteResult) -> list[str]:
    return [
        w.manifest_digest for w in rewritten.images if w.manifest_digest and not dst.image_complete(w.manifest_digest)
    ]
