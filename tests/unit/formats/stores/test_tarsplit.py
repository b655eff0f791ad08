"""tar-split reassembly on crafted inputs (pure logic, files in a temp dir): the tar comes back byte
for byte, in bounded chunks; whatever does not match what the engine registered (a file changed,
missing, replaced by a symlink or a FIFO, a name outside the tree, malformed metadata) is a
StoreError, and the body's last chunk is held back until the digest is proven."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_d2d.formats.stores import common
from docker_d2d.formats.stores.common import CHUNK, StoreError, StoreMismatch, StoreUnavailable, verified
from docker_d2d.formats.stores.containers import big_data_name
from docker_d2d.formats.stores.tarsplit import (
    DiffTree,
    FileRef,
    Segment,
    assemble,
    crc64_digest,
    crc64_update,
    entries_at,
    parse_entry,
    read_entries,
    tar_size,
)
from tests.harness.fake_stores import disassemble, extract_files, write_tar_split
from tests.harness.layer_trees import EMPTY_1024, empty_tar, tricky_layers


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def crc(data: bytes) -> bytes:
    return crc64_digest(crc64_update(0, data))


def reassemble(tmp_path: Path, tar: bytes, check_crc: bool = False) -> list[bytes]:
    root = tmp_path / "diff"
    root.mkdir(exist_ok=True)
    extract_files(tar, root)
    ts = write_tar_split(disassemble(tar), tmp_path / "tar-split.json.gz")
    with DiffTree([str(root)]) as tree:
        return list(assemble(entries_at(str(ts)), tree, check_crc=check_crc))


@pytest.mark.parametrize("index", range(len(tricky_layers())))
def test_every_shape_comes_back_byte_for_byte(tmp_path: Path, index: int) -> None:
    tar = tricky_layers()[index]
    chunks = reassemble(tmp_path, tar, check_crc=True)
    assert b"".join(chunks) == tar
    assert tar_size(entries_at(str(tmp_path / "tar-split.json.gz"))) == len(tar)
    assert all(len(c) == CHUNK for c in chunks[:-1]) and 0 < len(chunks[-1]) <= CHUNK


def test_a_file_bigger_than_a_chunk_streams_in_chunks(tmp_path: Path) -> None:
    buf = io.BytesIO()
    big = os.urandom(3 * CHUNK + 17)
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("big")
        info.size = len(big)
        t.addfile(info, io.BytesIO(big))
    tar = buf.getvalue()
    chunks = reassemble(tmp_path, tar)
    assert b"".join(chunks) == tar and max(len(c) for c in chunks) == CHUNK and len(chunks) == 4


def test_empty_layers(tmp_path: Path) -> None:
    assert b"".join(reassemble(tmp_path, EMPTY_1024)) == EMPTY_1024
    assert b"".join(reassemble(tmp_path, empty_tar())) == empty_tar()
    # a tar-split with no entry at all reassembles into nothing (and hashes as such)
    ts = write_tar_split([], tmp_path / "none.json.gz")
    with DiffTree([str(tmp_path)]) as tree:
        assert list(assemble(entries_at(str(ts)), tree)) == []


def test_entries_of_size_0_are_never_opened(tmp_path: Path) -> None:
    """Directories, links, devices, whiteouts, empty files: headers only (a whiteout is a 0/0
    character device in an overlay diff directory, and its name is not on disk at all)."""
    lines: list[dict[str, object]] = [
        {"type": 2, "payload": base64.b64encode(b"H" * 512).decode()},
        {"type": 1, "name": "etc/.wh.gone", "payload": None},
        {"type": 1, "name": "no/such/dir/", "size": 0},
        {"type": 2, "payload": None},
        {"type": 2, "payload": ""},
    ]
    ts = write_tar_split(lines, tmp_path / "ts.json.gz")
    with DiffTree([str(tmp_path / "missing")]) as tree:
        assert b"".join(assemble(entries_at(str(ts)), tree)) == b"H" * 512


def test_name_raw_is_the_name_in_bytes(tmp_path: Path) -> None:
    name = b"latin/caf\xe9.txt"
    (tmp_path / "diff" / "latin").mkdir(parents=True)
    (tmp_path / "diff").joinpath(os.fsdecode(name)).write_bytes(b"xyz")
    entry = {"type": 1, "name_raw": base64.b64encode(name).decode(), "size": 3, "payload": None}
    assert parse_entry(json.dumps(entry).encode()) == FileRef(name, 3, None)
    ts = write_tar_split([entry], tmp_path / "ts.json.gz")
    with DiffTree([str(tmp_path / "diff")]) as tree:
        assert b"".join(assemble(entries_at(str(ts)), tree)) == b"xyz"


def test_crc64_is_go_hash_crc64_iso() -> None:
    # "hello" as a real engine's tar-split recorded it (docker 20.10, layerdb), and the catalogue's check value
    assert crc(b"hello") == base64.b64decode("PD7u4tgQAAA=")
    assert crc64_update(0, b"123456789") == 0xB90956C775A41001
    assert crc64_update(crc64_update(0, b"1234"), b"56789") == 0xB90956C775A41001


# --- what the engine did not register -------------------------------------------------------


def one_file_layer(tmp_path: Path, content: bytes = b"original\n") -> tuple[bytes, Path, Path]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("dir/file")
        info.size = len(content)
        t.addfile(info, io.BytesIO(content))
    tar = buf.getvalue()
    root = tmp_path / "diff"
    root.mkdir()
    extract_files(tar, root)
    return tar, root, write_tar_split(disassemble(tar), tmp_path / "ts.json.gz")


def read(ts: Path, roots: list[Path], check_crc: bool = False) -> bytes:
    with DiffTree([str(r) for r in roots]) as tree:
        return b"".join(assemble(entries_at(str(ts)), tree, check_crc=check_crc))


def test_a_file_of_another_size_is_named_before_it_is_read(tmp_path: Path) -> None:
    _, root, ts = one_file_layer(tmp_path)
    (root / "dir/file").write_bytes(b"edited by hand\n")
    with pytest.raises(StoreMismatch, match=r"dir/file has 15 bytes on disk, the layer has 9"):
        read(ts, [root])


def test_same_size_edit_fails_the_digest_and_the_crc(tmp_path: Path) -> None:
    tar, root, ts = one_file_layer(tmp_path)
    (root / "dir/file").write_bytes(b"0riginal\n")
    with pytest.raises(StoreMismatch, match="dir/file fails its CRC-64 check"):
        read(ts, [root], check_crc=True)
    body = read(ts, [root])
    assert len(body) == len(tar) and body != tar
    got: list[bytes] = []
    with pytest.raises(StoreMismatch, match="does not hash to"):
        for chunk in verified(iter([body[:1000], body[1000:]]), sha(tar), len(tar), "layer x"):
            got.append(chunk)
    assert got == [body[:1000]]  # the last chunk never left


def test_missing_file_symlinked_path_fifo_and_escape_are_refused(tmp_path: Path) -> None:
    _, root, ts = one_file_layer(tmp_path)
    (root / "dir/file").unlink()
    with pytest.raises(StoreMismatch, match="dir/file is missing"):
        read(ts, [root])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_bytes(b"original\n")
    (root / "dir").rmdir()
    (root / "dir").symlink_to(outside)  # a directory symlink on the way is not followed
    with pytest.raises(StoreError):
        read(ts, [root])
    (root / "dir").unlink()
    (root / "dir").mkdir()
    (root / "dir/file").symlink_to(outside / "file")
    with pytest.raises(StoreMismatch, match="is a symlink"):
        read(ts, [root])
    (root / "dir/file").unlink()
    os.mkfifo(root / "dir/file")
    with pytest.raises(StoreMismatch, match="not a regular file"):
        read(ts, [root])
    escape = write_tar_split([{"type": 1, "name": "../outside/file", "size": 9}], tmp_path / "escape.json.gz")
    with pytest.raises(StoreError, match="outside the layer"):
        read(escape, [root])


def test_a_file_absent_from_the_diff_directory_is_read_from_the_next(tmp_path: Path) -> None:
    """containers/storage's file getter falls through to the lower layers' diff directories."""
    tar, root, ts = one_file_layer(tmp_path)
    lower = tmp_path / "lower"
    (root / "dir").rename(lower.parent / "moved")
    lower.mkdir()
    (lower.parent / "moved").rename(lower / "dir")
    assert read(ts, [root, lower]) == tar


def test_unreadable_file_says_what_would_help(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        exc = common.unavailable_from(PermissionError(13, "Permission denied"), "x")
        assert isinstance(exc, StoreUnavailable) and exc.enable == "run as the store's owner"
    else:  # pragma: no cover - the suite runs as root
        _, root, ts = one_file_layer(tmp_path)
        os.chmod(root / "dir/file", 0)
        with pytest.raises(StoreUnavailable, match="permission denied"):
            read(ts, [root])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"type":3}', "unknown entry type 3"),
        (b'{"type":2,"payload":"***"}', "not valid base64"),
        (b'{"type":1,"name":"a","size":-1}', "invalid size"),
        (b'{"type":1,"name":"a","size":"1"}', "invalid size"),
        (b'{"type":1,"name":"a","size":1,"payload":"AAAA"}', "3-byte checksum"),
        (b'{"type":1,"name":7}', "not text"),
    ],
)
def test_malformed_lines(line: bytes, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        list(read_entries(io.BytesIO(line + b"\n")))


def test_duplicate_names_are_refused_as_tar_split_does() -> None:
    lines = b'{"type":1,"name":"a/b","size":1}\n{"type":1,"name":"./a//b","size":1}\n'
    with pytest.raises(StoreError, match="appears twice"):
        list(read_entries(io.BytesIO(lines)))


def test_segments_and_files_parse() -> None:
    lines = b'{"type":2,"payload":"AAE="}\n\n{"type":1,"name":"x","size":2,"payload":"AAAAAAAAAAA=","position":1}\n'
    assert list(read_entries(io.BytesIO(lines))) == [Segment(b"\0\1"), FileRef(b"x", 2, b"\0" * 8)]


def test_not_gzip_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "ts.json.gz").write_bytes(b"plain text, not gzip")
    with pytest.raises(StoreError, match="not valid gzip"):
        list(entries_at(str(tmp_path / "ts.json.gz")))
    truncated = gzip.compress(b'{"type":2,"payload":"AAE="}\n' * 100)[:-20]
    (tmp_path / "cut.json.gz").write_bytes(truncated)
    with pytest.raises(StoreError):
        list(entries_at(str(tmp_path / "cut.json.gz")))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        list(entries_at(str(tmp_path / "none.json.gz")))


# --- the verifying body ----------------------------------------------------------------------


def chunks_of(data: bytes, n: int) -> Iterator[bytes]:
    return iter([data[i : i + n] for i in range(0, len(data), n)])


def test_verified_passes_a_right_body_whole() -> None:
    data = os.urandom(5000)
    assert b"".join(verified(chunks_of(data, 700), sha(data), len(data), "x")) == data
    assert b"".join(verified(chunks_of(data, 700), sha(data), None, "x")) == data
    assert list(verified(iter([]), sha(b""), 0, "x")) == []


def test_verified_stops_a_longer_body_early_and_a_shorter_one_at_its_end() -> None:
    data = os.urandom(5000)
    got = []
    with pytest.raises(StoreMismatch, match="longer than its 3000 bytes"):
        for chunk in verified(chunks_of(data, 1000), sha(data[:3000]), 3000, "x"):
            got.append(chunk)
    assert len(b"".join(got)) <= 3000
    with pytest.raises(StoreMismatch, match="has 5000 bytes, not 6000"):
        list(verified(chunks_of(data, 1000), sha(data), 6000, "x"))
    with pytest.raises(StoreUnavailable, match="not supported"):
        list(verified(chunks_of(data, 1000), "sha512:" + "0" * 128, None, "x"))


# --- small pieces ------------------------------------------------------------------------------


def test_hex_of_takes_only_a_sha256_digest() -> None:
    a = sha(b"a")
    assert common.hex_of(a) == a[7:]
    for bad in ("sha256:../../etc", "sha512:" + "0" * 64, a.upper(), a + "0"):
        with pytest.raises(StoreError):
            common.hex_of(bad)


def test_big_data_names_as_containers_storage_makes_them() -> None:
    # seen in a Podman 4.3 store: the config key and the plain "manifest"
    key = "sha256:5b4fe4c4f0b7fbe70f68005a8ec2322fc1c385cfbd60f2c5edfe07dbef1260a0"
    assert big_data_name(key) == "=" + base64.b64encode(key.encode()).decode()
    assert big_data_name("manifest") == "manifest"
    assert big_data_name("Manifest") == "=" + base64.b64encode(b"Manifest").decode()


def test_containerd_content_roots_follow_what_info_names(tmp_path: Path) -> None:
    """The containerd dockerd started keeps its config beside the socket /info names (API 1.46+);
    without that, dockerd's managed containerd under the data root, then the system one."""
    from docker_d2d.formats.stores.probe import _toml_root, containerd_content_roots

    exec_dir = tmp_path / "exec" / "containerd"
    exec_dir.mkdir(parents=True)
    (exec_dir / "containerd.toml").write_text(
        'disabled_plugins = []\nroot = "/data/containerd/daemon" # comment\nstate = "/x"\n[grpc]\n  root = "no"\n'
    )
    assert _toml_root(str(exec_dir / "containerd.toml")) == "/data/containerd/daemon"
    assert _toml_root(str(tmp_path / "missing.toml")) == ""
    info = {"DockerRootDir": "/data", "Containerd": {"Address": str(exec_dir / "containerd.sock")}}
    assert containerd_content_roots(info) == ["/data/containerd/daemon/io.containerd.content.v1.content"]
    roots = containerd_content_roots({"DockerRootDir": "/data"})
    assert roots[0] == "/data/containerd/daemon/io.containerd.content.v1.content"
    assert roots[1].endswith("/io.containerd.content.v1.content") and len(roots) == 2
