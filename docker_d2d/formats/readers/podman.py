"""Podman's docker-archive: '<diff id hex>.tar' per layer, '<config hex>.json', manifest.json, and
'<v1 id>/layer.tar' symlinks to the layer files."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import SaveFormat
from .legacy import config_claim

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class DockerArchive(SaveFormat):
    @staticmethod
    def expected_names(images: Sequence[Sequence[str]]) -> tuple[dict[str, str], list[str]]:
        return {f"{d[7:]}.tar": d for diff_ids in images for d in diff_ids}, []

    def layer_name(self, name: str) -> bool:
        return name.endswith(".tar") and "/" not in name

    def claims(self, name: str) -> tuple[str | None, str | None]:
        stem, dot, ext = name.partition(".")
        if dot and ext == "tar" and "/" not in name and _HEX64.match(stem):
            return None, "sha256:" + stem
        return config_claim(name)
