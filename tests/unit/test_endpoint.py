"""Parsing endpoints: ports in range, IPv6 in brackets; bare words that are no context; the
escaping of engine text; the stream watchdog's decisions (issue 7, items 3, 5 and 8)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpcore
import pytest

from docker_d2d.contexts import resolve
from docker_d2d.endpoint import bracket, hostport, parse_endpoint
from docker_d2d.engine import _connect_cause, _where
from docker_d2d.errors import EndpointError, printable
from docker_d2d.options import GlobalOptions
from docker_d2d.transport.watch import Patience, ReadStalled, Timeouts, WriteStalled, stall_cause


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


def test_bare_words_with_bad_ports_are_refused_too(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="port 0 is not between"):
        resolve("host:0", GlobalOptions(), {"DOCKER_CONFIG": str(tmp_path)})


@pytest.mark.parametrize(("text", "port"), [("tcp://h:1", 1), ("tcp://h:65535", 65535), ("ssh://h:65535", 65535)])
def test_ports_at_the_edges_are_taken(text: str, port: int) -> None:
    assert parse_endpoint(text).port == port


def test_ipv6_is_bracketed_where_shown() -> None:
    assert bracket("::1") == "[::1]" and bracket("[::1]") == "[::1]" and bracket("host") == "host"
    assert hostport("fd00::2", 2375) == "[fd00::2]:2375" and hostport("10.0.0.1", 22) == "10.0.0.1:22"
    tcp = parse_endpoint("tcp://[fd00::2]:2375")
    assert tcp.host == "fd00::2" and _where(tcp) == "[fd00::2]:2375"
    ssh = parse_endpoint("ssh://root@[fd00::3]:2222/run/d.sock")
    assert ssh.host == "fd00::3" and _where(ssh) == "/run/d.sock on [fd00::3]:2222"
    refused = _connect_cause(ConnectionRefusedError("Connection refused"), tcp, Timeouts())
    assert "[fd00::2]:2375" in refused


def _context(cfg: Path, name: str) -> None:
    d = cfg / "contexts/meta" / hashlib.sha256(name.encode()).hexdigest()
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": "unix:///x.sock"}}}))


def test_a_bare_word_that_is_no_context_carries_the_contexts_for_the_message(tmp_path: Path) -> None:
    _context(tmp_path, "prod")
    _context(tmp_path, "staging")
    env = {"DOCKER_CONFIG": str(tmp_path)}
    word = resolve("fra", GlobalOptions(), env)
    assert word.host == "fra" and word.contexts == ("default", "prod", "staging")
    # An explicit address is what the user meant: no contexts to suggest.
    assert resolve("ssh://fra", GlobalOptions(), env).contexts is None


def test_printable_escapes_terminal_control_characters() -> None:
    assert printable("boom \x1b[2J\x1b]0;pwned\x07\r\n") == "boom \\x1b[2J\\x1b]0;pwned\\x07\\r\\n"
    assert printable("caf\u00e9 \u202eevil") == "caf\u00e9 \\u202eevil"  # a bidi override too
    assert printable("plain: image x:1 (5 MB)") == "plain: image x:1 (5 MB)"


def _never(seconds: float | None) -> bytes:
    time.sleep(seconds or 0)
    raise TimeoutError("timed out")


def test_a_quiet_stream_whose_engine_answers_pings_keeps_waiting() -> None:
    pings: list[float] = []
    answers = iter([True, True, False])

    def alive(seconds: float) -> bool:
        pings.append(seconds)
        return next(answers)

    patience = Patience(Timeouts(connect=1, stall=0.2), alive=alive)
    started = time.monotonic()
    with pytest.raises(ReadStalled, match=r"no byte moved for 0\.2 s"):
        patience.wait(_never, None, write=False)
    assert len(pings) == 3 and pings[0] == pytest.approx(0.1)
    assert 0.3 <= time.monotonic() - started < 2


def test_a_quiet_stream_whose_engine_is_silent_fails_within_the_stall_timeout() -> None:
    def alive(seconds: float) -> bool:
        time.sleep(seconds)
        return False

    patience = Patience(Timeouts(stall=0.4), alive=alive)
    started = time.monotonic()
    with pytest.raises(WriteStalled) as info:
        patience.wait(_never, None, write=True)
    assert time.monotonic() - started < 0.8
    assert stall_cause(RuntimeError("wrapped").with_traceback(None)) is None
    wrapped = RuntimeError("httpx")
    wrapped.__cause__ = info.value
    assert stall_cause(wrapped) is info.value


def test_an_explicit_timeout_is_strict_and_never_pings() -> None:
    patience = Patience(Timeouts(stall=0.2), alive=lambda s: pytest.fail("pinged"))
    with pytest.raises(httpcore.ReadTimeout) as info:
        patience.wait(_never, 0.05, write=False)
    assert not isinstance(info.value, ReadStalled)
    assert patience.wait(lambda s: b"data", None, write=False) == b"data"
