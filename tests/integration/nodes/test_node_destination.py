"""Kubernetes nodes as destinations (issue 19): a real containerd without Docker, forky's 2.1
through its socket (containerd:///) and trixie's 1.7 and forky's 2.1 in network-namespace hosts
behind sshd (containerd+ssh://): cold, update, no-op, a base the node pulled from a registry
(only what it lacked travels), Ctrl-C and a dropped link (no image under the name, nothing of
the run's left, a rerun succeeds)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.images import Builder, export_layer_sizes, image_layers, unique
from tests.harness.netns import NetNS
from tests.harness.nodes import Node, bin_dir
from tests.harness.registry import Registry
from tests.harness.sshd import SshClientHome, install_sudoers, login_user
from tests.integration.helpers import random_file

pytestmark = pytest.mark.engines

IMPORT_PREFIX = "docker-d2d-import/"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> SshClientHome:
    return SshClientHome(tmp_path_factory.mktemp("node-client"))


@pytest.fixture(scope="module")
def local_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = Node(tmp_path_factory.mktemp("node-local"), "2.1")
    try:
        yield node.start()
    finally:
        node.stop()


@pytest.fixture(scope="module", params=["1.7", "2.1"])
def ssh_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, client: SshClientHome
) -> Iterator[tuple[Node, str]]:
    """A node host on a 100 Mbit link: (node, its containerd+ssh:// endpoint)."""
    ns = NetNS("node" + request.param.replace(".", ""), rate="100mbit").up()
    node = Node(tmp_path_factory.mktemp("node-ssh"), request.param, netns=ns)
    try:
        node.start()
        yield node, node.endpoint_ssh(client)
    finally:
        node.stop()
        ns.down()


@pytest.fixture(scope="module")
def far_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry the namespace hosts reach (on every address of this host)."""
    with Registry(tmp_path_factory.mktemp("node-registry"), listen="0.0.0.0") as reg:
        yield reg


def _copy(
    src: str, dst: str, *images: str, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    proc = run_d2d("copy", "-s", src, "-d", dst, "--json", *extra, *images, env=env)
    assert proc.returncode == 0, f"copy failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = next(e for e in events if e["event"] == "result")
    return result


def _app(builder: Builder, prefix: str, size: int = 2_000_000) -> tuple[str, str, str]:
    """A base and two versions of an app on it (each a new top layer): base, app:1, app:2."""
    base = builder.base(unique(prefix + "-base") + ":1", size=1_000_000)
    app = unique(prefix)
    builder.build(f"{app}:1", base, ["COPY a /a"], {"a": random_file(size)})
    builder.build(f"{app}:2", base, ["COPY b /b"], {"b": random_file(size // 2)})
    return base, f"{app}:1", f"{app}:2"


def _cri(name: str) -> str:
    return f"docker.io/library/{name}"


def _assert_usable(node: Node, name: str, builder: Builder, ref: str) -> None:
    """Under the CRI's name, complete, unpacked, every layer's snapshot committed; nothing of the run left."""
    images = node.images()
    assert _cri(name) in images, images
    assert node.check(_cri(name)).startswith("complete") and node.check(_cri(name)).endswith("unpacked=true")
    from tests.harness.images import chain_ids

    snapshots = node.snapshots()
    assert all(snapshots.get(c) == "Committed" for c in chain_ids(image_layers(builder.engine, ref)))
    assert not [n for n in images if n.startswith(IMPORT_PREFIX)], images


def test_local_socket_cold_update_noop(builder: Builder, local_node: Node) -> None:
    _, app1, app2 = _app(builder, "nlocal")
    dst = f"containerd://{local_node.socket}"
    dry = run_d2d("copy", "--dry-run", "-s", builder.engine.host, "-d", dst, app1)
    assert dry.returncode == 0 and _cri(app1) not in local_node.images(), dry.stderr
    cold = _copy(builder.engine.host, dst, app1)
    assert cold["layers_sent"] == 2 and cold["tagged"] == [app1]
    _assert_usable(local_node, app1, builder, app1)
    update = _copy(builder.engine.host, dst, app2)
    assert update["layers_sent"] == 1 and update["layers_skipped"] == 1
    assert update["bytes_sent"] == export_layer_sizes(builder.engine, app2)[-1]
    _assert_usable(local_node, app2, builder, app2)
    noop = _copy(builder.engine.host, dst, app2)
    assert noop["layers_sent"] == 0 and noop["bytes_sent"] == 0
    # Under another name: tagged, nothing sent.
    builder.engine.docker("tag", app2, app2.replace(":2", ":again"))
    again = _copy(builder.engine.host, dst, app2.replace(":2", ":again"))
    assert again["layers_sent"] == 0
    assert _cri(app2.replace(":2", ":again")) in local_node.images()


def test_over_ssh_base_pulled_from_registry(
    builder: Builder, ssh_node: tuple[Node, str], far_registry: Registry, client: SshClientHome
) -> None:
    """The node pulled the base from a registry (gzip blobs): only the app's layer travels, named
    against the blobs the node holds; bytes sent = the export size of the one layer it lacked."""
    node, endpoint = ssh_node
    base, app1, _ = _app(builder, "nreg")
    ref = far_registry.push(builder.engine, base)
    assert node.netns is not None
    there = ref.replace("127.0.0.1", node.netns.host_addr)
    pulled = node.ctr("images", "pull", "--plain-http", there, check=False)
    assert pulled.returncode == 0, pulled.stderr
    lacking = export_layer_sizes(builder.engine, app1)[-1]
    result = _copy(builder.engine.host, endpoint, app1, env=client.env())
    assert result["layers_sent"] == 1 and result["layers_skipped"] == 1
    assert result["bytes_sent"] == lacking
    _assert_usable(node, app1, builder, app1)
    noop = _copy(builder.engine.host, endpoint, app1, env=client.env())
    assert noop["layers_sent"] == 0


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([d2d_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_sending(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("status") == "sending":
            return
    raise AssertionError(f"never sending: {proc.stderr.read() if proc.stderr else ''}")


def _big(builder: Builder, prefix: str) -> str:
    base = builder.base(unique(prefix + "-base") + ":1")
    name = unique(prefix) + ":1"
    builder.build(name, base, ["COPY a /a"], {"a": random_file(40_000_000)})
    return name


def test_ctrl_c_leaves_no_image(builder: Builder, ssh_node: tuple[Node, str], client: SshClientHome) -> None:
    node, endpoint = ssh_node
    app = _big(builder, "nint")
    proc = _start("copy", "-D", "--json", "-s", builder.engine.host, "-d", endpoint, app, env=client.env())
    _wait_sending(proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        # Once the node has the whole archive the interrupt waits for its import to end (then
        # removes it): on a busy machine that is the node's unpacking time.
        _, err = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"still running 150 s after SIGINT: {err}") from None
    assert proc.returncode == 130, err
    time.sleep(1.0)  # an import the node was still reading ends with its stdin
    images = node.images()
    assert _cri(app) not in images and not [n for n in images if n.startswith(IMPORT_PREFIX)], images
    result = _copy(builder.engine.host, endpoint, app, env=client.env())
    assert result["tagged"] == [app]
    _assert_usable(node, app, builder, app)


def test_dropped_link_leaves_no_image(builder: Builder, ssh_node: tuple[Node, str], client: SshClientHome) -> None:
    node, endpoint = ssh_node
    assert node.netns is not None
    app = _big(builder, "ndrop")
    env = client.env()
    proc = _start("copy", "--json", "--stall-timeout", "6", "-s", builder.engine.host, "-d", endpoint, app, env=env)
    try:
        _wait_sending(proc)
        time.sleep(1.0)
        node.netns.link(False)
        _, err = proc.communicate(timeout=90)
    finally:
        node.netns.link(True)
    assert proc.returncode == 1, err
    assert "destination" in err and "Traceback" not in err, err
    time.sleep(1.0)
    images = node.images()
    assert _cri(app) not in images, images
    result = _copy(builder.engine.host, endpoint, app, env=env)
    assert result["tagged"] == [app]
    _assert_usable(node, app, builder, app)
    assert not [n for n in node.images() if n.startswith(IMPORT_PREFIX)]


def test_unreachable_socket_is_one_line(builder: Builder, tmp_path: Path) -> None:
    app = builder.base(unique("nmiss") + ":1")
    proc = run_d2d("push", f"containerd://{tmp_path}/none.sock", app, env={"DOCKER_HOST": builder.engine.host})
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("docker-d2d:")]
    assert len(lines) == 1 and "destination" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert "no containerd socket at" in lines[0], lines
    assert os.path.exists(tmp_path)


@pytest.fixture(scope="module")
def k3s_like_host(tmp_path_factory: pytest.TempPathFactory, client: SshClientHome) -> Iterator[tuple[Node, str]]:
    """A host whose sessions see only k3s's containerd socket (no Docker, no Podman): (node, `root@ADDR:PORT`)."""
    ns = NetNS("nodek3s").up()
    node = Node(tmp_path_factory.mktemp("node-k3s"), "2.1", netns=ns)
    try:
        node.start()
        yield node, node.ssh(client, at="/run/k3s/containerd/containerd.sock")
    finally:
        node.stop()
        ns.down()


def test_bare_ssh_host_with_only_containerd_is_a_node(
    builder: Builder, k3s_like_host: tuple[Node, str], client: SshClientHome
) -> None:
    node, host = k3s_like_host
    _, app1, _ = _app(builder, "nbare")
    proc = run_d2d("copy", "-s", builder.engine.host, "-d", host, "--json", app1, env=client.env())
    assert proc.returncode == 0, proc.stderr + proc.stdout
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    notes = [e["message"] for e in events if e["event"] == "note" and "containerd" in e["message"]]
    assert len(notes) == 1 and "/run/k3s/containerd/containerd.sock" in notes[0], events
    result = next(e for e in events if e["event"] == "result")
    assert result["layers_sent"] == 2 and result["tagged"] == [app1]
    _assert_usable(node, app1, builder, app1)


def test_a_layer_held_only_unpacked_is_sent(builder: Builder, local_node: Node) -> None:
    """A node that discarded a layer's blob once unpacked (the CRI's discard_unpacked_layers) holds
    its snapshot but not its content: that layer travels, and the image ends complete."""
    _, app1, app2 = _app(builder, "ndisc")
    dst = f"containerd://{local_node.socket}"
    _copy(builder.engine.host, dst, app1)
    base_layer = image_layers(builder.engine, app1)[0]
    assert base_layer in local_node.content()
    local_node.ctr("content", "rm", base_layer)
    assert base_layer not in local_node.content()
    result = _copy(builder.engine.host, dst, app2)
    assert result["layers_sent"] == 2 and result["layers_skipped"] == 0
    assert result["bytes_sent"] == sum(export_layer_sizes(builder.engine, app2))
    _assert_usable(local_node, app2, builder, app2)
    assert base_layer in local_node.content()


def test_via_a_registry_the_node_pulls_from(
    builder: Builder, ssh_node: tuple[Node, str], far_registry: Registry, client: SshClientHome
) -> None:
    """--via: the blobs go to the registry once, the node pulls them (ctr images pull, plain http as
    the user said), the image gets the CRI's name and the registry's name goes again."""
    node, endpoint = ssh_node
    assert node.netns is not None
    _, app1, _ = _app(builder, "nvia")
    via = f"http://{node.netns.host_addr}:{far_registry.port}"
    proc = run_d2d("copy", "--json", "--via", via, "-s", builder.engine.host, "-d", endpoint, app1, env=client.env())
    assert proc.returncode == 0, proc.stderr + proc.stdout
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next(e for e in events if e["event"] == "result")
    assert result["tagged"] == [app1], result
    images = node.images()
    assert _cri(app1) in images and not [n for n in images if "/docker-d2d:" in n], images  # the registry's name
    assert node.check(_cri(app1)).endswith("unpacked=true")


SUDO_USER = "d2dnodesudo"


@pytest.fixture(scope="module")
def sudo_node(tmp_path_factory: pytest.TempPathFactory, client: SshClientHome) -> Iterator[tuple[Node, str]]:
    """A node host where the ssh user may not open the socket but may run its ctr through `sudo -n`
    (a sudoers file of this run's own): (node, `containerd+ssh://USER@...`)."""
    login_user(SUDO_USER)
    ctr = bin_dir("2.1") / "ctr"
    sudoers = install_sudoers(
        f"d2d-test-node-{os.getpid()}",
        f'Defaults:{SUDO_USER} secure_path="{ctr.parent}:/usr/bin:/bin"\n{SUDO_USER} ALL=(root) NOPASSWD: {ctr}\n',
    )
    ns = NetNS("nodesudo").up()
    # sshd reads a user's authorized keys as that user: a directory others may enter (pytest's
    # are root's only). The socket itself stays root's (0660): the user cannot open it.
    base = Path(tempfile.mkdtemp(prefix="d2d-node-sudo-", dir="/var/tmp"))
    base.chmod(0o755)
    node = Node(base / "node", "2.1", netns=ns)
    try:
        node.start()
        address = node.ssh(client, users=(SUDO_USER,)).replace("root@", f"{SUDO_USER}@")
        yield node, f"containerd+ssh://{address}{node.socket}"
    finally:
        sudoers.unlink(missing_ok=True)
        node.stop()
        ns.down()
        shutil.rmtree(base, ignore_errors=True)


def test_an_ssh_user_without_the_socket_goes_through_sudo(
    builder: Builder, sudo_node: tuple[Node, str], client: SshClientHome
) -> None:
    node, endpoint = sudo_node
    _, app1, _ = _app(builder, "nsudo")
    proc = run_d2d("copy", "-s", builder.engine.host, "-d", endpoint, "--json", app1, env=client.env())
    assert proc.returncode == 0, proc.stderr + proc.stdout
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert len(notes) == 1 and "sudo -n" in notes[0], notes
    _assert_usable(node, app1, builder, app1)
