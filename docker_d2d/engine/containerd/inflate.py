"""A compressed load body made plain again, for a node whose `ctr` reads plain tar only (a 1.x
client: containerd 2's reads gzip and zstd itself) and is reached here (a local socket, a node
container): gzip members or zstd frames, one after another, as transfer/compress.py writes them."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(head: bytes) -> str:
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    return "none"


def inflated(chunks: Iterable[bytes | memoryview], how: str) -> Iterator[bytes]:
    if how == "gzip":
        return _members(chunks, lambda: zlib.decompressobj(31))
    if how == "zstd":
        import zstandard

        return _members(chunks, zstandard.ZstdDecompressor().decompressobj)
    return (bytes(c) for c in chunks)


def _members(chunks: Iterable[bytes | memoryview], new: Callable[[], Any]) -> Iterator[bytes]:
    """Each gzip member or zstd frame through a decompressor of its own (`new`), in turn."""
    member = new()
    for chunk in chunks:
        data = bytes(chunk)
        while data:
            out = member.decompress(data)
            if out:
                yield out
            if not member.eof:
                break
            data = member.unused_data  # the next member begins here
            member = new()
