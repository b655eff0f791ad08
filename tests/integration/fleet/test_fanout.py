"""One export to several destinations: each gets only what it lacks, the source is read once, and a
failing destination does not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, image_exists, image_layers, unique
from tests.harness.netns import NetNS
from tests.harness.registry import Registry
from tests.harness.sshd import SshClientHome, Sshd

from ..helpers import random_file

pytestmark = pytest.mark.engines


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def results_by_host(evs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["destination"]: e for e in evs if e["event"] == "result"}


def image_id(engine: Engine, ref: str) -> str:
    return engine.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.decode().strip()


def read_once(export_bytes: int, engine: Engine, ref: str) -> bool:
    """The bytes read from the source are one export's (`docker save` by tag differs by a few
    kB of metadata from our export by id), not one per destination."""
    return abs(export_bytes - len(engine.docker("save", ref).stdout)) < 16_384


def test_one_export_to_three_kinds_and_a_dead_one(engines: dict[str, Engine], builder: Builder) -> None:
    src = engines["docker20"]
    base = builder.base(unique("base") + ":1", size=300_000)
    app = unique("fan") + ":1"
    builder.build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(2_000_000), "b": random_file(1_000_000)})
    builder.place(src, app)
    holds_base = engines["docker26"]
    builder.place(holds_base, base)
    dests = [engines["docker26"], engines["docker26c"], engines["podman"]]
    dead = "unix:///nonexistent/engine.sock"

    # The export shared by every destination (a store-readable source reads its store instead: below)
    args = ("--layers-from", "export")
    proc = run_d2d("copy", "--json", *args, "-s", src.host, "-d", ",".join(d.host for d in dests), "-d", dead, app)

    assert proc.returncode == 1, proc.stderr
    assert "1 of 4 destinations failed" in proc.stderr
    assert f"destination {dead}" in proc.stderr
    evs = events(proc.stdout)
    results = results_by_host(evs)
    assert set(results) == {*(d.host for d in dests), dead}
    assert "error" in results[dead]
    layers = image_layers(src, app)
    for dst in dests:
        assert image_exists(dst, app), dst.spec.name
        assert image_layers(dst, app) == layers
        assert results[dst.host]["tagged"] == [app]
    # Each destination got what it lacked: the one holding the base got two layers, the others three.
    assert results[holds_base.host]["layers_sent"] == 2
    assert results[engines["podman"].host]["layers_sent"] == 3
    assert results[engines["docker26"].host]["bytes_sent"] < results[engines["podman"].host]["bytes_sent"]
    # The source was read once, not once per destination.
    fleet = next(e for e in evs if e["event"] == "fleet")
    assert fleet["failed"] == 1 and fleet["destinations"] == 4
    assert read_once(fleet["export_bytes"], src, app)


def test_destinations_needing_different_images_get_only_their_own(engines: dict[str, Engine], builder: Builder) -> None:
    src = engines["docker26"]
    base = builder.base(unique("base") + ":1")
    one, two = unique("one") + ":1", unique("two") + ":1"
    builder.build(one, base, ["COPY a /a"], {"a": random_file(200_000)})
    builder.build(two, base, ["COPY b /b"], {"b": random_file(300_000)})
    builder.place(src, one, two)
    has_one, has_nothing = engines["docker20-twin"], engines["podman-twin"]
    builder.place(has_one, one)
    before = set(has_one.docker("images", "-q", "--no-trunc").stdout.decode().split())

    proc = run_d2d("copy", "--json", "-s", src.host, "-d", f"{has_one.host},{has_nothing.host}", one, two)

    assert proc.returncode == 0, proc.stderr
    results = results_by_host(events(proc.stdout))
    assert results[has_one.host]["layers_sent"] == 1  # only two's own layer
    assert results[has_nothing.host]["layers_sent"] == 3
    after = set(has_one.docker("images", "-q", "--no-trunc").stdout.decode().split())
    assert len(after - before) == 1  # two, and no stray copy of anything else
    for ref in (one, two):
        assert image_layers(has_nothing, ref) == image_layers(src, ref)


def test_each_host_has_its_own_time(engines: dict[str, Engine], builder: Builder) -> None:
    """The table's time is each host's own: one that holds the image is done long before one
    behind a slow link that gets all of it (it showed the whole run's time for every host)."""
    src = engines["docker26"]
    app = builder.base(unique("times") + ":1", size=4_000_000)
    builder.place(src, app)
    holds, lacks = engines["docker20-twin"], engines["podman-twin"]
    builder.place(holds, app)
    slow = DelayProxy(str(lacks.socket), delay=0, rate=1_000_000).start()  # about 4 s for the image
    try:
        proc = run_d2d("copy", "--json", "-s", src.host, "-d", f"{holds.host},{slow.host}", app)
    finally:
        slow.stop()

    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    results = results_by_host(evs)
    fleet = next(e for e in evs if e["event"] == "fleet")
    assert results[holds.host]["elapsed"] + 2 < results[slow.host]["elapsed"] <= fleet["elapsed"], results


def test_push_to_several_through_the_plugin_form_prints_a_table(engines: dict[str, Engine], builder: Builder) -> None:
    src = engines["docker20"]
    app = builder.base(unique("tbl") + ":1", size=100_000)
    builder.place(src, app)
    a, b = engines["docker20-twin"], engines["docker26-twin"]
    proc = run_d2d("push", f"{a.host},{b.host}", app, env={"DOCKER_HOST": src.host})
    assert proc.returncode == 0, proc.stderr
    assert "2 destinations: 2 ok, 0 failed" in proc.stdout
    assert f"[{a.host}]" in proc.stderr and f"[{b.host}]" in proc.stderr
    for dst in (a, b):
        assert image_exists(dst, app)


def test_destinations_sent_the_same_bytes_share_one_stream(engines: dict[str, Engine], builder: Builder) -> None:
    """Two destinations of one kind that lack the same layers are sent one rewrite of the export;
    a third of another kind gets a stream of its own. Checkpointed (the harder case: each reader
    replays the cuts and the barriers; one-archive streams are shared in the other fleet tests and
    both are in tests/unit/test_shared_rewrite.py). Each ends with exactly the source's image and
    without partial images."""
    src = engines["docker20"]
    base = builder.base(unique("base") + ":1", size=200_000)
    app = unique("same") + ":1"
    files = {name: random_file(1_500_000) for name in "abc"}
    builder.build(app, base, [f"COPY {n} /{n}" for n in files], files)
    builder.place(src, app)
    same = [engines["docker26-twin"], engines["docker26"]]
    other = engines["podman-twin"]
    for dst in (*same, other):
        builder.place(dst, base)

    proc = run_d2d(
        "copy",
        "--json",
        "--checkpoint",
        "1MB",
        "-s",
        src.host,
        "-d",
        ",".join(d.host for d in (*same, other)),
        app,
    )

    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    results = results_by_host(evs)
    fleet = next(e for e in evs if e["event"] == "fleet")
    assert fleet["streams"] == 2, fleet
    layers = image_layers(src, app)
    for dst in (*same, other):
        assert image_layers(dst, app) == layers, dst.spec.name
        assert results[dst.host]["layers_sent"] == 3
        partials = dst.docker("images", "-q", "docker-d2d-partial").stdout.split()
        assert partials == [], f"{dst.spec.name} kept partial images"
    wire = [results[d.host]["wire_bytes"] for d in same]
    assert wire[0] == wire[1] > 4_000_000  # the same stream, three incompressible 1.5 MB layers


def test_ctrl_c_stops_every_destination_of_a_shared_stream(
    tmp_path: Path, engines: dict[str, Engine], builder: Builder
) -> None:
    """Ctrl-C while two destinations read one shared stream over slow links: both stop at once,
    neither is tagged, the spool dir is left empty and the exit status is 130. Started with SIGINT
    ignored, as a script's background job is: the interrupt counts all the same."""
    src = engines["docker20"]
    app = unique("intr") + ":1"
    builder.build(app, builder.base(unique("base") + ":1", size=100_000), ["COPY a /a"], {"a": random_file(8_000_000)})
    builder.place(src, app)
    dests = [engines["docker26"], engines["docker26-twin"]]
    proxies = [DelayProxy(str(d.socket), delay=0.0, rate=2_000_000).start() for d in dests]  # ~4 s each
    spool = tmp_path / "spool"
    spool.mkdir()
    try:
        cmd = [d2d_path(), "copy", "--json", "--spool-dir", str(spool), "-s", src.host]
        cmd += [a for p in proxies for a in ("-d", p.host)] + [app]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        assert proc.stdout is not None
        sending = 0
        for line in proc.stdout:  # both destinations are sending
            event = json.loads(line)
            sending += event.get("event") == "phase" and event.get("phase") == "sending"
            if sending == 2:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        for p in proxies:
            p.stop()
    assert proc.returncode == 130, err
    assert stopped_in < 10, f"took {stopped_in:.1f}s to stop"
    assert "Traceback" not in err
    for dst in dests:
        assert not image_exists(dst, app), (dst.spec.name, err, out[-3000:])
    assert list(spool.iterdir()) == []


# --- far hosts: three namespaces, each with sshd and an engine of another kind, separately shaped --


@dataclass
class FarHosts:
    client: SshClientHome
    hosts: list[tuple[str, Engine]]  # ssh URL, engine
    namespaces: list[NetNS]
    registry: Registry  # reachable from every namespace at `registry_host`
    registry_host: str


@pytest.fixture(scope="module")
def far_hosts() -> Iterator[FarHosts]:
    work = Path(tempfile.mkdtemp(prefix="d2dfo-", dir="/var/tmp"))  # podman's runroot must stay short
    client = SshClientHome(work / "home")
    client.key()
    hosts: list[tuple[NetNS, Engine, Sshd]] = []
    kinds = [("docker20", "100mbit"), ("docker26c", "50mbit"), ("podman", "20mbit")]
    namespaces = [NetNS(f"fanout{i}", rate=rate) for i, (_, rate) in enumerate(kinds)]
    registry = Registry(work / "registry", listen="0.0.0.0")
    try:
        for ns in namespaces:
            ns.up()
            # Every host reaches the others' host-side addresses (the registry's) through this host.
            subprocess.run(["ip", "-n", ns.name, "route", "add", "default", "via", ns.host_addr], check=True)
        registry.start()
        registry_host = f"{namespaces[0].host_addr}:{registry.port}"
        for i, ((kind, _), ns) in enumerate(zip(kinds, namespaces)):
            engine = Engine(SPECS[kind], work / f"engine{i}", insecure_registries=(registry_host,))
            sshd = Sshd(work / f"sshd{i}", address=ns.addr, port=22, netns=ns.name)
            hosts.append((ns, engine, sshd))
            extra = (f"--insecure-registry={registry_host}",) if SPECS[kind].kind == "docker" else ()
            engine.start(netns=ns.name, extra_args=extra)
            sshd.start({"root": [client.ssh / "id_ed25519"]})
            client.trust(sshd)
        yield FarHosts(
            client,
            [(f"ssh://root@{ns.addr}{engine.socket}", engine) for ns, engine, _ in hosts],
            namespaces,
            registry,
            registry_host,
        )
    finally:
        for _, engine, sshd in hosts:
            sshd.stop()
            engine.destroy()
        registry.stop()
        for ns in namespaces:
            ns.down()
        shutil.rmtree(work, ignore_errors=True)


def test_far_hosts_via_a_registry(engines: dict[str, Engine], builder: Builder, far_hosts: FarHosts) -> None:
    src = engines["docker26"]
    app = unique("farvia") + ":1"
    base = builder.base(unique("base") + ":1", size=100_000)
    builder.build(app, base, ["COPY a /a"], {"a": random_file(3_000_000)})
    builder.place(src, app)
    urls = ",".join(url for url, _ in far_hosts.hosts)
    via = f"http://{far_hosts.registry_host}"
    proc = run_d2d("copy", "--json", "--via", via, "-s", src.host, "-d", urls, app, env=far_hosts.client.env())
    assert proc.returncode == 0, proc.stderr
    results = results_by_host(events(proc.stdout))
    for url, engine in far_hosts.hosts:
        assert results[url]["tagged"] == [app], results[url]
        assert image_layers(engine, app) == image_layers(src, app)
        assert not image_exists(engine, f"{far_hosts.registry_host}/docker-d2d:d2d-{image_id(src, app)[7:]}")
    # Pushed once: the registry holds the image's blobs once, whatever the number of hosts.
    assert 3_000_000 < far_hosts.registry.blob_bytes() < 3_300_000


def test_far_hosts_one_failing_mid_transfer(engines: dict[str, Engine], builder: Builder, far_hosts: FarHosts) -> None:
    client, hosts = far_hosts.client, far_hosts.hosts
    src = engines["docker26"]
    app = unique("far") + ":1"
    base = builder.base(unique("base") + ":1", size=100_000)
    builder.build(app, base, ["COPY a /a"], {"a": random_file(12_000_000)})  # incompressible: ~5 s at 20 Mbit
    builder.place(src, app)
    (fast_url, _), (mid_url, _), (slow_url, slow) = hosts
    cmd = [d2d_path(), "copy", "--json", "-s", src.host, "-d", f"{fast_url},{mid_url},{slow_url}", app]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client.env())

    def kill_slow_engine_mid_transfer() -> None:
        time.sleep(2.5)
        assert slow.proc is not None
        os.killpg(slow.proc.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_slow_engine_mid_transfer)
    killer.start()
    out, err = proc.communicate(timeout=180)
    killer.join()

    assert proc.returncode == 1, err
    assert "1 of 3 destinations failed" in err
    results = results_by_host(events(out))
    assert "error" in results[slow_url]
    assert "Traceback" not in err
    for url, engine in hosts[:2]:
        assert results[url]["tagged"] == [app], results[url]
        assert image_layers(engine, app) == image_layers(src, app)
    fleet = next(e for e in events(out) if e["event"] == "fleet")
    assert fleet["export_bytes"] == 0 and fleet["store_bytes"] > 12_000_000, fleet  # from its store, no export


def test_layers_for_several_destinations_from_the_sources_store(engines: dict[str, Engine], builder: Builder) -> None:
    """A source whose storage can be read here exports nothing: each distinct stream reads the
    layers it sends from the store (two destinations lacking the same share one), every one verified."""
    src = engines["docker28"]
    base = builder.base(unique("base") + ":1", size=200_000)
    app = unique("fromstore") + ":1"
    builder.build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(1_000_000), "b": random_file(500_000)})
    builder.place(src, app)
    same = [engines["docker26-twin"], engines["docker26"]]
    other = engines["podman-twin"]
    for dst in (*same, other):
        builder.place(dst, base)
    proxy = DelayProxy(str(src.socket), 0).start()
    try:
        proc = run_d2d("copy", "--json", "-s", proxy.host, "-d", ",".join(d.host for d in (*same, other)), app)
        assert proc.returncode == 0, proc.stderr
        assert proxy.count(r"GET /v[\d.]+/images/(get|[^/]+/get)") == 0, proxy.requests
    finally:
        proxy.stop()
    evs = events(proc.stdout)
    results = results_by_host(evs)
    fleet = next(e for e in evs if e["event"] == "fleet")
    assert fleet["streams"] == 2 and fleet["export_bytes"] == 0, fleet
    assert fleet["store_bytes"] == 2 * results[other.host]["bytes_sent"]  # two streams, the same layers each
    for dst in (*same, other):
        assert image_layers(dst, app) == image_layers(src, app), dst.spec.name
        assert results[dst.host]["layers_read"] == {"store": 2, "agent-store": 0, "export": 0}


def test_spool_is_removed(tmp_path: Path, engines: dict[str, Engine], builder: Builder) -> None:
    src = engines["docker20"]
    app = builder.base(unique("spool") + ":1", size=200_000)
    builder.place(src, app)
    spool = tmp_path / "spool"
    spool.mkdir()
    a, b = engines["docker26-twin"], engines["docker20-twin"]
    proc = run_d2d("copy", "-q", "--spool-dir", str(spool), "-s", src.host, "-d", a.host, "-d", b.host, app)
    assert proc.returncode == 0, proc.stderr
    assert list(spool.iterdir()) == []
