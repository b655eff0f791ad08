"""Failures that point at the fix, in one line (issue 7, items 5 and 8): the spool dir checked
before connecting; library log lines kept off the terminal; engine text escaped; a missing
socket path on an ssh host; a word that is neither a context nor a host; ports; IPv6."""

from __future__ import annotations

import hashlib
import json
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import Engine, start_engine
from tests.harness.images import unique
from tests.harness.sshd import SshClientHome, Sshd

pytestmark = pytest.mark.engines


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- the spool dir, before any engine is contacted ---------------------------------------


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of our own, unmounted afterwards."""
    point = tmp_path / "mnt"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def spool_run(spool: Path) -> subprocess.CompletedProcess[str]:
    # Engines that do not exist: a message about them would mean the spool dir was not checked first.
    return run_d2d(
        "copy", "--spool-dir", str(spool), "-s", "unix:///nonexistent/a", "-d", "unix:///nonexistent/b", "x:1"
    )


def test_spool_dir_missing_or_a_file(tmp_path: Path) -> None:
    proc = spool_run(tmp_path / "nope")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"docker-d2d: --spool-dir {tmp_path / 'nope'}: no such directory"
    (tmp_path / "file").write_text("x")
    proc = spool_run(tmp_path / "file")
    assert proc.returncode == 2
    assert one_line(proc.stderr) == f"docker-d2d: --spool-dir {tmp_path / 'file'}: not a directory"


def test_spool_dir_read_only(mounted: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
    proc = spool_run(mounted)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == f"docker-d2d: --spool-dir {mounted}: read-only file system"


def test_spool_dir_full(mounted: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={mounted / 'fill'}", "bs=64k"], capture_output=True, check=False)
    proc = spool_run(mounted)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == f"docker-d2d: --spool-dir {mounted}: the file system is full (0 bytes free)"


# --- a hostile engine's text on the terminal ---------------------------------------------

EVIL = "boom\x1b]0;pwned\x07\x1b[2J\r"


class _FakeEngine(BaseHTTPRequestHandler):
    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/_ping":
            self._json(200, "OK")
        elif path.endswith("/version"):
            self._json(200, {"Version": "20.10\x1b[31m", "ApiVersion": "1.41", "Os": "linux", "Arch": "amd64"})
        elif path.endswith("/info"):
            self._json(200, {"DriverStatus": []})
        else:
            self._json(500, {"message": EVIL})

    def log_message(self, *args: object) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        return conn, ("fake", 0)  # http.server wants an address it can print


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "fake.sock"
    server = _UnixServer(str(path), _FakeEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"unix://{path}"
    finally:
        server.shutdown()
        server.server_close()


def test_control_characters_from_an_engine_are_escaped(fake_engine: str) -> None:
    proc = run_d2d("copy", "-s", fake_engine, "-d", fake_engine, "x:1")
    assert proc.returncode == 1
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr and "\r" not in proc.stderr
    assert "boom\\x1b]0;pwned\\x07\\x1b[2J\\r" in proc.stderr.splitlines()[-1]
    assert len(proc.stderr.splitlines()) == 1  # the error alone: nothing was said before it failed
    # The engine's version, as the "source:" line and --json show it.
    events = run_d2d("copy", "--json", "-s", fake_engine, "-d", fake_engine, "x:1").stdout.splitlines()
    assert "\x1b" not in events[0] and "20.10\\x1b[31m" in json.loads(events[0])["version"], events[0]


# --- ssh: real sshd ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(engine_base: Path) -> Iterator[Engine]:
    started = start_engine("docker20", engine_base / unique("endpoints"))
    try:
        yield started
    finally:
        started.destroy()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> SshClientHome:
    home = SshClientHome(tmp_path_factory.mktemp("endpointshome"))
    home.key()
    return home


def _sshd(engine_base: Path, client: SshClientHome, **options: str) -> Sshd:
    srv = Sshd(engine_base / unique("endpointsshd"), options=options).start({"root": [client.ssh / "id_ed25519"]})
    client.trust(srv)
    return srv


def test_a_socket_path_that_does_not_exist_on_the_ssh_host(
    engine_base: Path, client: SshClientHome, engine: Engine
) -> None:
    srv = _sshd(engine_base, client)
    try:
        url = f"ssh://root@127.0.0.1:{srv.port}/run/nothing-here/docker.sock"
        proc = run_d2d("push", "-q", url, "x:1", env=client.env(DOCKER_HOST=engine.host))
    finally:
        srv.stop()
    assert proc.returncode == 1
    assert one_line(proc.stderr) == (
        f"docker-d2d: destination {url}: there is no engine socket /run/nothing-here/docker.sock on 127.0.0.1 "
        "(is the engine running there, and is that its socket path? `docker context inspect` or the engine's -H "
        "flag shows it)"
    )


def test_library_log_lines_stay_off_the_terminal_without_debug(
    engine_base: Path, client: SshClientHome, engine: Engine
) -> None:
    # No streamlocal (paramiko logs "Secsh channel open FAILED"), no docker CLI, no socat.
    srv = _sshd(engine_base, client, AllowStreamLocalForwarding="no", SetEnv="PATH=/nonexistent")
    try:
        url = f"ssh://root@127.0.0.1:{srv.port}{engine.socket}"
        quiet = run_d2d("push", "-q", url, "x:1", env=client.env(DOCKER_HOST=engine.host))
        debug = run_d2d("push", "-q", "--debug", url, "x:1", env=client.env(DOCKER_HOST=engine.host))
    finally:
        srv.stop()
    line = one_line(quiet.stderr)
    assert quiet.returncode == 1 and "AllowStreamLocalForwarding yes" in line and "Secsh" not in quiet.stderr
    assert "Secsh channel" in debug.stderr  # the line exists; only --debug shows it


def _context(cfg: Path, name: str) -> None:
    d = cfg / "contexts/meta" / hashlib.sha256(name.encode()).hexdigest()
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": "unix:///x.sock"}}}))


def test_a_word_that_is_neither_a_context_nor_a_host(client: SshClientHome, engine: Engine, tmp_path: Path) -> None:
    _context(tmp_path, "fran")
    _context(tmp_path, "prod")
    env = client.env(DOCKER_HOST=engine.host, DOCKER_CONFIG=str(tmp_path))
    proc = run_d2d("push", "-q", "fra", "x:1", env=env)
    line = one_line(proc.stderr)
    assert proc.returncode == 2
    assert line.startswith(
        "docker-d2d: destination fra: no context or ssh host named 'fra' (contexts: default, fran, prod; "
    ), line


@pytest.mark.parametrize("address", ["ssh://root@h:70000", "tcp://h:0", "h:65536"])
def test_ports_outside_1_to_65535_are_refused_before_connecting(address: str) -> None:
    proc = run_d2d("push", "-q", address, "x:1", env={"DOCKER_HOST": "unix:///nonexistent"})
    assert proc.returncode == 2
    assert "is not between 1 and 65535" in one_line(proc.stderr)


def test_ipv6_addresses_are_bracketed(engine: Engine, client: SshClientHome) -> None:
    env = client.env(DOCKER_HOST=engine.host)
    tcp = run_d2d("push", "-q", "tcp://[::1]:1", "x:1", env=env)
    assert one_line(tcp.stderr) == (
        "docker-d2d: destination tcp://[::1]:1: connection refused by [::1]:1 "
        "(is the engine running and listening there?)"
    )
    ssh = run_d2d("push", "-q", "ssh://root@[::1]:1", "x:1", env=env)
    assert one_line(ssh.stderr).startswith("docker-d2d: destination ssh://root@[::1]:1: cannot reach root@[::1]:1: "), (
        ssh.stderr
    )
