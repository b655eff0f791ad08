"""The private parts of httpx, httpcore and paramiko the engine relies on, each behind one function
(pyproject.toml pins their versions): these fail when a new release changes them.

- watch.with_backend: httpx has no public way to give HTTPTransport a network backend; we replace
  the connection pool it builds (httpx `_transports/default.py`, `self._pool`).
- ssh.open_streamlocal: paramiko has no API for a direct-streamlocal@openssh.com channel; we
  mirror Transport.open_channel with its private helpers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import paramiko
from paramiko.common import AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from docker_d2d.engine.ssh import open_streamlocal
from docker_d2d.engine.watch import with_backend

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.45\r\n\r\nOK"


class _Canned(httpcore.NetworkStream):
    """One connection that answers any request with ANSWER."""

    def __init__(self) -> None:
        self.sent = b""
        self._answer = ANSWER

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        out, self._answer = self._answer[:max_bytes], self._answer[max_bytes:]
        return out

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.sent += buffer

    def close(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return None


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self.connects: list[tuple[str, object]] = []
        self.stream = _Canned()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append(("tcp", (host, port)))
        return self.stream

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        self.connects.append(("unix", path))
        return self.stream


def test_with_backend_sends_through_our_network_backend() -> None:
    backend = _Backend()
    with httpx.Client(transport=with_backend(backend), base_url="http://engine:2375") as client:
        resp = client.get("/_ping")
    assert resp.text == "OK" and resp.headers["Api-Version"] == "1.45"
    assert backend.connects == [("tcp", ("engine", 2375))]
    assert backend.stream.sent.startswith(b"GET /_ping HTTP/1.1\r\n")


def test_with_backend_reaches_a_unix_socket_through_it() -> None:
    backend = _Backend()
    with httpx.Client(transport=with_backend(backend, uds="/run/engine.sock"), base_url="http://docker") as client:
        assert client.get("/_ping").status_code == 200
    assert backend.connects == [("unix", "/run/engine.sock")]


class _Server(paramiko.ServerInterface):
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def get_allowed_auths(self, username: str) -> str:
        return "none"

    def check_auth_none(self, username: str) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        self.kinds.append(kind)
        return OPEN_SUCCEEDED


def test_open_streamlocal_opens_a_channel_paramiko_has_no_api_for() -> None:
    ours, theirs = socket.socketpair()
    server = paramiko.Transport(theirs)
    server.add_server_key(paramiko.RSAKey.generate(1024))
    handler = _Server()
    started = threading.Thread(target=server.start_server, kwargs={"server": handler}, daemon=True)
    started.start()
    client = paramiko.Transport(ours)
    try:
        client.start_client(timeout=10)
        client.auth_none("d2d")
        channel = open_streamlocal(client, "/run/docker.sock", timeout=10)
        accepted = server.accept(10)
        assert accepted is not None and handler.kinds == ["direct-streamlocal@openssh.com"]
        channel.sendall(b"GET /_ping")
        assert accepted.recv(10) == b"GET /_ping"
        accepted.sendall(b"HTTP/1.1 200")
        assert channel.recv(12) == b"HTTP/1.1 200"
    finally:
        client.close()
        server.close()
