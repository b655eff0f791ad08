"""A layer kept as tar-split metadata plus an overlay diff directory: the part the Docker graphdriver
store and containers/storage share (find the lower layers, size the tar, stream it verified).

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from .common import MEDIA_TYPE_TAR, StoreError, StoreLayer, read_bounded, unavailable_from
from .tarsplit import DiffTree, assemble, entries_at, tar_size


def read_small(path: str, what: str, limit: int = 1 << 16) -> str:
    """A one-line metadata file (an id, a digest, a parent, a lower list)."""
    return read_bounded(path, what, limit).decode("utf-8", "replace").strip()


def require(path: str, what: str, directory: bool = False) -> None:
    """`path` exists (and is a directory when asked), or the StoreError that says why not."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise unavailable_from(exc, what) from exc
    if directory and not stat.S_ISDIR(st.st_mode):
        raise StoreError(f"{what} is not a directory")


def plain_name(value: str, what: str) -> str:
    """An id that becomes one path component: no separators, no dots only."""
    if not value or "/" in value or "\0" in value or value in (".", ".."):
        raise StoreError(f"{what} {value[:80]!r} is not a plain name")
    return value


def lower_dirs(driver_home: str, layer_dir: str) -> list[str]:
    """The diff directories of an overlay layer's lower layers, from its `lower` file
    (`l/SHORT:l/SHORT2...`, each a symlink `../ID/diff` in the driver's home); none for a base."""
    path = os.path.join(layer_dir, "lower")
    if not os.path.exists(path):
        return []
    out = []
    for item in read_small(path, f"{path}").split(":"):
        if not item:
            continue
        link_dir, _, short = item.partition("/")
        if link_dir != "l":
            raise StoreError(f"{path} names {item[:80]!r}, not a link of the driver's l/ directory")
        link = os.path.join(driver_home, "l", plain_name(short, "a lower link"))
        try:
            target = os.readlink(link)
        except OSError as exc:
            raise unavailable_from(exc, link) from exc
        parts = target.split("/")
        if len(parts) != 3 or parts[0] != ".." or parts[2] != "diff":
            raise StoreError(f"{link} points to {target[:80]!r}, not ../ID/diff")
        out.append(os.path.join(driver_home, plain_name(parts[1], "a lower layer id"), "diff"))
    return out


def tar_split_layer(diff_id: str, tar_split: str, diff_dirs: list[str], origin: str, location: str) -> StoreLayer:
    """A layer whose tar is reassembled from `tar_split` and the files of `diff_dirs` (its own
    diff directory first). The tar-split is read once here for the exact size, which the
    writer needs before the body (a tar header)."""
    size = tar_size(entries_at(tar_split))

    def body() -> Iterator[bytes]:
        with DiffTree(diff_dirs) as tree:
            yield from assemble(entries_at(tar_split), tree)

    return StoreLayer(diff_id, diff_id, MEDIA_TYPE_TAR, size, origin, location, body)
