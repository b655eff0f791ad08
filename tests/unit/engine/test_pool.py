"""The run's ssh connections: one per host, shared by every engine that goes there, all closed
when the run's block ends (nothing else closes them)."""

from __future__ import annotations

import pytest

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.engine.pool import SSHPool
from docker_d2d.engine.ssh import SSHConnection
from docker_d2d.engine.watch import Timeouts


def test_one_connection_per_host_closed_with_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr(SSHConnection, "close", lambda self: closed.append(self.endpoint.text))
    with SSHPool() as pool:
        a = pool.connection(parse_endpoint("ssh://me@a/run/docker.sock"), Timeouts())
        assert pool.connection(parse_endpoint("ssh://me@a"), Timeouts()) is a  # another socket, same host
        b = pool.connection(parse_endpoint("ssh://me@b:2222"), Timeouts())
        assert b is not a and not closed
    assert sorted(closed) == ["ssh://me@a/run/docker.sock", "ssh://me@b:2222"]
