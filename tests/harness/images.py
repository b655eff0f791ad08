"""Build small, realistic multi-layer images without a registry, on a dedicated builder
engine, and place them on the engines under test with plain `docker save | docker load`."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from .engines import Engine


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def rootfs_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Builder:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def base(self, name: str, size: int = 20_000) -> str:
        """A one-layer image with unique content, so no engine holds its layer yet."""
        data = rootfs_tar({"etc/base-id": uuid.uuid4().bytes + os.urandom(size)})
        self.engine.docker("import", "-", name, input=data)
        return name

    def build(self, name: str, base: str, steps: Sequence[str], files: dict[str, bytes] | None = None) -> str:
        """`FROM base` + steps, with the legacy builder (no network, no buildkit)."""
        with tempfile.TemporaryDirectory() as ctx:
            for fname, data in (files or {}).items():
                Path(ctx, fname).write_bytes(data)
                os.utime(Path(ctx, fname), (1_700_000_000, 1_700_000_000))
            Path(ctx, "Dockerfile").write_text("\n".join([f"FROM {base}", *steps]) + "\n")
            self.engine.docker("build", "-q", "-t", name, ctx)
        return name

    def place(self, target: Engine, *names: str) -> None:
        """Put images on an engine with the stock save|load (the baseline, not the tool under test)."""
        archive = self.engine.docker("save", *names).stdout
        target.docker("load", input=archive)


def image_layers(engine: Engine, ref: str) -> list[str]:
    out = engine.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).stdout
    import json

    return list(json.loads(out) or [])  # null for an index without this engine's platform: it holds none


def all_image_layers(engine: Engine) -> list[list[str]]:
    """The layers of every image the engine holds, from one `docker image inspect` of them all: an
    engine late in a run holds hundreds, and a CLI call for each took seconds."""
    import json

    ids = sorted(set(engine.docker("image", "ls", "-aq", "--no-trunc").stdout.decode().split()))
    if not ids:
        return []
    out = engine.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", *ids).stdout.decode()
    return [list(json.loads(line) or []) for line in out.splitlines() if line.strip()]


def image_exists(engine: Engine, ref: str) -> bool:
    return engine.docker("image", "inspect", ref, check=False).returncode == 0


def place_compressed(builder: Builder, target: Engine, ref: str) -> None:
    """Load `ref` into a containerd-store engine the way a registry pull leaves it: every layer
    blob gzip-compressed, so the content store holds no blob under the uncompressed digest."""
    import gzip
    import hashlib
    import json

    archive = builder.engine.docker("save", ref).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        item = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = tar.extractfile(item["Config"]).read()  # type: ignore[union-attr]
        layers = [gzip.compress(tar.extractfile(p).read(), mtime=0) for p in item["Layers"]]  # type: ignore[union-attr]

    def digest(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(b), "size": len(b)}
                for b in layers
            ],
        }
    ).encode()
    name = ref if "/" in ref else f"docker.io/library/{ref}"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for entry, data in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *((f"blobs/sha256/{digest(b)[7:]}", b) for b in [config, manifest, *layers]),
        ]:
            info = tarfile.TarInfo(entry)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    target.docker("load", input=out.getvalue())


def small_app(builder: Builder, target: Engine, prefix: str, data: bytes) -> str:
    """A fresh base plus one COPY layer holding `data`, placed on `target`; returns its tag."""
    base = builder.base(unique("base") + ":1")
    name = unique(prefix) + ":1"
    builder.build(name, base, ["COPY a /a"], {"a": data})
    builder.place(target, name)
    return name


def many_images(engine: Engine, n: int, prefix: str) -> list[str]:
    """Load `n` tiny distinct images sharing one layer in a single hand-made archive: a destination
    holding hundreds of images in seconds."""
    import hashlib
    import json

    layer = rootfs_tar({"etc/shared": b"shared\n"})
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    buf = io.BytesIO()
    manifest = []
    tags = [f"{prefix}-{i}:1" for i in range(n)]
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("layer/layer.tar", layer)
        for tag in tags:
            config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Labels": {"d2d.many": tag}},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                    "history": [{"created_by": "many_images"}],
                }
            ).encode()
            name = hashlib.sha256(config).hexdigest() + ".json"
            add(name, config)
            manifest.append({"Config": name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]})
        add("manifest.json", json.dumps(manifest).encode())
    engine.docker("load", "-q", input=buf.getvalue())
    return tags


# --- hand-made images: shapes no builder makes ------------------------------------------------

EMPTY_TAR = b"\0" * 1024  # what Docker stores for a step that changed no file


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_of(entries: Sequence[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def image_config(diff_ids: Sequence[str], history: list[dict[str, object]] | None, **config: object) -> bytes:
    """An image config; `history=None` leaves the key out altogether (as some tools write it)."""
    import json

    doc: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], **config},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }
    if history is not None:
        doc["history"] = history
    return json.dumps(doc).encode()


def docker_archive(tag: str, layers: Sequence[bytes], config: bytes) -> bytes:
    """A `docker save`-style archive (manifest.json, layer tars, config) of one image: every engine
    loads it. A layer repeated in `layers` is stored once."""
    import json

    files: dict[str, bytes] = {}
    names = []
    for layer in layers:
        name = f"{_digest(layer)[7:]}/layer.tar"
        files[name] = layer
        names.append(name)
    cfg = f"{_digest(config)[7:]}.json"
    manifest = [{"Config": cfg, "RepoTags": [tag], "Layers": names}]
    return _tar_of([*files.items(), (cfg, config), ("manifest.json", json.dumps(manifest).encode())])


def oci_archive(
    name: str, blobs: Sequence[tuple[str, bytes]], config: bytes, annotations: dict[str, str] | None = None
) -> bytes:
    """An OCI layout archive of one image: `blobs` are (media type, blob) layer pairs, stored as
    given (compressed or not). The containerd store and Podman load it as it is."""
    import json

    layers = [{"mediaType": mt, "digest": _digest(b), "size": len(b)} for mt, b in blobs]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    full = name if "/" in name else f"docker.io/library/{name}"
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "annotations": {
                        "io.containerd.image.name": full,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                        **(annotations or {}),
                    },
                }
            ],
        }
    ).encode()
    unique_blobs = {_digest(b): b for b in [config, manifest, *(b for _, b in blobs)]}
    return _tar_of(
        [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", index),
            *((f"blobs/sha256/{d[7:]}", b) for d, b in unique_blobs.items()),
        ]
    )


def layer_files(count: int, size: int = 64) -> list[bytes]:
    """`count` small layers, each with unique content."""
    return [rootfs_tar({f"layer/{i}": uuid.uuid4().bytes + os.urandom(size)}) for i in range(count)]


def diff_id(layer: bytes) -> str:
    return _digest(layer)


def export_layer_sizes(engine: Engine, ref: str) -> list[int]:
    """The size of each layer's file in `docker save` of `ref` (in rootfs order, symlinks
    followed): what docker-d2d counts as bytes sent when that layer travels."""
    import json
    import posixpath

    archive = engine.docker("save", ref).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        sizes = []
        for path in manifest[0]["Layers"]:
            member = tar.getmember(path)
            while member.issym():
                member = tar.getmember(
                    posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))
                )
            sizes.append(member.size)
    return sizes


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    import hashlib

    chains: list[str] = []
    for diff in diff_ids:
        chains.append(diff if not chains else "sha256:" + hashlib.sha256(f"{chains[-1]} {diff}".encode()).hexdigest())
    return chains


def lacking_bytes(src: Engine, dst: Engine, ref: str) -> int:
    """What copying `ref` from `src` must send to `dst`, measured before the copy: the export
    sizes of its layers that `dst` does not hold the way its engine reuses them (graphdriver
    Docker by chain id; the containerd store and Podman by diff id), each layer once."""
    graphdriver = dst.spec.kind == "docker" and not dst.spec.containerd_store
    held: set[str] = set()
    for layers in all_image_layers(dst):
        held.update(chain_ids(layers) if graphdriver else layers)
    diffs = image_layers(src, ref)
    keys = chain_ids(diffs) if graphdriver else diffs
    # One file serves every place a layer occurs in (Docker < 25 exports link the repeats).
    missing = {diff: size for key, diff, size in zip(keys, diffs, export_layer_sizes(src, ref)) if key not in held}
    return sum(missing.values())
