"""Image references: digest references land untagged; several names for one image."""

from __future__ import annotations

import pytest

from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, image_layers, unique

from ..helpers import copy, random_file

pytestmark = pytest.mark.engines


@pytest.mark.parametrize("destination", ["docker20", "docker26", "podman"])
def test_digest_reference_lands_untagged(engines: dict[str, Engine], builder: Builder, destination: str) -> None:
    # The containerd store gives every image a repo digest without a registry.
    src, dst = engines["docker26c"], engines[destination]
    base = builder.base(unique("base") + ":1")
    app = unique("dig") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(50_000)})
    builder.place(src, app)
    digest_ref = src.docker("image", "inspect", "--format", "{{index .RepoDigests 0}}", app).stdout.decode().strip()
    assert "@sha256:" in digest_ref

    result = copy(src, dst, digest_ref)

    assert result["tagged"] == []
    assert result["untagged"] and result["untagged"][0].startswith(digest_ref)
    assert not image_exists(dst, app)
    dest_id = result["untagged"][0].split(" -> ")[1]
    assert image_layers(dst, dest_id) == image_layers(src, app)


def test_registry_style_name_and_two_tags_of_one_image(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    base = builder.base(unique("base") + ":1")
    name = unique("127.0.0.1:5000/team/app")
    builder.build(f"{name}:1", base, ["COPY a /a"], {"a": random_file(50_000)})
    builder.engine.docker("tag", f"{name}:1", f"{name}:latest")
    builder.place(src, f"{name}:1", f"{name}:latest")

    result = copy(src, dst, f"{name}:1", name)

    assert sorted(result["tagged"]) == sorted([f"{name}:1", f"{name}:latest"])
    assert result["layers_sent"] == 2
    assert image_layers(dst, f"{name}:latest") == image_layers(src, f"{name}:1")
