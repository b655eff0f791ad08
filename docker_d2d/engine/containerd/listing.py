"""Reading what a node's `ctr` prints, and the node's images in the terms a plan uses. Pure.

`ctr` has no JSON output: its tables are read by column (images, content, check, snapshots), and
the blobs it gets (`ctr content get`) are OCI documents. The image model of a node: an image is
named by its target's digest (an index or a manifest, like the containerd store of Docker), its
layers by the descriptors its manifest gives them (compressed as pulled) and held only when that
blob is in the content store (a pull may discard layers' content once unpacked).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...formats.oci import MT_DOCKER_LIST, MT_INDEX, Descriptor
from ...model import EngineInfo, ImageInfo, Platform, familiar
from .. import answers

# Names docker-d2d gives an import until it is verified; never a name a pod spec uses.
IMPORT_PREFIX = "docker-d2d-import/"


@dataclass(frozen=True)
class NodeImage:
    """One line of `ctr images ls`."""

    name: str
    media_type: str
    digest: str


def parse_images(text: str) -> list[NodeImage]:
    """`ctr images ls`: REF TYPE DIGEST SIZE PLATFORMS LABELS; refs, types and digests hold no spaces."""
    images = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("sha256:"):
            images.append(NodeImage(parts[0], parts[1], parts[2]))
    return images


def parse_content(text: str) -> set[str]:
    """`ctr content ls`: the digests the content store holds."""
    return {line.split()[0] for line in text.splitlines()[1:] if line.strip().startswith("sha256:")}


@dataclass(frozen=True)
class Checked:
    """One line of `ctr images check`: whether every blob is there, and the image is unpacked."""

    complete: bool
    unpacked: bool


def parse_check(text: str) -> dict[str, Checked]:
    """`ctr images check`: REF TYPE DIGEST STATUS SIZE UNPACKED, STATUS `complete (3/3)` or
    `incomplete (2/3)`, UNPACKED true/false (last column)."""
    checked = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            checked[parts[0]] = Checked(parts[3] == "complete", parts[-1] == "true")
    return checked


def parse_snapshots(text: str) -> dict[str, str]:
    """`ctr snapshots ls`: KEY PARENT KIND -> key: kind (Committed, Active, View)."""
    snaps = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if parts:
            snaps[parts[0]] = parts[-1]
    return snaps


def server_version(text: str) -> str:
    """`ctr version`: the Version line under Server."""
    return _version(text.split("Server:", 1)[-1])


def client_version(text: str) -> str:
    """`ctr version`: the Version line under Client (the node's ctr: it reads the import's stream)."""
    return _version(text.split("Server:", 1)[0]) if "Client:" in text else ""


def _version(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Version":
            return value.strip()
    return ""


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def reads_compressed(info: EngineInfo) -> bool:
    """Whether a node's `ctr images import` reads gzip and zstd archives: containerd 2's ctr and
    daemon decompress the stream (the transfer service); 1.x ctr reads plain tar only. A node's
    EngineInfo holds the daemon's version and, as its api_version, its ctr's."""
    return _major(info.version) >= 2 and _major(info.api_version) >= 2


def node_platform(text: str) -> Platform:
    """`ctr plugins ls`: the platform the snapshotters run for (the node's own)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "io.containerd.snapshotter.v1" and parts[1] == "overlayfs":
            try:
                return Platform.parse(parts[2])
            except Exception:
                break
    return Platform("linux", "amd64")


def cri_name(repository: str, tag: str) -> str:
    """The name the kubelet's CRI looks an image up by: `app:2` -> `docker.io/library/app:2`,
    `fx/app:2` -> `docker.io/fx/app:2`, a registry host kept (distribution/reference's ParseNormalizedNamed)."""
    first, sep, _ = repository.partition("/")
    if not sep:
        full = f"docker.io/library/{repository}"
    elif "." in first or ":" in first or first == "localhost":
        full = repository
    else:
        full = f"docker.io/{repository}"
    return f"{full}:{tag}"


def is_index(media_type: str) -> bool:
    return media_type in (MT_INDEX, MT_DOCKER_LIST)


def pick_manifest(index_doc: Mapping[str, Any], platform: Platform) -> Descriptor | None:
    """The manifest of `platform` in an index (attestations and other platforms passed over)."""
    for desc in index_doc.get("manifests") or ():
        if platform.matches(desc.get("platform") or {}):
            return dict(desc)
    return None


def fingerprint(config: Mapping[str, Any]) -> str:
    """What engine/answers.py makes of an engine's inspect, made of the config itself: how an image
    of the containerd store (named by a manifest we do not have) is known here."""
    layers = (config.get("rootfs") or {}).get("diff_ids") or ()
    return answers.fingerprint(
        config.get("config"), config.get("architecture"), config.get("os"), config.get("created"), layers
    )


@dataclass(frozen=True)
class Described:
    """A node's image: what a plan knows of it, and the descriptor of each of its layers."""

    info: ImageInfo
    layers: dict[str, Descriptor]  # diff id -> the descriptor its manifest names it by


def describe(image_id: str, names: tuple[str, ...], manifest: bytes, config: bytes) -> Described:
    """The image named `image_id` (its index or manifest digest) from its manifest and config."""
    doc = json.loads(manifest)
    cfg = json.loads(config)
    diff_ids = tuple((cfg.get("rootfs") or {}).get("diff_ids") or ())
    descs = list(doc.get("layers") or ())
    layers = {diff: dict(desc) for diff, desc in zip(diff_ids, descs)}
    size = sum(int(d.get("size") or 0) for d in descs)
    tags = tuple(familiar(n.rsplit(":", 1)[0]) + ":" + n.rsplit(":", 1)[1] for n in names if _tagged(n))
    info = ImageInfo(
        id=image_id,
        diff_ids=diff_ids,
        repo_tags=tags,
        created=str(cfg.get("created") or ""),
        fingerprint=fingerprint(cfg),
        size=size,
        layer_sizes=tuple(int(d.get("size") or 0) for d in descs),
        platform=Platform(str(cfg.get("os") or ""), str(cfg.get("architecture") or ""), str(cfg.get("variant") or "")),
        config_digest="sha256:" + hashlib.sha256(config).hexdigest(),
    )
    return Described(info, layers)


def _tagged(name: str) -> bool:
    return "@" not in name and ":" in name.rsplit("/", 1)[-1] and not name.startswith(IMPORT_PREFIX)
