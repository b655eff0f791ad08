"""Property-based tests of the archive reader and the rewrite (hypothesis).

Generated tar streams with files, symlinks, hardlinks, directories, PAX and GNU long names,
duplicated and missing entries, truncated or altered anywhere: the reader yields exactly the
entries tarfile wrote, or raises our ArchiveError, never another exception; and the rewrite
never produces an archive whose config or layers are not the source's."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from docker_d2d.errors import ArchiveError
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.formats.tarstream import ChunkReader, read_entries
from tests.harness.tars import config_for, legacy, oci, podman, sha
from tests.harness.tars import files as tar_files

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- the tar reader -----------------------------------------------------------------------------

# Names long enough to need PAX or GNU long-name records, and non-ASCII ones.
name_part = st.text(alphabet=st.sampled_from("abcxyz_.-é日"), min_size=1, max_size=40)
names = st.lists(name_part, min_size=1, max_size=8).map("/".join).filter(lambda n: n not in (".", ".."))


@st.composite
def tar_members(draw: st.DrawFn) -> list[tuple[str, bytes, bytes | str]]:
    """(name, type, body or link target); names may repeat (a duplicated entry)."""
    members: list[tuple[str, bytes, bytes | str]] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from([tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE]))
        repeat = bool(members) and draw(st.booleans())
        name = draw(st.sampled_from([m[0] for m in members])) if repeat else draw(names)
        if kind == tarfile.REGTYPE:
            members.append((name, kind, draw(st.binary(max_size=1500))))
        elif kind == tarfile.DIRTYPE:
            members.append((name, kind, b""))
        else:
            members.append((name, kind, draw(names)))
    return members


def write_tar(members: list[tuple[str, bytes, bytes | str]], fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, kind, body in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if isinstance(body, str):
                info.linkname = body
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """The stream in pieces of arbitrary sizes, as a socket would deliver it."""
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        yield data[start:cut]
        start = cut
    yield data[start:]


def read_all(chunks: Iterator[bytes]) -> list[tuple[str, bytes, str, bytes]]:
    reader = ChunkReader(chunks)
    got = []
    for entry in read_entries(reader):
        # tarfile drops a directory's trailing slash when it reads; we keep names as written.
        name = entry.name.rstrip("/") if entry.type == tarfile.DIRTYPE else entry.name
        got.append((name, entry.type, entry.linkname, reader.read_exact(entry.size)))
    return got


@FAST
@given(tar_members(), st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]), st.lists(st.integers(0, 1 << 16)))
def test_reader_yields_what_tarfile_wrote(
    members: list[tuple[str, bytes, bytes | str]], fmt: int, cuts: list[int]
) -> None:
    data = write_tar(members, fmt)
    got = read_all(split(data, cuts))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        want = [
            (
                m.name.removeprefix("./"),  # as we name entries
                m.type,
                m.linkname,
                tar.extractfile(m).read() if m.isreg() else b"",  # type: ignore[union-attr]
            )
            for m in tar.getmembers()
        ]
    assert got == want


@FAST
@given(tar_members(), st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]), st.data())
def test_truncated_or_altered_stream_is_our_error_or_a_prefix(
    members: list[tuple[str, bytes, bytes | str]], fmt: int, data: st.DataObject
) -> None:
    whole = write_tar(members, fmt)
    full = read_all(iter([whole]))
    cut = data.draw(st.integers(0, len(whole)))
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, max(0, len(whole) - 1)))
        altered = bytearray(whole[:cut])
        if pos < len(altered):
            altered[pos] = data.draw(st.integers(0, 255))
        stream = bytes(altered)
    else:
        stream = whole[:cut]
    try:
        got = read_all(iter([stream]))
    except ArchiveError:
        return
    if stream == whole[:cut]:
        # A clean cut that happens to end on a zero block reads as a shorter archive.
        assert got == full[: len(got)]


def test_truncation_anywhere() -> None:
    whole = write_tar(
        [
            ("a" * 150, tarfile.REGTYPE, b"x" * 700),
            ("l", tarfile.SYMTYPE, "b" * 120),
            ("é/" + "c" * 200, tarfile.REGTYPE, b"y" * 10),
        ],
        tarfile.PAX_FORMAT,
    )
    full = read_all(iter([whole]))
    for cut in range(0, len(whole), 3):  # every offset class within a 512-byte block
        try:
            got = read_all(iter([whole[:cut]]))
        except ArchiveError:
            continue
        assert got == full[: len(got)]


@FAST
@given(st.binary(min_size=512, max_size=2048), st.sampled_from([b"x", b"L", b"K", b"0", b"2", b"1", b"S", b"Z"]))
def test_garbage_headers_are_our_error(garbage: bytes, kind: bytes) -> None:
    # A header with a valid checksum over random fields, so it gets past tarfile's first check.
    block = bytearray(garbage[:512])
    block[156:157] = kind
    block[148:156] = b" " * 8
    block[148:155] = b"%06o\0" % (sum(block) & 0o777777) + b" "
    with contextlib.suppress(ArchiveError):
        read_all(iter([bytes(block) + garbage[512:] + b"\0" * 1024]))


# --- the rewrite ----------------------------------------------------------------------------------


@st.composite
def exports(draw: st.DrawFn) -> tuple[bytes, StreamSpec, bytes, list[bytes]]:
    """An export of one image in one of the source formats, and the spec the plan would give."""
    pool = draw(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=3, unique=True))
    layers = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))  # may repeat a layer
    diffs = [sha(b) for b in layers]
    config = config_for(diffs)
    fmt = draw(st.sampled_from(["legacy-sym", "legacy-hard", "oci", "podman"]))
    skip = frozenset(draw(st.lists(st.sampled_from(diffs), max_size=2)))
    output = draw(st.sampled_from(list(OutputFormat)))
    if fmt.startswith("legacy"):
        data, named = legacy(layers, config, links=fmt[7:])
        unnamed: tuple[str, ...] = (diffs[-1],)
    elif fmt == "oci":
        data, named, unnamed = oci(layers, config), {f"blobs/sha256/{d[7:]}": d for d in diffs}, ()
    else:
        data, named, unnamed = podman(layers, config), {f"{d[7:]}.tar": d for d in diffs}, ()
    spec = StreamSpec(output, skip, named, unnamed, image_ids=frozenset([sha(config)]))
    return data, spec, config, layers


def check_output(out: bytes, spec: StreamSpec, config: bytes, layers: list[bytes]) -> None:
    """What a successful rewrite wrote is the source's image: the promised config, and each
    layer present in the output is exactly the source's layer at that place."""
    files = tar_files(out)
    if spec.output is OutputFormat.LEGACY:
        (item,) = json.loads(files["manifest.json"])
        got_config, paths = files[item["Config"]], item["Layers"]
    else:
        (desc,) = json.loads(files["index.json"])["manifests"]
        manifest = json.loads(files["blobs/sha256/" + desc["digest"][7:]])
        got_config = files["blobs/sha256/" + manifest["config"]["digest"][7:]]
        paths = ["blobs/sha256/" + lay["digest"][7:] for lay in manifest["layers"]]
    assert got_config == config
    for path, layer in zip(paths, layers, strict=True):
        if path in files:
            assert files[path] == layer
        else:
            assert sha(layer) in spec.skip


def rewrite(stream: bytes, spec: StreamSpec, tmp_path: Path) -> bytes:
    rw = Rewriter(iter([stream[i : i + 999] for i in range(0, len(stream), 999)]), spec, spool_dir=tmp_path)
    return b"".join(bytes(c) for c in rw.stream())


@FAST
@given(exports())
def test_rewrite_of_any_export_is_the_source_image(
    tmp_path_factory: object, export: tuple[bytes, StreamSpec, bytes, list[bytes]]
) -> None:
    data, spec, config, layers = export
    tmp = Path(tmp_path_factory.mktemp("spool"))  # type: ignore[attr-defined]
    check_output(rewrite(data, spec, tmp), spec, config, layers)
    assert list(tmp.iterdir()) == []


@FAST
@given(exports(), st.data())
def test_damaged_export_is_our_error_never_a_wrong_image(
    tmp_path_factory: object, export: tuple[bytes, StreamSpec, bytes, list[bytes]], data: st.DataObject
) -> None:
    """Altered bytes, a truncation, a missing or a duplicated entry anywhere: the rewrite either
    fails with our error or writes exactly the source's image."""
    whole, spec, config, layers = export
    tmp = Path(tmp_path_factory.mktemp("spool"))  # type: ignore[attr-defined]
    blocks = [whole[i : i + 512] for i in range(0, len(whole), 512)]
    how = data.draw(st.sampled_from(["flip", "truncate", "drop-block", "repeat-block"]))
    if how == "flip":
        pos = data.draw(st.integers(0, len(whole) - 1))
        stream = whole[:pos] + bytes([whole[pos] ^ data.draw(st.integers(1, 255))]) + whole[pos + 1 :]
    elif how == "truncate":
        stream = whole[: data.draw(st.integers(0, len(whole) - 1))]
    else:
        i = data.draw(st.integers(0, len(blocks) - 1))
        stream = b"".join(blocks[:i] + ([blocks[i]] * 2 if how == "repeat-block" else []) + blocks[i + 1 :])
    try:
        out = rewrite(stream, spec, tmp)
    except ArchiveError:
        return
    check_output(out, spec, config, layers)


@FAST
@given(exports(), st.sampled_from(["manifest.json", "config", "layer"]), st.booleans())
def test_missing_or_duplicated_entries(
    tmp_path_factory: object, export: tuple[bytes, StreamSpec, bytes, list[bytes]], which: str, duplicate: bool
) -> None:
    whole, spec, config, layers = export
    tmp = Path(tmp_path_factory.mktemp("spool"))  # type: ignore[attr-defined]
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    config_digest = hashlib.sha256(config).hexdigest()

    def chosen(m: tarfile.TarInfo, body: bytes | None) -> bool:
        if which == "manifest.json":
            return m.name == "manifest.json"
        if which == "config":
            return config_digest in m.name
        return body is not None and body in layers

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m, body in members:
            copies = (2 if duplicate else 0) if chosen(m, body) else 1
            for _ in range(copies):
                tar.addfile(m, io.BytesIO(body) if body is not None else None)
    try:
        result = rewrite(out.getvalue(), spec, tmp)
    except ArchiveError:
        assert not duplicate or which != "manifest.json", "a repeated entry is harmless"
        return
    check_output(result, spec, config, layers)
