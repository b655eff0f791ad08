"""A real distribution registry (Debian's docker-registry 2.8) on a free port, optionally with
htpasswd (basic) authentication, storing into a private directory."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DistributionRegistry:
    base: Path
    listen: str = "127.0.0.1"
    port: int = 0
    user: str | None = None
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DistributionRegistry:
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        auth = ""
        if self.user:
            htpasswd = subprocess.run(
                ["htpasswd", "-nbB", self.user, self.password or ""], capture_output=True, text=True, check=True
            ).stdout
            (self.base / "htpasswd").write_text(htpasswd)
            auth = f"auth:\n  htpasswd:\n    realm: d2d\n    path: {self.base / 'htpasswd'}\n"
        config = self.base / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.base / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.listen}:{self.port}\n{auth}"
        )
        with open(self.base / "registry.log", "ab") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.base / 'registry.log').read_text()[-2000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/v2/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not answer within 20 s")

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_bytes(self) -> int:
        """What the registry stores in blobs: the bytes it received."""
        blobs = self.base / "data/docker/registry/v2/blobs"
        return sum(p.stat().st_size for p in blobs.rglob("data")) if blobs.exists() else 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
