"""Real-world image shapes (issue 11 item 5), made by hand where no builder here makes them:
no `history`, empty layers (and one repeated), 100+ layers, zstd layers in the containerd store,
non-distributable layers. Bytes sent are the sizes of the layers the destination lacked, as the
source exports them."""

from __future__ import annotations

import gzip
import os

import pytest
import zstandard

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import (
    EMPTY_TAR,
    diff_id,
    docker_archive,
    export_layer_sizes,
    image_config,
    image_layers,
    lacking_bytes,
    layer_files,
    oci_archive,
    rootfs_tar,
    unique,
)
from tests.harness.registry import OCI_MANIFEST, Registry, digest_of

from .helpers import copy, saved_layers

pytestmark = pytest.mark.engines

MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# Each save format once as a source (Docker 20.10's legacy export, overlay2's OCI export, the
# containerd store's, Podman's docker-archive: what engine.history_sizes and the archive reader
# branch on) and each destination kind whose load differs once (legacy into Docker 20.10 and into
# Docker >= 25's graphdriver, the containerd store, Podman 4, Podman 5). The pairs dropped to keep
# CI short (docker28 -> docker26c, podman5 -> docker28c) repeated a source format and a destination
# kind already here.
PAIRS = [
    ("docker20", "docker28c"),
    ("docker26", "podman5"),
    ("docker26c", "docker28"),
    ("docker28c", "podman"),
    ("podman", "docker20"),
]


def _containerd(engine: Engine) -> bool:
    return engine.spec.containerd_store


def _load(engine: Engine, tag: str, layers: list[bytes], config: bytes) -> None:
    """The containerd store gets a hand-made OCI archive, every other engine a docker archive."""
    if _containerd(engine):
        archive = oci_archive(tag, [(MT_TAR, b) for b in layers], config)
    else:
        archive = docker_archive(tag, layers, config)
    engine.docker("load", "-q", input=archive)


def _assert_complete(src: Engine, dst: Engine, ref: str) -> None:
    assert image_layers(dst, ref) == image_layers(src, ref)
    assert saved_layers(dst, ref) == len(image_layers(src, ref))


@pytest.mark.parametrize(("source", "destination"), PAIRS)
def test_no_history(engines: dict[str, Engine], source: str, destination: str) -> None:
    src, dst = engines[source], engines[destination]
    layers = layer_files(3, size=30_000)
    v1, v2 = unique("nohist") + ":1", unique("nohist") + ":2"
    _load(src, v1, layers[:2], image_config([diff_id(b) for b in layers[:2]], history=None))
    _load(src, v2, layers, image_config([diff_id(b) for b in layers], history=None))

    lacking = lacking_bytes(src, dst, v1)
    cold = copy(src, dst, v1)
    assert cold["tagged"] == [v1] and cold["layers_sent"] == 2
    assert cold["bytes_sent"] == lacking == sum(export_layer_sizes(src, v1))
    _assert_complete(src, dst, v1)

    lacking = lacking_bytes(src, dst, v2)
    update = copy(src, dst, v2)
    assert update["layers_sent"] == 1 and update["layers_skipped"] == 2
    assert update["bytes_sent"] == lacking == export_layer_sizes(src, v2)[2]
    _assert_complete(src, dst, v2)


@pytest.mark.parametrize(("source", "destination"), PAIRS)
def test_empty_layers_one_repeated(engines: dict[str, Engine], source: str, destination: str) -> None:
    """Steps that changed no file (an empty tar, twice: the same diff id twice in one image) and
    steps without a layer (`empty_layer` history entries)."""
    src, dst = engines[source], engines[destination]
    a, b = layer_files(2, size=40_000)
    layers = [a, EMPTY_TAR, b, EMPTY_TAR]
    history: list[dict[str, object]] = [
        {"created_by": "ADD rootfs /"},
        {"created_by": "ENV A=1", "empty_layer": True},
        {"created_by": "RUN true"},
        {"created_by": "COPY b /b"},
        {"created_by": "LABEL x=y", "empty_layer": True},
        {"created_by": "RUN true"},
    ]
    ref = unique("emptyl") + ":1"
    _load(src, ref, layers, image_config([diff_id(x) for x in layers], history))
    assert len(image_layers(src, ref)) == 4

    lacking = lacking_bytes(src, dst, ref)
    result = copy(src, dst, ref)
    assert result["tagged"] == [ref]
    assert result["bytes_sent"] == lacking
    _assert_complete(src, dst, ref)
    assert copy(src, dst, ref)["bytes_sent"] == 0


# Slow (each layer is a mount at a graphdriver, a snapshot in the store): three pairs that take
# each reader (legacy, the store's OCI, overlay2's OCI) to each writer (OCI into the store and
# into Podman, legacy).
HUNDRED_PAIRS = [("docker20", "docker28c"), ("docker28c", "docker28"), ("docker28", "podman5")]


@pytest.mark.parametrize(("source", "destination"), HUNDRED_PAIRS)
def test_more_than_a_hundred_layers(engines: dict[str, Engine], source: str, destination: str) -> None:
    src, dst = engines[source], engines[destination]
    layers = layer_files(102)
    v1, v2 = unique("many") + ":1", unique("many") + ":2"
    _load(src, v1, layers[:101], image_config([diff_id(b) for b in layers[:101]], history=None))
    _load(src, v2, layers, image_config([diff_id(b) for b in layers], history=None))

    lacking = lacking_bytes(src, dst, v1)
    cold = copy(src, dst, v1)
    assert cold["layers_sent"] == 101
    assert cold["bytes_sent"] == lacking == sum(export_layer_sizes(src, v1))
    _assert_complete(src, dst, v1)

    lacking = lacking_bytes(src, dst, v2)
    update = copy(src, dst, v2)
    assert update["layers_sent"] == 1 and update["layers_skipped"] == 101
    assert update["bytes_sent"] == lacking == export_layer_sizes(src, v2)[101]
    _assert_complete(src, dst, v2)


def _zstd_image(tag: str) -> tuple[list[bytes], list[bytes], bytes]:
    """Two layers stored zstd-compressed: (uncompressed layers, blobs, config)."""
    layers = layer_files(2, size=80_000)
    blobs = [zstandard.ZstdCompressor(level=3).compress(b) for b in layers]
    return layers, blobs, image_config([diff_id(b) for b in layers], [{"created_by": "x"}, {"created_by": "y"}])


# These take zstd layers only decompressed: Docker 20.10 cannot read them ('archive/tar: invalid tar
# header'); Podman 4.3 keeps them as they are and then cannot `docker save` the image ('zstd
# compression is not supported for docker images').
PLAIN_ONLY = {"docker20", "podman"}
# From a hand-made archive, every destination whose answer to zstd differs (compress.
# accepts_zstd_layers and the load format): inflated into Docker 20.10 and Podman 4.3, passed
# through into Docker >= 23's graphdriver (docker26 takes the same path as docker28), the
# containerd store and Podman 5. Pulled from the registry (the store's own pull, not our load,
# put the blobs there): one inflating and one passing-through destination.
ZSTD_CASES = [
    *(("archive", d) for d in ["docker20", "docker28", "docker26c", "podman", "podman5"]),
    ("registry", "docker20"),
    ("registry", "docker26c"),
]


@pytest.mark.parametrize(("how", "destination"), ZSTD_CASES)
def test_zstd_layers_in_a_containerd_store(
    engines: dict[str, Engine], registry: Registry, how: str, destination: str
) -> None:
    """A containerd store (Docker 28.5) holding zstd layers, loaded from a hand-made OCI archive or
    pulled from the registry (pushed there through the registry API: no buildx here). Where the
    destination cannot take them, they travel as the tars they inflate to."""
    src, dst = engines["docker28c"], engines[destination]
    name = unique("zstd")
    ref = name + ":1"
    layers, blobs, config = _zstd_image(ref)
    if how == "archive":
        src.docker("load", "-q", input=oci_archive(ref, [(MT_ZSTD, b) for b in blobs], config))
    else:
        ref = _push_by_hand(registry, name, [(MT_ZSTD, b) for b in blobs], config)
        registry.pull(src, ref)
    assert image_layers(src, ref) == [diff_id(b) for b in layers]
    sizes = export_layer_sizes(src, ref)
    assert sizes == [len(b) for b in blobs], "test setup: the store exports the zstd blobs as they are"

    assert sum(len(b) for b in layers) != sum(sizes), "test setup: inflated and as stored must differ"
    lacking = lacking_bytes(src, dst, ref)
    assert lacking == sum(sizes)  # the destination lacks both layers
    result = copy(src, dst, ref)
    # Each lacking layer once: its blob as the store exports it, or the tar it inflates to.
    expected = sum(len(b) for b in layers) if destination in PLAIN_ONLY else lacking
    assert result["bytes_sent"] == expected
    assert result["layers_sent"] == 2
    _assert_complete(src, dst, ref)
    assert copy(src, dst, ref)["bytes_sent"] == 0


def _push_by_hand(registry: Registry, name: str, layers: list[tuple[str, bytes]], config: bytes) -> str:
    import json

    for _, blob in layers:
        registry.upload_blob(name, blob)
    registry.upload_blob(name, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [{"mediaType": mt, "digest": digest_of(b), "size": len(b)} for mt, b in layers],
        }
    ).encode()
    registry.upload_manifest(name, "1", manifest)
    return registry.ref(name + ":1")


def _foreign_app(src: Engine, media_type: str) -> tuple[list[bytes], list[tuple[str, bytes]], str]:
    """At the containerd store `src`: an app whose base layer is marked non-distributable (Windows
    base images are the real case), its blob present in the store. Docker's export leaves such
    blobs out (moby's exporter skips non-distributable blobs), so only a destination that already
    holds the base can receive the app."""
    ref = unique("foreign") + ":1"
    layers = layer_files(2, size=50_000)
    blobs = [(media_type, gzip.compress(layers[0], mtime=0)), (MT_GZIP, gzip.compress(layers[1], mtime=0))]
    config = image_config([diff_id(b) for b in layers], [{"created_by": "x"}, {"created_by": "y"}])
    src.docker("load", "-q", input=oci_archive(ref, blobs, config))
    assert image_layers(src, ref) == [diff_id(b) for b in layers]
    return layers, blobs, ref


# Our code treats both media types alike (archive.py asks for either word) and the test below
# runs the foreign one into every destination kind: the OCI type into each kind, Docker's foreign
# type into the containerd store (the one that checks blobs by digest).
NON_DIST_CASES = [
    (MT_NONDIST, "docker28"),
    (MT_NONDIST, "podman5"),
    (MT_NONDIST, "docker26c"),
    (MT_FOREIGN, "docker26c"),
]


@pytest.mark.parametrize(("media_type", "destination"), NON_DIST_CASES)
def test_non_distributable_base_already_at_the_destination(
    engines: dict[str, Engine], media_type: str, destination: str
) -> None:
    src, dst = engines["docker28c"], engines[destination]
    layers, blobs, ref = _foreign_app(src, media_type)
    base = unique("foreignbase") + ":1"
    dst.docker("load", "-q", input=docker_archive(base, layers[:1], image_config([diff_id(layers[0])], None)))

    result = copy(src, dst, ref)
    assert result["layers_sent"] == 1 and result["bytes_sent"] == len(blobs[1][1])
    assert result["layers_skipped"] == 1  # the base the export left out: named by its diff id alone
    assert result["tagged"] == [ref]
    _assert_complete(src, dst, ref)


@pytest.mark.parametrize("destination", ["docker28", "podman5", "docker26c"])
def test_non_distributable_layer_the_destination_lacks(engines: dict[str, Engine], destination: str) -> None:
    """The export has no blob for it: one line naming the cause, nothing tagged."""
    src, dst = engines["docker28c"], engines[destination]
    _, _, ref = _foreign_app(src, MT_FOREIGN)
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, ref)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"docker-d2d: source {src.host}: ")
    assert "non-distributable" in last and MT_FOREIGN in last, last  # the export's rule, not a pull's gap
    assert dst.docker("image", "inspect", ref, check=False).returncode != 0


def _gzip_members(layer: bytes, step: int) -> bytes:
    """`layer` as consecutive gzip members of `step` bytes each (`cat a.gz b.gz`, as eStargz)."""
    return b"".join(gzip.compress(layer[i : i + step], mtime=0) for i in range(0, len(layer), step))


# A graphdriver engine, Podman 4.3 and another containerd store: each reader of the blob (the hash
# of the legacy and the OCI writers) and each loader.
@pytest.mark.parametrize("destination", ["docker28", "podman", "docker26c"])
def test_layers_of_several_gzip_members_from_a_registry(
    engines: dict[str, Engine], registry: Registry, destination: str
) -> None:
    """A containerd store that pulled layers stored as several gzip members: members that inflate
    to 1 MiB exactly (the hasher's output step) and to 1 MiB and a byte, text that compresses well
    so that one read holds a member's end and the next members. `docker save | docker load` takes
    the image; the copy sends it once, complete."""
    src, dst = engines["docker28c"], engines[destination]
    name = unique("members")
    text = b"".join(b"line %d of a log file that compresses well\n" % i for i in range(120_000))
    layers = [
        rootfs_tar({"var/log/a.log": text, "etc/id": os.urandom(5000)}),
        rootfs_tar({"var/log/b.log": text[: 3 << 20], "bin/x": os.urandom(300_000)}),
    ]
    blobs = [_gzip_members(layers[0], 1 << 20), _gzip_members(layers[1], (1 << 20) + 1)]
    assert [gzip.decompress(b) for b in blobs] == layers, "test setup: valid multi-member gzip"
    config = image_config([diff_id(b) for b in layers], [{"created_by": "x"}, {"created_by": "y"}])
    ref = _push_by_hand(registry, name, [(MT_GZIP, b) for b in blobs], config)
    registry.pull(src, ref)
    assert image_layers(src, ref) == [diff_id(b) for b in layers]
    assert export_layer_sizes(src, ref) == [len(b) for b in blobs], "test setup: exported as pulled"

    lacking = lacking_bytes(src, dst, ref)
    result = copy(src, dst, ref)
    assert result["tagged"] == [ref] and result["layers_sent"] == 2
    assert result["bytes_sent"] == lacking == sum(len(b) for b in blobs)
    _assert_complete(src, dst, ref)
    assert copy(src, dst, ref)["bytes_sent"] == 0
