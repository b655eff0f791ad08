"""Running a node's `ctr` inside a container of the local engine (a kind or k3d node): the Engine
API's exec, its connection hijacked for stdin and stdout, on the engine's unix socket; an export
through a file in the container and the engine's archive API."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote

from ...errors import ConnectError, D2DError, EngineError, printable
from .runner import Body, failed


class ExecRunner:
    """`ctr` inside a container of the local engine (a kind or k3d node), through the Engine API's
    exec with the connection hijacked for stdin and stdout (unix socket)."""

    def __init__(self, engine_socket: str, container: str, timeout: float) -> None:
        self.engine_socket = engine_socket
        self.container = container
        self.timeout = timeout
        self.where = f"container {container}"
        self.remote_shell = False

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.engine_socket)
        except OSError as exc:
            sock.close()
            raise ConnectError(f"cannot reach the local engine at {self.engine_socket}: {exc}") from exc
        return sock

    def _call(self, method: str, path: str, body: object | None = None) -> tuple[int, bytes]:
        with self._connect() as sock:
            data = json.dumps(body).encode() if body is not None else b""
            head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            sock.sendall(f"{head}Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            raw = b""
            while chunk := sock.recv(1 << 16):
                raw += chunk
        status, _, rest = raw.partition(b"\r\n\r\n")
        code = int(status.split()[1])
        if b"chunked" in status.lower():
            rest = _unchunk(rest)
        return code, rest

    def _start(self, argv: Sequence[str], attach_stdin: bool) -> tuple[str, socket.socket]:
        """An exec of `argv` in the container, started, its connection hijacked (the raw stream follows)."""
        config = {"AttachStdin": attach_stdin, "AttachStdout": True, "AttachStderr": True, "Cmd": list(argv)}
        code, answer = self._call("POST", f"/containers/{quote(self.container)}/exec", config)
        if code != 201:
            raise EngineError(f"exec in {self.container}: {printable(answer.decode(errors='replace').strip())}")
        exec_id = str(json.loads(answer)["Id"])
        sock = self._connect()
        try:
            start = json.dumps({"Detach": False, "Tty": False}).encode()
            sock.sendall(
                (
                    f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                    f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(start)}\r\n\r\n"
                ).encode()
                + start
            )
            head = b""
            while b"\r\n\r\n" not in head:  # byte by byte: what follows the head is the stream
                chunk = sock.recv(1)
                if not chunk:
                    raise EngineError(f"exec in {self.container}: the engine closed the connection")
                head += chunk
            status_line = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status_line and b" 200 " not in status_line:
                raise EngineError(f"exec in {self.container}: {printable(head.decode(errors='replace'))}")
        except BaseException:
            sock.close()
            raise
        return exec_id, sock

    def _exit_status(self, exec_id: str) -> int:
        code, answer = self._call("GET", f"/exec/{exec_id}/json")
        return int(json.loads(answer).get("ExitCode") or 0) if code == 200 else -1

    def run(self, argv: Sequence[str], stdin: Body | None = None, shell_prefix: str = "") -> bytes:
        exec_id, sock = self._start(argv, stdin is not None)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            reader = threading.Thread(target=_demux, args=(sock, out, err), daemon=True)
            reader.start()
            if stdin is not None:
                for piece in stdin:
                    sock.sendall(piece)
                sock.shutdown(socket.SHUT_WR)
            sock.settimeout(None)
            reader.join()
        finally:
            sock.close()
        status = self._exit_status(exec_id)
        if status != 0:
            raise failed(argv, status, b"".join(err))
        return b"".join(out)

    @contextmanager
    def stream(self, argv: Sequence[str]) -> Iterator[Iterator[bytes]]:
        """An export (`-` in argv: stdout) written to a file in the container, then read through the
        engine's archive API and removed. Not the exec's stdout: the engines here (Docker 20.10 and
        26.1, and the docker CLI alike) cut the end off several MB written by a process that exits
        at once, about one run in six."""
        path = f"/tmp/docker-d2d-export-{secrets.token_hex(6)}.tar"
        dash = list(argv).index("-")
        self.run([*argv[:dash], path, *argv[dash + 1 :]])
        try:
            with self._archive(path) as chunks:
                yield chunks
        finally:
            with contextlib.suppress(D2DError):
                self.run(["rm", "-f", path])

    @contextmanager
    def _archive(self, path: str) -> Iterator[Iterator[bytes]]:
        """One file of the container, as `GET /containers/{id}/archive` gives it (a tar of it:
        its header skipped, its bytes streamed). HTTP/1.0: the answer is not chunked."""
        sock = self._connect()
        try:
            query = f"/containers/{quote(self.container)}/archive?path={quote(path)}"
            sock.sendall(f"GET {query} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            sock.settimeout(None)
            reader = sock.makefile("rb")
            status = reader.readline()
            while reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            if b" 200 " not in status:
                raise EngineError(f"reading {path} in {self.container}: {printable(status.decode(errors='replace'))}")
            header = reader.read(512)
            size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)

            def chunks() -> Iterator[bytes]:
                left = size
                while left:
                    data = reader.read(min(left, 1 << 20))
                    if not data:
                        raise EngineError(f"reading {path} in {self.container}: the engine stopped early")
                    left -= len(data)
                    yield data

            yield chunks()
        finally:
            sock.close()


def _frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """The engine's multiplexed stream (no tty): 8-byte headers (stream 1 stdout, 2 stderr, and
    the payload's length), each payload as it completes."""
    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        while len(buf) >= 8:
            size = struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + size:
                break
            yield buf[0], bytes(buf[8 : 8 + size])
            del buf[: 8 + size]


def _demux(sock: socket.socket, out: list[bytes], err: list[bytes]) -> None:
    for stream, payload in _frames(sock):
        (err if stream == 2 else out).append(payload)


def _unchunk(data: bytes) -> bytes:
    body = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body
