"""NodeEngine against a fake `ctr`: what it runs for a plan, a load, the tags and a cleanup."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
import zstandard

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.engine.containerd.inflate import compression_of, inflated
from docker_d2d.engine.containerd.listing import IMPORT_PREFIX
from docker_d2d.engine.containerd.node import NodeEngine
from docker_d2d.engine.containerd.runner import Body
from docker_d2d.errors import VerifyError
from docker_d2d.formats.digests import sha256
from docker_d2d.model import EngineKind

L1, L2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
GZ = "sha256:" + "9" * 64
CONFIG = json.dumps({"os": "linux", "architecture": "amd64", "rootfs": {"diff_ids": [L1, L2]}}).encode()
LAYERS = [{"mediaType": "x+gzip", "digest": GZ, "size": 5}, {"mediaType": "x", "digest": L2, "size": 9}]
MANIFEST = json.dumps({"config": {"digest": sha256(CONFIG)}, "layers": LAYERS}).encode()
M = sha256(MANIFEST)
MT = "application/vnd.oci.image.manifest.v1+json"


class FakeCtr:
    """Answers like ctr; records every call."""

    def __init__(self, version: str = "2.1.9") -> None:
        self.where = "fake"
        self.remote_shell = True
        self.bodies: list[bytes] = []
        self.version = version
        self.calls: list[list[str]] = []
        self.images: dict[str, str] = {"docker.io/library/base:1": M}
        self.content = {GZ, M, sha256(CONFIG)}  # L2's blob discarded once unpacked
        self.prefixes: list[str] = []

    def run(self, argv: Sequence[str], stdin: Body | None = None, shell_prefix: str = "") -> bytes:
        args = list(argv[argv.index("-n") + 2 :])
        self.calls.append(args)
        if stdin is not None:
            self.bodies.append(b"".join(bytes(c) for c in stdin))
            self.prefixes.append(shell_prefix)
        if args == ["version"]:
            return f"Client:\n  Version: {self.version}\nServer:\n  Version:  {self.version}\n".encode()
        if args == ["plugins", "ls"]:
            return b"TYPE ID PLATFORMS STATUS\nio.containerd.snapshotter.v1 overlayfs linux/amd64 ok\n"
        if args == ["images", "ls"]:
            rows = "".join(f"{n} {MT} {d} 1 KiB linux/amd64 -\n" for n, d in self.images.items())
            return ("REF TYPE DIGEST SIZE PLATFORMS LABELS\n" + rows).encode()
        if args == ["content", "ls"]:
            return ("DIGEST\tSIZE\tAGE\tLABELS\n" + "".join(f"{d}\t1B\tnow\t-\n" for d in self.content)).encode()
        if args[:2] == ["content", "get"]:
            return {M: MANIFEST, sha256(CONFIG): CONFIG}[args[2]]
        if args[:2] == ["images", "import"]:
            self.images[f"{args[3]}@{M}"] = M
            return b""
        if args[:2] == ["images", "tag"]:
            self.images[args[4]] = self.images[args[3]]
            return b""
        if args[:2] == ["images", "rm"]:
            del self.images[args[-1]]
            return b""
        if args[:2] == ["images", "check"]:
            rows = "".join(f"{n} {MT} {d} complete (3/3) 1 KiB/1 KiB true\n" for n, d in self.images.items())
            return ("REF TYPE DIGEST STATUS SIZE UNPACKED\n" + rows).encode()
        if args[:2] == ["snapshots", "ls"]:
            return f"KEY PARENT KIND\n{L1}  Committed\n".encode()
        raise AssertionError(args)

    @contextmanager
    def stream(self, argv: Sequence[str]) -> Iterator[Iterator[bytes]]:
        yield iter([self.run(argv)])


def _node(fake: FakeCtr) -> NodeEngine:
    node = NodeEngine(parse_endpoint("containerd:///run/c.sock"), "destination", fake, ["ctr"], "k8s.io")
    node.connect()
    return node


def test_plan_counts_only_blobs_the_store_holds() -> None:
    fake = FakeCtr()
    node = _node(fake)
    assert node.info is not None and node.info.kind is EngineKind.NODE
    [image] = node.all_images()
    assert image.id == M and image.diff_ids == (L1, L2) and image.repo_tags == ("base:1",)
    assert image.config_digest == sha256(CONFIG)
    held = node.layer_blobs()
    assert held == {L1: LAYERS[0]}  # L2 was unpacked, its blob discarded: it travels


def test_load_tag_and_forget_the_import_name() -> None:
    fake = FakeCtr()
    node = _node(fake)
    node.load([b"tar bytes"])
    assert fake.calls[-1][:6] == ["images", "import", "--base-name", node.import_name, "--digests", "-"]
    node.tag(M, "app", "2")
    assert ["images", "tag", "--force", f"{node.import_name}@{M}", "docker.io/library/app:2"] in fake.calls
    assert f"{node.import_name}@{M}" not in fake.images and fake.images["docker.io/library/app:2"] == M


def test_a_1x_ctr_gets_a_compressed_body_inflated() -> None:
    body = gzip.compress(b"tar, part one ") + gzip.compress(b"and two")
    fake = FakeCtr("1.7.24")
    node = _node(fake)
    node.load([body])
    node.load([b"plain tar"])
    assert fake.prefixes == ["gzip -dc | ", ""]  # over ssh: by the node's gzip
    fake.remote_shell = False
    node.load([body[:5], body[5:]])  # here (a local socket, a node container): in this process
    assert fake.prefixes[-1] == "" and fake.bodies[-1] == b"tar, part one and two"
    fake2 = FakeCtr("2.1.9")
    _node(fake2).load([body])
    assert fake2.prefixes == [""] and fake2.bodies == [body]  # containerd 2 reads it as it is


def test_zstd_frames_inflate_one_after_another() -> None:
    body = zstandard.ZstdCompressor().compress(b"one ") + zstandard.ZstdCompressor().compress(b"two")
    assert b"".join(inflated([body[:3], body[3:]], compression_of(body))) == b"one two"


def test_verify_wants_every_snapshot_committed() -> None:
    fake = FakeCtr()
    node = _node(fake)
    node.load([b"x"])
    with pytest.raises(VerifyError, match="no committed snapshot"):
        node.verify(M)  # the fake has only L1's snapshot


def test_leftovers_of_an_interrupted_run_are_removed_before_planning() -> None:
    fake = FakeCtr()
    fake.images[f"{IMPORT_PREFIX}old@{M}"] = M
    node = _node(fake)
    node.all_images()
    assert ["images", "rm", "--sync", f"{IMPORT_PREFIX}old@{M}"] in fake.calls
    assert not [n for n in fake.images if n.startswith(IMPORT_PREFIX)]


def test_tags_as_the_docker_cli_names_them() -> None:
    fake = FakeCtr()
    fake.images.update({"registry.lan/team/app:2": M, f"docker-d2d-import/abc@{M}": M, "docker.io/x/y@" + M: M})
    node = _node(fake)
    assert sorted(node.tags()) == ["base:1", "registry.lan/team/app:2"]
