"""The ssh connections of one run: one per host, owned by the run and closed when it ends."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..endpoint import Endpoint
from .watch import Timeouts

if TYPE_CHECKING:
    from .ssh import SSHConnection


class SSHPool:
    """Use as a context manager around a run: every engine of the run reached over ssh gets its
    channels from the connection to its host here (both sides of a copy, every call, the agent),
    and leaving the block closes them all. paramiko is imported only when a host is reached."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str | None, str, int], SSHConnection] = {}
        self._lock = threading.Lock()

    def connection(self, endpoint: Endpoint, timeouts: Timeouts) -> SSHConnection:
        """The connection to `endpoint`'s host (made with the first endpoint's timeouts); it
        connects on first use."""
        from .ssh import SSHConnection

        key = (endpoint.user, endpoint.host, endpoint.port)
        with self._lock:
            if key not in self._connections:
                self._connections[key] = SSHConnection(endpoint, timeouts)
            return self._connections[key]

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.close()

    def __enter__(self) -> SSHPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
