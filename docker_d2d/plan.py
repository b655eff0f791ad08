"""The diff: which layers the destination already holds and what must travel. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from .formats.digests import chain_ids
from .formats.readers.base import SaveFormat
from .formats.readers.legacy import Legacy
from .formats.readers.oci import ContainerdStore, OciLayout
from .formats.readers.podman import DockerArchive
from .formats.spec import OutputFormat, StreamSpec
from .model import EngineInfo, EngineKind, ImageInfo, ImageRef


class Decision(Enum):
    SEND = "send"
    SKIP = "skip"


@dataclass(frozen=True)
class LayerPlan:
    diff_id: str
    chain_id: str
    decision: Decision
    size: int | None  # estimate from the source's history; None when it cannot be told


@dataclass(frozen=True)
class ImagePlan:
    ref: ImageRef
    source: ImageInfo
    layers: tuple[LayerPlan, ...]
    present_as: str | None = None  # the destination's id when it holds this image already

    @property
    def exported(self) -> bool:
        return self.present_as is None


@dataclass(frozen=True)
class Holdings:
    """What the destination holds, in the terms its engine reuses layers by."""

    kind: EngineKind
    chain_ids: frozenset[str]
    diff_ids: frozenset[str]
    images: tuple[ImageInfo, ...]

    def has_layer(self, diff_id: str, chain_id: str) -> bool:
        # Graphdriver engines skip a layer only when its whole chain exists; Podman and the
        # containerd store reuse a layer by its uncompressed digest under any parent (the store
        # by the digest it holds the blob under: copy.py finds that out by probes).
        if self.kind is EngineKind.GRAPHDRIVER:
            return chain_id in self.chain_ids
        return diff_id in self.diff_ids

    def find_image(self, image: ImageInfo, source_kind: EngineKind) -> str | None:
        # Image ids are config digests except in the containerd store (manifest digests);
        # across that boundary, compare what inspect shows instead.
        same_ids = EngineKind.CONTAINERD not in (source_kind, self.kind)
        for held in self.images:
            if same_ids and held.id == image.id:
                return held.id
            if not same_ids and held.fingerprint == image.fingerprint:
                return held.id
        return None


def holdings(kind: EngineKind, images: Iterable[ImageInfo]) -> Holdings:
    images = tuple(images)
    chains: set[str] = set()
    diffs: set[str] = set()
    for image in images:
        chains.update(image.chain_ids)
        diffs.update(image.diff_ids)
    return Holdings(kind, frozenset(chains), frozenset(diffs), images)


def layer_sizes(history: Sequence[int], n_layers: int) -> tuple[int | None, ...]:
    """Map history sizes onto layers. History has an entry per build step, layers only for
    some; when the non-empty entries are exactly the layers the mapping is sure."""
    nonzero = [s for s in history if s > 0]
    if len(nonzero) == n_layers:
        return tuple(nonzero)
    if len(history) == n_layers:
        return tuple(history)
    return (None,) * n_layers


@dataclass(frozen=True)
class TransferPlan:
    images: tuple[ImagePlan, ...]

    @property
    def exported(self) -> tuple[ImagePlan, ...]:
        return tuple(p for p in self.images if p.exported)

    def unique_layers(self) -> dict[str, LayerPlan]:
        """Each diff id once; a layer needed by any image is sent (the archive carries it once)."""
        layers: dict[str, LayerPlan] = {}
        for image in self.exported:
            for layer in image.layers:
                if layer.diff_id not in layers or layer.decision is Decision.SEND:
                    layers[layer.diff_id] = layer
        return layers

    @property
    def skip(self) -> frozenset[str]:
        return frozenset(d for d, lay in self.unique_layers().items() if lay.decision is Decision.SKIP)

    @property
    def bytes_to_send(self) -> int:
        return sum(lay.size or 0 for lay in self.unique_layers().values() if lay.decision is Decision.SEND)

    @property
    def bytes_saved(self) -> int:
        layers = self.unique_layers().values()
        saved = sum(lay.size or 0 for lay in layers if lay.decision is Decision.SKIP)
        for image in self.images:
            if not image.exported:
                saved += sum(lay.size or 0 for lay in image.layers)
        return saved

    @property
    def sizes_known(self) -> bool:
        return all(lay.size is not None for p in self.images for lay in p.layers)


def plan_transfer(
    requested: Sequence[tuple[ImageRef, ImageInfo, tuple[int | None, ...]]],
    source_kind: EngineKind,
    dest: Holdings,
) -> TransferPlan:
    plans = []
    for ref, image, sizes in requested:
        present = dest.find_image(image, source_kind)
        layers = tuple(
            LayerPlan(
                diff,
                chain,
                Decision.SKIP if present or dest.has_layer(diff, chain) else Decision.SEND,
                sizes[i] if i < len(sizes) else None,
            )
            for i, (diff, chain) in enumerate(zip(image.diff_ids, chain_ids(image.diff_ids)))
        )
        plans.append(ImagePlan(ref, image, layers, present))
    return TransferPlan(tuple(plans))


# --- what the rewrite needs to know about the source's archive ------------------------------


def source_is_legacy(source: EngineInfo) -> bool:
    if source.kind is not EngineKind.GRAPHDRIVER:
        return False
    try:
        return int(source.version.split(".")[0]) < 25
    except ValueError:
        return False


def save_format(source: EngineInfo) -> type[SaveFormat]:
    """How the source engine's `docker save` names its entries."""
    if source_is_legacy(source):
        return Legacy
    if source.kind is EngineKind.PODMAN:
        return DockerArchive
    return ContainerdStore if source.kind is EngineKind.CONTAINERD else OciLayout


def output_format(dest: EngineKind) -> OutputFormat:
    return OutputFormat.LEGACY if dest is EngineKind.GRAPHDRIVER else OutputFormat.OCI


# The margin between what inspect promised for a layer and the most its entry may hold.
# History sizes estimate the unpacked files (overlay2 sums file sizes, the containerd store
# rounds to 4 kB blocks, Podman gives the tar size); the tar adds a 512-byte header and up to
# 511 bytes of padding per file and more for long names, so a layer of many small files takes
# two to three times its estimate (a 1-byte file is 2 kB of tar). Four times the estimate
# plus 64 MiB lets every real layer through and still stops one that streams without end.
LAYER_FACTOR = 4
LAYER_SLACK = 64 << 20


def layer_limit(estimate: int) -> int:
    return LAYER_FACTOR * estimate + LAYER_SLACK


def _limits(plan: TransferPlan) -> tuple[dict[str, int], int | None]:
    """Each diff id's bound, from its own history estimate, else from its whole image's size;
    and the bound for a layer entry not known by name (the largest). No bound where inspect
    told no size at all."""
    limits: dict[str, int] = {}
    unbounded = False
    for image in plan.exported:
        for layer in image.layers:
            # A size of 0 may mean "not unpacked here" (the containerd store): fall back too.
            estimate = layer.size or image.source.size or None
            if estimate is None:
                unbounded = True
                continue
            limits[layer.diff_id] = max(limits.get(layer.diff_id, 0), layer_limit(estimate))
    return limits, None if unbounded or not limits else max(limits.values())


def stream_spec(
    plan: TransferPlan,
    source: EngineInfo,
    dest: EngineKind,
    skip: frozenset[str] | None = None,
    exported: Sequence[ImageInfo] = (),
    decompress_zstd: bool = False,
) -> StreamSpec:
    """What the rewrite needs to know. `exported`: every image in the export, when it holds images this
    plan does not want (an export shared by several destinations): those are left out whole.
    `decompress_zstd`: the destination cannot take zstd layers (compress.accepts_zstd_layers)."""
    images = [p.source for p in plan.exported]
    wanted_ids = {i.id for i in images}
    others = [i for i in exported if i.id not in wanted_ids]
    everything = images + others
    named, unnamed = save_format(source).expected_names([image.diff_ids for image in everything])
    needed = {d for image in images for d in image.diff_ids}
    unwanted = frozenset(d for image in others for d in image.diff_ids if d not in needed)
    limits, max_layer = _limits(plan)
    return StreamSpec(
        output_format(dest),
        (plan.skip if skip is None else skip) | unwanted,
        named,
        tuple(unnamed),
        wanted=frozenset(wanted_ids) if others else None,
        image_ids=frozenset(wanted_ids),
        limits=limits,
        max_layer=max_layer,
        decompress_zstd=decompress_zstd,
    )
