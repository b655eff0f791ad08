"""The diff: which layers the destination already holds and what must travel. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from ..formats.digests import chain_ids
from ..model import EngineKind, ImageInfo, ImageRef


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
        # by the digest it holds the blob under: repair.py finds that out by probes).
        if self.kind is EngineKind.GRAPHDRIVER:
            return chain_id in self.chain_ids
        return diff_id in self.diff_ids  # a node: the layers whose blob its content store holds

    def find_image(self, image: ImageInfo, source_kind: EngineKind) -> str | None:
        # Image ids are config digests except in the containerd store (manifest digests);
        # across that boundary, compare what inspect shows instead.
        same_ids = EngineKind.CONTAINERD not in (source_kind, self.kind)
        if self.kind is EngineKind.NODE and source_kind is not EngineKind.CONTAINERD:
            # A node names images by manifest; the source's id is its config's digest.
            return next((held.id for held in self.images if held.config_digest == image.id), None)
        for held in self.images:
            if same_ids and held.id == image.id:
                return held.id
            if not same_ids and held.fingerprint == image.fingerprint:
                return held.id
        return None


def holdings(kind: EngineKind, images: Iterable[ImageInfo], blobs: Iterable[str] | None = None) -> Holdings:
    """`blobs`: the diff ids whose content the destination holds, where that is not every layer of
    its images (a node may have discarded a layer's blob once unpacked)."""
    images = tuple(images)
    chains: set[str] = set()
    diffs: set[str] = set()
    for image in images:
        chains.update(image.chain_ids)
        diffs.update(image.diff_ids)
    if blobs is not None:
        diffs = set(blobs)
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


def sending(plan: TransferPlan, diff_ids: frozenset[str]) -> TransferPlan:
    """The plan with the layers `diff_ids` sent after all, where it left them out (the destination
    holds them in a way its engine cannot reuse: repair.py)."""

    def revised(image: ImagePlan) -> ImagePlan:
        if not image.exported:
            return image
        layers = tuple(replace(lay, decision=Decision.SEND) if lay.diff_id in diff_ids else lay for lay in image.layers)
        return replace(image, layers=layers)

    return TransferPlan(tuple(revised(p) for p in plan.images))


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
