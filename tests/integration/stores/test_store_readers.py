"""Layers read straight from the engines' own storage (#18), against the real engines: every layer
a store reader yields is byte for byte the layer the engine's own export (`GET /images/get`) holds,
for trees of every tar shape, loaded, pulled from a registry and built in the engine; and where the
storage cannot or must not be read (another user, a file changed behind the engine's back, a driver
we do not read, storage on another machine), the reader says so instead of yielding a wrong byte."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docker_d2d.formats.stores import probe
from docker_d2d.formats.stores.common import StoredImage, StoreMismatch, StoreUnavailable
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, unique
from tests.harness.layer_trees import docker_archive, tricky_layers
from tests.harness.registry import Registry
from tests.harness.rootless import RootlessPodman, rootless_podman
from tests.integration.containerd.store_fixtures import push_multiplatform

pytestmark = pytest.mark.engines

ENGINES = ["docker20", "docker26", "docker26c", "docker28", "docker28c", "podman", "podman5"]
CONTAINERD = {"docker26c", "docker28c"}
REPO = Path(__file__).resolve().parents[3]
PYTHON38 = "/root/.pyenv/versions/3.8.18/bin/python3"
SYSTEM_PYTHON = "/usr/bin/python3"  # one any user may run (the pyenv ones live under /root)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def api(engine: Engine) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(engine.socket)), base_url="http://engine", timeout=300)


def engine_info(engine: Engine) -> tuple[dict[str, Any], dict[str, Any] | None]:
    with api(engine) as c:
        info = c.get("/info").json()
        libpod = c.get("/v4.0.0/libpod/info").json() if engine.spec.kind == "podman" else None
    return info, libpod


def capability(engine: Engine) -> probe.Capability:
    return probe.probe(*engine_info(engine))


def image_id(engine: Engine, ref: str) -> str:
    with api(engine) as c:
        resp = c.get(f"/images/{ref}/json")
        resp.raise_for_status()
        return str(resp.json()["Id"])


def export(engine: Engine, ident: str) -> tarfile.TarFile:
    with api(engine) as c:
        resp = c.get(f"/images/{ident}/get")
        resp.raise_for_status()
        return tarfile.open(fileobj=io.BytesIO(resp.content))


def exported_layers(engine: Engine, ident: str) -> tuple[bytes, list[bytes]]:
    """The config and the layer files of the engine's own export, in the image's layer order."""
    with export(engine, ident) as tar:
        item = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = tar.extractfile(item["Config"]).read()  # type: ignore[union-attr]
        return config, [tar.extractfile(p).read() for p in item["Layers"]]  # type: ignore[union-attr]


def assert_store_is_the_export(engine: Engine, ref: str) -> StoredImage:
    """Every layer the store reader yields equals the export's, byte for byte, and proves its
    digest; the config too. A layer only named has the same digest, size and media type."""
    ident = image_id(engine, ref)
    cap = capability(engine)
    assert cap.store is not None, cap.describe()
    stored = cap.store.image(ident)
    config, layers = exported_layers(engine, ident)
    assert stored.config == config
    assert len(stored.diff_ids) == len(layers)
    for i, data in enumerate(layers):
        layer = stored.layer(i)
        body = b"".join(layer.chunks())
        assert body == data, f"layer {i} of {ref} differs from the export ({len(body)} vs {len(data)} bytes)"
        assert layer.diff_id == stored.diff_ids[i] and sha(body) == layer.digest and layer.size == len(body)
        named = stored.named(i)  # what names a left-out layer, without a look at its files
        assert (named.digest, named.size, named.media_type) == (layer.digest, layer.size, layer.media_type)
    return stored


def loaded_tricky(engine: Engine, rootless: bool = False) -> str:
    """The image of every tar shape (tests/harness/layer_trees.py), loaded at `engine`."""
    name = unique("tricky") + ":1"
    engine.docker("load", input=docker_archive(name, tricky_layers(rootless)))
    return ("localhost/" + name) if engine.spec.kind == "podman" else name


@pytest.fixture(scope="module")
def pushed_tricky(builder: Builder, registry: Registry) -> str:
    """The tricky image in the registry (pushed gzip-compressed by the builder's Docker 20.10)."""
    name = unique("tricky") + ":1"
    builder.engine.docker("load", input=docker_archive(name, tricky_layers()))
    return registry.push(builder.engine, name)


# --- every store kind is the export, byte for byte --------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_loaded_tricky_trees_read_from_the_store_are_the_export(engines: dict[str, Engine], name: str) -> None:
    """Hardlinks, symlinks (absolute, dangling, long targets), GNU long names, PAX names and ids,
    a non-UTF-8 name (tar-split's name_raw), xattrs (user.*, security.capability), a FIFO and a
    device, whiteouts of a file and a directory, an opaque directory, empty layers (one repeated),
    a 0-byte file and a 2.5 MiB one (over a read chunk)."""
    engine = engines[name]
    stored = assert_store_is_the_export(engine, loaded_tricky(engine))
    assert len(stored.diff_ids) == 6 and stored.diff_ids[2] == stored.diff_ids[4]  # the repeated empty layer


@pytest.mark.parametrize("name", ENGINES)
def test_pulled_layers_read_from_the_store_are_the_export(
    engines: dict[str, Engine], pushed_tricky: str, name: str
) -> None:
    """From a registry: a graphdriver or containers/storage registers the inflated tar (tar-split
    made while pulling), the containerd store keeps the registry's gzip blobs as they came."""
    engine = engines[name]
    engine.docker("pull", "-q", pushed_tricky)
    stored = assert_store_is_the_export(engine, pushed_tricky)
    layers = [stored.layer(i) for i in range(len(stored.diff_ids))]
    if name in CONTAINERD:
        assert all(la.media_type.endswith("gzip") and la.digest != la.diff_id for la in layers)
        assert all(la.origin == "containerd content store" for la in layers)
    else:
        assert all(la.digest == la.diff_id for la in layers)


def build_tree(engine: Engine, base: str) -> str:
    """`FROM base` + two COPY layers the engine's own builder writes: PAX long and non-ASCII names,
    a symlink, a hardlink pair, a 0-byte file, a 3 MiB file."""
    tag = unique("built") + ":1"
    with tempfile.TemporaryDirectory() as ctx:
        tree = Path(ctx, "tree")
        long_dir = tree / ("l" * 120)
        long_dir.mkdir(parents=True)
        (long_dir / ("m" * 120)).write_bytes(b"a long path\n")
        (tree / "ünïcödé.txt").write_bytes(b"non-ASCII\n")
        (tree / "link").symlink_to("ünïcödé.txt")
        (tree / "h1").write_bytes(b"hardlinked\n")
        os.link(tree / "h1", tree / "h2")
        (tree / "empty").write_bytes(b"")
        Path(ctx, "big.bin").write_bytes(os.urandom(3 << 20))
        Path(ctx, "Dockerfile").write_text(f"FROM {base}\nCOPY tree /tree\nCOPY big.bin /big.bin\n")
        engine.docker("build", "-q", "-t", tag, ctx)
    return tag  # Podman too names a build as it was asked (a load gets localhost/)


@pytest.mark.parametrize("name", ENGINES)
def test_layers_built_in_the_engine_read_from_the_store_are_the_export(engines: dict[str, Engine], name: str) -> None:
    """The engine's own builder (Docker's legacy builder; Buildah behind Podman's API); in the
    containerd store the built layers are gzip blobs."""
    engine = engines[name]
    stored = assert_store_is_the_export(engine, build_tree(engine, loaded_tricky(engine)))
    top = stored.layer(len(stored.diff_ids) - 1)
    if name in CONTAINERD:
        assert top.media_type.endswith("gzip") and top.digest != top.diff_id


def test_an_index_needs_its_platform_named(engines: dict[str, Engine], registry: Registry) -> None:
    """A two-platform index (with attestation manifests) pulled into the containerd store: its
    image id is the index; the reader picks a platform's manifest only when told which."""
    engine = engines["docker28c"]
    repo = unique("multi")
    images = push_multiplatform(registry, repo, "1")
    ref = registry.ref(f"{repo}:1")
    engine.docker("pull", "-q", "--platform", "linux/amd64", ref)
    ident = image_id(engine, ref)
    cap = capability(engine)
    assert cap.store is not None
    with pytest.raises(StoreUnavailable, match="is an index: a platform not chosen among"):
        cap.store.image(ident)
    stored = cap.store.image(ident, "linux/amd64")
    amd64 = next(i for i in images if i.platform == "linux/amd64")
    assert stored.manifest is not None and sha(stored.manifest) == amd64.manifest
    assert sha(stored.config) == amd64.config and stored.diff_ids == amd64.diff_ids
    with export(engine, ident) as tar:
        blobs = {"sha256:" + m.name.rsplit("/", 1)[1]: m for m in tar.getmembers() if m.name.startswith("blobs/")}
        for i in range(len(stored.diff_ids)):
            layer = stored.layer(i)
            assert b"".join(layer.chunks()) == tar.extractfile(blobs[layer.digest]).read()  # type: ignore[union-attr]
            assert layer.size == amd64.layer_sizes[i]


# --- where the store must not or cannot be read --------------------------------------------------

READER = r"""
import hashlib, json, sys
from docker_d2d.formats.stores import probe
from docker_d2d.formats.stores.common import StoreError
job = json.load(sys.stdin)
cap = probe.probe(job["info"], job["libpod"])
out = {"ok": cap.ok, "reason": cap.reason, "enable": cap.enable, "note": cap.note, "layers": []}
if cap.store is not None:
    try:
        image = cap.store.image(job["image"])
        for i in range(len(image.diff_ids)):
            try:
                h = hashlib.sha256()
                layer = image.layer(i)
                for chunk in layer.chunks():
                    h.update(chunk)
                out["layers"].append("sha256:" + h.hexdigest())
            except StoreError as exc:
                out["layers"].append("%s: %s" % (type(exc).__name__, exc))
    except StoreError as exc:
        out["image_error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(out))
"""


def run_reader(engine: Engine, ident: str, python: str = SYSTEM_PYTHON, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """The readers in a process of their own (another user, another Python): what they say."""
    info, libpod = engine_info(engine)
    job = json.dumps({"info": info, "libpod": libpod, "image": ident}).encode()
    cmd = [*prefix, "env", f"PYTHONPATH={REPO}", python, "-c", READER]
    proc = subprocess.run(cmd, input=job, capture_output=True, check=False, cwd="/")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return dict(json.loads(proc.stdout))


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@pytest.mark.parametrize("name", ["docker26", "docker28c", "podman"])
def test_a_user_who_cannot_read_the_storage_is_told_what_would(engines: dict[str, Engine], name: str) -> None:
    engine = engines[name]
    seen = run_reader(engine, image_id(engine, loaded_tricky(engine)), prefix=NOBODY)
    assert not seen["ok"] and "is not readable by this user" in seen["reason"], seen
    assert seen["enable"].startswith("run as root"), seen


@pytest.mark.parametrize("name", ["docker20", "podman", "docker28c"])
def test_python38_reads_the_stores(engines: dict[str, Engine], pushed_tricky: str, name: str) -> None:
    """The readers travel to the source host with the agent: the oldest Python it runs on reads
    every store kind, and each layer hashes to its digest."""
    engine = engines[name]
    engine.docker("pull", "-q", pushed_tricky)
    ident = image_id(engine, pushed_tricky)
    seen = run_reader(engine, ident, python=PYTHON38)
    stored = capability(engine).store
    assert seen["ok"] and stored is not None
    image = stored.image(ident)
    assert seen["layers"] == [image.layer(i).digest for i in range(len(image.diff_ids))]


@pytest.fixture
def own_layer(engines: dict[str, Engine], builder: Builder, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A one-layer image nobody else uses, at the engine named by the test's parameter, and where
    its layer lives in the store; what the test changes there is put back afterwards."""
    engine = engines[request.param]
    ref = builder.base(unique("own") + ":1", size=50_000)
    builder.place(engine, ref)
    if engine.spec.kind == "podman":
        ref = "localhost/" + ref
    cap = capability(engine)
    assert cap.store is not None
    stored = cap.store.image(image_id(engine, ref))
    layer = stored.layer(0)
    path = Path(layer.location, "etc/base-id") if Path(layer.location).is_dir() else Path(layer.location)
    saved = path.read_bytes()
    try:
        yield stored, path
    finally:
        path.write_bytes(saved)


@pytest.mark.parametrize("own_layer", ["docker26", "docker20", "podman5"], indirect=True)
def test_a_file_changed_behind_the_engines_back_is_caught(own_layer: Any) -> None:
    stored, path = own_layer
    saved = path.read_bytes()
    path.write_bytes(saved + b"appended")
    with pytest.raises(StoreMismatch, match=r"etc/base-id has \d+ bytes on disk, the layer has \d+"):
        list(stored.layer(0).chunks())
    path.write_bytes(bytes([saved[0] ^ 1]) + saved[1:])  # same size: only the digest tells
    with pytest.raises(StoreMismatch, match="does not hash to"):
        list(stored.layer(0).chunks())
    path.write_bytes(saved)
    assert sha(b"".join(stored.layer(0).chunks())) == stored.diff_ids[0]


@pytest.mark.parametrize("own_layer", ["docker28c"], indirect=True)
def test_a_content_blob_changed_or_gone_is_caught(own_layer: Any) -> None:
    stored, path = own_layer
    saved = path.read_bytes()
    path.write_bytes(bytes([saved[0] ^ 1]) + saved[1:])
    with pytest.raises(StoreMismatch, match="does not hash to"):
        list(stored.layer(0).chunks())
    path.unlink()  # as a pull that skipped a blob whose snapshot existed leaves it
    with pytest.raises(StoreUnavailable, match="is not in the content store"):
        stored.layer(0)


def test_a_driver_docker_d2d_does_not_read_is_named(engine_base: Path) -> None:
    engine = Engine(SPECS["docker26"], engine_base / unique("vfs"))
    try:
        engine.start(extra_args=("--storage-driver=vfs",))
        cap = capability(engine)
        assert cap.store is None
        assert (
            cap.reason
            == "the vfs storage driver is not one docker-d2d reads (it reads overlay2 and the containerd store)"
        )
    finally:
        engine.destroy()


def test_storage_of_another_machine_is_not_read(engines: dict[str, Engine]) -> None:
    """What /info says of a VM's or a remote engine's storage, as seen from here."""
    info, _ = engine_info(engines["docker26"])
    gone = probe.docker({**info, "DockerRootDir": "/nonexistent/docker"})
    assert not gone.ok and gone.reason == "DockerRootDir /nonexistent/docker does not exist here"
    other = probe.docker({**info, "ID": "another-engine"})
    assert not other.ok and "belongs to another engine" in other.reason
    desktop = probe.docker({**info, "OperatingSystem": "Docker Desktop"})
    assert desktop.reason == "Docker Desktop keeps its storage inside its VM"
    assert probe.docker(info).ok


def test_a_sparse_file_fails_as_the_engines_own_export_does(engines: dict[str, Engine], tmp_path: Path) -> None:
    """tar-split keeps a PAX sparse file's map in its header and the expanded contents as the file:
    reassembled, the layer no longer hashes to its diff id. The engine's export refuses it
    ("could not verify layer data"); the reader raises, it never passes the wrong tar on."""
    engine = engines["docker26"]
    (tmp_path / "s").mkdir()
    subprocess.run(["truncate", "-s", "5M", str(tmp_path / "s/sparse")], check=True)
    with open(tmp_path / "s/sparse", "r+b") as f:
        f.seek(2 << 20)
        f.write(b"data")
    subprocess.run(["tar", "--sparse", "--format=pax", "-cf", str(tmp_path / "l.tar"), "-C", str(tmp_path / "s"), "."])
    ref = unique("sparse") + ":1"
    engine.docker("import", str(tmp_path / "l.tar"), ref)
    ident = image_id(engine, ref)
    with api(engine) as c:
        assert c.get(f"/images/{ident}/get").status_code == 500
    stored = capability(engine).store
    assert stored is not None
    with pytest.raises(StoreMismatch, match="does not hash to"):
        list(stored.image(ident).layer(0).chunks())


# --- rootless Podman ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rootless() -> Iterator[RootlessPodman]:
    base = Path(tempfile.mkdtemp(prefix="d2d-stores-rl", dir="/var/tmp"))
    os.chmod(base, 0o755)
    engine = rootless_podman(base / "podman")
    try:
        engine.start()
        yield engine
    finally:
        try:
            engine.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_rootless_podman_store(rootless: RootlessPodman) -> None:
    """Root reads a rootless store like any other. Its owner reads it too, except files the image
    gives to users other than root (they belong to the owner's subordinate ids on disk): the layer
    holding one says permission denied, and inside the owner's namespace (`podman unshare`) every
    layer reads. Anyone else is told whose store it is."""
    engine = rootless
    ref = loaded_tricky(engine, rootless=True)
    stored = assert_store_is_the_export(engine, ref)
    digests = [stored.layer(i).digest for i in range(len(stored.diff_ids))]
    pw = pwd.getpwnam(engine.user)
    owner = ("setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups")

    seen = run_reader(engine, stored.image_id, prefix=owner)
    assert seen["ok"] and "podman unshare" in seen["note"], seen
    assert (
        seen["layers"][0].startswith("StoreUnavailable: cannot read home/user/")
        and "permission denied" in seen["layers"][0]
    )
    assert seen["layers"][1:] == digests[1:]

    unshare = tuple(engine._as_user("unshare"))
    seen = run_reader(engine, stored.image_id, prefix=unshare)
    assert seen["layers"] == digests, seen

    seen = run_reader(engine, stored.image_id, prefix=NOBODY)
    assert not seen["ok"] and seen["enable"] == f"run as {engine.user}, the store's owner", seen
