"""A real distribution registry (Debian's `docker-registry`) on a free loopback port, with a
private storage dir, for tests whose images must come "from a registry".

Engines treat 127.0.0.0/8 as insecure (plain http) by themselves; Podman gets the address in
its private registries.conf (`Engine.insecure_registries`).

    registry.put(builder.engine, dst, "base:1")   # -> "127.0.0.1:PORT/base:1", pulled at dst
    registry.upload_blob("repo", data)            # hand-made content through the registry API
    registry.upload_manifest("repo", "tag", manifest_bytes, media_type)
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from .engines import Engine, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


class RegistryStartError(RuntimeError):
    pass


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """`listen`: where it binds (0.0.0.0 to be reached from network namespaces); `user` and
    `password`: htpasswd (basic) authentication, as a registry that needs `docker login`."""

    def __init__(
        self,
        base: Path,
        listen: str = "127.0.0.1",
        user: str | None = None,
        password: str = "",
        netns: tuple[str, str] | None = None,
    ) -> None:
        """`netns`: (namespace, its address) to run inside a network namespace host."""
        self.base = base
        self.listen = listen
        self.netns = netns
        self.user, self.password = user, password
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port, the prefix of every reference into this registry."""
        return f"{self.netns[1] if self.netns else '127.0.0.1'}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def ref(self, name: str) -> str:
        """`name:tag` -> `127.0.0.1:PORT/name:tag`."""
        return f"{self.address}/{name}"

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = self.base / "registry.log"
        for _ in range(5):  # another process may take the free port before the registry binds it
            self.port = free_port()
            config = self.base / "config.yml"
            config.write_text(
                json.dumps(  # JSON is YAML
                    {
                        "version": 0.1,
                        "log": {"level": "warn"},
                        "storage": {
                            "filesystem": {"rootdirectory": str(self.base / "data")},
                            "delete": {"enabled": True},
                        },
                        "http": {"addr": f"{self.listen}:{self.port}"},
                        **self._auth(),
                    }
                )
            )
            with open(log, "ab") as out:
                enter = ["nsenter", f"--net=/var/run/netns/{self.netns[0]}"] if self.netns else []
                self.proc = subprocess.Popen(
                    [*enter, "docker-registry", "serve", str(config)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                return
        raise RegistryStartError(f"docker-registry did not start:\n{log.read_text(errors='replace')[-2000:]}")

    def _auth(self) -> dict[str, Any]:
        if not self.user:
            return {}
        line = subprocess.run(
            ["htpasswd", "-nbB", self.user, self.password], capture_output=True, text=True, check=True
        ).stdout
        (self.base / "htpasswd").write_text(line)
        return {"auth": {"htpasswd": {"realm": "d2d", "path": str(self.base / "htpasswd")}}}

    def blob_bytes(self) -> int:
        """What the registry stores in blobs: the bytes it was sent."""
        blobs = self.base / "data/docker/registry/v2/blobs"
        return sum(p.stat().st_size for p in blobs.rglob("data")) if blobs.exists() else 0

    def _wait_ready(self, timeout: float) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/v2/", timeout=2).status_code in (200, 401):
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # --- images through engines ---------------------------------------------------------

    def push(self, engine: Engine, image: str) -> str:
        """Push `image` (held by `engine`) as `ref(image)`; returns that reference."""
        ref = self.ref(image)
        engine.docker("tag", image, ref)
        engine.docker("push", ref)
        return ref

    def pull(self, engine: Engine, ref: str) -> None:
        """`docker pull ref` at `engine`: the engine stores it the way any registry pull does."""
        engine.docker("pull", "-q", ref)

    def put(self, source: Engine, target: Engine, image: str) -> str:
        """Put `image` at `target` "pulled from a registry": pushed from `source` (the builder),
        pulled by `target`. Returns the registry reference `target` now holds it under."""
        ref = self.push(source, image)
        self.pull(target, ref)
        return ref

    # --- hand-made content through the registry API ----------------------------------------

    def upload_blob(self, repo: str, data: bytes) -> str:
        """Monolithic blob upload; returns the digest."""
        digest = digest_of(data)
        with httpx.Client(base_url=self.url, timeout=60) as c:
            start = c.post(f"/v2/{repo}/blobs/uploads/")
            start.raise_for_status()
            # The upload URL carries its own state in its query: add to it, never replace it.
            location = httpx.URL(start.headers["Location"]).copy_merge_params({"digest": digest})
            done = c.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
            done.raise_for_status()
        return digest

    def upload_manifest(self, repo: str, reference: str, manifest: bytes, media_type: str = OCI_MANIFEST) -> str:
        """PUT a manifest or index under a tag (or its digest); returns its digest."""
        resp = httpx.put(
            f"{self.url}/v2/{repo}/manifests/{reference}", content=manifest, headers={"Content-Type": media_type}
        )
        resp.raise_for_status()
        return digest_of(manifest)

    def manifest(self, repo: str, reference: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.url}/v2/{repo}/manifests/{reference}", headers={"Accept": _ACCEPT})
        resp.raise_for_status()
        return dict(resp.json())
