"""Running a node's `ctr`: here (a local socket), over ssh (an exec channel on the run's
connection), or inside a node container of the local engine (kind, k3d: the Engine API's exec).
Each runs one argv, streams a body into its stdin and returns its stdout; a failure is an
EngineError carrying what `ctr` wrote on stderr.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from ...errors import ConnectError, D2DError, EngineError, StalledError, printable

if TYPE_CHECKING:
    import paramiko

    from ..ssh import SSHConnection

Body = Iterable[bytes | memoryview]
# A node's import says nothing while it unpacks what it took: its answer may come this much
# later per MiB sent, beyond the stall timeout (as client.py allows the containerd store).
SILENT_PER_MB = 0.2
SEND_PIECE = 64 << 10


class Runner(Protocol):
    """Runs `ctr` (argv[0]) where the node is. `stdin`: streamed into it, then closed.
    `shell_prefix`: a pipeline before it, where argv runs through a shell (`remote_shell`: ssh)."""

    where: str
    remote_shell: bool

    def run(self, argv: Sequence[str], stdin: Body | None = None, shell_prefix: str = "") -> bytes: ...

    def stream(self, argv: Sequence[str]) -> AbstractContextManager[Iterator[bytes]]:
        """`argv`'s stdout as it comes (an export); its failure raised at the end of the stream."""
        ...


def _failed(argv: Sequence[str], status: int, err: bytes) -> EngineError:
    text = printable(err.decode(errors="replace").strip().splitlines()[-1] if err.strip() else f"exit status {status}")
    what = " ".join(argv[argv.index("-n") + 2 :] if "-n" in argv else argv[1:])[:60]
    return EngineError(f"`ctr {what}` failed: {text}")


class LocalRunner:
    """`ctr` on this machine (a local socket: root)."""

    where = "local"
    remote_shell = False

    def run(self, argv: Sequence[str], stdin: Body | None = None, shell_prefix: str = "") -> bytes:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            raise ConnectError(f"no `{argv[0]}` on this machine: install containerd's ctr") from exc
        out: list[bytes] = []
        err: list[bytes] = []
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in readers:
            reader.start()
        try:
            if stdin is not None:
                assert proc.stdin is not None
                try:
                    for chunk in stdin:
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    pass  # ctr stopped reading: its status and stderr say why
                finally:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
            status = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        for reader in readers:
            reader.join()
        if status != 0:
            raise _failed(argv, status, b"".join(err))
        return b"".join(out)

    @contextmanager
    def stream(self, argv: Sequence[str]) -> Iterator[Iterator[bytes]]:
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise ConnectError(f"no `{argv[0]}` on this machine: install containerd's ctr") from exc
        assert proc.stdout is not None and proc.stderr is not None
        err: list[bytes] = []
        reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)  # type: ignore[union-attr]
        reader.start()

        def chunks() -> Iterator[bytes]:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(1 << 20):
                yield chunk
            status = proc.wait()
            reader.join()
            if status != 0:
                raise _failed(argv, status, b"".join(err))

        try:
            yield chunks()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


class SSHRunner:
    """`ctr` on an ssh host: one exec channel per call on the run's connection to it."""

    def __init__(self, connection: SSHConnection, stall: float) -> None:
        self.connection = connection
        self.stall = stall
        self.where = "ssh"
        self.remote_shell = True

    def run(self, argv: Sequence[str], stdin: Body | None = None, shell_prefix: str = "") -> bytes:
        import paramiko

        try:
            channel = self.connection.session()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"cannot open an ssh session: {exc}") from exc
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            channel.settimeout(self.stall)
            channel.exec_command(shell_prefix + shlex.join(argv))
            readers = [
                threading.Thread(target=_drain, args=(channel.recv, out, channel), daemon=True),
                threading.Thread(target=_drain, args=(channel.recv_stderr, err, channel), daemon=True),
            ]
            for reader in readers:
                reader.start()
            sent = 0
            if stdin is not None:
                for chunk in stdin:
                    self._send(channel, memoryview(chunk))
                    sent += len(chunk)
                channel.shutdown_write()
            patience = self.stall + SILENT_PER_MB * sent / (1 << 20)
            deadline = time.monotonic() + patience
            while not channel.status_event.wait(1.0):
                if not self.connection.transport.is_active():
                    raise ConnectError(self.connection.dead or "the ssh connection dropped while the node worked")
                if time.monotonic() > deadline:
                    raise StalledError(f"the node's `ctr` did not finish within {patience:.0f}s")
            status = channel.recv_exit_status()
            for reader in readers:
                reader.join(self.stall)
        finally:
            channel.close()
        if status == 127:
            raise ConnectError(f"no `{argv[0]}` on the host: {printable(b''.join(err).decode(errors='replace'))}")
        if status != 0:
            raise _failed(argv, status, b"".join(err))
        return b"".join(out)

    @contextmanager
    def stream(self, argv: Sequence[str]) -> Iterator[Iterator[bytes]]:
        import paramiko

        try:
            channel = self.connection.session()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"cannot open an ssh session: {exc}") from exc
        err: list[bytes] = []

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    data = channel.recv(1 << 20)
                except TimeoutError as exc:
                    raise StalledError(f"the node sent no byte for {self.stall:.0f}s (is the link down?)") from exc
                if not data:
                    break
                yield data
            status = channel.recv_exit_status()
            reader.join(self.stall)
            if status != 0:
                raise _failed(argv, status, b"".join(err))

        try:
            channel.settimeout(self.stall)
            channel.exec_command(shlex.join(argv))
            reader = threading.Thread(target=_drain, args=(channel.recv_stderr, err, channel), daemon=True)
            reader.start()
            yield chunks()
        finally:
            channel.close()

    def _send(self, channel: paramiko.Channel, data: memoryview) -> None:
        """Each piece guarded: on a dead link paramiko's write blocks whatever the channel's timeout
        (ssh.py SSHConnection.guard), and the guard closes the connection after the stall timeout."""
        import paramiko

        for at in range(0, len(data), SEND_PIECE):
            try:
                with self.connection.guard(self.stall):
                    channel.sendall(data[at : at + SEND_PIECE])  # type: ignore[arg-type]  # paramiko sends any buffer
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if self.connection.dead:
                    raise StalledError(self.connection.dead) from exc
                raise ConnectError(f"the ssh connection dropped: {exc}") from exc


def _drain(recv: object, into: list[bytes], channel: object) -> None:
    """Read one of a channel's streams to its end (timeouts while the node works are waited out)."""
    while True:
        try:
            data = recv(1 << 16)  # type: ignore[operator]
        except TimeoutError:
            if getattr(channel, "closed", True):
                return
            continue
        except OSError:
            return
        if not data:
            return
        into.append(data)


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
            raise _failed(argv, status, b"".join(err))
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
