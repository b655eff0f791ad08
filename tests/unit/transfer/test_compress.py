from __future__ import annotations

import gzip
import io
from collections.abc import Iterator

import pytest
import zstandard

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.errors import UsageError
from docker_d2d.model import EngineInfo, EngineKind
from docker_d2d.transfer.compress import Compression, accepts_zstd_layers, choose, compressed

TEXT = b"a line of an ordinary config file\n" * 5000
ZEROS = bytes(200_000)  # compressible, but flagged as an already compressed blob below


def run(how: Compression) -> tuple[bytes, int]:
    regions = [(TEXT, False), (ZEROS, True), (TEXT, False)]
    state = {"raw": False}

    def body() -> Iterator[bytes]:
        for data, raw in regions:
            state["raw"] = raw
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

    out = b"".join(bytes(c) for c in compressed(body(), how, lambda: state["raw"]))
    return out, len(out)


def test_gzip_stores_already_compressed_regions() -> None:
    out, size = run(Compression.GZIP)
    assert gzip.decompress(out) == TEXT + ZEROS + TEXT
    assert size > len(ZEROS)  # the flagged region was stored, not compressed
    assert size < len(ZEROS) + len(TEXT)  # the rest was compressed


def test_zstd_stores_already_compressed_regions() -> None:
    out, size = run(Compression.ZSTD)
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out), read_across_frames=True)
    assert reader.read() == TEXT + ZEROS + TEXT
    assert size < len(ZEROS) + len(TEXT)


def test_none_passes_through() -> None:
    assert b"".join(compressed([b"ab", b"c"], Compression.NONE)) == b"abc"


def test_auto_choice() -> None:
    d20 = EngineInfo(EngineKind.GRAPHDRIVER, "20.10.24", "1.41")
    d26 = EngineInfo(EngineKind.GRAPHDRIVER, "26.1.5", "1.45")
    pod = EngineInfo(EngineKind.PODMAN, "4.3.1", "1.41")
    ssh, unix = parse_endpoint("ssh://h"), parse_endpoint("unix:///s")
    assert choose(Compression.AUTO, unix, d26) is Compression.NONE
    assert choose(Compression.AUTO, parse_endpoint("tcp://127.0.0.1:2375"), d26) is Compression.NONE
    assert choose(Compression.AUTO, parse_endpoint("tcp://10.1.1.1:2375"), d26) is Compression.ZSTD
    assert choose(Compression.AUTO, ssh, d20) is Compression.GZIP
    assert choose(Compression.AUTO, ssh, pod) is Compression.ZSTD
    with pytest.raises(UsageError, match="cannot load zstd"):
        choose(Compression.ZSTD, ssh, d20)


def test_which_destinations_take_zstd_layers() -> None:
    takes = {
        (EngineKind.GRAPHDRIVER, "20.10.24"): False,  # reads them as a broken tar
        (EngineKind.GRAPHDRIVER, "23.0.0"): True,
        (EngineKind.GRAPHDRIVER, "26.1.5"): True,
        (EngineKind.CONTAINERD, "28.5.2"): True,
        (EngineKind.PODMAN, "4.3.1"): False,  # keeps them, then cannot save the image
        (EngineKind.PODMAN, "5.4.2"): True,
        (EngineKind.GRAPHDRIVER, "dev"): False,  # unknown: plain layers are always safe
    }
    for (kind, version), expected in takes.items():
        assert accepts_zstd_layers(EngineInfo(kind, version, "1.41")) is expected, (kind, version)
