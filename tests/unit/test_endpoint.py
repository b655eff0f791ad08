"""Parsing endpoints: ports in range (issue 7, item 5)."""

from __future__ import annotations

import pytest

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.errors import EndpointError


@pytest.mark.parametrize(
    "text",
    [
        "tcp://h:0",
        "tcp://h:65536",
        "tcp://[::1]:70000",
        "ssh://h:0",
        "ssh://u@h:99999/run/d.sock",
        "sshunix://h:65536:/s.sock",
    ],
)
def test_ports_outside_1_to_65535_are_refused(text: str) -> None:
    with pytest.raises(EndpointError, match="not between 1 and 65535") as info:
        parse_endpoint(text)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("text", "port"), [("tcp://h:1", 1), ("tcp://h:65535", 65535), ("ssh://h:65535", 65535)])
def test_ports_at_the_edges_are_taken(text: str, port: int) -> None:
    assert parse_endpoint(text).port == port
