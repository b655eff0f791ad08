"""The Engine API over ssh, with nothing installed on the server but sshd and the engine.

One ssh connection per host per run (fabric, so ~/.ssh/config, ProxyJump, agent and keys work
as users configured them; the run owns them, pool.py), and one channel per HTTP connection,
reaching the engine's socket by:

1. a `direct-streamlocal@openssh.com` channel (OpenSSH's AllowStreamLocalForwarding): no
   remote program at all;
2. `docker system dial-stdio` on the server (as the docker CLI's own ssh:// does);
3. `socat - UNIX-CONNECT:<socket>`.

Host keys are checked strictly against known_hosts: fabric's default (silently trusting new
hosts) is replaced; `StrictHostKeyChecking accept-new` in ssh_config opts into adding new ones.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import logging
import math
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpcore
import httpx
import paramiko

from ..endpoint import DEFAULT_UNIX_SOCKET, Endpoint, bracket, hostport
from ..errors import ConnectError, EndpointError, SocketMissing
from .watch import Patience, Timeouts, Worded, WriteStalled, with_backend

log = logging.getLogger("docker_d2d.ssh")
WINDOW = 16 << 20  # a large window keeps slow, long links full
PROBE = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
KEEPALIVE = 15  # seconds, unless ssh_config sets ServerAliveInterval


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _HostKeyError(Exception):
    pass


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown hosts with the fingerprint and how to trust it (OpenSSH's default)."""

    def __init__(self, accept_new: bool, known_hosts: Path) -> None:
        self.accept_new = accept_new
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if self.accept_new:
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            log.warning("added %s key %s for %s to %s", key.get_name(), fingerprint(key), hostname, self.known_hosts)
            return
        port_opt = ""
        if hostname.startswith("["):
            host, _, port = hostname[1:].partition("]:")
            hostname, port_opt = host, f"-p {port} "
        raise _HostKeyError(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)}. If that is the server's key, "
            f"trust it with `ssh-keyscan {port_opt}{hostname} >> {self.known_hosts}` (after checking the "
            "fingerprint), or set `StrictHostKeyChecking accept-new` for this host in ~/.ssh/config"
        )


@dataclass
class _Stream(httpcore.NetworkStream):
    channel: paramiko.Channel
    patience: Patience
    connection: SSHConnection

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        def op(seconds: float | None) -> bytes:
            self.channel.settimeout(seconds)
            return bytes(self.channel.recv(max_bytes))

        try:
            return self.patience.wait(op, timeout, write=False)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise httpcore.ReadError(f"ssh channel: {exc}") from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        data, offset = bytes(buffer), 0

        def op(seconds: float | None) -> int:
            self.channel.settimeout(seconds)
            # paramiko sends at most one packet per call; slicing more would only copy.
            with self.connection.guard(self.patience.timeouts.stall):
                return self.channel.send(data[offset : offset + 65536])

        try:
            while offset < len(data):
                offset += self.patience.wait(op, timeout, write=True)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self.connection.dead:
                raise WriteStalled(self.connection.dead) from exc
            raise httpcore.WriteError(f"ssh channel: {exc}") from exc

    def close(self) -> None:
        self.channel.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        raise httpcore.ConnectError("TLS over ssh is not supported")

    def get_extra_info(self, info: str) -> Any:
        return None


class SSHConnection:
    """One ssh connection to one host, and the way found to reach each engine socket there."""

    def __init__(self, endpoint: Endpoint, timeouts: Timeouts) -> None:
        self.endpoint = endpoint
        self.timeouts = timeouts
        self.lock = threading.Lock()
        self.methods: dict[str, str] = {}  # socket path -> the way that reaches it
        self._conn: Any = None
        self.dead = ""  # why the watchdog closed the connection
        self._guard_lock = threading.Lock()
        self._guarded: dict[object, tuple[float, float]] = {}  # guarded block -> (deadline, seconds)
        self._watcher: threading.Thread | None = None

    # --- connecting ------------------------------------------------------------------------

    def _error(self, message: str) -> ConnectError:
        return ConnectError(message)

    def connect(self) -> None:
        from fabric import Config, Connection

        ep = self.endpoint
        limit = self.timeouts.connect
        # Every hop (ProxyJump gateways are built from a clone of this config) waits at most
        # `limit` for TCP, the server's banner, authentication and each channel to open.
        config = Config(
            overrides={
                "timeouts": {"connect": math.ceil(limit) + 1},  # fabric takes whole seconds
                "connect_kwargs": {
                    "banner_timeout": limit,
                    "auth_timeout": limit,
                    "channel_timeout": limit,
                    "transport_factory": _gcm_first,
                },
            }
        )
        kwargs: dict[str, Any] = {}
        if ep.user:
            kwargs["user"] = ep.user
        if ep.port:
            kwargs["port"] = ep.port
        # One second more for fabric's own wait, so that paramiko's banner timeout speaks first.
        conn = Connection(ep.host, config=config, connect_timeout=math.ceil(limit) + 1, **kwargs)
        _harden(conn)
        self._conn = conn
        try:
            self._open(conn)
        except paramiko.PasswordRequiredException as exc:
            if not sys.stdin.isatty():
                raise self._error(
                    f"the ssh key is encrypted ({exc}); add it to ssh-agent or run on a terminal to be asked "
                    "for its passphrase"
                ) from exc
            conn.connect_kwargs["passphrase"] = getpass.getpass(f"Passphrase for the ssh key of {ep.host}: ")
            self._open(conn)
        # Keepalives keep idle NAT and firewall state alive during long silent phases.
        interval = int(str(conn.ssh_config.get("serveraliveinterval", KEEPALIVE)) or KEEPALIVE)
        self.transport.set_keepalive(interval)

    def _open(self, conn: Any) -> None:
        target = f"{conn.user}@{hostport(conn.host, conn.port)}"
        limit = f"{self.timeouts.connect:g} s"
        try:
            conn.open()
        except _HostKeyError as exc:
            raise self._error(str(exc)) from exc
        except paramiko.BadHostKeyException as exc:
            raise self._error(
                f"the host key of {exc.hostname} has CHANGED: it offered {fingerprint(exc.key)}, known_hosts has "
                f"{fingerprint(exc.expected_key)}. Someone may be intercepting the connection; if the server was "
                f"reinstalled, remove the old key with `ssh-keygen -R {exc.hostname}`"
            ) from exc
        except paramiko.PasswordRequiredException:
            raise
        except paramiko.AuthenticationException as exc:
            raise self._error(f"permission denied for {target}: {exc} (check the user, key and ssh-agent)") from exc
        except paramiko.SSHException as exc:
            inner = exc.__cause__ or exc.__context__
            if isinstance(inner, _HostKeyError):
                raise self._error(str(inner)) from exc
            if "protocol banner" in str(exc) or "No existing session" in str(exc):
                raise self._error(
                    f"{target} accepted the connection but sent no ssh banner within {limit} "
                    "(is an ssh server listening there? --connect-timeout changes the wait)"
                ) from exc
            if "No authentication methods" in str(exc):
                raise self._error(
                    f"permission denied for {target}: no key to offer (no ssh-agent, no key in ~/.ssh, "
                    "no IdentityFile for this host in ~/.ssh/config)"
                ) from exc
            raise self._error(f"ssh to {target} failed: {exc}") from exc
        except socket.gaierror as exc:
            if self.endpoint.contexts is not None and conn is self._conn:
                raise EndpointError(
                    f"no context or ssh host named {self.endpoint.text!r} (contexts: "
                    f"{', '.join(self.endpoint.contexts)}; ssh: cannot resolve {conn.host}: {exc.strerror})"
                ) from exc
            raise self._error(f"cannot resolve {bracket(conn.host)}: {exc.strerror}") from exc
        except TimeoutError as exc:
            raise self._error(
                f"cannot reach {target}: no answer within {limit} (--connect-timeout changes the wait)"
            ) from exc
        except (OSError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise self._error(f"cannot reach {target}: {reason}") from exc

    @property
    def transport(self) -> paramiko.Transport:
        return self._conn.client.get_transport()  # type: ignore[no-any-return]

    # --- reaching the engine ---------------------------------------------------------------

    def open_channel(self, path: str, timeout: float | None = None) -> paramiko.Channel:
        with self.lock:
            if self._conn is None:
                self.connect()
            if path not in self.methods:
                self.methods[path] = self._choose_method(path)
        # Connecting has timeouts of its own at every step; opening one more channel on a live
        # connection writes a packet, which on a dead link would block forever (see guard).
        with self.guard((timeout or self.timeouts.connect) + 1):
            return self._open_by(self.methods[path], path, timeout)

    def session(self) -> paramiko.Channel:
        """A channel for one command on the host (a node's `ctr`), connecting first if need be."""
        with self.lock:
            if self._conn is None:
                self.connect()
        with self.guard(self.timeouts.connect + 1):
            return self.transport.open_session()

    @staticmethod
    def _methods(path: str) -> list[tuple[str, str]]:
        sock = path or DEFAULT_UNIX_SOCKET
        dial = "docker system dial-stdio" if not path else f"docker --host=unix://{shlex.quote(path)} system dial-stdio"
        return [
            ("streamlocal", sock),
            ("dial-stdio", dial),
            ("socat", f"socat - UNIX-CONNECT:{shlex.quote(sock)}"),
        ]

    def _choose_method(self, path: str) -> str:
        failures = []
        for name, _ in self._methods(path):
            try:
                channel = self._open_by(name, path, self.timeouts.connect)
                answer = _probe(channel, self.timeouts.connect)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                failures.append(f"{name}: {exc}")
                continue
            if answer.startswith(b"HTTP/1."):
                log.info("ssh %s: reaching the engine socket through %s", self.endpoint.host, name)
                return name
            failures.append(f"{name}: {answer.decode(errors='replace').strip()[:300] or 'no answer'}")
        detail = "; ".join(failures)
        host = bracket(self.endpoint.host)
        sock = path or DEFAULT_UNIX_SOCKET
        if self._missing(sock):
            raise SocketMissing(
                f"there is no engine socket {sock} on {host} (is the engine running there, and is that its "
                "socket path? `docker context inspect` or the engine's -H flag shows it)"
            )
        if "ermission denied" in detail:
            raise self._error(f"the engine socket on {host}: permission denied for this user ({detail})")
        raise self._error(
            f"cannot reach the engine socket {sock} on {host} "
            f"({detail}). Enable `AllowStreamLocalForwarding yes` in the server's sshd_config, or install the "
            "docker CLI or socat there"
        )

    def _missing(self, sock: str) -> bool:
        """Whether `sock` does not exist on the server (when the server lets us ask with a
        command; a server that forbids commands leaves the question open)."""
        try:
            channel = self.transport.open_session(timeout=self.timeouts.connect)
            try:
                channel.exec_command(_missing_script(sock))
                if not channel.status_event.wait(self.timeouts.connect):
                    return False
                return channel.recv_exit_status() == 1
            finally:
                channel.close()
        except (paramiko.SSHException, OSError, EOFError):
            return False

    def _open_by(self, name: str, path: str, timeout: float | None = None) -> paramiko.Channel:
        command = dict(self._methods(path))[name]
        timeout = timeout or self.timeouts.connect
        if name == "streamlocal":
            return open_streamlocal(self.transport, command, timeout)
        channel = self.transport.open_session(window_size=WINDOW, timeout=timeout)
        channel.exec_command(command)
        return channel

    def stream(self, path: str, patience: Patience, timeout: float | None = None) -> _Stream:
        return _Stream(self.open_channel(path, timeout), patience, self)

    @contextmanager
    def guard(self, seconds: float) -> Iterator[None]:
        """Close the connection should the block take longer than `seconds`.

        paramiko writes packets to the TCP socket in a loop that only ends when the socket
        takes the bytes or the transport closes (Packetizer.write_all), whatever the channel's
        timeout: on a dead link, with a window still open, a send blocks forever and holds the
        transport's write lock, so no ping could even be asked. A TCP socket that takes no byte
        for this long means the link or the server is gone."""
        # One watcher thread per connection, not a timer per send: a send is 64 KiB at most.
        key = object()
        with self._guard_lock:
            self._guarded[key] = (time.monotonic() + seconds, seconds)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="d2d-ssh-watch", daemon=True)
                self._watcher.start()
        try:
            yield
        finally:
            with self._guard_lock:
                del self._guarded[key]

    def _watch(self) -> None:
        while True:
            time.sleep(0.2)
            now = time.monotonic()
            with self._guard_lock:
                if self.dead or (self._conn is None and not self._guarded):
                    self._watcher = None
                    return
                late = [seconds for deadline, seconds in self._guarded.values() if now > deadline]
            if late:
                self._kill(late[0])

    def _kill(self, seconds: float) -> None:
        self.dead = (
            f"the ssh connection to {bracket(self.endpoint.host)} moved no byte for {seconds:g} s "
            "(is the link or the server down?)"
        )
        transport = self._conn.client.get_transport() if self._conn is not None else None
        if transport is not None:
            transport.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _harden(conn: Any) -> None:
    """Strict host-key checking on this hop and every ProxyJump hop before it."""
    hop = conn
    while hop is not None and not isinstance(hop, str):
        ssh_config = hop.ssh_config
        known = Path(str(ssh_config.get("userknownhostsfile", "~/.ssh/known_hosts")).split()[0]).expanduser()
        strict = str(ssh_config.get("stricthostkeychecking", "ask")).lower()
        client = hop.client
        if known.is_file():
            client.load_host_keys(str(known))
        if Path("/etc/ssh/ssh_known_hosts").is_file():
            client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
        client.set_missing_host_key_policy(_StrictPolicy(strict in ("accept-new", "no", "off"), known))
        hop = hop.gateway


def _missing_script(sock: str) -> str:
    """A shell command (builtins only: it works with any PATH) that exits 1 when `sock` does not
    exist, and 3 when a directory on the way may not be entered (so we cannot tell): from the
    deepest directory this user can enter, the next component towards `sock` is missing."""
    q = shlex.quote
    steps = [f"[ -e {q(sock)} ] && exit 0"]
    child = sock
    for parent in map(str, PurePosixPath(sock).parents):
        steps.append(f"if cd -- {q(parent)} 2>/dev/null; then [ -e {q(child)} ] && exit 3; exit 1; fi")
        child = parent
    return "; ".join([*steps, "exit 3"])


def _probe(channel: paramiko.Channel, timeout: float) -> bytes:
    """GET /_ping on a fresh channel: an HTTP answer means this way reaches the engine;
    otherwise what the server printed (e.g. 'command not found') explains why not."""
    channel.settimeout(timeout)
    try:
        channel.sendall(PROBE)
        data = b""
        while len(data) < 12:
            chunk = channel.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/") and channel.recv_stderr_ready():
            data += channel.recv_stderr(4096)
        if not data:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not channel.recv_stderr_ready() and not channel.exit_status_ready():
                time.sleep(0.05)
            if channel.recv_stderr_ready():
                data = channel.recv_stderr(4096)
        return data
    finally:
        channel.close()


def _gcm_first(sock: Any, disabled_algorithms: dict[str, Any] | None = None) -> paramiko.Transport:
    """A transport that offers AES-GCM first. paramiko prefers AES-CTR with a separate HMAC, which
    hashes every packet again in its Python packet loop: with GCM its send path takes about a
    third less CPU (a fleet's copies share two cores with the link's encryption), and OpenSSH
    servers offer it by default. A server without it gets paramiko's usual order."""
    transport = paramiko.Transport(sock, disabled_algorithms=disabled_algorithms)
    options = transport.get_security_options()
    gcm = [c for c in options.ciphers if c.endswith("-gcm@openssh.com")]
    options.ciphers = tuple(gcm + [c for c in options.ciphers if c not in gcm])
    return transport


def open_streamlocal(transport: paramiko.Transport, path: str, timeout: float) -> paramiko.Channel:
    """Open a direct-streamlocal@openssh.com channel to a unix socket on the server.

    paramiko has no API for this channel type (its open_channel only encodes tcpip and x11
    arguments), so this mirrors Transport.open_channel with the streamlocal payload:
    string socket path, string reserved, uint32 reserved (OpenSSH PROTOCOL, 2.4). paramiko is
    pinned in pyproject.toml; tests/unit/engine/test_pinned.py fails when a release changes this."""
    from paramiko.channel import Channel
    from paramiko.common import cMSG_CHANNEL_OPEN
    from paramiko.message import Message

    t: Any = transport
    if not t.active:
        raise paramiko.SSHException("SSH session not active")
    with t.lock:
        window = t._sanitize_window_size(WINDOW)
        packet = t._sanitize_packet_size(None)
        chanid = t._next_channel()
        m = Message()
        m.add_byte(cMSG_CHANNEL_OPEN)
        m.add_string("direct-streamlocal@openssh.com")
        m.add_int(chanid)
        m.add_int(window)
        m.add_int(packet)
        m.add_string(path)
        m.add_string("")
        m.add_int(0)
        chan: Any = Channel(chanid)
        t._channels.put(chanid, chan)
        t.channel_events[chanid] = event = threading.Event()
        t.channels_seen[chanid] = True
        chan._set_transport(t)
        chan._set_window(window, packet)
    t._send_user_message(m)
    deadline = time.time() + timeout
    while not event.wait(0.1):
        if not t.active:
            raise t.get_exception() or paramiko.SSHException("ssh session closed")
        if time.time() > deadline:
            raise paramiko.SSHException("timed out opening a streamlocal channel")
    opened = t._channels.get(chanid)
    if opened is None:
        raise t.get_exception() or paramiko.SSHException("the server refused the streamlocal channel")
    return opened  # type: ignore[no-any-return]


class _Backend(httpcore.NetworkBackend):
    def __init__(self, connection: SSHConnection, path: str, patience: Patience) -> None:
        self.connection = connection
        self.path = path
        self.patience = patience

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return self._connect(timeout)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return self._connect(timeout)

    def _connect(self, timeout: float | None) -> httpcore.NetworkStream:
        try:
            return self.connection.stream(self.path, self.patience, timeout)
        except (ConnectError, EndpointError) as exc:
            raise Worded(exc) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise httpcore.ConnectError(f"ssh: {exc}") from exc

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def ssh_transport(connection: SSHConnection, path: str, patience: Patience) -> httpx.BaseTransport:
    """An httpx transport whose connections are channels of `connection` to the socket `path`.
    The first request connects; errors surface as httpx.ConnectError with our message."""
    return with_backend(_Backend(connection, path, patience))
