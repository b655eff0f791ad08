"""Compression of the load body on slow links. The engine detects gzip and zstd bodies itself."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import Any

from .endpoint import Endpoint, Scheme
from .errors import UsageError
from .model import EngineInfo, EngineKind


class Compression(str, Enum):
    AUTO = "auto"
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


def accepts_zstd(dest: EngineInfo) -> bool:
    if dest.kind is EngineKind.PODMAN:
        return True
    try:
        return int(dest.version.split(".")[0]) >= 23  # Docker 20.10 reads zstd bodies as a broken tar
    except ValueError:
        return False


def choose(requested: Compression, endpoint: Endpoint, dest: EngineInfo) -> Compression:
    if requested is Compression.AUTO:
        slow = endpoint.scheme is Scheme.SSH or (endpoint.scheme is Scheme.TCP and not endpoint.is_local)
        if not slow:
            return Compression.NONE
        return Compression.ZSTD if accepts_zstd(dest) else Compression.GZIP
    if requested is Compression.ZSTD and not accepts_zstd(dest):
        raise UsageError(f"the destination ({dest.describe()}) cannot load zstd bodies; use --compress gzip")
    return requested


class Counted:
    """Counts the bytes that go on the wire."""

    def __init__(self) -> None:
        self.bytes = 0


def compressed(body: Iterable[bytes | memoryview], how: Compression, counter: Counted) -> Iterator[bytes | memoryview]:
    if how is Compression.NONE:
        for chunk in body:
            counter.bytes += len(chunk)
            yield chunk
        return
    obj: Any
    if how is Compression.ZSTD:
        import zstandard

        # Multi-threaded, so compression keeps up with a 1 Gbit link on two cores.
        obj = zstandard.ZstdCompressor(level=3, threads=min(4, os.cpu_count() or 1)).compressobj()
    else:
        obj = zlib.compressobj(1, zlib.DEFLATED, 31)
    for chunk in body:
        out = obj.compress(chunk)
        if out:
            counter.bytes += len(out)
            yield out
    tail = obj.flush()
    counter.bytes += len(tail)
    yield tail
