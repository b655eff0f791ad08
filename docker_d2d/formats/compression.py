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

And on a link that takes data faster than gzip makes it (loopback, a LAN; gzip, which Docker < 23
needs, makes 30-100 MB/s here), compressing costs more time than it saves: where the caller tells
how long delivering each output took, a gzip window that would have gone out sooner stored has the
next ones stored, and compression is tried again after them. Not zstd: its worker threads keep up
with a gigabit link on two cores, and they hold output back by whole jobs, so a window's times say
little (measured: the rule made zstd slower, `tests/bench/bench_compress.py`).
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

# zstd's fastest (negative) level: close to a copy.
ZSTD_FASTEST = -131072
WINDOW = 8 << 20
SAMPLE = 64 << 10
MIN_SAMPLE = 4 << 10  # a smaller chunk (a tar header) says nothing of the data: it keeps the mode
KEEP = 0.97  # random data comes out at ~1.0; real files that shrink less than this are rare
FAST_LINK_WINDOWS = 8


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


class _Window:
    """What one window of compressed input cost: its bytes in and out, the seconds spent in the
    compressor and in delivering its output (told by the caller)."""

    def __init__(self) -> None:
        self.size_in = self.size_out = 0
        self.compressing = self.sending = 0.0

    def link_outruns_compressor(self) -> bool:
        """Whether storing would have delivered this window sooner: its input at the rate the
        link took the output, against compressing plus sending the output."""
        if not self.sending or not self.size_out:
            return False  # not told how the output went (a spool file shared by many links)
        return self.sending * self.size_in / self.size_out < self.compressing + self.sending


class BodyCompressor:
    """One body's compressor. `write(chunk, compressed_already)` returns the bytes to send for
    `chunk`, `close()` the end of the stream. A caller that delivers the output to a link tells
    how long each delivery took (`sent`): where the link takes data faster than the compressor
    makes it, the next FAST_LINK_WINDOWS windows are stored, then compression is tried again."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stored = False
        self.obj = new_compressor(kind, False)
        self._left = 0  # bytes left in the current window
        self._window_stored = False
        self._window = _Window()
        self._fast_link = 0  # windows still to store because the link outran the compressor
        self.skipped = 0  # bytes stored because their window did not shrink or the link was faster

    def _next_window(self, sample: bytes | memoryview) -> None:
        if not self._window_stored and self._window.link_outruns_compressor():
            self._fast_link = FAST_LINK_WINDOWS
        elif self._fast_link:
            self._fast_link -= 1
        self._window_stored = self._fast_link > 0 or not shrinks(sample)
        self._window = _Window()
        self._left = WINDOW

    def write(self, chunk: bytes | memoryview, compressed_already: bool) -> bytes:
        store = compressed_already
        if not compressed_already:
            if self._left <= 0 and len(chunk) >= MIN_SAMPLE:
                self._next_window(chunk[:SAMPLE])
            self._left -= len(chunk)
            store = self._window_stored
            if store:
                self.skipped += len(chunk)
        ended = b""  # the member or frame the switch ends
        if store != self.stored:
            ended = self.obj.flush()
            self.stored, self.obj = store, new_compressor(self.kind, store)
        started = time.perf_counter()
        out: bytes = self.obj.compress(chunk)
        if not store:
            self._window.compressing += time.perf_counter() - started
            self._window.size_in += len(chunk)
            self._window.size_out += len(out)
        return ended + out if ended else out

    def sent(self, seconds: float) -> None:
        """The output of the last write took this long to deliver."""
        if not self.stored and self.kind == "gzip":
            self._window.sending += seconds

    def close(self) -> bytes:
        out: bytes = self.obj.flush()
        return out
