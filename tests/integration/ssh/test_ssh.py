"""The Engine API over ssh against real OpenSSH servers: on loopback, and a second host in a
network namespace reached through a ProxyJump."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import d2d_path, run_d2d
from tests.harness.engines import SPECS, Engine
from tests.harness.images import Builder, image_exists, image_layers, small_app, unique
from tests.harness.netns import NetNS
from tests.harness.registry import Registry
from tests.harness.sshd import SshClientHome, Sshd
from tests.harness.tty import terminal

from ..helpers import base_and_app, built_in_the_store, layer_tar_size, random_file

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> SshClientHome:
    home = SshClientHome(tmp_path_factory.mktemp("sshhome"))
    home.key()
    return home


@pytest.fixture(scope="module")
def server(engine_base: Path, client: SshClientHome) -> Iterator[Sshd]:
    if subprocess.run(["id", "d2dtest"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", "d2dtest"], check=True)
    # sshd without PAM refuses a locked account ("!") even with a good key: "*" is no password, not locked.
    subprocess.run(["usermod", "-p", "*", "d2dtest"], check=True)
    key = client.ssh / "id_ed25519"
    # sshd reads a user's authorized keys as that user: outside the root-only engine dir.
    base = Path(tempfile.mkdtemp(prefix="d2d-sshd-", dir="/var/tmp"))
    base.chmod(0o755)
    srv = Sshd(base / "sshd").start({"root": [key], "d2dtest": [key]})
    client.trust(srv)
    yield srv
    srv.stop()
    shutil.rmtree(base, ignore_errors=True)


def _server(engine_base: Path, client: SshClientHome, name: str, **options: str) -> Sshd:
    srv = Sshd(engine_base / unique(name), options=options).start({"root": [client.ssh / "id_ed25519"]})
    client.trust(srv)
    return srv


@pytest.fixture
def app(engines: dict[str, Engine], builder: Builder) -> str:
    # Text compresses: the wire must carry less than the layers.
    return small_app(builder, engines["docker20"], "sshapp", b"docker-d2d over ssh\n" * 40_000)


def ssh_url(server: Sshd, engine: Engine) -> str:
    """Docker's ssh:// form for `engine`'s socket, reached through `server` as root."""
    return f"ssh://root@127.0.0.1:{server.port}{engine.socket}"


def d2d(client: SshClientHome, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_d2d(*args, env=client.env(**env))


def copy_json(client: SshClientHome, source: str, destination: str, image: str) -> dict[str, object]:
    return result(d2d(client, "copy", "--json", "-s", source, "-d", destination, image))


def result(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    return next(json.loads(x) for x in proc.stdout.splitlines() if '"result"' in x)


def test_key_file_streamlocal_and_zstd(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], app: str
) -> None:
    dst = engines["docker26"]
    url = ssh_url(server, dst)
    proc = d2d(client, "-D", "copy", "--json", "-s", engines["docker20"].host, "-d", url, app)
    res = result(proc)
    assert "reaching the engine socket through streamlocal" in proc.stderr
    assert res["compression"] == "zstd" and 0 < int(res["wire_bytes"]) < int(res["bytes_sent"]) / 5  # type: ignore[call-overload]
    assert image_exists(dst, app)


def test_sshunix_form_to_docker_20_uses_gzip(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], builder: Builder, app: str
) -> None:
    src, dst = engines["docker20"], engines["podman"]
    res = copy_json(client, src.host, f"sshunix://root@127.0.0.1:{server.port}:{dst.socket}", app)
    assert res["compression"] == "zstd" and image_exists(dst, app)
    # Both sides over ssh (one connection): zstd into Docker 26.
    res = copy_json(client, ssh_url(server, dst), ssh_url(server, engines["docker26c"]), app)
    assert res["compression"] == "zstd"
    # Into Docker 20.10 over ssh: gzip, since 20.10 cannot load zstd.
    other = unique("gz") + ":1"
    builder.build(other, app, ["COPY b /b"], {"b": b"gzip\n" * 10_000})
    builder.place(engines["docker26"], other)
    res = copy_json(client, engines["docker26"].host, ssh_url(server, src), other)
    assert res["compression"] == "gzip" and image_exists(src, other)


def test_config_alias_with_proxyjump_to_a_host_in_a_namespace(
    engine_base: Path, client: SshClientHome, server: Sshd, engines: dict[str, Engine], app: str
) -> None:
    far = NetNS("far").up()
    engine = Engine(SPECS["docker26"], engine_base / unique("far"))
    try:
        engine.start(netns=far.name)
        far_sshd = Sshd(engine_base / unique("farsshd"), address=far.addr, port=22, netns=far.name)
        far_sshd.start({"root": [client.ssh / "id_ed25519"]})
        nojump = _server(engine_base, client, "nojump", AllowTcpForwarding="no")
        client.trust(server, far_sshd, nojump)
        client.config(
            f"Host jump\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n"
            f"Host nojump\n  HostName 127.0.0.1\n  Port {nojump.port}\n  User root\n"
            f"Host far\n  HostName {far.addr}\n  User root\n  ProxyJump jump\n"
            f"Host far-blocked\n  HostName {far.addr}\n  User root\n  ProxyJump nojump\n"
        )
        proc = d2d(client, "push", f"ssh://far{engine.socket}", app, DOCKER_HOST=engines["docker20"].host)
        assert proc.returncode == 0, proc.stderr
        assert image_exists(engine, app)
        # The alias really goes through its jump host: one that forbids forwarding blocks it.
        blocked = d2d(client, "push", f"ssh://far-blocked{engine.socket}", app, DOCKER_HOST=engines["docker20"].host)
        assert blocked.returncode == 1 and "destination ssh://far-blocked" in blocked.stderr
        far_sshd.stop()
        nojump.stop()
    finally:
        client.config("")
        engine.destroy()
        far.down()


def test_agent_without_key_files(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], app: str, tmp_path: Path
) -> None:
    home = SshClientHome(tmp_path / "agenthome")
    home.ssh.joinpath("known_hosts").write_text(server.host_key_line())
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if agent_sock.exists():
                break
            time.sleep(0.1)
        subprocess.run(
            ["ssh-add", str(client.ssh / "id_ed25519")],
            env={"SSH_AUTH_SOCK": str(agent_sock)},
            check=True,
            capture_output=True,
        )
        proc = run_d2d(
            "push",
            ssh_url(server, engines["docker26c"]),
            app,
            env=home.env(SSH_AUTH_SOCK=str(agent_sock), DOCKER_HOST=engines["docker20"].host),
        )
        assert proc.returncode == 0, proc.stderr
        assert image_exists(engines["docker26c"], app)
    finally:
        agent.terminate()


def test_wrong_user_and_wrong_key(
    client: SshClientHome, server: Sshd, tmp_path: Path, engines: dict[str, Engine]
) -> None:
    local = engines["docker20"].host
    proc = d2d(client, "push", f"ssh://nobody@127.0.0.1:{server.port}", "x:1", DOCKER_HOST=local)
    assert proc.returncode == 1 and "permission denied for nobody@127.0.0.1" in proc.stderr
    other = SshClientHome(tmp_path / "otherkey")
    other.key()
    other.trust(server)
    proc = run_d2d("push", f"ssh://root@127.0.0.1:{server.port}", "x:1", env=other.env(DOCKER_HOST=local))
    assert proc.returncode == 1 and "permission denied for root@127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_and_changed_host_keys(
    engine_base: Path, client: SshClientHome, server: Sshd, tmp_path: Path, engines: dict[str, Engine], app: str
) -> None:
    home = SshClientHome(tmp_path / "fresh")
    (home.ssh / "id_ed25519").write_bytes((client.ssh / "id_ed25519").read_bytes())
    (home.ssh / "id_ed25519").chmod(0o600)
    url = ssh_url(server, engines["docker26"])
    unknown = run_d2d("push", url, app, env=home.env(DOCKER_HOST=engines["docker20"].host))
    assert unknown.returncode == 1 and "unknown host key for 127.0.0.1: ssh-ed25519 SHA256:" in unknown.stderr
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in unknown.stderr
    # A key of another server under this server's name: changed.
    imposter = Sshd(engine_base / unique("imposter")).start({})
    (home.ssh / "known_hosts").write_text(imposter.host_key_line(f"[127.0.0.1]:{server.port}"))
    imposter.stop()
    changed = run_d2d("push", url, app, env=home.env(DOCKER_HOST=engines["docker20"].host))
    assert changed.returncode == 1 and "has CHANGED" in changed.stderr
    # Opting in like OpenSSH's accept-new trusts a new host and remembers it.
    (home.ssh / "known_hosts").unlink()
    home.config("Host 127.0.0.1\n  StrictHostKeyChecking accept-new\n")
    accepted = run_d2d("push", url, app, env=home.env(DOCKER_HOST=engines["docker20"].host))
    assert accepted.returncode == 0, accepted.stderr
    assert "ssh-ed25519" in (home.ssh / "known_hosts").read_text()


def test_fallbacks_when_streamlocal_is_disabled(
    engine_base: Path, client: SshClientHome, engines: dict[str, Engine], app: str, tmp_path: Path
) -> None:
    dst = engines["docker26"]
    only_socat = tmp_path / "bin"
    only_socat.mkdir()
    (only_socat / "socat").symlink_to("/usr/bin/socat")
    cases = [
        ({"AllowStreamLocalForwarding": "no"}, "dial-stdio"),
        ({"AllowStreamLocalForwarding": "no", "SetEnv": f"PATH={only_socat}"}, "socat"),
        ({"SetEnv": "PATH=/nonexistent"}, "streamlocal"),  # no docker CLI, no socat: needs nothing
    ]
    for options, expected in cases:
        srv = _server(engine_base, client, "fallback", **options)
        try:
            proc = d2d(
                client,
                "-D",
                "push",
                ssh_url(srv, dst),
                app,
                DOCKER_HOST=engines["docker20"].host,
            )
            assert proc.returncode == 0, proc.stderr
            assert f"reaching the engine socket through {expected}" in proc.stderr, options
        finally:
            srv.stop()
    srv = _server(engine_base, client, "nothing", AllowStreamLocalForwarding="no", SetEnv="PATH=/nonexistent")
    try:
        proc = d2d(client, "push", ssh_url(srv, dst), app, DOCKER_HOST=engines["docker20"].host)
        assert proc.returncode == 1 and "AllowStreamLocalForwarding yes" in proc.stderr
    finally:
        srv.stop()


def test_engine_socket_the_user_may_not_open(client: SshClientHome, server: Sshd, engines: dict[str, Engine]) -> None:
    proc = d2d(
        client,
        "push",
        f"ssh://d2dtest@127.0.0.1:{server.port}{engines['docker26'].socket}",
        "x:1",
        DOCKER_HOST=engines["docker20"].host,
    )
    assert proc.returncode == 1
    assert "permission denied" in proc.stderr.lower() and "destination ssh://d2dtest@" in proc.stderr
    # The login worked: what is refused is the engine's socket, not the key.
    assert "authentication" not in proc.stderr.lower(), proc.stderr


def test_connection_dropped_mid_transfer(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], builder: Builder
) -> None:
    src, dst = engines["docker20"], engines["docker26"]
    base = builder.base(unique("base") + ":1")
    big = unique("drop") + ":1"
    builder.build(big, base, ["COPY a /a"], {"a": random_file(150_000_000)})
    builder.place(src, big)
    url = ssh_url(server, dst)
    proc = subprocess.Popen(
        [d2d_path(), "push", "--json", "--compress", "none", url, big],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client.env(DOCKER_HOST=src.host),
    )
    assert proc.stdout is not None and server.proc is not None
    for line in proc.stdout:
        if '"sending"' in line:
            break
    # Kill the server's per-connection processes: the connection drops, the listener stays.
    children = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert f"destination {url}" in err and "Traceback" not in err
    assert not image_exists(dst, big)
    rerun = d2d(client, "push", url, big, DOCKER_HOST=src.host)
    assert rerun.returncode == 0, rerun.stderr
    assert image_exists(dst, big)


def test_ssh_context_and_the_name_rule(
    engine_base: Path, client: SshClientHome, engines: dict[str, Engine], app: str, tmp_path: Path
) -> None:
    """A Docker context with an ssh:// host (no socket path: the server's docker decides, here by
    DOCKER_HOST in its environment); and a word that is both a context and an ssh host is the context."""
    dst = engines["docker26c"]
    srv = _server(engine_base, client, "ctxsshd", SetEnv=f"DOCKER_HOST=unix://{dst.socket}")
    config = tmp_path / "cfg"
    docker_env = {**client.env(), "DOCKER_CONFIG": str(config)}
    try:
        subprocess.run(
            ["docker", "context", "create", "prod", "--docker", f"host=ssh://root@127.0.0.1:{srv.port}"],
            env=docker_env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["docker", "context", "create", "both", "--docker", f"host={engines['podman'].host}"],
            env=docker_env,
            check=True,
            capture_output=True,
        )
        client.config(f"Host both\n  HostName 127.0.0.1\n  Port {srv.port}\n  User root\n")
        env = {"DOCKER_CONFIG": str(config), "DOCKER_HOST": engines["docker20"].host}
        proc = d2d(client, "-D", "push", "prod", app, **env)
        assert proc.returncode == 0, proc.stderr
        assert "through dial-stdio" in proc.stderr  # no path: the server's docker dials its engine
        assert image_exists(dst, app)

        def destination(word: str) -> str:
            out = d2d(client, "push", "--dry-run", "--json", word, app, **env)
            assert out.returncode == 0, out.stderr
            return str([json.loads(x) for x in out.stdout.splitlines()][1]["endpoint"])

        assert destination("both").startswith("both (unix://")  # the context wins
        assert destination("ssh://both").startswith("ssh://both")  # ssh:// forces ssh
        assert destination(f"root@127.0.0.1:{srv.port}").startswith("root@127.0.0.1")  # not a context: ssh
    finally:
        client.config("")
        srv.stop()


def test_one_ssh_connection_per_host_per_run(
    engine_base: Path, client: SshClientHome, engines: dict[str, Engine], app: str
) -> None:
    srv = _server(engine_base, client, "counted", LogLevel="INFO")
    try:
        src = ssh_url(srv, engines["docker20"])
        dst = ssh_url(srv, engines["podman"])
        proc = d2d(client, "copy", "-s", src, "-d", dst, app)
        assert proc.returncode == 0, proc.stderr
        assert image_exists(engines["podman"], app)
        log = (srv.base / "sshd.log").read_text()
        assert log.count("Accepted publickey") == 1, log
    finally:
        srv.stop()


def test_encrypted_key(engine_base: Path, engines: dict[str, Engine], app: str, tmp_path: Path) -> None:
    home = SshClientHome(tmp_path / "enc")
    key = home.key(passphrase="s3cret")
    srv = Sshd(engine_base / unique("encsshd")).start({"root": [key]})
    home.trust(srv)
    url = ssh_url(srv, engines["docker26"])
    try:
        # No terminal: a clear error, not a hang.
        proc = subprocess.run(
            [d2d_path(), "push", url, app],
            env=home.env(DOCKER_HOST=engines["docker20"].host),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1 and "encrypted" in proc.stderr and "ssh-agent" in proc.stderr, proc.stderr
        # On a terminal: asked for the passphrase.
        env = home.env(DOCKER_HOST=engines["docker20"].host)
        cmd = " ".join([f"{k}={v}" for k, v in env.items() if k in ("HOME", "DOCKER_HOST", "PATH")])
        with terminal(f"env {cmd} {d2d_path()} push {url} {app}; echo EXIT=$?; sleep 30", width=200) as term:
            term.wait_for("Passphrase")
            term.send("s3cret", "Enter")
            assert "EXIT=0" in term.wait_for("EXIT=")
        assert image_exists(engines["docker26"], app)
    finally:
        srv.stop()


def test_compressed_blobs_over_ssh_with_gzip(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], builder: Builder
) -> None:
    """gzip blobs from a containerd store into Docker 20.10 over ssh (gzip on the wire): the blobs
    travel stored in the body's gzip stream, and the image arrives whole."""
    src, dst = engines["docker26c"], engines["docker20"]
    _, app = built_in_the_store(engines, builder)
    res = copy_json(client, src.host, ssh_url(server, dst), app)
    assert res["compression"] == "gzip"
    assert image_exists(dst, app)
    assert (
        dst.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", app).stdout
        == src.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", app).stdout
    )


def test_identity_file_and_user_from_ssh_config(
    server: Sshd, engines: dict[str, Engine], app: str, tmp_path: Path, client: SshClientHome
) -> None:
    """No default key, no agent: the alias's IdentityFile, User and Port are what make it work."""
    home = SshClientHome(tmp_path / "cfghome")
    (home.ssh / "deploy_key").write_bytes((client.ssh / "id_ed25519").read_bytes())
    (home.ssh / "deploy_key").chmod(0o600)
    home.trust(server)
    home.config(
        f"Host deploy-target\n  HostName 127.0.0.1\n  Port {server.port}\n  User root\n"
        f"  IdentityFile {home.ssh / 'deploy_key'}\n"
    )
    proc = run_d2d(
        "push",
        f"ssh://deploy-target{engines['docker26'].socket}",
        app,
        env=home.env(DOCKER_HOST=engines["docker20"].host),
    )
    assert proc.returncode == 0, proc.stderr
    assert image_exists(engines["docker26"], app)
    home.config("")
    bare = run_d2d(
        "push",
        f"ssh://127.0.0.1:{server.port}{engines['docker26'].socket}",
        app,
        env=home.env(DOCKER_HOST=engines["docker20"].host),
    )
    assert bare.returncode == 1 and "permission denied for root@127.0.0.1" in bare.stderr and "no key" in bare.stderr


@pytest.mark.parametrize("destination", ["docker20", "docker26c"])
def test_registry_first_pays_beyond_ssh(
    client: SshClientHome,
    server: Sshd,
    engines: dict[str, Engine],
    builder: Builder,
    registry: Registry,
    destination: str,
) -> None:
    """auto: a destination over ssh pulls the base from its registry; only the app's layer crosses,
    also into a containerd store, which holds the base under the registry's compressed digests
    (issue 16, item 3: they were sent again)."""
    src, dst = engines["docker26"], engines[destination]
    _, app = base_and_app(builder, registry, src)
    res = result(d2d(client, "copy", "--json", "-s", src.host, "-d", ssh_url(server, dst), app))
    top = image_layers(src, app)[-1]
    assert res["layers_from_registry"] == 1 and res["layers_sent"] == 1
    assert res["bytes_sent"] == layer_tar_size(src, app, top)
    assert image_layers(dst, app) == image_layers(src, app)


def test_registry_first_with_credentials_into_a_containerd_store(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], builder: Builder, tmp_path: Path
) -> None:
    """A base from a registry that needs `docker login`: the containerd store holds it under the
    registry's digests, which only that registry's manifest names; read with the same credentials
    the pull used, it names them, and the base is not sent again (issue 16, item 3)."""
    reg = Registry(tmp_path / "auth-registry", user="deploy", password="s3cret")
    reg.start()
    try:
        login = tmp_path / "login"
        login.mkdir()
        token = base64.b64encode(b"deploy:s3cret").decode()
        (login / "config.json").write_text(json.dumps({"auths": {reg.address: {"auth": token}}}))
        auth = {"DOCKER_CONFIG": str(login)}
        src, dst = engines["docker26"], engines["docker26c"]
        base = unique("rfauth") + ":1"
        builder.base(base, size=2_000_000)
        ref = reg.ref(base)
        builder.engine.docker("tag", base, ref)
        builder.engine.docker("push", ref, env=auth)
        src.docker("pull", "-q", ref, env=auth)
        app = unique("rfauthapp") + ":1"
        builder.build(app, base, ["COPY a /a"], {"a": random_file(300_000)})
        builder.place(src, app)

        res = result(d2d(client, "copy", "--json", "-s", src.host, "-d", ssh_url(server, dst), app, **auth))

        top = image_layers(src, app)[-1]
        assert res["layers_from_registry"] == 1 and res["layers_sent"] == 1, res
        assert res["bytes_sent"] == layer_tar_size(src, app, top)
        assert image_layers(dst, app) == image_layers(src, app)
    finally:
        reg.stop()
