"""The per-destination lock (issue 7, item 6)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from docker_d2d.endpoint import Endpoint, Scheme, parse_endpoint
from docker_d2d.transfer.lock import destination_lock, endpoint_key


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


def test_lock_files_go_with_their_holders_and_exclusion_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each holder removes its lock file: a waiter on the removed file opens the path again, so
    never two hold the lock at once, and no file stays behind (issue 16, item 7)."""
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


def test_each_node_container_of_a_cluster_is_locked_apart() -> None:
    a = parse_endpoint("kind://dev/dev-control-plane")
    b = parse_endpoint("kind://dev/dev-worker")
    assert endpoint_key(a) != endpoint_key(b)
    assert endpoint_key(a) == endpoint_key(parse_endpoint("kind://dev/dev-control-plane?namespace=k8s.io"))
