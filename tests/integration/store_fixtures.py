"""Fixtures for the containerd-store tests: Docker 28.5 engines and a distribution registry on
loopback, started here in a minimal way (the `engines` helper branch adds matrix specs and a
shared registry fixture; swap these for those when merged)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.harness.engines import ENGINES_DIR, SPECS, Engine, EngineSpec

DOCKER28 = ENGINES_DIR / "docker28" / "usr"
STORE_SPECS: dict[str, EngineSpec] = {
    **SPECS,
    "docker28": EngineSpec(
        "docker28", "docker", dockerd=str(DOCKER28 / "sbin/dockerd"), path_prefix=str(DOCKER28 / "bin")
    ),
    "docker28c": EngineSpec(
        "docker28c",
        "docker",
        dockerd=str(DOCKER28 / "sbin/dockerd"),
        path_prefix=str(DOCKER28 / "bin"),
        containerd_store=True,
    ),
}


def start(name: str, base: Path, label: str | None = None) -> Engine:
    engine = Engine(STORE_SPECS[name], base / (label or name))
    engine.start()
    return engine


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(base: Path) -> Registry:
    """Debian's `docker-registry` (distribution 2.8) on a free loopback port, private storage."""
    base.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(base / "registry.log", "ab")  # noqa: SIM115 - kept open for the process's life
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                return Registry(f"127.0.0.1:{port}", proc)
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"docker-registry did not start:\n{(base / 'registry.log').read_text(errors='replace')}")


def stop_registry(registry: Registry) -> None:
    registry.proc.terminate()
    try:
        registry.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.proc.kill()


# --- what an engine holds ------------------------------------------------------------------


def ctr_images(engine: Engine) -> list[str]:
    """containerd's own image list for the engine's store (the records the Engine API hides)."""
    sock = engine.base / "exec" / "containerd" / "containerd.sock"
    out = subprocess.run(
        ["ctr", "--address", str(sock), "-n", "moby", "images", "ls", "-q"], capture_output=True, text=True, check=True
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
