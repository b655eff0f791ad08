"""What every store reader shares: its errors, the layer and image it yields, digest checks.

Runs on the source host too (the agent): Python 3.8, standard library only.

    ArchiveError (formats/errors.py)
    └── StoreError              reading from the store failed: fall back to the export for that image
    ├── StoreUnavailable        the store cannot be read here (where it is, permissions); `reason`
    │   │                       says why, `enable` what would make it readable
    │   └── UnknownLayout       a storage driver or format docker-d2d does not read
    └── StoreMismatch           bytes differ from what the engine registered (a file changed behind
                                the engine's back, a blob that does not hash to its name)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ..digests import sha256, short
from ..entries import Layer
from ..errors import ArchiveError
from ..oci import MT_LAYER, blob_path

CHUNK = 1 << 20

# The uncompressed layer media type the stores' own exports name a tar-split layer with (OCI); the
# writer picks the name its output format wants anyway.
MEDIA_TYPE_TAR = MT_LAYER

# Config and manifest documents are small; one bigger than this is not a store's own.
MAX_DOCUMENT = 16 << 20


class StoreError(ArchiveError):
    """Reading from the store failed; the caller falls back to the engine's export for the image."""


class StoreUnavailable(StoreError):
    def __init__(self, reason: str, enable: str = "") -> None:
        super().__init__(reason + (f" ({enable})" if enable else ""))
        self.reason = reason
        self.enable = enable


class UnknownLayout(StoreUnavailable):
    """The engine keeps its storage in a way docker-d2d does not read (a storage driver, a format)."""


class StoreMismatch(StoreError):
    pass


def hex_of(digest: str) -> str:
    """The hex of a `sha256:` digest, refused unless it is exactly that (it becomes a path)."""
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise StoreError(f"not a sha256 digest: {digest[:80]!r}")
    return hexpart


def unavailable_from(exc: OSError, what: str) -> StoreError:
    """An OSError met while reading `what`, as the StoreError that says what would help."""
    if isinstance(exc, PermissionError):
        who = "root" if os.geteuid() != 0 else "the store's owner"
        return StoreUnavailable(f"cannot read {what}: permission denied", f"run as {who}")
    if isinstance(exc, FileNotFoundError):
        return StoreUnavailable(f"{what} does not exist")
    return StoreError(f"cannot read {what}: {exc.strerror or exc}")


def read_bounded(path: str, what: str, limit: int) -> bytes:
    """A small file of the store, refused past `limit` bytes (a store is not trusted with memory)."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise unavailable_from(exc, what) from exc
    if len(data) > limit:
        raise StoreError(f"{what} is larger than {limit} bytes")
    return data


def read_document(path: str, digest: str, what: str) -> bytes:
    """A small file of the store that must hash to `digest` (a config, a manifest)."""
    data = read_bounded(path, what, MAX_DOCUMENT)
    if sha256(data) != digest:
        raise StoreMismatch(f"{what} does not hash to {short(digest)}: changed behind the engine's back")
    return data


def verified(chunks: Iterator[bytes], digest: str, size: int | None, what: str) -> Iterator[bytes]:
    """`chunks` passed on as they come, hashed; the last one is held back until the whole body
    hashed to `digest` (and has `size` bytes, when known), so a consumer never receives all of a
    body that turns out wrong: the mismatch is raised in its place."""
    algo, _, expected = digest.partition(":")
    if algo != "sha256":
        raise StoreUnavailable(f"{what}: digest algorithm {algo!r} is not supported")
    h = hashlib.sha256()
    total = 0
    held = b""
    for chunk in chunks:
        if not chunk:
            continue
        if held:
            yield held
        h.update(chunk)
        total += len(chunk)
        if size is not None and total > size:
            raise StoreMismatch(f"{what} is longer than its {size} bytes: changed behind the engine's back")
        held = chunk
    if size is not None and total != size:
        raise StoreMismatch(f"{what} has {total} bytes, not {size}: changed behind the engine's back")
    if h.hexdigest() != expected:
        raise StoreMismatch(f"{what} does not hash to {short(digest)}: changed behind the engine's back")
    if held:
        yield held


@dataclass(frozen=True)
class StoreLayer:
    """One layer as a store holds it: its identity, where it comes from, and its verified body.

    `digest` names the blob that `chunks()` yields: the diff id for a layer reassembled from
    tar-split (uncompressed), the compressed digest for a containerd content blob. `size` is exact
    for a layer opened to be read (`StoredImage.layer`), the store's own figure for one only named
    (`StoredImage.named`: never read, so never sent)."""

    diff_id: str
    digest: str
    media_type: str
    size: int | None
    origin: str  # which store, for --debug: "overlay2 layer store", "containerd content store", ...
    location: str  # the store path it came from, for --debug
    body: Callable[[], Iterator[bytes]] = field(repr=False, compare=False)

    def chunks(self) -> Iterator[bytes]:
        """The blob in chunks of at most CHUNK bytes, verified: StoreMismatch in place of the last
        chunk when the bytes are not the ones the engine registered."""
        return verified(self.body(), self.digest, self.size, f"layer {short(self.diff_id)} ({self.origin})")

    def entry(self) -> Layer:
        """The typed entry a rewrite reads (formats/entries.py), its digests claimed: the filter
        checks them again as the bytes pass. Named by its blob, as an OCI layout would."""
        body = (memoryview(chunk) for chunk in self.chunks())
        layer = Layer(blob_path(self.digest), self.size or 0, body, self.diff_id, self.digest, self.media_type)
        layer.claimed = (self.digest, self.diff_id)
        return layer


def never_read(what: str) -> Iterator[bytes]:
    """The body of a layer only named (the destination holds it): reading it is a bug."""
    raise StoreError(f"{what} was to be left out, not read")
    yield b""  # pragma: no cover - makes this a generator: it raises only when read


@dataclass(frozen=True)
class StoredImage:
    """An image as a store holds it. `config` (and the containerd store's `manifest`, and the
    `index` an image id may name) were read and verified on the way here; a layer is only opened
    when asked for, by its index (`layer`), or only named, without a look at its files (`named`)."""

    image_id: str
    config: bytes
    diff_ids: list[str]
    manifest: bytes | None
    open_layer: Callable[[int], StoreLayer] = field(repr=False, compare=False)
    name_layer: Callable[[int], StoreLayer] | None = field(default=None, repr=False, compare=False)
    index: bytes | None = None

    def layer(self, index: int) -> StoreLayer:
        return self.open_layer(index)

    def named(self, index: int) -> StoreLayer:
        """The layer's identity and the store's size for it, cheaply (no tar-split read, no body)."""
        return (self.name_layer or self.open_layer)(index)


class Store(Protocol):
    """What the three readers offer: an image by its engine id (the config digest; in the
    containerd store the manifest or index digest, where `platform` picks from an index)."""

    origin: str

    def image(self, image_id: str, platform: str | None = None) -> StoredImage: ...
