"""A load body's compression: gzip members or zstd frames, stored where compressing does not pay.

Shared by this process (transfer/compress.py) and the agent on the source host, so it keeps to
Python 3.8 and the standard library (zstandard only where it can be imported). Engines read a body
of several gzip members or zstd frames as one stream, so the body switches between compressing
and storing by starting a new member or frame.

Two kinds of data are stored rather than compressed: blobs compressed already (the caller says
so: their media type), and data that does not shrink (random files, archives, model weights inside
a plain layer tar). Compressing those costs the client's CPU (gzip -1 runs at about 30 MB/s on
incompressible data here) for nothing on the wire. So the body is weighed in windows of WINDOW
bytes: the first SAMPLE bytes of each are compressed on the side (zlib's fastest level, a cheap
and fair judge of what zstd and gzip will make of them); a window whose sample does not come below
KEEP of its size is stored. Measuring the compressor's own output instead would need a flush per
window, which stalls multi-threaded zstd.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

# zstd's fastest (negative) level: close to a copy.
ZSTD_FASTEST = -131072
WINDOW = 8 << 20
SAMPLE = 64 << 10
MIN_SAMPLE = 4 << 10  # a smaller chunk (a tar header) says nothing of the data: it keeps the mode
KEEP = 0.9


def new_compressor(kind: str, stored: bool) -> Any:
    """A compressobj for one gzip member or zstd frame (`kind`: "gzip" or "zstd")."""
    if kind == "zstd":
        import zstandard

        if stored:
            return zstandard.ZstdCompressor(level=ZSTD_FASTEST).compressobj()
        # Multi-threaded, so compression keeps up with a 1 Gbit link on two cores.
        return zstandard.ZstdCompressor(level=3, threads=min(4, os.cpu_count() or 1)).compressobj()
    return zlib.compressobj(0 if stored else 1, zlib.DEFLATED, 31)


def shrinks(sample: bytes | memoryview) -> bool:
    return len(zlib.compress(sample, 1)) <= KEEP * len(sample)


class BodyCompressor:
    """One body's compressor. `write(chunk, compressed_already)` returns the bytes to send for
    `chunk`, `close()` the end of the stream."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stored = False
        self.obj = new_compressor(kind, False)
        self._left = 0  # bytes left in the current window
        self._window_stored = False
        self.skipped = 0  # bytes stored because their window's sample did not shrink

    def write(self, chunk: bytes | memoryview, compressed_already: bool) -> bytes:
        store = compressed_already
        if not compressed_already:
            if self._left <= 0 and len(chunk) >= MIN_SAMPLE:
                self._window_stored = not shrinks(chunk[:SAMPLE])
                self._left = WINDOW
            self._left -= len(chunk)
            store = self._window_stored
            if store:
                self.skipped += len(chunk)
        ended = b""  # the member or frame the switch ends
        if store != self.stored:
            ended = self.obj.flush()
            self.stored, self.obj = store, new_compressor(self.kind, store)
        out: bytes = self.obj.compress(chunk)
        return ended + out if ended else out

    def close(self) -> bytes:
        out: bytes = self.obj.flush()
        return out
