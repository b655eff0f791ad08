"""The OCI image layout's names and documents: media types, blob paths, descriptors, manifests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Dict  # noqa: UP035 - Python 3.8 (see Descriptor)

from .digests import sha256

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = MT_LAYER + "+gzip"
MT_ZSTD = MT_LAYER + "+zstd"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'

Descriptor = Dict[str, Any]  # noqa: UP006 - mediaType, digest, size; a runtime alias, on the host's Python 3.8 too


def media_type(head: bytes) -> str:
    """A layer blob's media type, told by its first bytes."""
    if head[:2] == b"\x1f\x8b":
        return MT_GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return MT_ZSTD
    return MT_LAYER


def blob_path(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def blob_name(path: str) -> str | None:
    """'blobs/sha256/<hex>' -> 'sha256:<hex>'."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "blobs" and len(parts[2]) == 64:
        return f"{parts[1]}:{parts[2]}"
    return None


def uncompressed(diff_id: str, size: int = 0) -> Descriptor:
    """A layer named by its uncompressed digest."""
    return {"mediaType": MT_LAYER, "digest": diff_id, "size": size}


def manifest(config: bytes, layers: Sequence[Descriptor], *, compact: bool = True) -> bytes:
    """An image manifest naming `config` and `layers` (compact: no spaces, as the rewrite writes it)."""
    doc = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": list(layers),
    }
    return json.dumps(doc, separators=(",", ":")).encode() if compact else json.dumps(doc).encode()


def index(manifests: Sequence[Descriptor]) -> bytes:
    return json.dumps({"schemaVersion": 2, "manifests": list(manifests)}).encode()
