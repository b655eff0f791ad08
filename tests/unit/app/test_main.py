from __future__ import annotations

import json
import subprocess
import sys

from docker_d2d.main import normalize_argv


def test_original_tool_form_becomes_copy() -> None:
    assert normalize_argv(["-s", "unix:///a", "-d", "unix:///b", "img"]) == [
        "copy",
        "-s",
        "unix:///a",
        "-d",
        "unix:///b",
        "img",
    ]
    assert normalize_argv(["push", "h", "img"]) == ["push", "h", "img"]
    assert normalize_argv(["d2d", "push", "h", "img"]) == ["push", "h", "img"]
    assert normalize_argv(["--help"]) == ["--help"]


def test_plugin_metadata_is_valid_and_contacts_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "docker_d2d.main", "docker-cli-plugin-metadata"],
        capture_output=True,
        text=True,
        check=True,
        env={"DOCKER_HOST": "unix:///nonexistent"},
    )
    meta = json.loads(out.stdout)
    assert meta["SchemaVersion"] == "0.1.0" and meta["Vendor"] and meta["Version"]


def test_every_help_page_renders() -> None:
    from typer.testing import CliRunner

    from docker_d2d.app.cli import app

    runner = CliRunner()
    for args in ([], ["copy"], ["push"], ["pull"], ["plugin"], ["plugin", "install"], ["completion"], ["version"]):
        out = runner.invoke(app, [*args, "--help"], prog_name="docker d2d")
        assert out.exit_code == 0, (args, out.output, out.exception)
        assert "Usage: docker d2d" in out.output
