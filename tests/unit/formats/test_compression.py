"""The body compressor stores what does not shrink and compresses what does (issue 16, item 8)."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from docker_d2d.formats.compression import WINDOW, BodyCompressor

CHUNK = 1 << 20
TEXT = b"a line of an ordinary config file, with some words in it\n" * (CHUNK // 56 + 1)


def compress(kind: str, data: bytes, blob: bool = False) -> tuple[bytes, BodyCompressor]:
    body = BodyCompressor(kind)
    out = [body.write(data[i : i + CHUNK], blob) for i in range(0, len(data), CHUNK)]
    out.append(body.close())
    return b"".join(out), body


def decompress(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.decompress(data)
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_incompressible_data_is_stored(kind: str) -> None:
    noise = os.urandom(WINDOW * 3)
    out, body = compress(kind, noise)
    assert decompress(kind, out) == noise
    assert body.skipped == len(noise)
    assert len(out) < len(noise) * 1.01


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_each_window_is_judged_on_its_own(kind: str) -> None:
    text = (TEXT * (WINDOW // len(TEXT) + 1))[:WINDOW]
    noise = os.urandom(WINDOW)
    data = noise + text + noise + text
    out, body = compress(kind, data)
    assert decompress(kind, out) == data
    assert body.skipped == 2 * len(noise)
    assert len(out) < 2 * len(noise) + len(text) / 5  # the text windows were compressed


def test_a_small_chunk_keeps_the_mode_it_finds() -> None:
    body = BodyCompressor("gzip")
    noise = os.urandom(WINDOW)
    parts = [body.write(b"x" * 512, False)]  # a tar header: no window starts on it
    assert not body.stored
    parts += [body.write(noise[i : i + CHUNK], False) for i in range(0, len(noise), CHUNK)]
    assert body.stored and body.skipped == len(noise)
    parts.append(body.close())
    assert gzip.decompress(b"".join(parts)) == b"x" * 512 + noise


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_text_is_never_stored(kind: str) -> None:
    text = (TEXT * (3 * WINDOW // len(TEXT) + 1))[: 3 * WINDOW]
    out, body = compress(kind, text)
    assert decompress(kind, out) == text
    assert body.skipped == 0 and len(out) < len(text) / 10


def test_blobs_compressed_already_do_not_count_as_incompressible_data() -> None:
    blob = os.urandom(2 * WINDOW)
    body = BodyCompressor("gzip")
    out = [body.write(blob[i : i + CHUNK], True) for i in range(0, len(blob), CHUNK)]
    out.append(body.write(TEXT, False))
    out.append(body.close())
    assert gzip.decompress(b"".join(out)) == blob + TEXT
    assert body.skipped == 0


def feed(body: BodyCompressor, data: bytes, seconds_per_output: float) -> bytes:
    out = []
    for i in range(0, len(data), CHUNK):
        piece = body.write(data[i : i + CHUNK], False)
        out.append(piece)
        if piece:
            body.sent(seconds_per_output)
    out.append(body.close())
    return b"".join(out)


def test_a_link_faster_than_the_compressor_gets_the_data_stored() -> None:
    text = (TEXT * (4 * WINDOW // len(TEXT) + 1))[: 4 * WINDOW]
    body = BodyCompressor("gzip")
    out = feed(body, text, 1e-9)  # the output went out at once: the compressor is the bottleneck
    assert gzip.decompress(out) == text
    # The first window was compressed and timed; the windows after it went stored.
    assert body.skipped == len(text) - WINDOW


def test_a_slow_link_keeps_compression() -> None:
    text = (TEXT * (4 * WINDOW // len(TEXT) + 1))[: 4 * WINDOW]
    body = BodyCompressor("gzip")
    out = feed(body, text, 1.0)  # a second per output: storing would take far longer
    assert gzip.decompress(out) == text
    assert body.skipped == 0 and len(out) < len(text) / 10


def test_untimed_output_says_nothing_of_the_link() -> None:
    text = (TEXT * (3 * WINDOW // len(TEXT) + 1))[: 3 * WINDOW]
    body = BodyCompressor("zstd")
    out = [body.write(text[i : i + CHUNK], False) for i in range(0, len(text), CHUNK)]
    out.append(body.close())
    assert decompress("zstd", b"".join(out)) == text
    assert body.skipped == 0


def test_zstd_keeps_compressing_on_a_fast_link() -> None:
    text = (TEXT * (3 * WINDOW // len(TEXT) + 1))[: 3 * WINDOW]
    body = BodyCompressor("zstd")
    assert decompress("zstd", feed(body, text, 1e-9)) == text
    assert body.skipped == 0
