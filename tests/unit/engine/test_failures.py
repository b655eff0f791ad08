"""How engine failures are worded: IPv6 addresses in brackets where shown."""

from __future__ import annotations

from docker_d2d.endpoint import bracket, hostport, parse_endpoint
from docker_d2d.engine.failures import _connect_cause, _where
from docker_d2d.engine.watch import Timeouts


def test_ipv6_is_bracketed_where_shown() -> None:
    assert bracket("::1") == "[::1]" and bracket("[::1]") == "[::1]" and bracket("host") == "host"
    assert hostport("fd00::2", 2375) == "[fd00::2]:2375" and hostport("10.0.0.1", 22) == "10.0.0.1:22"
    tcp = parse_endpoint("tcp://[fd00::2]:2375")
    assert tcp.host == "fd00::2" and _where(tcp) == "[fd00::2]:2375"
    ssh = parse_endpoint("ssh://root@[fd00::3]:2222/run/d.sock")
    assert ssh.host == "fd00::3" and _where(ssh) == "/run/d.sock on [fd00::3]:2222"
    refused = _connect_cause(ConnectionRefusedError("Connection refused"), tcp, Timeouts())
    assert "[fd00::2]:2375" in refused
