"""What a transfer needs of an engine: the narrow interface a second engine kind implements.

The Engine API client (client.Engine) is one engine kind; a containerd node driven through its
`ctr` (without Docker) is meant to be another. A transfer asks a source for images and their
export, and a destination for what it holds, to load an archive, and to name images; nothing
else of either (the containerd store's probes and the pull agent over ssh stay Engine API matters).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..endpoint import Endpoint
from ..model import EngineInfo, ImageInfo, Platform


class Exporter(Protocol):
    def save(
        self, names: Sequence[str], platform: Platform | None = None
    ) -> AbstractContextManager[Iterator[bytes]]: ...


class EngineSide(Protocol):
    """Either side: where it is, what it is once connected, and what it holds."""

    endpoint: Endpoint
    side: str
    info: EngineInfo | None

    def connect(self) -> EngineInfo: ...
    def close(self) -> None: ...
    def all_images(self) -> list[ImageInfo]: ...
    def inspect(self, ref: str) -> ImageInfo: ...
    def find(self, ref: str) -> ImageInfo | None: ...


class SourceEngine(EngineSide, Exporter, Protocol):
    """A source: inspect (of one platform, for newer API versions), history sizes, its export."""

    server_api: str | None

    def speaks(self, version: str) -> bool: ...
    def inspect_platform(self, ref: str, platform: Platform | None) -> ImageInfo: ...
    def history_sizes(self, ref: str, platform: Platform | None = None) -> list[int]: ...


class DestinationEngine(EngineSide, Exporter, Protocol):
    """A destination: load an archive, check and name what it made, pull a base (registry-first,
    --via), and its own export (the sizes of blobs it holds). `stale`, `answers` and `recheck`: a
    destination that keeps what it said about its images between runs (an inspect cache) says
    which of that it now contradicts."""

    stale: list[str]

    def load(self, body: Iterable[bytes | memoryview], content_type: str = "application/x-tar") -> list[str]: ...
    def list_image_ids(self) -> list[str]: ...
    def image_complete(self, image_id: str) -> bool: ...
    def labelled(self, label: str, value: str) -> list[str]: ...
    def tag(self, image_id: str, repository: str, tag: str) -> None: ...
    def untag(self, ref: str) -> None: ...
    def remove(self, image_id: str) -> None: ...
    def remove_untagged(self, image_id: str) -> bool: ...
    def pull(self, image: str, tag: str, auth: str | None = None) -> list[dict[str, Any]]: ...
    def answers(self, seconds: float) -> bool: ...
    def recheck(self, image_ids: Iterable[str]) -> list[str]: ...
