"""What every save format tells about the names in its archive."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..entries import Entry


class SaveFormat:
    """One engine family's `docker save` layout. Every export ends with manifest.json (each image's
    config and layer entries, Docker's docker-archive form); the rest differs by format."""

    @staticmethod
    def expected_names(images: Sequence[Sequence[str]]) -> tuple[dict[str, str], list[str]]:
        """For images (their diff ids) in an export: entry name -> diff id where the name tells, and
        the diff ids (one per entry) of layers whose names cannot be predicted."""
        raise NotImplementedError

    def layer_name(self, name: str) -> bool:
        """Whether an entry is a layer by its name alone (whatever its size)."""
        return False

    def claims(self, name: str) -> tuple[str | None, str | None]:
        """What an entry's name says its content hashes to: (blob digest, diff id)."""
        return None, None

    def document(self, name: str, data: bytes) -> Iterator[Entry]:
        """What a metadata entry tells beyond itself."""
        return iter(())
