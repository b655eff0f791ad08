"""Kubernetes nodes without Kubernetes: a real containerd (forky's 2.1 or trixie's 1.7, from the
engines' prefixes .ci/setup-machine unpacks) with nothing else, reached as a node is:

    Node          containerd on its own socket, optionally in a network namespace host with its own
                  sshd (root's key; `ctr` of that containerd first on the PATH of its sessions)
    NodeContainer containerd inside a container of a test engine, labelled as kind or k3d label
                  their node containers, `ctr` on its PATH
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .engines import ENGINES_DIR, Engine
from .netns import NetNS
from .sshd import SshClientHome, Sshd

# containerd's version -> the prefix holding it (docker28: forky's 2.1.9; docker26: trixie's 1.7.24).
PREFIXES = {"2.1": "docker28", "1.7": "docker26"}
# The CRI plugin wants CNI and a kubelet: a node here needs only the content store, snapshots and
# images (the CRI's image service in 2.x lives beside it and is disabled with it).
DISABLED_2 = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
DISABLED_1 = ["io.containerd.grpc.v1.cri"]


def bin_dir(version: str) -> Path:
    return ENGINES_DIR / PREFIXES[version] / "usr" / "bin"


@dataclass
class Node:
    """A containerd; `netns`: run inside that namespace (then `ssh()` starts its sshd)."""

    base: Path
    version: str = "2.1"
    netns: NetNS | None = None
    proc: subprocess.Popen[bytes] | None = None
    sshd: Sshd | None = None
    _started: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def ctr_bin(self) -> Path:
        return bin_dir(self.version) / "ctr"

    def start(self) -> Node:
        self.base.mkdir(parents=True, exist_ok=True)
        v2 = self.version.startswith("2")
        disabled = json.dumps(DISABLED_2 if v2 else DISABLED_1)
        (self.base / "config.toml").write_text(
            f"version = {3 if v2 else 2}\n"
            f'root = "{self.base / "root"}"\nstate = "{self.base / "state"}"\n'
            f"disabled_plugins = {disabled}\n"
            f'[grpc]\n  address = "{self.socket}"\n[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
        )
        cmd = [str(bin_dir(self.version) / "containerd"), "-c", str(self.base / "config.toml")]
        if self.netns:
            cmd = ["nsenter", f"--net=/var/run/netns/{self.netns.name}", *cmd]
        log = open(self.base / "containerd.log", "ab")  # noqa: SIM115 - lives as long as the daemon
        env = dict(os.environ, PATH=f"{bin_dir(self.version)}:{os.environ.get('PATH', '')}")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {(self.base / 'containerd.log').read_text()[-2000:]}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("containerd did not answer")

    def ctr(self, *args: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        cmd = [str(self.ctr_bin), "--address", str(self.socket), "-n", "k8s.io", *args]
        proc = subprocess.run(cmd, capture_output=True, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {proc.stderr.decode()}")
        return proc

    def ssh(self, client: SshClientHome, at: str = "", users: tuple[str, ...] = ()) -> str:
        """Start this node's sshd (root, the client's key) and trust it; the node's address to type:
        `root@ADDR:PORT`. `at`: where its sessions see the containerd socket (a well-known path such
        as k3s's, in a /run of the server's own; nothing else there: no Docker socket). `users`: more
        login users the client's key lets in."""
        assert self.netns is not None
        key = client.key()
        setup = ""
        if at:
            setup = f"mount -t tmpfs tmpfs /run && mkdir -p /run/sshd {os.path.dirname(at)} && ln -s {self.socket} {at}"
        self.sshd = Sshd(
            self.base / "sshd",
            address=self.netns.addr,
            netns=self.netns.name,
            options={"PermitUserEnvironment": "yes"},
            setup=setup,
        )
        self.sshd.start({user: [key] for user in ("root", *users)})
        # A node has its ctr on the PATH of an ssh session: here the containerd's own.
        path = f"{bin_dir(self.version)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for user in ("root", *users):
            auth = self.base / "sshd" / "authorized" / user
            auth.write_text(f'environment="PATH={path}" ' + auth.read_text())
            auth.chmod(0o644)  # sshd reads it as that user
        client.trust(self.sshd)
        return f"root@{self.netns.addr}:{self.sshd.port}"

    def endpoint_ssh(self, client: SshClientHome) -> str:
        return f"containerd+ssh://{self.ssh(client)}{self.socket}"

    # --- what it holds -------------------------------------------------------------------------

    def images(self) -> dict[str, str]:
        """name -> target digest."""
        out = self.ctr("images", "ls").stdout.decode().splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in out if line.strip()}

    def content(self) -> set[str]:
        out = self.ctr("content", "ls").stdout.decode().splitlines()[1:]
        return {line.split()[0] for line in out if line.strip()}

    def check(self, name: str) -> str:
        """`ctr images check` of one name: its STATUS and UNPACKED columns."""
        for line in self.ctr("images", "check").stdout.decode().splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == name:
                return f"{parts[3]} unpacked={parts[-1]}"
        return "absent"

    def snapshots(self) -> dict[str, str]:
        out = self.ctr("snapshots", "ls").stdout.decode().splitlines()[1:]
        return {line.split()[0]: line.split()[-1] for line in out if line.strip()}

    def stop(self) -> None:
        if self.sshd:
            self.sshd.stop()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run(["umount", "-R", str(self.base / "root")], capture_output=True)
        subprocess.run(["rm", "-rf", str(self.base)], capture_output=True)


NODE_IMAGE_FILES = ("containerd", "ctr", "containerd-shim-runc-v2")
LIBC = ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2")
TOOLS = ("/bin/sh", "/bin/rm")  # a kind node has them (docker-d2d removes its export file with rm)


def node_image(engine: Engine, version: str = "2.1") -> str:
    """An image whose container runs containerd (the prefix's binaries on a tiny rootfs of the
    host's libc-free static Go binaries): what a kind or k3d node is to docker-d2d."""
    name = f"d2d-node:{version}-2"
    if engine.docker("image", "inspect", name, check=False).returncode == 0:
        return name
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in NODE_IMAGE_FILES:
            src = bin_dir(version) / f
            if src.exists():
                tar.add(str(src), arcname=f"usr/bin/{f}")
        for lib in (*LIBC, *TOOLS):  # the binaries are linked to the host's libc
            tar.add(str(Path(lib).resolve()), arcname=lib.lstrip("/"))
        for d in ("run", "var/lib/containerd", "tmp", "etc/containerd", "bin", "lib/x86_64-linux-gnu", "lib64"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        v2 = version.startswith("2")
        cfg = (
            f"version = {3 if v2 else 2}\ndisabled_plugins = {json.dumps(DISABLED_2 if v2 else DISABLED_1)}\n"
        ).encode()
        info = tarfile.TarInfo("etc/containerd/config.toml")
        info.size = len(cfg)
        tar.addfile(info, io.BytesIO(cfg))
    engine.docker(
        "import",
        "--change",
        'ENTRYPOINT ["/usr/bin/containerd"]',
        "--change",
        "ENV PATH=/usr/bin",
        "-",
        name,
        input=buf.getvalue(),
    )
    return name


@dataclass
class NodeContainer:
    """A node container of a test engine, labelled as kind (or k3d) labels a cluster's nodes."""

    engine: Engine
    cluster: str
    name: str
    tool: str = "kind"  # or k3d
    version: str = "2.1"

    def start(self) -> NodeContainer:
        image = node_image(self.engine, self.version)
        label = "io.x-k8s.kind.cluster" if self.tool == "kind" else "k3d.cluster"
        self.engine.docker(
            # Not --privileged: this machine's dockerd may not grant every capability; containerd
            # needs mounts (SYS_ADMIN) to unpack.
            "run", "-d", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--name", self.name, "--label", f"{label}={self.cluster}",
            "--tmpfs", "/run", "-v", "/var/lib/containerd", "--network", "none", image,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ctr("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(
            f"containerd in {self.name} did not answer: {self.engine.docker('logs', self.name).stderr!r}"
        )

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = self.engine.docker("exec", self.name, "ctr", "-n", "k8s.io", *args, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} in {self.name}: {proc.stderr!r}")
        return proc

    def images(self) -> dict[str, str]:
        out = self.ctr("images", "ls").stdout.decode().splitlines()[1:]
        return {line.split()[0]: line.split()[2] for line in out if line.strip()}

    def stop(self) -> None:
        self.engine.docker("rm", "-f", self.name, check=False)
