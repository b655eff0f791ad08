"""Parsing endpoints: ports in range (issue 7, item 5)."""

from __future__ import annotations

import pytest

from docker_d2d.endpoint import Scheme, parse_endpoint
from docker_d2d.errors import EndpointError


@pytest.mark.parametrize(
    "text",
    [
        "tcp://h:0",
        "tcp://h:65536",
        "tcp://[::1]:70000",
        "ssh://h:0",
        "ssh://u@h:99999/run/d.sock",
        "sshunix://h:65536:/s.sock",
    ],
)
def test_ports_outside_1_to_65535_are_refused(text: str) -> None:
    with pytest.raises(EndpointError, match="not between 1 and 65535") as info:
        parse_endpoint(text)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("text", "port"), [("tcp://h:1", 1), ("tcp://h:65535", 65535), ("ssh://h:65535", 65535)])
def test_ports_at_the_edges_are_taken(text: str, port: int) -> None:
    assert parse_endpoint(text).port == port


def test_node_endpoints() -> None:
    e = parse_endpoint("containerd+ssh://root@10.0.0.2:2222/run/k3s/containerd/containerd.sock")
    assert (e.scheme, e.user, e.host, e.port, e.path, e.namespace) == (
        Scheme.CONTAINERD_SSH, "root", "10.0.0.2", 2222, "/run/k3s/containerd/containerd.sock", "k8s.io",
    )  # fmt: skip
    assert e.scheme.over_ssh and e.scheme.is_node and not e.is_local
    bare = parse_endpoint("containerd+ssh://node1")
    assert bare.path == "" and bare.namespace == "k8s.io"
    local = parse_endpoint("containerd:///run/containerd/containerd.sock?namespace=moby")
    assert (local.scheme, local.path, local.namespace) == (Scheme.CONTAINERD, "/run/containerd/containerd.sock", "moby")
    assert local.is_local
    kind = parse_endpoint("kind://dev")
    assert (kind.scheme, kind.host, kind.node) == (Scheme.KIND, "dev", "")
    one = parse_endpoint("k3d://dev/k3d-dev-server-0")
    assert (one.scheme, one.host, one.node) == (Scheme.K3D, "dev", "k3d-dev-server-0")


@pytest.mark.parametrize(
    "text",
    ["containerd://relative.sock", "containerd:///s.sock?ns=x", "kind://", "kind://a/b/c", "containerd+ssh://h:0"],
)
def test_bad_node_endpoints(text: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(text)
