"""The summary's arithmetic (issue 7, item 7)."""

from __future__ import annotations


def _result(transfers: list[list[str]], sent: dict[str, int], left_out: dict[str, int]) -> object:
    from docker_d2d.formats.entries import RewriteResult, WrittenImage
    from docker_d2d.model import EngineInfo, EngineKind
    from docker_d2d.transfer.compress import Compression
    from docker_d2d.transfer.job import CopyResult
    from docker_d2d.transfer.plan import TransferPlan

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
    from docker_d2d.app.console import render_summary, result_dict

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
