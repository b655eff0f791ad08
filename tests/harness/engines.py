"""Start and stop throwaway container engines, each in its own directories.

Every engine gets a private data root, exec root and socket under one base
directory, so several run side by side and nothing touches the machine's own
Docker. A failure to start raises: in CI a missing engine must fail the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ENGINES_DIR = Path(os.environ.get("D2D_ENGINES_DIR", "/opt/d2d-engines"))
DOCKER26 = ENGINES_DIR / "docker26" / "usr"
DOCKER28 = ENGINES_DIR / "docker28" / "usr"
PODMAN5 = ENGINES_DIR / "podman5"


@dataclass(frozen=True)
class EngineSpec:
    name: str
    kind: str  # "docker" | "podman"
    dockerd: str = ""
    path_prefix: str = ""
    containerd_store: bool = False
    # Podman: the binary, and the private prefix it was unpacked into ("" for the machine's own).
    podman: str = "podman"
    podman_prefix: str = ""

    @property
    def ctr(self) -> str:
        """containerd's own CLI from the same prefix as the daemon."""
        return str(Path(self.path_prefix) / "ctr") if self.path_prefix else "ctr"


def _dockerd(name: str, usr: Path, containerd_store: bool = False) -> EngineSpec:
    return EngineSpec(
        name,
        "docker",
        dockerd=str(usr / "sbin/dockerd"),
        path_prefix=str(usr / "bin"),
        containerd_store=containerd_store,
    )


SPECS: dict[str, EngineSpec] = {
    "docker20": EngineSpec("docker20", "docker", dockerd="/usr/sbin/dockerd"),
    "docker26": _dockerd("docker26", DOCKER26),
    "docker26c": _dockerd("docker26c", DOCKER26, containerd_store=True),
    "docker28": _dockerd("docker28", DOCKER28),
    "docker28c": _dockerd("docker28c", DOCKER28, containerd_store=True),
    "podman": EngineSpec("podman", "podman"),
    "podman5": EngineSpec("podman5", "podman", podman=str(PODMAN5 / "usr/bin/podman"), podman_prefix=str(PODMAN5)),
}


class EngineStartError(RuntimeError):
    pass


@dataclass
class Engine:
    spec: EngineSpec
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    # host:port of registries a podman engine may reach over plain http (Docker needs no list:
    # it treats 127.0.0.0/8 as insecure by itself).
    insecure_registries: tuple[str, ...] = ()

    @property
    def socket(self) -> Path:
        return self.base / "engine.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def containerd_socket(self) -> Path:
        """The containerd that dockerd started for itself (Docker engines only)."""
        return self.base / "exec" / "containerd" / "containerd.sock"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """containerd's CLI against this dockerd's own containerd, in moby's namespace."""
        cmd = [self.spec.ctr, "--address", str(self.containerd_socket), "--namespace", "moby", *args]
        return subprocess.run(cmd, capture_output=True, check=check)

    @property
    def log(self) -> Path:
        return self.base / "engine.log"

    def start(
        self,
        timeout: float = 60.0,
        netns: str | None = None,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **(extra_env or {}))
        if self.spec.path_prefix:
            env["PATH"] = self.spec.path_prefix + ":" + env["PATH"]
        if self.spec.kind == "docker":
            cmd = [*self._dockerd_cmd(), *extra_args]
        else:
            cmd = self._podman_cmd()
            env["XDG_RUNTIME_DIR"] = str(self.base / "xdg")
            env["CONTAINERS_CONF"] = str(self.base / "containers.conf")
            env["CONTAINERS_REGISTRIES_CONF"] = str(self.base / "registries.conf")
            if self.spec.podman_prefix:
                env["CONTAINERS_STORAGE_CONF"] = str(self.base / "storage.conf")
                env["PODMAN_IGNORE_CGROUPSV1_WARNING"] = "1"
        if netns:
            cmd = ["nsenter", f"--net=/var/run/netns/{netns}", *cmd]
        self.env = env
        if self.socket.exists():
            self.socket.unlink()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_ready(timeout)

    def _dockerd_cmd(self) -> list[str]:
        config = self.base / "daemon.json"
        features = {"containerd-snapshotter": True} if self.spec.containerd_store else {}
        config.write_text(json.dumps({"features": features}))
        return [
            self.spec.dockerd,
            f"--config-file={config}",
            f"--data-root={self.base / 'data'}",
            f"--exec-root={self.base / 'exec'}",
            f"--pidfile={self.base / 'dockerd.pid'}",
            f"-H=unix://{self.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--storage-driver=" + ("overlayfs" if self.spec.containerd_store else "overlay2"),
        ]

    def _podman_cmd(self) -> list[str]:
        (self.base / "xdg").mkdir(exist_ok=True)
        # A private containers.conf keeps podman off the machine's own storage and network config.
        conf = '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
        prefix = self.spec.podman_prefix
        if prefix:
            # Everything from the private prefix, except the OCI runtime: trixie's crun refuses
            # this machine's cgroup setup, bookworm's runc works. There is no nft here.
            conf += (
                f'conmon_path = ["{prefix}/usr/bin/conmon"]\n'
                f'helper_binaries_dir = ["{prefix}/usr/lib/podman", "{prefix}/usr/libexec/podman"]\n'
                'runtime = "runc"\n'
                '[engine.runtimes]\nrunc = ["/usr/sbin/runc"]\n'
                '[network]\nfirewall_driver = "iptables"\n'
            )
            (self.base / "storage.conf").write_text(
                f'[storage]\ndriver = "overlay"\nroot = "{self.base / "root"}"\nrunroot = "{self.base / "runroot"}"\n'
            )
        (self.base / "containers.conf").write_text(conf)
        # Registries on loopback are plain http (tests/harness/registry.py), as Docker assumes.
        (self.base / "registries.conf").write_text(
            "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in self.insecure_registries)
        )
        return [
            self.spec.podman,
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "runroot"),
            "--storage-driver",
            "overlay",
            "system",
            "service",
            "--time=0",
            f"unix://{self.socket}",
        ]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise EngineStartError(f"{self.spec.name} exited with {self.proc.returncode}:\n{self.tail_log()}")
            if self.socket.exists():
                try:
                    with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), timeout=2) as c:
                        if c.get("http://engine/_ping").status_code == 200:
                            return
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise EngineStartError(f"{self.spec.name} did not answer within {timeout}s:\n{self.tail_log()}")

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def docker(
        self, *args: str, input: bytes | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the docker CLI (or podman's remote client) against this engine."""
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_BUILDKIT="0", **(env or {}))
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run(["docker", *args], input=input, capture_output=True, env=env, check=check)

    def destroy(self) -> None:
        self.stop()
        # overlay mounts may linger under the data root; unmount before removing.
        subprocess.run(
            f"grep -o ' {self.base}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            shell=True,
            check=False,
        )
        shutil.rmtree(self.base, ignore_errors=True)


def destroy_all(engines: Iterable[Engine]) -> None:
    """Destroy engines, stopping them all at once first: a dockerd takes seconds to shut down, and
    one after another the session's fourteen engines took half a minute. Every one is stopped
    before any is unmounted (a twin's data root lies beside the other's)."""
    engines = list(engines)
    if engines:
        with ThreadPoolExecutor(max_workers=len(engines)) as pool:
            list(pool.map(Engine.stop, engines))
    for engine in engines:
        engine.destroy()


def start_engine(name: str, base: Path, **kwargs: object) -> Engine:
    engine = Engine(SPECS[name], base / name)
    engine.start(**kwargs)  # type: ignore[arg-type]
    return engine


def free_port() -> int:
    """A TCP port free on loopback now (another process may take it before it is bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
