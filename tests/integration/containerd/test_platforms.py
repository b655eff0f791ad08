"""Multi-platform images at a containerd-store source (issue 11 item 4): a two-platform index
with BuildKit-style attestation manifests, assembled through the registry API and pulled with
`--platform` for both platforms. Only the platform asked for (by default the destination's)
travels; a source without that platform's content gets one clear line."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, image_layers, unique
from tests.harness.registry import Registry
from tests.integration.containerd.store_fixtures import (
    PlatformImage,
    ctr_images,
    leftovers,
    measured,
    oci_layout,
    push_multiplatform,
    saved_blobs,
)

from ..helpers import copy

pytestmark = pytest.mark.engines


def _index(registry: Registry, src: Engine, platforms: tuple[str, ...]) -> tuple[str, dict[str, PlatformImage]]:
    repo = unique("multi")
    images = {i.platform: i for i in push_multiplatform(registry, repo, "1")}
    ref = f"{registry.address}/{repo}:1"
    for platform in platforms:
        src.docker("pull", "-q", "--platform", platform, ref)
    return ref, images


def _architecture(engine: Engine, ref: str) -> str:
    return engine.docker("image", "inspect", "--format", "{{.Architecture}}", ref).stdout.decode().strip()


@pytest.mark.parametrize("source", ["docker26c", "docker28c"])
def test_only_the_destination_platform_travels(
    stores: dict[str, Engine], store_registry: Registry, source: str
) -> None:
    src, dst = stores[source], stores["docker26"]
    ref, images = _index(store_registry, src, ("linux/amd64", "linux/arm64"))

    result = copy(src, dst, ref)

    amd64 = images["linux/amd64"]
    measured(f"two-platform index at {source} -> docker26 (amd64)", result, sum(amd64.layer_sizes))
    assert result["layers_sent"] == 2
    assert result["bytes_sent"] == sum(amd64.layer_sizes), "the arm64 layers must not travel"
    assert image_layers(dst, ref) == amd64.diff_ids
    assert _architecture(dst, ref) == "amd64"


def test_the_platform_asked_for_travels(stores: dict[str, Engine], store_registry: Registry) -> None:
    src, dst = stores["docker28c"], stores["docker26c"]
    ref, images = _index(store_registry, src, ("linux/amd64", "linux/arm64"))
    before = ctr_images(dst)

    result = copy(src, dst, ref, extra=("--platform", "linux/arm64"))

    arm64 = images["linux/arm64"]
    measured("two-platform index docker28c -> docker26c, --platform linux/arm64", result, sum(arm64.layer_sizes))
    assert result["bytes_sent"] == sum(arm64.layer_sizes)
    assert image_layers(dst, ref) == arm64.diff_ids
    assert _architecture(dst, ref) == "arm64"
    blobs = saved_blobs(dst, ref)
    assert len(blobs) == 3  # config and two layers; no attestation manifest or statement
    assert leftovers(dst, before) == []


def test_a_platform_other_than_its_own_from_docker26(stores: dict[str, Engine], store_registry: Registry) -> None:
    """API 1.45 has no platform parameter: Docker 26 exports one platform only as its own."""
    src, dst = stores["docker26c"], stores["docker26"]
    ref, _ = _index(store_registry, src, ("linux/amd64", "linux/arm64"))
    proc = run_d2d("copy", "-q", "-s", src.host, "-d", dst.host, "--platform", "linux/arm64", ref)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "linux/arm64" in lines[0] and "Docker 28.5" in lines[0], proc.stderr
    assert not image_exists(dst, ref)


@pytest.mark.parametrize("source", ["docker26c", "docker28c"])
def test_source_without_the_platform(stores: dict[str, Engine], store_registry: Registry, source: str) -> None:
    src, dst = stores[source], stores["docker26"]
    ref, _ = _index(store_registry, src, ("linux/arm64",))  # the destination's platform never pulled
    before = ctr_images(src)

    proc = run_d2d("copy", "-q", "-s", src.host, "-d", dst.host, ref)

    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "linux/amd64" in lines[0] and f"docker pull --platform linux/amd64 {ref}" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not image_exists(dst, ref)
    assert ctr_images(src) == before


def test_source_pulled_lazily(stores: dict[str, Engine], store_registry: Registry) -> None:
    """Docker 28.5 skips the blobs of layers whose snapshots it has already: the image is there
    but its export lacks them (engines.md). One line, never an archive missing its config."""
    src, dst = stores["docker28c"], stores["docker26c"]  # docker26 builds the image: not a destination here
    builder = Builder(stores["docker26"])
    ref = builder.base(f"{store_registry.address}/{unique('lazy')}:1", size=100_000)
    stores["docker26"].docker("push", "-q", ref)
    local = unique("lazylocal") + ":1"
    stores["docker26"].docker("tag", ref, local)
    builder.place(src, local)  # the same layer, loaded uncompressed
    src.docker("pull", "-q", ref)

    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, "--json", ref)

    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "lacks content" in lines[0] and "linux/amd64" in lines[0], proc.stderr
    assert not any(json.loads(x).get("event") == "result" for x in proc.stdout.splitlines() if x.startswith("{"))
    assert not image_exists(dst, ref)


@pytest.mark.parametrize("source", ["docker26c", "docker28c"])
def test_attestations_in_the_store_do_not_travel(
    stores: dict[str, Engine], store_registry: Registry, source: str
) -> None:
    """The whole index loaded into the store, attestation manifests included (`docker load` of
    an OCI archive): still only the destination platform's layers, config and a manifest travel."""
    src, dst = stores[source], stores["docker28c" if source == "docker26c" else "docker26c"]
    repo = unique("attested")
    images = push_multiplatform(store_registry, repo, "1")
    ref = f"{store_registry.address}/{repo}:1"
    src.docker("load", input=oci_layout(images, ref))
    exported = _export_names(src, ref)
    before = ctr_images(dst)

    result = copy(src, dst, ref)

    amd64 = images[0]
    measured(f"index with attestations in {source}", result, sum(amd64.layer_sizes))
    assert result["bytes_sent"] == sum(amd64.layer_sizes)
    assert image_layers(dst, ref) == amd64.diff_ids
    blobs = saved_blobs(dst, ref)
    assert len(blobs) == 3, "config and two layers; no attestation"
    # index, 2 x (manifest, config, 2 layers), 2 x (attestation manifest, config, statement)
    assert len(exported) == 15, "test setup: the store's own export holds the attestations"
    assert leftovers(dst, before) == []


def _export_names(engine: Engine, ref: str) -> list[str]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(engine.docker("save", ref).stdout)) as tar:
        return [m.name for m in tar.getmembers() if m.name.startswith("blobs/sha256/")]


def _id(engine: Engine, ref: str) -> str:
    return engine.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.decode().strip()


@pytest.mark.parametrize("destination", ["docker26", "docker26c"])
def test_a_platform_that_moves_a_tag_says_so_in_one_line(
    stores: dict[str, Engine], store_registry: Registry, destination: str
) -> None:
    """Issue 16, item 15: the destination's tag named the amd64 image; --platform linux/arm64 gives
    it the arm64 one, and the run says so: one line, in the summary and in --json."""
    src, dst = stores["docker28c"], stores[destination]
    ref, _ = _index(store_registry, src, ("linux/amd64", "linux/arm64"))
    run_d2d("copy", "-q", "-s", src.host, "-d", dst.host, ref, check=True)  # the destination's platform
    assert _architecture(dst, ref) == "amd64"
    old = _id(dst, ref)

    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, "--platform", "linux/arm64", ref, check=True)

    assert _architecture(dst, ref) == "arm64"
    new = _id(dst, ref)
    moved = [line for line in (proc.stdout + proc.stderr).splitlines() if "linux/amd64" in line]
    assert moved == [
        f"{ref} now names the linux/arm64 image ({new[7:19]}); it named the linux/amd64 one ({old[7:19]})"
    ], proc.stdout + proc.stderr
    # Back to amd64, with --json: the result says which tag moved, from what to what.
    as_json = run_d2d("copy", "--json", "-s", src.host, "-d", dst.host, "--platform", "linux/amd64", ref, check=True)
    result = next(json.loads(x) for x in as_json.stdout.splitlines() if '"result"' in x)
    assert result["moved"] == [
        {"ref": ref, "from": {"id": new, "platform": "linux/arm64"}, "to": {"id": old, "platform": "linux/amd64"}}
    ], result
    # The same platform again: nothing moves, nothing is said.
    again = run_d2d("copy", "-s", src.host, "-d", dst.host, "--platform", "linux/amd64", ref, check=True)
    assert "now names" not in again.stdout + again.stderr
