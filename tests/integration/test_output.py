"""What a person sees: live bars on a terminal (tmux), plain lines off one."""

from __future__ import annotations

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, unique
from tests.harness.tty import terminal

from .helpers import random_file

pytestmark = pytest.mark.engines


def _update_of_a_copied_base(builder: Builder, src: Engine, dst: Engine, prefix: str, size: int) -> str:
    """An app on a fresh base, at the source; the base alone already copied to the destination."""
    base = builder.base(unique("base") + ":1")
    app = unique(prefix) + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(size)})
    builder.place(src, base, app)
    run_d2d("copy", "-s", src.host, "-d", dst.host, base, check=True)
    return app


def test_terminal_shows_bars_and_a_summary(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    app = _update_of_a_copied_base(builder, src, dst, "tty", 20_000_000)
    with terminal(f"{d2d_path()} copy -s {src.host} -d {dst.host} {app}; echo EXIT=$?; sleep 30") as term:
        screen = term.wait_for("EXIT=")
    assert "EXIT=0" in screen, screen
    assert "Already exists" in screen  # the base layer
    assert "━" in screen and "total" in screen and "MB/s" in screen  # rich bars with rate
    assert f"tagged {app}" in screen and "1 layer(s) sent, 1 already there" in screen


def test_plain_lines_off_a_terminal(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26c"]
    app = _update_of_a_copied_base(builder, src, dst, "plain", 300_000)
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, app, check=True)
    lines = proc.stderr.splitlines()
    assert any(line.startswith("1/2 ") and line.endswith("... Already exists") for line in lines), proc.stderr
    assert any(line.startswith("2/2 ") and "/ ~ 300.0kB" in line for line in lines), proc.stderr
    assert "sent 30" in proc.stdout and "of a ~" in proc.stdout
    dry = run_d2d("copy", "-s", src.host, "-d", dst.host, "--dry-run", app, check=True)
    assert "already at the destination" in dry.stdout and "to send: ~ 0B" in dry.stdout
