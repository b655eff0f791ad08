"""Where a resumable stream ends an archive: partial images that hold every layer it carried.

After `spec.checkpoint` bytes of layers the archive ends at the first point where prefixes of
the images (`spec.chains`) hold every layer it carried; those prefixes are written as partial
images under a synthetic config, and a new archive goes on (rewrite.Rewrite.archives).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .entries import BARRIER, END, Cut, LayerRecord, RewriteResult
from .filter import Filter
from .spec import StreamSpec
from .writers import Writer

if TYPE_CHECKING:
    from .entries import Output

# Partial images carry this label (value: the source image's id) and nothing else of the source's config.
PARTIAL_LABEL = "org.docker-d2d.partial-of"


def partial_config(source_id: str, diff_ids: tuple[str, ...], platform: Mapping[str, str]) -> bytes:
    """The config of a partial image: the first layers of `source_id`, enough to hold them at the
    destination. Deterministic, so that the same prefix is the same image on every run."""
    doc = {
        **platform,
        "config": {"Labels": {PARTIAL_LABEL: source_id}},
        "created": "1970-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def cut(spec: StreamSpec, layers: Filter, writer: Writer, result: RewriteResult) -> Iterator[Output]:
    """End this archive here if a checkpoint is due and partial images can hold what it carried."""
    assert spec.checkpoint is not None
    if layers.segment_bytes < spec.checkpoint:
        return
    if all(all(map(layers.placed, c)) for c in spec.chains.values()):
        return  # every layer is out: the images themselves come next, in this archive
    partials: dict[tuple[str, ...], str] = {}
    for source_id, chain in spec.chains.items():
        n = 0
        while n < len(chain) and layers.placed(chain[n]):
            n += 1
        if layers.segment & set(chain[:n]):
            partials.setdefault(tuple(chain[:n]), source_id)
    covered = {d for prefix in partials for d in prefix}
    if not partials or not layers.segment <= covered:
        return  # a layer sent out of order (its name did not tell which it was): not yet
    yield BARRIER
    images = []
    for prefix, source_id in partials.items():
        config = partial_config(source_id, prefix, spec.platform)
        records = [layers.by_diff.get(d) or LayerRecord("", 0, d, None) for d in prefix]
        written = yield from writer.image(config, prefix, records)
        images.append(written)
    yield from writer.index()
    yield END
    result.partials.extend(images)
    layers.segment, layers.segment_bytes = set(), 0
    yield Cut(tuple(images), tuple(partials.values()))
