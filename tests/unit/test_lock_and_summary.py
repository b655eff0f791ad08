"""The per-destination lock and the summary's arithmetic (pure parts of items 6 and 7)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from docker_d2d.endpoint import Endpoint, Scheme
from docker_d2d.lock import destination_lock, endpoint_key


def test_a_second_holder_waits_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dst = Endpoint(Scheme.UNIX, "ctx-a", path="/run/x.sock")
    waited: list[str] = []
    order: list[str] = []
    with destination_lock(dst, lambda: waited.append("first")):

        def second() -> None:
            with destination_lock(
                Endpoint(Scheme.UNIX, "unix:///run/x.sock", path="/run/x.sock"), lambda: waited.append("second")
            ):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(5)
    assert waited == ["second"] and order == ["first done", "second"]
    # Another destination does not wait.
    with (
        destination_lock(dst, lambda: None),
        destination_lock(Endpoint(Scheme.UNIX, "b", path="/run/y.sock"), lambda: waited.append("other")),
    ):
        pass
    assert waited == ["second"]


def test_key_names_the_engine_not_the_spelling() -> None:
    a = Endpoint(Scheme.SSH, "prod", host="10.0.0.5", port=22, user="deploy", path="/var/run/docker.sock")
    b = Endpoint(
        Scheme.SSH, "ssh://deploy@10.0.0.5", host="10.0.0.5", port=22, user="deploy", path="/var/run/docker.sock"
    )
    assert endpoint_key(a) == endpoint_key(b)
    assert endpoint_key(a) != endpoint_key(Endpoint(Scheme.SSH, "x", host="10.0.0.6", port=22, user="deploy"))


def test_no_lock_dir_does_not_stop_the_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(blocker))  # not a directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "sub"))  # cannot be made
    ran = []
    with destination_lock(Endpoint(Scheme.UNIX, "u", path="/x"), lambda: None):
        ran.append(1)
    assert ran == [1]


def _result(transfers: list[list[str]], sent: dict[str, int], left_out: dict[str, int]) -> object:
    from docker_d2d.archive import RewriteResult, WrittenImage
    from docker_d2d.compress import Compression
    from docker_d2d.job import CopyResult
    from docker_d2d.model import EngineInfo, EngineKind
    from docker_d2d.plan import TransferPlan

    info = EngineInfo(EngineKind.PODMAN, "4.3.1", "1.41")
    rewrites = [
        RewriteResult(images=[WrittenImage(c, ()) for c in configs], bytes_sent=sum(sent.values()) // len(transfers))
        for configs in transfers
    ]
    return CopyResult(
        TransferPlan(()),
        info,
        info,
        transfers=rewrites,
        tagged=["app:1"],
        compression=Compression.ZSTD,
        wire_bytes=1_000_000,
        sending_seconds=2.0,
        layers_sent=sent,
        layers_left_out=left_out,
    )


def test_summary_counts_what_the_lines_showed() -> None:
    from docker_d2d.console import render_summary, result_dict

    # Podman: one load per image; "b" was left out of the second load because the first sent it.
    podman = _result([["c1"], ["c2"]], {"a": 10, "b": 20, "c": 30}, {"base": 5, "b": 20})
    d = result_dict(podman)  # type: ignore[arg-type]
    assert d["layers_sent"] == 3 and d["layers_skipped"] == 1 and d["bytes_skipped"] == 5
    assert d["resent"] is False and d["transfers"] == 2
    text = render_summary(podman)  # type: ignore[arg-type]
    assert "3 layer(s) sent, 1 already there" in text and "1.0MB on the wire at 500.0kB/s, zstd" in text
    assert "second time" not in text
    # The containerd store's fallback: the same image twice.
    resent = _result([["c1"], ["c1"]], {"a": 10, "base": 5}, {"base": 5})
    assert result_dict(resent)["resent"] is True  # type: ignore[arg-type]
    assert "2 layer(s) sent, 0 already there" in render_summary(resent)  # type: ignore[arg-type]
    assert "a second load sent what the store still lacked" in render_summary(resent)  # type: ignore[arg-type]


def test_lock_files_go_with_their_holders_and_exclusion_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each holder removes its lock file: a waiter on the removed file opens the path again, so
    never two hold the lock at once, and no file stays behind."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dst = Endpoint(Scheme.UNIX, "u", path="/run/x.sock")
    inside: list[int] = []
    overlaps: list[int] = []

    def run(n: int) -> None:
        for _ in range(30):
            with destination_lock(dst, lambda: None):
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.001)
                inside.remove(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlaps == []
    assert list((tmp_path / "docker-d2d").iterdir()) == []


def test_a_lock_file_a_killed_run_left_is_taken_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    dst = Endpoint(Scheme.UNIX, "u", path="/run/x.sock")
    with destination_lock(dst, lambda: None):
        (left,) = (tmp_path / "docker-d2d").iterdir()
    left.write_text("")  # as a killed run leaves it: there, and not held
    waited: list[bool] = []
    with destination_lock(dst, lambda: waited.append(True)):
        pass
    assert not waited and list((tmp_path / "docker-d2d").iterdir()) == []


def test_private_spool_dirs_of_dead_runs_are_swept(tmp_path: Path) -> None:
    import fcntl
    import os

    from docker_d2d.spool import private_dir

    dead, alive, foreign = (tmp_path / f"d2d-run-{n}" for n in ("dead", "alive", "foreign"))
    for d in (dead, alive, foreign):
        d.mkdir()
        (d / "d2d-export-x").write_bytes(b"x" * 100)
    (dead / ".owner").write_text("")
    (alive / ".owner").write_text("")
    fd = os.open(alive / ".owner", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its run lives
    try:
        with private_dir(tmp_path) as mine:
            assert mine.name.startswith("d2d-run-") and (mine / ".owner").exists()
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name, mine.name])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name])
    finally:
        os.close(fd)
