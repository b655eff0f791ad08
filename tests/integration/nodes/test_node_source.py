"""A Kubernetes node as the source (issue 19): pulled from into an engine, and copied to another
node; its images are asked for by the names users type (the CRI's docker.io/library/... found)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_layers, unique
from tests.harness.netns import NetNS
from tests.harness.nodes import Node
from tests.harness.registry import Registry
from tests.harness.sshd import SshClientHome
from tests.integration.containerd.store_fixtures import push_multiplatform
from tests.integration.helpers import random_file

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, str, SshClientHome]]:
    """A local node (2.1, by its socket) and a far one (1.7, over ssh): (local, far, far's endpoint, client)."""
    client = SshClientHome(tmp_path_factory.mktemp("src-client"))
    ns = NetNS("nodesrc").up()
    local = Node(tmp_path_factory.mktemp("src-local"), "2.1")
    far = Node(tmp_path_factory.mktemp("src-far"), "1.7", netns=ns)
    try:
        local.start()
        far.start()
        yield local, far, far.endpoint_ssh(client), client
    finally:
        local.stop()
        far.stop()
        ns.down()


def _copy(src: str, dst: str, image: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = run_d2d("copy", "-s", src, "-d", dst, "--json", image, env=env)
    assert proc.returncode == 0, f"copy failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = next(e for e in events if e["event"] == "result")
    return result


def _on_node(builder: Builder, node: Node, prefix: str) -> str:
    base = builder.base(unique(prefix + "-base") + ":1", size=500_000)
    app = unique(prefix) + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(1_000_000)})
    _copy(builder.engine.host, f"containerd://{node.socket}", app)
    return app


def test_pull_from_a_node_into_an_engine(
    builder: Builder, engines: dict[str, Engine], nodes: tuple[Node, Node, str, SshClientHome]
) -> None:
    local, _, _, _ = nodes
    app = _on_node(builder, local, "npull")
    dst = engines["docker26"]
    result = _copy(f"containerd://{local.socket}", dst.host, app)
    assert result["layers_sent"] == 2 and result["tagged"] == [app]
    assert image_layers(dst, app) == image_layers(builder.engine, app)


def test_node_to_node_sends_only_what_the_other_lacks(
    builder: Builder, nodes: tuple[Node, Node, str, SshClientHome]
) -> None:
    local, far, far_endpoint, client = nodes
    app = _on_node(builder, local, "nn")
    first = _copy(f"containerd://{local.socket}", far_endpoint, app, env=client.env())
    assert first["layers_sent"] == 2 and first["tagged"] == [app]
    assert far.check(f"docker.io/library/{app}").startswith("complete")
    # An update on the same base: only its new layer goes from node to node.
    update = app.replace(":1", ":2")
    builder.build(update, app, ["COPY b /b"], {"b": random_file(300_000)})
    _copy(builder.engine.host, f"containerd://{local.socket}", update)
    second = _copy(f"containerd://{local.socket}", far_endpoint, update, env=client.env())
    assert second["layers_sent"] == 1 and second["layers_skipped"] == 2


def test_pull_from_a_node_over_ssh_is_filtered_on_its_host(
    builder: Builder, nodes: tuple[Node, Node, str, SshClientHome]
) -> None:
    """The agent runs the node's `ctr images export` on its host and sends only what the
    destination lacks: the wire carries the one new layer, not the image."""
    local, far, far_endpoint, client = nodes
    app = _on_node(builder, local, "nagent")
    update = app.replace(":1", ":2")
    new_layer = random_file(600_000)
    builder.build(update, app, ["COPY c /c"], {"c": new_layer})
    _copy(builder.engine.host, far_endpoint, update, env=client.env())
    proc = run_d2d(
        "copy", "-D", "-s", far_endpoint, "-d", f"containerd://{local.socket}", "--json", update, env=client.env()
    )
    assert proc.returncode == 0, proc.stderr
    assert "filtering at the source host" in proc.stderr, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next(e for e in events if e["event"] == "result")
    assert result["layers_sent"] == 1 and result["layers_skipped"] == 2 and result["tagged"] == [update]
    assert result["wire_bytes"] < len(new_layer) + 200_000, result  # the image is 2.1 MB of random bytes
    assert local.check(f"docker.io/library/{update}").startswith("complete")


@pytest.fixture(scope="module")
def registry_here(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with Registry(tmp_path_factory.mktemp("src-registry")) as reg:
        yield reg


def test_a_multi_platform_image_at_a_node_sends_its_own_platform(
    engines: dict[str, Engine], nodes: tuple[Node, Node, str, SshClientHome], registry_here: Registry
) -> None:
    """The node pulled a two-platform index (with attestations) for its own platform only: the
    copy names the index, and exactly the amd64 blobs travel, as the node holds them (gzip)."""
    local, _, _, _ = nodes
    repo = unique("nmulti")
    images = {i.platform: i for i in push_multiplatform(registry_here, repo, "1")}
    ref = f"{registry_here.address}/{repo}:1"
    pulled = local.ctr("images", "pull", "--plain-http", "--platform", "linux/amd64", ref, check=False)
    assert pulled.returncode == 0, pulled.stderr
    dst = engines["docker26"]
    result = _copy(f"containerd://{local.socket}", dst.host, ref)
    amd64 = images["linux/amd64"]
    assert result["layers_sent"] == 2 and result["bytes_sent"] == sum(amd64.layer_sizes), result
    assert image_layers(dst, ref) == amd64.diff_ids


def test_an_app_on_a_multi_platform_base_the_node_pulled(
    engines: dict[str, Engine], nodes: tuple[Node, Node, str, SshClientHome], registry_here: Registry
) -> None:
    """The node holds a two-platform base (its own platform's content, gzip, under an index): an
    app built on that base elsewhere sends only its own layer."""
    local, _, _, _ = nodes
    repo = unique("nmbase")
    push_multiplatform(registry_here, repo, "1")
    ref = f"{registry_here.address}/{repo}:1"
    assert local.ctr("images", "pull", "--plain-http", "--platform", "linux/amd64", ref, check=False).returncode == 0
    src = engines["docker26"]
    src.docker("pull", "-q", "--platform", "linux/amd64", ref)
    app = unique("nmapp") + ":1"
    Builder(src).build(app, ref, ["COPY a /a"], {"a": random_file(300_000)})
    result = _copy(src.host, f"containerd://{local.socket}", app)
    assert result["layers_sent"] == 1 and result["layers_skipped"] == 2, result
    assert local.check(f"docker.io/library/{app}").startswith("complete")
