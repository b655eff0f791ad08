"""Resumable copies (issue 10): a copy interrupted after some layers landed (Ctrl-C, a link that
goes down, a killed client) sends only the rest when run again, on every engine kind; no partial
name survives a successful run.

The destination sits behind a paced TCP proxy (tests/harness/delay_proxy.py), so that a copy of a
few megabytes takes seconds and can be stopped between its checkpoints."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, image_exists, image_layers, lacking_bytes, unique

from ..helpers import copy, random_file, saved_layers
from .test_signals import _start

pytestmark = pytest.mark.engines

LAYER = 1_200_000
LAYERS = 5
RATE = 1_500_000  # bytes a second through the proxy: the copy takes about 4 s


@pytest.fixture(scope="module")
def app(engines: dict[str, Engine], builder: Builder) -> str:
    """A base and five layers of 1.2 MB, at the source (Docker 26: its export brings the layer
    blobs in digest order, so most come before a layer below them)."""
    base = builder.base(unique("rbase") + ":1")
    name = unique("resume") + ":1"
    files = {f"f{i}": random_file(LAYER) for i in range(LAYERS)}
    builder.build(name, base, [f"COPY f{i} /f{i}" for i in range(LAYERS)], files)
    builder.place(engines["docker26"], name)
    return name


@pytest.fixture
def proxy(request: pytest.FixtureRequest, engines: dict[str, Engine]) -> Iterator[DelayProxy]:
    p = DelayProxy(str(engines[request.param].socket), delay=0.0, rate=RATE).start()
    yield p
    p.stop()


def partial_names(engine: Engine) -> list[str]:
    out = engine.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    return sorted(r for r in out if "docker-d2d-partial" in r)


def partial_images(engine: Engine) -> list[str]:
    """Every partial image, named or not (a load that landed after its connection dropped)."""
    out = engine.docker("image", "ls", "-aq", "--filter", "label=org.docker-d2d.partial-of").stdout.decode()
    return out.split()


def _events_until_checkpoint(proc: subprocess.Popen[str], n: int) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    seen, checkpoints = [], 0
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if event.get("event") == "note" and str(event.get("message", "")).startswith("checkpoint:"):
            checkpoints += 1
            if checkpoints == n:
                return seen
    raise AssertionError(f"the copy ended before checkpoint {n}: {seen} {proc.stderr.read() if proc.stderr else ''}")


def _target(engines: dict[str, Engine], proxy: DelayProxy, ref: str) -> Engine:
    """The engine behind the proxy, without the image (another test may have copied it there)."""
    dst = next(e for e in engines.values() if str(e.socket) == proxy.target)
    if image_exists(dst, ref):
        dst.docker("rmi", ref)
    return dst


def _interrupted(src: Engine, proxy: DelayProxy, ref: str, after: int, how: str) -> tuple[int, str]:
    proc = _start("copy", "--json", "--checkpoint", "1MB", "-s", src.host, "-d", proxy.host, ref)
    _events_until_checkpoint(proc, after)
    if how == "ctrl-c":
        proc.send_signal(signal.SIGINT)
    elif how == "kill":
        proc.kill()
    else:
        proxy.cut()
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


def _resumed(src: Engine, dst: Engine, ref: str, lacked_at_first: int) -> dict[str, Any]:
    """Run again, straight to the engine: only what the destination still lacks travels."""
    still = lacking_bytes(src, dst, ref)
    assert 0 < still < lacked_at_first, "the interrupted run landed some layers, not all"
    result = copy(src, dst, ref)
    assert result["bytes_sent"] == still, "exactly the layers the partial images did not hold"
    assert any("resuming an interrupted copy" in e.get("message", "") for e in result["events"])
    assert result["tagged"] == [ref]
    assert image_layers(dst, ref) == image_layers(src, ref)
    assert saved_layers(dst, ref) == LAYERS + 1, "every blob is there"
    assert partial_names(dst) == [], "no partial name survives a successful run"
    assert partial_images(dst) == [], "nor a partial image without a name"
    return result


# One engine of each kind (graphdriver, containerd store, Podman); the other versions are
# interrupted below: docker28 and docker26c by a link going down, podman5 and docker28c by their
# engine restarting, docker28, docker26c and podman5 checkpointed without an interrupt.
@pytest.mark.parametrize("proxy", ["docker20", "docker28c", "podman"], indirect=True)
def test_ctrl_c_after_two_checkpoints_resumes(engines: dict[str, Engine], app: str, proxy: DelayProxy) -> None:
    src = engines["docker26"]
    dst = _target(engines, proxy, app)
    lacked = lacking_bytes(src, dst, app)
    code, err = _interrupted(src, proxy, app, after=2, how="ctrl-c")
    assert code == 130, err
    assert "run the same command again" in err and "Traceback" not in err
    assert not image_exists(dst, app)
    assert len(partial_names(dst)) >= 2  # and the next one, if its archive went out whole meanwhile
    _resumed(src, dst, app, lacked)
    dst.docker("rmi", app)


@pytest.mark.parametrize(
    ("proxy", "how"), [("docker28", "link"), ("podman", "kill"), ("docker26c", "link")], indirect=["proxy"]
)
def test_link_down_or_client_killed_resumes(engines: dict[str, Engine], app: str, proxy: DelayProxy, how: str) -> None:
    """The link drops after the first checkpoint (the load fails: one message, exit 1), or the
    client dies without a word: the partial image stays, the next run sends only the rest."""
    src = engines["docker26"]
    dst = _target(engines, proxy, app)
    lacked = lacking_bytes(src, dst, app)
    code, err = _interrupted(src, proxy, app, after=1, how=how)
    if how == "kill":
        assert code == -signal.SIGKILL
    else:
        assert code == 1 and "Traceback" not in err, err
        assert "run the same command again" in err
    assert not image_exists(dst, app)
    assert len(partial_names(dst)) >= 1
    _resumed(src, dst, app, lacked)
    dst.docker("rmi", app)


@pytest.mark.parametrize("destination", ["docker28", "docker26c", "podman5"])
def test_uninterrupted_checkpointed_copy_is_the_image(
    engines: dict[str, Engine], builder: Builder, app: str, destination: str
) -> None:
    """From a Docker 20.10 source (legacy export, its top layer unnamed) with a checkpoint after
    every layer: the same image, every layer sent once, nothing partial left."""
    src, dst = engines["docker20"], engines[destination]
    if not image_exists(src, app):
        builder.place(src, app)
    lacked = lacking_bytes(src, dst, app)
    result = copy(src, dst, app, extra=("--checkpoint", "1"))
    notes = [e["message"] for e in result["events"] if e["event"] == "note"]
    assert sum(n.startswith("checkpoint:") for n in notes) == LAYERS, "after each layer but the last"
    assert result["bytes_sent"] == lacked
    assert image_layers(dst, app) == image_layers(src, app)
    assert saved_layers(dst, app) == LAYERS + 1
    assert partial_names(dst) == [] and partial_images(dst) == []
    dst.docker("rmi", app)


def test_a_partial_image_that_landed_without_its_name_goes_too(engines: dict[str, Engine], app: str) -> None:
    """A load whose connection dropped after its archive went out whole may land after all, and
    unnamed: the run that completes the copy removes it by its label."""
    src, dst = engines["docker26"], engines["docker28"]
    proxy = DelayProxy(str(dst.socket), delay=0.0, rate=RATE).start()
    try:
        _target(engines, proxy, app)
        code, out = _interrupted(src, proxy, app, after=2, how="ctrl-c")
        assert code == 130, out
    finally:
        proxy.stop()
    name = partial_names(dst)[0]
    partial_id = dst.docker("image", "inspect", "--format", "{{.Id}}", name).stdout.decode().strip()
    unnamed = dst.docker("save", partial_id).stdout  # by id: the archive names no tag
    for ref in partial_names(dst):
        dst.docker("rmi", ref)
    dst.docker("load", "-q", input=unnamed)
    assert partial_names(dst) == [] and partial_id in dst.docker("image", "ls", "-aq", "--no-trunc").stdout.decode()
    result = copy(src, dst, app)
    assert result["tagged"] == [app]
    assert partial_images(dst) == [], "the unnamed partial image went"
    assert image_layers(dst, app) == image_layers(src, app)
    dst.docker("rmi", app)


@pytest.mark.parametrize("kind", ["docker28c", "podman5"])
def test_destination_restarting_mid_copy_resumes(engines: dict[str, Engine], app: str, kind: str) -> None:
    """The destination engine stops after the first checkpoint (the copy fails with one message)
    and comes back: what it loaded before is still there, and the next run sends only the rest."""
    src = engines["docker26"]
    base = Path(tempfile.mkdtemp(prefix="rr", dir="/var/tmp"))  # short: podman's runroot must be < 50 chars
    dst = Engine(SPECS[kind], base / kind)
    proxy = None
    try:
        dst.start()
        proxy = DelayProxy(str(dst.socket), delay=0.0, rate=RATE).start()
        lacked = lacking_bytes(src, dst, app)
        proc = _start("copy", "--json", "--checkpoint", "1MB", "-s", src.host, "-d", proxy.host, app)
        _events_until_checkpoint(proc, 1)
        dst.stop()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1 and "Traceback" not in err, out + err
        assert "run the same command again" in out
        dst.start()
        assert not image_exists(dst, app)
        assert len(partial_names(dst)) >= 1
        _resumed(src, dst, app, lacked)
    finally:
        if proxy:
            proxy.stop()
        dst.destroy()
        shutil.rmtree(base, ignore_errors=True)
