"""Registry-first bases: the destination pulls the base the source pulled from a registry, and only
the layers above it come from the source; a failed pull falls back with one warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, image_layers
from tests.harness.registry import Registry

from ..helpers import base_and_app, copy, layer_tar_size

pytestmark = pytest.mark.engines

# These destinations are local: auto leaves registry-first to destinations beyond a slow link.
ALWAYS = ("--registry-first", "always")


def tags_of(engine: Engine) -> set[str]:
    out = engine.docker("images", "-a", "--format", "{{.Repository}}:{{.Tag}}@{{.ID}}").stdout.decode()
    return set(out.split())


def on_a_gone_registry(builder: Builder, src: Engine, tmp_path: Path) -> str:
    """An app at the source on a base pulled from a registry that is gone by the time of the copy."""
    gone = Registry(tmp_path / "gone")
    gone.start()
    try:
        return base_and_app(builder, gone, src)[1]
    finally:
        gone.stop()


@pytest.mark.parametrize("destination", ["docker20", "docker26c", "podman"])
def test_the_base_comes_from_its_registry(
    engines: dict[str, Engine], builder: Builder, registry: Registry, destination: str
) -> None:
    src, dst = engines["docker26"], engines[destination]
    _, app = base_and_app(builder, registry, src)
    before = tags_of(dst)

    result = copy(src, dst, app, extra=ALWAYS)

    top = image_layers(src, app)[-1]
    assert result["layers_from_registry"] == 1 and result["from_registry"]
    assert result["layers_sent"] == 1
    assert result["bytes_sent"] == layer_tar_size(src, app, top)  # only the layer above the base
    assert image_layers(dst, app) == image_layers(src, app)
    # Exactly the requested image is new: the pulled base's record went again.
    new = {t.split("@")[0] for t in tags_of(dst) - before}
    assert new == {app}, new
    assert any("came from" in e.get("message", "") for e in result["events"] if e["event"] == "note")


def test_unreachable_registry_falls_back_with_one_warning(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path
) -> None:
    src, dst = engines["docker26"], engines["docker20-twin"]
    app = on_a_gone_registry(builder, src, tmp_path)

    result = copy(src, dst, app, extra=ALWAYS)

    notes = [e["message"] for e in result["events"] if e["event"] == "note"]
    failed = [n for n in notes if "could not pull" in n]
    assert len(failed) == 1, notes
    # One short line: the engine's paragraph (URL, dial error) is for --debug.
    assert len(failed[0]) < 100 and "\n" not in failed[0], failed[0]
    assert result["layers_from_registry"] == 0 and result["layers_sent"] == 2
    assert image_layers(dst, app) == image_layers(src, app)


def test_never_sends_everything_from_the_source(
    engines: dict[str, Engine], builder: Builder, registry: Registry
) -> None:
    src, dst = engines["docker26"], engines["docker26-twin"]
    _, app = base_and_app(builder, registry, src)
    result = copy(src, dst, app, extra=("--registry-first", "never"))
    assert result["layers_from_registry"] == 0 and result["layers_sent"] == 2
    assert not image_exists(dst, json.dumps(result["from_registry"]))


def test_auto_does_not_ask_a_local_destination_to_pull(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path
) -> None:
    src, dst = engines["docker26"], engines["docker20-twin"]
    app = on_a_gone_registry(builder, src, tmp_path)

    result = copy(src, dst, app)

    notes = [e["message"] for e in result["events"] if e["event"] == "note"]
    assert not [n for n in notes if "registry-first" in n], notes
    assert result["layers_from_registry"] == 0 and result["layers_sent"] == 2
    assert image_layers(dst, app) == image_layers(src, app)
