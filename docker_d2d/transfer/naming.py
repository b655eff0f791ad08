"""How a containerd store holds the layers a plan leaves out (repair.py finds out, by probes)."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.oci import Descriptor


@dataclass(frozen=True)
class Naming:
    """For the left-out layers `asked`: the digest the store holds each under, where a probe found
    it (`found`); those named by the source's descriptor, checked after the load (`guessed`); the
    rest travel."""

    asked: frozenset[str]
    found: dict[str, Descriptor]
    guessed: frozenset[str] = frozenset()

    @property
    def left_out(self) -> frozenset[str]:
        return frozenset(self.found) | self.guessed

    @property
    def travels(self) -> frozenset[str]:
        return self.asked - self.left_out

    def covers(self, skip: frozenset[str]) -> bool:
        """Whether it answers for a stream that leaves out `skip`."""
        return skip <= self.left_out
