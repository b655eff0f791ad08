"""Where an engine is: parsing the addresses users type into Endpoint values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from .errors import EndpointError

DEFAULT_UNIX_SOCKET = "/var/run/docker.sock"


class Scheme(Enum):
    UNIX = "unix"
    TCP = "tcp"
    SSH = "ssh"


@dataclass(frozen=True)
class TLSConfig:
    verify: bool = True
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One engine's address. `text` is what the user typed (or where it came from), for messages."""

    scheme: Scheme
    text: str
    path: str = ""  # unix socket, local or (ssh) remote
    host: str = ""
    port: int = 0
    user: str | None = None
    tls: TLSConfig | None = None
    # Set when the user typed a bare word that is no context: the contexts there are, for the
    # message when the word is no ssh host either.
    contexts: tuple[str, ...] | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme is Scheme.UNIX or (self.scheme is Scheme.TCP and _is_loopback(self.host))

    def __str__(self) -> str:
        return self.text


def bracket(host: str) -> str:
    """An IPv6 address in brackets, as in URLs and ssh's known_hosts; other hosts as they are."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def hostport(host: str, port: int | str) -> str:
    return f"{bracket(host)}:{port}"


def _port(text: str | None, display: str) -> int:
    if not text:
        return 0
    port = int(text)
    if not 1 <= port <= 65535:
        raise EndpointError(f"invalid address {display!r}: port {port} is not between 1 and 65535")
    return port


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


_TCP = re.compile(r"^(?:tcp|http|https)://(?P<host>\[[^\]]+\]|[^:/]+)?(?::(?P<port>\d+))?/?$")


_SSH_HOST = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$")


def parse_ssh_host(text: str, display: str | None = None, path: str = "") -> Endpoint:
    """`[user@]host[:port]`: a host as ssh knows it (aliases from ~/.ssh/config included)."""
    m = _SSH_HOST.match(text)
    if not m:
        raise EndpointError(f"invalid address {display or text!r}: expected [user@]host[:port]")
    port = _port(m["port"], display or text)
    return Endpoint(Scheme.SSH, display or text, path=path, host=m["host"].strip("[]"), port=port, user=m["user"])


def _parse_ssh(text: str) -> Endpoint:
    if text.startswith("sshunix://"):
        # The original tool's form: sshunix://[user@]host[:port]:[/path/to/socket]
        rest = text[len("sshunix://") :]
        hostpart, sep, path = rest.partition(":/")
        if sep:
            path = "/" + path
        elif rest.endswith(":"):
            hostpart = rest[:-1]
        return parse_ssh_host(hostpart, text, path)
    url = urlsplit(text)
    if url.password is not None or url.query or url.fragment:
        raise EndpointError(f"invalid address {text!r}: ssh:// takes no password, query or fragment")
    netloc = url.netloc
    return parse_ssh_host(netloc, text, url.path if url.path not in ("", "/") else "")


def parse_endpoint(text: str, tls: TLSConfig | None = None) -> Endpoint:
    """Parse unix://, tcp:// (the schemes the Docker CLI's -H takes), ssh:// and sshunix://."""
    if text.startswith(("ssh://", "sshunix://")):
        return _parse_ssh(text)
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise EndpointError(f"invalid address {text!r}: a unix socket path must be absolute")
        return Endpoint(Scheme.UNIX, text, path=path)
    if text.startswith(("tcp://", "http://", "https://")):
        m = _TCP.match(text)
        if not m or not m["host"]:
            raise EndpointError(f"invalid address {text!r}: expected tcp://HOST:PORT")
        if text.startswith("https://") and tls is None:
            tls = TLSConfig(verify=True)
        port = _port(m["port"], text) or (2376 if tls else 2375)
        return Endpoint(Scheme.TCP, text, host=m["host"].strip("[]"), port=port, tls=tls)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme:
        raise EndpointError(
            f"invalid address {text!r}: unsupported scheme {scheme!r} (use unix://, tcp://, ssh:// or sshunix://)"
        )
    raise EndpointError(f"invalid address {text!r}: expected unix:///path, tcp://host:port or ssh://host")
