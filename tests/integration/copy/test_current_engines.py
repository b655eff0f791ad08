"""Current engines (issue 11 item 1) and bases that came from a real registry (items 2, 3, 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ENGINE_NAMES
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, export_layer_sizes, image_layers, lacking_bytes, small_app, unique
from tests.harness.registry import Registry

from ..helpers import copy, random_file, saved_layers

pytestmark = pytest.mark.engines

# What each engine must be told apart as, and the API version it must be spoken to in
# (min of ours and the engine's: never a version the engine refuses).
EXPECTED = {
    "docker20": ("docker", "20.10.", "1.41"),
    "docker26": ("docker", "26.1.", "1.45"),
    "docker26c": ("docker-containerd", "26.1.", "1.45"),
    "docker28": ("docker", "28.5.", "1.45"),
    "docker28c": ("docker-containerd", "28.5.", "1.45"),
    "podman": ("podman", "4.3.", "1.41"),
    "podman5": ("podman", "5.4.", "1.41"),
}


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_kind_version_and_api_version(engines: dict[str, Engine], builder: Builder, name: str) -> None:
    engine = engines[name]
    app = unique("kind") + ":1"
    builder.base(app, size=1000)
    builder.place(engine, app)
    result = copy(engine, engines["docker20"] if name != "docker20" else engines["docker26"], app)
    source = next(e for e in result["events"] if e["event"] == "connected" and e["side"] == "source")
    kind, version, api = EXPECTED[name]
    assert (source["engine"], source["api_version"]) == (kind, api)
    assert source["version"].startswith(version)


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_registry_put_at_every_engine(
    engines: dict[str, Engine], builder: Builder, registry: Registry, name: str
) -> None:
    """The harness's registry helper: pushed from the builder, pulled by the engine as it is."""
    engine = engines[name]
    base = builder.base(unique("regput") + ":1", size=10_000)
    ref = registry.put(builder.engine, engine, base)
    assert ref == f"{registry.address}/{base}"
    assert image_layers(engine, ref) == image_layers(builder.engine, base)
    manifest = registry.manifest(base.split(":")[0], "1")
    assert manifest["layers"][0]["mediaType"].endswith("gzip"), "a registry holds layers compressed"


def _dangling(engine: Engine) -> list[str]:
    names = engine.ctr("images", "ls", "-q").stdout.decode().split()
    return [n for n in names if n.startswith("moby-dangling@")]


# Both stores (Docker 28.5's failed on this case, 26.1's sent the image twice and left a
# moby-dangling@ record) and each save format a store must name the base's layers from (legacy,
# overlay2's OCI, Podman's docker-archive), each once: not every source into both stores.
@pytest.mark.parametrize(
    ("source", "destination"), [("docker20", "docker28c"), ("docker28", "docker26c"), ("podman5", "docker28c")]
)
def test_base_pulled_from_a_registry_at_a_containerd_destination(
    engines: dict[str, Engine], builder: Builder, registry: Registry, source: str, destination: str
) -> None:
    src, dst = engines[source], engines[destination]
    base = builder.base(unique("regbase") + ":1", size=200_000)
    app = unique("regapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    registry.put(builder.engine, dst, base)
    builder.place(src, app)
    dangling_before = set(_dangling(dst))
    lacking = lacking_bytes(src, dst, app)
    assert lacking == export_layer_sizes(src, app)[1], "test setup: the destination holds the base (compressed)"

    result = copy(src, dst, app)

    assert result["tagged"] == [app]
    assert image_layers(dst, app) == image_layers(src, app)
    listed = dst.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    assert app in listed or f"docker.io/library/{app}" in listed
    assert saved_layers(dst, app) == 2, "docker save at the destination must yield every blob"
    assert set(_dangling(dst)) == dangling_before, "no moby-dangling@ record left by the run"
    assert result["bytes_sent"] == lacking, "only the layer the destination lacked travels, once"


def test_engine_that_refuses_older_api_versions(
    engines: dict[str, Engine], engine_base: Path, builder: Builder
) -> None:
    """Docker 29.0 refused clients below API 1.44. Docker 28.5 started with DOCKER_MIN_API_VERSION
    refuses everything below 1.50 (the newest the docker CLI here speaks), above what we would
    pick: the negotiation must rise to the engine's floor, for the load and for the export."""
    floor = Engine(SPECS["docker28"], engine_base / unique("floor"))
    floor.start(extra_env={"DOCKER_MIN_API_VERSION": "1.50"})
    try:
        refused = floor.docker("version", check=False, env={"DOCKER_API_VERSION": "1.45"})
        assert b"too old" in refused.stderr, "test setup: the engine must refuse older clients"
        src, other = engines["docker20"], engines["docker26"]
        app = small_app(builder, src, "floorapp", random_file(50_000))

        pushed = copy(src, floor, app)
        pulled = copy(floor, other, app)

        for result, side in ((pushed, "destination"), (pulled, "source")):
            at_floor = next(e for e in result["events"] if e["event"] == "connected" and e["side"] == side)
            assert tuple(int(x) for x in at_floor["api_version"].split(".")) >= (1, 50)
            assert result["tagged"] == [app] and result["layers_sent"] == 2
        assert image_layers(other, app) == image_layers(src, app)
    finally:
        floor.destroy()
