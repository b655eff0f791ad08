"""TLS on tcp against a real dockerd listening with --tlsverify (its own CA and certificates)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import SPECS, Engine, free_port
from tests.harness.images import Builder, image_exists, small_app, unique
from tests.harness.netns import NetNS
from tests.harness.tls import Certs, make_certs

from ..helpers import random_file

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def tls_engine(engine_base: Path) -> Iterator[tuple[Engine, str, Certs]]:
    certs = make_certs(engine_base / "certs")
    port = free_port()
    engine = Engine(SPECS["docker26"], engine_base / "tls-docker26")
    engine.start(
        extra_args=(
            f"-H=tcp://127.0.0.1:{port}",
            "--tlsverify",
            f"--tlscacert={certs.path('ca.pem')}",
            f"--tlscert={certs.path('server.pem')}",
            f"--tlskey={certs.path('server-key.pem')}",
        )
    )
    yield engine, f"tcp://127.0.0.1:{port}", certs
    engine.destroy()


@pytest.fixture
def app(engines: dict[str, Engine], builder: Builder) -> str:
    return small_app(builder, engines["docker20"], "tlsapp", random_file(30_000))


def test_tlsverify_flags(tls_engine: tuple[Engine, str, Certs], engines: dict[str, Engine], app: str) -> None:
    engine, url, certs = tls_engine
    proc = run_d2d(
        "--tlsverify",
        f"--tlscacert={certs.path('ca.pem')}",
        f"--tlscert={certs.path('client.pem')}",
        f"--tlskey={certs.path('client-key.pem')}",
        "push",
        url,
        app,
        env={"DOCKER_HOST": engines["docker20"].host},
    )
    assert proc.returncode == 0, proc.stderr
    assert image_exists(engine, app)


def test_docker_tls_verify_and_cert_path(
    tls_engine: tuple[Engine, str, Certs], engines: dict[str, Engine], app: str
) -> None:
    engine, url, certs = tls_engine
    # The default context takes TLS from the environment: here the tcp engine is the local side.
    proc = run_d2d(
        "pull",
        engines["docker20"].host,
        app,
        env={"DOCKER_HOST": url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": certs.path("certpath")},
    )
    assert proc.returncode == 0, proc.stderr
    assert image_exists(engine, app)


def test_context_with_tls_material(
    tls_engine: tuple[Engine, str, Certs], engines: dict[str, Engine], app: str, tmp_path: Path
) -> None:
    engine, url, certs = tls_engine
    ctx = unique("tlsctx")
    env = {"DOCKER_CONFIG": str(tmp_path)}
    subprocess.run(
        [
            "docker",
            "context",
            "create",
            ctx,
            "--docker",
            f"host={url},ca={certs.path('ca.pem')},cert={certs.path('client.pem')},key={certs.path('client-key.pem')}",
        ],
        check=True,
        capture_output=True,
        env={**env, "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )
    proc = run_d2d("copy", "-s", engines["docker20"].host, "-d", ctx, "--json", app, env=env)
    assert proc.returncode == 0, proc.stderr
    connected = [json.loads(x) for x in proc.stdout.splitlines() if '"connected"' in x]
    assert connected[1]["endpoint"].startswith(ctx)
    assert image_exists(engine, app)


def test_wrong_ca_is_refused(tls_engine: tuple[Engine, str, Certs], engines: dict[str, Engine]) -> None:
    _, url, certs = tls_engine
    proc = run_d2d(
        "--tlsverify",
        f"--tlscacert={certs.path('other-ca.pem')}",
        f"--tlscert={certs.path('client.pem')}",
        f"--tlskey={certs.path('client-key.pem')}",
        "push",
        url,
        "x:1",
        env={"DOCKER_HOST": engines["docker20"].host},
    )
    assert proc.returncode == 1
    assert f"destination {url}" in proc.stderr and "not trusted by the CA" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_client_certificate_is_refused(
    tls_engine: tuple[Engine, str, Certs], engines: dict[str, Engine]
) -> None:
    _, url, certs = tls_engine
    proc = run_d2d(
        "--tlsverify",
        f"--tlscacert={certs.path('ca.pem')}",
        "push",
        url,
        "x:1",
        env={"DOCKER_HOST": engines["docker20"].host, "DOCKER_CERT_PATH": "/nonexistent"},
    )
    assert proc.returncode == 1
    assert f"destination {url}" in proc.stderr and "client certificate" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plain_tcp_to_a_non_loopback_address_warns() -> None:
    far = NetNS("warn").up()  # our own namespace: nothing listens there
    try:
        proc = run_d2d("push", f"tcp://{far.addr}:2375", "x:1", env={"DOCKER_HOST": "unix:///nonexistent"})
        assert f"warning: tcp://{far.addr}:2375 is plain tcp" in proc.stderr
        local = run_d2d("push", "tcp://127.0.0.1:1", "x:1", env={"DOCKER_HOST": "unix:///nonexistent"})
        assert "plain tcp" not in local.stderr
    finally:
        far.down()
