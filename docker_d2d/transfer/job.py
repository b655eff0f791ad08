"""What one copy is given, reports to and returns: the types every command, the fleet, the
registry path and the agent share, below the orchestration that uses them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal, Protocol

from ..endpoint import Endpoint
from ..engine.timeouts import Timeouts
from ..errors import D2DError
from ..formats.entries import Progress, RewriteResult
from ..model import EngineInfo, ImageInfo, ImageRef, Platform
from .bases import PulledBase
from .compress import Compression
from .naming import Naming
from .plan import TransferPlan

Checkpoint = int | None | Literal["auto"]  # bytes of layers between checkpoints; None: never


class RemoteFilter(str, Enum):
    AUTO = "auto"  # filter at the source host when it is reached over ssh and has python3 >= 3.8
    NEVER = "never"  # always the plain export stream


class LayersFrom(str, Enum):
    # The layers that travel read straight from the source engine's storage where this process (or
    # the agent, on an ssh source host) can read it, else from the engine's export (transfer/stores.py).
    AUTO = "auto"
    EXPORT = "export"  # always the engine's export of the whole image


class RegistryFirst(str, Enum):
    # The destination pulls a base the source pulled from a registry (bases.py): with auto, only
    # where the destination sits beyond a link slower than its own to a registry may be (ssh, tcp
    # beyond loopback); a local engine gets the layers from the source at least as fast.
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class Reporter(Progress, Protocol):
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None: ...
    def planned(self, plan: TransferPlan) -> None: ...
    def note(self, message: str) -> None: ...
    # One export/load: the layers it should send (diff id -> estimated size) and how the body travels.
    def sending(self, layers: dict[str, int | None], compression: Compression) -> None: ...
    def wire_advanced(self, nbytes: int) -> None: ...  # bytes that crossed the link, after compression
    def phase(self, name: str) -> None: ...  # "loading" (the body is all sent), "verifying"
    # How a layer about to be sent is read: "store" (the source's storage, here), "agent-store" (there,
    # by the agent on an ssh source host), "export" (the engine's export). Told before layer_started.
    def layer_read_from(self, key: str, how: str) -> None: ...


@dataclass(frozen=True)
class CopyOptions:
    dry_run: bool = False
    spool_dir: Path | None = None
    compress: Compression = Compression.AUTO
    timeouts: Timeouts = field(default_factory=Timeouts)
    platform: Platform | None = None  # of a multi-platform image; default: the destination's
    remote_filter: RemoteFilter = RemoteFilter.AUTO
    registry_first: RegistryFirst = RegistryFirst.AUTO
    docker_config: Path | None = None  # where the user's registry credentials are (registry-first)
    checkpoint: Checkpoint = "auto"  # layer bytes between partial images (resumable copies)
    layers_from: LayersFrom = LayersFrom.AUTO
    source_sudo: bool = False  # run the agent on an ssh source host through `sudo -n` (reads its storage)
    local_engine: Endpoint | None = None  # whose containers kind:// and k3d:// nodes are


@dataclass(frozen=True)
class TagMove:
    """A tag the copy gave to another platform's image than the one it named at the destination."""

    ref: str
    old_id: str
    old_platform: str
    new_id: str
    new_platform: str


@dataclass
class CopyResult:
    plan: TransferPlan
    source: EngineInfo
    destination: EngineInfo
    transfers: list[RewriteResult] = field(default_factory=list)
    tagged: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)  # "<ref> -> <id>" for digest and id references
    moved: list[TagMove] = field(default_factory=list)  # tags that now name another platform's image
    elapsed: float = 0.0
    compression: Compression = Compression.NONE
    wire_bytes: int = 0  # what the load requests carried, after compression
    sending_seconds: float = 0.0  # time the load bodies took to go out
    # Layers by the key the archive reported them under: sent (bytes), and left out (size).
    layers_sent: dict[str, int] = field(default_factory=dict)
    layers_left_out: dict[str, int] = field(default_factory=dict)
    # Destination ids of images whose archive went out whole: the destination may finish
    # loading them even if we stop, so an interrupt must clean them up.
    loaded: list[str] = field(default_factory=list)
    held: Sequence[ImageInfo] = ()  # what the destination held when planned (the probes start from it)
    # A containerd store's left-out layers as named when planned (repair.py), for the load to reuse.
    naming: Naming | None = None
    pulled_bases: dict[str, PulledBase] = field(default_factory=dict)  # destination id -> base pulled (registry-first)
    # Every rewrite begun, also those whose load failed: what a failed run may have to remove.
    begun: list[RewriteResult] = field(default_factory=list, repr=False)
    partials: list[str] = field(default_factory=list)  # partial images this run left at the destination
    # How the layers of the current stream are read (set by the source before it; layer key -> how,
    # else `reading_default`), and how each sent layer was (Reporter.layer_read_from).
    reading: dict[str, str] = field(default_factory=dict)
    reading_default: str = "export"
    read_from: dict[str, str] = field(default_factory=dict)

    @property
    def bytes_sent(self) -> int:
        return sum(t.bytes_sent for t in self.transfers)

    @property
    def resent(self) -> bool:
        """An image was loaded twice: the containerd store's repair, which sends the layers the first
        load left it lacking (not one load per image, as for Podman)."""
        configs = [w.config_digest for t in self.transfers for w in t.images]
        return len(configs) != len(set(configs))


Requested = tuple[ImageRef, ImageInfo, tuple[int | None, ...]]


@dataclass
class HostResult:
    """One destination of a fleet: its copy's result, or its error."""

    endpoint: Endpoint
    result: CopyResult | None = None
    error: D2DError | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None  # when its last step ended (the others may go on)

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None


@dataclass
class FleetResult:
    source: EngineInfo
    hosts: list[HostResult]
    export_bytes: int = 0  # read from the source, once for all destinations (with a registry: pushed to it)
    store_bytes: int = 0  # layer bytes read from the source's storage instead (each stream reads its own)
    streams: int = 0  # distinct streams rewritten from that export: destinations sent the same bytes share one
    dry_run: bool = False
    registry: PushResult | None = None
    elapsed: float = 0.0

    @property
    def failed(self) -> list[HostResult]:
        return [h for h in self.hosts if not h.ok]


@dataclass
class Pushed:
    """One image in the registry (--via): where, and what a destination must end up with."""

    ref: str  # host/repository
    tag: str
    config_digest: str
    manifest_digest: str


@dataclass
class PushResult:
    images: dict[str, Pushed]  # source id -> where it is in the registry
    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_there: int = 0
