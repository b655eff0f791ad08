"""The archive rewrite on synthetic exports in each engine's format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docker_d2d.errors import ArchiveError
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.formats.tarstream import ChunkReader, file_entry, read_entries
from tests.harness.tars import chunks, files, legacy, oci, sha

LAYERS = [bytes([i]) * (3000 * (i + 1)) for i in range(3)]
DIFFS = [sha(b) for b in LAYERS]
CONFIG = json.dumps({"rootfs": {"type": "layers", "diff_ids": DIFFS}, "architecture": "amd64"}).encode()


def legacy_export() -> tuple[bytes, dict[str, str]]:
    return legacy(LAYERS, CONFIG)


def oci_export(compress: bool = False) -> bytes:
    return oci(LAYERS, CONFIG, gz=compress)


def run(data: bytes, spec: StreamSpec, tmp_path: Path) -> tuple[dict[str, bytes], Rewriter]:
    rw = Rewriter(chunks(data), spec, spool_dir=tmp_path)
    out = b"".join(bytes(c) for c in rw.stream())
    return files(out), rw


def test_legacy_to_legacy_drops_present_layers_without_spooling(tmp_path: Path) -> None:
    data, named = legacy_export()
    spec = StreamSpec(OutputFormat.LEGACY, frozenset(DIFFS[:2]), named, (DIFFS[2],))
    files, rw = run(data, spec, tmp_path)
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] is None
    sent = [p for p in manifest[0]["Layers"] if p in files]
    assert [files[p] for p in sent] == [LAYERS[2]]
    assert rw.result.layers_sent == 1 and rw.result.layers_skipped == 2 and rw.result.spooled_bytes == 0
    assert rw.result.images[0].config_digest == sha(CONFIG)


def test_legacy_to_oci_names_blobs_by_digest(tmp_path: Path) -> None:
    data, named = legacy_export()
    spec = StreamSpec(OutputFormat.OCI, frozenset([DIFFS[0]]), named, (DIFFS[2],))
    files, rw = run(data, spec, tmp_path)
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    assert [lay["digest"] for lay in manifest["layers"]] == DIFFS
    assert f"blobs/sha256/{DIFFS[0][7:]}" not in files
    for d, b in zip(DIFFS[1:], LAYERS[1:]):
        assert files[f"blobs/sha256/{d[7:]}"] == b
    assert rw.result.images[0].manifest_digest == index["manifests"][0]["digest"]


def test_unpredictable_layer_that_may_be_skipped_is_spooled_and_identified(tmp_path: Path) -> None:
    data, _ = legacy_export()
    # Nothing is named: every layer must be identified by its content.
    spec = StreamSpec(OutputFormat.LEGACY, frozenset([DIFFS[1]]), {}, tuple(DIFFS))
    files, rw = run(data, spec, tmp_path)
    manifest = json.loads(files["manifest.json"])
    assert sorted(files[p] for p in manifest[0]["Layers"] if p in files) == sorted([LAYERS[0], LAYERS[2]])
    assert rw.result.spooled_bytes > 0 and rw.result.layers_skipped == 1
    assert list(tmp_path.iterdir()) == []


def test_compressed_blobs_keep_their_digest_and_media_type(tmp_path: Path) -> None:
    spec = StreamSpec(OutputFormat.OCI, frozenset([DIFFS[0]]), {}, tuple(DIFFS))
    files, rw = run(oci_export(compress=True), spec, tmp_path)
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
    # The left-out layer is named by its uncompressed digest; sent ones keep the source's gzip blob.
    assert manifest["layers"][0] == {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": DIFFS[0],
        "size": len(LAYERS[0]),
    }
    assert all(lay["mediaType"].endswith("+gzip") for lay in manifest["layers"][1:])
    assert rw.result.images[0].diff_ids == tuple(DIFFS)


def test_oci_source_with_nothing_to_skip_streams_everything(tmp_path: Path) -> None:
    named = {f"blobs/sha256/{d[7:]}": d for d in DIFFS}
    files, rw = run(oci_export(), StreamSpec(OutputFormat.LEGACY, frozenset(), named), tmp_path)
    assert rw.result.layers_sent == 3 and rw.result.spooled_bytes == 0


def test_truncated_export_is_an_error(tmp_path: Path) -> None:
    data, named = legacy_export()
    rw = Rewriter(
        chunks(data[: len(data) // 2]), StreamSpec(OutputFormat.LEGACY, frozenset(), named), spool_dir=tmp_path
    )
    with pytest.raises(ArchiveError, match="ended early"):
        for _ in rw.stream():
            pass


def test_layer_that_contradicts_the_config_is_an_error(tmp_path: Path) -> None:
    data, named = legacy_export()
    wrong = {k: DIFFS[2] for k in named}
    with pytest.raises(ArchiveError, match="its config says"):
        run(data, StreamSpec(OutputFormat.LEGACY, frozenset(), wrong), tmp_path)


def test_tar_reader_handles_long_names() -> None:
    name = "x/" * 80 + "file"
    data = b"".join(file_entry(name, b"hello")) + b"\0" * 1024
    reader = ChunkReader(iter([data]))
    entries = []
    for entry in read_entries(reader):
        entries.append((entry.name, reader.read_exact(entry.size)))
    assert entries == [(name, b"hello")]
