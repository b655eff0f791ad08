"""containerd's content store (Docker >= 25 with the containerd image store, and plain containerd):
every blob under its digest, as it was pulled or built (compressed layers stay compressed).

    <root>/io.containerd.content.v1.content/blobs/sha256/<hex>

An image is named by its manifest (or index) digest, which is the engine's image id there; the
manifest names the config and the layer blobs, and the config's diff ids pair with the manifest's
layers by position, so every blob is known before a byte of it is read.

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from ..digests import short
from .common import (
    CHUNK,
    StoredImage,
    StoreError,
    StoreLayer,
    StoreUnavailable,
    hex_of,
    never_read,
    read_document,
    unavailable_from,
)

CONTENT_PLUGIN = "io.containerd.content.v1.content"
ORIGIN = "containerd content store"


def _platform_of(desc: dict[str, Any]) -> str:
    p = desc.get("platform") or {}
    parts = [str(p.get("os", "")), str(p.get("architecture", ""))]
    if p.get("variant"):
        parts.append(str(p["variant"]))
    return "/".join(parts)


def _matches(desc: dict[str, Any], platform: str) -> bool:
    """`platform` is os/arch[/variant]; without a variant any variant of that arch matches."""
    want = platform.split("/")
    have = _platform_of(desc).split("/")
    return have[:2] == want[:2] and (len(want) < 3 or have[2:3] == want[2:3])


class ContainerdStore:
    def __init__(self, content_roots: list[str]) -> None:
        """`content_roots`: the content plugin's directories (`.../io.containerd.content.v1.content`)
        to look for blobs in, in order. Blobs are content addressed: whichever holds one, its bytes
        are verified against the digest."""
        if not content_roots:
            raise StoreUnavailable("no containerd content store was found")
        self.roots = content_roots
        self.origin = ORIGIN

    def blob_path(self, digest: str) -> str:
        hexpart = hex_of(digest)
        denied: OSError | None = None
        for root in self.roots:
            path = os.path.join(root, "blobs", "sha256", hexpart)
            try:
                os.stat(path)
                return path
            except FileNotFoundError:
                continue
            except OSError as exc:
                denied = exc
        if denied is not None:
            raise unavailable_from(denied, f"blob {short(digest)} of the content store")
        raise StoreUnavailable(f"blob {short(digest)} is not in the content store")

    def document(self, digest: str, what: str) -> bytes:
        return read_document(self.blob_path(digest), digest, what)

    def _json(self, data: bytes, what: str) -> dict[str, Any]:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise StoreError(f"{what} is not JSON") from exc
        if not isinstance(doc, dict):
            raise StoreError(f"{what} is not a JSON object")
        return doc

    def manifest(self, image_id: str, platform: str | None = None) -> tuple[str, bytes, bytes | None]:
        """The image manifest (digest and bytes) of `image_id`, a manifest or index digest, and the
        index (or None); for an index, the manifest of `platform` (os/arch[/variant]), which may be
        left out only when the index has one platform (attestation manifests aside)."""
        data = self.document(image_id, f"image {short(image_id)}")
        doc = self._json(data, f"image {short(image_id)}")
        if "manifests" not in doc:
            return image_id, data, None
        entries = [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
        images = [d for d in entries if _platform_of(d).split("/")[0] not in ("unknown", "")]
        if platform is not None:
            images = [d for d in images if _matches(d, platform)]
        if len(images) != 1:
            have = ", ".join(sorted({_platform_of(d) for d in entries})) or "none"
            which = f"platform {platform}" if platform else "a platform"
            raise StoreUnavailable(f"image {short(image_id)} is an index: {which} not chosen among {have}")
        digest = str(images[0].get("digest", ""))
        manifest = self.document(digest, f"the {_platform_of(images[0])} manifest of {short(image_id)}")
        if "manifests" in self._json(manifest, "a manifest"):
            raise StoreUnavailable(f"image {short(image_id)} nests an index in an index")
        return digest, manifest, data

    def image(self, image_id: str, platform: str | None = None) -> StoredImage:
        digest, manifest, index = self.manifest(image_id, platform)
        doc = self._json(manifest, f"manifest {short(digest)}")
        try:
            config_desc = doc["config"]
            layers = list(doc.get("layers") or [])
            config_digest = str(config_desc["digest"])
        except (KeyError, TypeError) as exc:
            raise StoreError(f"manifest {short(digest)} has no config") from exc
        config = self.document(config_digest, f"the config of {short(image_id)}")
        try:
            diff_ids = list(self._json(config, "a config")["rootfs"]["diff_ids"] or [])
        except (KeyError, TypeError) as exc:
            raise StoreError(f"the config of {short(image_id)} has no rootfs.diff_ids") from exc
        if len(diff_ids) != len(layers) or not all(isinstance(d, dict) for d in layers):
            raise StoreError(
                f"manifest {short(digest)} names {len(layers)} layers, its config {len(diff_ids)} diff ids"
            )
        return StoredImage(
            image_id,
            config,
            diff_ids,
            manifest,
            lambda i: self.layer(diff_ids[i], layers[i]),
            lambda i: self.named(diff_ids[i], layers[i]),
            index=index,
        )

    def named(self, diff_id: str, descriptor: dict[str, Any]) -> StoreLayer:
        """A layer only named, by its manifest's descriptor: nothing of the blob is looked at."""
        digest, media_type, size = self._descriptor(descriptor)
        what = f"layer {short(diff_id)}"
        return StoreLayer(diff_id, digest, media_type, size, ORIGIN, digest, lambda: never_read(what))

    def _descriptor(self, descriptor: dict[str, Any]) -> tuple[str, str, int]:
        digest = str(descriptor.get("digest", ""))
        size = descriptor.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise StoreError(f"the descriptor of layer {short(digest)} has no valid size")
        hex_of(digest)
        return digest, str(descriptor.get("mediaType", "")), size

    def layer(self, diff_id: str, descriptor: dict[str, Any]) -> StoreLayer:
        """The layer blob a manifest descriptor names, as it is stored."""
        digest, media_type, size = self._descriptor(descriptor)
        path = self.blob_path(digest)

        def body() -> Iterator[bytes]:
            try:
                with open(path, "rb", buffering=0) as f:
                    while True:
                        chunk = f.read(CHUNK)
                        if not chunk:
                            return
                        yield chunk
            except OSError as exc:
                raise unavailable_from(exc, f"blob {short(digest)}") from exc

        return StoreLayer(diff_id, digest, media_type, size, ORIGIN, path, body)
