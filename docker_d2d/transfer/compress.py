"""Compression of the load body on slow links. The engine detects gzip and zstd bodies itself."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import Any

from ..endpoint import Endpoint, Scheme
from ..engine.containerd.listing import reads_compressed
from ..errors import UsageError
from ..model import EngineInfo, EngineKind

# zstd's fastest (negative) level: close to a copy, for data that is compressed already.
ZSTD_FASTEST = -131072


class Compression(str, Enum):
    AUTO = "auto"
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


def _major(version: str) -> int | None:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return None


def accepts_zstd(dest: EngineInfo) -> bool:
    """Whether the destination's load reads a zstd body."""
    if dest.kind is EngineKind.PODMAN:
        return True
    if dest.kind is EngineKind.NODE:  # containerd 2's import reads zstd bodies; 1.x ctr only plain tar (node.py)
        return reads_compressed(dest)
    return (_major(dest.version) or 0) >= 23  # Docker 20.10 reads zstd bodies as a broken tar


def accepts_zstd_layers(dest: EngineInfo) -> bool:
    """Whether a layer may reach the destination as a zstd blob. Docker reads zstd from 23.0 on
    (moby pkg/archive DecompressStream), bodies and layers alike; Podman 4 loads zstd layers, keeps
    them as they are and then cannot save the image ("zstd compression is not supported for docker
    images"); Podman 5 can. An engine whose version we cannot read gets plain layers: always safe."""
    if dest.kind is EngineKind.NODE:
        return True  # containerd unpacks zstd layers since 1.5
    return (_major(dest.version) or 0) >= (5 if dest.kind is EngineKind.PODMAN else 23)


def far(endpoint: Endpoint) -> bool:
    """Whether the engine is reached over a link that may be slow: ssh, or tcp beyond loopback."""
    return endpoint.scheme.over_ssh or (endpoint.scheme is Scheme.TCP and not endpoint.is_local)


def choose(requested: Compression, endpoint: Endpoint, dest: EngineInfo) -> Compression:
    if requested is Compression.AUTO:
        if not far(endpoint):
            return Compression.NONE
        return Compression.ZSTD if accepts_zstd(dest) else Compression.GZIP
    if requested is Compression.ZSTD and not accepts_zstd(dest):
        raise UsageError(f"the destination ({dest.describe()}) cannot load zstd bodies; use --compress gzip")
    return requested


def _compressor(how: Compression, stored: bool) -> Any:
    if how is Compression.ZSTD:
        import zstandard

        if stored:
            return zstandard.ZstdCompressor(level=ZSTD_FASTEST).compressobj()
        # Multi-threaded, so compression keeps up with a 1 Gbit link on two cores.
        return zstandard.ZstdCompressor(level=3, threads=min(4, os.cpu_count() or 1)).compressobj()
    return zlib.compressobj(0 if stored else 1, zlib.DEFLATED, 31)


def compressed(
    body: Iterable[bytes | memoryview],
    how: Compression,
    already_compressed: Callable[[], bool] = lambda: False,
) -> Iterator[bytes | memoryview]:
    """Compress the body as one stream of gzip members or zstd frames. Regions for which
    `already_compressed()` is true when they arrive (compressed blobs) go into members/frames
    of their own that store rather than compress: a new member or frame starts at each switch,
    which gzip and zstd readers concatenate."""
    if how is Compression.NONE:
        yield from body
        return
    stored = False
    obj = _compressor(how, stored)
    for chunk in body:
        if already_compressed() != stored:
            yield obj.flush()
            stored = not stored
            obj = _compressor(how, stored)
        out = obj.compress(chunk)
        if out:
            yield out
    yield obj.flush()
