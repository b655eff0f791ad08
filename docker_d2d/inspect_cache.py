"""What inspect said about each image id, kept between runs.

An image id is a content address (a config digest, or a manifest digest in the containerd store),
so what inspect tells about its layers and config never changes: planning against a destination
that holds hundreds of images needs to ask only about ids it has not seen before. Names (tags and
repo digests) are not kept: they move; the image list brings them. One file per engine under the user's cache dir
(`$XDG_CACHE_HOME/docker-d2d`, `DOCKER_D2D_CACHE_DIR` to move it), rewritten with only the ids the
engine still lists, so it never outgrows the engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from .model import EngineKind, ImageInfo, Platform

VERSION = 2
# A source engine's cache is never pruned against a full list: keep the newest entries only.
MAX_ENTRIES = 20_000


def cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_D2D_CACHE_DIR"):
        return Path(env["DOCKER_D2D_CACHE_DIR"])
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "docker-d2d"


class InspectCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, ImageInfo] = {}
        self._dirty = False
        if path is not None:
            self._entries = _read(path)

    @classmethod
    def for_engine(cls, endpoint: str, kind: EngineKind, env: Mapping[str, str]) -> InspectCache:
        key = hashlib.sha256(f"{kind.value} {endpoint}".encode()).hexdigest()[:32]
        return cls(cache_dir(env) / "inspect" / f"{key}.json")

    def get(self, image_id: str) -> ImageInfo | None:
        return self._entries.get(image_id)

    def put(self, info: ImageInfo) -> None:
        # An incomplete image in the containerd store answers with no layers until its blobs arrive:
        # only what cannot change any more is kept.
        if info.diff_ids:
            self._entries.pop(info.id, None)  # re-inserted: the newest entries are kept when trimming
            self._entries[info.id] = replace(info, repo_tags=(), repo_digests=())
            self._dirty = True

    def drop(self, image_id: str) -> None:
        """Forget an entry the engine contradicted."""
        if self._entries.pop(image_id, None) is not None:
            self._dirty = True

    def keep_only(self, ids: Iterable[str]) -> None:
        wanted = set(ids)
        gone = [i for i in self._entries if i not in wanted]
        for image_id in gone:
            del self._entries[image_id]
        self._dirty = self._dirty or bool(gone)

    def save(self) -> None:
        """Best effort: a cache that cannot be written only costs the next run some requests."""
        if self.path is None or not self._dirty:
            return
        for image_id in list(self._entries)[: max(0, len(self._entries) - MAX_ENTRIES)]:
            del self._entries[image_id]
        doc = {
            "version": VERSION,
            "images": {
                i.id: {
                    "diff_ids": i.diff_ids,
                    "fingerprint": i.fingerprint,
                    "created": i.created,
                    "size": i.size,
                    "platform": [i.platform.os, i.platform.architecture, i.platform.variant] if i.platform else None,
                    "media_type": i.media_type,
                }
                for i in self._entries.values()
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".inspect-")
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.path)
        except OSError:
            return
        self._dirty = False


def _read(path: Path) -> dict[str, ImageInfo]:
    try:
        doc = json.loads(path.read_text())
        if doc.get("version") != VERSION:
            return {}
        return {
            image_id: ImageInfo(
                id=image_id,
                diff_ids=tuple(e["diff_ids"]),
                fingerprint=e["fingerprint"],
                created=e["created"],
                size=int(e["size"]),
                platform=Platform(*e["platform"]) if e.get("platform") else None,
                media_type=str(e.get("media_type") or ""),
            )
            for image_id, e in doc["images"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # missing or damaged: start afresh
