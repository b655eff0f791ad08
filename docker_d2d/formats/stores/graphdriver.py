"""Docker's own layer store over a graphdriver (overlay2): the layer database and the driver's
diff directories, reassembled with tar-split exactly as the engine's export does (moby
`layer/layer_store.go` assembleTarTo), and image configs from the image database.

    <DockerRootDir>/image/<driver>/imagedb/content/sha256/<image id>       the config (its sha256 is the id)
    <DockerRootDir>/image/<driver>/layerdb/sha256/<chain id>/diff          the layer's diff id
                                                          .../cache-id      the driver's id for it
                                                          .../tar-split.json.gz
    <DockerRootDir>/overlay2/<cache-id>/diff                               its files (lower: the parents')

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import json
import os

from ..digests import chain_ids, short
from .common import (
    MEDIA_TYPE_TAR,
    StoredImage,
    StoreError,
    StoreLayer,
    StoreMismatch,
    UnknownLayout,
    hex_of,
    never_read,
    read_document,
)
from .layerdir import lower_dirs, plain_name, read_small, require, tar_split_layer
from .tarsplit import entries_at, tar_size

# Drivers whose layer files sit in a plain directory per cache id, as tar-split needs them. Others
# (vfs, btrfs, zfs, devicemapper, fuse-overlayfs) keep them elsewhere or otherwise: not read.
DIFF_DIRS = {"overlay2": "diff"}


class GraphdriverStore:
    def __init__(self, root: str, driver: str) -> None:
        if driver not in DIFF_DIRS:
            raise UnknownLayout(
                f"the {driver!r} storage driver is not one docker-d2d reads (it reads {', '.join(sorted(DIFF_DIRS))})"
            )
        self.root = root
        self.driver = driver
        self.image_dir = os.path.join(root, "image", driver)
        self.driver_home = os.path.join(root, driver)
        self.origin = f"{driver} layer store"

    def config(self, image_id: str) -> bytes:
        path = os.path.join(self.image_dir, "imagedb", "content", "sha256", hex_of(image_id))
        return read_document(path, image_id, f"the config of image {short(image_id)}")

    def layer(self, diff_id: str, chain_id: str) -> StoreLayer:
        layer_dir = os.path.join(self.image_dir, "layerdb", "sha256", hex_of(chain_id))
        recorded = read_small(os.path.join(layer_dir, "diff"), f"layer {short(chain_id)} of the layer database")
        if recorded != diff_id:
            raise StoreMismatch(f"layer {short(chain_id)} of the layer database has diff id {recorded[:80]!r}")
        cache_id = plain_name(read_small(os.path.join(layer_dir, "cache-id"), "a cache-id"), "the cache-id")
        home = os.path.join(self.driver_home, cache_id)
        own = os.path.join(home, DIFF_DIRS[self.driver])
        require(own, f"the {self.driver} directory of layer {short(diff_id)}", directory=True)
        return tar_split_layer(
            diff_id,
            os.path.join(layer_dir, "tar-split.json.gz"),
            [own, *lower_dirs(self.driver_home, home)],
            self.origin,
            own,
        )

    def named(self, diff_id: str, chain_id: str) -> StoreLayer:
        """A layer only named: its exact tar size from its tar-split (an OCI manifest naming it must
        have it right: a containerd store writes the blob by that size when it exports), nothing of
        its files looked at."""
        layer_dir = os.path.join(self.image_dir, "layerdb", "sha256", hex_of(chain_id))
        size = tar_size(entries_at(os.path.join(layer_dir, "tar-split.json.gz")))
        what = f"layer {short(diff_id)}"
        return StoreLayer(diff_id, diff_id, MEDIA_TYPE_TAR, size, self.origin, layer_dir, lambda: never_read(what))

    def image(self, image_id: str, platform: str | None = None) -> StoredImage:
        """`platform` is ignored: an image id here names one config, of one platform."""
        config = self.config(image_id)
        try:
            diff_ids = json.loads(config)["rootfs"]["diff_ids"] or []
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the config of image {short(image_id)} has no rootfs.diff_ids") from exc
        if not all(isinstance(d, str) for d in diff_ids):
            raise StoreError(f"the config of image {short(image_id)} has malformed diff ids")
        chains = chain_ids(diff_ids)
        return StoredImage(
            image_id,
            config,
            list(diff_ids),
            None,
            lambda i: self.layer(diff_ids[i], chains[i]),
            lambda i: self.named(diff_ids[i], chains[i]),
        )
