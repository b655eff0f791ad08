"""Pure parts of the containerd-store work: how a thin manifest names left-out layers, the
platform filter of an export, probe archives and the probe search, platforms."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from docker_d2d import probe
from docker_d2d.errors import EngineError, UsageError
from docker_d2d.formats.oci import uncompressed
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.model import ImageInfo, Platform
from docker_d2d.registry_layers import split_repo_digest


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_tar(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


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
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
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


def test_probe_archive_is_a_config_and_a_manifest() -> None:
    layers = [uncompressed(DIFFS[0]), {"mediaType": GZ, "digest": sha(BLOBS[1]), "size": len(BLOBS[1])}]
    data, digest = probe.probe_archive(Platform("linux", "arm64"), DIFFS[:2], layers)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
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


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("Linux/ARM/v7", Platform("linux", "arm", "v7")),
    ],
)
def test_platform_parse(text: str, platform: Platform) -> None:
    assert Platform.parse(text) == platform
    assert str(platform) == text.lower()


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", "/amd64"])
def test_platform_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="os/arch"):
        Platform.parse(text)


def test_platform_matches_descriptors() -> None:
    arm64 = Platform("linux", "arm64")
    assert arm64.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert Platform("linux", "arm64", "v8").matches({"os": "linux", "architecture": "arm64"})
    assert not arm64.matches({"os": "linux", "architecture": "amd64"})
    assert not Platform("linux", "arm", "v7").matches({"os": "linux", "architecture": "arm", "variant": "v6"})


@pytest.mark.parametrize(
    ("repo_digest", "expected"),
    [
        ("127.0.0.1:5000/team/app@sha256:" + "a" * 64, ("127.0.0.1:5000", "team/app", "sha256:" + "a" * 64)),
        (
            "docker.io/library/debian@sha256:" + "b" * 64,
            ("registry-1.docker.io", "library/debian", "sha256:" + "b" * 64),
        ),
        ("debian@sha256:" + "c" * 64, ("registry-1.docker.io", "library/debian", "sha256:" + "c" * 64)),
        ("user/app@sha256:" + "d" * 64, ("registry-1.docker.io", "user/app", "sha256:" + "d" * 64)),
        ("localhost/app@sha256:" + "e" * 64, ("localhost", "app", "sha256:" + "e" * 64)),
        ("sha256:" + "f" * 64, None),
    ],
)
def test_split_repo_digest(repo_digest: str, expected: tuple[str, str, str] | None) -> None:
    assert split_repo_digest(repo_digest) == expected
