"""What one copy is given, reports to, reads from and returns: the types every command, the
fleet, the registry path and the remote filter share, below the orchestration that uses them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from .compress import Compression
from .endpoint import Endpoint
from .formats.entries import Progress, RewriteResult
from .model import EngineInfo, ImageInfo, ImageRef, Platform
from .plan import TransferPlan
from .registry_first import PulledBase, RegistryFirst
from .remote import RemoteFilter
from .transport import Timeouts

Checkpoint = int | None | Literal["auto"]  # bytes of layers between checkpoints; None: never


class Reporter(Progress, Protocol):
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None: ...
    def planned(self, plan: TransferPlan) -> None: ...
    def note(self, message: str) -> None: ...
    # One export/load: the layers it should send (diff id -> estimated size) and how the body travels.
    def sending(self, layers: dict[str, int | None], compression: Compression) -> None: ...
    def wire_advanced(self, nbytes: int) -> None: ...  # bytes that crossed the link, after compression
    def phase(self, name: str) -> None: ...  # "loading" (the body is all sent), "verifying"


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


@dataclass
class CopyResult:
    plan: TransferPlan
    source: EngineInfo
    destination: EngineInfo
    transfers: list[RewriteResult] = field(default_factory=list)
    tagged: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)  # "<ref> -> <id>" for digest and id references
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
    pulled_bases: dict[str, PulledBase] = field(default_factory=dict)  # destination id -> base pulled (registry-first)
    # Every rewrite begun, also those whose load failed: what a failed run may have to remove.
    begun: list[RewriteResult] = field(default_factory=list, repr=False)
    partials: list[str] = field(default_factory=list)  # partial images this run left at the destination

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


class Source(Protocol):
    """Where the images come from: the source engine itself, or one export shared by several
    destinations (shared_rewrite.SharedSource)."""

    endpoint: Endpoint
    info: EngineInfo | None
