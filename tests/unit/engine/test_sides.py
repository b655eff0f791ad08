"""Which engine a side is, and a cluster's name as its node containers."""

from __future__ import annotations

import pytest

from docker_d2d.endpoint import Scheme, parse_endpoint
from docker_d2d.engine.client import Engine
from docker_d2d.engine.containerd.node import NodeEngine
from docker_d2d.engine.pool import SSHPool
from docker_d2d.engine.sides import expand_clusters, open_side
from docker_d2d.engine.watch import Timeouts
from docker_d2d.errors import EndpointError


class FakeLocal:
    def __init__(self, containers: dict[str, list[str]]) -> None:
        self.by_label = containers
        self.asked: list[str] = []

    def containers(self, label: str) -> list[str]:
        self.asked.append(label)
        return self.by_label.get(label, [])


def test_a_cluster_is_its_node_containers() -> None:
    local = FakeLocal({"io.x-k8s.kind.cluster=dev": ["dev-worker", "dev-control-plane"]})
    given = [parse_endpoint("kind://dev"), parse_endpoint("ssh://other"), parse_endpoint("k3d://x/k3d-x-server-0")]
    out = expand_clusters(given, local)  # type: ignore[arg-type]
    assert [str(e) for e in out] == [
        "kind://dev/dev-control-plane",
        "kind://dev/dev-worker",
        "ssh://other",
        "k3d://x/k3d-x-server-0",
    ]
    assert local.asked == ["io.x-k8s.kind.cluster=dev"]  # one node named: not asked
    assert out[0].scheme is Scheme.KIND and out[0].node == "dev-control-plane" and out[0].namespace == "k8s.io"


def test_a_cluster_without_nodes_is_refused() -> None:
    with pytest.raises(EndpointError, match=r"k3d\.cluster=none"):
        expand_clusters([parse_endpoint("k3d://none")], FakeLocal({}))  # type: ignore[arg-type]


def test_sides() -> None:
    timeouts, local = Timeouts(), parse_endpoint("unix:///var/run/docker.sock")
    with SSHPool() as ssh:
        assert isinstance(
            open_side(parse_endpoint("containerd:///run/c.sock"), "destination", timeouts, ssh), NodeEngine
        )
        node = open_side(parse_endpoint("kind://dev/dev-worker"), "source", timeouts, ssh, local)
        assert isinstance(node, NodeEngine) and node.ctr == ["ctr"]
        engine = open_side(local, "source", timeouts, ssh)
        assert isinstance(engine, Engine)
        engine.close()
        with pytest.raises(EndpointError, match="kind://dev/NODE"):
            open_side(parse_endpoint("kind://dev"), "source", timeouts, ssh, local)
