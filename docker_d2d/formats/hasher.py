"""A layer's two digests as its bytes pass: of the blob as it comes, and of the tar it inflates to."""

from __future__ import annotations

import hashlib
import itertools
import zlib
from collections.abc import Iterator
from typing import IO, Any, cast

from .errors import ArchiveError, ZstdUnavailable
from .oci import media_type
from .tarstream import CHUNK

# Compressed input handed to zlib per call. When a gzip member ends, zlib copies all the input
# after it into `unused_data`: small steps keep that copy small for a layer of many tiny members.
_GZIP_STEP = 64 << 10


class DiffHasher:
    """sha256 of the bytes as they come (the blob digest) and of their uncompressed form (the diff
    id; one hash when the blob is not compressed). Compressed blobs are inflated in bounded steps,
    so one that inflates hugely costs time, not memory; `limit` stops it early. `inflate_to`: a
    file that also gets the inflated bytes of a zstd blob."""

    def __init__(self, limit: int | None = None, inflate_to: IO[bytes] | None = None) -> None:
        self.raw = hashlib.sha256()
        self.media_type: str | None = None
        self.uncompressed = 0
        self._limit = limit
        self._inflate_to = inflate_to
        self._diff: Any = None  # a second hash, for compressed blobs only
        self._head = b""  # the first bytes, until there are enough to tell the compression
        self._gzip: Any = None
        self._zstd: Any = None

    def update(self, data: bytes | memoryview) -> None:
        self.raw.update(data)
        if self.media_type is None:
            if self._head or len(data) < 4:
                # A body that starts in a tiny chunk: gather 4 bytes before telling the compression.
                self._head += bytes(data)
                if len(self._head) < 4:
                    return
                data, self._head = self._head, b""
            self._start(bytes(data[:4]))
        self._plain_or_inflate(data)

    def _start(self, head: bytes) -> None:
        self.media_type = media_type(head)
        if self.media_type.endswith("+gzip"):
            self._gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.media_type.endswith("+zstd"):
            try:
                import zstandard
            except ImportError as exc:  # a source host's python (remote/): the local side has it
                raise ZstdUnavailable("a layer is zstd-compressed, and this python lacks the zstandard module") from exc

            sink = cast(IO[bytes], _Sink(self._plain if self._inflate_to is None else self._plain_kept))
            self._zstd = zstandard.ZstdDecompressor().stream_writer(sink, write_size=CHUNK)
        if self._gzip is not None or self._zstd is not None:
            self._diff = hashlib.sha256()

    def _plain_or_inflate(self, data: bytes | memoryview) -> None:
        try:
            if self._gzip is not None:
                self._inflate_gzip(data)
            elif self._zstd is not None:
                self._zstd.write(data)
            else:
                self._count(len(data))
        except ArchiveError:
            raise
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            raise ArchiveError(f"a layer's {self.media_type} stream is corrupt: {exc}") from exc

    def _inflate_gzip(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), _GZIP_STEP):
            buf: bytes | memoryview = view[start : start + _GZIP_STEP]
            while buf:
                if self._gzip.eof:  # another member follows (gzip allows concatenated members: eStargz)
                    self._gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._plain(self._gzip.decompress(buf, CHUNK))
                # Once a member has ended, all the input after it is in unused_data. CPython (3.8 to
                # 3.13) leaves the same bytes in unconsumed_tail too when the member ended on a call
                # that hit the output limit: feeding both inflated the next member twice.
                buf = self._gzip.unused_data if self._gzip.eof else self._gzip.unconsumed_tail

    def _plain(self, data: bytes) -> None:
        self._diff.update(data)
        self._count(len(data))

    def _plain_kept(self, data: bytes) -> None:
        self._plain(data)  # counted first: the limit stops a zstd bomb before it fills the disk
        assert self._inflate_to is not None
        self._inflate_to.write(data)

    def _count(self, n: int) -> None:
        self.uncompressed += n
        if self._limit is not None and self.uncompressed > self._limit:
            raise ArchiveError(
                f"a layer holds more than {self._limit} bytes uncompressed, far more than the source's inspect "
                "promised; refusing it"
            )

    def finish(self) -> None:
        if self.media_type is None:  # fewer than 4 bytes in all
            self._start(self._head)
            self._plain_or_inflate(self._head)
        if self._gzip is not None:
            self._plain(self._gzip.flush())
        elif self._zstd is not None:
            self._zstd.flush()

    def raw_digest(self) -> str:
        return "sha256:" + self.raw.hexdigest()

    def diff_digest(self) -> str:
        return "sha256:" + (self._diff or self.raw).hexdigest()


class _Sink:
    """Where zstandard's stream writer puts inflated bytes."""

    def __init__(self, write: Any) -> None:
        self.write = write

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def peek(body: Iterator[memoryview], n: int = 4) -> tuple[bytes, Iterator[memoryview]]:
    """A body's first `n` bytes (fewer if it is shorter), and the whole body, still to be read."""
    taken: list[memoryview] = []
    size = 0
    for chunk in body:
        taken.append(chunk)
        size += len(chunk)
        if size >= n:
            break
    return b"".join(bytes(c[:n]) for c in taken)[:n], itertools.chain(taken, body)


def read_file(f: IO[bytes]) -> Iterator[memoryview]:
    """A spool file's bytes, from where it stands."""
    while chunk := f.read(CHUNK):
        yield memoryview(chunk)
