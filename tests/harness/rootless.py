"""A rootless Podman API service: bookworm's Podman 4.3 run by an unprivileged user, its socket in
that user's runtime dir (/run/user/UID/podman/podman.sock), as `systemctl --user start
podman.socket` would place it. The suite runs as root, so the user, its runtime dir and the
service are made here; no systemd or logind is involved.

One user serves every test run on the machine, and rootless Podman keeps one user namespace per
user (its pause process) and one socket path: a lock file makes concurrent runs take turns."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .engines import SPECS, Engine, EngineStartError

USER = "d2drootless"
LOCK = Path("/run/lock/docker-d2d-rootless-podman.lock")


def ensure_user(name: str = USER) -> pwd.struct_passwd:
    """The unprivileged user, with the subordinate id ranges rootless Podman maps into its namespace
    (Debian's useradd allocates them)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    # useradd leaves the password "!" (locked), and sshd without PAM refuses locked accounts even
    # with a key; "*" is no password, not locked.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    for table in ("/etc/subuid", "/etc/subgid"):
        lines = Path(table).read_text().splitlines() if Path(table).exists() else []
        if not any(line.split(":")[0] in (name, str(entry.pw_uid)) for line in lines):
            raise EngineStartError(f"{name} has no range in {table}: rootless Podman cannot map its image files")
    for tool in ("/usr/bin/newuidmap", "/usr/bin/newgidmap"):
        if not os.path.exists(tool):
            raise EngineStartError(f"{tool} is missing: install uidmap (.ci/setup-machine does)")
    return entry


@dataclass
class RootlessPodman(Engine):
    """An Engine whose service runs as USER; `docker()` still runs as root, which may open any
    socket. The storage lives under `base` (which must be traversable by the user)."""

    user: str = USER
    _lock: IO[bytes] | None = None

    @property
    def pw(self) -> pwd.struct_passwd:
        return pwd.getpwnam(self.user)

    @property
    def runtime_dir(self) -> Path:
        return Path(f"/run/user/{self.pw.pw_uid}")

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "podman" / "podman.sock"

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def storage(self) -> Path:
        # in a directory of the user's own, so that `system reset` may remove it
        return self.home / "storage"

    def _as_user(self, *args: str) -> list[str]:
        pw = self.pw
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "CONTAINERS_CONF": str(self.base / "containers.conf"),
        }
        return [
            "setpriv",
            f"--reuid={pw.pw_uid}",
            f"--regid={pw.pw_gid}",
            "--init-groups",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            self.spec.podman,
            # Explicit, so the store is the test's own and overlay is native (kernel >= 5.13):
            # without them Podman 4.3 picks vfs when fuse-overlayfs is absent.
            "--root",
            str(self.storage),
            "--runroot",
            str(self.runtime_dir / "containers"),
            "--storage-driver",
            "overlay",
            *args,
        ]

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Podman's own CLI as the user, on the service's store."""
        return subprocess.run(self._as_user(*args), capture_output=True, check=check, cwd="/")

    def start(
        self,
        timeout: float = 60.0,
        netns: str | None = None,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        pw = ensure_user(self.user)
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(LOCK, "ab")  # noqa: SIM115 - held until destroy
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        for d in (self.home, self.storage):
            d.mkdir(exist_ok=True)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        # What pam_systemd would make at login: a private runtime dir owned by the user.
        self.runtime_dir.parent.mkdir(mode=0o755, exist_ok=True)
        self.runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.runtime_dir, pw.pw_uid, pw.pw_gid)
        # cgroupfs: there is no systemd user session to ask for a cgroup (and this host is cgroup v1).
        (self.base / "containers.conf").write_text('[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
        self.socket.parent.mkdir(exist_ok=True)
        os.chown(self.socket.parent, pw.pw_uid, pw.pw_gid)
        if self.socket.exists():
            self.socket.unlink()
        cmd = self._as_user("system", "service", "--time=0", f"unix://{self.socket}")
        if netns:
            cmd = ["nsenter", f"--net=/var/run/netns/{netns}", *cmd]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        self._wait_ready(timeout)
        # Prove it is what it claims: the service's own view says rootless, mapped to the user.
        out = self.podman("info", "--format", "{{.Host.Security.Rootless}} {{.Store.GraphDriverName}}").stdout
        if out.decode().split() != ["true", "overlay"]:
            raise EngineStartError(f"expected a rootless overlay store, podman info says: {out.decode().strip()}")

    def pause_pid(self) -> int | None:
        """The process that holds the user's namespace open after every podman process ends."""
        try:
            return int((self.runtime_dir / "libpod" / "tmp" / "pause.pid").read_text())
        except (OSError, ValueError):
            return None

    def user_processes(self) -> list[str]:
        out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-u", self.user], capture_output=True, text=True)
        # zombies are gone once pid 1 reaps them: not running
        return [line.strip() for line in out.stdout.splitlines() if not line.split()[1].startswith("Z")]

    def destroy(self) -> None:
        problems: list[str] = []
        try:
            self.stop()
            try:
                uid = self.pw.pw_uid
            except KeyError:  # the user was never made: nothing of it can be running
                return
            if self.storage.exists():
                # From inside the user's namespace: rootless overlay leaves files of subordinate ids
                # and directories the user cannot remove from outside it. Ends the pause process too.
                reset = self.podman("system", "reset", "--force", check=False)
                if reset.returncode != 0:
                    problems.append(f"podman system reset: {reset.stderr.decode(errors='replace').strip()}")
            pid = self.pause_pid()
            # only if it is still the user's: a stale pid file may name someone else's process now
            with contextlib.suppress(OSError):
                if pid is not None and os.stat(f"/proc/{pid}").st_uid == uid:
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.user_processes() and time.monotonic() < deadline:
                time.sleep(0.2)
            if left := self.user_processes():
                problems.append(f"processes of {self.user} outlived the rootless service: {left}")
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)  # root may remove what reset could not
            if self._lock is not None:
                self._lock.close()  # releases the flock
                self._lock = None
        if problems:
            raise RuntimeError("; ".join(problems))


def rootless_podman(base: Path) -> RootlessPodman:
    return RootlessPodman(SPECS["podman"], base)
