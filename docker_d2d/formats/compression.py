"""A load body's compression: gzip members or zstd frames, stored where compressing does not pay.

Shared by this process (transfer/compress.py) and the agent on the source host, so it keeps to
Python 3.8 and the standard library (zstandard only where it can be imported). Engines read a body
of several gzip members or zstd frames as one stream, so the body switches between compressing
and storing by starting a new member or frame.

Two kinds of data are stored rather than compressed: blobs compressed already (the caller says
so: their media type), and data that did not shrink (random files, archives, model weights inside
a plain layer tar). Compressing those costs the client's CPU (gzip -1 runs at about 30 MB/s on
incompressible data here) for nothing on the wire. So every WINDOW of compressed input is weighed
when it ends: if it came out larger than KEEP of its size, the next RETRY bytes are stored, then
compression is tried on one window again.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

# zstd's fastest (negative) level: close to a copy.
ZSTD_FASTEST = -131072
WINDOW = 8 << 20
KEEP = 0.9
RETRY = 64 << 20


def new_compressor(kind: str, stored: bool) -> Any:
    """A compressobj for one gzip member or zstd frame (`kind`: "gzip" or "zstd")."""
    if kind == "zstd":
        import zstandard

        if stored:
            return zstandard.ZstdCompressor(level=ZSTD_FASTEST).compressobj()
        # Multi-threaded, so compression keeps up with a 1 Gbit link on two cores.
        return zstandard.ZstdCompressor(level=3, threads=min(4, os.cpu_count() or 1)).compressobj()
    return zlib.compressobj(0 if stored else 1, zlib.DEFLATED, 31)


def _sync(kind: str) -> int:
    # Ends the current block so that the output so far is all out, without ending the member.
    if kind == "zstd":
        import zstandard

        return int(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    return zlib.Z_SYNC_FLUSH


class BodyCompressor:
    """One body's compressor. `write(chunk, compressed_already)` returns the bytes to send for
    `chunk`, `close()` the end of the stream."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stored = False
        self.obj = new_compressor(kind, False)
        self._in = self._out = 0  # the current window, while compressing
        self._budget = 0  # input still to store before compression is tried again
        self.skipped = 0  # input bytes stored because compressing them did not pay

    def write(self, chunk: bytes | memoryview, compressed_already: bool) -> bytes:
        store = compressed_already or self._budget > 0
        parts = []
        if store != self.stored:
            parts.append(self.obj.flush())
            self.stored, self.obj = store, new_compressor(self.kind, store)
            self._in = self._out = 0
        out = self.obj.compress(chunk)
        parts.append(out)
        if compressed_already:
            pass
        elif store:
            self._budget -= len(chunk)
            self.skipped += len(chunk)
        else:
            self._in += len(chunk)
            self._out += len(out)
            if self._in >= WINDOW:
                tail = self.obj.flush(_sync(self.kind))
                parts.append(tail)
                if self._out + len(tail) > KEEP * self._in:
                    self._budget = RETRY
                self._in = self._out = 0
        return b"".join(parts)

    def close(self) -> bytes:
        out: bytes = self.obj.flush()
        return out
