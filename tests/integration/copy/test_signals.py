"""Signals and leftovers: SIGTERM like Ctrl-C (a message, its own exit status, no tag, no temp
dir), Ctrl-C after the whole archive went out (the destination finishes the load: the untagged
image is removed, or named), and two runs to one destination at once (one waits; together they
send the image once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import d2d_path
from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, unique

from ..helpers import random_file

pytestmark = pytest.mark.engines


def _big_app(builder: Builder, src: Engine, prefix: str, size: int) -> str:
    base = builder.base(unique("base") + ":1")
    app = unique(prefix) + ":1"
    builder.build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(size), "b": random_file(1000)})
    builder.place(src, app)
    return app


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [d2d_path(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _wait_for(proc: subprocess.Popen[str], match: dict[str, Any]) -> list[dict[str, Any]]:
    """Read --json events until one has every key/value of `match`."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if all(event.get(k) == v for k, v in match.items()):
            return seen
    raise AssertionError(f"no event {match} before the end: {seen}, {proc.stderr.read() if proc.stderr else ''}")


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("docker-d2d:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_sigterm_mid_transfer(engines: dict[str, Engine], builder: Builder, tmp_path: Path) -> None:
    src, dst = engines["docker20"], engines["podman"]
    app = _big_app(builder, src, "term", 120_000_000)
    tmp = tmp_path / "tmp"  # TMPDIR: where the spool dir goes by default
    tmp.mkdir()
    proc = _start("copy", "--json", "-s", src.host, "-d", dst.host, app, env={"TMPDIR": str(tmp)})
    _wait_for(proc, {"status": "sending"})
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 143, err
    assert _one_line(err) == "docker-d2d: stopped by SIGTERM; nothing was tagged at the destination"
    assert not image_exists(dst, app)
    assert list(tmp.iterdir()) == [], "the spool dir must be removed"


def test_ctrl_c_after_the_archive_went_out_to_docker_20(engines: dict[str, Engine], builder: Builder) -> None:
    """Docker 20.10 finishes a load whose body it received whole even when the client is gone."""
    src, dst = engines["docker26"], engines["docker20"]
    app = _big_app(builder, src, "late", 150_000_000)
    image_id = src.docker("image", "inspect", "--format", "{{.Id}}", app).stdout.decode().strip()
    proc = _start("copy", "--json", "-s", src.host, "-d", dst.host, app)
    _wait_for(proc, {"event": "phase", "phase": "loading"})
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert "interrupted" in _one_line(err)
    assert not image_exists(dst, app)
    notes = [json.loads(line)["message"] for line in out.splitlines() if '"note"' in line]
    assert any("waiting for the load to end" in n for n in notes), notes
    assert any(f"removed the untagged image {image_id[7:19]}" in n for n in notes), notes
    time.sleep(3)
    assert dst.docker("image", "inspect", image_id, check=False).returncode != 0, "the untagged image is left"


def test_a_second_ctrl_c_stops_at_once_and_names_the_image(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker26"], engines["docker20-twin"]
    app = _big_app(builder, src, "late2", 150_000_000)
    image_id = src.docker("image", "inspect", "--format", "{{.Id}}", app).stdout.decode().strip()
    proc = _start("copy", "--json", "-s", src.host, "-d", dst.host, app)
    _wait_for(proc, {"event": "phase", "phase": "loading"})
    proc.send_signal(signal.SIGINT)
    _wait_for(proc, {"event": "note"})
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert not image_exists(dst, app)
    notes = [json.loads(line)["message"] for line in out.splitlines() if '"note"' in line]
    time.sleep(5)
    if dst.docker("image", "inspect", image_id, check=False).returncode == 0:
        assert any(image_id in n and "docker rmi" in n for n in notes), notes


def test_two_runs_to_one_destination_send_the_image_once(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    app = _big_app(builder, src, "twice", 60_000_000)
    runs = [_start("copy", "--json", "-s", src.host, "-d", dst.host, app) for _ in range(2)]
    results = []
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        results.append(events)
    sent = [next(e for e in events if e["event"] == "result")["bytes_sent"] for events in results]
    image = sum(lay["size"] or 0 for lay in next(e for e in results[0] if e["event"] == "plan")["images"][0]["layers"])
    assert 60_000_000 < sum(sent) < 1.1 * image, (sent, image)
    assert min(sent) == 0
    waited = [e for events in results for e in events if e["event"] == "note" and "waiting for it" in e["message"]]
    assert len(waited) == 1, results
    assert image_exists(dst, app)


@pytest.mark.parametrize("fleet", [False, True], ids=["one destination", "fleet of two"])
def test_a_killed_run_leaves_nothing_the_next_run_does_not_remove(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path, fleet: bool
) -> None:
    """SIGKILL mid-copy: nothing of ours can run. What it left in the spool directory (its private
    directory; a fleet's export and rewrite files) goes with the next run, whose lock files do not
    stay behind either. Another run's private directory, alive, is left alone."""
    src, dst = engines["docker20"], engines["docker26"]
    dests = [dst.host, engines["docker20-twin"].host] if fleet else [dst.host]
    app = _big_app(builder, src, "killed", 120_000_000)
    spool, runtime = tmp_path / "spool", tmp_path / "runtime"
    spool.mkdir()
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    targets = [x for d in dests for x in ("-d", d)]
    args = ["copy", "--json", "--spool-dir", str(spool), "-s", src.host, *targets]
    proc = _start(*args, app, env=env)
    _wait_for(proc, {"status": "sending"})
    proc.kill()
    proc.communicate(timeout=60)
    assert list(spool.iterdir()), "test setup: the killed run left its spool behind"
    assert list((runtime / "docker-d2d").iterdir()), "test setup: and its lock files"

    # A live run's spool is not touched: one runs while the next run (to another engine) sweeps.
    # Its destinations are behind slow links, so that it is still sending (its spool in use) then.
    dead = set(spool.iterdir())
    slow = [DelayProxy(d.removeprefix("unix://"), delay=0, rate=10_000_000).start() for d in dests]
    slow_targets = [x for p in slow for x in ("-d", p.host)]
    alive = _start("copy", "--json", "--spool-dir", str(spool), "-s", src.host, *slow_targets, app, env=env)
    _wait_for(alive, {"status": "sending"})
    alive_files = set(spool.iterdir()) - dead
    assert alive_files

    other = builder.base(unique("next") + ":1", size=10_000)
    builder.place(src, other)
    proc = _start(
        "copy", "--json", "--spool-dir", str(spool), "-s", src.host, "-d", engines["podman"].host, other, env=env
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    left = set(spool.iterdir())
    assert not dead & left, "the killed run's leftovers go"
    assert alive.poll() is None, "test setup: the live run still sends"
    assert alive_files <= left, "the live run's own stay"
    _, err = alive.communicate(timeout=300)
    for proxy in slow:
        proxy.stop()
    assert alive.returncode == 0, err
    # The next run to the killed run's destinations (the live one went through the proxies'
    # addresses) takes the lock files it left, and removes them.
    _, err = (again := _start(*args, app, env=env)).communicate(timeout=300)
    assert again.returncode == 0, err
    assert list(spool.iterdir()) == []
    assert list((runtime / "docker-d2d").iterdir()) == []
    engines["podman"].docker("rmi", other, check=False)
    for host in dests:
        engine = next(e for e in engines.values() if e.host == host)
        engine.docker("rmi", app, other, check=False)
