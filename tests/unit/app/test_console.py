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


def _plan(decisions: str, present: bool = False) -> object:
    from docker_d2d.model import ImageInfo, parse_ref
    from docker_d2d.transfer.plan import Decision, ImagePlan, LayerPlan, TransferPlan

    layers = tuple(
        LayerPlan(f"sha256:{i}{'0' * 63}", f"c{i}", Decision.SKIP if d == "s" else Decision.SEND, 1000 * (i + 1))
        for i, d in enumerate(decisions)
    )
    info = ImageInfo("sha256:" + "f" * 64, tuple(lay.diff_id for lay in layers))
    return TransferPlan((ImagePlan(parse_ref("app:1"), info, layers, "sha256:" + "e" * 64 if present else None),))


def test_a_no_op_counts_the_layers_the_plan_skipped() -> None:
    from docker_d2d.app.console import render_fleet, result_dict
    from docker_d2d.endpoint import parse_endpoint
    from docker_d2d.model import EngineInfo, EngineKind
    from docker_d2d.transfer.job import CopyResult, FleetResult, HostResult

    info = EngineInfo(EngineKind.GRAPHDRIVER, "26.1.5", "1.45")
    result = CopyResult(_plan("ss", present=True), info, info, tagged=["app:1"])  # type: ignore[arg-type]
    d = result_dict(result)
    assert d["layers_skipped"] == 2 and d["bytes_skipped"] == 3000 and d["layers_sent"] == 0
    host = HostResult(parse_endpoint("tcp://a:2375"))
    host.result = result
    assert "0 sent, 2 there" in render_fleet(FleetResult(info, [host]))


def test_layer_lines_come_in_the_images_order() -> None:
    """The export's order (3, 1, 4, 2) becomes the image's; lines not in the body go when it is sent."""
    import io

    from docker_d2d.app.console import PlainReporter

    err = io.StringIO()
    reporter = PlainReporter(out=io.StringIO(), err=err)
    plan = _plan("svvvv")
    reporter.planned(plan)  # type: ignore[arg-type]
    keys = [lay.diff_id for lay in plan.images[0].layers]  # type: ignore[attr-defined]

    def numbers() -> list[str]:
        return [line.split()[0] for line in err.getvalue().splitlines()]

    for i in (2, 0, 3):
        reporter.layer_started(keys[i], 10)
        reporter.layer_finished(keys[i]) if i else reporter.layer_skipped(keys[i], 10)
    assert numbers() == ["1/5"]  # 3/5 and 4/5 wait for 2/5
    reporter.layer_started(keys[1], 10)
    reporter.layer_finished(keys[1])
    assert numbers() == ["1/5", "2/5", "3/5", "4/5"]
    reporter.phase("loading")  # 5/5 never came in this body: nothing waits for it
    assert numbers()[:4] == ["1/5", "2/5", "3/5", "4/5"] and "loading at the destination..." in err.getvalue()


def test_a_tag_moved_to_another_platform_is_one_line_of_the_summary() -> None:
    from docker_d2d.app.console import render_summary, result_dict
    from docker_d2d.model import EngineInfo, EngineKind
    from docker_d2d.transfer.job import CopyResult, TagMove

    info = EngineInfo(EngineKind.GRAPHDRIVER, "26.1.5", "1.45")
    move = TagMove("app:1", "sha256:" + "a" * 64, "linux/amd64", "sha256:" + "b" * 64, "linux/arm64")
    result = CopyResult(_plan("ss", present=True), info, info, tagged=["app:1"], moved=[move])  # type: ignore[arg-type]
    lines = render_summary(result).splitlines()
    assert lines[0] == "tagged app:1"
    assert lines[1] == f"app:1 now names the linux/arm64 image ({'b' * 12}); it named the linux/amd64 one ({'a' * 12})"
    assert len(lines) == 3 and lines[2].startswith("nothing to send")
    assert result_dict(result)["moved"] == [
        {
            "ref": "app:1",
            "from": {"id": move.old_id, "platform": "linux/amd64"},
            "to": {"id": move.new_id, "platform": "linux/arm64"},
        }
    ]
