"""What an engine answers, read: the API version to speak, image inspect, JSON message streams."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..model import ImageInfo, Platform

# The newest API version we were tested against; older engines get their own
# version, as the docker CLI negotiates it.
MAX_API_VERSION = "1.45"
MIN_API_VERSION = "1.24"


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def negotiate_version(server: str | None, override: str | None = None, server_min: str | None = None) -> str:
    """The docker CLI's rule, min(ours, the engine's), raised to the engine's floor when the engine
    refuses anything older (Docker 29.0 refused clients below 1.44; any engine may be started with
    DOCKER_MIN_API_VERSION): the calls we make mean the same in every version since 1.24."""
    if override:
        return override
    if not server:
        return MIN_API_VERSION
    version = min(server, MAX_API_VERSION, key=version_tuple)
    if server_min and version_tuple(server_min) > version_tuple(version):
        return min(server_min, server, key=version_tuple)
    return version


def history_size(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def json_stream(text: str) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return
        if isinstance(obj, dict):
            yield obj


def available(summary: dict[str, Any]) -> list[bool]:
    """Of an image in the containerd store's list with manifests (API 1.47): whether each of its
    platforms' images has all its content."""
    return [bool(m.get("Available")) for m in summary.get("Manifests") or [] if m.get("Kind") == "image"]


def full_id(image_id: str) -> str:
    return image_id if image_id.startswith("sha256:") else "sha256:" + image_id


def fingerprint(
    config: Mapping[str, Any] | None, architecture: Any, os: Any, created: Any, diff_ids: Sequence[str]
) -> str:
    """An image as the engines agree on it, whatever its id: across the containerd store's boundary
    (ids are manifest digests there) the same config is known by this."""
    # Engines render the same config differently: graphdriver Docker fills in the build's
    # parent as Config.Image, others leave it empty; empty fields come and go.
    empty: tuple[Any, ...] = (None, "", False, [], {})
    kept = {k: v for k, v in (config or {}).items() if k != "Image" and v not in empty}
    ident = {"Config": kept, "Architecture": architecture, "Os": os, "Created": created, "Layers": tuple(diff_ids)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def image_info(data: dict[str, Any]) -> ImageInfo:
    diff_ids = tuple((data.get("RootFS") or {}).get("Layers") or ())
    return ImageInfo(
        id=full_id(data["Id"]),
        diff_ids=diff_ids,
        repo_tags=tuple(data.get("RepoTags") or ()),
        created=data.get("Created") or "",
        repo_digests=tuple(data.get("RepoDigests") or ()),
        fingerprint=fingerprint(
            data.get("Config"), data.get("Architecture"), data.get("Os"), data.get("Created"), diff_ids
        ),
        size=int(data.get("Size") or 0),
        platform=Platform(*(str(data.get(k) or "") for k in ("Os", "Architecture", "Variant"))),
        media_type=str((data.get("Descriptor") or {}).get("mediaType") or ""),
    )


def stream_error(messages: Iterator[dict[str, Any]]) -> str | None:
    """The failure a load's or pull's message stream reports inside its HTTP 200 answer, if any."""
    for msg in messages:
        if msg.get("errorDetail") or msg.get("error"):
            return str((msg.get("errorDetail") or {}).get("message") or msg.get("error"))
    return None
