"""The containerd image store done right (issue 11): bases pulled from a real registry, images
built in the store, Docker 26.1 and 28.5. No layer travels twice, nothing is left incomplete
or dangling, and bytes sent equal the blobs the destination really lacked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_layers, place_compressed, unique
from tests.harness.registry import Registry
from tests.integration.containerd.store_fixtures import (
    LyingSource,
    ctr_images,
    layer_blob_sizes,
    leftovers,
    measured,
    pulled,
    saved_blobs,
)

from ..helpers import copy, random_file

pytestmark = pytest.mark.engines


def registry_base(stores: dict[str, Engine], registry: Registry, size: int = 300_000) -> str:
    """A fresh one-layer base pushed to the registry (pushed gzip-compressed by Docker)."""
    builder = Builder(stores["docker26"])
    ref = builder.base(f"{registry.address}/{unique('base')}:1", size=size)
    stores["docker26"].docker("push", "-q", ref)
    return ref


def check_complete(src: Engine, dst: Engine, ref: str, before: list[str]) -> None:
    assert image_layers(dst, ref) == image_layers(src, ref)
    blobs = saved_blobs(dst, ref)  # every blob, config included
    assert len(blobs) == len(image_layers(src, ref)) + 1
    assert leftovers(dst, before) == [], "the run left dangling or untagged records in the store"


@pytest.mark.parametrize("destination", ["docker26c", "docker28c"])
def test_registry_base_at_destination(stores: dict[str, Engine], store_registry: Registry, destination: str) -> None:
    src, dst = stores["docker26"], stores[destination]
    base = registry_base(stores, store_registry)
    app = unique("regapp") + ":1"
    Builder(src).build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    pulled(dst, base)
    before = ctr_images(dst)

    result = copy(src, dst, app)

    # The store holds the base only as the registry's gzip blob, which an overlay2 source cannot
    # name; the manifest its repo digest names (fetched from the registry) can, a probe confirms:
    # only the new layer travels.
    sizes = layer_blob_sizes(src, app)
    new = image_layers(src, app)[-1]
    measured(f"registry base at {destination}, overlay2 source", result, sizes[new])
    assert result["transfers"] == 1 and result["layers_sent"] == 1 and result["layers_skipped"] == 1
    assert result["bytes_sent"] == sizes[new]
    assert not any(e["event"] == "note" for e in result["events"])
    assert result["tagged"] == [app]
    check_complete(src, dst, app, before)

    # The next app on that base: the same again.
    app2 = unique("regapp") + ":2"
    Builder(src).build(app2, base, ["COPY b /b"], {"b": random_file(50_000)})
    again = copy(src, dst, app2)
    sizes2 = layer_blob_sizes(src, app2)
    measured(f"second app on that base at {destination}", again, sizes2[image_layers(src, app2)[-1]])
    assert again["transfers"] == 1 and again["layers_skipped"] == 1
    assert again["bytes_sent"] == sizes2[image_layers(src, app2)[-1]]
    check_complete(src, dst, app2, before)


def test_registry_out_of_reach_base_travels_once(stores: dict[str, Engine], store_registry: Registry) -> None:
    """The same, with the registry gone by the time of the copy: no digest names the base, so it
    travels, once, in the one load (no second export, no incomplete image)."""
    src, dst = stores["docker26"], stores["docker28c"]
    reg = Registry(store_registry.base.parent / unique("shortlived"))
    reg.start()
    base = registry_base(stores, reg)
    pulled(dst, base)
    reg.stop()
    app = unique("regapp") + ":1"
    Builder(src).build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    before = ctr_images(dst)

    result = copy(src, dst, app)

    sizes = layer_blob_sizes(src, app)
    measured("registry base at docker28c, registry gone, overlay2 source", result, sum(sizes.values()))
    assert result["transfers"] == 1 and result["layers_sent"] == 2
    assert result["bytes_sent"] == sum(sizes.values())
    assert any(e["event"] == "note" and "cannot name" in e["message"] for e in result["events"])
    check_complete(src, dst, app, before)


@pytest.mark.parametrize(("source", "destination"), [("docker26c", "docker28c"), ("docker28c", "docker26c")])
def test_same_registry_base_at_both_ends(
    stores: dict[str, Engine], store_registry: Registry, source: str, destination: str
) -> None:
    src, dst = stores[source], stores[destination]
    base = registry_base(stores, store_registry)
    pulled(src, base)
    pulled(dst, base)
    app = unique("bothapp") + ":1"
    Builder(src).build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(200_000), "b": b"text\n" * 40_000})
    before = ctr_images(dst)

    result = copy(src, dst, app)

    # Both stores hold the registry's compressed base blob: only the two new layers travel, as the
    # source's store keeps them (gzip), in a single load.
    sizes = layer_blob_sizes(src, app)
    new = image_layers(src, app)[1:]
    measured(f"registry base at both ends {source} -> {destination}", result, sum(sizes[d] for d in new))
    assert result["transfers"] == 1
    assert result["layers_sent"] == 2 and result["layers_skipped"] == 1
    assert result["bytes_sent"] == sum(sizes[d] for d in new)
    check_complete(src, dst, app, before)


def test_built_in_the_store_between_stores(stores: dict[str, Engine]) -> None:
    """A base with a layer loaded uncompressed and one built in the store (gzip), copied first;
    then an app on it: the destination holds one base layer uncompressed and one under the
    source's gzip digest, and the thin manifest names each by the digest held."""
    src, dst = stores["docker26c"], stores["docker28c"]
    imported = Builder(stores["docker26"]).base(unique("sbase") + ":1", size=200_000)
    Builder(stores["docker26"]).place(src, imported)
    base = unique("sbase") + ":2"
    Builder(src).build(base, imported, ["COPY a /a"], {"a": random_file(150_000)})
    app = unique("sbuilt") + ":1"
    Builder(src).build(app, base, ["COPY b /b"], {"b": random_file(100_000)})
    before = ctr_images(dst)

    first = copy(src, dst, base)
    assert first["bytes_sent"] == sum(layer_blob_sizes(src, base).values())
    result = copy(src, dst, app)

    sizes = layer_blob_sizes(src, app)
    measured("built in the store docker26c -> docker28c", result, sizes[image_layers(src, app)[-1]])
    assert result["transfers"] == 1 and result["layers_skipped"] == 2
    assert result["bytes_sent"] == sizes[image_layers(src, app)[-1]]
    check_complete(src, dst, app, before)


def test_base_held_under_an_unknown_digest_sends_just_that_layer(
    stores: dict[str, Engine], store_registry: Registry
) -> None:
    """The source pulled the base from the registry; the destination holds the same layer
    compressed differently (another tool's gzip). The thin load comes out incomplete; probes
    find exactly which layer is missing, and only that one is sent in a second load."""
    src, dst = stores["docker26c"], stores["docker28c"]
    base = registry_base(stores, store_registry)
    pulled(src, base)
    place_compressed(Builder(stores["docker26"]), dst, base)
    app = unique("mixapp") + ":1"
    Builder(src).build(app, base, ["COPY a /a"], {"a": random_file(120_000)})
    before = ctr_images(dst)

    result = copy(src, dst, app)

    sizes = layer_blob_sizes(src, app)
    measured("base under an unknown digest docker26c -> docker28c", result, sum(sizes.values()))
    assert result["transfers"] == 2
    assert result["layers_sent"] == 2, "each layer once: the new one in the first load, the base in the second"
    assert result["bytes_sent"] == sum(sizes.values())
    assert any(e["event"] == "note" and "lacks 1 left-out layer" in e["message"] for e in result["events"])
    check_complete(src, dst, app, before)


@pytest.mark.parametrize(("source", "destination"), [("docker26c", "docker28c"), ("docker28c", "docker26c")])
def test_a_base_compressed_differently_at_each_end_travels_not_once(
    stores: dict[str, Engine], store_registry: Registry, source: str, destination: str
) -> None:
    """Issue 16, item 3: the source's store got the base from docker-d2d (uncompressed blobs), the
    destination's pulled it from a registry (gzip). The destination's own registry manifest names
    its blobs: only the app's layers travel, in one load, and --dry-run says so beforehand."""
    src, dst = stores[source], stores[destination]
    base = registry_base(stores, store_registry, size=2_000_000)
    pulled(dst, base)
    assert copy(stores["docker26"], src, base)["layers_sent"] == 1  # the source's copy: from docker-d2d
    app = unique("twoends") + ":1"
    Builder(src).build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(200_000), "b": b"text\n" * 40_000})
    before = ctr_images(dst)

    dry = run_d2d("copy", "-s", src.host, "-d", dst.host, "--json", "--dry-run", app)
    plan = next(e for e in map(json.loads, dry.stdout.splitlines()) if e["event"] == "plan")
    actions = [layer["action"] for image in plan["images"] for layer in image["layers"]]
    result = copy(src, dst, app)

    sizes = layer_blob_sizes(src, app)
    new = image_layers(src, app)[1:]
    measured(f"base compressed differently {source} -> {destination}", result, sum(sizes[d] for d in new))
    assert result["transfers"] == 1 and result["layers_sent"] == 2 and result["layers_skipped"] == 1
    assert result["bytes_sent"] == sum(sizes[d] for d in new)
    assert actions == ["skip", "send", "send"]
    check_complete(src, dst, app, before)


def test_a_failed_run_removes_what_it_loaded(stores: dict[str, Engine], store_base: Path) -> None:
    """A source whose export contradicts its inspect: the check after the load fails, and the
    image the run loaded into the store is removed again (nothing tagged, nothing dangling)."""
    real, dst = stores["docker26c"], stores["docker28c"]
    base = Builder(stores["docker26"]).base(unique("liar") + ":1", size=50_000)
    Builder(stores["docker26"]).place(real, base)
    liar = LyingSource(real, store_base / f"{unique('liar')}.sock")
    before = ctr_images(dst)
    try:
        proc = run_d2d("copy", "-q", "-s", liar.host, "-d", dst.host, base)
    finally:
        liar.close()
    assert proc.returncode == 1, proc.stderr
    assert "differ" in proc.stderr and "Traceback" not in proc.stderr
    assert ctr_images(dst) == before, "the loaded image must be removed again"
