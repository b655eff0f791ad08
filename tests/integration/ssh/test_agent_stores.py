"""Pulls whose layers are read straight from the source host's engine storage by the agent (#18):
a second host (a network namespace) behind a real sshd, with an overlay2 Docker, a containerd-store
Docker and Podman. Each engine is reached through a counting proxy socket on that host, so a test
sees whether anything asked for an export. Root reads every store; a sudoer reads them with
--source-sudo (sudo -n, a NOPASSWD rule for python3) and the export without it; a user without
sudo gets the export and one note."""

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
from tests.harness.engines import SPECS, Engine, destroy_all
from tests.harness.images import Builder, image_layers, lacking_bytes, unique
from tests.harness.netns import NetNS
from tests.harness.realistic import build_image
from tests.harness.sshd import SshClientHome, Sshd, install_sudoers, login_user

# Alone, after the others (.ci/test): `sudo -n` on the test host refused the --source-sudo run
# twice in CI while other workers' tests were running (the message was cut short; not reproduced
# alone), and sudo reads what other tests change machine-wide (users, sudoers files).
pytestmark = [pytest.mark.engines, pytest.mark.serial]

KINDS = ["docker26", "docker28c", "podman"]  # one engine of each store kind
SUDOER, PLAIN = "d2dsudoer", "d2dnosudo"
SUDOERS = Path("/etc/sudoers.d/d2d-test-sudoer")
EXPORT = r"GET /v[\d.]+/images/(get|[^/]+/get)"


@dataclass
class Host:
    ns: NetNS
    sshd: Sshd
    engines: dict[str, Engine]
    proxies: dict[str, DelayProxy]  # kind -> the counting socket in front of its engine

    def url(self, kind: str, user: str = "root") -> str:
        return f"ssh://{user}@{self.sshd.address}:{self.sshd.port}{self.proxies[kind].listen}"

    def wire(self) -> int:
        stats = Path(f"/sys/class/net/{self.ns.host_if}/statistics")
        return sum(int((stats / f).read_text()) for f in ("rx_bytes", "tx_bytes"))


@dataclass
class World:
    client: SshClientHome
    host: Host
    local: Engine
    v1: str
    v2: str

    def env(self) -> dict[str, str]:
        return self.client.env(DOCKER_HOST=self.local.host)


@pytest.fixture(scope="module")
def world(builder: Builder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="as", dir="/var/tmp"))  # short: podman's runroot must be < 50 chars
    os.chmod(base, 0o755)  # the ssh users reach the proxy sockets and their session dirs under it
    client = SshClientHome(base / "home")
    client.key()
    ns = NetNS("agentstores", rate="100mbit").up()
    engines: dict[str, Engine] = {}
    proxies: dict[str, DelayProxy] = {}
    local = Engine(SPECS["docker26"], base / "local")
    session = base / "session"
    session.mkdir(mode=0o755)
    srv = Sshd(base / "sshd", address=ns.addr, port=22, netns=ns.name, options={"SetEnv": f"HOME={session}"})
    try:
        for kind in KINDS:
            engines[kind] = Engine(SPECS[kind], base / kind)
            engines[kind].start(netns=ns.name)
            (base / "sockets").mkdir(mode=0o755, exist_ok=True)
            proxies[kind] = DelayProxy(str(engines[kind].socket), 0, listen=str(base / "sockets" / kind)).start()
        local.start()
        for user in (SUDOER, PLAIN):
            login_user(user)
        install_sudoers(SUDOERS.name, f"{SUDOER} ALL=(root) NOPASSWD: /usr/bin/python3\n")
        key = client.ssh / "id_ed25519"
        srv.start({"root": [key], SUDOER: [key], PLAIN: [key]})
        client.trust(srv)
        work = tmp_path_factory.mktemp("asimages")
        name = unique("agentstore")
        v1, v2 = f"{name}:1", f"{name}:2"
        build_image(builder.engine, work, f"{name}-base:1", None, 8, 0)
        build_image(builder.engine, work, v1, f"{name}-base:1", 3, 8)
        # The update: its own content (real files in windows of the walk may repeat a layer's).
        builder.build(v2, v1, ["COPY u /u"], {"u": os.urandom(4 << 20)})
        for engine in engines.values():
            builder.place(engine, v2)
        yield World(client, Host(ns, srv, engines, proxies), local, v1, v2)
    finally:
        SUDOERS.unlink(missing_ok=True)
        srv.stop()
        for proxy in proxies.values():
            proxy.stop()
        destroy_all([local, *engines.values()])
        ns.down()
        shutil.rmtree(base, ignore_errors=True)


def pull(world: World, kind: str, *extra: str, user: str = "root") -> tuple[dict[str, Any], list[str], str]:
    """Pull the update from the host's `kind` engine into the local engine, which holds the first
    version; the result, the notes and the debug lines."""
    ref = world.v2 if world.host.engines[kind].spec.kind == "docker" else f"localhost/{world.v2}"
    proc = run_d2d("pull", world.host.url(kind, user), ref, "--json", "--debug", *extra, env=world.env())
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    result = next(e for e in events if e["event"] == "result")
    assert image_layers(world.local, ref) == image_layers(world.host.engines[kind], ref)
    return result, [e["message"] for e in events if e["event"] == "note"], proc.stderr


@pytest.fixture
def fresh(world: World) -> Iterator[World]:
    """The local engine holds the first version only; the proxies' counts start at 0."""
    for proxy in world.host.proxies.values():
        proxy.requests.clear()
    yield world
    for ref in (world.v2, f"localhost/{world.v2}"):
        world.local.docker("rmi", ref, check=False)


def _place_v1(world: World, builder: Builder) -> None:
    if world.local.docker("image", "inspect", world.v1, check=False).returncode != 0:
        builder.place(world.local, world.v1)


def reads(result: dict[str, Any]) -> dict[str, int]:
    return dict(result["layers_read"])


@pytest.mark.parametrize("kind", KINDS)
def test_root_reads_only_the_missing_layer_from_the_hosts_store(fresh: World, builder: Builder, kind: str) -> None:
    world = fresh
    _place_v1(world, builder)
    src = world.host.engines[kind]
    ref = world.v2 if src.spec.kind == "docker" else f"localhost/{world.v2}"
    expected = lacking_bytes(src, world.local, ref)
    before = world.host.wire()
    result, notes, log = pull(world, kind)
    wire = world.host.wire() - before
    assert world.host.proxies[kind].count(EXPORT) == 0, world.host.proxies[kind].requests
    assert reads(result) == {"store": 0, "agent-store": 1, "export": 0}, log
    assert result["bytes_sent"] == expected and notes == []
    assert "the helper on its host reads layers from the" in log and ": read from agent-store" in log, log
    assert wire < expected + (2 << 20)  # only that layer (zstd) crossed the link, and the API's chatter


def test_a_sudoer_reads_the_store_with_source_sudo_and_the_export_without(fresh: World, builder: Builder) -> None:
    world = fresh
    _place_v1(world, builder)
    proxy = world.host.proxies["docker26"]
    result, notes, log = pull(world, "docker26", user=SUDOER)
    assert reads(result) == {"store": 0, "agent-store": 0, "export": 1} and notes == []
    why = [line for line in log.splitlines() if "the helper reads its export:" in line]
    assert len(why) == 1, log
    assert "is not readable by this user; run as root (an ssh source's host: --source-sudo)" in why[0]
    assert proxy.count(EXPORT) == 1
    world.local.docker("rmi", world.v2)
    proxy.requests.clear()

    result, notes, log = pull(world, "docker26", "--source-sudo", user=SUDOER)
    assert reads(result) == {"store": 0, "agent-store": 1, "export": 0} and notes == [], (notes, log)
    assert proxy.count(EXPORT) == 0


def test_a_user_without_sudo_gets_the_export_and_one_note(fresh: World, builder: Builder) -> None:
    world = fresh
    _place_v1(world, builder)
    result, notes, _ = pull(world, "docker28c", "--source-sudo", user=PLAIN)
    assert reads(result) == {"store": 0, "agent-store": 0, "export": 1}
    assert len(notes) == 1 and notes[0].startswith("--source-sudo: `sudo -n` on "), notes
    assert "refused to run python3" in notes[0] and "NOPASSWD" in notes[0]
    assert world.host.proxies["docker28c"].count(EXPORT) == 1


def test_a_layer_changed_mid_read_on_the_host_comes_from_the_export(fresh: World, builder: Builder) -> None:
    """The agent stops in the middle of the layer (a file became a symlink to the same bytes: the
    engine's export still reads it right, the store reader follows no link); the load gets a body
    cut short and makes nothing, and the agent runs again on the export, with one note."""
    world = fresh
    _place_v1(world, builder)
    src = world.host.engines["docker26"]
    with _symlinked_largest_file(src, world.v2):
        result, notes, log = pull(world, "docker26")
    assert reads(result) == {"store": 0, "agent-store": 0, "export": 1}, log
    assert len(notes) == 1 and "is a symlink in" in notes[0] and "again from its export" in notes[0], notes
    assert world.host.proxies["docker26"].count(EXPORT) == 1
    assert result["tagged"] == [world.v2]


class _symlinked_largest_file:
    def __init__(self, engine: Engine, ref: str) -> None:
        info = json.loads(engine.docker("image", "inspect", ref).stdout)[0]
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(engine.socket)), base_url="http://e") as c:
            store = probe(c.get("/info").json()).store
        assert store is not None
        stored = store.image(info["Id"])
        diff = Path(stored.layer(len(stored.diff_ids) - 1).location)
        files = [p for p in diff.rglob("*") if p.is_file() and not p.is_symlink()]
        self.target = max(files, key=lambda p: p.stat().st_size)
        self.moved = self.target.with_name(self.target.name + ".d2d-moved")

    def __enter__(self) -> None:
        self.target.rename(self.moved)
        self.target.symlink_to(self.moved)

    def __exit__(self, *exc: object) -> None:
        self.target.unlink()
        self.moved.rename(self.target)
