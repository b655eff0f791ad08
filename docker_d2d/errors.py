"""Every failure docker-d2d reports, as one small tree.

    D2DError                      one clear line for the user; exit status 1
    ├── UsageError                bad arguments or references (exit 2)
    ├── EndpointError             an endpoint cannot be parsed or resolved
    ├── ConnectError              an engine cannot be reached (refused, missing socket, permission,
    │   │                         no answer within the connect timeout)
    │   └── SocketMissing         no engine socket at that path on the ssh host (maybe a node: sides.py)
    ├── StalledError              nothing moved for the stall timeout and the engine answered no ping
    ├── EngineError               the engine answered with an error
    │   └── ImageNotFound         a requested image does not exist at the source
    │       └── NameNotFound      a name it lacks: the tag looked for, the tags it has of that repository
    ├── PlatformError             the source cannot give the platform asked for
    ├── ArchiveError              the source's archive is not what its engine promised
    │   ├── ZstdUnavailable       a zstd layer, and no zstandard module to read it (a source host's python)
    │   └── StoreError            reading the engine's own storage failed: that image is exported instead
    │       ├── StoreUnavailable  the storage cannot be read here (where, who, a layout we do not read)
    │       └── StoreMismatch     its bytes are not what the engine registered (changed behind its back)
    ├── VerifyError               the destination's image differs from the source's after the load
    ├── SpoolFull                 no room to spool in a directory (ours: --spool-dir; or the source host's)
    └── Cancelled                 the user interrupted (exit 130)

The CLI turns them into messages in one place (app/messages.py, said by app/application.py
Application.run and .fail, usage errors too); nothing below it prints or exits. Text an engine
wrote reaches the terminal only through `printable`.
D2DError, ArchiveError, ZstdUnavailable and SpoolFull are defined in formats/errors.py, the StoreErrors
in formats/stores/common.py (the code that also runs on a source host raises them): the same classes here.
"""

from __future__ import annotations

from collections.abc import Sequence

from .formats.errors import ArchiveError, D2DError, SpoolFull, ZstdUnavailable
from .formats.stores.common import StoreError, StoreMismatch, StoreUnavailable

__all__ = [
    "ArchiveError",
    "Cancelled",
    "ConnectError",
    "D2DError",
    "EndpointError",
    "EngineError",
    "ImageNotFound",
    "NameNotFound",
    "PlatformError",
    "SocketMissing",
    "SpoolFull",
    "StalledError",
    "StoreError",
    "StoreMismatch",
    "StoreUnavailable",
    "UsageError",
    "VerifyError",
    "ZstdUnavailable",
    "printable",
]


class UsageError(D2DError):
    exit_code = 2


class EndpointError(D2DError):
    exit_code = 2


class ConnectError(D2DError):
    pass


class SocketMissing(ConnectError):
    pass


class StalledError(D2DError):
    pass


class EngineError(D2DError):
    def __init__(self, message: str, *, status: int = 0, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.status = status


class ImageNotFound(EngineError):
    pass


class NameNotFound(ImageNotFound):
    """`name` (repository:tag) is not at the source; `tag_given`: whether the user typed the tag (else
    :latest was looked for); `tags`: the tags the source has of that repository."""

    def __init__(
        self, name: str, *, tag_given: bool, tags: Sequence[str], side: str | None, endpoint: str | None
    ) -> None:
        super().__init__(f"no such image: {name}", side=side, endpoint=endpoint, status=404)
        self.name = name
        self.tag_given = tag_given
        self.tags = tuple(tags)


class PlatformError(D2DError):
    pass


class VerifyError(D2DError):
    pass


class Cancelled(D2DError):
    exit_code = 130

    def __init__(self, message: str = "interrupted; nothing was tagged at the destination") -> None:
        super().__init__(message)


def printable(text: str) -> str:
    """`text` with terminal control characters (ESC sequences, CR, BEL, bidi overrides)
    escaped as \\x1b etc.: engines' messages and names must not drive the user's terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
