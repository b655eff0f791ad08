"""The images asked for, as the source holds them: references resolved, one platform chosen at a
containerd store, history sizes."""

from __future__ import annotations

from dataclasses import replace

from ..engine.protocol import SourceEngine
from ..errors import ImageNotFound, NameNotFound, PlatformError
from ..model import EngineKind, ImageInfo, ImageRef, Platform, as_id_ref, could_be_id
from .job import Requested
from .plan import TransferPlan, layer_sizes


def resolve(src: SourceEngine, ref: ImageRef, platform: Platform, *, explicit: bool) -> Requested:
    try:
        image = src.inspect(ref.raw)
    except ImageNotFound as exc:
        if ref.tagged is None or could_be_id(ref):
            raise ImageNotFound(f"no such image: {ref.raw}", side=exc.side, endpoint=exc.endpoint) from None
        raise NameNotFound(
            ref.tagged, tag_given=tag_given(ref), tags=tags_of(src, ref), side=exc.side, endpoint=exc.endpoint
        ) from None
    if could_be_id(ref) and ref.tagged not in image.repo_tags and f"localhost/{ref.tagged}" not in image.repo_tags:
        ref = as_id_ref(ref)  # a bare hex string that matched an id, not a name
    assert src.info
    if src.info.kind is EngineKind.CONTAINERD:
        image = _one_platform(src, ref, image, platform, explicit)
        if image.export_platform:
            sizes = src.history_sizes(image.export_as, image.export_platform)
            return ref, image, layer_sizes(sizes, len(image.diff_ids))
    return ref, image, layer_sizes(src.history_sizes(image.id), len(image.diff_ids))


def tag_given(ref: ImageRef) -> bool:
    """Whether the user typed a tag (`app:2`), rather than leaving it to mean :latest (`app`)."""
    return ":" in ref.raw.rsplit("/", 1)[-1]


def tags_of(src: SourceEngine, ref: ImageRef) -> list[str]:
    """The tags the source has of `ref`'s repository (Podman names local images localhost/...)."""
    names = (f"{ref.repository}:", f"localhost/{ref.repository}:")
    return sorted({t for t in src.tags() if t.startswith(names)}, key=_tag_order)


def _tag_order(name: str) -> tuple[str, int, str]:
    repository, _, tag = name.rpartition(":")
    return (repository, int(tag) if tag.isdigit() else -1, tag)


def _one_platform(src: SourceEngine, ref: ImageRef, image: ImageInfo, platform: Platform, explicit: bool) -> ImageInfo:
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


def save_platform(plan: TransferPlan) -> Platform | None:
    """The platform to ask the export for (API 1.48): when every image is one platform of an index."""
    platforms = {p.source.export_platform for p in plan.exported}
    return platforms.pop() if len(platforms) == 1 else None
