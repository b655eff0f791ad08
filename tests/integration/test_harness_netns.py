"""The test harness touches only the network namespaces it created (issue 7, item 11)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.harness.netns import NetNS


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_namespaces_are_unique_to_the_run_and_others_are_never_removed() -> None:
    # Someone else's namespace, named exactly like the old fixed names of ours.
    foreign = f"d2dfar{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        a, b = NetNS("far").up(), NetNS("far").up()
        try:
            assert a.name != b.name and a.addr != b.addr and a.host_if != b.host_if
            assert len(a.host_if) <= 15 and len(a.ns_if) <= 15
            assert {a.name, b.name} <= _namespaces()
            impostor = NetNS("far")
            impostor.name, impostor.run_id = foreign, "0000"
            with pytest.raises(RuntimeError, match="did not create it"):
                impostor.down()
        finally:
            a.down()
            b.down()
        assert foreign in _namespaces() and not ({a.name, b.name} & _namespaces())
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=True)
