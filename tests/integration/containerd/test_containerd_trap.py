"""The containerd image store loads a thin archive 'successfully' even when it lacks a left-out
layer under the digest the archive names, leaving an incomplete image (engines.md). docker-d2d
must never leave one behind."""

from __future__ import annotations

import pytest

from tests.harness.engines import Engine
from tests.harness.images import Builder, image_layers, place_compressed, unique

from ..helpers import built_in_the_store, copy, random_file, saved_layers

pytestmark = pytest.mark.engines


@pytest.mark.parametrize("source", ["docker20", "docker26", "podman"])
def test_compressed_base_at_destination_gets_a_complete_image(
    engines: dict[str, Engine], builder: Builder, source: str
) -> None:
    src, dst = engines[source], engines["docker26c"]
    base = builder.base(unique("regbase") + ":1", size=200_000)
    app = unique("regapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    place_compressed(builder, dst, base)  # as if pulled from a registry
    builder.place(src, app)

    result = copy(src, dst, app)

    # The plan leaves the base out (the store has its chain), a probe finds that the store holds
    # it under no digest this source can name (only gzip-compressed), so it travels, once.
    assert result["transfers"] == 1 and result["layers_sent"] == 2
    assert any(e["event"] == "note" and "cannot name" in e["message"] for e in result["events"])
    assert result["tagged"] == [app]
    assert image_layers(dst, app) == image_layers(src, app)
    assert saved_layers(dst, app) == 2, "every layer must be in the destination's content store"


def test_layers_from_docker_d2d_are_reused(engines: dict[str, Engine], builder: Builder) -> None:
    """What docker-d2d loaded into the store is stored uncompressed, so the next copy is thin."""
    src, dst = engines["docker26"], engines["docker26c"]
    base = builder.base(unique("base") + ":1", size=200_000)
    app = unique("app") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(100_000)})
    builder.place(src, base, app)
    copy(src, dst, base)
    result = copy(src, dst, app)
    assert result["transfers"] == 1 and result["layers_sent"] == 1 and result["layers_skipped"] == 1
    assert saved_layers(dst, app) == 2


@pytest.mark.parametrize("destination", ["docker20", "docker26", "podman"])
def test_compressed_blobs_from_a_containerd_source(
    engines: dict[str, Engine], builder: Builder, destination: str
) -> None:
    src, dst = engines["docker26c"], engines[destination]
    base, app = built_in_the_store(engines, builder)
    assert any(name.startswith("blobs/") and data[:2] == b"\x1f\x8b" for name, data in _export(src, app)), (
        "test setup: the store should hold the built layers gzip-compressed"
    )
    copy(src, dst, base)
    result = copy(src, dst, app)  # the base is left out: its compressed siblings are told apart by content
    assert result["layers_sent"] == 2 and result["layers_skipped"] == 1
    assert image_layers(dst, app) == image_layers(src, app)
    assert saved_layers(dst, app) == 3


def _export(engine: Engine, ref: str) -> list[tuple[str, bytes]]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(engine.docker("save", ref).stdout)) as tar:
        return [(m.name, tar.extractfile(m).read()[:4]) for m in tar.getmembers() if m.isfile()]  # type: ignore[union-attr]
