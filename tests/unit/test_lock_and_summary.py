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
    from docker_d2d.compress import Compression
    from docker_d2d.formats.entries import RewriteResult, WrittenImage
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
