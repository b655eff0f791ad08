"""The local side: start the agent on the source host over ssh and relay its stream into the load.

The compressed archive goes into the destination's load as it arrives, never decompressed
here (engines read gzip and zstd load bodies themselves). When the host cannot run the agent
(no python3, one older than 3.8, an engine socket it cannot open directly), the transfer falls
back to the plain export stream, with one note saying what that costs and how to avoid it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paramiko

from ..archive import Cut, Progress, RewriteResult, StreamSpec, WrittenImage
from ..checkpoints import keep_partials
from ..compress import Compression, accepts_zstd
from ..endpoint import DEFAULT_UNIX_SOCKET
from ..errors import ArchiveError, ConnectError, D2DError, EngineError, ImageNotFound, SpoolFull, ZstdUnavailable
from ..model import human_size
from ..transport.ssh import WINDOW, SSHConnection, connection_for
from . import RemoteFilter
from .agent import DATA, EVENT, HEADER, spec_to_json
from .pack import EXIT_TOO_OLD, command, program

if TYPE_CHECKING:
    from ..engine import Engine
    from ..job import CopyOptions, CopyResult, Reporter
    from ..plan import TransferPlan

log = logging.getLogger("docker_d2d.remote")
HELLO_TIMEOUT = 60.0
EXIT_NOT_FOUND = 127

# Hosts found unable to run the agent in this run, with the reason (warned once per host).
_UNUSABLE: weakref.WeakKeyDictionary[SSHConnection, str] = weakref.WeakKeyDictionary()


class AgentUnavailable(Exception):
    """The host cannot run the agent: fall back to the plain stream."""


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


def _written(images: list[dict[str, Any]]) -> list[WrittenImage]:
    return [WrittenImage(i["config_digest"], tuple(i["diff_ids"]), i.get("manifest_digest")) for i in images]


def result_from_json(doc: dict[str, Any]) -> RewriteResult:
    fields = {k: v for k, v in doc.items() if k not in ("images", "partials")}
    return RewriteResult(images=_written(doc["images"]), partials=_written(doc["partials"]), **fields)


def accepted(requested: Compression, dst: Engine) -> list[str]:
    """What the agent may compress with, best first: what the destination's load reads."""
    assert dst.info
    if requested is Compression.NONE:
        return ["none"]
    if requested is Compression.GZIP or not accepts_zstd(dst.info):
        return ["gzip"]
    return ["zstd", "gzip"]


_ERRORS: dict[str, type[D2DError]] = {
    "not-found": ImageNotFound,
    "ArchiveError": ArchiveError,
    "ZstdUnavailable": ZstdUnavailable,
    "SpoolFull": SpoolFull,
}


@dataclass
class _Agent:
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


def _start(src: Engine, job: dict[str, Any]) -> tuple[_Agent, dict[str, Any]]:
    """Open the exec channel, send the program, wait for the hello (the export has begun)."""
    connection = connection_for(src.endpoint, src.timeouts)
    channel = connection.transport.open_session(window_size=WINDOW)
    channel.settimeout(HELLO_TIMEOUT)
    channel.exec_command(command())
    agent = _Agent(connection, channel, read_frames(channel.recv))
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
    if status == EXIT_NOT_FOUND:
        raise AgentUnavailable(f"no python3 ({why})")
    if status == EXIT_TOO_OLD:
        raise AgentUnavailable(f"its python3 is too old ({why})")
    raise AgentUnavailable(f"python3 failed ({why})")


class _Relay:
    """One load body: the agent's data frames as they come, up to a checkpoint ("cut", then `cut`
    is set and the next body goes on) or the end ("result", then `result` is set); events go to
    the reporter."""

    def __init__(self, agent: _Agent, progress: Progress, counted: CopyResult) -> None:
        self.agent, self.progress, self.counted = agent, progress, counted
        self.cut: Cut | None = None
        self.result: RewriteResult | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for kind, payload in self.agent.frames:
                if kind == DATA:
                    self.counted.wire_bytes += len(payload)
                    yield payload
                    continue
                event = json.loads(payload)
                name = event.get("event")
                if name == "progress":
                    for what, key, n in event["items"]:
                        _progress(self.progress, what, key, n)
                elif name == "cut":
                    self.cut = Cut(tuple(_written(event["images"])), tuple(event["sources"]))
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


def _fallback_note(src: Engine, plan: TransferPlan, why: str, remedy: str = "") -> str:
    layers = plan.unique_layers().values()
    whole = sum(lay.size or 0 for lay in layers)
    missing = plan.bytes_to_send
    host = src.endpoint.host
    remedy = remedy or f"Install python3 (3.8 or later) on {host}"
    return (
        f"the source host {host} cannot filter the export: {why}. The whole export (~ {human_size(whole)}) "
        f"crosses the link uncompressed instead of only the missing layers (~ {human_size(missing)} before "
        f"compression). {remedy} for the fast path, or pass --remote-filter never to choose the plain stream"
    )


def remote_transfer(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    ids: list[str],
    spec: StreamSpec,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
    progress: Progress,
) -> RewriteResult | None:
    """Filter at the source host and load what it sends; None: the plain stream instead.
    `progress` hears of each layer (and keeps count in `result`)."""
    if options.remote_filter is RemoteFilter.NEVER:
        log.info("source %s: plain export stream (--remote-filter never)", src.endpoint)
        return None
    connection = connection_for(src.endpoint, src.timeouts)
    if connection in _UNUSABLE:
        log.info("source %s: plain export stream (%s)", src.endpoint, _UNUSABLE[connection])
        return None
    job = {
        "socket": src.endpoint.path or DEFAULT_UNIX_SOCKET,
        "api": src.api_version,
        "names": ids,
        "spec": spec_to_json(spec),
        "compress": accepted(options.compress, dst),
    }
    try:
        agent, hello = _start(src, job)
    except AgentUnavailable as exc:
        _UNUSABLE[connection] = str(exc)
        log.info("source %s: plain export stream (%s)", src.endpoint, exc)
        reporter.note(_fallback_note(src, plan, str(exc)))
        return None
    except D2DError as exc:
        raise exc.with_side("source", str(src.endpoint)) from exc
    log.info(
        "source %s: filtering at the source host (python %s, %s on the wire)",
        src.endpoint,
        hello.get("python"),
        hello.get("compression"),
    )
    result.compression = Compression(hello.get("compression", "none"))
    try:
        while True:
            body = _Relay(agent, progress, result)
            dst.load(body)
            if body.cut is None:
                assert body.result is not None
                return body.result
            keep_partials(dst, body.cut, reporter, result)
    except ZstdUnavailable:
        # Its reader met a zstd blob (a containerd store's) it cannot hash or inflate. The load got a
        # body cut off before its end, so it made nothing (partial images of earlier checkpoints
        # stay, named): the plain stream starts over. Deciding up front would cost every pull from
        # such a store the plain stream, zstd blobs or not.
        why = "its python3 lacks the zstandard module, which the store's zstd layers need"
        _UNUSABLE[connection] = why
        log.info("source %s: plain export stream (%s)", src.endpoint, why)
        remedy = f"Install the zstandard module for python3 on {src.endpoint.host} (Debian: python3-zstandard)"
        reporter.note(_fallback_note(src, plan, why, remedy))
        return None
    except D2DError as exc:
        # Raised inside the body generator (the source's side) unless named already.
        raise exc.with_side("source", str(src.endpoint)) from exc
    finally:
        agent.channel.close()
