"""Whether an engine's storage can be read here, found through what the engine says about itself
(`GET /info`; Podman's `GET /libpod/info`), never from a hard-coded path alone: the reader to use,
or one line saying why not and what would make it readable.

A path that exists here may still belong to another engine (a VM's, a remote one's, a second
daemon's): where the engine tells its identity on disk (Docker >= 23 keeps `engine-id` in its
data root) it is compared; elsewhere no harm follows, since every byte read is verified against
the digest the engine itself gave, and a store that lacks the image only costs the fallback.

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

from .common import Store, StoreUnavailable, UnknownLayout
from .containerd import CONTENT_PLUGIN, ContainerdStore
from .containers import ContainersStore
from .graphdriver import DIFF_DIRS, GraphdriverStore

SNAPSHOTTER = "io.containerd.snapshotter.v1"
SYSTEM_CONTAINERD_CONFIG = "/etc/containerd/config.toml"
SYSTEM_CONTAINERD_ROOT = "/var/lib/containerd"


@dataclass(frozen=True)
class Capability:
    """`store` when this process can read the engine's storage; otherwise `reason` (one line) and
    `enable` (what would make it readable). `note` qualifies a store that can be read."""

    store: Store | None
    reason: str = ""
    enable: str = ""
    note: str = ""
    layout: bool = False  # not read because of how the engine keeps it (not where, not who reads)

    @property
    def ok(self) -> bool:
        return self.store is not None

    def describe(self) -> str:
        if self.store is not None:
            return f"reads layers from the {self.store.origin}" + (f" ({self.note})" if self.note else "")
        return self.reason + (f"; {self.enable}" if self.enable else "")


def _as_root() -> str:
    return "run as root (an ssh source's host: --source-sudo)"


def _owner(path: str) -> str:
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _readable(path: str, what: str, owner_hint: bool = False) -> None:
    """`path` (a directory) can be listed and entered, or StoreUnavailable says what would help."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise StoreUnavailable(f"{what} {path} does not exist here") from None
    except PermissionError:
        pass
    if os.access(path, os.R_OK | os.X_OK):
        return
    owner = _owner(path) if owner_hint else ""
    if owner and owner != "root":
        raise StoreUnavailable(f"{what} {path} is not readable by this user", f"run as {owner}, the store's owner")
    raise StoreUnavailable(f"{what} {path} is not readable by this user", _as_root())


def _toml_root(path: str) -> str:
    """containerd's top-level `root = "..."` from its config (the only key needed: no TOML parser
    in Python 3.8's standard library)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("["):
                    break  # past the top-level keys
                key, eq, value = line.partition("=")
                if eq and key.strip() == "root":
                    value = value.split("#", 1)[0].strip()
                    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                        return value[1:-1]
    except OSError:
        pass
    return ""


def containerd_content_roots(info: dict[str, Any]) -> list[str]:
    """Where a containerd-store Docker's content may be: the containerd whose socket /info names
    (API >= 1.46) keeps its config beside the socket when dockerd started it; otherwise dockerd's
    own managed containerd under the data root, then the system containerd's root."""
    roots: list[str] = []
    address = str((info.get("Containerd") or {}).get("Address") or "")
    if address:
        root = _toml_root(os.path.join(os.path.dirname(address), "containerd.toml"))
        if root:
            roots.append(root)
    docker_root = str(info.get("DockerRootDir") or "")
    if docker_root:
        roots.append(os.path.join(docker_root, "containerd", "daemon"))
    if not address or address == "/run/containerd/containerd.sock":
        roots.append(_toml_root(SYSTEM_CONTAINERD_CONFIG) or SYSTEM_CONTAINERD_ROOT)
    seen: list[str] = []
    for root in roots:
        content = os.path.join(root, CONTENT_PLUGIN)
        if content not in seen:
            seen.append(content)
    return seen


def docker(info: dict[str, Any]) -> Capability:
    """A Docker engine's storage from its /info: the graphdriver layer store or the containerd store."""
    try:
        return Capability(_docker(info))
    except StoreUnavailable as exc:
        return Capability(None, exc.reason, exc.enable, layout=isinstance(exc, UnknownLayout))


def _docker(info: dict[str, Any]) -> Store:
    root = str(info.get("DockerRootDir") or "")
    system = str(info.get("OperatingSystem") or "")
    if "Docker Desktop" in system:
        raise StoreUnavailable("Docker Desktop keeps its storage inside its VM")
    if not root:
        raise StoreUnavailable("the engine does not say where its storage is (no DockerRootDir)")
    _readable(root, "DockerRootDir", owner_hint=True)
    engine_id_file = os.path.join(root, "engine-id")
    try:
        with open(engine_id_file, encoding="utf-8") as f:
            on_disk = f.read(256).strip()
    except OSError:
        on_disk = ""
    if on_disk and info.get("ID") and on_disk != info["ID"]:
        raise StoreUnavailable(f"{root} here belongs to another engine (the engine runs in a VM or on another host)")
    status = {str(k): str(v) for k, v in (info.get("DriverStatus") or []) if k}
    if status.get("driver-type") == SNAPSHOTTER:
        roots = containerd_content_roots(info)
        usable = []
        for content in roots:
            if os.path.isdir(content) or not os.path.exists(content):
                try:
                    _readable(content, "the containerd content store")
                except StoreUnavailable as exc:
                    if "does not exist" not in exc.reason:
                        raise
                    continue
                usable.append(content)
        if not usable:
            raise StoreUnavailable(f"no containerd content store found (looked in {', '.join(roots)})")
        return ContainerdStore(usable)
    driver = str(info.get("Driver") or "")
    if driver not in DIFF_DIRS:
        raise UnknownLayout(
            f"the {driver or 'unnamed'} storage driver is not one docker-d2d reads (it reads "
            f"{', '.join(sorted(DIFF_DIRS))} and the containerd store)"
        )
    _readable(os.path.join(root, "image", driver, "layerdb", "sha256"), "the layer database", owner_hint=True)
    _readable(os.path.join(root, driver), f"the {driver} directory", owner_hint=True)
    return GraphdriverStore(root, driver)


def podman(libpod_info: dict[str, Any]) -> Capability:
    """A Podman engine's containers/storage from its /libpod/info (`store.graphRoot`)."""
    store = libpod_info.get("store") or {}
    root = str(store.get("graphRoot") or "")
    driver = str(store.get("graphDriverName") or "")
    rootless = bool(((libpod_info.get("host") or {}).get("security") or {}).get("rootless"))
    try:
        if not root:
            raise StoreUnavailable("the engine does not say where its storage is (no store.graphRoot)")
        reader = ContainersStore(root, driver)
        _readable(root, "the graph root", owner_hint=True)
        _readable(reader.layers_dir, "the layer list's directory", owner_hint=True)
        _readable(reader.images_dir, "the image list's directory", owner_hint=True)
    except StoreUnavailable as exc:
        return Capability(None, exc.reason, exc.enable, layout=isinstance(exc, UnknownLayout))
    note = ""
    if rootless and os.geteuid() != 0:
        note = "files of other users in the images are readable inside the owner's namespace only (`podman unshare`)"
    return Capability(reader, note=note)


def probe(info: dict[str, Any], libpod_info: dict[str, Any] | None = None) -> Capability:
    """Podman when its /libpod/info is given, else Docker."""
    return podman(libpod_info) if libpod_info is not None else docker(info)
