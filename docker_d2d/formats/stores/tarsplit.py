"""Reassemble a layer tar, byte for byte, from tar-split metadata and the layer's files on disk.

The format is vbatts/tar-split `tar/storage` as the engines write it when they register a layer
(moby `layer/layer_store.go`, containers/storage `layers.go`): gzip of one JSON object per line,

    {"type":2,"payload":BASE64}                  raw tar bytes: headers, PAX/GNU records, padding,
                                                 the end blocks (payload may be null or "")
    {"type":1,"name":N,"size":S,"payload":CRC}   the S bytes of file N, read from the diff directory
                                                 (`name_raw`, base64, when N is not UTF-8; CRC is
                                                 the big-endian CRC-64/ISO of the contents)

and concatenated in order they are the tar the engine was given (tar-split `tar/asm`
`WriteOutputTarStream`, which the engines' own exports run). Entries of size 0 (directories,
links, devices, whiteouts, empty files) stand for nothing but their headers: only the contents of
regular files come from disk. Two file entries with the same cleaned name are refused, as tar-split's
unpacker refuses them.

Runs on the source host too (the agent): Python 3.8, standard library only.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .common import CHUNK, StoreError, StoreMismatch, unavailable_from

SEGMENT = 2
FILE = 1

# A tar-split line is one header's worth of bytes, or a run of end padding (tar-split cuts those
# in 1 MiB pieces): base64 of that is under 1.4 MiB. A longer line is not tar-split.
MAX_LINE = 4 << 20


@dataclass(frozen=True)
class Segment:
    payload: bytes


@dataclass(frozen=True)
class FileRef:
    name: bytes  # as the tar header had it, a path relative to the layer's root
    size: int
    crc64: bytes | None  # 8 bytes, big-endian; None for size 0


def _b64(value: object, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise StoreError(f"tar-split: {what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StoreError(f"tar-split: {what} is not valid base64") from exc


def _clean(name: bytes) -> bytes:
    """Go's filepath.Clean, enough to key duplicates the way tar-split's unpacker does."""
    parts: list[bytes] = []
    for part in name.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if parts and parts[-1] != b"..":
                parts.pop()
            elif not name.startswith(b"/"):
                parts.append(part)
            continue
        parts.append(part)
    cleaned = b"/".join(parts)
    return (b"/" + cleaned if name.startswith(b"/") else cleaned) or (b"/" if name.startswith(b"/") else b".")


def parse_entry(line: bytes) -> Segment | FileRef:
    """One line of tar-split, as a segment or a file reference; anything else is a StoreError."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise StoreError("tar-split: a line is not JSON") from exc
    if not isinstance(doc, dict):
        raise StoreError("tar-split: a line is not a JSON object")
    kind = doc.get("type")
    if kind == SEGMENT:
        return Segment(_b64(doc.get("payload"), "a segment's payload"))
    if kind == FILE:
        raw = doc.get("name_raw")
        if raw:
            name = _b64(raw, "a name_raw")
        else:
            text = doc.get("name", "")
            if not isinstance(text, str):
                raise StoreError("tar-split: a file's name is not text")
            try:
                name = text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise StoreError("tar-split: a file's name is not valid UTF-8") from exc
        size = doc.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise StoreError(f"tar-split: file {name[:100]!r} has an invalid size")
        crc = _b64(doc.get("payload"), "a file's checksum") or None
        if crc is not None and len(crc) != 8:
            raise StoreError(f"tar-split: file {name[:100]!r} has a {len(crc)}-byte checksum, not 8")
        return FileRef(name, size, crc)
    raise StoreError(f"tar-split: unknown entry type {kind!r}")


def read_entries(stream: io.BufferedIOBase | gzip.GzipFile) -> Iterator[Segment | FileRef]:
    """The entries of an uncompressed tar-split stream, one line at a time (bounded memory), with
    tar-split's own check: no two file entries of the same cleaned name."""
    seen: set[bytes] = set()
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            raise StoreError(f"tar-split: a line is longer than {MAX_LINE} bytes")
        if not line.strip():
            continue
        entry = parse_entry(line)
        if isinstance(entry, FileRef):
            key = _clean(entry.name)
            if key in seen:
                raise StoreError(f"tar-split: the file {entry.name[:100]!r} appears twice")
            seen.add(key)
        yield entry


def open_tar_split(path: str) -> gzip.GzipFile:
    try:
        return gzip.GzipFile(path, "rb")
    except OSError as exc:
        raise unavailable_from(exc, f"tar-split {path}") from exc


def entries_at(path: str) -> Iterator[Segment | FileRef]:
    """The entries of a `tar-split.json.gz` file; gzip and I/O errors become StoreErrors."""
    with open_tar_split(path) as stream:
        try:
            yield from read_entries(stream)
        except (OSError, EOFError, zlib.error) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise unavailable_from(exc, f"tar-split {path}") from exc
            raise StoreError(f"tar-split {path} is not valid gzip: {exc}") from exc


def tar_size(entries: Iterable[Segment | FileRef]) -> int:
    """The length of the tar these entries reassemble into."""
    return sum(e.payload.__len__() if isinstance(e, Segment) else e.size for e in entries)


class DiffTree:
    """Opens the regular files of a layer's diff directory by their tar names, never following a
    symlink on the way (a layer's own symlink must not lead a reader running as root out of the
    tree), falling through to the next root when a file is absent from one (containers/storage's
    file getter looks in the lower layers' diff directories too). Keeps the last directory open:
    tar entries come grouped by directory."""

    _DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    # O_NONBLOCK: a FIFO in the tree must not hang the open (it is then refused as not a file)
    _FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self._cached: dict[int, tuple[tuple[bytes, ...], int]] = {}

    def close(self) -> None:
        for _, fd in self._cached.values():
            os.close(fd)
        self._cached.clear()

    def __enter__(self) -> DiffTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dir(self, index: int, parent: tuple[bytes, ...]) -> int:
        cached = self._cached.get(index)
        if cached is not None and cached[0] == parent:
            return cached[1]
        fd = os.open(os.fsencode(self.roots[index]), self._DIR_FLAGS)
        try:
            for part in parent:
                next_fd = os.open(part, self._DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        if cached is not None:
            os.close(cached[1])
        self._cached[index] = (parent, fd)
        return fd

    def open(self, name: bytes) -> io.FileIO:
        parts = [p for p in name.split(b"/") if p not in (b"", b".")]
        if not parts or b".." in parts:
            raise StoreError(f"tar-split names a file outside the layer: {name[:100]!r}")
        parent, leaf = tuple(parts[:-1]), parts[-1]
        shown = name.decode("utf-8", "replace")[:200]
        for index, root in enumerate(self.roots):
            try:
                fd = os.open(leaf, self._FILE_FLAGS, dir_fd=self._dir(index, parent))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if exc.errno == getattr(os, "ELOOP", 40):
                    raise StoreMismatch(f"{shown} is a symlink in {root}, the layer has a file there") from exc
                raise unavailable_from(exc, f"{shown} in {root}") from exc
            try:
                mode = os.fstat(fd).st_mode
                if not stat.S_ISREG(mode):
                    raise StoreMismatch(f"{shown} is not a regular file in {root}: changed behind the engine's back")
                return io.FileIO(fd, "rb", closefd=True)
            except BaseException:
                os.close(fd)
                raise
        raise StoreMismatch(f"{shown} is missing from {self.roots[0]}: changed behind the engine's back")


def assemble(entries: Iterable[Segment | FileRef], tree: DiffTree, *, check_crc: bool = False) -> Iterator[bytes]:
    """The tar, as chunks of CHUNK bytes (the last one shorter). A file whose size on disk is not
    the one its header promised raises StoreMismatch naming it, before its contents are read.
    `check_crc` also checks each file's CRC-64 (pure Python: slow, for diagnosis and tests)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    pos = 0
    for entry in entries:
        if isinstance(entry, Segment):
            data = memoryview(entry.payload)
            while data:
                n = min(len(data), CHUNK - pos)
                view[pos : pos + n] = data[:n]
                pos += n
                data = data[n:]
                if pos == CHUNK:
                    yield bytes(buf)
                    pos = 0
            continue
        if entry.size == 0:
            continue  # tar-split's WriteOutputTarStream reads nothing for these: headers only
        shown = entry.name.decode("utf-8", "replace")[:200]
        with tree.open(entry.name) as f:
            on_disk = os.fstat(f.fileno()).st_size
            if on_disk != entry.size:
                raise StoreMismatch(
                    f"{shown} has {on_disk} bytes on disk, the layer has {entry.size}: changed behind the engine's back"
                )
            crc = CRC64_INIT
            left = entry.size
            while left:
                want = min(left, CHUNK - pos)
                try:
                    n = f.readinto(view[pos : pos + want])
                except OSError as exc:
                    raise unavailable_from(exc, shown) from exc
                if not n:
                    raise StoreMismatch(f"{shown} ended early: changed behind the engine's back")
                if check_crc:
                    crc = crc64_update(crc, view[pos : pos + n])
                pos += n
                left -= n
                if pos == CHUNK:
                    yield bytes(buf)
                    pos = 0
        if check_crc and entry.crc64 is not None and crc64_digest(crc) != entry.crc64:
            raise StoreMismatch(f"{shown} fails its CRC-64 check: changed behind the engine's back")
    if pos:
        yield bytes(buf[:pos])


# CRC-64/ISO as Go's hash/crc64 computes it (tar-split's storage.CRCTable), reflected.
CRC64_INIT = 0
_ISO_POLY = 0xD800000000000000


def _table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _ISO_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()
_MASK = (1 << 64) - 1


def crc64_update(crc: int, data: bytes | memoryview) -> int:
    crc = ~crc & _MASK
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return ~crc & _MASK


def crc64_digest(crc: int) -> bytes:
    return crc.to_bytes(8, "big")
