"""A pull through the helper on an ssh source host says what a local copy says (issue 16, item 13):
the bytes on the wire and their rate, in the progress lines and in the summary, and its phases."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, small_app
from tests.harness.sshd import SshClientHome, Sshd

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> SshClientHome:
    home = SshClientHome(tmp_path_factory.mktemp("sshhome"))
    home.key()
    return home


@pytest.fixture(scope="module")
def server(client: SshClientHome) -> Iterator[Sshd]:
    base = Path(tempfile.mkdtemp(prefix="d2d-sshd-", dir="/var/tmp"))
    srv = Sshd(base / "sshd").start({"root": [client.ssh / "id_ed25519"]})
    client.trust(srv)
    yield srv
    srv.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_a_pull_through_the_helper_shows_the_wire(
    client: SshClientHome, server: Sshd, engines: dict[str, Engine], builder: Builder
) -> None:
    src, dst = engines["docker26"], engines["docker20"]
    app = small_app(builder, src, "pullsum", b"text that compresses well\n" * 40_000)
    url = f"ssh://root@127.0.0.1:{server.port}{src.socket}"
    proc = run_d2d("-D", "pull", url, app, env=client.env(DOCKER_HOST=dst.host))
    assert proc.returncode == 0, proc.stderr
    assert "filtering at the source host" in proc.stderr, proc.stderr
    summary = re.search(r"sent ([\d.]+\w+) of a ~ .* \(([\d.]+\w+) on the wire at [\d.]+\w+/s, gzip\)", proc.stdout)
    assert summary, proc.stdout
    assert re.search(r"^sent [\d.]+\w+ \([\d.]+\w+ on the wire at [\d.]+\w+/s, gzip\)$", proc.stderr, re.M)
    phases = [line for line in proc.stderr.splitlines() if line in ("loading at the destination...", "verifying...")]
    assert phases == ["loading at the destination...", "verifying..."], proc.stderr

    dst.docker("rmi", app)
    as_json = run_d2d("pull", "--json", url, app, env=client.env(DOCKER_HOST=dst.host))
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    result = next(e for e in events if e["event"] == "result")
    assert result["wire_seconds"] > 0 and 0 < result["wire_bytes"] < result["bytes_sent"], result
    assert [e["phase"] for e in events if e["event"] == "phase"] == ["sending", "loading", "verifying"]
    last_wire = [e for e in events if e["event"] == "wire" and "seconds" in e]
    assert last_wire and last_wire[-1]["wire_bytes"] == result["wire_bytes"], events
