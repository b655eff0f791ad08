"""Fixtures for the containerd-store tests: the session's engines and a registry of their own
(tests/harness/registry.py), with the registry-API index builder."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness.engines import SPECS, Engine, destroy_all
from tests.harness.registry import Registry


@pytest.fixture(scope="session")
def store_base() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="d2d-store-", dir="/var/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def store_registry(store_base: Path) -> Iterator[Registry]:
    with Registry(store_base / "registry") as reg:
        yield reg


@pytest.fixture(scope="session")
def stores(store_base: Path) -> Iterator[dict[str, Engine]]:
    """docker26 (overlay2: builds and pushes bases, a graphdriver source), docker26c, docker28c, of
    their own (these tests leave probes' and registry pulls' content in the stores that other tests
    should not meet), started once for every module that uses them."""
    started: dict[str, Engine] = {}
    try:
        for name in ("docker26", "docker26c", "docker28c"):
            started[name] = Engine(SPECS[name], store_base / name)
            started[name].start()
        yield started
    finally:
        destroy_all(started.values())


# --- what an engine holds ------------------------------------------------------------------


def ctr_images(engine: Engine) -> list[str]:
    """containerd's own image list for the engine's store (the records the Engine API hides)."""
    sock = engine.base / "exec" / "containerd" / "containerd.sock"
    own = Path(engine.spec.path_prefix) / "ctr"  # the ctr shipped beside the engine's containerd
    ctr = str(own) if engine.spec.path_prefix and own.exists() else "ctr"
    out = subprocess.run(
        [ctr, "--address", str(sock), "-n", "moby", "images", "ls", "-q"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def leftovers(engine: Engine, before: list[str]) -> list[str]:
    """Records the run made that are not images a user asked for: dangling or untagged ones."""
    return [r for r in ctr_images(engine) if r not in before and (r.startswith("moby-dangling@") or "@" in r)]


def saved_blobs(engine: Engine, ref: str) -> dict[str, int]:
    """`docker save` at the engine: every blob the image's manifest names, with its size in the
    archive; raises if one is missing (an incomplete image writes an archive without them)."""
    data = engine.docker("save", ref).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        wanted = [p for item in manifest for p in [item["Config"], *item["Layers"]]]
    missing = [p for p in wanted if p not in members]
    assert not missing, f"docker save of {ref} lacks {missing}"
    return {p: members[p].size for p in wanted}


def layer_blob_sizes(engine: Engine, ref: str) -> dict[str, int]:
    """diff id -> size of the blob the engine's `docker save` holds for that layer (compressed
    where the engine keeps it compressed): what travels when that layer is sent."""
    data = engine.docker("save", ref).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        item = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(tar.extractfile(item["Config"]))  # type: ignore[arg-type]
        sizes = [tar.getmember(p).size for p in item["Layers"]]
    return dict(zip(config["rootfs"]["diff_ids"], sizes))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pulled(engine: Engine, ref: str) -> None:
    engine.docker("pull", "-q", ref)


# --- a multi-platform index with attestation manifests, assembled through the registry API ----

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_IN_TOTO = "application/vnd.in-toto+json"


def _descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


PUSHED: dict[str, bytes] = {}  # every blob and manifest pushed, by digest (for oci_layout)


def _push_blob(client: httpx.Client, repo: str, data: bytes) -> None:
    PUSHED[sha256(data)] = data
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = start.headers["Location"]
    sep = "&" if "?" in location else "?"
    client.put(f"{location}{sep}digest={sha256(data)}", content=data).raise_for_status()


def _push_manifest(client: httpx.Client, repo: str, ref: str, media_type: str, data: bytes) -> None:
    PUSHED[sha256(data)] = data
    client.put(f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type}).raise_for_status()


@dataclass
class PlatformImage:
    platform: str  # os/arch
    manifest: str  # digest
    config: str
    diff_ids: list[str]
    layer_sizes: list[int]  # compressed, as in the registry


def push_multiplatform(registry: Registry, repo: str, tag: str, layer_size: int = 60_000) -> list[PlatformImage]:
    """linux/amd64 and linux/arm64 images (two tiny gzip layers each) and a BuildKit-style
    attestation manifest for each, under one OCI index, pushed blob by blob."""
    import gzip
    import os

    from tests.harness.images import rootfs_tar

    images: list[PlatformImage] = []
    index_entries: list[dict[str, object]] = []
    attestations: list[dict[str, object]] = []
    with httpx.Client(base_url=registry.url, timeout=30) as client:
        for os_name, arch in (("linux", "amd64"), ("linux", "arm64")):
            tars = [rootfs_tar({f"{arch}/{i}": os.urandom(layer_size) + f"{arch}{i}".encode()}) for i in range(2)]
            blobs = [gzip.compress(t, mtime=0) for t in tars]
            config = json.dumps(
                {
                    "architecture": arch,
                    "os": os_name,
                    "config": {"Cmd": ["/bin/true"]},
                    "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
                    "history": [{"created_by": f"COPY {i}"} for i in range(2)],
                }
            ).encode()
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MT_MANIFEST,
                    "config": _descriptor(MT_CONFIG, config),
                    "layers": [_descriptor(MT_LAYER_GZIP, b) for b in blobs],
                }
            ).encode()
            for b in [*blobs, config]:
                _push_blob(client, repo, b)
            _push_manifest(client, repo, sha256(manifest), MT_MANIFEST, manifest)
            index_entries.append(_descriptor(MT_MANIFEST, manifest, platform={"architecture": arch, "os": os_name}))
            images.append(
                PlatformImage(
                    f"{os_name}/{arch}",
                    sha256(manifest),
                    sha256(config),
                    [sha256(t) for t in tars],
                    [len(b) for b in blobs],
                )
            )
            # What BuildKit attaches: an in-toto statement in a manifest pointing at the image.
            statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1", "subject": [{"name": arch}]}).encode()
            att_config = json.dumps(
                {
                    "architecture": "unknown",
                    "os": "unknown",
                    "rootfs": {"type": "layers", "diff_ids": [sha256(statement)]},
                }
            ).encode()
            att_manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": MT_MANIFEST,
                    "config": _descriptor(MT_CONFIG, att_config),
                    "layers": [
                        _descriptor(
                            MT_IN_TOTO,
                            statement,
                            annotations={"in-toto.io/predicate-type": "https://spdx.dev/Document"},
                        )
                    ],
                }
            ).encode()
            for b in (statement, att_config):
                _push_blob(client, repo, b)
            _push_manifest(client, repo, sha256(att_manifest), MT_MANIFEST, att_manifest)
            attestations.append(
                _descriptor(
                    MT_MANIFEST,
                    att_manifest,
                    platform={"architecture": "unknown", "os": "unknown"},
                    annotations={
                        "vnd.docker.reference.digest": sha256(manifest),
                        "vnd.docker.reference.type": "attestation-manifest",
                    },
                )
            )
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": index_entries + attestations}
        ).encode()
        _push_manifest(client, repo, tag, MT_INDEX, index)
    return images


def oci_layout(images: list[PlatformImage], name: str) -> bytes:
    """The whole index (both platforms and the attestations) as an OCI archive for `docker load`:
    how a store comes to hold attestation manifests (a pull by platform skips them)."""
    index_digest = next(
        d
        for d, b in PUSHED.items()
        if b.startswith(b"{") and images[0].manifest in b.decode(errors="replace") and b'"manifests"' in b
    )
    index = PUSHED[index_digest]
    blobs = {index_digest: index}
    for desc in json.loads(index)["manifests"]:
        manifest = PUSHED[desc["digest"]]
        blobs[desc["digest"]] = manifest
        doc = json.loads(manifest)
        for d in [doc["config"], *doc["layers"]]:
            blobs[d["digest"]] = PUSHED[d["digest"]]
    top = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MT_INDEX,
                    "digest": index_digest,
                    "size": len(index),
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"},
                }
            ],
        }
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        entries = [*((f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items())]
        entries += [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", top)]
        for entry, data in entries:
            info = tarfile.TarInfo(entry)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def measured(case: str, result: dict[str, object], lacked: int) -> None:
    """One line per case for the record (`pytest -s ... | grep bytes-sent`)."""
    print(
        f"\nbytes-sent {case}: sent {result['bytes_sent']} B in {result['transfers']} load(s), "
        f"{result['layers_sent']} layer(s); the destination lacked {lacked} B"
    )


# --- a source that lies: a proxy in front of a real engine -------------------------------------


class LyingSource:
    """A unix-socket proxy to a real engine that adds a layer to image inspect answers, so that
    the export contradicts the inspect after the destination has loaded it (a hostile source)."""

    def __init__(self, engine: Engine, path: Path) -> None:
        import http.server
        import socketserver
        import threading

        upstream = str(engine.socket)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                with (
                    httpx.Client(transport=httpx.HTTPTransport(uds=upstream), base_url="http://engine") as client,
                    client.stream("GET", self.path) as resp,
                ):
                    path = self.path.split("?")[0]
                    inspect = path.endswith("/json") and "/images/" in path and not path.endswith("/images/json")
                    if inspect and resp.status_code == 200:
                        data = json.loads(resp.read())  # an inspect answer (not the list): lie about it
                        data["RootFS"]["Layers"] = [*data["RootFS"]["Layers"], "sha256:" + "0" * 64]
                        body = json.dumps(data).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    self.send_response(resp.status_code)
                    for key in ("Content-Type", "Api-Version"):
                        if key in resp.headers:
                            self.send_header(key, resp.headers[key])
                    self.end_headers()
                    for chunk in resp.iter_raw():
                        self.wfile.write(chunk)

            def do_HEAD(self) -> None:
                self.do_GET()

            def log_message(self, *args: object) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True
            request_queue_size = 128  # a real engine's backlog is large; concurrent inspects overran 5

            def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
                sock, _ = super().get_request()
                return sock, ("local", 0)  # http.server wants a host and port

        self.path = path
        self.server = Server(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
