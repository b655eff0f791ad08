"""Where an engine is: parsing the addresses users type into Endpoint values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from .errors import EndpointError

DEFAULT_UNIX_SOCKET = "/var/run/docker.sock"
# Kubernetes nodes (containerd without Docker): where kubeadm's and k3s's containerd listen, and
# the namespace the kubelet's CRI uses.
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
K3S_CONTAINERD_SOCKET = "/run/k3s/containerd/containerd.sock"
K8S_NAMESPACE = "k8s.io"


class Scheme(Enum):
    UNIX = "unix"
    TCP = "tcp"
    SSH = "ssh"
    CONTAINERD = "containerd"  # a local containerd socket (a node; root)
    CONTAINERD_SSH = "containerd+ssh"  # a node's containerd over ssh, through its `ctr`
    KIND = "kind"  # a kind cluster's node containers on the local engine
    K3D = "k3d"  # a k3d cluster's node containers on the local engine

    @property
    def is_node(self) -> bool:
        """containerd without Docker: a Kubernetes node, driven through its `ctr`."""
        return self in (Scheme.CONTAINERD, Scheme.CONTAINERD_SSH, Scheme.KIND, Scheme.K3D)

    @property
    def over_ssh(self) -> bool:
        return self in (Scheme.SSH, Scheme.CONTAINERD_SSH)


@dataclass(frozen=True)
class TLSConfig:
    verify: bool = True
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One engine's address. `text` is what the user typed (or where it came from), for messages."""

    scheme: Scheme
    text: str
    path: str = ""  # unix socket, local or (ssh) remote
    host: str = ""
    port: int = 0
    user: str | None = None
    tls: TLSConfig | None = None
    # Set when the user typed a bare word that is no context: the contexts there are, for the
    # message when the word is no ssh host either.
    contexts: tuple[str, ...] | None = None
    # Nodes: the containerd namespace; kind:// and k3d://: the cluster is `host`, one node `node`
    # (empty: every node of the cluster).
    namespace: str = ""
    node: str = ""

    @property
    def is_local(self) -> bool:
        if self.scheme in (Scheme.CONTAINERD, Scheme.KIND, Scheme.K3D):
            return True
        return self.scheme is Scheme.UNIX or (self.scheme is Scheme.TCP and _is_loopback(self.host))

    def __str__(self) -> str:
        return self.text


def bracket(host: str) -> str:
    """An IPv6 address in brackets, as in URLs and ssh's known_hosts; other hosts as they are."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def hostport(host: str, port: int | str) -> str:
    return f"{bracket(host)}:{port}"


def _port(text: str | None, display: str) -> int:
    if not text:
        return 0
    port = int(text)
    if not 1 <= port <= 65535:
        raise EndpointError(f"invalid address {display!r}: port {port} is not between 1 and 65535")
    return port


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


_TCP = re.compile(r"^(?:tcp|http|https)://(?P<host>\[[^\]]+\]|[^:/]+)?(?::(?P<port>\d+))?/?$")


_SSH_HOST = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$")


def parse_ssh_host(text: str, display: str | None = None, path: str = "") -> Endpoint:
    """`[user@]host[:port]`: a host as ssh knows it (aliases from ~/.ssh/config included)."""
    m = _SSH_HOST.match(text)
    if not m:
        raise EndpointError(f"invalid address {display or text!r}: expected [user@]host[:port]")
    port = _port(m["port"], display or text)
    return Endpoint(Scheme.SSH, display or text, path=path, host=m["host"].strip("[]"), port=port, user=m["user"])


def _parse_ssh(text: str) -> Endpoint:
    if text.startswith("sshunix://"):
        # The original tool's form: sshunix://[user@]host[:port]:[/path/to/socket]
        rest = text[len("sshunix://") :]
        hostpart, sep, path = rest.partition(":/")
        if sep:
            path = "/" + path
        elif rest.endswith(":"):
            hostpart = rest[:-1]
        return parse_ssh_host(hostpart, text, path)
    url = urlsplit(text)
    if url.password is not None or url.query or url.fragment:
        raise EndpointError(f"invalid address {text!r}: ssh:// takes no password, query or fragment")
    netloc = url.netloc
    return parse_ssh_host(netloc, text, url.path if url.path not in ("", "/") else "")


_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CLUSTER = re.compile(r"^(?P<cluster>[A-Za-z0-9][A-Za-z0-9._-]*)(?:/(?P<node>[A-Za-z0-9][A-Za-z0-9._-]*))?/?$")


def _namespace(query: str, text: str) -> str:
    """`?namespace=NS` (k8s.io when absent)."""
    if not query:
        return K8S_NAMESPACE
    key, _, value = query.partition("=")
    if key != "namespace" or not _NAMESPACE.match(value):
        raise EndpointError(f"invalid address {text!r}: the only query is ?namespace=NAME")
    return value


def _parse_node(text: str) -> Endpoint:
    """containerd+ssh://[user@]host[:port][/socket][?namespace=NS], containerd:///socket[?namespace=NS],
    kind://CLUSTER[/NODE], k3d://CLUSTER[/NODE]."""
    url = urlsplit(text)
    if url.fragment or url.password is not None:
        raise EndpointError(f"invalid address {text!r}: no password or fragment")
    namespace = _namespace(url.query, text)
    if url.scheme == "containerd+ssh":
        path = url.path if url.path not in ("", "/") else ""
        ssh = parse_ssh_host(url.netloc, text, path)
        return Endpoint(
            Scheme.CONTAINERD_SSH, text, path=path, host=ssh.host, port=ssh.port, user=ssh.user, namespace=namespace
        )
    if url.scheme == "containerd":
        if url.netloc or not url.path.startswith("/"):
            raise EndpointError(f"invalid address {text!r}: expected containerd:///path/to/containerd.sock")
        return Endpoint(Scheme.CONTAINERD, text, path=url.path, namespace=namespace)
    m = _CLUSTER.match(text.split("://", 1)[1].split("?", 1)[0])
    if not m:
        raise EndpointError(f"invalid address {text!r}: expected {url.scheme}://CLUSTER[/NODE]")
    return Endpoint(Scheme(url.scheme), text, host=m["cluster"], node=m["node"] or "", namespace=namespace)


def parse_endpoint(text: str, tls: TLSConfig | None = None) -> Endpoint:
    """Parse unix://, tcp:// (the schemes the Docker CLI's -H takes), ssh:// and sshunix://, and the
    Kubernetes nodes' containerd+ssh://, containerd://, kind:// and k3d://."""
    if text.startswith(("ssh://", "sshunix://")):
        return _parse_ssh(text)
    if text.startswith(("containerd+ssh://", "containerd://", "kind://", "k3d://")):
        return _parse_node(text)
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise EndpointError(f"invalid address {text!r}: a unix socket path must be absolute")
        return Endpoint(Scheme.UNIX, text, path=path)
    if text.startswith(("tcp://", "http://", "https://")):
        m = _TCP.match(text)
        if not m or not m["host"]:
            raise EndpointError(f"invalid address {text!r}: expected tcp://HOST:PORT")
        if text.startswith("https://") and tls is None:
            tls = TLSConfig(verify=True)
        port = _port(m["port"], text) or (2376 if tls else 2375)
        return Endpoint(Scheme.TCP, text, host=m["host"].strip("[]"), port=port, tls=tls)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme:
        raise EndpointError(
            f"invalid address {text!r}: unsupported scheme {scheme!r} (use unix://, tcp://, ssh://, sshunix://, "
            "containerd+ssh://, containerd://, kind:// or k3d://)"
        )
    raise EndpointError(f"invalid address {text!r}: expected unix:///path, tcp://host:port or ssh://host")
