"""Completion of the Kubernetes nodes' addresses (no engine: clusters need one, tested in integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from docker_d2d.app.completion import cobra_complete


def test_node_schemes_and_ssh_hosts_as_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host node1 node2\n  User root\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")  # no engine: no cluster
    lines = cobra_complete("__complete", ["d2d", "push", "cont"]).splitlines()
    assert "containerd+ssh://\taddress" in lines and "containerd://\taddress" in lines
    lines = cobra_complete("__completeNoDesc", ["push", "containerd+ssh://n"]).splitlines()
    assert lines == ["containerd+ssh://node1", "containerd+ssh://node2", ":4"]
    lines = cobra_complete("__completeNoDesc", ["push", "k"]).splitlines()
    assert "kind://" in lines and "k3d://" in lines
