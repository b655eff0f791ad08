"""A copy's images read from a store (stores/reading.py) into the rewrite: the archive is the one the
export would have given, only the layers that travel are read (the others' files may be gone), a
byte changed behind the engine's back stops the archive before its last layer chunk and its index,
and images the store cannot give come from an export into the same archive."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from docker_d2d.formats.entries import Entry
from docker_d2d.formats.oci import MT_GZIP
from docker_d2d.formats.readers.export import ExportReader
from docker_d2d.formats.rewrite import Rewrite, Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.formats.stores.common import StoreMismatch
from docker_d2d.formats.stores.containerd import ContainerdStore
from docker_d2d.formats.stores.graphdriver import GraphdriverStore
from docker_d2d.formats.stores.reading import Wanted, entries, open_images, read_from
from tests.harness.fake_stores import content_image, overlay2_files, overlay2_image
from tests.harness.layer_trees import tricky_layers
from tests.harness.tars import chunks, config_for, files, oci, sha

LAYERS = tricky_layers()
DIFFS = [sha(b) for b in LAYERS]
CONFIG = config_for(DIFFS)


@pytest.fixture
def store(tmp_path: Path) -> GraphdriverStore:
    overlay2_image(tmp_path / "docker", LAYERS, CONFIG)
    return GraphdriverStore(str(tmp_path / "docker"), "overlay2")


def rewrite(source: Iterable[Entry] | Rewrite, spec: StreamSpec, tmp_path: Path) -> tuple[dict[str, bytes], Rewrite]:
    rw = source if isinstance(source, Rewrite) else Rewrite(source, spec, spool_dir=tmp_path)
    return files(b"".join(bytes(c) for c in rw.stream())), rw


def _manifest(out: dict[str, bytes]) -> dict[str, Any]:
    index = json.loads(out["index.json"])
    return dict(json.loads(out["blobs/sha256/" + index["manifests"][0]["digest"][7:]]))


def wanted(image_id: str = "", diffs: list[str] = DIFFS) -> Wanted:
    return Wanted(image_id or sha(CONFIG), tuple(diffs))


@pytest.mark.parametrize("output", [OutputFormat.LEGACY, OutputFormat.OCI])
def test_the_archive_is_the_exports_and_only_travelling_layers_are_read(
    store: GraphdriverStore, tmp_path: Path, output: OutputFormat
) -> None:
    skip = frozenset(DIFFS[:2])
    spec = StreamSpec(output, skip, {f"blobs/sha256/{d[7:]}": d for d in DIFFS}, image_ids=frozenset([sha(CONFIG)]))
    from_export, exported = rewrite(
        Rewriter(chunks(oci(LAYERS, CONFIG), 65536), spec, spool_dir=tmp_path), spec, tmp_path
    )
    for i in range(2):  # the layers the destination holds: their files may as well be gone
        shutil.rmtree(overlay2_files(tmp_path / "docker", DIFFS, i))
    opened, refused = open_images(store, [wanted()], skip)
    assert refused == [] and read_from(opened) == {d: "overlay2 layer store" for d in DIFFS[2:]}
    from_store, stored = rewrite(entries(opened), spec, tmp_path)
    assert from_store == from_export
    assert stored.result.images == exported.result.images
    assert (stored.result.layers_sent, stored.result.bytes_sent) == (
        exported.result.layers_sent,
        exported.result.bytes_sent,
    )
    assert stored.result.spooled_bytes == 0


def test_a_file_changed_behind_the_engines_back_never_completes_the_archive(
    store: GraphdriverStore, tmp_path: Path
) -> None:
    """The last chunk of the layer is held back until its digest is proven: what went out lacks it,
    its padding and the archive's manifest.json, so no engine loads it."""
    big = 0  # the layer with the 2.5 MiB file: several chunks
    path = next(p for p in overlay2_files(tmp_path / "docker", DIFFS, big).rglob("*") if p.stat().st_size > 1 << 20)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    spec = StreamSpec(OutputFormat.LEGACY, frozenset([DIFFS[1]]), {}, image_ids=frozenset([sha(CONFIG)]))
    opened, _ = open_images(store, [wanted()], spec.skip)
    out = bytearray()
    with pytest.raises(StoreMismatch, match="does not hash to"):
        for chunk in Rewrite(entries(opened), spec, spool_dir=tmp_path).stream():
            out += chunk
    assert bytes(data[-4096:]) not in out and b"manifest.json" not in out
    assert len(out) < len(LAYERS[big]) + 2048


def test_what_the_store_cannot_give_is_refused_with_the_reason(store: GraphdriverStore, tmp_path: Path) -> None:
    other = [*LAYERS[:2], LAYERS[3]]
    other_config = config_for([sha(b) for b in other])
    overlay2_image(tmp_path / "docker", other, other_config)
    (tmp_path / "docker/image/overlay2/imagedb/content/sha256" / sha(other_config)[7:]).write_bytes(b"{}")
    shutil.rmtree(overlay2_files(tmp_path / "docker", DIFFS, 5))
    wrong_diffs = Wanted(sha(CONFIG), tuple(DIFFS[:-1]))
    opened, refused = open_images(
        store, [wanted(), Wanted(sha(other_config), tuple(sha(b) for b in other)), wrong_diffs], frozenset()
    )
    assert opened == []
    assert refused[0].reason.startswith("the overlay2 directory of layer") and "does not exist" in refused[0].reason
    assert "changed behind the engine's back" in refused[1].reason
    assert "has 6 layers that are not the 5 the engine's inspect lists" in refused[2].reason
    # the layer is left out: nothing of it is looked at
    opened, refused = open_images(store, [wanted()], frozenset([DIFFS[5]]))
    assert refused == [] and len(opened) == 1


def test_a_refused_image_comes_from_the_export_into_the_same_archive(store: GraphdriverStore, tmp_path: Path) -> None:
    other = [LAYERS[0], bytes(1024) * 3]
    other_config = config_for([sha(b) for b in other])
    ids = [sha(CONFIG), sha(other_config)]
    spec = StreamSpec(OutputFormat.LEGACY, frozenset([DIFFS[0]]), {}, image_ids=frozenset(ids))
    opened, _ = open_images(store, [wanted()], spec.skip)
    export = ExportReader(chunks(oci(other, other_config), 4096), spec)
    out, rw = rewrite(entries(opened, export), spec, tmp_path)
    manifest = json.loads(out["manifest.json"])
    assert [m["Config"] for m in manifest] == [f"{i[7:]}.json" for i in ids]
    assert [w.config_digest for w in rw.result.images] == ids
    assert out[f"{sha(other[1])[7:]}/layer.tar"] == other[1]
    # the store's image: 5 distinct layers, 1 left out; the export's: 1 left out, 1 sent
    assert rw.result.layers_sent == 4 + 1 and rw.result.layers_skipped == 2


def test_a_content_store_names_its_blobs_up_front_and_sends_them_as_they_are(tmp_path: Path) -> None:
    """The manifest pairs each compressed blob with its diff id: nothing is spooled or inflated to
    learn which layer a blob is; the source's descriptors name the left-out layers."""
    content = tmp_path / "content"
    blobs = [(MT_GZIP, gzip.compress(b, mtime=0)) for b in LAYERS]
    manifest = content_image(content, blobs, CONFIG)
    store = ContainerdStore([str(content)])
    skip = frozenset(DIFFS[:4])
    spec = StreamSpec(OutputFormat.OCI, skip, {}, image_ids=frozenset([manifest]), prefer_source=True)
    (content / "blobs/sha256" / sha(blobs[0][1])[7:]).unlink()  # left out: never looked at
    opened, refused = open_images(store, [Wanted(manifest, tuple(DIFFS))], skip)
    assert refused == []
    out, rw = rewrite(entries(opened), spec, tmp_path)
    assert rw.result.spooled_bytes == 0 and rw.result.aliases[manifest] == sha(CONFIG)
    assert out[f"blobs/sha256/{sha(blobs[5][1])[7:]}"] == blobs[5][1]
    written = _manifest(out)
    assert [lay["digest"] for lay in written["layers"]] == [sha(b) for _, b in blobs]
    assert [lay["mediaType"] for lay in written["layers"]] == [MT_GZIP] * 6
