"""A TCP proxy in front of an engine's unix socket that holds every chunk for a fixed time in each
direction: a far engine (a round trip of 2 x delay) without netem, which this kernel lacks.
Chunks keep their order; with `rate` (bytes a second, each direction) they are also paced, and
`cut()` takes the link down: every connection drops at once and new ones are refused. It also counts the HTTP
requests that pass, by method and path. With `freeze` (a regex over 'METHOD /path'), a connection
whose request matches stops forwarding, alone, while every other one goes on: towards the engine
after `freeze_after` bytes of it, and its answer never. With `listen`, it listens on that unix socket path (anyone
may connect) instead of a loopback port: an engine socket in a place of your choosing."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field

_REQUEST_LINE = re.compile(rb"(GET|POST|HEAD|DELETE|PUT) (/[^ ?]*)")


@dataclass
class DelayProxy:
    target: str  # unix socket path of the engine
    delay: float  # one way, seconds
    port: int = 0
    rate: float | None = None
    listen: str | None = None  # a unix socket path to listen on
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    _server: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _open: list[socket.socket] = field(default_factory=list)
    _down: threading.Event = field(default_factory=threading.Event)
    freeze: str | None = None
    freeze_after: int = 0
    frozen: int = 0  # connections frozen so far

    @property
    def host(self) -> str:
        return f"unix://{self.listen}" if self.listen else f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DelayProxy:
        if self.listen:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.listen)
            self._server = socket.socket(socket.AF_UNIX)
            self._server.bind(self.listen)
            os.chmod(self.listen, 0o666)
            self._server.listen(64)
        else:
            self._server = socket.create_server(("127.0.0.1", self.port))
            self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server:
            self._server.close()

    def cut(self) -> None:
        """The link goes down: every open connection ends at once, and new ones end as they come."""
        self._down.set()
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def count(self, pattern: str) -> int:
        """How many requests matched `pattern` (a regex over 'METHOD /path')."""
        with self._lock:
            return sum(n for key, n in self.requests.items() if re.search(pattern, key))

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._down.is_set():
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self.target)
            except OSError:  # the engine is down (restarting): the connection is refused
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            matched = threading.Event()  # this connection's request matches `freeze`
            self._pipe(client, upstream, count=True, matched=matched)
            self._pipe(upstream, client, count=False, matched=matched)

    def _hold(self) -> None:
        with self._lock:
            self.frozen += 1
        self._stop.wait()  # forwards nothing more; its reader backs up once the queue is full

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool, matched: threading.Event) -> None:
        # Bounded, as a link is: a sender that outruns `rate` blocks here, not in an unbounded queue
        # that would take a whole body at once and deliver it after the sender is gone.
        held: queue.Queue[tuple[float, bytes]] = queue.Queue(maxsize=16)

        def read() -> None:
            try:
                while chunk := src.recv(1 << 16):
                    if count:
                        with self._lock:
                            for m in _REQUEST_LINE.finditer(chunk):
                                self.requests[f"{m[1].decode()} {m[2].decode()}"] += 1
                                if self.freeze and re.search(self.freeze, f"{m[1].decode()} {m[2].decode()}"):
                                    matched.set()
                    held.put((time.monotonic() + self.delay, chunk))
            except OSError:
                pass
            held.put((time.monotonic() + self.delay, b""))

        def write() -> None:
            passed = 0  # bytes forwarded towards the engine
            while True:
                due, chunk = held.get()
                time.sleep(max(0.0, due - time.monotonic()))
                if matched.is_set():
                    if not count:
                        return self._hold()
                    if passed + len(chunk) > self.freeze_after:
                        with contextlib.suppress(OSError):
                            dst.sendall(chunk[: max(0, self.freeze_after - passed)])
                        return self._hold()
                passed += len(chunk)
                try:
                    if not chunk:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(chunk)
                except OSError:
                    return
                if self.rate:
                    time.sleep(len(chunk) / self.rate)

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()
