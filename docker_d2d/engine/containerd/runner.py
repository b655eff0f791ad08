"""Running a node's `ctr`: here (a local socket) or over ssh (an exec channel on the run's
connection); inside a node container of the local engine: in_container.py. Each runs one argv,
streams a body into its stdin and returns its stdout (or streams its stdout: an export); a failure
is an EngineError carrying what `ctr` wrote on stderr.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol

from ...errors import ConnectError, EngineError, StalledError, printable

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


def failed(argv: Sequence[str], status: int, err: bytes) -> EngineError:
    text = printable(err.decode(errors="replace").strip().splitlines()[-1] if err.strip() else f"exit status {status}")
    what = " ".join(argv[argv.index("-n") + 2 :] if "-n" in argv else argv[1:])[:60]
    return EngineError(f"`ctr {what}` failed: {text}")


class LocalRunner:
    """`ctr` on this machine (a local socket: root)."""

    where = "local"
    remote_shell = False

    def run(self, argv: Sequence[str], stdin: Body | None = None, shell_prefix: str = "") -> bytes:
        _socket_there(argv)
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
            raise failed(argv, status, b"".join(err))
        return b"".join(out)

    @contextmanager
    def stream(self, argv: Sequence[str]) -> Iterator[Iterator[bytes]]:
        _socket_there(argv)
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
                raise failed(argv, status, b"".join(err))

        try:
            yield chunks()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _socket_there(argv: Sequence[str]) -> None:
    """A socket that is not there, said at once (ctr would wait for its dial to time out)."""
    if "--address" in argv:
        path = argv[list(argv).index("--address") + 1]
        if not os.path.exists(path):
            raise ConnectError(f"no containerd socket at {path} (is containerd running, and is that its socket?)")


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
            raise failed(argv, status, b"".join(err))
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
                raise failed(argv, status, b"".join(err))

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
