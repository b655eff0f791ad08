"""The rewrite of containerd-store exports in two shapes real stores make: zstd blobs, sent
decompressed to destinations that cannot take zstd; and layers the export leaves out
(non-distributable blobs), fine when the destination holds them, one clear error when not."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard

from docker_d2d.errors import ArchiveError
from docker_d2d.formats.entries import NoProgress
from docker_d2d.formats.oci import MT_LAYER
from docker_d2d.formats.readers import export as archive
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.formats.tarstream import file_entry
from tests.harness.tars import chunks, sha
from tests.harness.tars import files as tar_files

ZSTD = MT_LAYER + "+zstd"
GZIP = MT_LAYER + "+gzip"
NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def layer_tar(seed: int, size: int) -> bytes:
    """A real tar (what a layer is), partly random so that it does not compress to nothing."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = os.urandom(size // 2) + bytes([seed]) * (size - size // 2)
        info = tarfile.TarInfo(f"file{seed}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


LAYERS = [layer_tar(i, 20_000 * (i + 1)) for i in range(3)]
DIFFS = [sha(b) for b in LAYERS]
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": DIFFS}}).encode()


def compress(layer: bytes, media_type: str) -> bytes:
    if media_type == ZSTD:
        return zstandard.ZstdCompressor(level=3).compress(layer)
    if media_type == MT_LAYER:
        return layer
    return gzip.compress(layer, mtime=0)


def store_export(media_types: Sequence[str], omit: Sequence[int] = ()) -> tuple[bytes, list[bytes]]:
    """A containerd store's export of one image (blobs, config and manifest in lexical order, then
    manifest.json), its layers stored as `media_types` say; the blobs of layers `omit` left out, as
    the store's export leaves out non-distributable ones. Returns it and the layer blobs."""
    blobs = [compress(layer, mt) for layer, mt in zip(LAYERS, media_types)]
    config_b = CONFIG
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(config_b),
                "size": len(config_b),
            },
            "layers": [{"mediaType": mt, "digest": sha(b), "size": len(b)} for mt, b in zip(media_types, blobs)],
        }
    ).encode()
    present = [b for i, b in enumerate(blobs) if i not in omit]
    entries = sorted((f"blobs/sha256/{sha(b)[7:]}", b) for b in [*present, config_b, manifest])
    legacy = [{"Config": f"blobs/sha256/{sha(config_b)[7:]}", "Layers": [f"blobs/sha256/{sha(b)[7:]}" for b in blobs]}]
    entries.append(("manifest.json", json.dumps(legacy).encode()))
    out = b"".join(part for name, data in entries for part in file_entry(name, data))
    return out + b"\0" * 1024, blobs


def rewrite(
    data: bytes, spec: StreamSpec, tmp_path: Path, chunk: int = 65536
) -> tuple[dict[str, bytes], list[dict[str, Any]] | list[str], Rewriter]:
    """The output's files, and its manifest's layers (OCI descriptors, or legacy paths)."""
    rw = Rewriter(chunks(data, chunk), spec, spool_dir=tmp_path)
    out = b"".join(bytes(c) for c in rw.stream())
    files = tar_files(out)
    if spec.output is OutputFormat.LEGACY:
        return files, json.loads(files["manifest.json"])[0]["Layers"], rw
    index = json.loads(files["index.json"])
    return files, json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])["layers"], rw


def spec(output: OutputFormat, skip: Sequence[str] = (), **kw: Any) -> StreamSpec:
    return StreamSpec(output, frozenset(skip), {}, tuple(DIFFS), **kw)


# --- zstd blobs for destinations that cannot take them ---------------------------------------------

# Blobs up to this size are read into memory as metadata: configs and manifests are, layers not.
METADATA = 4096

# How each blob reaches the reader: passed straight through (larger than a metadata blob, nothing
# to decide), spooled first (a layer still to come may be left out), read into memory (small blobs).
PATHS = {
    "streamed": (METADATA, ()),
    "spooled": (METADATA, (0,)),
    "in memory": (archive.SMALL_BLOB, ()),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("output", [OutputFormat.OCI, OutputFormat.LEGACY])
def test_zstd_layers_go_out_as_plain_tars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, output: OutputFormat
) -> None:
    small_blob, skipped = PATHS[path]
    monkeypatch.setattr(archive, "SMALL_BLOB", small_blob)
    data, _ = store_export([ZSTD, ZSTD, ZSTD])
    skip = [DIFFS[i] for i in skipped]
    files, layers, rw = rewrite(data, spec(output, skip, decompress_zstd=True), tmp_path)
    sent = [i for i in range(3) if i not in skipped]
    for i in sent:
        name = f"blobs/sha256/{DIFFS[i][7:]}" if output is OutputFormat.OCI else f"{DIFFS[i][7:]}/layer.tar"
        assert files[name] == LAYERS[i]  # the tar itself: its size in the header, its digest the diff id
    if output is OutputFormat.OCI:
        assert layers[1:] == [{"mediaType": MT_LAYER, "digest": DIFFS[i], "size": len(LAYERS[i])} for i in (1, 2)]
        assert rw.result.sent == {
            DIFFS[i]: {"mediaType": MT_LAYER, "digest": DIFFS[i], "size": len(LAYERS[i])} for i in sent
        }
    else:
        assert layers == [f"{d[7:]}/layer.tar" for d in DIFFS]
    assert not any(f.startswith(b"\x28\xb5\x2f\xfd") for f in files.values())
    assert rw.result.layers_sent == len(sent) and rw.result.layers_skipped == len(skipped)
    # What went out is the uncompressed tars: that is what the byte count says.
    assert rw.result.bytes_sent == sum(len(LAYERS[i]) for i in sent)
    assert rw.result.images[0].diff_ids == tuple(DIFFS)
    assert list(tmp_path.iterdir()) == []  # the spools are gone


def test_zstd_blob_in_one_byte_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compression is told from a blob's first four bytes, whatever chunks they come in."""
    monkeypatch.setattr(archive, "SMALL_BLOB", METADATA)
    data, _ = store_export([ZSTD, MT_LAYER, ZSTD])
    files, layers, rw = rewrite(data, spec(OutputFormat.OCI, decompress_zstd=True), tmp_path, chunk=1)
    assert [files[f"blobs/sha256/{d[7:]}"] for d in DIFFS] == LAYERS
    assert [lay["mediaType"] for lay in layers] == [MT_LAYER] * 3  # type: ignore[index]


def test_only_zstd_is_decompressed(tmp_path: Path) -> None:
    data, blobs = store_export([ZSTD, GZIP, MT_LAYER])
    files, layers, rw = rewrite(data, spec(OutputFormat.OCI, decompress_zstd=True), tmp_path)
    assert layers == [
        {"mediaType": MT_LAYER, "digest": DIFFS[0], "size": len(LAYERS[0])},
        {"mediaType": GZIP, "digest": sha(blobs[1]), "size": len(blobs[1])},
        {"mediaType": MT_LAYER, "digest": DIFFS[2], "size": len(LAYERS[2])},
    ]
    assert files[f"blobs/sha256/{sha(blobs[1])[7:]}"] == blobs[1]
    assert rw.result.bytes_sent == len(LAYERS[0]) + len(blobs[1]) + len(LAYERS[2])


@pytest.mark.parametrize("output", [OutputFormat.OCI, OutputFormat.LEGACY])
def test_zstd_layers_inflated_in_checkpointed_archives(tmp_path: Path, output: OutputFormat) -> None:
    """Resumable copies hold a layer back until the ones below it are out: it is inflated when it
    goes, and each archive ends with partial images naming what it carried."""
    data, _ = store_export([ZSTD, ZSTD, ZSTD])
    s = spec(output, decompress_zstd=True, checkpoint=1, chains={sha(CONFIG): tuple(DIFFS)}, platform={"os": "linux"})
    rw = Rewriter(chunks(data, 65536), s, spool_dir=tmp_path)
    carried: list[list[bytes]] = []
    for part in rw.archives():
        files = tar_files(b"".join(bytes(c) for c in part))
        assert not any(f.startswith(b"\x28\xb5\x2f\xfd") for f in files.values())
        carried.append([f for f in files.values() if sha(f) in DIFFS])
    assert len(carried) > 1 and rw.result.partials  # it did cut
    assert sorted(f for part in carried for f in part) == sorted(LAYERS)  # each layer once, the plain tar
    assert rw.result.bytes_sent == sum(len(b) for b in LAYERS) and list(tmp_path.iterdir()) == []


def test_zstd_blobs_pass_as_they_are_where_the_destination_takes_them(tmp_path: Path) -> None:
    data, blobs = store_export([ZSTD, ZSTD, ZSTD])
    files, layers, rw = rewrite(data, spec(OutputFormat.OCI), tmp_path)
    assert layers == [{"mediaType": ZSTD, "digest": sha(b), "size": len(b)} for b in blobs]
    assert rw.result.bytes_sent == sum(len(b) for b in blobs)


def test_a_zstd_bomb_is_stopped_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "SMALL_BLOB", METADATA)
    data, blobs = store_export([ZSTD, ZSTD, ZSTD])
    limit = max(len(b) for b in blobs) + 1  # every blob passes its header's check ...
    assert len(LAYERS[1]) > limit  # ... and inflates to more
    limits = {d: limit for d in DIFFS}
    with pytest.raises(ArchiveError, match=f"more than {limit} bytes uncompressed"):
        rewrite(data, spec(OutputFormat.OCI, decompress_zstd=True, limits=limits, max_layer=limit), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_altered_zstd_blob_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "SMALL_BLOB", METADATA)
    data, blobs = store_export([ZSTD, ZSTD, ZSTD])
    at = data.index(blobs[1]) + len(blobs[1]) // 2
    data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    with pytest.raises(ArchiveError, match=r"corrupt|does not match its digest"):
        rewrite(data, spec(OutputFormat.OCI, decompress_zstd=True), tmp_path)


# --- layers the export leaves out -------------------------------------------------------------


@pytest.mark.parametrize("media_type", [NONDIST, FOREIGN])
def test_a_left_out_layer_the_destination_holds_needs_no_file(tmp_path: Path, media_type: str) -> None:
    data, blobs = store_export([media_type, GZIP, GZIP], omit=[0])
    files, layers, rw = rewrite(data, spec(OutputFormat.OCI, [DIFFS[0]]), tmp_path)
    assert layers[0] == {"mediaType": MT_LAYER, "digest": DIFFS[0], "size": 0}  # named by its diff id
    assert rw.result.unsized == [DIFFS[0]]
    assert [lay["digest"] for lay in layers[1:]] == [sha(b) for b in blobs[1:]]
    assert rw.result.layers_sent == 2 and rw.result.layers_skipped == 1
    assert rw.result.bytes_sent == len(blobs[1]) + len(blobs[2])
    assert rw.result.images[0].diff_ids == tuple(DIFFS)


def test_a_left_out_layer_without_a_size_is_reported(tmp_path: Path) -> None:
    """Named by its diff id, a layer the export did not carry has no size the rewrite can know: it
    says so (a containerd store would not export an image naming it so), unless the spec tells it."""
    data, _ = store_export([NONDIST, GZIP, GZIP], omit=[0])
    placeholder = {DIFFS[0]: {"mediaType": MT_LAYER, "digest": DIFFS[0], "size": 0}}  # what a probe finds
    _, layers, rw = rewrite(data, spec(OutputFormat.OCI, [DIFFS[0]], left_out=placeholder), tmp_path)
    assert layers[0] == placeholder[DIFFS[0]] and rw.result.unsized == [DIFFS[0]]

    sized = {DIFFS[0]: {"mediaType": MT_LAYER, "digest": DIFFS[0], "size": len(LAYERS[0])}}
    _, layers, rw = rewrite(data, spec(OutputFormat.OCI, [DIFFS[0]], left_out=sized), tmp_path)
    assert layers[0] == sized[DIFFS[0]] and rw.result.unsized == []
    assert rw.result.left_out == sized


def test_a_left_out_layer_named_by_the_source_descriptor_has_its_size(tmp_path: Path) -> None:
    """A store that holds the source's own blob (both pulled it) knows it under that descriptor."""
    data, blobs = store_export([NONDIST, GZIP, GZIP], omit=[0])
    _, layers, rw = rewrite(data, spec(OutputFormat.OCI, [DIFFS[0]], prefer_source=True), tmp_path)
    assert layers[0] == {"mediaType": NONDIST, "digest": sha(blobs[0]), "size": len(blobs[0])}
    assert rw.result.unsized == []


def test_a_present_left_out_layer_is_never_unsized(tmp_path: Path) -> None:
    data, _ = store_export([GZIP, GZIP, GZIP])
    placeholder = {DIFFS[0]: {"mediaType": MT_LAYER, "digest": DIFFS[0], "size": 0}}
    _, layers, rw = rewrite(data, spec(OutputFormat.OCI, [DIFFS[0]], left_out=placeholder), tmp_path)
    assert layers[0]["size"] == len(LAYERS[0]) and rw.result.unsized == []  # type: ignore[index]


def test_a_left_out_layer_into_a_legacy_archive(tmp_path: Path) -> None:
    data, _ = store_export([NONDIST, GZIP, GZIP], omit=[0])
    files, layers, rw = rewrite(data, spec(OutputFormat.LEGACY, [DIFFS[0]]), tmp_path)
    assert layers[0] == f"{DIFFS[0][7:]}/layer.tar" and layers[0] not in files
    assert all(p in files for p in layers[1:])


def test_progress_counts_a_left_out_layer_as_there(tmp_path: Path) -> None:
    class Events(NoProgress):
        def __init__(self) -> None:
            self.skipped: list[tuple[str, int]] = []

        def layer_skipped(self, key: str, size: int) -> None:
            self.skipped.append((key, size))

    data, _ = store_export([NONDIST, GZIP, GZIP], omit=[0])
    events = Events()
    out = b"".join(bytes(c) for c in Rewriter(iter([data]), spec(OutputFormat.OCI, [DIFFS[0]]), events).stream())
    assert out and events.skipped == [(DIFFS[0], 0)]


@pytest.mark.parametrize("media_type", [NONDIST, FOREIGN])
def test_a_left_out_non_distributable_layer_the_destination_lacks_says_so(tmp_path: Path, media_type: str) -> None:
    data, _ = store_export([media_type, GZIP, GZIP], omit=[0])
    with pytest.raises(ArchiveError, match=f"leaves out layer {DIFFS[0][7:19]}.*non-distributable") as err:
        rewrite(data, spec(OutputFormat.OCI, [DIFFS[1]]), tmp_path)
    assert media_type in err.value.message and "holds it already" in err.value.message


def test_any_other_missing_layer_file_is_an_error(tmp_path: Path) -> None:
    data, blobs = store_export([GZIP, GZIP, GZIP], omit=[1])
    with pytest.raises(ArchiveError, match=f"the export lacks the layer file blobs/sha256/{sha(blobs[1])[7:]}"):
        rewrite(data, spec(OutputFormat.OCI, [DIFFS[0]]), tmp_path)
