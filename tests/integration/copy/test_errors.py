"""Bad input and failures: one clear line naming the side and the cause, a non-zero exit,
nothing tagged at the destination, no temp files left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, image_exists, place_compressed, unique

from ..helpers import random_file

pytestmark = pytest.mark.engines


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("docker-d2d:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_unknown_image(engines: dict[str, Engine]) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, "nope-missing:404")
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert f"source {src.host}" in line and "no such image: nope-missing:404" in line


def test_missing_socket_names_the_destination(engines: dict[str, Engine], tmp_path: Path) -> None:
    proc = run_d2d("copy", "-s", engines["docker20"].host, "-d", f"unix://{tmp_path}/none.sock", "x:1")
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert f"destination unix://{tmp_path}/none.sock" in line and "no engine socket" in line


def test_connection_refused_on_tcp(engines: dict[str, Engine]) -> None:
    proc = run_d2d("push", "tcp://127.0.0.1:1", "x:1", env={"DOCKER_HOST": engines["docker20"].host})
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert "destination tcp://127.0.0.1:1" in line and "connection refused" in line


def test_bad_address() -> None:
    proc = run_d2d("copy", "-s", "ftp://somewhere", "-d", "unix:///x", "img")
    assert proc.returncode == 2
    assert "unsupported scheme 'ftp'" in _one_line(proc.stderr)


def test_permission_denied_on_socket(engines: dict[str, Engine], tmp_path: Path) -> None:
    # A socket the user may not open: a copy of the engine's socket path reached through a
    # directory only root may enter is refused by the kernel exactly like a 0660 root socket.
    proc = run_d2d("copy", "-s", engines["docker20"].host, "-d", engines["docker26"].host, "x:1", user="65534")
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert f"source {engines['docker20'].host}" in line and "permission denied" in line


@pytest.fixture
def spare_engine(engine_base: Path) -> Iterator[Engine]:
    engine = Engine(SPECS["docker20"], engine_base / unique("spare"))
    engine.start()
    yield engine
    engine.destroy()


def test_engine_error_during_export(spare_engine: Engine, engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = spare_engine, engines["docker26"]
    base = builder.base(unique("base") + ":1")
    app = unique("broken") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    builder.place(src, app)
    # Break the source's storage under the image: its export fails.
    upper = src.docker("image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", app).stdout.decode().strip()
    subprocess.run(["rm", "-rf", upper], check=True)

    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, app)

    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert f"source {src.host}" in line
    assert "no such file or directory" in line.lower() or "stopped mid-stream" in line or "ended early" in line
    assert not image_exists(dst, app)


def test_engine_error_during_load(engine_base: Path, engines: dict[str, Engine], builder: Builder) -> None:
    """The destination runs out of disk mid-load: its own message, verbatim, names it."""
    dst = Engine(SPECS["docker20"], engine_base / unique("tiny"))
    (dst.base / "data").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(dst.base / "data")], check=True)
    try:
        dst.start()
        src = engines["docker26"]
        base = builder.base(unique("base") + ":1")
        app = unique("big") + ":1"
        builder.build(app, base, ["COPY a /a"], {"a": random_file(40_000_000)})
        builder.place(src, app)

        proc = run_d2d("copy", "-s", src.host, "-d", dst.host, app)

        assert proc.returncode == 1
        line = _one_line(proc.stderr)
        assert f"destination {dst.host}" in line and "no space left on device" in line
        assert not image_exists(dst, app)
    finally:
        dst.destroy()
        subprocess.run(["umount", "-l", str(dst.base / "data")], check=False)


def test_ctrl_c_mid_transfer(engines: dict[str, Engine], builder: Builder, tmp_path: Path) -> None:
    src, dst = engines["docker20"], engines["podman"]
    base = builder.base(unique("base") + ":1")
    app = unique("slow") + ":1"
    builder.build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(120_000_000), "b": random_file(1000)})
    builder.place(src, app)
    spool = tmp_path / "spool"
    spool.mkdir()
    cmd = [d2d_path(), "copy", "--json", "--spool-dir", str(spool), "-s", src.host, "-d", dst.host, app]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("status") == "sending":
            break
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 130
    assert "interrupted" in _one_line(err)
    assert not image_exists(dst, app)
    assert list(spool.iterdir()) == []


@pytest.fixture
def tiny_spool(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system as --spool-dir: full after the first few megabytes."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_spool_directory_is_a_local_error(
    engines: dict[str, Engine], builder: Builder, tiny_spool: Path
) -> None:
    """A containerd store's export holds compressed blobs whose names say nothing: one that the
    destination may already hold is spooled to learn which layer it is (read from the store, the
    manifest names them: the export is asked for)."""
    src, dst = engines["docker26c"], engines["docker26"]
    base = builder.base(unique("spoolbase") + ":1", size=50_000)
    app = unique("spoolapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(6_000_000)})
    place_compressed(builder, src, app)
    builder.place(dst, base)
    proc = run_d2d(
        "copy", "--layers-from", "export", "--spool-dir", str(tiny_spool), "-s", src.host, "-d", dst.host, app
    )
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert line.startswith(f"docker-d2d: local: no space left in the spool directory {tiny_spool} "), line
    assert "2.1MB in all" in line and "a layer of 6.0MB" in line, line
    assert line.endswith("give --spool-dir a directory with more room"), line
    assert list(tiny_spool.iterdir()) == []
    assert not image_exists(dst, app)


def test_a_full_spool_directory_in_a_fleet_is_said_once(
    engines: dict[str, Engine], builder: Builder, tiny_spool: Path
) -> None:
    """Several destinations read one export, held in the spool directory: it fills up, and the run
    says so once, as a local error, instead of blaming each destination."""
    src = engines["docker20"]
    app = builder.base(unique("spoolfleet") + ":1", size=6_000_000)
    builder.place(src, app)
    a, b = engines["docker26"], engines["docker20-twin"]
    proc = run_d2d("copy", "-q", "--spool-dir", str(tiny_spool), "-s", src.host, "-d", a.host, "-d", b.host, app)
    assert proc.returncode == 1
    line = _one_line(proc.stderr)
    assert line.startswith(f"docker-d2d: local: no space left in the spool directory {tiny_spool} "), line
    assert "the source's export (about 6.0MB) for 2 destinations" in line, line
    assert line.endswith("give --spool-dir a directory with more room"), line
    assert list(tiny_spool.iterdir()) == []
    assert not image_exists(a, app) and not image_exists(b, app)
