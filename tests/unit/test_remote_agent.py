"""The packed agent run by the oldest pythons here (3.8, 3.9) and ours, against a canned export
served by a small fake engine on a unix socket: its archive must equal the local Rewriter's."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import signal
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import zstandard

from docker_d2d.archive import OutputFormat, Rewriter, StreamSpec
from docker_d2d.remote.agent import DATA, EVENT, spec_to_json
from docker_d2d.remote.pack import BOOTSTRAP, EXIT_TOO_OLD, program
from docker_d2d.remote.run import read_frames, result_from_json
from tests.unit.test_archive import DIFFS, legacy_export, make_tar, oci_export
from tests.unit.test_archive_integrity import LAYERS as LINK_LAYERS
from tests.unit.test_archive_integrity import config_for
from tests.unit.test_archive_integrity import legacy as links_legacy
from tests.unit.test_archive_integrity import podman as links_podman
from tests.unit.test_archive_integrity import sha as integrity_sha

PYENV = Path("/root/.pyenv/versions")
OLDEST = [str(PYENV / v / "bin/python3") for v in ("3.8.18", "3.9.18")]
PYTHONS = [*OLDEST, sys.executable]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    archive = b""
    status = 200
    stall = False  # send the first chunk, then hang (an export that takes long)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        if srv.status != 200:
            body = json.dumps({"message": "reference does not exist"}).encode()
            self.send_response(srv.status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        step = 5000
        for i in range(0, len(srv.archive), step):
            piece = srv.archive[i : i + step]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            if srv.stall:
                time.sleep(3600)
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[_Server, str]]:
    path = str(tmp_path / "engine.sock")
    server = _Server(path, _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, path
    server.shutdown()
    server.server_close()


def start(python: str, job: dict[str, object]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [python, "-c", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(program(job))
    proc.stdin.flush()  # and keep it open: closing it means the channel is gone
    return proc


def recv(proc: subprocess.Popen[bytes]) -> Callable[[int], bytes]:
    """The agent's stdout as `read_frames` reads it: with the default bufsize, Popen opens the pipe
    as a BufferedReader, whose read1 returns what has arrived (typeshed only says IO[bytes])."""
    return cast(io.BufferedReader, proc.stdout).read1


def run_agent(python: str, job: dict[str, object]) -> tuple[bytes, list[dict[str, object]], int]:
    proc = start(python, job)
    assert proc.stdout is not None and proc.stdin is not None
    data, events = [], []
    for kind, payload in read_frames(recv(proc)):
        if kind == DATA:
            data.append(payload)
        else:
            assert kind == EVENT
            events.append(json.loads(payload))
    proc.stdin.close()
    code = proc.wait(timeout=30)
    return b"".join(data), events, code


def job(socket: str, spec: StreamSpec, compress: list[str]) -> dict[str, object]:
    return {"socket": socket, "api": "1.41", "names": ["sha256:abc"], "spec": spec_to_json(spec), "compress": compress}


def local(archive: bytes, spec: StreamSpec, tmp_path: Path) -> tuple[bytes, Rewriter]:
    rw = Rewriter(iter([archive]), spec, spool_dir=tmp_path)
    return b"".join(bytes(c) for c in rw.stream()), rw


def members(archive: bytes) -> list[tuple[str, int, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m.name, m.size, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


L_LAYERS = [LINK_LAYERS[0], LINK_LAYERS[1], LINK_LAYERS[0]]  # a repeated layer: written as a link
L_DIFFS = [integrity_sha(b) for b in L_LAYERS]


def _legacy_case() -> tuple[bytes, StreamSpec]:
    data, named = legacy_export()
    return data, StreamSpec(OutputFormat.LEGACY, frozenset(DIFFS[:2]), named, (DIFFS[2],))


def _legacy_links_case() -> tuple[bytes, StreamSpec]:
    data, named = links_legacy(L_LAYERS, config_for(L_DIFFS), links="sym")
    return data, StreamSpec(OutputFormat.LEGACY, frozenset(), named, (L_DIFFS[-1],))


def _multi_member_case() -> tuple[bytes, StreamSpec]:
    """Blobs of several gzip members (eStargz), ending on and next to the inflater's output steps."""
    layers = [[b"y" * (2 << 20)] * 3, [b"z" * ((1 << 20) + 1)] * 4, [b"a", b"b" * (1 << 20)]]
    blobs = [b"".join(gzip.compress(m, mtime=0) for m in layer) for layer in layers]
    diffs = [integrity_sha(b"".join(layer)) for layer in layers]
    config = config_for(diffs)
    names = [f"blobs/sha256/{integrity_sha(b)[7:]}" for b in [*blobs, config]]
    manifest = [{"Config": names[-1], "Layers": names[:-1]}]
    entries = sorted(zip(names, [*blobs, config]))
    return make_tar([*entries, ("manifest.json", json.dumps(manifest).encode())]), StreamSpec(
        OutputFormat.OCI, frozenset(diffs[:1]), {}, tuple(diffs)
    )


CASES: dict[str, Callable[[], tuple[bytes, StreamSpec]]] = {
    "legacy->legacy": _legacy_case,
    "oci->oci": lambda: (
        oci_export(),
        StreamSpec(OutputFormat.OCI, frozenset(DIFFS[:1]), {f"blobs/sha256/{d[7:]}": d for d in DIFFS}),
    ),
    # links, as Docker < 25 writes a repeated layer and Podman every v1 layer: the link-following code
    "legacy links->legacy": _legacy_links_case,
    "podman->oci": lambda: (
        links_podman(L_LAYERS, config_for(L_DIFFS)),
        StreamSpec(OutputFormat.OCI, frozenset(L_DIFFS[:1]), {f"{d[7:]}.tar": d for d in L_DIFFS}),
    ),
    # gzip blobs under unpredictable names: the reader must spool one to learn its diff id
    "containerd gzip->oci": lambda: (
        oci_export(compress=True),
        StreamSpec(OutputFormat.OCI, frozenset(DIFFS[:1]), {}, tuple(DIFFS)),
    ),
    "multi-member gzip->oci": _multi_member_case,
}


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.split("/")[-3] if "pyenv" in p else "ours")
@pytest.mark.parametrize("case", list(CASES))
def test_agent_output_equals_the_local_rewriter(
    python: str, case: str, engine: tuple[_Server, str], tmp_path: Path
) -> None:
    server, path = engine
    server.archive, spec = CASES[case]()
    data, events, code = run_agent(python, job(path, spec, ["gzip"]))
    assert code == 0, events
    assert events[0]["event"] == "hello" and events[0]["compression"] == "gzip"
    if "pyenv" in python:
        assert str(events[0]["python"]).startswith(python.split("/")[-3][:3])
    expected, rw = local(server.archive, spec, tmp_path)
    assert members(gzip.decompress(data)) == members(expected)
    if "3.8" not in python:  # 3.8's tarfile fills devmajor/devminor of plain files with zeros: same archive
        assert gzip.decompress(data) == expected
    result = next(e for e in events if e["event"] == "result")
    assert result_from_json(result["result"]) == rw.result  # type: ignore[arg-type]
    progress = [i for e in events if e["event"] == "progress" for i in e["items"]]  # type: ignore[attr-defined]
    assert sum(1 for i in progress if i[0] == "skipped") == rw.result.layers_skipped
    assert sum(i[2] for i in progress if i[0] == "advanced") == rw.result.bytes_sent


@pytest.mark.parametrize("python", [OLDEST[0], sys.executable], ids=["3.8-zstd-binary", "ours-zstandard"])
def test_zstd_where_the_host_can(python: str, engine: tuple[_Server, str], tmp_path: Path) -> None:
    server, path = engine
    server.archive, spec = CASES["oci->oci"]()
    data, events, code = run_agent(python, job(path, spec, ["zstd", "gzip"]))
    assert code == 0 and events[0]["compression"] == "zstd"
    expected, _ = local(server.archive, spec, tmp_path)
    assert members(zstandard.ZstdDecompressor().decompressobj().decompress(data)) == members(expected)


@pytest.mark.parametrize("decompress", [True, False], ids=["inflated", "as-they-are"])
@pytest.mark.parametrize("python", [OLDEST[0], sys.executable], ids=["3.8-no-zstandard", "ours-zstandard"])
def test_zstd_layers_where_the_host_can_read_them(
    python: str, decompress: bool, engine: tuple[_Server, str], tmp_path: Path
) -> None:
    """A store's zstd blobs, inflated for a destination that cannot take them or sent as they are:
    the host's output is the local side's; a host whose python cannot read zstd (not even to hash
    a blob) stops with the one error the local side falls back to the plain stream on."""
    from tests.unit.test_archive_store_shapes import DIFFS as Z_DIFFS
    from tests.unit.test_archive_store_shapes import ZSTD, store_export

    server, path = engine
    server.archive, _ = store_export([ZSTD, ZSTD, ZSTD])
    spec = StreamSpec(OutputFormat.LEGACY, frozenset(Z_DIFFS[:1]), {}, tuple(Z_DIFFS), decompress_zstd=decompress)
    data, events, code = run_agent(python, job(path, spec, ["gzip"]))
    assert events[0]["event"] == "hello"
    if python == sys.executable:
        assert code == 0
        expected, rw = local(server.archive, spec, tmp_path)
        assert gzip.decompress(data) == expected
        result = next(e for e in events if e["event"] == "result")
        assert result_from_json(result["result"]) == rw.result  # type: ignore[arg-type]
    else:
        assert code == 1
        assert events[-1]["event"] == "error" and events[-1]["kind"] == "ZstdUnavailable"
        assert "lacks the zstandard module" in str(events[-1]["message"])


def test_engine_error_is_reported(engine: tuple[_Server, str]) -> None:
    server, path = engine
    server.status = 404
    _, events, code = run_agent(OLDEST[0], job(path, CASES["oci->oci"]()[1], ["gzip"]))
    assert code == 1 and events == [
        {"event": "error", "kind": "not-found", "message": "export: reference does not exist"}
    ]


def test_missing_socket_is_a_connect_error(tmp_path: Path) -> None:
    _, events, code = run_agent(OLDEST[0], job(str(tmp_path / "none.sock"), CASES["oci->oci"]()[1], ["gzip"]))
    assert code == 1 and events[0]["kind"] == "connect"


def test_too_old_python_says_so() -> None:
    proc = subprocess.run(
        [str(PYENV / "3.7.16/bin/python3"), "-c", BOOTSTRAP], input=b"", capture_output=True, timeout=30
    )
    assert proc.returncode == EXIT_TOO_OLD and b"python 3.7 is older than 3.8" in proc.stderr


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_closing_stdin_ends_the_agent_and_its_children(
    compress: str, engine: tuple[_Server, str], tmp_path: Path
) -> None:
    server, path = engine
    server.archive, spec = CASES["oci->oci"]()
    server.stall = True
    proc = start(OLDEST[0], job(path, spec, [compress]))
    assert proc.stdout is not None and proc.stdin is not None
    first = next(read_frames(recv(proc)))
    assert json.loads(first[1])["event"] == "hello"
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == (1 if compress == "zstd" else 0)
    proc.stdin.close()
    assert proc.wait(timeout=10) == 75
    time.sleep(0.2)
    for child in children:
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)


def test_every_field_of_the_spec_reaches_the_host() -> None:
    import dataclasses

    from docker_d2d.remote.agent import spec_from_json

    spec = StreamSpec(
        OutputFormat.OCI,
        frozenset({DIFFS[0]}),
        {"blobs/sha256/x": DIFFS[1]},
        (DIFFS[2],),
        wanted=frozenset({"sha256:img"}),
        image_ids=frozenset({"sha256:img"}),
        limits={DIFFS[1]: 123},
        max_layer=456,
        left_out={DIFFS[0]: {"mediaType": "m", "digest": "sha256:c", "size": 7}},
        prefer_source=True,
        keep=frozenset({DIFFS[1]}),
        checkpoint=789,
        chains={"sha256:img": (DIFFS[0], DIFFS[1])},
        platform={"os": "linux", "architecture": "arm64"},
        decompress_zstd=True,
    )
    doc = json.loads(json.dumps(spec_to_json(spec)))
    assert set(doc) == {f.name for f in dataclasses.fields(StreamSpec)}
    assert spec_from_json(doc) == spec
