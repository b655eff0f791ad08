"""Where a registry is: the address --via takes, and the registry an image reference names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_REPOSITORY = "docker-d2d"
HUB = "registry-1.docker.io"
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")


@dataclass(frozen=True)
class RegistryRef:
    host: str  # host[:port], as engines name it in image references
    repository: str
    insecure: bool  # plain http

    @property
    def base(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    def image(self, tag: str) -> str:
        return f"{self.host}/{self.repository}:{tag}"

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


def loopback(host: str) -> bool:
    """Plain http is used only where engines use it without being told: a loopback registry."""
    return bool(_LOOPBACK.match(host))


def parse_registry(text: str) -> RegistryRef:
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    elif scheme not in ("http", "https"):
        raise UsageError(f"--via {text!r}: give REGISTRY[/REPOSITORY], http://... or https://...")
    host, _, repository = rest.strip("/").partition("/")
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9a-fA-F:]+\](:\d+)?", host):
        raise UsageError(f"--via {text!r}: not a registry address")
    repository = repository or DEFAULT_REPOSITORY
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", repository):
        raise UsageError(f"--via {text!r}: {repository!r} is not a valid repository name")
    insecure = scheme == "http" or (scheme == "" and loopback(host))
    return RegistryRef(host, repository, insecure)


def split_repo_digest(repo_digest: str) -> tuple[str, str, str] | None:
    """'host:port/team/app@sha256:..' -> (host, 'team/app', digest); Docker Hub for familiar names."""
    name, _, digest = repo_digest.partition("@")
    if not digest.startswith("sha256:"):
        return None
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = HUB, name.removeprefix("docker.io/")
    if host in ("docker.io", "index.docker.io"):
        host = HUB
    if host == HUB and "/" not in repo:
        repo = f"library/{repo}"
    return host, repo, digest


def registry_of(ref: str) -> str:
    """The registry host of a reference, as the docker CLI decides it (docker.io for Hub names)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"
