"""`--via REGISTRY`: the missing blobs go to a real distribution registry once, every destination
pulls them through its Engine API, is verified, and ends up with exactly the requested tags."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import (
    Builder,
    diff_id,
    image_config,
    image_exists,
    image_layers,
    layer_files,
    oci_archive,
    unique,
)
from tests.harness.registry import Registry

from ..helpers import random_file

pytestmark = pytest.mark.engines


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def tags_of(engine: Engine) -> set[str]:
    out = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    return {line for line in out.split() if not line.endswith(":<none>")}


def test_via_registry_to_three_engines_then_an_update(
    engines: dict[str, Engine], builder: Builder, registry: Registry
) -> None:
    src = engines["docker20"]
    base = builder.base(unique("vbase") + ":1", size=500_000)
    v1 = unique("via") + ":1"
    v2 = v1.replace(":1", ":2")
    builder.build(v1, base, ["COPY a /a"], {"a": random_file(1_500_000)})
    builder.build(v2, v1, ["COPY b /b"], {"b": random_file(700_000)})
    builder.place(src, v1, v2)
    dests = [engines["docker20-twin"], engines["docker26-twin"], engines["docker26c-twin"]]
    before = {d.spec.name: tags_of(d) for d in dests}
    hosts = ",".join(d.host for d in dests)

    first = run_d2d("copy", "--json", "--via", registry.address, "-s", src.host, "-d", hosts, v1)
    assert first.returncode == 0, first.stderr
    stored = registry.blob_bytes()
    fleet = next(e for e in events(first.stdout) if e["event"] == "fleet")
    notes = [e for e in events(first.stdout) if e["event"] == "note" and "pulled" in e["message"]]
    assert {n["destination"] for n in notes} == {d.host for d in dests}  # per-host progress
    assert fleet["failed"] == 0 and fleet["export_bytes"] > 2_000_000  # two layers' tars went to the registry

    second = run_d2d("copy", "--json", "--via", registry.address, "-s", src.host, "-d", hosts, v2)
    assert second.returncode == 0, second.stderr
    fleet2 = next(e for e in events(second.stdout) if e["event"] == "fleet")
    # Only the update's layer (a 700 kB file in a tar) plus its config and manifest went to the registry.
    assert 700_000 < fleet2["export_bytes"] < 800_000
    assert 700_000 < registry.blob_bytes() - stored < 800_000

    for dst in dests:
        for ref in (v1, v2):
            assert image_layers(dst, ref) == image_layers(src, ref), dst.spec.name
        # Exactly the requested tags are new: the registry's names are gone again.
        assert tags_of(dst) - before[dst.spec.name] == {v1, v2}, dst.spec.name


def test_via_a_registry_with_credentials_from_the_docker_config(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path
) -> None:
    reg = Registry(tmp_path / "auth-registry", user="deploy", password="s3cret")
    reg.start()
    try:
        src, dst = engines["docker26"], engines["docker20-twin"]
        app = builder.base(unique("vauth") + ":1", size=200_000)
        builder.place(src, app)
        without = tmp_path / "no-login"
        without.mkdir()
        proc = run_d2d(
            "copy", "--via", reg.address, "-s", src.host, "-d", dst.host, app, env={"DOCKER_CONFIG": str(without)}
        )
        assert proc.returncode == 1
        assert f"docker login {reg.address}" in proc.stderr and "Traceback" not in proc.stderr
        assert not image_exists(dst, app)

        login = tmp_path / "login"
        login.mkdir()
        token = base64.b64encode(b"deploy:s3cret").decode()
        (login / "config.json").write_text(json.dumps({"auths": {reg.address: {"auth": token}}}))
        proc = run_d2d(
            "copy", "--via", reg.address, "-s", src.host, "-d", dst.host, app, env={"DOCKER_CONFIG": str(login)}
        )
        assert proc.returncode == 0, proc.stderr
        assert image_layers(dst, app) == image_layers(src, app)
    finally:
        reg.stop()


def test_unreachable_registry_is_one_line(engines: dict[str, Engine], builder: Builder) -> None:
    src, dst = engines["docker20"], engines["docker26-twin"]
    app = builder.base(unique("vdead") + ":1", size=10_000)
    builder.place(src, app)
    proc = run_d2d("copy", "--via", "127.0.0.1:1", "-s", src.host, "-d", dst.host, app)
    assert proc.returncode == 1
    assert "registry 127.0.0.1:1/docker-d2d" in proc.stderr and "Traceback" not in proc.stderr
    assert not image_exists(dst, app)


def test_zstd_layers_via_a_registry_to_engines_that_cannot_take_them(
    engines: dict[str, Engine], registry: Registry
) -> None:
    """A containerd store holding zstd layers, through a registry to Docker 20.10 and Podman 4.3
    (which cannot take zstd layers) and Docker 28.5 (which can): the blobs go to the registry as
    the tars they inflate to, so every destination pulls, and each can save the image again."""
    src = engines["docker28c"]
    ref = unique("vzstd") + ":1"
    layers = layer_files(2, size=80_000)
    blobs = [zstandard.ZstdCompressor(level=3).compress(b) for b in layers]
    config = image_config([diff_id(b) for b in layers], [{"created_by": "x"}, {"created_by": "y"}])
    src.docker(
        "load",
        "-q",
        input=oci_archive(ref, [("application/vnd.oci.image.layer.v1.tar+zstd", b) for b in blobs], config),
    )
    dests = [engines["docker20-twin"], engines["podman-twin"], engines["docker28-twin"]]

    proc = run_d2d(
        "copy", "--json", "--via", registry.address, "-s", src.host, "-d", ",".join(d.host for d in dests), ref
    )

    assert proc.returncode == 0, proc.stderr
    for dst in dests:
        assert image_layers(dst, ref) == [diff_id(b) for b in layers], dst.spec.name
        saved = dst.docker("save", ref, check=False)
        assert saved.returncode == 0, (dst.spec.name, saved.stderr)
