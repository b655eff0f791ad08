"""From a plan to what the rewrite is told (formats/spec.py StreamSpec): the source's save format,
the destination's output format, each layer's bound."""

from __future__ import annotations

from collections.abc import Sequence

from ..formats.readers.base import SaveFormat
from ..formats.readers.legacy import Legacy
from ..formats.readers.oci import ContainerdStore, OciLayout
from ..formats.readers.podman import DockerArchive
from ..formats.spec import OutputFormat, StreamSpec
from ..model import EngineInfo, EngineKind, ImageInfo
from .plan import TransferPlan


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
    `decompress_zstd`: the destination cannot take zstd layers (compress.py accepts_zstd_layers)."""
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
