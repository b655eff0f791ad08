"""Compression of the load body on slow links. The engine detects gzip and zstd bodies itself."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum

from ..endpoint import Endpoint, Scheme
from ..engine.containerd.listing import reads_compressed
from ..errors import UsageError
from ..formats.compression import BodyCompressor
from ..model import EngineInfo, EngineKind


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


def compressed(
    body: Iterable[bytes | memoryview],
    how: Compression,
    already_compressed: Callable[[], bool] = lambda: False,
    timed: bool = False,
) -> Iterator[bytes | memoryview]:
    """Compress the body as one stream of gzip members or zstd frames. Regions for which
    `already_compressed()` is true when they arrive (compressed blobs), and data that does not
    shrink, are stored rather than compressed (formats/compression.py). `timed`: the consumer sends
    each output on the link as it gets it, so the time it takes tells the link's speed."""
    if how is Compression.NONE:
        yield from body
        return
    compressor = BodyCompressor(how.value)
    for chunk in body:
        out = compressor.write(chunk, already_compressed())
        if out:
            started = time.perf_counter()
            yield out
            if timed:
                compressor.sent(time.perf_counter() - started)
    yield compressor.close()
