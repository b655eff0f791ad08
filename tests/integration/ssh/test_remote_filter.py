"""Filtering at the source host (issue 8): real engines on a second host (a network namespace
with a tbf-shaped 100 Mbit link) behind a real sshd; docker-d2d pulls from it and copies from it
to a third host. Bytes on the wire are read off the veth counters."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import SPECS, Engine, destroy_all
from tests.harness.images import (
    Builder,
    diff_id,
    image_config,
    image_exists,
    layer_files,
    oci_archive,
    place_compressed,
    rootfs_tar,
    unique,
)
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.rootless import RootlessPodman, rootless_podman
from tests.harness.sshd import SshClientHome, Sshd

pytestmark = pytest.mark.engines

KINDS = ["docker26", "docker20", "docker26c", "podman"]
AGENT_MARK = "sys.meta_path.insert"  # a piece of the bootstrap: how the agent shows in ps
MB = 1 << 20
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Host:
    """A second machine: a network namespace with sshd and engines of its own."""

    ns: NetNS
    sshd: Sshd
    engines: dict[str, Engine]

    @property
    def veth(self) -> Path:
        return Path(f"/sys/class/net/{self.ns.host_if}/statistics")

    def wire(self) -> int:
        return sum(int((self.veth / f).read_text()) for f in ("rx_bytes", "tx_bytes"))

    def url(self, kind: str, sshd: Sshd | None = None) -> str:
        srv = sshd or self.sshd
        return f"ssh://root@{srv.address}:{srv.port}{self.engines[kind].socket}"


def _host(base: Path, client: SshClientHome, suffix: str, kinds: list[str]) -> Host:
    ns = NetNS(f"rf{suffix}", rate="100mbit").up()  # its name and a free subnet unique to this process
    engines: dict[str, Engine] = {}
    host = Host(ns, Sshd(base / f"sshd{suffix}", address=ns.addr, port=22, netns=ns.name), engines)
    try:
        for kind in kinds:
            engines[kind] = Engine(SPECS[kind], base / f"{kind}{suffix}")
            engines[kind].start(netns=ns.name)
        host.sshd.options["SetEnv"] = _clean_env(base, suffix)
        host.sshd.start({"root": [client.ssh / "id_ed25519"]})
    except BaseException:
        _destroy(host)  # what started so far must not outlive the test
        raise
    client.trust(host.sshd)
    return host


def _clean_env(base: Path, suffix: str) -> str:
    """An empty HOME and TMPDIR for the ssh sessions, to show nothing is written there (an empty
    HOME also keeps root's .bashrc, which puts pyenv first in PATH, out of the sessions)."""
    for name in ("home", "tmp"):
        (base / f"{name}{suffix}").mkdir(exist_ok=True)
    return f"HOME={base / f'home{suffix}'} TMPDIR={base / f'tmp{suffix}'}"


def _destroy(host: Host) -> None:
    host.sshd.stop()
    destroy_all(host.engines.values())
    host.ns.down()


@dataclass
class World:
    client: SshClientHome
    a: Host  # the source host, every kind of engine
    b: Host  # a destination host for remote-to-remote
    local: Engine  # the local engine (pull's destination)
    local20: Engine
    images: dict[str, str]  # role -> tag
    base: Path

    def env(self, dst: Engine | None = None) -> dict[str, str]:
        return self.client.env(DOCKER_HOST=(dst or self.local).host)


@pytest.fixture(scope="module")
def world(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="rf", dir="/var/tmp"))  # short: podman's runroot must be < 50 chars
    client = SshClientHome(base / "home")
    client.key()
    hosts: list[Host] = []
    locals_: list[Engine] = []
    try:
        a = _host(base, client, "a", KINDS)
        hosts.append(a)
        b = _host(base, client, "b", ["docker26"])
        hosts.append(b)
        for kind in ("docker26", "docker20"):
            engine = Engine(SPECS[kind], base / f"local-{kind}")
            engine.start()
            locals_.append(engine)
        work = tmp_path_factory.mktemp("rfimages")
        name = unique("rfapp")
        images = {"base": f"{name}-base:1", "v1": f"{name}:1", "v2": f"{name}:2", "big": f"{name}-big:1"}
        build_image(builder.engine, work, images["base"], None, 24, 0)
        build_image(builder.engine, work, images["v1"], images["base"], 4, 24)
        build_image(builder.engine, work, images["v2"], images["v1"], 3, 28)
        # Incompressible, so a pull takes a few seconds on the link: long enough to be cut.
        builder.build(images["big"], images["base"], ["COPY r /r"], {"r": os.urandom(48 * MB)})
        for engine in a.engines.values():
            builder.place(engine, images["v2"], images["big"])
        for engine in [*locals_, *b.engines.values()]:
            builder.place(engine, images["v1"])
        yield World(client, a, b, locals_[0], locals_[1], images, base)
    finally:
        destroy_all(locals_)
        for host in hosts:
            _destroy(host)
        shutil.rmtree(base, ignore_errors=True)


def layer_bytes(engine: Engine, image: str, diff_ids: set[str]) -> list[bytes]:
    """The uncompressed tar of each named layer, from the engine's own export."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(engine.docker("save", image).stdout)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.size > 1024:
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                if digest in diff_ids:
                    found[digest] = data
    assert set(found) == diff_ids
    return list(found.values())


def reference(layers: list[bytes], how: str) -> int:
    """What the missing layers cost compressed: zstd -3, or gzip for Docker 20.10 destinations."""
    if how == "zstd":
        return sum(len(zstandard.ZstdCompressor(level=3).compress(b)) for b in layers)
    return sum(len(gzip.compress(b, 6)) for b in layers)


def layers_of(engine: Engine, image: str) -> list[str]:
    out = engine.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image).stdout
    return list(json.loads(out))


def d2d_json(world: World, *args: str, dst: Engine | None = None) -> tuple[dict[str, object], str]:
    proc = run_d2d(*args, "--json", "--debug", env=world.env(dst))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return next(e for e in events if e["event"] == "result"), proc.stderr


def remove(engine: Engine, image: str) -> None:
    engine.docker("rmi", image, check=False)


def agent_processes(world: World) -> list[int]:
    """The agents on this module's hosts: processes in their network namespaces whose command line
    shows the agent's bootstrap. Not machine-wide: other test runs (and other workers of this one)
    run agents of their own at the same time."""
    found = []
    for host in (world.a, world.b):
        pids = subprocess.run(["ip", "netns", "pids", host.ns.name], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # ended meanwhile
            if AGENT_MARK.encode() in cmdline:
                found.append(int(pid))
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_pull_update_sends_only_the_missing_layers_compressed(world: World, kind: str) -> None:
    src, dst, v1, v2 = world.a.engines[kind], world.local, world.images["v1"], world.images["v2"]
    missing = set(layers_of(src, v2)) - set(layers_of(dst, v1))
    assert len(missing) == 1
    before = world.a.wire()
    res, log = d2d_json(world, "pull", world.a.url(kind), v2)
    wire = world.a.wire() - before
    assert "filtering at the source host" in log and res["compression"] == "zstd"
    ideal = reference(layer_bytes(src, v2, missing), "zstd")
    assert wire <= 1.2 * ideal + 2 * MB, (wire, ideal)
    assert layers_of(dst, v2) == layers_of(src, v2)
    remove(dst, v2)


def test_pull_update_into_docker_20_is_gzip(world: World) -> None:
    src, dst, v1, v2 = world.a.engines["docker26"], world.local20, world.images["v1"], world.images["v2"]
    missing = set(layers_of(src, v2)) - set(layers_of(dst, v1))
    before = world.a.wire()
    res, log = d2d_json(world, "pull", world.a.url("docker26"), v2, dst=dst)
    wire = world.a.wire() - before
    assert "filtering at the source host" in log and res["compression"] == "gzip"
    assert wire <= 1.2 * reference(layer_bytes(src, v2, missing), "gzip") + 2 * MB
    assert layers_of(dst, v2) == layers_of(src, v2)
    remove(dst, v2)


@dataclass
class Rootless:
    engine: RootlessPodman
    sshd: Sshd
    session_dirs: list[Path]  # HOME and TMPDIR of the user's ssh sessions

    @property
    def url(self) -> str:
        return f"ssh://{self.engine.user}@{self.sshd.address}:{self.sshd.port}{self.engine.socket}"


@pytest.fixture
def rootless(world: World) -> Iterator[Rootless]:
    """Rootless Podman 4.3 on the source host (tests/harness/rootless.py), behind an sshd of its
    own that lets the user in with the client's key."""
    base = Path(tempfile.mkdtemp(prefix="rl", dir="/var/tmp"))
    os.chmod(base, 0o755)  # sshd reads authorized keys as the user logging in
    engine = rootless_podman(base / "podman")
    dirs = [base / "home", base / "tmp"]
    options = {"SetEnv": f"HOME={dirs[0]} TMPDIR={dirs[1]}"}
    srv = Sshd(base / "sshd", address=world.a.ns.addr, port=2222, netns=world.a.ns.name, options=options)
    try:
        engine.start(netns=world.a.ns.name)
        for d in dirs:
            d.mkdir()
            os.chown(d, engine.pw.pw_uid, engine.pw.pw_gid)
        srv.start({engine.user: [world.client.ssh / "id_ed25519"]})
        world.client.trust(srv)
        yield Rootless(engine, srv, dirs)
    finally:
        srv.stop()
        try:
            engine.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_pull_update_from_a_rootless_podman_socket(world: World, rootless: Rootless, builder: Builder) -> None:
    """Issue 8: the agent runs as the unprivileged user and reads the socket in its runtime dir
    (0700: nobody else could) from a rootless overlay store (checked when the service starts)."""
    src, dst, v1, v2 = rootless.engine, world.local, world.images["v1"], world.images["v2"]
    builder.place(src, v2)
    missing = set(layers_of(src, v2)) - set(layers_of(dst, v1))
    assert len(missing) == 1
    try:
        before = world.a.wire()
        res, log = d2d_json(world, "pull", rootless.url, v2)
        wire = world.a.wire() - before
        assert "filtering at the source host" in log and res["compression"] == "zstd", log
        assert res["layers_read"] == {"store": 0, "agent-store": 1, "export": 0}, log  # its own store
        ideal = reference(layer_bytes(src, v2, missing), "zstd")
        assert wire <= 1.2 * ideal + 2 * MB, (wire, ideal)
        assert layers_of(dst, v2) == layers_of(src, v2)
        assert [list(d.iterdir()) for d in rootless.session_dirs] == [[], []]
    finally:
        remove(dst, v2)


def test_remote_to_remote_each_missing_layer_crosses_each_link_once(world: World) -> None:
    src, dst, v1, v2 = world.a.engines["docker26"], world.b.engines["docker26"], world.images["v1"], world.images["v2"]
    world.client.trust(world.b.sshd)
    missing = set(layers_of(src, v2)) - set(layers_of(dst, v1))
    before_a, before_b = world.a.wire(), world.b.wire()
    res, log = d2d_json(world, "copy", "-s", world.a.url("docker26"), "-d", world.b.url("docker26"), v2)
    wire_a, wire_b = world.a.wire() - before_a, world.b.wire() - before_b
    assert "filtering at the source host" in log and res["compression"] == "zstd"
    ideal = reference(layer_bytes(src, v2, missing), "zstd")
    assert wire_a <= 1.2 * ideal + 2 * MB and wire_b <= 1.2 * ideal + 2 * MB, (wire_a, wire_b, ideal)
    # the relay does not recompress: what came in from a is what went out to b
    assert abs(wire_a - wire_b) < 0.05 * wire_a + 200_000
    assert layers_of(dst, v2) == layers_of(src, v2)
    remove(dst, v2)


def _sshd(world: World, name: str, path: str) -> Sshd:
    options = {"SetEnv": f"{_clean_env(world.base, 'a')} PATH={path}"}
    srv = Sshd(world.base / unique(name), address=world.a.ns.addr, port=0, netns=world.a.ns.name, options=options)
    srv.port = 2200 + len(list(world.base.glob("*sshd*")))
    srv.start({"root": [world.client.ssh / "id_ed25519"]})
    world.client.trust(srv)
    return srv


def test_host_python_3_8_runs_the_agent(world: World) -> None:
    srv = _sshd(world, "py38sshd", "/root/.pyenv/versions/3.8.18/bin:/usr/bin:/bin")
    try:
        _, log = d2d_json(world, "pull", world.a.url("docker26", srv), world.images["v2"])
        assert "filtering at the source host (python 3.8.18, zstd on the wire)" in log, log
        assert image_exists(world.local, world.images["v2"])
    finally:
        srv.stop()
        remove(world.local, world.images["v2"])


def test_host_without_python3_falls_back_and_says_so(world: World) -> None:
    empty = world.base / unique("nopython")  # a PATH without python3
    empty.mkdir()
    srv = _sshd(world, "nopysshd", str(empty))
    v2 = world.images["v2"]
    try:
        before = world.a.wire()
        proc = run_d2d("pull", world.a.url("docker26", srv), v2, "--debug", env=world.env())
        wire = world.a.wire() - before
        assert proc.returncode == 0, proc.stderr
        notes = [line for line in proc.stderr.splitlines() if "cannot filter the export" in line]
        assert len(notes) == 1, proc.stderr
        assert "no python3" in notes[0] and "Install python3 (3.8 or later)" in notes[0] and "MB" in notes[0]
        assert "plain export stream" in proc.stderr
        assert wire > 30 * MB  # the whole export, uncompressed
        assert image_exists(world.local, v2)
        remove(world.local, v2)
        # never: no attempt, no note
        proc = run_d2d("pull", world.a.url("docker26", srv), v2, "--remote-filter", "never", "-D", env=world.env())
        assert proc.returncode == 0 and "cannot filter" not in proc.stderr, proc.stderr
        assert "plain export stream (--remote-filter never)" in proc.stderr
    finally:
        srv.stop()
        remove(world.local, v2)


def _open_files(pid: int, reading: Path | None = None) -> list[str]:
    """The files the process holds open, but those it reads from the engine's storage under
    `reading` (read-only: the layers that travel come from there)."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            flags = int(Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError):
            continue
        if reading is not None and target.startswith(f"{reading}/") and flags & os.O_ACCMODE == os.O_RDONLY:
            continue
        if target.startswith("/") and target != "/dev/null" and not target.startswith("/dev/pts"):
            out.append(target)
    return out


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_cutting_the_pull_leaves_nothing_on_the_source_host(world: World, how: str) -> None:
    big = world.images["big"]
    tmpdir = world.base / "tmpa"
    assert agent_processes(world) == []
    proc = subprocess.Popen(
        [d2d_path(), "pull", world.a.url("docker26"), big, "--compress", "none"],
        env=world.env(world.local20),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        agents: list[int] = []
        while time.monotonic() < deadline and not agents:
            agents = agent_processes(world)
            time.sleep(0.1)
        assert agents, "the agent never started"
        time.sleep(1.5)  # mid-transfer: 48 MB at 100 Mbit take ~4 s
        assert proc.poll() is None
        for pid in agents:
            storage = world.a.engines["docker26"].base / "data"
            assert _open_files(pid, reading=storage) == [], "the agent opened a file on the host"
        os.kill(proc.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
        code = proc.wait(timeout=30)
        assert code == (-9 if how == "SIGKILL" else 130), proc.stderr.read() if proc.stderr else ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and agent_processes(world):
            time.sleep(0.2)
        assert agent_processes(world) == []
        assert list(tmpdir.iterdir()) == [] and list((world.base / "homea").iterdir()) == []
        assert not image_exists(world.local20, big)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_pull_from_a_containerd_store_holding_compressed_blobs(world: World, builder: Builder) -> None:
    """As after a registry pull: the host's reader spools each gzip blob (an unnamed temporary
    file, gone with the process) to learn its diff id, and sends only the missing one, as it is."""
    src, dst = world.a.engines["docker26c"], world.local
    name = unique("rfgz")
    base, app = f"{name}:1", f"{name}:2"
    build_image(builder.engine, world.base, base, None, 6, 40)
    build_image(builder.engine, world.base, app, base, 3, 46)
    place_compressed(builder, src, app)
    builder.place(dst, base)
    missing = set(layers_of(src, app)) - set(layers_of(dst, base))
    assert len(missing) == 1
    before = world.a.wire()
    res, log = d2d_json(world, "pull", world.a.url("docker26c"), app)
    wire = world.a.wire() - before
    assert "filtering at the source host" in log
    assert wire <= 1.2 * reference(layer_bytes(builder.engine, app, missing), "gzip") + 2 * MB
    assert layers_of(dst, app) == layers_of(src, app)
    assert list((world.base / "tmpa").iterdir()) == []


def test_pull_layers_of_several_gzip_members(world: World) -> None:
    """Blobs stored as several gzip members (eStargz, `cat a.gz b.gz`), members inflating to the
    hasher's output step exactly: the host's reader hashes each once and the pull completes."""
    src, dst = world.a.engines["docker26c"], world.local
    ref = unique("rfmembers") + ":1"
    text = b"".join(b"line %d of a log file that compresses well\n" % i for i in range(100_000))
    layers = [rootfs_tar({"a.log": text, "id": os.urandom(4000)}), rootfs_tar({"b.log": text, "id": os.urandom(9)})]
    blobs = [b"".join(gzip.compress(x[i : i + MB], mtime=0) for i in range(0, len(x), MB)) for x in layers]
    config = image_config([diff_id(b) for b in layers], [{"created_by": "x"}, {"created_by": "y"}])
    src.docker("load", "-q", input=oci_archive(ref, [(MT_GZIP, b) for b in blobs], config))
    try:
        res, log = d2d_json(world, "pull", world.a.url("docker26c"), ref)
        assert "filtering at the source host" in log
        assert res["layers_sent"] == 2 and res["tagged"] == [ref]
        assert layers_of(dst, ref) == [diff_id(b) for b in layers]
        assert dst.docker("save", ref).returncode == 0
    finally:
        remove(dst, ref)
        remove(src, ref)


@pytest.mark.parametrize("dst_kind", ["docker20", "docker26"])
def test_pull_zstd_layers_from_a_containerd_store(world: World, dst_kind: str) -> None:
    """A store holding zstd blobs, into Docker 20.10 (which takes them only inflated) and 26.1 (as
    they are). The host's python3 (Debian's) has no zstandard module: its reader stops at the first
    zstd blob and the pull starts over with the plain stream, saying so once. A python3 with the
    module filters there, and inflates them for Docker 20.10."""
    src, dst = world.a.engines["docker26c"], world.local20 if dst_kind == "docker20" else world.local
    ref = unique("rfzstd") + ":1"
    layers = layer_files(2, size=2 * MB)
    blobs = [zstandard.ZstdCompressor(level=3).compress(b) for b in layers]
    config = image_config([diff_id(b) for b in layers], [{"created_by": "x"}, {"created_by": "y"}])
    src.docker("load", "-q", input=oci_archive(ref, [(MT_ZSTD, b) for b in blobs], config))
    sent = sum(len(b) for b in (layers if dst_kind == "docker20" else blobs))
    srv = _sshd(world, "zstdsshd", f"{Path(sys.executable).parent}:/usr/bin:/bin")  # our python3: zstandard
    try:
        proc = run_d2d("pull", world.a.url("docker26c"), ref, "--debug", env=world.env(dst))
        assert proc.returncode == 0, proc.stderr
        notes = [line for line in proc.stderr.splitlines() if "cannot filter the export" in line]
        assert len(notes) == 1 and "zstandard module" in notes[0], proc.stderr
        assert layers_of(dst, ref) == [diff_id(b) for b in layers]
        assert dst.docker("save", ref).returncode == 0
        remove(dst, ref)

        res, log = d2d_json(world, "pull", world.a.url("docker26c", srv), ref, dst=dst)
        assert "filtering at the source host" in log and "cannot filter" not in log, log
        assert res["bytes_sent"] == sent
        assert layers_of(dst, ref) == [diff_id(b) for b in layers]
        assert dst.docker("save", ref).returncode == 0
    finally:
        srv.stop()
        remove(dst, ref)
        remove(src, ref)


def test_destination_failing_mid_pull_ends_the_helper(world: World) -> None:
    """An error on the other side (here the destination engine dies) closes the channel: the helper
    and its export on the source host end too."""
    dst, big = world.local20, world.images["big"]
    proc = subprocess.Popen(
        [d2d_path(), "pull", world.a.url("docker26"), big, "--compress", "none"],
        env=world.env(dst),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not agent_processes(world):
            time.sleep(0.1)
        assert agent_processes(world), "the agent never started"
        time.sleep(1.0)
        dst.stop()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1 and "destination" in err, err
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and agent_processes(world):
            time.sleep(0.2)
        assert agent_processes(world) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        dst.start()


def test_host_python_too_old_falls_back_and_says_so(world: World) -> None:
    srv = _sshd(world, "py37sshd", "/root/.pyenv/versions/3.7.16/bin:/usr/bin:/bin")
    v2 = world.images["v2"]
    try:
        proc = run_d2d("pull", world.a.url("docker26", srv), v2, env=world.env())
        assert proc.returncode == 0, proc.stderr
        notes = [line for line in proc.stderr.splitlines() if "cannot filter the export" in line]
        assert len(notes) == 1 and "python 3.7 is older than 3.8" in notes[0], proc.stderr
        assert image_exists(world.local, v2)
    finally:
        srv.stop()
        remove(world.local, v2)


def test_interrupted_pull_resumes_from_its_checkpoints(world: World, builder: Builder) -> None:
    """Checkpoints come from the agent too: Ctrl-C after two of them, and the next pull moves only
    the layers they did not hold across the link (incompressible layers: zstd cannot hide a resend)."""
    src, dst = world.a.engines["docker26"], world.local
    app = unique("rfresume") + ":1"
    files = {f"r{i}": os.urandom(10 * MB) for i in range(4)}
    builder.build(app, world.images["base"], [f"COPY r{i} /r{i}" for i in range(4)], files)
    builder.place(src, app)
    proc = subprocess.Popen(
        [d2d_path(), "pull", world.a.url("docker26"), app, "--json", "--checkpoint", "8MB"],
        env=world.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "note" and event["message"].startswith("checkpoint:"):
            seen += 1
            if seen == 2:
                break
    assert seen == 2, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again" in out + err
    assert not image_exists(dst, app)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and agent_processes(world):
        time.sleep(0.2)
    assert agent_processes(world) == []

    before = world.a.wire()
    res, _ = d2d_json(world, "pull", world.a.url("docker26"), app)
    wire = world.a.wire() - before
    assert res["layers_sent"] == 2, res  # the two layers above the checkpoints
    assert 20 * MB < wire < 22 * MB + 2 * MB, wire
    assert layers_of(dst, app) == layers_of(src, app)
    partials = dst.docker("image", "ls", "--format", "{{.Repository}}").stdout.decode().split()
    assert "docker-d2d-partial" not in partials
    remove(dst, app)
    remove(src, app)
