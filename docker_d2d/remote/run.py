"""The local side of the agent: start it on the source host over ssh and relay its stream.

Each relay is one load body: the compressed archive goes into the destination's load as it
arrives, never decompressed here (engines read gzip and zstd load bodies themselves). When the
host cannot run the agent (no python3, one older than 3.8, an engine socket it cannot open
directly), `start` raises AgentUnavailable: the transfer then falls back to the plain export
stream (transfer/sources.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paramiko

from ..engine.ssh import WINDOW, SSHConnection
from ..errors import (
    ArchiveError,
    ConnectError,
    D2DError,
    EngineError,
    ImageNotFound,
    SpoolFull,
    StoreError,
    ZstdUnavailable,
)
from ..formats.agent import DATA, EVENT, HEADER
from ..formats.entries import Cut, Progress, RewriteResult, cut_from_json, result_from_json
from .pack import EXIT_TOO_OLD, command, program

log = logging.getLogger("docker_d2d.remote")

HELLO_TIMEOUT = 60.0
EXIT_NOT_FOUND = 127


class AgentUnavailable(Exception):
    """The host cannot run the agent: fall back to the plain stream."""


class SudoRefused(AgentUnavailable):
    """`sudo -n` would not run the agent (a password needed, no sudo rule, no sudo): run it without."""


def read_frames(recv: Callable[[int], bytes]) -> Iterator[tuple[bytes, bytes]]:
    """Split the agent's stdout into (kind, payload) frames; `recv` returns b"" at the end."""
    buf = bytearray()

    def fill(n: int) -> bool:
        while len(buf) < n:
            data = recv(1 << 20)
            if not data:
                return False
            buf.extend(data)
        return True

    while True:
        if not fill(HEADER.size):
            if buf:
                raise ArchiveError("the source host's filter stream ended inside a frame header")
            return
        kind, size = HEADER.unpack_from(buf)
        if kind not in (DATA, EVENT):
            # e.g. a shell startup file printing to stdout before python runs
            raise ArchiveError(f"the source host's filter stream is not framed: {bytes(buf[:40])!r}")
        if not fill(HEADER.size + size):
            raise ArchiveError("the source host's filter stream ended inside a frame")
        payload = bytes(buf[HEADER.size : HEADER.size + size])
        del buf[: HEADER.size + size]
        yield kind, payload


_ERRORS: dict[str, type[D2DError]] = {
    "not-found": ImageNotFound,
    "ArchiveError": ArchiveError,
    "ZstdUnavailable": ZstdUnavailable,
    "SpoolFull": SpoolFull,
    "StoreError": StoreError,  # the store on the host: a layer not what its engine registered
}


@dataclass
class Agent:
    connection: SSHConnection
    channel: paramiko.Channel
    frames: Iterator[tuple[bytes, bytes]]

    def stderr(self) -> str:
        data = b""
        while self.channel.recv_stderr_ready():
            data += self.channel.recv_stderr(65536)
        return data.decode(errors="replace").strip()

    def ended(self) -> str:
        """Why the agent stopped without a result: its exit status and what it printed."""
        status = self.channel.recv_exit_status() if self.channel.exit_status_ready() else -1
        text = " ".join(self.stderr().split())[-500:]  # one line: it goes into a one-line note
        return f"exit status {status}" + (f": {text}" if text else "")

    def error(self, event: dict[str, Any]) -> D2DError:
        cls = _ERRORS.get(str(event.get("kind")), EngineError)
        message = str(event.get("message"))
        if event.get("kind") == "internal":
            log.info("the agent's traceback:\n%s", event.get("traceback"))
            message = f"the filter on the source host failed: {message}"
        return cls(message)


def start(connection: SSHConnection, job: dict[str, Any], sudo: bool = False) -> tuple[Agent, dict[str, Any]]:
    """Open the exec channel, send the program, wait for the hello (the stream has begun). `sudo`:
    run it through `sudo -n` (SudoRefused when sudo says no)."""
    channel = connection.transport.open_session(window_size=WINDOW)
    channel.settimeout(HELLO_TIMEOUT)
    channel.exec_command(command(sudo=sudo))
    agent = Agent(connection, channel, read_frames(channel.recv))
    # When python3 is missing the channel may close before all is sent: the exit status tells.
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        channel.sendall(program(job))
    try:
        for kind, payload in agent.frames:
            if kind == EVENT:
                event = json.loads(payload)
                if event.get("event") == "hello":
                    channel.settimeout(None)
                    return agent, event
                if event.get("event") == "error" and event.get("kind") == "connect":
                    raise AgentUnavailable(str(event.get("message")))
                if event.get("event") == "error":
                    raise agent.error(event)
        channel.recv_exit_status()
    except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
        channel.close()
        raise ConnectError(f"the filter on the source host did not start: {exc}") from exc
    except ArchiveError as exc:
        channel.close()
        raise AgentUnavailable(str(exc)) from exc
    except BaseException:
        channel.close()
        raise
    status = channel.recv_exit_status()
    why = agent.ended()
    channel.close()
    if sudo and "sudo" in why:
        raise SudoRefused(why)
    if status == EXIT_NOT_FOUND:
        raise AgentUnavailable(f"no python3 ({why})")
    if status == EXIT_TOO_OLD:
        raise AgentUnavailable(f"its python3 is too old ({why})")
    raise AgentUnavailable(f"python3 failed ({why})")


class Relay:
    """One load body: the agent's data frames as they come, up to a checkpoint ("cut", then `cut`
    is set and the next body goes on) or the end ("result", then `result` is set); events go to
    `progress`, and `wire(n)` hears of each data frame's bytes."""

    def __init__(self, agent: Agent, progress: Progress, wire: Callable[[int], None]) -> None:
        self.agent, self.progress, self.wire = agent, progress, wire
        self.cut: Cut | None = None
        self.result: RewriteResult | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for kind, payload in self.agent.frames:
                if kind == DATA:
                    self.wire(len(payload))
                    yield payload
                    continue
                event = json.loads(payload)
                name = event.get("event")
                if name == "progress":
                    for what, key, n in event["items"]:
                        _progress(self.progress, what, key, n)
                elif name == "cut":
                    self.cut = cut_from_json(event)
                    return
                elif name == "result":
                    self.result = result_from_json(event["result"])
                elif name == "error":
                    raise self.agent.error(event)
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
            raise EngineError(f"the ssh connection to the source host failed mid-stream: {exc}") from exc
        if self.result is None:
            raise EngineError(f"the filter on the source host stopped before the end ({self.agent.ended()})")


def _progress(progress: Progress, what: str, key: str, n: int) -> None:
    if what == "skipped":
        progress.layer_skipped(key, n)
    elif what == "started":
        progress.layer_started(key, n)
    elif what == "advanced":
        progress.layer_advanced(key, n)
    elif what == "finished":
        progress.layer_finished(key)
