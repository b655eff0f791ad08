"""What a person sees: live bars on a terminal (tmux), plain lines off one, --json for scripts.
The numbers must agree with each other and with the plan lines."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, place_compressed, unique
from tests.harness.tty import terminal

from ..helpers import random_file

pytestmark = pytest.mark.engines


def _update_of_a_copied_base(
    builder: Builder, src: Engine, dst: Engine, prefix: str, size: int, data: bytes | None = None
) -> str:
    """An app on a fresh base, at the source; the base alone already copied to the destination."""
    base = builder.base(unique("base") + ":1")
    app = unique(prefix) + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": data if data is not None else random_file(size)})
    builder.place(src, base, app)
    run_d2d("copy", "-s", src.host, "-d", dst.host, base, check=True)
    return app


def _mb(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.,]+)\s*(\w+)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number.replace(",", "")) * {"B": 1e-6, "bytes": 1e-6, "kB": 1e-3, "MB": 1, "GB": 1e3}[unit]


def test_terminal_shows_bars_wire_and_phases(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    # Compressible content: what crosses the link (zstd) is far less than what was read.
    app = _update_of_a_copied_base(builder, src, dst, "tty", 0, data=b"some text, again and again\n" * 800_000)
    cmd = f"{d2d_path()} copy --compress zstd -s {src.host} -d {dst.host} {app}; echo EXIT=$?; sleep 30"
    with terminal(cmd, height=40) as term:
        screen = term.wait_for("EXIT=")
    assert "EXIT=0" in screen, screen
    assert screen.count("Already exists") == 1  # the base layer
    assert "━" in screen
    total = re.search(r"total \(read\)\s+━+\s+([\d.]+)/([\d.]+) MB", screen)
    assert total and float(total[1]) == float(total[2]), screen  # 100%, never more
    wire = re.search(r"on the wire \(zstd\)\s+([\d.]+)/\? (\w+)\s+([\d.]+\w+/s)", screen)  # the summary's format
    assert wire, screen
    assert _mb(f"{wire[1]} {wire[2]}") < float(total[1]) / 10, screen
    assert "loading at the destination" in screen and "verifying" in screen
    assert f"tagged {app}" in screen and "1 layer(s) sent, 1 already there" in screen
    summary = re.search(
        r"sent ([\d.]+MB) of a ~ [\d.]+\w+ image \(([\d.]+\w+) on the wire at [\d.]+\w+/s, zstd\)", screen
    )
    assert summary and _mb(summary[2]) < _mb(summary[1]) / 10, screen


def test_dry_run_draws_no_bar(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["podman"]
    app = _update_of_a_copied_base(builder, src, dst, "drytty", 2_000_000)
    with terminal(f"{d2d_path()} copy --dry-run -s {src.host} -d {dst.host} {app}; echo EXIT=$?; sleep 30") as term:
        screen = term.wait_for("EXIT=")
    assert "EXIT=0" in screen and "to send: ~ 2.0MB" in screen, screen
    assert "━" not in screen and "total" not in screen and "on the wire" not in screen, screen


def test_plain_lines_off_a_terminal(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26c"]
    app = _update_of_a_copied_base(builder, src, dst, "plain", 300_000)
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, app, check=True)
    lines = proc.stderr.splitlines()
    assert any(line.startswith("1/2 ") and line.endswith("... Already exists") for line in lines), proc.stderr
    assert any(line.startswith("2/2 ") and "/ ~ 300.0kB" in line for line in lines), proc.stderr
    phases = [line for line in lines if line.endswith("...") and not line[0].isdigit()]
    assert phases == ["loading at the destination...", "verifying..."], proc.stderr
    assert re.search(r"^sent 30\d\.\dkB \(30\d\.\dkB on the wire at .*/s\)$", proc.stderr, re.M), proc.stderr
    assert "sent 30" in proc.stdout and "of a ~" in proc.stdout
    assert "1 layer(s) sent, 1 already there" in proc.stdout
    dry = run_d2d("copy", "-s", src.host, "-d", dst.host, "--dry-run", app, check=True)
    assert "already at the destination" in dry.stdout and "to send: ~ 0B" in dry.stdout


def _events(proc_stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc_stdout.splitlines()]


def test_summary_agrees_with_the_layer_lines_for_podman(engines: dict[str, Engine], builder: Builder) -> None:
    """Podman loads one image per archive: several loads are normal, not "twice"; a layer the first
    load brought is not "already there" for the second; a skip in an earlier load still counts."""
    src, dst = engines["docker26"], engines["podman-twin"]
    base = builder.base(unique("pbase") + ":1")
    other_base = builder.base(unique("obase") + ":1")
    x, y, z = unique("px") + ":1", unique("py") + ":1", unique("pz") + ":1"
    builder.build(x, base, ["COPY a /a"], {"a": random_file(200_000)})
    builder.build(y, base, ["COPY b /b"], {"b": random_file(300_000)})
    builder.build(z, other_base, ["COPY c /c"], {"c": random_file(100_000)})
    builder.place(src, base, x, y, z)
    run_d2d("copy", "-s", src.host, "-d", dst.host, base, check=True)

    plain = run_d2d("copy", "-s", src.host, "-d", dst.host, x, y, z, check=True)
    exists = [line for line in plain.stderr.splitlines() if line.endswith("Already exists")]
    sent = [line for line in plain.stderr.splitlines() if re.match(r"^\d+/\d+ \w+\.\.\. [\d.]+\w*B", line)]
    assert len(exists) == 1 and len(sent) == 4, plain.stderr  # base; a, b, other base, c
    assert "4 layer(s) sent, 1 already there;" in plain.stdout, plain.stdout
    assert "second time" not in plain.stdout and "twice" not in plain.stdout

    # The same copy again elsewhere, in JSON: the numbers add up.
    dst2 = engines["podman"]
    run_d2d("copy", "-s", src.host, "-d", dst2.host, base, check=True)
    proc = run_d2d("copy", "--json", "-s", src.host, "-d", dst2.host, x, y, z, check=True)
    events = _events(proc.stdout)
    result = next(e for e in events if e["event"] == "result")
    layers = [e for e in events if e["event"] == "layer"]
    skipped = {e["id"]: e["size"] for e in layers if e["status"] == "exists"}
    done = {e["id"]: e["sent"] for e in layers if e["status"] == "sent"}
    left_out = {k: v for k, v in skipped.items() if k not in done}
    assert result["layers_sent"] == len(done) == 4 and result["layers_skipped"] == len(left_out) == 1
    assert result["bytes_skipped"] == sum(left_out.values()) > 0
    assert result["bytes_sent"] == sum(done.values())
    assert result["transfers"] == 3 and result["resent"] is False
    phases = [e["phase"] for e in events if e["event"] == "phase"]
    assert phases == ["sending", "loading", "verifying"] * 3, phases
    wire = [e for e in events if e["event"] == "wire" and "seconds" in e]
    assert sum(w["wire_bytes"] for w in wire) == result["wire_bytes"]
    assert sum(w["bytes_sent"] for w in wire) <= result["wire_bytes"]  # no compression: headers on top


def test_summary_when_the_store_holds_a_layer_nobody_can_name(engines: dict[str, Engine], builder: Builder) -> None:
    """A containerd store holding the base only compressed (as a registry pull leaves it) under a
    digest this source cannot name: that layer is sent, once, and the note and summary say so."""
    src, dst = engines["docker20"], engines["docker26c-twin"]
    base = builder.base(unique("regbase") + ":1", size=200_000)
    app = unique("regapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    place_compressed(builder, dst, base)
    builder.place(src, app)
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, app, check=True)
    assert "only under digests the source cannot name" in proc.stderr
    assert "2 layer(s) sent, 0 already there" in proc.stdout
    assert "second" not in proc.stdout


# --- summaries that agree (issue 16, item 13) --------------------------------------------------


def _layer_numbers(stderr: str) -> list[int]:
    return [int(m[1]) for m in re.finditer(r"^(\d+)/\d+ \w+\.\.\. ", stderr, re.M)]


def test_layer_lines_come_in_the_images_order(engines: dict[str, Engine], builder: Builder) -> None:
    """The export brings layers in an order of its own (Docker 20.10: by v1 id): the lines still go
    1/6, 2/6, ... 6/6. (Read from the engine's storage, as root does by default, they come in order.)"""
    src, dst = engines["docker20"], engines["docker26"]
    base = builder.base(unique("obase") + ":1")
    app = unique("order") + ":1"
    files = {f"f{i}": random_file(20_000 + i) for i in range(5)}
    builder.build(app, base, [f"COPY f{i} /f{i}" for i in range(5)], files)
    builder.place(src, app)
    proc = run_d2d("copy", "--layers-from", "export", "-s", src.host, "-d", dst.host, app, check=True)
    assert _layer_numbers(proc.stderr) == [1, 2, 3, 4, 5, 6], proc.stderr
    cmd = f"{d2d_path()} copy --layers-from export -s {src.host} -d {engines['podman'].host} {app}"
    with terminal(f"{cmd}; echo EXIT=$?; sleep 30") as t:
        screen = t.wait_for("EXIT=")
    assert "EXIT=0" in screen and _layer_numbers(screen) == [1, 2, 3, 4, 5, 6], screen


def test_a_no_op_reports_the_layers_the_plan_skipped(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst, other = engines["docker20"], engines["docker26"], engines["docker28"]
    app = _update_of_a_copied_base(builder, src, dst, "noop", 100_000)
    run_d2d("copy", "-s", src.host, "-d", dst.host, app, check=True)
    proc = run_d2d("copy", "--json", "-s", src.host, "-d", dst.host, app, check=True)
    events = _events(proc.stdout)
    plan = next(e for e in events if e["event"] == "plan")
    result = next(e for e in events if e["event"] == "result")
    skipped = [lay for image in plan["images"] for lay in image["layers"] if lay["action"] == "skip"]
    assert len(skipped) == 2 and result["layers_skipped"] == 2, result
    assert result["bytes_skipped"] == sum(lay["size"] for lay in skipped) > 0, result
    assert result["layers_sent"] == 0 and result["bytes_sent"] == 0
    # A fleet where one host had everything: its row says the layers were there.
    fleet = run_d2d("copy", "-s", src.host, "-d", dst.host, "-d", other.host, app, check=True)
    row = next(line for line in fleet.stdout.splitlines() if line.startswith(dst.host))
    assert "0 sent, 2 there" in row, fleet.stdout
    row = next(line for line in fleet.stdout.splitlines() if line.startswith(other.host))
    assert "2 sent, 0 there" in row, fleet.stdout


def test_the_bar_and_the_summary_agree_on_the_wire_rate(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker28"]
    app = _update_of_a_copied_base(builder, src, dst, "rate", 0, data=b"lines of text, again\n" * 2_000_000)
    cmd = f"{d2d_path()} copy --compress zstd -s {src.host} -d {dst.host} {app}; echo EXIT=$?; sleep 30"
    with terminal(cmd, height=40) as term:
        screen = term.wait_for("EXIT=")
    assert "EXIT=0" in screen, screen
    bar = re.search(r"on the wire \(zstd\)\s+[\d.]+/\? \w+\s+([\d.]+ ?\w+)/s", screen)
    summary = re.search(r"on the wire at ([\d.]+\w+)/s, zstd\)", screen)
    assert bar and summary, screen
    assert abs(_mb(bar[1]) - _mb(summary[1])) <= 0.05 * _mb(summary[1]), (bar[1], summary[1])
