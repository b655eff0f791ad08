"""Checkpointed rewrites: a series of archives, each ending with partial images that hold every layer it carried, whatever order the export brings the layers in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docker_d2d.formats.checkpoint import PARTIAL_LABEL, partial_config
from docker_d2d.formats.entries import Cut
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from tests.harness.tars import chunks, make_tar, sha
from tests.harness.tars import files as tar_files

LAYERS = [bytes([i + 1]) * (1000 * (i + 1)) for i in range(5)]


DIFFS = [sha(b) for b in LAYERS]


CONFIG = json.dumps({"rootfs": {"type": "layers", "diff_ids": DIFFS}, "architecture": "amd64", "os": "linux"}).encode()


IMAGE = sha(CONFIG)


PLATFORM = {"architecture": "amd64", "os": "linux"}


def export(order: list[int]) -> bytes:
    """An OCI-layout export (Docker >= 25) with the layer blobs in the given order."""
    blobs = [(f"blobs/sha256/{DIFFS[i][7:]}", LAYERS[i]) for i in order]
    manifest = [{"Config": f"blobs/sha256/{IMAGE[7:]}", "Layers": [f"blobs/sha256/{d[7:]}" for d in DIFFS]}]
    return make_tar([*blobs, (f"blobs/sha256/{IMAGE[7:]}", CONFIG), ("manifest.json", json.dumps(manifest).encode())])


def spec(output: OutputFormat, skip: frozenset[str] = frozenset(), checkpoint: int | None = 1) -> StreamSpec:
    return StreamSpec(
        output,
        skip,
        {f"blobs/sha256/{d[7:]}": d for d in DIFFS},
        image_ids=frozenset({IMAGE}),
        checkpoint=checkpoint,
        chains={IMAGE: tuple(DIFFS)},
        platform=PLATFORM,
    )


def archives(data: bytes, s: StreamSpec, tmp_path: Path) -> tuple[list[tuple[dict[str, bytes], Cut | None]], Rewriter]:
    rw = Rewriter(chunks(data), s, spool_dir=tmp_path)
    out: list[tuple[dict[str, bytes], Cut | None]] = []
    for archive in rw.archives():
        body = b"".join(bytes(c) for c in archive)
        out.append((tar_files(body), archive.cut))
    return out, rw


def legacy_layers(files: dict[str, bytes]) -> list[list[str]]:
    """Per image in manifest.json: the diff ids of the layer files this archive carries."""
    return [[sha(files[p]) for p in item["Layers"] if p in files] for item in json.loads(files["manifest.json"])]


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [3, 4, 1, 0, 2]])
def test_every_archive_ends_with_partial_images_holding_what_it_carried(order: list[int], tmp_path: Path) -> None:
    out, rw = archives(export(order), spec(OutputFormat.LEGACY), tmp_path)
    sent: list[str] = []
    for files, cut in out[:-1]:
        assert cut is not None
        manifest = json.loads(files["manifest.json"])
        carried = {sha(data) for name, data in files.items() if name.endswith("/layer.tar")}
        assert carried, "an archive that ends at a checkpoint carries a layer"
        for item, image in zip(manifest, cut.images):
            config = json.loads(files[item["Config"]])
            n = len(config["rootfs"]["diff_ids"])
            assert config["rootfs"]["diff_ids"] == DIFFS[:n], "a partial image is a prefix of the chain"
            assert config["config"]["Labels"] == {PARTIAL_LABEL: IMAGE}
            assert image.diff_ids == tuple(DIFFS[:n])
            # Every layer below it is carried here or was in an earlier archive.
            assert set(DIFFS[:n]) <= carried | set(sent)
        sent += sorted(carried)
    files, cut = out[-1]
    assert cut is None and rw.result.images[0].config_digest == IMAGE
    final = {sha(d) for n, d in files.items() if n.endswith("/layer.tar")}
    assert set(sent) | final == set(DIFFS) and not set(sent) & final, "each layer goes once"
    # A checkpoint after each layer (checkpoint = 1 byte) but the last, which goes with the image.
    assert len(out) == 5


def test_layers_out_of_order_are_held_back_in_the_spool(tmp_path: Path) -> None:
    _, rw = archives(export([4, 3, 2, 1, 0]), spec(OutputFormat.LEGACY), tmp_path)
    assert rw.result.spooled_bytes == sum(len(b) for b in LAYERS[1:]), "all but the lowest waited"
    _, in_order = archives(export([0, 1, 2, 3, 4]), spec(OutputFormat.LEGACY), tmp_path)
    assert in_order.result.spooled_bytes == 0
    assert list(tmp_path.iterdir()) == []


def test_held_layers_count_and_partials_start_above_them(tmp_path: Path) -> None:
    """The destination holds the two lowest layers: partial images name them, nothing sends them."""
    out, rw = archives(export([2, 0, 4, 1, 3]), spec(OutputFormat.LEGACY, frozenset(DIFFS[:2])), tmp_path)
    cuts = [cut for _, cut in out if cut is not None]
    assert [len(c.images[0].diff_ids) for c in cuts] == [3, 4]
    assert rw.result.layers_sent == 3 and rw.result.layers_skipped == 2


def test_oci_partials_name_held_layers_only_once_their_size_is_known(tmp_path: Path) -> None:
    """An OCI manifest needs each layer's size: a held layer the export has not passed yet keeps
    the checkpoint back (the Podman case, where nothing else names it)."""
    out, _ = archives(export([1, 2, 0, 3, 4]), spec(OutputFormat.OCI, frozenset(DIFFS[:1])), tmp_path)
    cuts = [cut for _, cut in out if cut is not None]
    assert [len(c.images[0].diff_ids) for c in cuts] == [3, 4]
    files, _ = out[0]
    index = json.loads(files["index.json"])
    manifest = json.loads(files[f"blobs/sha256/{index['manifests'][0]['digest'][7:]}"])
    assert [d["size"] for d in manifest["layers"]] == [len(b) for b in LAYERS[:3]]


def test_without_checkpoint_one_archive(tmp_path: Path) -> None:
    out, _ = archives(export([4, 3, 2, 1, 0]), spec(OutputFormat.LEGACY, checkpoint=None), tmp_path)
    assert len(out) == 1 and out[0][1] is None
    assert len(legacy_layers(out[0][0])[0]) == 5


def test_a_large_checkpoint_cuts_seldom(tmp_path: Path) -> None:
    out, _ = archives(export([0, 1, 2, 3, 4]), spec(OutputFormat.LEGACY, checkpoint=6000), tmp_path)
    assert [len(c.images[0].diff_ids) for _, c in out if c is not None] == [3]


def test_partial_config_is_deterministic() -> None:
    a = partial_config(IMAGE, tuple(DIFFS[:2]), PLATFORM)
    assert a == partial_config(IMAGE, tuple(DIFFS[:2]), PLATFORM)
    assert json.loads(a)["rootfs"]["diff_ids"] == DIFFS[:2]
