"""The per-destination lock (issue 7, item 6)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from docker_d2d.endpoint import Endpoint, Scheme
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
