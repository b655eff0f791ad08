"""Minimal streaming tar reading and writing over byte-chunk iterators.

tarfile needs a file object and copies through small buffers; the rewrite wants
to pass each entry's body on as the chunks arrive, so headers are parsed and
written here and bodies never sit in memory whole.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ArchiveError

BLOCK = 512
CHUNK = 1 << 20

# Extended headers (PAX records, GNU long names) larger than this are refused rather than read
# whole on their header's word; Go's archive/tar, which wrote the exports, caps them the same
# (maxSpecialFileSize).
MAX_EXTENDED_HEADER = 1 << 20

# Entry types without a body in the stream: links, directories, devices, fifos. Regular files
# carry one; sparse files and types tarfile does not know would too, and are refused (no engine
# writes them into an export).
_NO_BODY = frozenset(
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE]
)
_FILE = frozenset([tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE])


class ChunkReader:
    """Reads exact byte counts from an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")
        self.consumed = 0

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._buf = memoryview(chunk)
                return True
        return False

    def read_exact(self, n: int) -> bytes:
        parts = []
        while n > 0:
            if not self._buf and not self._fill():
                raise ArchiveError("the archive ended early (truncated export?)")
            part = self._buf[:n]
            self._buf = self._buf[len(part) :]
            parts.append(bytes(part))
            n -= len(part)
            self.consumed += len(part)
        return b"".join(parts)

    def iter_exact(self, n: int) -> Iterator[memoryview]:
        while n > 0:
            if not self._buf and not self._fill():
                raise ArchiveError("the archive ended early (truncated export?)")
            part = self._buf[: min(n, CHUNK)]
            self._buf = self._buf[len(part) :]
            n -= len(part)
            self.consumed += len(part)
            yield part

    def skip(self, n: int) -> None:
        for _ in self.iter_exact(n):
            pass


@dataclass
class Entry:
    name: str
    size: int
    type: bytes
    linkname: str = ""

    @property
    def is_file(self) -> bool:
        return self.type in _FILE

    @property
    def is_link(self) -> bool:
        return self.type in (tarfile.SYMTYPE, tarfile.LNKTYPE)


def _padding(size: int) -> int:
    return -size % BLOCK


def _pax_records(data: bytes) -> dict[str, str]:
    """Parse '<length> <key>=<value>\n' records; anything else is our ArchiveError."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        digits = data[pos:space]
        if space < 0 or not digits.isdigit():
            raise ArchiveError("the archive has a malformed PAX header (bad record length)")
        end = pos + int(digits)
        if end <= space + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise ArchiveError("the archive has a malformed PAX header (record length out of bounds)")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key:
            raise ArchiveError("the archive has a malformed PAX header (record without key=value)")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return records


def _pax_size(value: str) -> int:
    if not value.isdigit() or len(value) > 20:
        raise ArchiveError(f"the archive has a malformed PAX size {value[:40]!r}")
    return int(value)


def read_entries(reader: ChunkReader) -> Iterator[Entry]:
    """Yield each entry; the caller must consume exactly `entry.size` body bytes
    (via reader.iter_exact or reader.skip) before asking for the next one.

    Raises only ArchiveError for whatever the stream holds."""
    pax: dict[str, str] = {}
    long_name = long_link = None
    while True:
        block = reader.read_exact(BLOCK)
        if block == b"\0" * BLOCK:
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except (tarfile.HeaderError, ValueError, UnicodeError, OverflowError) as exc:
            raise ArchiveError(f"the archive has an invalid tar header: {exc}") from exc
        if info.size < 0:
            raise ArchiveError(f"the archive has a tar header with a negative size ({info.name[:100]!r})")
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            if info.size > MAX_EXTENDED_HEADER:
                raise ArchiveError(
                    f"the archive has a {info.size}-byte extended tar header; more than "
                    f"{MAX_EXTENDED_HEADER} bytes is refused"
                )
            data = reader.read_exact(info.size)
            reader.skip(_padding(info.size))
            if info.type == tarfile.XHDTYPE:
                pax = _pax_records(data)
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        name = long_name or pax.get("path") or info.name
        size = _pax_size(pax["size"]) if "size" in pax else info.size
        if info.type in _NO_BODY:
            size = 0
        elif info.type not in _FILE:
            raise ArchiveError(f"the archive has an entry of unsupported tar type {info.type!r} ({name[:100]!r})")
        name = name[2:] if name.startswith("./") else name  # no str.removeprefix: runs on Python 3.8 (remote/)
        entry = Entry(name, size, info.type, long_link or pax.get("linkpath") or info.linkname)
        pax, long_name, long_link = {}, None, None
        yield entry
        reader.skip(_padding(size))


def file_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * _padding(size)


END_OF_ARCHIVE = b"\0" * (BLOCK * 2)


def file_entry(name: str, data: bytes) -> Iterator[bytes]:
    yield file_header(name, len(data))
    yield data
    yield padding(len(data))
