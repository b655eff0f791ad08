"""What lands is exactly the source's image (issue 7 items 1, 2, 4, 5; issue 11's no-history image).

Hostile sources are a fake engine (tests/harness/fake_engine.py) answering with what a real
engine said, except for one crafted thing; the destination is always a real engine. Each bad
case exits 1 with one line naming the source, tags nothing, loads no image and keeps its
memory flat."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import d2d_path
from tests.harness import fake_engine as fe
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_exists, image_layers, rootfs_tar, unique

from ..helpers import copy, random_file, saved_layers

pytestmark = pytest.mark.engines

KINDS = ["docker20", "docker26", "docker26c", "podman"]


def run_measured(*args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run docker-d2d; return its result and its peak RSS in bytes. Measured by GNU time, which
    forks it from a small process: a child forked straight from this (large, long-lived) pytest
    process would report pytest's own RSS at the fork as its peak (Linux keeps the pre-exec
    high-water mark)."""
    with tempfile.NamedTemporaryFile("r") as rss:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, d2d_path(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        peak_kb = int(rss.read().strip().splitlines()[-1])
    return proc, peak_kb * 1024


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("docker-d2d: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def all_images(engine: Engine) -> set[str]:
    return set(engine.docker("images", "-aq", "--no-trunc").stdout.decode().split())


def _app(builder: Builder) -> str:
    base = builder.base(unique("base") + ":1")
    app = unique("app") + ":1"
    builder.build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(300_000), "b": random_file(100_000)})
    return app


def _fake_source(
    tmp_path: Path, src: Engine, ref: str, craft: Callable[[bytes], Iterable[bytes] | bytes]
) -> fe.FakeEngine:
    images, version, info, archive = fe.mirror(src.socket, ref)
    crafted = craft(archive)
    body = [crafted] if isinstance(crafted, bytes) else crafted
    return fe.FakeEngine(tmp_path / "fake.sock", images, lambda names: body, version=version, info=info)


def _refused(fake: fe.FakeEngine, dst: Engine, ref: str, cause: str) -> int:
    before = all_images(dst)
    with fake:
        # The export is what the fake source crafts: its layers are not to be read from the store
        # of the engine it mirrors.
        proc, rss = run_measured("copy", "-q", "--layers-from", "export", "-s", fake.host, "-d", dst.host, ref)
    assert proc.returncode == 1, proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith(f"docker-d2d: source {fake.host}: "), line
    assert cause in line, line
    assert not image_exists(dst, ref)
    assert all_images(dst) == before, "nothing was loaded"
    assert "GET /images/get" in fake.requests
    print(f"peak RSS of docker-d2d: {rss >> 20} MB ({cause})")
    return rss


# --- item 1: a config altered on the way is refused, never loaded and tagged ----------------------


@pytest.mark.parametrize(
    ("source", "destination"),
    [("docker20", "docker26"), ("docker26", "docker20"), ("docker26", "podman"), ("docker20", "docker26c")],
)
def test_config_altered_on_the_way(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path, source: str, destination: str
) -> None:
    src, dst = engines[source], engines[destination]
    app = _app(builder)
    builder.place(src, app)
    fake = _fake_source(tmp_path, src, app, fe.flip_config)
    _refused(fake, dst, app, "does not match its digest")
    # The same copy from the real source works: the fake only changed that byte.
    assert copy(src, dst, app)["tagged"] == [app]


def test_layer_altered_on_the_way(engines: dict[str, Engine], builder: Builder, tmp_path: Path) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    app = _app(builder)
    builder.place(src, app)

    def flip_layer(archive: bytes) -> bytes:
        name, _ = fe.first_layer_offset(archive)
        return fe.replace_entry(archive, name, lambda b: b[:2000] + bytes([b[2000] ^ 1]) + b[2001:])

    _refused(_fake_source(tmp_path, src, app, flip_layer), dst, app, "altered on the way")


# --- items 4 and 5: bounds and malformed input ------------------------------------------------------

RSS_LIMIT = 200 << 20


@pytest.mark.parametrize(
    ("craft", "cause"),
    [
        (fe.endless_layer, "far more than the source's inspect promised"),
        (fe.huge_pax_header, "extended tar header"),
        (fe.huge_metadata, "metadata beyond"),
        (fe.malformed_pax, "malformed PAX header"),
        (fe.malformed_manifest, "manifest.json is malformed"),
    ],
    ids=["endless-layer", "huge-pax-header", "huge-metadata", "malformed-pax", "malformed-manifest"],
)
def test_hostile_source(
    engines: dict[str, Engine],
    builder: Builder,
    tmp_path: Path,
    craft: Callable[[bytes], Iterable[bytes] | bytes],
    cause: str,
) -> None:
    src, dst = engines["docker26"], engines["docker26-twin"]
    app = _app(builder)
    builder.place(src, app)
    rss = _refused(_fake_source(tmp_path, src, app, craft), dst, app, cause)
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MB against an entry claiming 1 GB or more"


def test_layer_larger_than_promised_streams_no_end(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path
) -> None:
    """A plausible header (2 GiB: no 'endless' size) on a 300 kB layer, from a legacy source."""
    src, dst = engines["docker20"], engines["podman"]
    app = _app(builder)
    builder.place(src, app)
    fake = _fake_source(tmp_path, src, app, lambda a: fe.endless_layer(a, size=2 << 30))
    rss = _refused(fake, dst, app, "far more than the source's inspect promised")
    assert rss < RSS_LIMIT


def test_malformed_config(engines: dict[str, Engine], builder: Builder, tmp_path: Path) -> None:
    src, dst = engines["docker26"], engines["docker20"]
    app = _app(builder)
    builder.place(src, app)
    images, version, info, archive = fe.mirror(src.socket, app)
    crafted, config_digest = fe.malformed_config(archive)
    images[0].inspect["Id"] = config_digest  # the source promises the malformed config
    fake = fe.FakeEngine(tmp_path / "fake.sock", images, lambda names: [crafted], version=version, info=info)
    _refused(fake, dst, app, "is malformed")


# --- item 2: links in a Docker < 25 export; an image that repeats a layer ---------------------------


def _assert_same(src: Engine, dst: Engine, ref: str) -> None:
    assert image_layers(dst, ref) == image_layers(src, ref)
    assert saved_layers(dst, ref) == len(image_layers(src, ref))


def _layer_bytes(engine: Engine, *refs: str) -> dict[str, int]:
    """diff id -> size of its layer file in the engine's export (what travels uncompressed)."""
    sizes: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(engine.docker("save", *refs).stdout)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for item in manifest:
            config = json.load(tar.extractfile(item["Config"]))  # type: ignore[arg-type]
            for path, diff in zip(item["Layers"], config["rootfs"]["diff_ids"]):
                member = tar.getmember(path)
                while member.issym() or member.islnk():
                    target = member.linkname
                    if member.issym():
                        target = os.path.normpath(os.path.join(os.path.dirname(member.name), target))
                    member = tar.getmember(target)
                sizes[diff] = member.size
    return sizes


@pytest.mark.parametrize("destination", KINDS)
def test_docker20_image_with_its_base_in_one_run(
    engines: dict[str, Engine], builder: Builder, destination: str
) -> None:
    src, dst = engines["docker20"], engines[destination if destination != "docker20" else "docker20-twin"]
    base = builder.base(unique("base") + ":1", size=200_000)
    app = unique("app") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(300_000)})
    builder.place(src, base, app)
    with tarfile.open(fileobj=io.BytesIO(src.docker("save", app, base).stdout)) as tar:
        assert any(m.issym() for m in tar.getmembers()), "test setup: Docker 20.10 writes the shared layer as a link"

    result = copy(src, dst, app, base)

    assert sorted(result["tagged"]) == sorted([app, base])
    # Each layer once, as the layer lines show them: Podman loads one image per archive, and the
    # app's batch leaves out the base layer its first load sent (sent, not "already there").
    assert result["layers_sent"] == 2
    assert result["layers_skipped"] == 0
    assert result["transfers"] == (2 if destination == "podman" else 1)
    assert result["bytes_sent"] == sum(_layer_bytes(src, app).values())
    _assert_same(src, dst, app)
    _assert_same(src, dst, base)


# Every source format (Docker 20.10 writes the repeat as a link to the first, Docker 26 as one
# OCI blob, the containerd store as one compressed blob, Podman as one docker-archive tar) and
# every destination kind (legacy into Docker 20.10 and into 26, OCI into the containerd store,
# Podman's one image per archive) at least once; the legacy links into both OCI families, where
# a repeat must be named twice by one blob. Not all twelve ordered pairs: the rest crossed the
# same reader with the same writer again.
REPEAT_PAIRS = [
    ("docker20", "docker26c"),
    ("docker20", "podman"),
    ("docker26", "docker20"),
    ("docker26c", "docker26"),
    ("podman", "docker26c"),
]


@pytest.mark.parametrize(("source", "destination"), REPEAT_PAIRS)
def test_image_that_repeats_a_layer(
    engines: dict[str, Engine], builder: Builder, source: str, destination: str
) -> None:
    src, dst = engines[source], engines[destination]
    base = builder.base(unique("base") + ":1")
    app = unique("repeat") + ":1"
    builder.build(
        app, base, ["COPY a /a", "COPY b /b", "COPY a /a"], {"a": random_file(200_000), "b": random_file(1000)}
    )
    layers = image_layers(builder.engine, app)
    assert layers[1] == layers[3], "test setup: the same diff id twice"
    builder.place(src, app)

    result = copy(src, dst, app)

    assert result["tagged"] == [app]
    assert result["layers_sent"] == 3, "the repeated layer travels once"
    assert result["bytes_sent"] == sum(_layer_bytes(src, app).values())
    _assert_same(src, dst, app)


# --- issue 11: an image whose config has no history ---------------------------------------------------


def no_history_archive(tag: str) -> tuple[bytes, str]:
    """A docker-archive made by hand, whose config has neither history nor created: loads into
    every engine. Returns it and the image's config digest."""
    layers = [rootfs_tar({"hello": random_file(100_000)}), rootfs_tar({"etc/motd": b"no history\n"})]
    diffs = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": diffs},
        }
    ).encode()
    digest = hashlib.sha256(config).hexdigest()
    entries = [(f"{d[7:]}/layer.tar", b) for d, b in zip(diffs, layers)]
    entries += [(f"{digest}.json", config)]
    manifest = [{"Config": f"{digest}.json", "RepoTags": [tag], "Layers": [f"{d[7:]}/layer.tar" for d in diffs]}]
    entries += [("manifest.json", json.dumps(manifest).encode())]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), "sha256:" + digest


@pytest.mark.parametrize(
    ("source", "destination"),
    [("docker20", "podman"), ("docker26", "docker26c"), ("docker26c", "docker20"), ("podman", "docker26")],
)
def test_image_without_history(engines: dict[str, Engine], source: str, destination: str) -> None:
    src, dst = engines[source], engines[destination]
    tag = unique("nohist") + ":1"
    archive, _ = no_history_archive(tag)
    src.docker("load", input=archive)
    ref = tag
    history = json.loads(src.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).stdout)
    assert len(history) == 2

    proc = subprocess.run(
        [d2d_path(), "copy", "-s", src.host, "-d", dst.host, "--dry-run", ref], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    result = copy(src, dst, ref)

    assert result["layers_sent"] == 2
    _assert_same(src, dst, ref)


def test_fake_engine_answers_like_an_engine(engines: dict[str, Engine], builder: Builder, tmp_path: Path) -> None:
    """The fake serves a real engine's export unchanged: the copy from it succeeds (so the
    refusals above come from the crafted byte, not from the fake)."""
    src, dst = engines["docker26"], engines["docker20"]
    app = _app(builder)
    builder.place(src, app)
    with _fake_source(tmp_path, src, app, lambda a: a) as fake:
        result: dict[str, Any] = copy_from(fake, dst, app)
    assert result["tagged"] == [app]
    _assert_same(src, dst, app)


def copy_from(fake: fe.FakeEngine, dst: Engine, ref: str) -> dict[str, Any]:
    proc = subprocess.run(
        [d2d_path(), "copy", "--layers-from", "export", "-s", fake.host, "-d", dst.host, "--json", ref],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return next(e for e in map(json.loads, proc.stdout.splitlines()) if e["event"] == "result")
