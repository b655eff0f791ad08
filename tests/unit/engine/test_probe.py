"""Probes of a containerd store: probe archives, the probe search, the sizes of held blobs."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from docker_d2d.engine import probe
from docker_d2d.errors import EngineError
from docker_d2d.formats.oci import uncompressed
from docker_d2d.model import ImageInfo, Platform
from tests.harness.tars import files as tar_files
from tests.harness.tars import make_tar, sha

LAYERS = [bytes([i + 1]) * (5000 * (i + 1)) for i in range(3)]


DIFFS = [sha(b) for b in LAYERS]


BLOBS = [gzip.compress(b, mtime=0) for b in LAYERS]


GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": DIFFS}}).encode()


def test_probe_archive_is_a_config_and_a_manifest() -> None:
    layers = [uncompressed(DIFFS[0]), {"mediaType": GZ, "digest": sha(BLOBS[1]), "size": len(BLOBS[1])}]
    data, digest = probe.probe_archive(Platform("linux", "arm64"), DIFFS[:2], layers)
    files = tar_files(data)
    assert set(files) == {"oci-layout", "index.json", f"blobs/sha256/{digest[7:]}", *_config_name(files, digest)}
    manifest = json.loads(files[f"blobs/sha256/{digest[7:]}"])
    assert manifest["layers"] == layers
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"][7:]])
    assert config["rootfs"]["diff_ids"] == DIFFS[:2] and config["architecture"] == "arm64"
    assert json.loads(files["index.json"])["manifests"][0]["digest"] == digest
    assert probe.probe_archive(Platform("linux", "arm64"), DIFFS[:2], layers)[1] != digest, "each probe is new"


def _config_name(files: dict[str, bytes], digest: str) -> list[str]:
    return ["blobs/sha256/" + json.loads(files[f"blobs/sha256/{digest[7:]}"])["config"]["digest"][7:]]


class FakeStore:
    """Holds blobs by digest; a probe is complete when every named blob is there."""

    def __init__(self, held: set[str]) -> None:
        self.held = held
        self.probes: list[list[str]] = []

    def holds(self, dst: object, diff_ids: Sequence[str], layers: Sequence[dict[str, Any]]) -> bool:
        self.probes.append([d["digest"] for d in layers])
        return all(d["digest"] in self.held for d in layers)


def candidates() -> dict[str, list[dict[str, Any]]]:
    return {d: [uncompressed(d), {"mediaType": GZ, "digest": sha(b), "size": len(b)}] for d, b in zip(DIFFS, BLOBS)}


def test_held_as_one_probe_when_the_first_candidates_are_right(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore(set(DIFFS))
    monkeypatch.setattr(probe, "holds", store.holds)
    found = probe.held_as(object(), DIFFS, candidates())  # type: ignore[arg-type]
    assert {d: f["digest"] for d, f in found.items()} == {d: d for d in DIFFS}
    assert len(store.probes) == 1


def test_held_as_finds_each_layers_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore({DIFFS[0], sha(BLOBS[1]), DIFFS[2]})
    monkeypatch.setattr(probe, "holds", store.holds)
    found = probe.held_as(object(), DIFFS, candidates())  # type: ignore[arg-type]
    assert [found[d]["digest"] for d in DIFFS] == [DIFFS[0], sha(BLOBS[1]), DIFFS[2]]


def test_held_as_stops_at_a_layer_held_under_no_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore({DIFFS[0], DIFFS[2]})  # the middle layer under a digest nobody can name
    monkeypatch.setattr(probe, "holds", store.holds)
    found = probe.held_as(object(), DIFFS, candidates())  # type: ignore[arg-type]
    assert list(found) == [DIFFS[0]]


class ExportingStore:
    """Answers `save` with a canned export per image id; counts the bytes its caller read."""

    def __init__(self, exports: dict[str, bytes], broken: Sequence[str] = ()) -> None:
        self.exports, self.broken = exports, set(broken)
        self.read = 0
        self.saved: list[str] = []

    @contextmanager
    def save(self, names: Sequence[str]) -> Iterator[Iterator[bytes]]:
        (name,) = names
        self.saved.append(name)

        def body() -> Iterator[bytes]:
            data = self.exports[name]
            for i in range(0, len(data), 4096):
                if name in self.broken:
                    raise EngineError("the export stopped mid-stream")
                self.read += len(data[i : i + 4096])
                yield data[i : i + 4096]

        yield body()


def plain_export() -> bytes:
    """A store's export of an image it holds uncompressed (loaded from a tar): blobs in lexical order."""
    manifest = json.dumps(
        {
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": len(b)}
                for d, b in zip(DIFFS, LAYERS)
            ]
        }
    ).encode()
    blobs = sorted((f"blobs/sha256/{sha(b)[7:]}", b) for b in [*LAYERS, CONFIG, manifest])
    return make_tar([*blobs, ("index.json", b"{}")])


def image(name: str, n: int) -> ImageInfo:
    return ImageInfo(name, tuple(DIFFS[:n]))


def test_held_sizes_from_the_stores_own_export() -> None:
    store = ExportingStore({"big": plain_export(), "small": plain_export()})
    sizes = probe.held_sizes(store, [image("big", 3), image("small", 2)], DIFFS[:2])  # type: ignore[arg-type]
    assert sizes == {DIFFS[0]: len(LAYERS[0]), DIFFS[1]: len(LAYERS[1])}
    assert store.saved == ["small"]  # the smallest image holding them
    assert store.read < len(plain_export())  # read up to what tells, not to the end


def test_held_sizes_from_a_manifest_when_it_comes_first() -> None:
    """The manifest names the layer before its blob comes: its descriptor tells the size."""
    digest = DIFFS[2]
    manifest = json.dumps({"layers": [{"digest": digest, "size": len(LAYERS[2])}]}).encode()
    export = make_tar([("blobs/sha256/" + "0" * 64, manifest), (f"blobs/sha256/{digest[7:]}", b"")])
    store = ExportingStore({"img": export})
    assert probe.held_sizes(store, [image("img", 3)], [digest]) == {digest: len(LAYERS[2])}  # type: ignore[arg-type]


def test_held_sizes_tries_the_next_image_when_an_export_breaks() -> None:
    store = ExportingStore({"a": plain_export(), "b": plain_export()}, broken=["a"])
    sizes = probe.held_sizes(store, [image("a", 3), image("b", 3)], [DIFFS[2]])  # type: ignore[arg-type]
    assert sizes == {DIFFS[2]: len(LAYERS[2])} and store.saved == ["a", "b"]


def test_held_sizes_leaves_out_what_no_image_holds() -> None:
    store = ExportingStore({"a": plain_export()})
    assert probe.held_sizes(store, [image("a", 2)], [DIFFS[2]]) == {}  # type: ignore[arg-type]
    assert store.saved == []  # no image holds it: nothing exported
