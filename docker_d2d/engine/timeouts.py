"""How long an engine may take: the connect and stall timeouts. Without httpx, so that the
command line's defaults and the job types do not import it (start-up: `docker-d2d version`)."""

from __future__ import annotations

from dataclasses import dataclass

CONNECT_TIMEOUT = 15.0
STALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Timeouts:
    """connect: to reach an engine (TCP, TLS, ssh handshake) and get its first answer.
    stall: how long no byte may move on a stream before its engine must prove it is alive."""

    connect: float = CONNECT_TIMEOUT
    stall: float = STALL_TIMEOUT

    @property
    def probe(self) -> float:
        """Each half of the stall timeout: the quiet wait, then the ping's bound."""
        return max(self.stall / 2, 0.1)
