"""Hand-made layer tars with every shape a layer tar can take (hardlinks, symlinks, long names in
GNU and PAX form, non-UTF-8 and non-ASCII names, big ids, xattrs, devices, whiteouts, opaque
directories, empty layers, 0-byte and multi-MiB files), and the docker-archive that loads them as
one image: `docker load` keeps each layer tar byte for byte (the engine registers it with
tar-split), so the stores hold exactly these tars."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
from collections.abc import Callable

MTIME = 1_700_000_000
BIG = (5 << 20) // 2 + 123  # over a 1 MiB chunk, not a multiple of anything


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.mode = 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _dir(tar: tarfile.TarFile, name: str, **attrs: object) -> None:
    attrs = {"type": tarfile.DIRTYPE, "mode": 0o755, **attrs}
    _add(tar, name, None, **attrs)


def layer_tar(fill: Callable[[tarfile.TarFile], None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tar:
        fill(tar)
    return buf.getvalue()


# security.capability v2, cap_net_bind_service+ep (linux/capability.h vfs_cap_data)
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def base_tree(tar: tarfile.TarFile, big_id: int = 3_000_000) -> None:
    """GNU format: long names and link targets as ././@LongLink, big ids base-256 (over 2097151,
    what 7 octal digits hold), raw bytes names."""
    _dir(tar, "etc")
    _add(tar, "etc/zero", b"")
    _add(tar, "etc/small", b"hello\n")
    _add(tar, "etc/small-link", type=tarfile.LNKTYPE, linkname="etc/small")
    _add(tar, "etc/sym", type=tarfile.SYMTYPE, linkname="small")
    _add(tar, "etc/abs", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    _add(tar, "etc/dangle", type=tarfile.SYMTYPE, linkname="nowhere/x")
    _dir(tar, "data")
    _add(tar, "data/big.bin", os.urandom(BIG))
    _add(tar, "data/keep", b"kept\n")
    long_dir = "deep/" + "d" * 60
    _dir(tar, "deep")
    _dir(tar, long_dir)
    _add(tar, long_dir + "/" + "f" * 120, b"a long name\n")
    _add(tar, "etc/long-target", type=tarfile.SYMTYPE, linkname="../" + long_dir + "/" + "f" * 120)
    _add(tar, "etc/big-uid", b"owned by a big uid\n", uid=big_id, gid=big_id)
    _dir(tar, "latin")
    _add(tar, "latin/caf\udce9.txt", b"latin-1 name\n")  # b"caf\xe9": not UTF-8
    _dir(tar, "run")
    _add(tar, "run/fifo", type=tarfile.FIFOTYPE)
    _dir(tar, "dev")
    _add(tar, "dev/null-ish", type=tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666)
    _dir(tar, "home")
    _dir(tar, "home/user", uid=1000, gid=1000, mode=0o700)
    _add(tar, "home/user/secret", b"only for uid 1000\n", uid=1000, gid=1000, mode=0o600)


def upper_tree(tar: tarfile.TarFile, big_id: int = 5_000_000) -> None:
    """PAX format: non-ASCII names, big ids and xattrs as PAX records; whiteouts and an opaque dir."""
    _dir(tar, "unicode")
    _add(tar, "unicode/naïve-日本.txt", b"utf-8 name\n")
    _add(tar, "unicode/" + "é" * 80, b"long and non-ASCII\n")
    _add(tar, "etc/pax-uid", b"pax uid\n", uid=big_id, gid=big_id)
    _dir(tar, "bin")
    _add(
        tar,
        "bin/tool",
        b"#!/bin/true\n",
        mode=0o755,
        pax_headers={
            "SCHILY.xattr.user.comment": "a user xattr",
            "SCHILY.xattr.security.capability": CAPABILITY.decode("utf-8", "surrogateescape"),
        },
    )
    _add(tar, "etc/.wh.small", b"")  # the file deleted
    _add(tar, "deep/.wh." + "d" * 60, b"")  # a directory deleted
    _dir(tar, "data")
    _add(tar, "data/.wh..wh..opq", b"")  # data/ made opaque: big.bin and keep hidden
    _add(tar, "data/new.txt", b"after the opaque marker\n")


def link_tree(tar: tarfile.TarFile) -> None:
    """ustar: a 0-byte file and a hardlink to it, a file and two hardlinks to it (engines refuse a
    hardlink to a lower layer's file: each layer is extracted on its own)."""
    _dir(tar, "later")
    _add(tar, "later/empty", b"")
    _add(tar, "later/empty-link", type=tarfile.LNKTYPE, linkname="later/empty")
    _add(tar, "later/file", b"linked twice\n")
    _add(tar, "later/link1", type=tarfile.LNKTYPE, linkname="later/file")
    _add(tar, "later/link2", type=tarfile.LNKTYPE, linkname="later/file")


def empty_tar() -> bytes:
    """What Python's tarfile writes for no entries: the end blocks padded to a 10 KiB record."""
    return layer_tar(lambda tar: None)


EMPTY_1024 = b"\0" * 1024  # the canonical empty layer (diff id sha256:5f70bf18...)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tricky_layers(rootless: bool = False) -> list[bytes]:
    """Layers in order: GNU base, PAX upper with whiteouts, two empty layers, the first empty one
    again (same diff id under another chain), links. `rootless`: ids a rootless engine can map
    (its subordinate range has 65536; PAX records then come from the names alone)."""
    empty = empty_tar()
    ids = (60_000, 60_001) if rootless else (3_000_000, 5_000_000)
    return [
        layer_tar(lambda tar: base_tree(tar, ids[0]), tarfile.GNU_FORMAT),
        layer_tar(lambda tar: upper_tree(tar, ids[1])),
        empty,
        EMPTY_1024,
        empty,
        layer_tar(link_tree, tarfile.USTAR_FORMAT),
    ]


def docker_archive(tag: str, layers: list[bytes]) -> bytes:
    """A legacy docker-archive (manifest.json) of one image made of `layers`, for `docker load`."""
    diff_ids = [sha256(layer) for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
        }
    ).encode()
    paths = [f"{d[7:]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": f"{sha256(config)[7:]}.json", "RepoTags": [tag], "Layers": paths}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        written = set()
        for path, data in [*zip(paths, layers), (f"{sha256(config)[7:]}.json", config), ("manifest.json", manifest)]:
            if path in written:
                continue
            written.add(path)
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
