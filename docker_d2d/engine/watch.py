"""Bounded waits for every byte: connect timeouts, and a watchdog on reads and writes.

httpx's own read/write timeouts cannot tell a wedged engine from a busy one: Docker < 25
stays silent while it writes an export to a temp dir before the first byte, and every engine
stays silent between taking the last byte of a load and answering it, for as long as the
layers take to register. So a stream that has moved no byte for half the stall timeout asks
its engine for a ping on another connection (bounded by the other half): an answer means the
engine is alive and working, and the wait goes on; no answer means the engine is wedged or the
link is dead, and the read or write fails with `ReadStalled`/`WriteStalled` within the stall
timeout. Calls that carry an explicit httpx timeout (the first contact, the ping itself) get
exactly that timeout and no ping.

A live engine is no proof that one connection still moves (a proxy or an ssh channel can stop
forwarding it alone), so a request made `within(Silence(...))` (the load) also fails once no byte
moved for its own limit, pings or not: the stall timeout, plus what the engine may honestly spend
in silence on the bytes it was sent so far.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import httpcore
import httpx

# Re-exported: the engine modules take them from here with the rest of the watch.
from .timeouts import CONNECT_TIMEOUT as CONNECT_TIMEOUT
from .timeouts import STALL_TIMEOUT as STALL_TIMEOUT
from .timeouts import Timeouts as Timeouts

T = TypeVar("T")


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class ReadStalled(httpcore.ReadTimeout):
    pass


class WriteStalled(httpcore.WriteTimeout):
    pass


class Worded(httpcore.ConnectError):
    """A connect failure a lower layer (ssh) already worded as our error. It is carried as an
    attribute: httpcore's pool re-raises with `from None`, which drops a `__cause__`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


Alive = Callable[[float], bool]


@dataclass
class Silence:
    """How long one request may move no byte although its engine answers pings: `stall`, plus
    `per_mb` seconds for each MiB of body sent so far (`sent`, counted by the request's owner):
    the work an engine that says nothing until it is done may still be doing with it."""

    stall: float
    per_mb: float = 0.0
    sent: int = 0

    def limit(self) -> float:
        return self.stall + self.per_mb * self.sent / (1 << 20)


# The request the current thread is making (httpx's sync client sends and reads on the caller's thread).
_SILENCE: ContextVar[Silence | None] = ContextVar("d2d_silence", default=None)


@contextmanager
def within(silence: Silence) -> Iterator[Silence]:
    """Bound the silence of the requests this thread makes inside the block."""
    token = _SILENCE.set(silence)
    try:
        yield silence
    finally:
        _SILENCE.reset(token)


@dataclass
class Patience:
    """How one stream waits: `alive(timeout)` pings its engine on another connection."""

    timeouts: Timeouts
    alive: Alive | None = None

    def wait(self, op: Callable[[float | None], T], timeout: float | None, write: bool) -> T:
        """Run `op(seconds)`, which raises TimeoutError when nothing moved for that long."""
        if timeout is not None or self.alive is None:
            try:
                return op(timeout)
            except TimeoutError as exc:
                raise (httpcore.WriteTimeout if write else httpcore.ReadTimeout)(str(exc) or "timed out") from exc
        probe = self.timeouts.probe
        silence = _SILENCE.get()
        started = time.monotonic()
        stalled = WriteStalled if write else ReadStalled
        while True:
            wait = probe
            if silence is not None:
                limit = silence.limit()
                left = limit - (time.monotonic() - started)
                if left <= 0:
                    raise stalled(
                        f"no byte moved on its connection for {limit:.0f} s although the engine answers pings "
                        "on another: that connection is stuck"
                    )
                wait = min(probe, left)
            try:
                return op(wait)
            except TimeoutError:
                pass
            if not self.alive(probe):
                raise stalled(f"no byte moved for {self.timeouts.stall:g} s and the engine did not answer a ping")


class SocketStream(httpcore.NetworkStream):
    """A unix or TCP (or TLS) socket whose reads and writes wait with `Patience`."""

    def __init__(self, sock: socket.socket, patience: Patience) -> None:
        self._sock = sock
        self._patience = patience

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        def op(seconds: float | None) -> bytes:
            self._sock.settimeout(seconds)
            return self._sock.recv(max_bytes)

        try:
            return self._patience.wait(op, timeout, write=False)
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)

        def op(seconds: float | None) -> int:
            self._sock.settimeout(seconds)
            return self._sock.send(view)

        try:
            while view:
                view = view[self._patience.wait(op, timeout, write=True) :]
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._sock.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        try:
            self._sock.settimeout(timeout)
            sock = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._sock.close()
            raise httpcore.ConnectTimeout(f"TLS handshake: {exc or 'timed out'}") from exc
        except OSError as exc:
            self._sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return SocketStream(sock, self._patience)

    def get_extra_info(self, info: str) -> Any:
        if info == "socket":
            return self._sock
        if info == "is_readable":
            # A pooled connection the engine closed reads as readable (EOF): httpcore drops it.
            if self._sock.fileno() == -1:
                return True
            return bool(select.select([self._sock], [], [], 0)[0])
        return None


class SocketBackend(httpcore.NetworkBackend):
    def __init__(self, patience: Patience) -> None:
        self.patience = patience

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            sock = socket.create_connection((host, port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return SocketStream(sock, self.patience)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except TimeoutError as exc:
            sock.close()
            raise httpcore.ConnectTimeout(str(exc) or "timed out") from exc
        except OSError as exc:
            sock.close()
            raise httpcore.ConnectError(str(exc)) from exc
        return SocketStream(sock, self.patience)

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


def with_backend(
    backend: httpcore.NetworkBackend, ssl_context: ssl.SSLContext | None = None, uds: str | None = None
) -> httpx.HTTPTransport:
    """An httpx transport on our own network backend. httpx has no public way to give one, so
    this replaces the pool HTTPTransport builds (httpx `_transports/default.py`,
    `self._pool = httpcore.ConnectionPool(...)`): pinned in pyproject.toml, and
    tests/unit/engine/test_pinned.py fails when a release changes it."""
    # verify=False: the pool built here, with the CA bundle httpx would load for it (35 ms, twice per
    # engine), is thrown away; TLS uses `ssl_context`.
    transport = httpx.HTTPTransport(verify=False)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context, uds=uds, network_backend=backend, retries=0, http1=True, http2=False
    )
    return transport


def stall_cause(exc: BaseException) -> ReadStalled | WriteStalled | None:
    """The stall behind an httpx error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ReadStalled, WriteStalled)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
