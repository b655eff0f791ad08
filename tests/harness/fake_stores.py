"""Engine stores on disk for unit tests: what Docker's overlay2 layer store and containerd's content
store hold for an image, written from layer tars (tar-split made as tar-split's disassembler makes
it), so the store readers can be tested without an engine."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from docker_d2d.formats.digests import chain_ids
from docker_d2d.formats.stores.tarsplit import crc64_digest, crc64_update


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def crc(data: bytes) -> bytes:
    return crc64_digest(crc64_update(0, data))


def disassemble(tar: bytes) -> list[dict[str, object]]:
    """What tar-split's NewInputTarStream records for `tar` (tar/asm/disassemble.go): the raw bytes
    before each entry's body (the previous padding, extended headers, the header) as a segment,
    then the entry with its size and CRC, then the rest (padding, end blocks) as a segment."""
    lines: list[dict[str, object]] = []
    pos = 0
    with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8", errors="surrogateescape") as t:
        for member in t.getmembers():
            lines.append({"type": 2, "payload": base64.b64encode(tar[pos : member.offset_data]).decode()})
            size = member.size if member.isreg() else 0
            body = tar[member.offset_data : member.offset_data + size]
            name = member.name.encode("utf-8", "surrogateescape")
            entry: dict[str, object] = {"type": 1, "size": size, "payload": None}
            try:
                entry["name"] = name.decode("utf-8")
            except UnicodeDecodeError:
                entry["name_raw"] = base64.b64encode(name).decode()
            if size:
                entry["payload"] = base64.b64encode(crc(body)).decode()
            lines.append(entry)
            pos = member.offset_data + size
    lines.append({"type": 2, "payload": base64.b64encode(tar[pos:]).decode()})
    return lines


def extract_files(tar: bytes, root: Path) -> None:
    """The regular files' contents under `root`, as a diff directory holds them."""
    with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8", errors="surrogateescape") as t:
        for member in t.getmembers():
            if member.isreg() and member.size:
                path = os.path.join(os.fsencode(root), member.name.encode("utf-8", "surrogateescape"))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                f = t.extractfile(member)
                assert f is not None
                with open(path, "wb") as out:
                    out.write(f.read())


def write_tar_split(lines: list[dict[str, object]], path: Path) -> Path:
    path.write_bytes(gzip.compress(b"".join(json.dumps(line).encode() + b"\n" for line in lines)))
    return path


def overlay2_image(root: Path, layers: Sequence[bytes], config: bytes) -> str:
    """An image in a Docker overlay2 layer store at `root` (DockerRootDir): its config in the image
    database, each layer in the layer database (diff, cache-id, size, tar-split) with its files in
    its own diff directory. Layers already there are kept. Returns the image id."""
    image_dir = root / "image" / "overlay2"
    content = image_dir / "imagedb" / "content" / "sha256"
    content.mkdir(parents=True, exist_ok=True)
    (content / sha(config)[7:]).write_bytes(config)
    diffs = [sha(tar) for tar in layers]
    for tar, diff, chain in zip(layers, diffs, chain_ids(diffs)):
        layer_dir = image_dir / "layerdb" / "sha256" / chain[7:]
        if layer_dir.exists():
            continue
        layer_dir.mkdir(parents=True)
        cache_id = hashlib.sha256(chain.encode()).hexdigest()
        (layer_dir / "diff").write_text(diff)
        (layer_dir / "cache-id").write_text(cache_id)
        (layer_dir / "size").write_text(str(sum(len(d) for d in _regular_files(tar))))
        write_tar_split(disassemble(tar), layer_dir / "tar-split.json.gz")
        files = root / "overlay2" / cache_id / "diff"
        files.mkdir(parents=True)
        extract_files(tar, files)
    return sha(config)


def overlay2_files(root: Path, diff_ids: Sequence[str], index: int) -> Path:
    """The diff directory of an image's layer `index` in a store `overlay2_image` wrote."""
    chain = chain_ids(diff_ids)[index]
    return root / "overlay2" / hashlib.sha256(chain.encode()).hexdigest() / "diff"


def content_image(content: Path, blobs: Sequence[tuple[str, bytes]], config: bytes) -> str:
    """An image in a containerd content store (`.../io.containerd.content.v1.content`): its layer
    blobs as given ((media type, blob) pairs), the config and a manifest. Returns the manifest digest."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(config),
                "size": len(config),
            },
            "layers": [{"mediaType": mt, "digest": sha(b), "size": len(b)} for mt, b in blobs],
        }
    ).encode()
    store = content / "blobs" / "sha256"
    store.mkdir(parents=True, exist_ok=True)
    for data in [config, manifest, *(b for _, b in blobs)]:
        (store / sha(data)[7:]).write_bytes(data)
    return sha(manifest)


def _regular_files(tar: bytes) -> list[bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        return [t.extractfile(m).read() for m in t.getmembers() if m.isreg()]  # type: ignore[union-attr]
