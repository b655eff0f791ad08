"""Reading what a node's `ctr` prints (tables as containerd 1.7 and 2.1 print them) and the CRI's names."""

from __future__ import annotations

import hashlib
import json

from docker_d2d.engine.containerd.listing import (
    IMPORT_PREFIX,
    cri_name,
    describe,
    node_platform,
    parse_check,
    parse_content,
    parse_images,
    parse_snapshots,
    pick_manifest,
    server_version,
)
from docker_d2d.model import Platform

M = "sha256:" + "0e" * 32
C = "sha256:" + "10" * 32
L1 = "sha256:" + "1b" * 32
L2 = "sha256:" + "f1" * 32
GZ = "sha256:" + "ab" * 32


def test_images_table() -> None:
    text = (
        "REF TYPE DIGEST SIZE PLATFORMS LABELS \n"
        f"docker.io/library/app:1 application/vnd.oci.image.manifest.v1+json {M} 20.8 KiB linux/amd64 -      \n"
        f"{IMPORT_PREFIX}ab12@{M} application/vnd.oci.image.manifest.v1+json {M} 20.8 KiB linux/amd64 -\n"
    )
    images = parse_images(text)
    assert [(i.name, i.digest) for i in images] == [("docker.io/library/app:1", M), (f"{IMPORT_PREFIX}ab12@{M}", M)]


def test_content_check_snapshots_version() -> None:
    content = f"DIGEST\tSIZE\tAGE\tLABELS\n{L1}\t10.24kB\tLess than a second\tcontainerd.io/uncompressed={L1}\n"
    assert parse_content(content) == {L1}
    check = (
        "REF TYPE DIGEST STATUS SIZE UNPACKED \n"
        f"a:1 application/vnd.oci.image.manifest.v1+json {M} complete (3/3) 20.2 KiB/20.2 KiB true\n"
        f"b:1 application/vnd.oci.image.manifest.v1+json {M} incomplete (2/3) 10.2 KiB/20.2 KiB false\n"
    )
    checked = parse_check(check)
    assert checked["a:1"].complete and checked["a:1"].unpacked
    assert not checked["b:1"].complete and not checked["b:1"].unpacked
    snaps = f"KEY PARENT KIND \n{L1}  Committed \n{L2} {L1} Active\n"
    assert parse_snapshots(snaps) == {L1: "Committed", L2: "Active"}
    version = "Client:\n  Version:  2.1.9+unknown\n\nServer:\n  Version:  1.7.24~ds1\n  UUID: x\n"
    assert server_version(version) == "1.7.24~ds1"
    plugins = "TYPE ID PLATFORMS STATUS\nio.containerd.snapshotter.v1 overlayfs linux/arm64/v8 ok\n"
    assert node_platform(plugins) == Platform("linux", "arm64", "v8")


def test_cri_names() -> None:
    assert cri_name("app", "2") == "docker.io/library/app:2"
    assert cri_name("fx/app", "2") == "docker.io/fx/app:2"
    assert cri_name("registry.lan:5000/team/app", "1") == "registry.lan:5000/team/app:1"
    assert cri_name("localhost/app", "1") == "localhost/app:1"


def test_describe_pairs_layers_with_diff_ids() -> None:
    config = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": [L1, L2]}}).encode()
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": GZ, "size": 5}]
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": L2, "size": 7})
    manifest = json.dumps({"config": {"digest": C}, "layers": layers}).encode()
    described = describe(M, ("docker.io/library/app:1", f"{IMPORT_PREFIX}x@{M}"), manifest, config)
    assert described.info.diff_ids == (L1, L2)
    assert described.layers[L1]["digest"] == GZ and described.layers[L2]["digest"] == L2
    assert described.info.repo_tags == ("app:1",)
    assert described.info.config_digest == "sha256:" + hashlib.sha256(config).hexdigest()


def test_pick_manifest_of_the_platform() -> None:
    index = {
        "manifests": [
            {"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
            {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
        ]
    }
    picked = pick_manifest(index, Platform("linux", "amd64"))
    assert picked is not None and picked["digest"] == "sha256:amd"
    assert pick_manifest(index, Platform("linux", "s390x")) is None
