"""Docker < 25's `docker save`: '<v1 id>/layer.tar' and '<v1 id>/json' per layer, '<config hex>.json', manifest.json."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence

from ..digests import chain_ids
from ..entries import Entry, Expect
from ..spec import StreamSpec
from .base import SaveFormat

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EPOCH_V1_PREFIX = (
    '{"container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,'
    '"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,'
    '"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,'
    '"OnBuild":null,"Labels":null},"created":"1970-01-01T00:00:00Z","layer_id":"'
)


def legacy_v1_ids(diff_ids: Sequence[str]) -> list[str]:
    """The v1 ids Docker < 25 gives the lower layers of an image in `docker save`.

    Lower layers are written with an empty config and the epoch as creation time
    (moby image/tarexport/save.go, image/v1 CreateID), so their ids follow from the chain
    ids alone. The top layer's id hashes the whole config and is not predicted."""
    ids: list[str] = []
    parent = ""
    for chain in chain_ids(diff_ids)[:-1]:
        text = _EPOCH_V1_PREFIX + chain + '"' + (f',"parent":"{parent}"' if parent else "") + "}"
        parent = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        ids.append(parent[7:])
    return ids


def config_claim(name: str) -> tuple[str | None, str | None]:
    """A docker-archive config '<hex>.json' is named by its digest."""
    stem, dot, ext = name.partition(".")
    if dot and ext == "json" and "/" not in name and _HEX64.match(stem):
        return "sha256:" + stem, None
    return None, None


class Legacy(SaveFormat):
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self._distrust = False

    @staticmethod
    def expected_names(images: Sequence[Sequence[str]]) -> tuple[dict[str, str], list[str]]:
        named: dict[str, str] = {}
        unnamed: list[str] = []
        for diff_ids in images:
            for v1, diff in zip(legacy_v1_ids(diff_ids), diff_ids):
                named[f"{v1}/layer.tar"] = diff
            unnamed.extend(diff_ids[-1:])
        return named, unnamed

    def layer_name(self, name: str) -> bool:
        return name.endswith("/layer.tar")

    def claims(self, name: str) -> tuple[str | None, str | None]:
        return config_claim(name)

    def document(self, name: str, data: bytes) -> Iterator[Entry]:
        """Legacy exports write '<v1id>/json' just before '<v1id>/layer.tar'. Lower layers carry the
        epoch as their creation time; one we did not predict means this engine computes v1 ids
        differently, so stop trusting the predicted names and treat their layers as unnamed."""
        if not name.endswith("/json") or self._distrust or f"{name[: -len('json')]}layer.tar" in self.spec.named:
            return
        try:
            doc = json.loads(data)
        except ValueError:
            return
        created = doc.get("created") if isinstance(doc, dict) else None
        if isinstance(created, str) and created.startswith("1970-01-01T00:00:00"):
            self._distrust = True
            yield Expect(tuple(self.spec.named.values()))
