"""The base of docker-d2d's error tree and the archive errors: what the code on the source host raises.

errors.py draws the whole tree and adds the rest; these classes are the same objects there.
"""

from __future__ import annotations


class D2DError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, side: str | None = None, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.side = side
        self.endpoint = endpoint

    def with_side(self, side: str, endpoint: str) -> D2DError:
        """Name the side (source/destination) the error came from, unless a lower layer did already."""
        if self.side is None:
            self.side, self.endpoint = side, endpoint
        return self

    def __str__(self) -> str:
        if self.side:
            return f"{self.side} {self.endpoint}: {self.message}" if self.endpoint else f"{self.side}: {self.message}"
        return self.message


class ArchiveError(D2DError):
    pass


class ZstdUnavailable(ArchiveError):
    pass


class SpoolFull(D2DError):
    def __init__(self, message: str, *, directory: str = "", side: str | None = None, endpoint: str | None = None):
        super().__init__(message, side=side, endpoint=endpoint)
        self.directory = directory
