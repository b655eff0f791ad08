"""Which engine a side of a copy is: the Engine API client, or a Kubernetes node's containerd
through its `ctr` (containerd+ssh://, containerd://, kind://, k3d://); and a cluster's name as
the node containers it stands for."""

from __future__ import annotations

from dataclasses import replace

from ..endpoint import CONTAINERD_SOCKET, K3S_CONTAINERD_SOCKET, K8S_NAMESPACE, Endpoint, Scheme
from ..errors import ConnectError, D2DError, EndpointError
from .client import Engine, open_engine
from .containerd.in_container import ExecRunner
from .containerd.node import NodeEngine
from .containerd.runner import LocalRunner, Runner, SSHRunner
from .pool import SSHPool
from .watch import Timeouts

# The labels kind and k3d put on their node containers (kind: pkg/cluster/constants; k3d: pkg/types).
CLUSTER_LABELS = {Scheme.KIND: "io.x-k8s.kind.cluster", Scheme.K3D: "k3d.cluster"}

# Finds the node's containerd on an ssh host: k3s's socket first, then the default; and k3s's ctr.
LOCATE = (
    f"for s in {K3S_CONTAINERD_SOCKET} {CONTAINERD_SOCKET}; do "
    '[ -S "$s" ] && { echo "$s"; command -v ctr || command -v k3s; exit 0; }; done; exit 3'
)


def open_side(
    endpoint: Endpoint, side: str, timeouts: Timeouts, ssh: SSHPool, local: Endpoint | None = None
) -> Engine | NodeEngine:
    """The engine at `endpoint` (not contacted yet). `local`: the local engine, whose containers
    kind:// and k3d:// nodes are."""
    if not endpoint.scheme.is_node:
        return open_engine(endpoint, side, timeouts, ssh)
    runner: Runner
    if endpoint.scheme is Scheme.CONTAINERD:
        runner, ctr = LocalRunner(), ["ctr", "--address", endpoint.path]
    elif endpoint.scheme is Scheme.CONTAINERD_SSH:
        runner = SSHRunner(ssh.connection(endpoint, timeouts), timeouts.stall)
        ctr = ["ctr", "--address", endpoint.path] if endpoint.path else _located(runner, endpoint, side)
    else:
        if not endpoint.node:
            scheme = endpoint.scheme.value
            raise EndpointError(
                f"{endpoint}: a cluster's name stands for all its nodes, as a destination; as a source name "
                f"one of them: {scheme}://{endpoint.host}/NODE"
            )
        if local is None or local.scheme is not Scheme.UNIX:
            raise EndpointError(f"{endpoint}: its nodes are containers of a local engine on a unix socket")
        runner, ctr = ExecRunner(local.path, endpoint.node, timeouts.connect), ["ctr"]
    return NodeEngine(endpoint, side, runner, ctr, endpoint.namespace)


def _located(runner: Runner, endpoint: Endpoint, side: str) -> list[str]:
    """`ctr --address SOCKET` for the containerd socket the host has (k3s's or the default)."""
    try:
        out = runner.run(["sh", "-c", LOCATE]).decode().split()
    except D2DError as exc:
        raise ConnectError(
            f"no containerd socket at {K3S_CONTAINERD_SOCKET} or {CONTAINERD_SOCKET} (give one: "
            "containerd+ssh://HOST/path/to/containerd.sock)",
            side=side,
            endpoint=str(endpoint),
        ) from exc
    socket = out[0]
    binary = out[1] if len(out) > 1 else "ctr"
    return [*([binary, "ctr"] if binary.endswith("/k3s") else [binary]), "--address", socket]


def node_instead(endpoint: Endpoint, side: str, timeouts: Timeouts, ssh: SSHPool) -> NodeEngine | None:
    """An ssh host given without a socket path whose server has no engine socket: its containerd
    (k3s's or the default one) when it has one, as a Kubernetes node (namespace k8s.io)."""
    if endpoint.scheme is not Scheme.SSH or endpoint.path:
        return None
    runner = SSHRunner(ssh.connection(endpoint, timeouts), timeouts.stall)
    try:
        ctr = _located(runner, endpoint, side)
    except D2DError:
        return None
    node = replace(endpoint, scheme=Scheme.CONTAINERD_SSH, path=ctr[-1], namespace=K8S_NAMESPACE)
    return NodeEngine(node, side, runner, ctr, K8S_NAMESPACE)


def connect_notes(engine: Engine | NodeEngine) -> list[str]:
    """What connecting found that the user should hear (a node reached through sudo)."""
    return list(engine.notes) if isinstance(engine, NodeEngine) else []


def found_node_note(node: NodeEngine) -> str:
    return (
        f"{node.endpoint} has no Docker or Podman socket but a containerd one ({node.endpoint.path}): "
        f"copying to it as a Kubernetes node (namespace {node.namespace}; "
        f"containerd+ssh://HOST/SOCKET?namespace=NS says so explicitly)"
    )


def expand_clusters(endpoints: list[Endpoint], local: Engine) -> list[Endpoint]:
    """kind://CLUSTER and k3d://CLUSTER -> one endpoint per node container of that cluster (found by
    the label kind and k3d give them), in name order; others as they are."""
    expanded: list[Endpoint] = []
    for endpoint in endpoints:
        label = CLUSTER_LABELS.get(endpoint.scheme)
        if label is None or endpoint.node:
            expanded.append(endpoint)
            continue
        nodes = sorted(local.containers(f"{label}={endpoint.host}"))
        if not nodes:
            raise EndpointError(
                f"{endpoint}: no running container of the local engine is labelled {label}={endpoint.host}"
            )
        scheme = endpoint.scheme.value
        for node in nodes:
            text = f"{scheme}://{endpoint.host}/{node}"
            expanded.append(replace(endpoint, text=text, node=node))
    return expanded
