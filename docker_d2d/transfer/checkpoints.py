"""Resumable copies: partial images at the destination, what they are named and when they go.

A long copy ends an archive now and then with partial images (the first layers of an image the
copy sends, see formats/rewrite.py, Rewrite.archives): each is loaded at once and named
`docker-d2d-partial:<source id>-<layers>`. An interrupted copy leaves them there; the next run
plans against what the destination holds, so it sends only the rest, and once the image is
verified and tagged the partial names go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..formats.digests import short
from ..model import EngineKind, ImageInfo
from .job import Checkpoint

if TYPE_CHECKING:
    from ..engine.protocol import DestinationEngine
    from ..formats.entries import Cut
    from .job import CopyResult, Reporter

PARTIAL_REPO = "docker-d2d-partial"
# Past a far link's first 256 MiB of layers, an interrupt costs minutes: checkpoint there. On a
# local socket a copy is seconds, and holding back out-of-order layers would cost more than it saves.
AUTO_EVERY = 256 << 20


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$")
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_checkpoint(text: str) -> Checkpoint:
    """`auto`, `never` (or 0), or a size: 512MB, 1GiB, 64m, 1000000."""
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    if value in ("never", "off", "0"):
        return None
    m = _SIZE.match(value)
    if not m:
        raise UsageError(f"invalid checkpoint size {text!r}: use auto, never, or a size such as 256MB or 1GiB")
    base = 1024 if m[3].startswith("i") else 1000
    size = int(float(m[1]) * base ** _UNITS[m[2]])
    if size <= 0:
        raise UsageError(f"invalid checkpoint size {text!r}: it must be more than 0")
    return size


def every(option: Checkpoint, far: bool) -> int | None:
    """`far`: either engine is reached over ssh or tcp beyond loopback."""
    if option == "auto":
        return AUTO_EVERY if far else None
    return option


def partial_tag(source_id: str, layers: int) -> str:
    return f"{short(source_id)}-{layers}"


def partial_refs(held: Iterable[ImageInfo], source_ids: Iterable[str]) -> dict[str, int]:
    """The partial names the destination holds for these source images: ref -> its layers."""
    wanted = {short(i) for i in source_ids}
    found: dict[str, int] = {}
    for image in held:
        for ref in image.repo_tags:
            repo, _, tag = ref.rpartition(":")
            stem, _, layers = tag.rpartition("-")
            if repo.split("/")[-1] == PARTIAL_REPO and stem in wanted and layers.isdigit():
                found[ref] = int(layers)
    return found


def resume_note(found: dict[str, int]) -> str:
    most = max(found.values())
    return (
        f"resuming an interrupted copy: the destination holds its first {most} layer(s) "
        f"({', '.join(sorted(found))}); those are not sent again"
    )


def kept_note(refs: Sequence[str], destination: str) -> str:
    return (
        f"{len(refs)} partial image(s) stay at {destination} ({', '.join(refs)}): "
        "run the same command again to send only what is still missing"
    )


def keep_partials(dst: DestinationEngine, cut: Cut, reporter: Reporter, result: CopyResult) -> None:
    """A checkpoint's archive is loaded: name its partial images, so that they stay (an engine may
    prune what carries no name) and the next run finds them."""
    assert dst.info is not None
    store = dst.info.kind is EngineKind.CONTAINERD
    for image, source_id in zip(cut.images, cut.sources):
        tag = partial_tag(source_id, len(image.diff_ids))
        dst.tag(image.loaded_as(store), PARTIAL_REPO, tag)
        ref = f"{PARTIAL_REPO}:{tag}"
        result.partials.append(ref)
        reporter.note(f"checkpoint: the first {len(image.diff_ids)} layer(s) are at the destination as {ref}")
