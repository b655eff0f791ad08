"""What a rewrite is told: the output format, the layers to leave out, what the source promised; and its wire form."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class OutputFormat(Enum):
    LEGACY = "docker-archive"  # manifest.json: what graphdriver engines load thin
    OCI = "oci-layout"  # index.json: what the containerd store and Podman load thin


@dataclass(frozen=True)
class StreamSpec:
    output: OutputFormat
    skip: frozenset[str]  # diff ids to leave out
    named: Mapping[str, str]  # source entry name -> diff id, where the name tells (readers/: expected_names)
    unnamed: tuple[str, ...] = ()  # diff ids (one per entry) whose entry names cannot be predicted
    wanted: frozenset[str] | None = None  # source image ids to write, when the export holds others too
    # What the source promised, checked as the bytes pass (empty: not checked). Image ids are
    # config digests, or in the containerd store the manifest or index digest naming the config.
    image_ids: frozenset[str] = frozenset()
    limits: Mapping[str, int] = field(default_factory=dict)  # diff id -> most bytes its entry may hold
    max_layer: int | None = None  # most bytes a layer entry not known by name may hold
    # How the output manifest names a left-out layer (OCI output): the descriptor the destination
    # is known to hold it under; else, with prefer_source, the source's own (compressed) descriptor;
    # else its uncompressed digest.
    left_out: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prefer_source: bool = False
    # The only layers the output may carry, where the export holds more (every platform of an
    # index, from a containerd store that cannot export one platform): the rest is dropped.
    keep: frozenset[str] | None = None
    # Resumable copies: once this many layer bytes went into one archive, it ends, at the first
    # point where partial images (prefixes of `chains`) hold every layer it carried; a new
    # archive goes on (see rewrite.py, `Rewrite.archives`). None: one archive.
    checkpoint: int | None = None
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # source image id -> diff ids
    platform: Mapping[str, str] = field(default_factory=dict)  # os, architecture[, variant] of partial configs
    # The destination cannot take zstd layers (Docker < 23 reads them as a broken tar, Podman 4
    # stores them and then cannot save the image): a zstd blob the source holds goes out as the
    # plain tar it decompresses to, under its diff id.
    decompress_zstd: bool = False


def spec_to_json(spec: StreamSpec) -> dict[str, Any]:
    """Every field: what the host's reader checks and how it names layers must be what the local
    one would do (a unit test holds this to StreamSpec's fields)."""
    return {
        "output": spec.output.value,
        "skip": sorted(spec.skip),
        "named": dict(spec.named),
        "unnamed": list(spec.unnamed),
        "wanted": None if spec.wanted is None else sorted(spec.wanted),
        "image_ids": sorted(spec.image_ids),
        "limits": dict(spec.limits),
        "max_layer": spec.max_layer,
        "left_out": {k: dict(v) for k, v in spec.left_out.items()},
        "prefer_source": spec.prefer_source,
        "keep": None if spec.keep is None else sorted(spec.keep),
        "checkpoint": spec.checkpoint,
        "chains": {k: list(v) for k, v in spec.chains.items()},
        "platform": dict(spec.platform),
        "decompress_zstd": spec.decompress_zstd,
    }


def spec_from_json(doc: dict[str, Any]) -> StreamSpec:
    def optional_set(value: Any) -> frozenset[str] | None:
        return None if value is None else frozenset(value)

    return StreamSpec(
        OutputFormat(doc["output"]),
        frozenset(doc["skip"]),
        dict(doc["named"]),
        tuple(doc["unnamed"]),
        wanted=optional_set(doc["wanted"]),
        image_ids=frozenset(doc["image_ids"]),
        limits=dict(doc["limits"]),
        max_layer=doc["max_layer"],
        left_out={k: dict(v) for k, v in doc["left_out"].items()},
        prefer_source=bool(doc["prefer_source"]),
        keep=optional_set(doc["keep"]),
        checkpoint=doc["checkpoint"],
        chains={k: tuple(v) for k, v in doc["chains"].items()},
        platform=dict(doc["platform"]),
        decompress_zstd=bool(doc["decompress_zstd"]),
    )
