"""The images of a copy read from a store: opened before the stream (or refused, with the reason),
then yielded as the typed entries a rewrite takes (formats/entries.py), in place of an export's.

    open_images(store, wanted, skip)   each image as the store holds it, checked against what
                                       inspect said; the layers that travel opened (their files
                                       found, their exact sizes read), the others only named
    entries(opened, export)            configs (and the containerd store's manifests and indexes),
                                       the layers, and last a manifest.json listing every image;
                                       `export`: the entries of an export of the refused images,
                                       merged into the same archive

A left-out layer is an entry whose body is never read (the filter leaves it), so a copy reads
only the layers that travel, each verified against its digest as it passes.

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from ..digests import sha256, short
from ..entries import Document, Entry, Layer
from ..errors import ArchiveError
from ..oci import blob_path
from .common import Store, StoredImage, StoreError, StoreLayer, StoreMismatch, StoreUnavailable, never_read


@dataclass(frozen=True)
class Wanted:
    """An image a copy wants, as the source engine's inspect told it: its id (the config digest; in
    the containerd store the manifest or index digest), its diff ids, and for an index the platform
    (os/arch[/variant]) to read."""

    image_id: str
    diff_ids: tuple[str, ...]
    platform: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.image_id, "diff_ids": list(self.diff_ids), "platform": self.platform}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Wanted:
        return cls(str(doc["id"]), tuple(doc["diff_ids"]), doc.get("platform"))


@dataclass
class Opened:
    """An image ready to be read: every layer opened (it travels) or only named (it does not)."""

    wanted: Wanted
    image: StoredImage
    layers: list[StoreLayer]
    read: list[bool] = field(default_factory=list)  # per layer: opened to be read

    @property
    def origin(self) -> str:
        return self.layers[0].origin if self.layers else ""


@dataclass(frozen=True)
class Refused:
    """An image the store cannot give: it goes through the export, and `reason` says why."""

    image_id: str
    reason: str


def open_images(store: Store, wanted: Sequence[Wanted], skip: Set[str]) -> tuple[list[Opened], list[Refused]]:
    """Each wanted image from the store, or why not. Every check a store can make before the
    stream happens here: the config (and manifest) against their digests, the diff ids against
    inspect's, each travelling layer's metadata and files found (its size read exactly)."""
    opened: list[Opened] = []
    refused: list[Refused] = []
    for want in wanted:
        try:
            opened.append(_open(store, want, skip))
        except StoreError as exc:
            refused.append(Refused(want.image_id, exc.message))
    return opened, refused


def _open(store: Store, want: Wanted, skip: Set[str]) -> Opened:
    image = store.image(want.image_id, want.platform)
    if tuple(image.diff_ids) != want.diff_ids:
        raise StoreMismatch(
            f"the store's image {short(want.image_id)} has {len(image.diff_ids)} layers that are not the "
            f"{len(want.diff_ids)} the engine's inspect lists"
        )
    layers: list[StoreLayer] = []
    read: list[bool] = []
    by_diff: dict[str, StoreLayer] = {}
    for i, diff in enumerate(image.diff_ids):
        travels = diff not in skip
        layer = by_diff.get(diff) if travels else None
        if layer is None:
            layer = image.layer(i) if travels else image.named(i)
        if travels and ("nondistributable" in layer.media_type or "foreign" in layer.media_type):
            # The engine's export leaves such a layer out (a license may forbid its distribution):
            # so does a copy read from the store (the export path says what that means).
            raise StoreUnavailable(f"layer {short(diff)} is non-distributable ({layer.media_type})")
        if travels:
            by_diff[diff] = layer
        layers.append(layer)
        read.append(travels)
    return Opened(want, image, layers, read)


def read_from(opened: Iterable[Opened]) -> dict[str, str]:
    """diff id -> the store each travelling layer is read from."""
    return {lay.diff_id: lay.origin for o in opened for lay, r in zip(o.layers, o.read) if r}


def entries(opened: Sequence[Opened], export: Iterable[Entry] | None = None) -> Iterator[Entry]:
    """The typed entries of these images, bottom layer first, each blob once; then, if given, the
    entries of an export (of the images the store refused) with its manifest.json merged into ours."""
    items: list[dict[str, Any]] = []
    yielded: set[str] = set()
    for image in opened:
        config_name = blob_path(sha256(image.image.config))
        yield Document(config_name, image.image.config)
        if image.image.manifest is not None:
            yield Document(blob_path(sha256(image.image.manifest)), image.image.manifest)
        if image.image.index is not None:
            yield Document(blob_path(image.image.image_id), image.image.index)
        names = []
        for layer, read in zip(image.layers, image.read):
            name = blob_path(layer.digest)
            if name not in yielded:
                yielded.add(name)
                yield layer.entry() if read else _named(layer, name)
            names.append(name)
        items.append({"Config": config_name, "RepoTags": None, "Layers": names})
    if export is not None:
        for entry in export:
            if isinstance(entry, Document) and entry.name == "manifest.json":
                items.extend(_manifest_items(entry.data))
                continue
            yield entry
    yield Document("manifest.json", json.dumps(items).encode())


def _named(layer: StoreLayer, name: str) -> Layer:
    """A layer the destination holds: named with the store's size for it, its body never read."""
    body = (memoryview(chunk) for chunk in never_read(f"layer {short(layer.diff_id)}"))
    return Layer(name, layer.size or 0, body, layer.diff_id, layer.digest, layer.media_type)


def _manifest_items(data: bytes) -> list[dict[str, Any]]:
    try:
        items = json.loads(data)
    except ValueError as exc:
        raise ArchiveError(f"the export's manifest.json is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise ArchiveError("the export's manifest.json is malformed (not a list of Config and Layers)")
    return items
