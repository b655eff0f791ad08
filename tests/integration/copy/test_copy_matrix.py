"""The core cases (cold, update, no-op) on every ordered pair of engines; the other cases on
pairs that take each save format out and each kind of destination in."""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import ENGINE_NAMES, TWIN
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, image_layers, unique

from ..helpers import copy, random_file, saved_layers

# A second engine of the same kind only where no other pair has that source format going into
# that load format: legacy save -> legacy load (Docker 20.10), the containerd store into itself
# (Docker 29's default), Podman 5 into itself. Docker 26 -> 28, 26c <-> 28c, podman <-> podman5
# cover the others.
TWINS = [("docker20", "docker20" + TWIN), ("docker28c", "docker28c" + TWIN), ("podman5", "podman5" + TWIN)]
# The core cases: every ordered pair.
PAIRS = [*itertools.permutations(ENGINE_NAMES, 2), *TWINS]
# The other cases (several images sharing layers, a layer under another parent, an image of
# empty layers and an id reference): each save format (legacy from Docker 20.10, OCI from
# overlay2, the containerd store's compressed blobs, Podman's docker-archive) as a source, and each
# destination whose load differs (legacy into Docker 20.10 and into Docker >= 25's graphdriver,
# the containerd store, Podman 4, Podman 5), with the store's compressed blobs going into a store
# (where a left-out layer is named by the source's own descriptor). Not every save format into
# every family: these cases branch on the destination's kind (chain ids or diff ids, one image
# per archive for Podman) and on the source's format, not on the two together, and the core
# cases above take every pair.
SOME_PAIRS = [
    ("docker20", "docker28c"),
    ("docker20", "podman5"),
    ("docker26", "docker20"),
    ("docker26", "podman"),
    ("docker26c", "docker28c"),
    ("podman", "docker28"),
]
pytestmark = pytest.mark.engines


def _app(builder: Builder, base: str | None = None, extra_steps: tuple[str, ...] = ()) -> tuple[str, str]:
    """A base image and an app on it: base layer + two COPY layers + a LABEL (empty layer)."""
    base = base or builder.base(unique("base") + ":1")
    app = unique("app") + ":1"
    builder.build(
        app,
        base,
        ["COPY a /a", "LABEL stage=test", "COPY b /b", *extra_steps],
        {"a": random_file(300_000), "b": random_file(100_000)},
    )
    return base, app


def _assert_same(src: Engine, dst: Engine, ref: str, dst_ref: str | None = None) -> None:
    assert image_layers(dst, dst_ref or ref) == image_layers(src, ref)
    assert saved_layers(dst, dst_ref or ref) == len(image_layers(src, ref))


@pytest.mark.parametrize(("source", "destination"), PAIRS)
def test_cold_update_noop(engines: dict[str, Engine], builder: Builder, source: str, destination: str) -> None:
    src, dst = engines[source], engines[destination]
    base, app = _app(builder)
    app2 = unique("app") + ":2"
    builder.build(app2, app, ["COPY c /c"], {"c": random_file(200_000)})
    builder.place(src, app, app2)

    cold = copy(src, dst, app)
    assert cold["layers_sent"] == 3 and cold["layers_skipped"] == 0
    assert cold["tagged"] == [app]
    _assert_same(src, dst, app)

    update = copy(src, dst, app2)
    assert update["transfers"] == 1, "the containerd store holds what docker-d2d loaded uncompressed: no resend"
    assert update["layers_sent"] == 1 and update["layers_skipped"] == 3
    assert 200_000 <= update["bytes_sent"] < 260_000
    _assert_same(src, dst, app2)

    noop = copy(src, dst, app2)
    assert noop["transfers"] == 0 and noop["bytes_sent"] == 0
    assert noop["tagged"] == [app2]


@pytest.mark.parametrize(("source", "destination"), SOME_PAIRS)
def test_two_images_sharing_layers(engines: dict[str, Engine], builder: Builder, source: str, destination: str) -> None:
    src, dst = engines[source], engines[destination]
    base, app = _app(builder)
    other = unique("other") + ":1"
    builder.build(other, app, ["COPY d /d"], {"d": random_file(50_000)})
    sibling = unique("sibling") + ":1"
    builder.build(sibling, base, ["COPY e /e"], {"e": random_file(70_000)})
    builder.place(src, other, sibling)

    result = copy(src, dst, other, sibling)
    # base, a, b, d for `other`; e for `sibling`: the shared base travels once.
    assert result["layers_sent"] == 5
    assert sorted(result["tagged"]) == sorted([other, sibling])
    _assert_same(src, dst, other)
    _assert_same(src, dst, sibling)


@pytest.mark.parametrize(("source", "destination"), SOME_PAIRS)
def test_same_layer_under_another_parent(
    engines: dict[str, Engine], builder: Builder, source: str, destination: str
) -> None:
    src, dst = engines[source], engines[destination]
    shared = random_file(150_000)
    base1, base2 = builder.base(unique("b1") + ":1"), builder.base(unique("b2") + ":1")
    x, y = unique("x") + ":1", unique("y") + ":1"
    builder.build(x, base1, ["COPY s /s"], {"s": shared})
    builder.build(y, base2, ["COPY s /s"], {"s": shared})
    assert image_layers(builder.engine, x)[1] == image_layers(builder.engine, y)[1], "test setup: same diff id"
    builder.place(src, y)
    builder.place(dst, x)

    result = copy(src, dst, y)
    # x came in through a plain `docker load`: the containerd store holds its layers uncompressed,
    # so one thin load must do.
    assert result["transfers"] == 1
    # graphdriver engines key layers by chain: the shared layer under a new parent must travel.
    expected_sent = 2 if dst.spec.kind == "docker" and not dst.spec.containerd_store else 1
    assert result["layers_sent"] == expected_sent
    _assert_same(src, dst, y)


@pytest.mark.parametrize(("source", "destination"), SOME_PAIRS)
def test_empty_layer_image_and_id_reference(
    engines: dict[str, Engine], builder: Builder, source: str, destination: str
) -> None:
    src, dst = engines[source], engines[destination]
    base, app = _app(builder)
    labelled = unique("labelled") + ":1"
    builder.build(labelled, app, ["LABEL only=metadata", "ENV X=1"])
    builder.place(src, app, labelled)
    copy(src, dst, app)

    # Same layers as `app`, another config: exported with every layer left out.
    result = copy(src, dst, labelled)
    assert result["layers_sent"] == 0 and result["layers_skipped"] == 3
    _assert_same(src, dst, labelled)

    # An id reference lands untagged and says so.
    src_id = src.docker("image", "inspect", "--format", "{{.Id}}", labelled).stdout.decode().strip()
    short_id = src_id.removeprefix("sha256:")[:12]
    retag = unique("retag") + ":1"
    builder.build(retag, labelled, ["LABEL again=1"])
    builder.place(src, retag)
    rid = src.docker("image", "inspect", "--format", "{{.Id}}", retag).stdout.decode().strip()
    by_id = copy(src, dst, rid.removeprefix("sha256:")[:12])
    assert by_id["tagged"] == [] and len(by_id["untagged"]) == 1
    assert short_id not in by_id["untagged"][0]
    assert not image_exists(dst, retag)
