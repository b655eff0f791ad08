"""Measure how long real engines stay silent during a big load: while they read its body (the
longest time one send waits) and after it (to the first answer byte, and between answer bytes),
with and without `quiet`. The watchdog's bounds on a load rest on these numbers.

    .venv/bin/python -m tests.bench.bench_load_gaps [--mb 800 --layers 4 --engines docker20 docker28c podman]

Each load is a fresh image of incompressible layers (nothing to reuse), sent from a file in 1 MiB
writes over the engine's unix socket, as docker-d2d sends its bodies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import tarfile
import tempfile
import time
from pathlib import Path

from tests.harness.engines import Engine, destroy_all, start_engine
from tests.harness.images import image_config

CHUNK = 1 << 20


def _layer(path: Path, size: int) -> str:
    """A layer tar of one incompressible file; returns its digest."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        info.mtime = 1_700_000_000
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a writer of random bytes, so the parent streams without holding them
            os.close(r)
            left = size
            while left:
                n = min(left, CHUNK)
                os.write(w, os.urandom(n))
                left -= n
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as src:
            tar.addfile(info, src)
        os.waitpid(pid, 0)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _archive(work: Path, tag: str, layers: int, size: int, oci: bool) -> Path:
    """A full archive: docker-archive (manifest.json) or an OCI layout, as docker-d2d writes them."""
    paths = [work / f"l{i}.tar" for i in range(layers)]
    diffs = [_layer(p, size) for p in paths]
    config = image_config(diffs, [{"created_by": f"step {i}"} for i in range(layers)])
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    out = work / "archive.tar"

    def add(tar: tarfile.TarFile, name: str, data: bytes | Path) -> None:
        info = tarfile.TarInfo(name)
        info.mtime = 1_700_000_000
        if isinstance(data, Path):
            info.size = data.stat().st_size
            with open(data, "rb") as f:
                tar.addfile(info, f)
        else:
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(out, "w") as tar:
        if oci:
            for p, d in zip(paths, diffs):
                add(tar, f"blobs/sha256/{d[7:]}", p)
            add(tar, f"blobs/sha256/{cdig[7:]}", config)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {
                        "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": cdig,
                        "size": len(config),
                    },
                    "layers": [
                        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": p.stat().st_size}
                        for p, d in zip(paths, diffs)
                    ],
                }
            ).encode()
            mdig = "sha256:" + hashlib.sha256(manifest).hexdigest()
            add(tar, f"blobs/sha256/{mdig[7:]}", manifest)
            index = {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": mdig,
                        "size": len(manifest),
                        "annotations": {
                            "io.containerd.image.name": f"docker.io/library/{tag}",
                            "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1],
                        },
                    }
                ],
            }
            add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add(tar, "index.json", json.dumps(index).encode())
        else:
            for p, d in zip(paths, diffs):
                add(tar, f"{d[7:]}/layer.tar", p)
            add(tar, f"{cdig[7:]}.json", config)
            entries = [
                {"Config": f"{cdig[7:]}.json", "RepoTags": [tag], "Layers": [f"{d[7:]}/layer.tar" for d in diffs]}
            ]
            add(tar, "manifest.json", json.dumps(entries).encode())
    for p in paths:
        p.unlink()
    return out


def measure(engine: Engine, archive: Path, quiet: bool) -> dict[str, float]:
    """POST the archive; the longest send, the wait from the last byte sent to the first answer
    byte, the longest gap between answer bytes, and the time to the end of the answer."""
    size = archive.stat().st_size
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(engine.socket))
    head = (
        f"POST /v1.41/images/load?quiet={int(quiet)} HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Type: application/x-tar\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head)
    start = time.monotonic()
    longest_send = 0.0
    with open(archive, "rb") as f:
        while block := f.read(CHUNK):
            t = time.monotonic()
            sock.sendall(block)
            longest_send = max(longest_send, time.monotonic() - t)
    body_done = time.monotonic()
    first = None
    last = body_done
    longest_gap = 0.0
    answer = b""
    while True:
        data = sock.recv(65536)
        now = time.monotonic()
        if first is None:
            first = now - body_done
        else:
            longest_gap = max(longest_gap, now - last)
        last = now
        if not data:
            break
        answer += data
    sock.close()
    ok = b" 200 " in answer.split(b"\r\n", 1)[0]
    return {
        "body_s": round(body_done - start, 1),
        "longest_send_s": round(longest_send, 2),
        "first_answer_byte_after_body_s": round(first or 0.0, 2),
        "longest_answer_gap_s": round(longest_gap, 2),
        "answer_bytes": len(answer),
        "total_s": round(last - start, 1),
        "ok": ok,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=800)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--engines", nargs="+", default=["docker20", "docker28c", "podman"])
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="d2d-gaps-", dir="/var/tmp"))
    started: list[Engine] = []
    try:
        for name in args.engines:
            engine = start_engine(name, base)
            started.append(engine)
            oci = engine.spec.containerd_store or engine.spec.kind == "podman"
            for quiet in (True, False):
                work = base / "work"
                work.mkdir(exist_ok=True)
                tag = f"gaps{int(quiet)}:{os.getpid()}"
                archive = _archive(work, tag, args.layers, args.mb * CHUNK // args.layers, oci)
                result = measure(engine, archive, quiet)
                archive.unlink()
                print(json.dumps({"engine": name, "quiet": quiet, "mb": args.mb, **result}), flush=True)
    finally:
        destroy_all(started)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
