"""The image model: references, layers and what an engine tells about an image. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from .errors import UsageError
from .formats.digests import chain_ids
from .formats.oci import MT_DOCKER_LIST, MT_INDEX

# The reference grammar of distribution/reference, reduced to what we need to
# split a string into repository, tag and digest.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}))?$"
)
_FULL_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")
_SHORT_ID = re.compile(r"^[0-9a-f]{6,64}$")


class RefKind(Enum):
    TAG = "tag"  # name or name:tag: the destination gets that tag
    DIGEST = "digest"  # name@sha256:...: lands untagged
    ID = "id"  # an image id or a prefix of one: lands untagged


@dataclass(frozen=True)
class ImageRef:
    raw: str
    kind: RefKind
    repository: str = ""  # familiar form: "myapp", "user/app", "127.0.0.1:5000/team/app"
    tag: str = ""

    @property
    def tagged(self) -> str | None:
        return f"{self.repository}:{self.tag}" if self.kind is RefKind.TAG else None

    def __str__(self) -> str:
        return self.raw


def familiar(repository: str) -> str:
    """docker.io/library/foo -> foo, docker.io/user/foo -> user/foo, as the docker CLI shows them."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if repository.startswith(prefix):
            rest = repository[len(prefix) :]
            return rest[len("library/") :] if rest.startswith("library/") and rest.count("/") == 1 else rest
    return repository


def parse_ref(raw: str) -> ImageRef:
    """Classify what the user typed. A bare hex string is taken as a name first, like docker does;
    the copy step turns it into an id reference when the source knows no such name."""
    if _FULL_ID.match(raw):
        return ImageRef(raw, RefKind.ID)
    m = _REFERENCE.match(raw)
    if not m:
        raise UsageError(f"invalid image reference {raw!r}")
    repository = familiar(m["name"])
    if m["digest"]:
        return ImageRef(raw, RefKind.DIGEST, repository)
    return ImageRef(raw, RefKind.TAG, repository, m["tag"] or "latest")


def could_be_id(ref: ImageRef) -> bool:
    return ref.kind is RefKind.TAG and ref.tag == "latest" and ":" not in ref.raw and bool(_SHORT_ID.match(ref.raw))


def as_id_ref(ref: ImageRef) -> ImageRef:
    return ImageRef(ref.raw, RefKind.ID)


class EngineKind(Enum):
    GRAPHDRIVER = "docker"  # Docker with a graphdriver (overlay2 ...): skips layers by chain id
    CONTAINERD = "docker-containerd"  # Docker with the containerd image store: reuses blobs by digest
    PODMAN = "podman"  # Podman's Docker-compatible API: reuses layers by uncompressed digest
    NODE = "containerd"  # containerd without Docker (a Kubernetes node), through its `ctr`: reuses blobs by digest

    @property
    def label(self) -> str:
        return {
            EngineKind.GRAPHDRIVER: "Docker (graphdriver)",
            EngineKind.CONTAINERD: "Docker (containerd image store)",
            EngineKind.PODMAN: "Podman",
            EngineKind.NODE: "containerd",
        }[self]


@dataclass(frozen=True)
class Platform:
    """os/arch[/variant], as `--platform` and OCI descriptors name it."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: use os/arch[/variant], e.g. linux/arm64")
        return cls(*parts)

    def matches(self, desc: Mapping[str, object]) -> bool:
        """Whether an OCI platform object (from an index or a config) is this platform. A missing
        variant matches any (arm64 images often leave out v8)."""
        return (
            desc.get("os") == self.os
            and desc.get("architecture") == self.architecture
            and (not self.variant or desc.get("variant") in (None, "", self.variant))
        )

    def as_json(self) -> dict[str, str]:
        return {"os": self.os, "architecture": self.architecture, **({"variant": self.variant} if self.variant else {})}

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class EngineInfo:
    kind: EngineKind
    version: str
    api_version: str
    os: str = "linux"
    arch: str = "amd64"
    name: str = ""  # what the engine is, where the kind's label does not say it (a node as a source)

    def describe(self) -> str:
        if self.name == "containerd":  # a node: no Engine API, its ctr (of this version)
            return f"containerd {self.version} (ctr {self.api_version})"
        return f"{self.kind.label} {self.version} (API {self.api_version})"

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.arch)


@dataclass(frozen=True)
class ImageInfo:
    """What an engine's inspect tells about one image."""

    id: str
    diff_ids: tuple[str, ...]
    repo_tags: tuple[str, ...] = ()
    created: str = ""
    # A digest of the parts of the config that inspect shows: two images with the same
    # fingerprint and layers are the same image even where the engine ids differ
    # (the containerd store names images by manifest digest, not config digest).
    fingerprint: str = ""
    size: int = 0
    layer_sizes: tuple[int | None, ...] = field(default=())
    platform: Platform | None = None  # what the config says
    repo_digests: tuple[str, ...] = ()
    media_type: str = ""  # the containerd store's descriptor (API 1.48+): an index or a manifest
    # One platform of a multi-platform image (containerd store, API 1.49+): `id` is that platform's
    # manifest, the export names `export_as` (the index) and asks for `export_platform`.
    export_as: str = ""
    export_platform: Platform | None = None
    config_digest: str = ""  # where the id is not the config's digest and the engine tells it (nodes)

    @property
    def is_index(self) -> bool:
        return self.media_type in (MT_INDEX, MT_DOCKER_LIST)

    @property
    def chain_ids(self) -> list[str]:
        return chain_ids(self.diff_ids)
