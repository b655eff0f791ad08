"""A real OpenSSH server for the tests, with its own host key, users' keys and options;
and a private client side (HOME with .ssh/config, known_hosts, keys, an agent)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .engines import free_port


def login_user(name: str) -> pwd.struct_passwd:
    """A local user sshd lets in with a key (no password: "*", not locked "!"), made if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return entry


def install_sudoers(name: str, rules: str) -> Path:
    """A sudoers file in /etc/sudoers.d, put there whole: sudo reads every file in that folder
    at every call, and a half-written one (another worker's test running sudo meanwhile) is a
    parse error that makes it refuse everything. Written under a name sudo skips (it holds a dot),
    then renamed into place."""
    path = Path("/etc/sudoers.d") / name
    staged = path.with_name(f".{name}.new")
    staged.write_text(rules)
    staged.chmod(0o440)
    os.rename(staged, path)
    return path


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-f", str(path)], check=True)
    return path


@dataclass
class Sshd:
    base: Path
    address: str = "127.0.0.1"
    port: int = 0
    netns: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    # Shell commands run first in a mount namespace of the server's own (what its sessions see
    # of the filesystem: e.g. a tmpfs on /run holding a socket at a well-known path).
    setup: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, authorized: dict[str, list[Path]]) -> Sshd:
        self.base.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port()
        host_key = keygen(self.base / "ssh_host_ed25519_key")
        keys_dir = self.base / "authorized"
        keys_dir.mkdir(exist_ok=True)
        for user, pubs in authorized.items():
            (keys_dir / user).write_text("".join(p.with_suffix(".pub").read_text() for p in pubs))
        config = {
            "Port": str(self.port),
            "ListenAddress": self.address,
            "HostKey": str(host_key),
            "PidFile": str(self.base / "sshd.pid"),
            "AuthorizedKeysFile": f"{keys_dir}/%u",
            "StrictModes": "no",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "UsePAM": "no",
            "PermitRootLogin": "prohibit-password",
            "AllowStreamLocalForwarding": "yes",
            "AllowTcpForwarding": "yes",
            "MaxSessions": "50",
            "LogLevel": "ERROR",
            **self.options,
        }
        (self.base / "sshd_config").write_text("".join(f"{k} {v}\n" for k, v in config.items()))
        cmd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.base / "sshd_config")]
        if self.setup:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{self.setup} && exec "$@"', "sh", *cmd]
        if self.netns:
            cmd = ["nsenter", f"--net=/var/run/netns/{self.netns}", *cmd]
        log = open(self.base / "sshd.log", "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.base / 'sshd.log').read_text()}")
            probe = ["nsenter", f"--net=/var/run/netns/{self.netns}"] if self.netns else []
            if (
                subprocess.run(
                    [*probe, "bash", "-c", f"exec 3<>/dev/tcp/{self.address}/{self.port}"], capture_output=True
                ).returncode
                == 0
            ):
                return self
            time.sleep(0.1)
        raise RuntimeError("sshd did not listen")

    def host_key_line(self, name: str | None = None) -> str:
        pub = (self.base / "ssh_host_ed25519_key.pub").read_text().split()
        host = name or (f"[{self.address}]:{self.port}" if self.port != 22 else self.address)
        return f"{host} {pub[0]} {pub[1]}\n"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)


@dataclass
class SshClientHome:
    """A HOME for the ssh client side: .ssh/config, known_hosts and a key."""

    home: Path

    @property
    def ssh(self) -> Path:
        d = self.home / ".ssh"
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        return d

    def key(self, name: str = "id_ed25519", passphrase: str = "") -> Path:
        return keygen(self.ssh / name, passphrase=passphrase)

    def trust(self, *servers: Sshd, names: tuple[str, ...] = ()) -> None:
        lines = [s.host_key_line() for s in servers] + [s.host_key_line(n) for s in servers for n in names]
        with open(self.ssh / "known_hosts", "a") as f:
            f.write("".join(lines))

    def config(self, text: str) -> None:
        (self.ssh / "config").write_text(text)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK",) and not k.startswith("DOCKER_")}
        return {**env, "HOME": str(self.home), **extra}
