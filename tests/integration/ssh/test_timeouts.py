"""Every wait is bounded and said in one line (issue 7, item 3): real dockerd stopped with
SIGSTOP (a wedged engine: it accepts connections and never answers) as source and destination,
before and during the transfer; a load whose connection alone freezes while the engine answers
pings (issue 16, item 2), over tcp and ssh, and long honest loads that must not fail; an ssh
"host" that accepts TCP and never speaks; a link that dies mid-transfer; completion against a
silent host."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import SPECS, Engine, start_engine
from tests.harness.images import image_exists, unique
from tests.harness.netns import NetNS
from tests.harness.sshd import SshClientHome, Sshd

from ..helpers import random_file

# serial: each test bounds how long docker-d2d takes to give up; run alone (.ci/test), so that
# other tests' load does not eat the slack.
pytestmark = [pytest.mark.engines, pytest.mark.serial]

STALL = 3.0
SLACK = 6.0  # cleanup, and the scheduler of a loaded 2-core machine


def startup() -> float:
    """What starting docker-d2d costs on this machine right now (seconds): the bound for a
    whole run is its timeout plus this, so that a loaded machine does not fail the test."""
    started = time.monotonic()
    run_d2d("version", check=True)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def pair(engine_base: Path) -> Iterator[tuple[Engine, Engine]]:
    base = engine_base / unique("timeouts")
    src = start_engine("docker20", base / "src")
    dst = start_engine("docker20", base / "dst")
    try:
        yield src, dst
    finally:
        src.destroy()
        dst.destroy()


@pytest.fixture
def big(pair: tuple[Engine, Engine]) -> str:
    """One 24 MB layer of random bytes, new for each test (no engine holds it yet): seconds
    to cross a throttled link."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = random_file(24_000_000)
        info = tarfile.TarInfo("blob")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    name = unique("stall") + ":1"
    pair[0].docker("import", "-", name, input=buf.getvalue())
    return name


@contextmanager
def stopped(engine: Engine) -> Iterator[None]:
    """The engine's process stopped: its socket still accepts, nothing answers."""
    assert engine.proc is not None
    os.kill(engine.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(engine.proc.pid, signal.SIGCONT)


class SlowLink:
    """A unix-socket relay in front of an engine that passes at most `rate` bytes per second
    in one direction ("up": towards the engine, "down": from it)."""

    def __init__(self, target: Path, path: Path, rate: int, direction: str) -> None:
        self.target, self.path, self.rate, self.direction = target, path, rate, direction
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(str(self.target))
            threading.Thread(target=self._pipe, args=(client, engine, self.direction == "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(engine, client, self.direction == "down"), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, slow: bool) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def timed(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = run_d2d(*args, env=env, timeout=120)
    return proc, time.monotonic() - started


def test_a_wedged_engine_before_the_transfer(pair: tuple[Engine, Engine], big: str) -> None:
    src, dst = pair
    for side, engine in (("source", src), ("destination", dst)):
        bound = 2 + 2 * startup() + SLACK
        with stopped(engine):
            proc, took = timed("copy", "-q", "--connect-timeout", "2", "-s", src.host, "-d", dst.host, big)
        line = one_line(proc.stderr)
        assert proc.returncode == 1
        assert line.startswith(f"docker-d2d: {side} {engine.host}: ")
        assert "accepted the connection but did not answer the ping within 2 s" in line
        assert took < bound, (took, bound)


def _stop_mid_transfer(engine: Engine, args: list[str]) -> tuple[int, str, float]:
    """Run docker-d2d, stop `engine` once layer bytes flow, and time how long the failure takes."""
    proc = subprocess.Popen([d2d_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "layer" and event.get("status") == "sending":
            break
    else:
        raise AssertionError(f"no layer started: {proc.stderr.read()}")
    assert engine.proc is not None
    os.kill(engine.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=120)
        return proc.returncode, stderr, time.monotonic() - started
    finally:
        os.kill(engine.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_wedged_engine_mid_transfer(pair: tuple[Engine, Engine], big: str, side: str, tmp_path: Path) -> None:
    src, dst = pair
    wedged = src if side == "source" else dst
    # Throttled so that the transfer is still going when the engine stops.
    link = SlowLink(wedged.socket, tmp_path / "slow.sock", 6_000_000, "down" if side == "source" else "up")
    tag = unique("mid") + ":1"
    src.docker("tag", big, tag)
    hosts = {"source": src.host, "destination": dst.host, side: link.host}
    try:
        args = ["copy", "--json", "--stall-timeout", str(STALL), "-s", hosts["source"], "-d", hosts["destination"]]
        # The export is what a wedged source engine stops: layers read from its store would not.
        code, stderr, took = _stop_mid_transfer(wedged, [*args, "--layers-from", "export", tag])
    finally:
        link.close()
    line = one_line(stderr)
    assert code == 1
    assert line.startswith(f"docker-d2d: {side} {link.host}: stalled "), line
    what = "waiting for the export" if side == "source" else "sending the load"
    assert what in line and "no byte moved for 3 s and the engine did not answer a ping" in line
    assert took < STALL + SLACK, took
    assert not image_exists(dst, tag)
    # The engine is back: the same copy now succeeds.
    again = run_d2d("copy", "-q", "-s", src.host, "-d", dst.host, tag)
    assert again.returncode == 0, again.stderr
    assert image_exists(dst, tag)


def _image_of(engine: Engine, size: int) -> str:
    """A new one-layer image of `size` incompressible bytes at `engine`."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("blob")
        info.size = size
        tar.addfile(info, io.BytesIO(random_file(size)))
    name = unique("honest") + ":1"
    engine.docker("import", "-", name, input=buf.getvalue())
    return name


# Docker with a graphdriver reports each layer as it registers it; the containerd store and Podman
# say nothing until they are done (Podman 4.3: about 4 s for these 200 MB here, 15 s for 800 MB).
@pytest.mark.parametrize("destination", ["docker20", "docker28c", "podman"])
def test_a_long_load_with_a_short_stall_timeout_still_succeeds(
    pair: tuple[Engine, Engine], engines: dict[str, Engine], destination: str
) -> None:
    src = pair[0]
    dst = pair[1] if destination == "docker20" else engines[destination]
    image = _image_of(src, 200 << 20)
    try:
        proc = run_d2d("copy", "-q", "--stall-timeout", "1", "-s", src.host, "-d", dst.host, image, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert image_exists(dst, image)
    finally:
        src.docker("rmi", image, check=False)
        dst.docker("rmi", image, check=False)


# Where the load's connection freezes: mid-body (the engine stops taking it), or after the whole
# body (its answer never comes back). Docker 20.10 reports progress, so its limit is the stall
# timeout; Podman answers only when done, so its limit grows with the body (SILENT_LOAD_PER_MB).
FREEZES = [("docker20", "sending"), ("docker20", "answer"), ("podman", "answer")]


@pytest.mark.parametrize(("destination", "where"), FREEZES)
def test_a_frozen_load_fails_although_the_engine_answers_pings(
    pair: tuple[Engine, Engine], engines: dict[str, Engine], big: str, destination: str, where: str
) -> None:
    """A proxy in front of the destination stops forwarding the load's connection alone, while
    it passes the watchdog's pings: no byte moves on the load for its limit, so the copy fails."""
    from docker_d2d.engine.client import SILENT_LOAD_PER_MB
    from tests.harness.delay_proxy import DelayProxy

    src = pair[0]
    dst = pair[1] if destination == "docker20" else engines[destination]
    after = 4 << 20 if where == "sending" else 1 << 40
    proxy = DelayProxy(str(dst.socket), 0.0, freeze=r"POST /v[0-9.]+/images/load$", freeze_after=after).start()
    limit = STALL + (0 if destination == "docker20" else SILENT_LOAD_PER_MB * 24_000_000 / (1 << 20))
    tag = unique("frozen") + ":1"
    src.docker("tag", big, tag)
    try:
        args = ["copy", "-q", "--stall-timeout", str(STALL), "-s", src.host, "-d", proxy.host, tag]
        bound = limit + startup() + SLACK
        proc, took = timed(*args)
    finally:
        proxy.stop()
    line = one_line(proc.stderr)
    assert proc.returncode == 1
    doing = "sending the load" if where == "sending" else "waiting for the answer to the load"
    assert line.startswith(f"docker-d2d: destination {proxy.host}: stalled {doing}: "), line
    assert f"no byte moved on its connection for {limit:.0f} s although the engine answers pings" in line, line
    assert line.endswith("(--stall-timeout changes the limit)"), line
    assert proxy.frozen >= 1 and proxy.count("GET /_ping") >= 1
    assert took < bound, (took, bound)
    again = run_d2d("copy", "-q", "-s", src.host, "-d", dst.host, tag)
    assert again.returncode == 0, again.stderr
    assert image_exists(dst, tag)
    dst.docker("rmi", tag, check=False)


def test_a_frozen_load_over_ssh_fails_although_the_engine_answers_pings(
    engine_base: Path, pair: tuple[Engine, Engine], big: str, tmp_path: Path
) -> None:
    """The ssh channel of the load stops moving (the engine socket behind sshd is a proxy that
    freezes that one connection), while the channels of the pings go on."""
    from tests.harness.delay_proxy import DelayProxy

    src, dst = pair
    client = SshClientHome(tmp_path / "home")
    client.key()
    sshd = Sshd(engine_base / unique("freezesshd")).start({"root": [client.ssh / "id_ed25519"]})
    client.trust(sshd)
    sock = str(tmp_path / "frozen.sock")
    proxy = DelayProxy(str(dst.socket), 0.0, freeze=r"/images/load$", freeze_after=4 << 20, listen=sock).start()
    url = f"ssh://root@127.0.0.1:{sshd.port}{sock}"
    tag = unique("sshfrozen") + ":1"
    src.docker("tag", big, tag)
    try:
        bound = STALL + startup() + SLACK
        proc, took = timed(
            "copy", "-q", "--stall-timeout", str(STALL), "-s", src.host, "-d", url, tag, env=client.env()
        )
    finally:
        proxy.stop()
        sshd.stop()
    line = one_line(proc.stderr)
    assert proc.returncode == 1
    assert line.startswith(f"docker-d2d: destination {url}: stalled sending the load: "), line
    assert "although the engine answers pings" in line, line
    assert proxy.frozen >= 1 and proxy.count("GET /_ping") >= 1
    assert took < bound, (took, bound)
    assert not image_exists(dst, tag)


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_an_ssh_host_that_never_speaks(pair: tuple[Engine, Engine]) -> None:
    bound = 2 + 2 * startup() + SLACK
    with silent_listener() as port:
        url = f"ssh://root@127.0.0.1:{port}"
        proc, took = timed("push", "-q", "--connect-timeout", "2", url, "x:1", env={"DOCKER_HOST": pair[0].host})
    line = one_line(proc.stderr)
    assert proc.returncode == 1
    assert line == (
        f"docker-d2d: destination {url}: root@127.0.0.1:{port} accepted the connection but sent no ssh banner "
        "within 2 s (is an ssh server listening there? --connect-timeout changes the wait)"
    )
    assert took < bound, (took, bound)


def test_tcp_and_tls_engines_that_never_speak(pair: tuple[Engine, Engine]) -> None:
    bound = 2 + 2 * startup() + SLACK
    env = {"DOCKER_HOST": pair[0].host}
    with silent_listener() as port:
        plain, took_plain = timed("push", "-q", "--connect-timeout", "2", f"tcp://127.0.0.1:{port}", "x:1", env=env)
        tls, took_tls = timed(
            "--tlsverify", "push", "-q", "--connect-timeout", "2", f"tcp://127.0.0.1:{port}", "x:1", env=env
        )
    assert one_line(plain.stderr) == (
        f"docker-d2d: destination tcp://127.0.0.1:{port}: the engine accepted the connection but did not answer "
        "the ping within 2 s (is it hung? --connect-timeout changes the wait)"
    )
    # The TLS handshake is part of connecting.
    assert one_line(tls.stderr) == (
        f"docker-d2d: destination tcp://127.0.0.1:{port}: no answer from 127.0.0.1:{port} within 2 s "
        "(--connect-timeout changes the wait)"
    )
    assert plain.returncode == tls.returncode == 1
    assert took_plain < bound and took_tls < bound, (took_plain, took_tls, bound)


def test_the_default_timeouts_come_from_the_environment(pair: tuple[Engine, Engine]) -> None:
    bound = 1 + 2 * startup() + SLACK
    with silent_listener() as port:
        env = {"DOCKER_HOST": pair[0].host, "D2D_CONNECT_TIMEOUT": "1"}
        proc, took = timed("push", "-q", f"ssh://root@127.0.0.1:{port}", "x:1", env=env)
    assert "sent no ssh banner within 1 s" in one_line(proc.stderr)
    assert took < bound, (took, bound)


def test_completion_answers_within_its_promise_against_silent_hosts(pair: tuple[Engine, Engine]) -> None:
    src = pair[0]
    with silent_listener() as port:
        for source in (f"ssh://root@127.0.0.1:{port}", f"tcp://127.0.0.1:{port}"):
            started = time.monotonic()
            out = subprocess.run(
                [d2d_path(), "__complete", "d2d", "copy", "-s", source, ""], capture_output=True, text=True, timeout=30
            )
            took = time.monotonic() - started
            assert out.returncode == 0 and out.stdout.strip() == ":4" and out.stderr == "", out
            assert took < 2.5, (source, took)  # the promise is 1.5 s; the rest is slack for a loaded machine
    with stopped(src):
        started = time.monotonic()
        out = subprocess.run(
            [d2d_path(), "__complete", "d2d", "copy", "-s", src.host, ""], capture_output=True, text=True, timeout=30
        )
        assert time.monotonic() - started < 2.5 and out.stdout.strip() == ":4"


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [d for child in map(int, out) for d in (child, *_descendants(child))]


def test_an_ssh_server_that_stops_mid_transfer(
    engine_base: Path, pair: tuple[Engine, Engine], big: str, tmp_path: Path
) -> None:
    """sshd's session processes stopped (SIGSTOP) while the load goes through them."""
    src, dst = pair
    client = SshClientHome(tmp_path / "home")
    client.key()
    sshd = Sshd(engine_base / unique("stopsshd")).start({"root": [client.ssh / "id_ed25519"]})
    client.trust(sshd)
    slow_source = SlowLink(src.socket, tmp_path / "slow.sock", 6_000_000, "down")
    url = f"ssh://root@127.0.0.1:{sshd.port}{dst.socket}"
    args = ["copy", "--json", "--stall-timeout", str(STALL), "-s", slow_source.host, "-d", url, big]
    try:
        proc = subprocess.Popen(
            [d2d_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client.env()
        )
        assert proc.stdout is not None and sshd.proc is not None
        for line in proc.stdout:
            if '"sending"' in line:
                break
        sessions = _descendants(sshd.proc.pid)
        assert sessions
        for pid in sessions:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            _, stderr = proc.communicate(timeout=120)
            took = time.monotonic() - started
        finally:
            for pid in sessions:
                os.kill(pid, signal.SIGCONT)
        line = one_line(stderr)
        assert proc.returncode == 1
        assert line.startswith(f"docker-d2d: destination {url}: stalled "), line
        assert took < STALL + SLACK, took
        assert not image_exists(dst, big)
        again = run_d2d("copy", "-q", "-s", src.host, "-d", url, big, env=client.env())
        assert again.returncode == 0, again.stderr
        assert image_exists(dst, big)
    finally:
        slow_source.close()
        sshd.stop()


# --- a link that dies: an engine on another "host" (a network namespace) reached over ssh ----


@pytest.fixture(scope="module")
def far(
    engine_base: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[NetNS, Engine, Sshd, SshClientHome]]:
    ns = NetNS("stall", rate="40mbit").up()
    client = SshClientHome(tmp_path_factory.mktemp("stallhome"))
    client.key()
    engine = Engine(SPECS["docker20"], engine_base / unique("farstall"))
    sshd = Sshd(engine_base / unique("farstallsshd"), address=ns.addr, port=22, netns=ns.name)
    try:
        engine.start(netns=ns.name)
        sshd.start({"root": [client.ssh / "id_ed25519"]})
        client.trust(sshd)
        yield ns, engine, sshd, client
    finally:
        sshd.stop()
        engine.destroy()
        ns.down()


def test_a_link_that_dies_mid_transfer(
    pair: tuple[Engine, Engine], big: str, far: tuple[NetNS, Engine, Sshd, SshClientHome]
) -> None:
    ns, engine, _, client = far
    src = pair[0]
    url = f"ssh://root@{ns.addr}{engine.socket}"
    tag = unique("link") + ":1"
    src.docker("tag", big, tag)
    args = ["copy", "--json", "--compress", "none", "--stall-timeout", str(STALL), "-s", src.host, "-d", url, tag]
    proc = subprocess.Popen(
        [d2d_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=client.env()
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"sending"' in line:
            break
    ns.link(up=False)
    started = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        ns.link(up=True)
    line = one_line(stderr)
    assert proc.returncode == 1
    assert line.startswith(f"docker-d2d: destination {url}: stalled "), line
    assert took < STALL + SLACK, took
    assert not image_exists(engine, tag)
    again = run_d2d("copy", "-q", "-s", src.host, "-d", url, tag, env=client.env())
    assert again.returncode == 0, again.stderr
    assert image_exists(engine, tag)
