from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from docker_d2d.app.completion import candidates, cobra_complete, ssh_hosts
from docker_d2d.app.contexts import current_context, local_engine, resolve
from docker_d2d.app.options import GlobalOptions, split_global_flags
from docker_d2d.endpoint import Scheme
from docker_d2d.errors import EndpointError, UsageError


def test_global_flags_stop_at_the_first_positional() -> None:
    opts, rest = split_global_flags(["-ca", "-D", "--tlsverify", "d2d", "push", "-D"])
    assert (opts.context, opts.debug, opts.tlsverify) == ("a", True, True)
    assert split_global_flags(["-Htcp://x:1", "--host=unix:///y", "push"])[0].hosts == ["tcp://x:1", "unix:///y"]
    assert rest == ["d2d", "push", "-D"]
    opts, rest = split_global_flags(["--config=/c", "-l", "debug", "--tlscacert", "/ca", "push"])
    assert (opts.config, opts.log_level, opts.tlscacert, rest) == ("/c", "debug", "/ca", ["push"])


def test_host_and_context_together_are_refused() -> None:
    with pytest.raises(UsageError, match="both"):
        split_global_flags(["-H", "unix:///x", "--context", "a"])
    with pytest.raises(UsageError, match="needs an argument"):
        split_global_flags(["--context"])


def make_context(cfg: Path, name: str, host: str) -> None:
    d = cfg / "contexts/meta" / hashlib.sha256(name.encode()).hexdigest()
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": host}}}))


def test_precedence(tmp_path: Path) -> None:
    make_context(tmp_path, "a", "unix:///a.sock")
    make_context(tmp_path, "b", "unix:///b.sock")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "b"}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert current_context(GlobalOptions(), env) == "b"
    assert current_context(GlobalOptions(), {**env, "DOCKER_CONTEXT": "a"}) == "a"
    assert current_context(GlobalOptions(), {**env, "DOCKER_CONTEXT": "a", "DOCKER_HOST": "unix:///h"}) == "default"
    assert current_context(GlobalOptions(hosts=["unix:///h"]), env) == "default"
    assert current_context(GlobalOptions(context="a"), {**env, "DOCKER_HOST": "unix:///h"}) == "a"
    assert local_engine(GlobalOptions(), env).path == "/b.sock"
    assert local_engine(GlobalOptions(), {"HOME": str(tmp_path)}).path == "/var/run/docker.sock"


def test_default_with_tls_is_tcp_localhost_2376(tmp_path: Path) -> None:
    endpoint = local_engine(GlobalOptions(tlsverify=True), {"DOCKER_CONFIG": str(tmp_path)})
    assert (endpoint.scheme, endpoint.host, endpoint.port) == (Scheme.TCP, "localhost", 2376)
    assert endpoint.tls is not None and endpoint.tls.verify


def test_words_are_contexts_first_then_ssh_hosts(tmp_path: Path) -> None:
    make_context(tmp_path, "prod", "tcp://10.0.0.1:2376")
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert resolve("prod", GlobalOptions(), env).host == "10.0.0.1"
    other = resolve("deploy@other:2222", GlobalOptions(), env)
    assert (other.scheme, other.user, other.host, other.port, other.path) == (Scheme.SSH, "deploy", "other", 2222, "")
    forced = resolve("ssh://prod/run/d.sock", GlobalOptions(), env)
    assert (forced.scheme, forced.host, forced.path) == (Scheme.SSH, "prod", "/run/d.sock")
    with pytest.raises(EndpointError, match='context "nope": context not found'):
        local_engine(GlobalOptions(context="nope"), env)
    with pytest.raises(EndpointError, match="expected"):
        resolve("not a host!", GlobalOptions(), env)


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "path"),
    [
        ("ssh://h", None, "h", 0, ""),
        ("ssh://u@h:2222/var/run/docker.sock", "u", "h", 2222, "/var/run/docker.sock"),
        ("sshunix://u@h:22:/run/podman/podman.sock", "u", "h", 22, "/run/podman/podman.sock"),
        ("sshunix://h:", None, "h", 0, ""),
        ("sshunix://h:/s.sock", None, "h", 0, "/s.sock"),
    ],
)
def test_ssh_addresses(text: str, user: str | None, host: str, port: int, path: str) -> None:
    from docker_d2d.endpoint import parse_endpoint

    e = parse_endpoint(text)
    assert (e.scheme, e.user, e.host, e.port, e.path) == (Scheme.SSH, user, host, port, path)


def test_ssh_address_rejects_password_and_query() -> None:
    from docker_d2d.endpoint import parse_endpoint

    for bad in ("ssh://u:pw@h", "ssh://h?x=1", "ssh://h#f"):
        with pytest.raises(EndpointError):
            parse_endpoint(bad)


def test_completion_candidates(tmp_path: Path) -> None:
    assert [v for v, _ in candidates([], "")[0]][:3] == ["copy", "push", "pull"]
    assert ("--source", "Source engine (default: the local one)") in candidates(["copy"], "--")[0]
    assert [v for v, _ in candidates(["push", "h", "--compress"], "")[0]] == ["auto", "zstd", "gzip", "none"]
    assert ("--compress", "Compress the load on the wire") in candidates(["-s", "x"], "--")[0]
    assert ("--version", "Print the version and exit") in candidates([], "--")[0]
    assert candidates(["copy", "--spool-dir"], "")[1] == 16
    out = cobra_complete("__completeNoDesc", ["pu"]).splitlines()
    assert out == ["push", "pull", ":4"]
    assert (
        cobra_complete("__complete", ["d2d", "''"]).splitlines()[0]
        == "copy\tCopy IMAGES from the source engine to the destination engine"
    )
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host prod web-*\n  HostName 10.0.0.1\nHost *\n  User x\nhost lower\n")
    assert ssh_hosts(cfg) == ["prod", "lower"]
