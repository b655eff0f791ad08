"""Copies that read the layers that travel straight from the source engine's storage (#18), against
the real engines: every store kind as a source, an update to a destination that holds the previous
version. The engine exports nothing (every request to it is counted by a proxy in front of its
socket), the bytes read and sent are exactly the layers the destination lacked, and the image
lands verified. Where the store cannot or must not be read, the export is used with one note (or
with --debug, one line saying why) and the image is just as right."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from docker_d2d.formats.stores.probe import probe
from tests.conftest import run_d2d
from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, image_layers, lacking_bytes, place_compressed, unique
from tests.harness.realistic import build_image
from tests.harness.rootless import RootlessPodman, rootless_podman

pytestmark = pytest.mark.engines

EXPORT = r"GET /v[\d.]+/images/(get|[^/]+/get)"
# Every store kind as a source, each into another kind of destination (every output format, the
# containerd store's repair from a containerd source among them).
PAIRS = [
    ("docker20", "podman5"),
    ("docker26", "docker28c"),
    ("docker28", "docker20"),
    ("docker26c", "docker28"),
    ("docker28c", "docker26c"),
    ("podman", "docker26"),
    ("podman5", "podman"),
]


@dataclass(frozen=True)
class Images:
    base: str
    v1: str
    v2: str


@pytest.fixture(scope="module")
def images(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """A realistic base, a first version on it and an update of 2 MB."""
    work = tmp_path_factory.mktemp("storeimages")
    name = unique("fromstore")
    made = Images(f"{name}-base:1", f"{name}:1", f"{name}:2")
    build_image(builder.engine, work, made.base, None, 6, 0)
    build_image(builder.engine, work, made.v1, made.base, 3, 6)
    # Its own bytes: windows of the walk over real files may repeat a layer (one diff id twice).
    builder.build(made.v2, made.v1, ["COPY u /u"], {"u": os.urandom(2 << 20)})
    return made


@pytest.fixture
def proxied() -> Iterator[list[DelayProxy]]:
    proxies: list[DelayProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.stop()


def counting(engine: Engine, proxies: list[DelayProxy]) -> DelayProxy:
    """A proxy in front of the engine's socket on loopback: it counts every request."""
    proxy = DelayProxy(str(engine.socket), delay=0).start()
    proxies.append(proxy)
    return proxy


def ref_at(engine: Engine, ref: str) -> str:
    return f"localhost/{ref}" if engine.spec.kind == "podman" and "/" not in ref else ref


def d2d(*args: str, user: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    proc = run_d2d(*args, "--json", "--debug", user=user)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return next(e for e in events if e["event"] == "result"), events, proc.stderr


def notes(events: list[dict[str, Any]]) -> list[str]:
    return [e["message"] for e in events if e["event"] == "note"]


def sent_layers(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["id"]: e["read_from"] for e in events if e["event"] == "layer" and e["status"] == "sent"}


def assert_landed(src: Engine, dst: Engine, ref: str) -> None:
    copied = ref_at(src, ref)  # the name it was copied by
    assert image_layers(dst, copied) == image_layers(src, copied)
    assert dst.docker("save", copied, check=False).returncode == 0  # complete: every blob there


def forget(images: Images, *engines: Engine) -> None:
    """The engines under test live for the whole session: the next test's destination must not hold
    what this one placed or copied."""
    for engine in engines:
        for ref in (images.v2, images.v1):
            for name in (ref, f"localhost/{ref}"):
                engine.docker("rmi", name, check=False)


def update_from_the_store(src: Engine, dst: Engine, images: Images, proxies: list[DelayProxy]) -> dict[str, Any]:
    """Copy the update from `src` (through a counting proxy) to `dst`, which holds the first version:
    only the missing layers, read from the store, no export."""
    expected = lacking_bytes(src, dst, ref_at(src, images.v2))
    proxy = counting(src, proxies)
    res, events, log = d2d("copy", "-s", proxy.host, "-d", dst.host, ref_at(src, images.v2))
    assert proxy.count(EXPORT) == 0, proxy.requests
    assert res["bytes_sent"] == expected and res["layers_sent"] == 1, res
    assert res["layers_read"] == {"store": 1, "agent-store": 0, "export": 0}, res
    assert set(sent_layers(events).values()) == {"store"}
    assert "reads layers from the" in log and ": read from store" in log, log
    said = notes(events)
    if src.spec.containerd_store and dst.spec.containerd_store and said:
        # The source holds the lower layers gzip-compressed (as pulled), the destination as plain
        # tars (as loaded): their tar sizes, which the store's manifest does not tell and which
        # are not inflated to learn, come from the destination itself (the containerd repair).
        assert said == [
            "read the size of 2 left-out layer(s) from the destination's own export: loading the image's "
            "manifest again with it"
        ]
        assert res["transfers"] == 2 and res["bytes_sent"] == expected
    else:
        assert said == []
    return res


@pytest.mark.parametrize(("src_name", "dst_name"), PAIRS)
def test_an_update_reads_only_the_missing_layer_from_the_store(
    engines: dict[str, Engine],
    builder: Builder,
    images: Images,
    proxied: list[DelayProxy],
    src_name: str,
    dst_name: str,
) -> None:
    src, dst = engines[src_name], engines[dst_name]
    if src_name == "docker28c":
        place_compressed(builder, src, images.v2)  # as a registry pull leaves it: gzip blobs
    else:
        builder.place(src, images.v2)
    builder.place(dst, images.v1)
    try:
        update_from_the_store(src, dst, images, proxied)
        assert_landed(src, dst, images.v2)
    finally:
        forget(images, dst, src)


@pytest.fixture(scope="module")
def rootless() -> Iterator[RootlessPodman]:
    base = Path(tempfile.mkdtemp(prefix="d2d-src-rl", dir="/var/tmp"))
    base.chmod(0o755)
    engine = rootless_podman(base / "podman")
    try:
        engine.start()
        yield engine
    finally:
        try:
            engine.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_an_update_from_a_rootless_podman_store(
    engines: dict[str, Engine], builder: Builder, images: Images, rootless: RootlessPodman, proxied: list[DelayProxy]
) -> None:
    """Root reads a rootless user's store like any other (its path from /libpod/info)."""
    dst = engines["docker26"]
    builder.place(rootless, images.v2)
    builder.place(dst, images.v1)
    try:
        update_from_the_store(rootless, dst, images, proxied)
        assert_landed(rootless, dst, images.v2)
    finally:
        forget(images, dst, rootless)


def test_layers_from_export_exports(
    engines: dict[str, Engine], builder: Builder, images: Images, proxied: list[DelayProxy]
) -> None:
    src, dst = engines["docker26"], engines["docker20"]
    builder.place(src, images.v2)
    builder.place(dst, images.v1)
    proxy = counting(src, proxied)
    try:
        res, events, log = d2d("copy", "-s", proxy.host, "-d", dst.host, images.v2, "--layers-from", "export")
        assert proxy.count(EXPORT) == 1
        assert res["layers_read"] == {"store": 0, "agent-store": 0, "export": 1}
        assert "layers from its export (--layers-from export)" in log
        assert_landed(src, dst, images.v2)
    finally:
        forget(images, dst, src)


# --- the fallbacks: each with its note (or debug line), each with a correct image ------------------


def largest_file(engine: Engine, ref: str) -> Path:
    """The biggest regular file of the top layer of `ref` in the engine's store."""
    info = json.loads(run(engine, "image", "inspect", ref))[0]
    store = probe(*engine_info(engine)).store
    assert store is not None
    stored = store.image(info["Id"])
    diff = Path(stored.layer(len(stored.diff_ids) - 1).location)
    files = [p for p in diff.rglob("*") if p.is_file() and not p.is_symlink()]
    return max(files, key=lambda p: p.stat().st_size)


def run(engine: Engine, *args: str) -> str:
    return engine.docker(*args).stdout.decode()


def engine_info(engine: Engine) -> tuple[dict[str, Any], dict[str, Any] | None]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(engine.socket)), base_url="http://engine") as c:
        info = c.get("/info").json()
        libpod = c.get("/v4.0.0/libpod/info").json() if engine.spec.kind == "podman" else None
    return info, libpod


def untagged(engine: Engine) -> set[str]:
    out = run(engine, "image", "ls", "-q", "--no-trunc", "--filter", "dangling=true")
    return set(out.split())


def test_a_diff_directory_changed_mid_layer_fails_that_load_and_the_export_sends_it(
    engines: dict[str, Engine], builder: Builder, images: Images, proxied: list[DelayProxy]
) -> None:
    """A file of the layer replaced behind the engine's back by a symlink to the same bytes: the
    engine's export follows it (its layer still hashes right), the store reader never follows a
    link and stops in the middle of the layer. The load of that archive fails (its last chunks and
    index never went), nothing is tagged, and the image comes again from the export, with one note."""
    src, dst = engines["docker26"], engines["docker28"]
    builder.place(src, images.v2)
    builder.place(dst, images.v1)
    target = largest_file(src, images.v2)
    moved = target.with_name(target.name + ".d2d-moved")
    target.rename(moved)
    target.symlink_to(moved)
    proxy = counting(src, proxied)
    before = untagged(dst)
    try:
        res, events, _ = d2d("copy", "-s", proxy.host, "-d", dst.host, images.v2)
        said = notes(events)
        assert len(said) == 1 and "is not what the engine registered" in said[0], said
        assert "is a symlink in" in said[0] and "again from the source's export" in said[0]
        assert proxy.count(EXPORT) == 1
        assert res["layers_read"] == {"store": 0, "agent-store": 0, "export": 1}, res
        assert res["tagged"] == [images.v2] and untagged(dst) == before
        assert_landed(src, dst, images.v2)
    finally:
        target.unlink()
        moved.rename(target)
        forget(images, dst, src)


@pytest.mark.parametrize("name", ["docker20", "docker28c"])
def test_a_byte_changed_behind_the_engines_back_loads_nothing(
    engines: dict[str, Engine], builder: Builder, images: Images, proxied: list[DelayProxy], name: str
) -> None:
    """The same size, one byte flipped: the store reader finds out at the layer's end and holds its
    last chunk back; the engine's own export of that layer is wrong too and refused. The copy
    fails naming the source; nothing is tagged or left at the destination."""
    src, dst = engines[name], engines["docker26"]
    builder.place(src, images.v2)
    builder.place(dst, images.v1)
    target = largest_file(src, images.v2) if name != "docker28c" else None
    if target is None:  # the containerd store: the top layer's blob
        store = probe(*engine_info(src)).store
        assert store is not None
        stored = store.image(json.loads(run(src, "image", "inspect", images.v2))[0]["Id"])
        target = Path(stored.layer(len(stored.diff_ids) - 1).location)
    saved = target.read_bytes()
    target.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
    before = untagged(dst)
    try:
        proc = run_d2d("copy", "-s", src.host, "-d", dst.host, images.v2, "--json")
        assert proc.returncode == 1, proc.stderr
        said = [json.loads(x)["message"] for x in proc.stdout.splitlines() if '"note"' in x]
        assert len(said) == 1 and "does not hash to" in said[0], said
        assert proc.stderr.startswith("docker-d2d: source "), proc.stderr
        assert run(dst, "image", "ls", "-q", images.v2) == "" and untagged(dst) == before
    finally:
        target.write_bytes(saved)
        forget(images, dst, src)


def test_a_user_in_the_docker_group_reads_the_export_and_debug_says_why(
    engines: dict[str, Engine], builder: Builder, images: Images, proxied: list[DelayProxy]
) -> None:
    """A user who may use the engines (here through loopback proxies anyone reaches, as the docker
    group's members reach the socket) but not read their storage."""
    src, dst = engines["docker26"], engines["docker20"]
    builder.place(src, images.v2)
    builder.place(dst, images.v1)
    home = Path(tempfile.mkdtemp(prefix="d2d-nobody-", dir="/var/tmp"))
    os.chown(home, 65534, 65534)
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "XDG_CACHE_HOME": str(home)}
    source, destination = counting(src, proxied), counting(dst, proxied)
    try:
        proc = run_d2d(
            "copy", "-s", source.host, "-d", destination.host, images.v2, "--json", "--debug", env=env, user="65534"
        )
        assert proc.returncode == 0, proc.stderr
        events = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        assert notes(events) == []
        result = next(e for e in events if e["event"] == "result")
        assert result["layers_read"] == {"store": 0, "agent-store": 0, "export": 1}
        why = [x for x in proc.stderr.splitlines() if "layers from its export:" in x]
        assert len(why) == 1 and "is not readable by this user; run as root" in why[0], proc.stderr
        assert source.count(EXPORT) == 1
        assert_landed(src, dst, images.v2)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        forget(images, dst, src)


def test_a_driver_docker_d2d_does_not_read_costs_the_export_and_one_note(
    engine_base: Path, builder: Builder, images: Images, engines: dict[str, Engine]
) -> None:
    src = Engine(SPECS["docker26"], engine_base / unique("vfs"))
    dst = engines["docker28"]
    try:
        src.start(extra_args=("--storage-driver=vfs",))
        builder.place(src, images.v2)
        builder.place(dst, images.v1)
        res, events, _ = d2d("copy", "-s", src.host, "-d", dst.host, images.v2)
        said = notes(events)
        assert said == [
            "layers are read from the source's export: the vfs storage driver is not one docker-d2d reads "
            "(it reads overlay2 and the containerd store)"
        ]
        assert res["layers_read"] == {"store": 0, "agent-store": 0, "export": 1}
        assert_landed(src, dst, images.v2)
    finally:
        forget(images, dst)
        src.destroy()
