"""The local side's pure parts: frames, results, what the agent may compress with, the packed program."""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict
from pathlib import Path
from unittest.mock import MagicMock

import pytest

from docker_d2d.errors import ArchiveError
from docker_d2d.formats.agent import HEADER
from docker_d2d.formats.entries import RewriteResult, WrittenImage, result_from_json
from docker_d2d.model import EngineInfo, EngineKind
from docker_d2d.remote import pack
from docker_d2d.remote.run import read_frames
from docker_d2d.transfer.compress import Compression
from docker_d2d.transfer.sources import accepted


def frames(*items: tuple[bytes, bytes]) -> bytes:
    return b"".join(HEADER.pack(k, len(p)) + p for k, p in items)


def feeder(data: bytes, step: int) -> object:
    pos = 0

    def recv(n: int) -> bytes:
        nonlocal pos
        out = data[pos : pos + min(n, step)]
        pos += len(out)
        return out

    return recv


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_frames_split_across_any_reads(step: int) -> None:
    data = frames((b"E", b'{"event":"hello"}'), (b"D", b"x" * 700), (b"D", b""), (b"E", b"{}"))
    assert list(read_frames(feeder(data, step))) == [  # type: ignore[arg-type]
        (b"E", b'{"event":"hello"}'),
        (b"D", b"x" * 700),
        (b"D", b""),
        (b"E", b"{}"),
    ]


@pytest.mark.parametrize("cut", [2, 9])
def test_a_stream_cut_inside_a_frame_is_an_error(cut: int) -> None:
    data = frames((b"D", b"abcdefgh"))[:cut]
    with pytest.raises(ArchiveError):
        list(read_frames(feeder(data, 100)))  # type: ignore[arg-type]


def test_output_that_is_not_frames_is_refused_at_once() -> None:
    with pytest.raises(ArchiveError, match="not framed"):
        list(read_frames(feeder(b"Welcome to the server!\n" + b"x" * 100, 100)))  # type: ignore[arg-type]


def test_result_round_trips_through_json() -> None:
    result = RewriteResult(
        images=[WrittenImage("sha256:c", ("sha256:a", "sha256:b"), "sha256:m")],
        aliases={"sha256:m": "sha256:c"},
        layers_sent=1,
        layers_skipped=1,
        bytes_sent=10,
        bytes_skipped=20,
        spooled_bytes=0,
    )
    assert result_from_json(json.loads(json.dumps(asdict(result)))) == result


def _dst(kind: EngineKind, version: str) -> MagicMock:
    dst = MagicMock()
    dst.info = EngineInfo(kind, version, "1.41")
    return dst


def test_compression_follows_what_the_destination_loads() -> None:
    assert accepted(Compression.AUTO, _dst(EngineKind.GRAPHDRIVER, "26.1.5")) == ["zstd", "gzip"]
    assert accepted(Compression.AUTO, _dst(EngineKind.GRAPHDRIVER, "20.10.24")) == ["gzip"]
    assert accepted(Compression.AUTO, _dst(EngineKind.PODMAN, "4.3.1")) == ["zstd", "gzip"]
    assert accepted(Compression.NONE, _dst(EngineKind.PODMAN, "4.3.1")) == ["none"]
    assert accepted(Compression.GZIP, _dst(EngineKind.CONTAINERD, "26.1.5")) == ["gzip"]


def test_the_program_is_the_installed_modules() -> None:
    payload = pack.program({"x": 1})
    length, _, rest = payload.partition(b"\n")
    doc = json.loads(zlib.decompress(rest[: int(length)]))
    import docker_d2d.formats.agent
    import docker_d2d.formats.rewrite

    assert doc["modules"]["docker_d2d.formats.rewrite"] == Path(docker_d2d.formats.rewrite.__file__).read_text()
    assert doc["modules"]["docker_d2d.formats.agent"] == Path(docker_d2d.formats.agent.__file__).read_text()
    assert doc["main"] == "docker_d2d.formats.agent" and doc["modules"]["docker_d2d"] == ""
    assert doc["job"] == {"x": 1}
    assert set(doc["packages"]) == {
        "docker_d2d",
        "docker_d2d.formats",
        "docker_d2d.formats.readers",
        "docker_d2d.formats.stores",
    }
    assert "'" not in pack.BOOTSTRAP  # it travels single-quoted in the exec request
