"""kind and k3d clusters (issue 19): node containers running containerd inside the test engine,
labelled as kind and k3d label theirs, reached through that engine's exec; a cluster's one name
fans out to every node (one export), `kind://CLUSTER/NODE` is one node."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_d2d
from tests.harness.images import Builder, export_layer_sizes, unique
from tests.harness.nodes import NodeContainer
from tests.harness.tty import terminal
from tests.integration.cli.test_completion import DOCKER, _env, bash_complete
from tests.integration.helpers import random_file

pytestmark = pytest.mark.engines

IMPORT_PREFIX = "docker-d2d-import/"


@pytest.fixture(scope="module")
def kind_cluster(builder: Builder) -> Iterator[tuple[str, list[NodeContainer]]]:
    cluster = unique("kc")
    nodes = [NodeContainer(builder.engine, cluster, f"{cluster}-{role}") for role in ("control-plane", "worker")]
    try:
        for node in nodes:
            node.start()
        yield cluster, nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def k3d_cluster(builder: Builder) -> Iterator[tuple[str, NodeContainer]]:
    cluster = unique("k3")
    node = NodeContainer(builder.engine, cluster, f"k3d-{cluster}-server-0", tool="k3d", version="1.7")
    try:
        yield cluster, node.start()
    finally:
        node.stop()


def _push(builder: Builder, dest: str, *images: str) -> list[dict[str, Any]]:
    proc = run_d2d("push", "--json", dest, *images, env={"DOCKER_HOST": builder.engine.host})
    assert proc.returncode == 0, f"push failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] in ("result", "fleet")]


def _apps(builder: Builder, prefix: str) -> tuple[str, str]:
    base = builder.base(unique(prefix + "-base") + ":1", size=1_000_000)
    app = unique(prefix)
    builder.build(f"{app}:1", base, ["COPY a /a"], {"a": random_file(1_500_000)})
    builder.build(f"{app}:2", base, ["COPY b /b"], {"b": random_file(700_000)})
    return f"{app}:1", f"{app}:2"


def _holds(node: NodeContainer, name: str) -> bool:
    images = node.images()
    assert not [n for n in images if n.startswith(IMPORT_PREFIX)], images
    return f"docker.io/library/{name}" in images


def test_kind_cluster_by_its_name(builder: Builder, kind_cluster: tuple[str, list[NodeContainer]]) -> None:
    cluster, nodes = kind_cluster
    app1, app2 = _apps(builder, "kapp")
    cold = _push(builder, f"kind://{cluster}", app1)
    results = [e for e in cold if e["event"] == "result"]
    assert sorted(r["destination"] for r in results) == sorted(f"kind://{cluster}/{n.name}" for n in nodes)
    assert all(r["layers_sent"] == 2 for r in results)
    fleet = next(e for e in cold if e["event"] == "fleet")
    assert fleet["failed"] == 0
    assert all(_holds(n, app1) for n in nodes)
    update = [e for e in _push(builder, f"kind://{cluster}", app2) if e["event"] == "result"]
    top = export_layer_sizes(builder.engine, app2)[-1]
    assert all(r["layers_sent"] == 1 and r["bytes_sent"] == top for r in update), update
    assert all(_holds(n, app2) for n in nodes)
    noop = [e for e in _push(builder, f"kind://{cluster}", app2) if e["event"] == "result"]
    assert all(r["layers_sent"] == 0 for r in noop)


def test_one_node_of_a_cluster(builder: Builder, kind_cluster: tuple[str, list[NodeContainer]]) -> None:
    cluster, nodes = kind_cluster
    app1, _ = _apps(builder, "kone")
    [result] = _push(builder, f"kind://{cluster}/{nodes[1].name}", app1)
    assert result["layers_sent"] == 2 and result["tagged"] == [app1]
    assert _holds(nodes[1], app1) and not _holds(nodes[0], app1)


def test_k3d_node_with_containerd_17(builder: Builder, k3d_cluster: tuple[str, NodeContainer]) -> None:
    cluster, node = k3d_cluster
    app1, app2 = _apps(builder, "k3app")
    [cold] = _push(builder, f"k3d://{cluster}", app1)
    assert cold["layers_sent"] == 2
    [update] = _push(builder, f"k3d://{cluster}", app2)
    assert update["layers_sent"] == 1
    assert _holds(node, app1) and _holds(node, app2)


def test_unknown_cluster_is_one_line(builder: Builder) -> None:
    proc = run_d2d("push", "kind://nosuchcluster", "x:1", env={"DOCKER_HOST": builder.engine.host})
    assert proc.returncode == 2, proc.stderr
    assert "io.x-k8s.kind.cluster=nosuchcluster" in proc.stderr and "Traceback" not in proc.stderr


def _plugin_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    run_d2d("plugin", "install", "--dir", str(cfg / "cli-plugins"), check=True)
    return cfg


def test_clusters_complete_in_bash_and_zsh(
    builder: Builder, kind_cluster: tuple[str, list[NodeContainer]], tmp_path: Path
) -> None:
    cluster, nodes = kind_cluster
    cfg = _plugin_config(tmp_path)
    env = {**_env(cfg), "DOCKER_HOST": builder.engine.host}
    script = tmp_path / "docker.bash"
    script.write_text(subprocess.run([DOCKER, "completion", "bash"], capture_output=True, text=True, check=True).stdout)
    words = bash_complete(str(script), "__start_docker", ["docker", "d2d", "push", "kind://"], env)
    # bash breaks words at ':' (COMP_WORDBREAKS): cobra's script answers what follows it, which bash
    # puts after `kind:` on the line.
    assert f"//{cluster}" in words and f"//{cluster}/{nodes[0].name}" in words, words
    schemes = bash_complete(str(script), "__start_docker", ["docker", "d2d", "push", "cont"], env)
    assert "containerd+ssh://" in schemes and "containerd://" in schemes, schemes
    fdir = tmp_path / "zfuncs"
    fdir.mkdir()
    (fdir / "_docker").write_text(
        subprocess.run([DOCKER, "completion", "zsh"], capture_output=True, text=True, check=True).stdout
    )
    screen = _zsh_tab_env(env, fdir, "docker d2d push kind://", (f"kind://{cluster}",))
    assert f"kind://{cluster}" in screen.split("docker d2d push kind://", 1)[-1], screen


def _zsh_tab_env(env: dict[str, str], fdir: Path, line: str, expect: tuple[str, ...]) -> str:
    pairs = [f"{k}={v}" for k, v in env.items() if k in ("PATH", "DOCKER_CONFIG", "HOME", "DOCKER_HOST")]
    with terminal("env", *pairs, "zsh", "-f") as term:
        term.wait_for("#")
        term.send(
            f"fpath=({fdir} $fpath); autoload -U compinit; compinit -u; compdef _docker docker; echo READY", "Enter"
        )
        term.wait_for("\nREADY")
        term.send(line, "Tab")
        deadline = time.monotonic() + 30
        screen = ""
        while time.monotonic() < deadline:
            time.sleep(2)
            screen = term.text()
            if all(e in screen.split(line, 1)[-1] for e in expect):
                return screen
            term.send("Tab")
        return screen


def test_node_to_node_in_a_cluster(builder: Builder, kind_cluster: tuple[str, list[NodeContainer]]) -> None:
    """A node container as the source (its `ctr images export` streamed through the exec)."""
    cluster, nodes = kind_cluster
    app1, _ = _apps(builder, "kn2n")
    _push(builder, f"kind://{cluster}/{nodes[0].name}", app1)
    proc = run_d2d(
        "copy", "--json", "-s", f"kind://{cluster}/{nodes[0].name}", "-d", f"kind://{cluster}/{nodes[1].name}", app1,
        env={"DOCKER_HOST": builder.engine.host},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _holds(nodes[1], app1)
    whole = run_d2d("pull", f"kind://{cluster}", app1, env={"DOCKER_HOST": builder.engine.host})
    assert whole.returncode == 2 and f"kind://{cluster}/NODE" in whole.stderr, whole.stderr
