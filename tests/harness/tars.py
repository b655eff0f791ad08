"""Tars for unit tests, built once here: exports in each engine's save format, and the files of an output.

legacy()   Docker < 25: '<v1 id>/layer.tar' per layer, a repeated layer as a link
oci()      Docker >= 25 (or, gzip-compressed, a containerd store): blobs by digest
podman()   Podman's docker-archive: '<diff id>.tar', '<v1 id>/layer.tar' symlinks
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator

from docker_d2d.formats.readers.legacy import legacy_v1_ids

Member = tuple[str, bytes] | tuple[str, str, bytes]  # (name, data) or (name, "sym"|"hard", target)


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def config_for(diffs: list[str], arch: str = "amd64") -> bytes:
    return json.dumps({"architecture": arch, "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()


def make_tar(members: Iterable[Member]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m[0])
            if len(m) == 3:
                info.type = tarfile.SYMTYPE if m[1] == "sym" else tarfile.LNKTYPE
                info.linkname = m[2].decode()
                tar.addfile(info)
            else:
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return out.getvalue()


def files(archive: bytes) -> dict[str, bytes]:
    """The regular files of an archive, by name."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def chunks(data: bytes, size: int = 777) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def legacy(layers: list[bytes], config: bytes, *, links: str = "sym") -> tuple[bytes, dict[str, str]]:
    """A Docker < 25 export: '<v1id>/layer.tar' per layer; a layer that occurs again is a link to
    its first file, as moby v20.10 image/tarexport/save.go writes it. Returns it and the entry
    names the plan can predict."""
    diffs = [sha(b) for b in layers]
    ids = [*legacy_v1_ids(diffs), "f" * 64]  # the top layer's id is not predictable
    first: dict[str, str] = {}
    members: list[Member] = []
    for v1, diff, data in zip(ids, diffs, layers):
        if diff in first:
            target = f"../{first[diff]}" if links == "sym" else first[diff]
            members.append((f"{v1}/layer.tar", links, target.encode()))
        else:
            first[diff] = f"{v1}/layer.tar"
            members.append((f"{v1}/layer.tar", data))
    members.append((f"{sha(config)[7:]}.json", config))
    members.sort(key=lambda m: m[0])
    manifest = [{"Config": f"{sha(config)[7:]}.json", "RepoTags": ["a:1"], "Layers": [f"{v}/layer.tar" for v in ids]}]
    named = {f"{v}/layer.tar": d for v, d in zip(ids[:-1], diffs)}
    return make_tar([*members, ("manifest.json", json.dumps(manifest).encode())]), named


def oci(layers: list[bytes], config: bytes, *, gz: bool = False) -> bytes:
    blobs = [gzip.compress(b, mtime=0) for b in layers] if gz else layers
    unique = {sha(b): b for b in [*blobs, config]}
    members: list[Member] = sorted((f"blobs/sha256/{d[7:]}", b) for d, b in unique.items())
    manifest = [{"Config": f"blobs/sha256/{sha(config)[7:]}", "Layers": [f"blobs/sha256/{sha(b)[7:]}" for b in blobs]}]
    return make_tar([*members, ("manifest.json", json.dumps(manifest).encode())])


def podman(layers: list[bytes], config: bytes) -> bytes:
    """Podman's docker-archive: '<diffid>.tar' files, the config, then '<v1id>/layer.tar' symlinks."""
    diffs = [sha(b) for b in layers]
    members: list[Member] = [(f"{d[7:]}.tar", b) for d, b in {d: b for d, b in zip(diffs, layers)}.items()]
    members.append((f"{sha(config)[7:]}.json", config))
    for i, d in enumerate(diffs):
        members.append((f"{i:064x}/layer.tar", "sym", f"../{d[7:]}.tar".encode()))
    manifest = [{"Config": f"{sha(config)[7:]}.json", "Layers": [f"{d[7:]}.tar" for d in diffs]}]
    return make_tar([*members, ("manifest.json", json.dumps(manifest).encode())])
