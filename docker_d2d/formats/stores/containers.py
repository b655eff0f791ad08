"""containers/storage (Podman, Buildah, CRI-O), rootful or rootless, with the overlay driver: the
layer list, each layer's tar-split and diff directory, reassembled as its `Diff` does
(containers/storage `layers.go`), and image configs from the image's big-data files.

    <graphRoot>/overlay-images/images.json                    images: id (= config digest), top layer
    <graphRoot>/overlay-images/<id>/=<base64 of "sha256:<id>">  the config
    <graphRoot>/overlay-layers/layers.json                    layers: id, parent, diff-digest
    <graphRoot>/overlay-layers/<layer id>.tar-split.gz
    <graphRoot>/overlay/<layer id>/diff                       its files (lower: the parents')

A rootless store's files belong to the user's subordinate ids where the image's files belong to
users other than root: the owner reads those only inside its user namespace (`podman unshare`).

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from ..digests import short
from .common import (
    MAX_DOCUMENT,
    MEDIA_TYPE_TAR,
    StoredImage,
    StoreError,
    StoreLayer,
    StoreMismatch,
    StoreUnavailable,
    UnknownLayout,
    hex_of,
    never_read,
    read_document,
    unavailable_from,
)
from .layerdir import lower_dirs, plain_name, require, tar_split_layer

DRIVERS = ("overlay",)


def big_data_name(key: str) -> str:
    """containers/storage `makeBigDataBaseName`: the key itself when it is only [.0-9a-z], else
    "=" and its base64."""
    if key and all(c == "." or "0" <= c <= "9" or "a" <= c <= "z" for c in key):
        return key
    return "=" + base64.b64encode(key.encode("utf-8")).decode("ascii")


def _records(path: str, what: str, required: bool = True) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            data = f.read(64 * MAX_DOCUMENT + 1)
    except FileNotFoundError as exc:
        if not required:
            return []
        raise unavailable_from(exc, what) from exc
    except OSError as exc:
        raise unavailable_from(exc, what) from exc
    try:
        doc = json.loads(data or b"[]")
    except ValueError as exc:
        raise StoreError(f"{what} is not JSON") from exc
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise StoreError(f"{what} is not a list of records")
    return doc


class ContainersStore:
    def __init__(self, graph_root: str, driver: str = "overlay") -> None:
        if driver not in DRIVERS:
            raise UnknownLayout(
                f"the {driver!r} storage driver is not one docker-d2d reads (it reads {', '.join(DRIVERS)})"
            )
        self.root = graph_root
        self.driver = driver
        self.images_dir = os.path.join(graph_root, f"{driver}-images")
        self.layers_dir = os.path.join(graph_root, f"{driver}-layers")
        self.driver_home = os.path.join(graph_root, driver)
        self.origin = "containers-storage"

    def _image_record(self, hexid: str) -> dict[str, Any]:
        for record in _records(os.path.join(self.images_dir, "images.json"), "the store's image list"):
            if record.get("id") == hexid:
                return record
        raise StoreUnavailable(f"image {hexid[:12]} is not in the store's image list (an additional image store?)")

    def _layer_records(self) -> dict[str, dict[str, Any]]:
        records = _records(os.path.join(self.layers_dir, "layers.json"), "the store's layer list")
        records += _records(os.path.join(self.layers_dir, "volatile-layers.json"), "volatile layers", required=False)
        return {str(r.get("id")): r for r in records}

    def config(self, image_id: str) -> bytes:
        hexid = hex_of(image_id)
        name = big_data_name(f"sha256:{hexid}")
        path = os.path.join(self.images_dir, plain_name(hexid, "an image id"), name)
        return read_document(path, image_id, f"the config of image {short(image_id)}")

    def image(self, image_id: str, platform: str | None = None) -> StoredImage:
        """`platform` is ignored: an image id here names one config, of one platform."""
        hexid = hex_of(image_id)
        record = self._image_record(hexid)
        config = self.config(image_id)
        try:
            diff_ids = json.loads(config)["rootfs"]["diff_ids"] or []
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the config of image {short(image_id)} has no rootfs.diff_ids") from exc
        layers = self._layer_records()
        chain: list[dict[str, Any]] = []
        top = record.get("layer")
        while top:
            layer = layers.get(str(top))
            if layer is None:
                raise StoreUnavailable(f"layer {str(top)[:12]} of image {short(image_id)} is not in the layer list")
            chain.append(layer)
            if len(chain) > len(diff_ids):
                break
            top = layer.get("parent")
        chain.reverse()
        found = [r.get("diff-digest") for r in chain]
        if found != list(diff_ids):
            raise StoreMismatch(
                f"the layers of image {short(image_id)} in the store ({len(found)}) are not the config's "
                f"{len(diff_ids)} diff ids"
            )
        return StoredImage(
            image_id,
            config,
            list(diff_ids),
            None,
            lambda i: self._layer(str(chain[i]["id"]), diff_ids[i], chain[i]),
            lambda i: self._named(diff_ids[i], chain[i]),
        )

    def _named(self, diff_id: str, record: dict[str, Any]) -> StoreLayer:
        """A layer only named: its tar's size as the layer list records it."""
        size = record.get("diff-size")
        size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0
        what = f"layer {short(diff_id)}"
        return StoreLayer(
            diff_id, diff_id, MEDIA_TYPE_TAR, size, self.origin, self.layers_dir, lambda: never_read(what)
        )

    def layer(self, layer_id: str, diff_id: str) -> StoreLayer:
        record = self._layer_records().get(layer_id)
        if record is None:
            raise StoreUnavailable(f"layer {layer_id[:12]} is not in the store's layer list")
        if record.get("diff-digest") != diff_id:
            raise StoreMismatch(f"layer {layer_id[:12]} has diff digest {str(record.get('diff-digest'))[:80]!r}")
        return self._layer(layer_id, diff_id, record)

    def _layer(self, layer_id: str, diff_id: str, record: dict[str, Any]) -> StoreLayer:
        layer_id = plain_name(layer_id, "a layer id")
        flags = record.get("flags") or {}
        if isinstance(flags, dict) and flags.get("incomplete"):
            raise StoreUnavailable(f"layer {layer_id[:12]} is still being written")
        home = os.path.join(self.driver_home, layer_id)
        if os.path.exists(os.path.join(home, "composefs-data")):
            raise UnknownLayout(f"layer {layer_id[:12]} is a composefs layer, which docker-d2d does not read")
        own = os.path.join(home, "diff")
        tar_split = os.path.join(self.layers_dir, layer_id + ".tar-split.gz")
        # without tar-split the engine rebuilds the tar from the files, not byte for byte: not read
        require(tar_split, f"the tar-split of layer {layer_id[:12]}")
        require(own, f"the diff directory of layer {layer_id[:12]}", directory=True)
        return tar_split_layer(diff_id, tar_split, [own, *lower_dirs(self.driver_home, home)], self.origin, own)
