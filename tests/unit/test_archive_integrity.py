"""What lands is exactly the source's image: the rewrite checks the config and every layer it
sends against what the source promised, follows links, and refuses what a broken or hostile
source would make it hold or send without end. Every failure is our ArchiveError, raised before
the archive is complete (so the destination's load fails and nothing is tagged)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_d2d.archive import MAX_METADATA, OutputFormat, Rewriter, StreamSpec
from docker_d2d.errors import ArchiveError
from docker_d2d.model import EngineInfo, EngineKind, ImageInfo, ImageRef, RefKind
from docker_d2d.plan import (
    LAYER_SLACK,
    holdings,
    layer_limit,
    layer_sizes,
    legacy_v1_ids,
    plan_transfer,
    stream_spec,
)
from docker_d2d.tarstream import END_OF_ARCHIVE, MAX_EXTENDED_HEADER, ChunkReader, read_entries


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


LAYERS = [bytes([i + 1]) * (3000 * (i + 1)) for i in range(3)]
DIFFS = [sha(b) for b in LAYERS]


def config_for(diffs: list[str], arch: str = "amd64") -> bytes:
    return json.dumps({"architecture": arch, "rootfs": {"type": "layers", "diff_ids": diffs}}).encode()


CONFIG = config_for(DIFFS)

Member = tuple[str, bytes] | tuple[str, str, bytes]  # (name, data) or (name, "sym"|"hard", target)


def make_tar(members: list[Member]) -> bytes:
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


def legacy(layers: list[bytes], config: bytes, *, links: str = "sym") -> tuple[bytes, dict[str, str]]:
    """A Docker < 25 export: '<v1id>/layer.tar' per layer; a layer that occurs again is a link to
    its first file, as moby v20.10 image/tarexport/save.go writes it."""
    diffs = [sha(b) for b in layers]
    ids = [*legacy_v1_ids(diffs), "f" * 64]
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


def chunks(data: bytes, size: int = 777) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def spec(
    output: OutputFormat = OutputFormat.LEGACY,
    skip: frozenset[str] = frozenset(),
    named: dict[str, str] | None = None,
    unnamed: tuple[str, ...] = (),
    image_ids: frozenset[str] = frozenset(),
    **kw: object,
) -> StreamSpec:
    return StreamSpec(output, skip, named or {}, unnamed, image_ids=image_ids, **kw)  # type: ignore[arg-type]


def run(data: bytes | Iterator[bytes], sp: StreamSpec, tmp_path: Path) -> tuple[dict[str, bytes], Rewriter]:
    rw = Rewriter(chunks(data) if isinstance(data, bytes) else data, sp, spool_dir=tmp_path)
    out = b"".join(bytes(c) for c in rw.stream())
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    return files, rw


def fails_before_the_end(data: bytes, sp: StreamSpec, tmp_path: Path, match: str) -> None:
    """The error comes before the end marker and the manifest: the load cannot complete."""
    rw = Rewriter(chunks(data), sp, spool_dir=tmp_path)
    out = []
    with pytest.raises(ArchiveError, match=match):
        for c in rw.stream():
            out.append(bytes(c))
    emitted = b"".join(out)
    assert not emitted.endswith(END_OF_ARCHIVE)
    assert b"manifest.json" not in emitted and b"index.json" not in emitted


def flip(data: bytes, needle: bytes, old: bytes, new: bytes) -> bytes:
    at = data.index(needle)
    pos = data.index(old, at)
    return data[:pos] + new + data[pos + len(old) :]


# --- item 1: the config and every layer are what the source promised -----------------------


@pytest.mark.parametrize("fmt", ["legacy", "oci", "podman"])
def test_config_altered_on_the_way_is_refused(fmt: str, tmp_path: Path) -> None:
    data = {
        "legacy": lambda: legacy(LAYERS, CONFIG)[0],
        "oci": lambda: oci(LAYERS, CONFIG),
        "podman": lambda: podman(LAYERS, CONFIG),
    }[fmt]()
    bad = data.replace(b'"amd64"', b'"amd65"')
    assert bad != data
    fails_before_the_end(bad, spec(image_ids=frozenset([sha(CONFIG)])), tmp_path, "does not match its digest")


def test_config_renamed_to_match_its_new_content_is_not_the_promised_one(tmp_path: Path) -> None:
    other = config_for(DIFFS, arch="amd65")
    data, _ = legacy(LAYERS, other)
    fails_before_the_end(data, spec(image_ids=frozenset([sha(CONFIG)])), tmp_path, "not to the config of any image")


def test_export_without_the_promised_image_is_refused(tmp_path: Path) -> None:
    data, named = legacy(LAYERS, CONFIG)
    fails_before_the_end(
        data, spec(named=named, image_ids=frozenset([sha(CONFIG), sha(b"x")])), tmp_path, "does not carry the image"
    )


def test_containerd_source_config_is_checked_through_its_manifest(tmp_path: Path) -> None:
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": sha(CONFIG), "size": len(CONFIG)}}).encode()
    data = oci(LAYERS, CONFIG)
    # The manifest blob (the image's id in the containerd store) goes in before manifest.json.
    members = [(f"blobs/sha256/{sha(manifest)[7:]}", manifest)]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    good = make_tar(members)  # type: ignore[arg-type]
    files, rw = run(good, spec(output=OutputFormat.OCI, image_ids=frozenset([sha(manifest)])), tmp_path)
    assert rw.result.aliases[sha(manifest)] == sha(CONFIG)
    other = config_for(DIFFS, arch="amd65")
    members = [(n, other if b == CONFIG else b) for n, b in members]
    members = [(f"blobs/sha256/{sha(other)[7:]}" if b == other else n, b) for n, b in members]
    bad = make_tar(members)  # type: ignore[arg-type]
    fails_before_the_end(
        bad.replace(f"blobs/sha256/{sha(CONFIG)[7:]}".encode(), f"blobs/sha256/{sha(other)[7:]}".encode()),
        spec(output=OutputFormat.OCI, image_ids=frozenset([sha(manifest)])),
        tmp_path,
        "not to the config of any image",
    )


def test_manifest_blob_altered_on_the_way_is_refused(tmp_path: Path) -> None:
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": sha(CONFIG), "size": len(CONFIG)}}).encode()
    data = make_tar([(f"blobs/sha256/{sha(manifest)[7:]}", manifest.replace(b"2", b"3"))])
    fails_before_the_end(data, spec(output=OutputFormat.OCI), tmp_path, "does not match its digest")


@pytest.mark.parametrize("output", list(OutputFormat))
def test_layer_altered_under_a_predicted_legacy_name_is_refused(output: OutputFormat, tmp_path: Path) -> None:
    data, named = legacy(LAYERS, CONFIG)
    bad = data.replace(LAYERS[1][:100], b"\x99" * 100, 1)
    fails_before_the_end(bad, spec(output, named=named, unnamed=(DIFFS[2],)), tmp_path, "its config says")


def test_unpredicted_top_layer_altered_is_refused(tmp_path: Path) -> None:
    data, named = legacy(LAYERS, CONFIG)
    bad = data.replace(LAYERS[2][:100], b"\x99" * 100, 1)
    fails_before_the_end(bad, spec(named=named, unnamed=(DIFFS[2],)), tmp_path, "its config says")


@pytest.mark.parametrize("fmt", ["oci", "podman"])
def test_layer_altered_under_its_digest_name_fails_at_that_layer(fmt: str, tmp_path: Path) -> None:
    data = oci(LAYERS, CONFIG) if fmt == "oci" else podman(LAYERS, CONFIG)
    bad = data.replace(LAYERS[0][:100], b"\x99" * 100, 1)
    named = {f"blobs/sha256/{d[7:]}": d for d in DIFFS} if fmt == "oci" else {f"{d[7:]}.tar": d for d in DIFFS}
    rw = Rewriter(chunks(bad), spec(named=named), spool_dir=tmp_path)
    out = []
    with pytest.raises(ArchiveError, match=r"layer .* does not match its digest"):
        for c in rw.stream():
            out.append(bytes(c))
    assert rw.result.layers_sent == 0, "the error comes at the end of the altered layer, not at the archive's end"


def test_compressed_layer_altered_on_the_way_is_refused(tmp_path: Path) -> None:
    data = oci(LAYERS, CONFIG, gz=True)
    blob = gzip.compress(LAYERS[1], mtime=0)
    at = data.index(blob) + len(blob) // 2
    bad = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    with pytest.raises(ArchiveError, match=r"does not match its digest|stream is corrupt"):
        run(bad, spec(OutputFormat.OCI, unnamed=tuple(DIFFS)), tmp_path)


def test_a_good_export_passes_every_check(tmp_path: Path) -> None:
    data, named = legacy(LAYERS, CONFIG)
    files, rw = run(data, spec(named=named, unnamed=(DIFFS[2],), image_ids=frozenset([sha(CONFIG)])), tmp_path)
    assert rw.result.layers_sent == 3 and rw.result.images[0].config_digest == sha(CONFIG)


# --- item 2: links, and an image that repeats a layer ---------------------------------------

REPEATING = [LAYERS[0], LAYERS[1], LAYERS[0]]  # the same diff id twice


@pytest.mark.parametrize("links", ["sym", "hard"])
@pytest.mark.parametrize("output", list(OutputFormat))
def test_legacy_repeated_layer_written_as_a_link(links: str, output: OutputFormat, tmp_path: Path) -> None:
    config = config_for([sha(b) for b in REPEATING])
    data, named = legacy(REPEATING, config, links=links)
    files, rw = run(data, spec(output, named=named, unnamed=(DIFFS[0],), image_ids=frozenset([sha(config)])), tmp_path)
    assert rw.result.layers_sent == 2
    assert rw.result.images[0].diff_ids == (DIFFS[0], DIFFS[1], DIFFS[0])
    if output is OutputFormat.LEGACY:
        paths = json.loads(files["manifest.json"])[0]["Layers"]
    else:
        index = json.loads(files["index.json"])
        m = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"][7:]])
        paths = ["blobs/sha256/" + lay["digest"][7:] for lay in m["layers"]]
    assert [files[p] for p in paths] == REPEATING


def test_legacy_image_with_its_base_in_one_export(tmp_path: Path) -> None:
    """The base's top layer is the app's lower layer: one file, one link (moby v20.10)."""
    base_cfg, app_cfg = config_for(DIFFS[:1]), config_for(DIFFS[:2])
    app_ids = [*legacy_v1_ids(DIFFS[:2]), "a" * 64]
    base_top = "b" * 64
    members: list[Member] = [
        (f"{app_ids[0]}/layer.tar", LAYERS[0]),
        (f"{app_ids[1]}/layer.tar", LAYERS[1]),
        (f"{base_top}/layer.tar", "sym", f"../{app_ids[0]}/layer.tar".encode()),
        (f"{sha(base_cfg)[7:]}.json", base_cfg),
        (f"{sha(app_cfg)[7:]}.json", app_cfg),
    ]
    manifest = [
        {"Config": f"{sha(app_cfg)[7:]}.json", "Layers": [f"{app_ids[0]}/layer.tar", f"{app_ids[1]}/layer.tar"]},
        {"Config": f"{sha(base_cfg)[7:]}.json", "Layers": [f"{base_top}/layer.tar"]},
    ]
    data = make_tar([*sorted(members, key=lambda m: m[0]), ("manifest.json", json.dumps(manifest).encode())])
    sp = spec(
        named={f"{app_ids[0]}/layer.tar": DIFFS[0]},
        unnamed=(DIFFS[1], DIFFS[0]),
        image_ids=frozenset([sha(base_cfg), sha(app_cfg)]),
    )
    files, rw = run(data, sp, tmp_path)
    assert rw.result.layers_sent == 2 and len(rw.result.images) == 2
    out = json.loads(files["manifest.json"])
    assert [files[p] for p in out[1]["Layers"]] == [LAYERS[0]]


@pytest.mark.parametrize("output", list(OutputFormat))
def test_podman_export_of_links_and_a_repeated_layer(output: OutputFormat, tmp_path: Path) -> None:
    config = config_for([sha(b) for b in REPEATING])
    named = {f"{sha(b)[7:]}.tar": sha(b) for b in REPEATING}
    files, rw = run(podman(REPEATING, config), spec(output, named=named, image_ids=frozenset([sha(config)])), tmp_path)
    assert rw.result.layers_sent == 2
    assert rw.result.images[0].diff_ids == tuple(sha(b) for b in REPEATING)


def test_oci_export_of_an_image_that_repeats_a_layer(tmp_path: Path) -> None:
    config = config_for([sha(b) for b in REPEATING])
    named = {f"blobs/sha256/{sha(b)[7:]}": sha(b) for b in REPEATING}
    files, rw = run(oci(REPEATING, config), spec(named=named, skip=frozenset([DIFFS[1]])), tmp_path)
    assert rw.result.layers_sent == 1 and rw.result.layers_skipped == 1
    paths = json.loads(files["manifest.json"])[0]["Layers"]
    assert files[paths[0]] == files[paths[2]] == LAYERS[0]


def test_link_loop_is_an_error(tmp_path: Path) -> None:
    manifest = [{"Config": "c.json", "Layers": ["a/layer.tar"]}]
    data = make_tar(
        [
            ("a/layer.tar", "sym", b"../b/layer.tar"),
            ("b/layer.tar", "sym", b"../a/layer.tar"),
            ("c.json", config_for(DIFFS[:1])),
            ("manifest.json", json.dumps(manifest).encode()),
        ]
    )
    with pytest.raises(ArchiveError, match="loop"):
        run(data, spec(), tmp_path)


# --- item 4: bounds against a broken or hostile source ----------------------------------------


def endless(prefix: bytes) -> Iterator[bytes]:
    """`prefix`, then zeros for ever: only a reader that stops at the header ends."""
    yield prefix
    while True:
        yield b"\0" * (1 << 20)


def huge_header(name: str, size: int, type: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = type
    return info.tobuf(tarfile.GNU_FORMAT)


def test_huge_metadata_entry_is_refused_at_its_header(tmp_path: Path) -> None:
    rw = Rewriter(endless(huge_header("manifest.json", 1 << 30)), spec(), spool_dir=tmp_path)
    with pytest.raises(ArchiveError, match="metadata beyond"):
        list(rw.stream())


def test_metadata_in_all_is_bounded(tmp_path: Path) -> None:
    one = b"{" + b" " * (MAX_METADATA - 2) + b"}"
    data = make_tar([(f"x{i}.json", one) for i in range(5)])
    with pytest.raises(ArchiveError, match="in all is refused"):
        run(chunks(data, 1 << 20), spec(), tmp_path)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_huge_extended_header_is_refused_at_its_header(kind: bytes) -> None:
    reader = ChunkReader(endless(huge_header("././@LongLink", 1 << 30, kind)))
    with pytest.raises(ArchiveError, match="extended tar header"):
        list(read_entries(reader))
    assert reader.consumed <= 512 + MAX_EXTENDED_HEADER


def test_layer_far_larger_than_promised_is_refused_at_its_header(tmp_path: Path) -> None:
    name = f"blobs/sha256/{DIFFS[0][7:]}"
    sp = spec(named={name: DIFFS[0]}, limits={DIFFS[0]: layer_limit(3000)}, max_layer=layer_limit(3000))
    rw = Rewriter(endless(huge_header(name, 10 << 30)), sp, spool_dir=tmp_path)
    with pytest.raises(ArchiveError, match="far more than the source's inspect promised"):
        list(rw.stream())


def test_unnamed_layer_far_larger_than_promised_is_refused(tmp_path: Path) -> None:
    sp = spec(unnamed=(DIFFS[0],), max_layer=layer_limit(3000))
    rw = Rewriter(endless(huge_header("f" * 64 + "/layer.tar", 10 << 30)), sp, spool_dir=tmp_path)
    with pytest.raises(ArchiveError, match="far more"):
        list(rw.stream())


def test_compressed_blob_inflating_past_its_bound_is_refused(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (8 << 20), mtime=0)
    config = config_for([sha(b"\0" * (8 << 20))])
    sp = spec(OutputFormat.OCI, unnamed=(sha(b"\0" * (8 << 20)),), max_layer=1 << 20)
    with pytest.raises(ArchiveError, match="uncompressed"):
        run(oci([b"\0" * (8 << 20)], config, gz=True), sp, tmp_path)
    assert len(bomb) < (1 << 20)


def test_layer_limits_come_from_inspect() -> None:
    image = ImageInfo("sha256:" + "1" * 64, tuple(DIFFS), size=9000)
    src = EngineInfo(EngineKind.GRAPHDRIVER, "26.1.5", "1.45")
    plan = plan_transfer(
        [(ImageRef("a:1", RefKind.TAG, "a", "1"), image, (1000, None, 0))], src.kind, holdings(src.kind, [])
    )
    sp = stream_spec(plan, src, EngineKind.GRAPHDRIVER)
    assert sp.limits == {DIFFS[0]: layer_limit(1000), DIFFS[1]: layer_limit(9000), DIFFS[2]: layer_limit(9000)}
    assert sp.max_layer == layer_limit(9000) and sp.image_ids == {image.id}
    assert layer_limit(0) == LAYER_SLACK and layer_limit(1) >= 2048, "a 1-byte file is 2 kB of tar"


# --- issue 11: a config with no history -------------------------------------------------------


def test_no_history_gives_unknown_sizes_and_no_bound() -> None:
    assert layer_sizes([], 2) == (None, None)
    image = ImageInfo("sha256:" + "1" * 64, tuple(DIFFS[:2]), size=0)
    src = EngineInfo(EngineKind.PODMAN, "4.3.1", "1.41")
    plan = plan_transfer(
        [(ImageRef("a:1", RefKind.TAG, "a", "1"), image, layer_sizes([], 2))], src.kind, holdings(src.kind, [])
    )
    sp = stream_spec(plan, src, EngineKind.GRAPHDRIVER)
    assert sp.max_layer is None and plan.bytes_to_send == 0 and not plan.sizes_known


def test_export_of_a_config_without_history(tmp_path: Path) -> None:
    data, named = legacy(LAYERS, CONFIG)  # CONFIG has no "history" at all
    files, rw = run(data, spec(named=named, unnamed=(DIFFS[2],), image_ids=frozenset([sha(CONFIG)])), tmp_path)
    assert rw.result.layers_sent == 3


# --- item 5: malformed input is one ArchiveError, never another exception --------------------


@pytest.mark.parametrize(
    "manifest",
    [b"{", b"{}", b"[1]", b'[{"Config": 1, "Layers": []}]', b'[{"Config": "c.json", "Layers": "x"}]', b"null"],
)
def test_malformed_manifest(manifest: bytes, tmp_path: Path) -> None:
    data = make_tar([("c.json", CONFIG), ("manifest.json", manifest)])
    with pytest.raises(ArchiveError, match=r"manifest\.json"):
        run(data, spec(), tmp_path)


@pytest.mark.parametrize(
    "config",
    [b"{", b"[]", b"{}", b'{"rootfs": null}', b'{"rootfs": {"diff_ids": "x"}}', b'{"rootfs": {"diff_ids": [1]}}'],
)
def test_malformed_config(config: bytes, tmp_path: Path) -> None:
    data = make_tar([("c.json", config), ("manifest.json", b'[{"Config": "c.json", "Layers": []}]')])
    with pytest.raises(ArchiveError, match=r"config c\.json is malformed"):
        run(data, spec(), tmp_path)


def pax_entry(records: bytes) -> bytes:
    info = tarfile.TarInfo("./PaxHeaders/x")
    info.type = tarfile.XHDTYPE
    info.size = len(records)
    body = records + b"\0" * (-len(records) % 512)
    return info.tobuf(tarfile.USTAR_FORMAT) + body + huge_header("x", 0) + b"\0" * 1024


@pytest.mark.parametrize(
    "records",
    [
        b"0 \n",
        b"abc path=x\n",
        b"5 path=xxxxxxxxx\n",
        b"99 path=x\n",
        b"12 pathxxxx\n",
        b"11 size=-1\n",
        b"13 size=1e99\n",
        b" \n",
    ],
)
def test_malformed_pax(records: bytes) -> None:
    with pytest.raises(ArchiveError, match="PAX"):
        list(read_entries(ChunkReader(iter([pax_entry(records)]))))


def test_good_pax_path_and_size() -> None:
    data = pax_entry(b"11 path=yz\n")
    assert [e.name for e in read_entries(ChunkReader(iter([data])))] == ["yz"]


def test_unsupported_entry_types_are_refused() -> None:
    data = huge_header("s", 10, tarfile.GNUTYPE_SPARSE) + b"\0" * 1536
    with pytest.raises(ArchiveError, match="unsupported tar type"):
        list(read_entries(ChunkReader(iter([data]))))


# --- issue 16 item 6: a full spool directory names itself, its room, and what was spooled -------


def test_a_full_spool_names_the_directory_the_user_chose(tmp_path: Path) -> None:
    import errno

    from docker_d2d.archive import PRIVATE_DIR, spooling
    from docker_d2d.errors import SpoolFull

    private = tmp_path / (PRIVATE_DIR + "x")
    with pytest.raises(SpoolFull) as info, spooling(private, "a layer of 6.0MB"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.side == "local" and info.value.directory == str(tmp_path)
    assert str(info.value).startswith(f"local: no space left in the spool directory {tmp_path} (")
    assert str(info.value).endswith("free) for a layer of 6.0MB: give --spool-dir a directory with more room")

    with pytest.raises(SpoolFull) as info, spooling(None, "a layer of 1.0MB", local=False):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert info.value.side is None and "on the source host" in str(info.value) and "TMPDIR" in str(info.value)

    with pytest.raises(PermissionError), spooling(private, "x"):
        raise PermissionError(errno.EACCES, "Permission denied")
