"""The Application a run hands to every command: Docker's global flags reach the commands through
it (main.py parses them before typer sees argv), not through module state."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from docker_d2d.app.application import Application
from docker_d2d.app.cli import app
from docker_d2d.app.options import GlobalOptions


def test_the_commands_read_the_global_flags_from_the_application(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    run = Application(GlobalOptions(config=str(config)), environ={"HOME": str(tmp_path / "home")})
    out = CliRunner().invoke(app, ["plugin", "install"], obj=run)
    assert out.exit_code == 0, out.output
    assert (config / "cli-plugins" / "docker-d2d").is_symlink() or (config / "cli-plugins" / "docker-d2d").is_file()
    assert not (tmp_path / "home").exists()


def test_without_one_a_command_gets_the_default(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["plugin", "uninstall", "--dir", str(tmp_path)])
    assert out.exit_code == 0 and "not installed" in out.output


def test_a_fleet_says_a_local_failure_once_and_blames_no_destination() -> None:
    from docker_d2d.app.application import fleet_failures
    from docker_d2d.endpoint import parse_endpoint
    from docker_d2d.errors import D2DError, EngineError, SpoolFull
    from docker_d2d.model import EngineInfo, EngineKind
    from docker_d2d.transfer.job import FleetResult, HostResult

    def host(name: str, error: D2DError | None) -> HostResult:
        result = HostResult(parse_endpoint(f"tcp://{name}:2375"))
        result.error = error
        return result

    def full(name: str) -> SpoolFull:
        return SpoolFull(f"no space left in the spool directory /s ({name})", directory="/s", side="local")

    source = EngineInfo(EngineKind.GRAPHDRIVER, "28.5", "1.45", "linux", "amd64")
    local = FleetResult(source, [host("a", full("a")), host("b", full("b"))])
    assert fleet_failures(local) == ["local: no space left in the spool directory /s (a)"]

    refused = EngineError("load failed: no", side="destination", endpoint="tcp://b:2375")
    mixed = FleetResult(source, [host("a", full("a")), host("b", refused)])
    assert fleet_failures(mixed) == [
        "local: no space left in the spool directory /s (a)",
        "destination tcp://b:2375: load failed: no",
        "2 of 2 destinations failed",
    ]
