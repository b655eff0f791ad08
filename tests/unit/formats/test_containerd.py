"""The rewrite of containerd-store exports: how a thin manifest names left-out layers, the platform filter of an export."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docker_d2d.formats.oci import uncompressed
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.model import ImageInfo
from tests.harness.tars import files as tar_files
from tests.harness.tars import make_tar, sha

LAYERS = [bytes([i + 1]) * (5000 * (i + 1)) for i in range(3)]


DIFFS = [sha(b) for b in LAYERS]


BLOBS = [gzip.compress(b, mtime=0) for b in LAYERS]


GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": DIFFS}}).encode()


SOURCE_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": GZ, "digest": sha(b), "size": len(b)} for b in BLOBS],
    }
).encode()


# Another platform's layers, in the same export (a Docker 26 store exports every platform it holds).
OTHER = [gzip.compress(bytes([9]) * 7000 + bytes([i]), mtime=0) for i in range(2)]


def store_export(extra: Sequence[bytes] = ()) -> bytes:
    """A containerd store's export: gzip blobs, config and manifest blobs in lexical order."""
    blobs = sorted((f"blobs/sha256/{sha(b)[7:]}", b) for b in [*BLOBS, *extra, CONFIG, SOURCE_MANIFEST])
    manifest = [{"Config": f"blobs/sha256/{sha(CONFIG)[7:]}", "Layers": [f"blobs/sha256/{sha(b)[7:]}" for b in BLOBS]}]
    return make_tar([*blobs, ("manifest.json", json.dumps(manifest).encode())])


def rewrite(data: bytes, spec: StreamSpec, tmp_path: Path) -> tuple[dict[str, bytes], dict[str, Any], Rewriter]:
    rw = Rewriter(iter([data]), spec, spool_dir=tmp_path)
    out = b"".join(bytes(c) for c in rw.stream())
    files = tar_files(out)
    index = json.loads(files["index.json"])
    return files, json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]]), rw


def test_left_out_layers_named_by_the_source_descriptor(tmp_path: Path) -> None:
    spec = StreamSpec(OutputFormat.OCI, frozenset(DIFFS[:2]), {}, tuple(DIFFS), prefer_source=True)
    files, manifest, rw = rewrite(store_export(), spec, tmp_path)
    expected = [{"mediaType": GZ, "digest": sha(b), "size": len(b)} for b in BLOBS]
    assert manifest["layers"] == expected
    assert [n for n in files if n.startswith("blobs/")].count(f"blobs/sha256/{sha(BLOBS[2])[7:]}") == 1
    assert f"blobs/sha256/{sha(BLOBS[0])[7:]}" not in files
    assert rw.result.left_out == {DIFFS[0]: expected[0], DIFFS[1]: expected[1]}
    assert rw.result.sent == {DIFFS[2]: expected[2]}
    assert rw.result.source_layers == dict(zip(DIFFS, expected))


def test_a_known_holding_wins_over_the_source_descriptor(tmp_path: Path) -> None:
    held = {DIFFS[0]: uncompressed(DIFFS[0])}
    spec = StreamSpec(OutputFormat.OCI, frozenset(DIFFS[:2]), {}, tuple(DIFFS), left_out=held, prefer_source=True)
    _, manifest, _ = rewrite(store_export(), spec, tmp_path)
    # Uncompressed: the real size, not the probe's placeholder.
    assert manifest["layers"][0] == {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": DIFFS[0],
        "size": len(LAYERS[0]),
    }
    assert manifest["layers"][1]["digest"] == sha(BLOBS[1])


def test_without_prefer_source_left_out_layers_are_named_uncompressed(tmp_path: Path) -> None:
    spec = StreamSpec(OutputFormat.OCI, frozenset(DIFFS[:1]), {}, tuple(DIFFS))
    _, manifest, _ = rewrite(store_export(), spec, tmp_path)
    assert manifest["layers"][0]["digest"] == DIFFS[0]


def test_keep_drops_other_platforms_layers(tmp_path: Path) -> None:
    spec = StreamSpec(OutputFormat.OCI, frozenset(), {}, tuple(DIFFS), keep=frozenset(DIFFS))
    files, manifest, rw = rewrite(store_export(OTHER), spec, tmp_path)
    for blob in OTHER:
        assert f"blobs/sha256/{sha(blob)[7:]}" not in files
    assert rw.result.layers_sent == 3 and rw.result.layers_skipped == 0
    assert rw.result.bytes_sent == sum(len(b) for b in BLOBS)
    assert [lay["digest"] for lay in manifest["layers"]] == [sha(b) for b in BLOBS]


def image(name: str, n: int) -> ImageInfo:
    return ImageInfo(name, tuple(DIFFS[:n]))
