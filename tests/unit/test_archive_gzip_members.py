"""Layers stored as several gzip members (eStargz, `cat a.gz b.gz`): the hasher inflates every
valid one to exactly what `gzip.decompress` gives, in bounded memory, however the bytes arrive."""

from __future__ import annotations

import gzip
import hashlib
import os
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docker_d2d.archive import _DiffHasher
from docker_d2d.errors import ArchiveError
from docker_d2d.tarstream import CHUNK


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def hashed(blob: bytes, feed: int, limit: int | None) -> _DiffHasher:
    h = _DiffHasher(limit=limit)
    for piece in pieces(blob, feed):
        h.update(memoryview(piece))
    h.finish()
    return h


def check(members: list[bytes], feed: int) -> None:
    blob = b"".join(gzip.compress(m, mtime=0) for m in members)
    expected = gzip.decompress(blob)
    # The bound is the exact size: a byte fed twice is refused at once instead of hashed wrong.
    h = hashed(blob, feed, limit=len(expected))
    assert h.uncompressed == len(expected)
    assert h.diff_digest() == sha(expected) and h.raw_digest() == sha(blob)
    assert h.media_type is not None and h.media_type.endswith("+gzip")


# Members whose inflated end falls exactly on an output step, just before and just after it,
# and members that are tiny: fed whole, in CHUNK pieces, and in odd small pieces.
SHAPES = {
    "at a step": [b"y" * CHUNK] * 3,
    "two steps each": [b"y" * (2 * CHUNK)] * 4,
    "five steps each": [b"y" * (5 * CHUNK)] * 3,
    "a byte short": [b"y" * (CHUNK - 1)] * 3,
    "a byte over": [b"y" * (CHUNK + 1)] * 3,
    "mixed": [b"y" * CHUNK, b"", os.urandom(100), b"z" * (3 * CHUNK), b"q" * (CHUNK - 7), b"w"],
    "incompressible": [os.urandom(CHUNK), os.urandom(CHUNK + 13)],
    "empty ones": [b"", b"", b"a", b""],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("feed", [1 << 30, CHUNK, 4093, 1], ids=["whole", "chunk", "odd", "bytewise"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_members_inflate_once(shape: str, feed: int) -> None:
    members = SHAPES[shape]
    if feed == 1 and sum(len(m) for m in members) > 4 * CHUNK:
        feed = 97  # bytewise through megabytes only costs time
    check(members, feed)


@pytest.mark.timeout(60)
def test_many_tiny_members() -> None:
    check([bytes([i % 251]) * (i % 37) for i in range(20000)], 1 << 30)
    check([bytes([i % 251]) * (i % 37) for i in range(2000)], 509)


@pytest.mark.timeout(120)
def test_memory_stays_bounded_with_many_members_at_steps() -> None:
    """Three and more members that end on an output step once grew memory without limit."""
    member = gzip.compress(b"y" * (4 * CHUNK), mtime=0)  # 4 MB that compress to 4 kB
    blob = member * 64
    tracemalloc.start()
    try:
        h = hashed(blob, len(blob), limit=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert h.uncompressed == 64 * 4 * CHUNK and h.diff_digest() == sha(b"y" * (256 * CHUNK))
    assert peak < 3 * CHUNK, f"peak {peak} bytes"


def test_garbage_after_the_last_member_is_refused() -> None:
    blob = gzip.compress(b"y" * CHUNK, mtime=0) + b"not gzip"
    with pytest.raises(ArchiveError, match="stream is corrupt"):
        hashed(blob, CHUNK, limit=None)


def test_a_bound_still_stops_many_members() -> None:
    blob = gzip.compress(b"\0" * CHUNK, mtime=0) * 8
    with pytest.raises(ArchiveError, match="uncompressed"):
        hashed(blob, len(blob), limit=3 * CHUNK)


# Payloads are short runs and random bytes, with sizes drawn around output steps.
SIZES = st.sampled_from([0, 1, 2, 511, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK])
payload = st.one_of(
    st.binary(max_size=3000),
    st.tuples(st.integers(0, 255), SIZES).map(lambda t: bytes([t[0]]) * t[1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    members=st.lists(st.tuples(payload, st.sampled_from([0, 1, 6, 9])), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 1 << 24), max_size=8),
)
def test_any_members_any_split_equal_gzip_decompress(members: list[tuple[bytes, int]], cuts: list[int]) -> None:
    blob = b"".join(gzip.compress(m, compresslevel=level, mtime=0) for m, level in members)
    expected = gzip.decompress(blob)
    h = _DiffHasher(limit=len(expected))
    start = 0
    for cut in sorted(c % (len(blob) + 1) for c in cuts):
        h.update(blob[start:cut])
        start = cut
    h.update(blob[start:])
    h.finish()
    assert h.uncompressed == len(expected) and h.diff_digest() == sha(expected)
