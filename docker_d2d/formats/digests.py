"""Content digests: of bytes, of layer chains, and their short forms; sizes as people read them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """chain(L1) = diff(L1); chain(L1..Ln) = sha256(chain(L1..Ln-1) + " " + diff(Ln))."""
    chains: list[str] = []
    for diff in diff_ids:
        if not chains:
            chains.append(diff)
        else:
            chains.append(sha256(f"{chains[-1]} {diff}".encode()))
    return chains


def short(digest: str, n: int = 12) -> str:
    # No str.removeprefix here: this runs on the source host's Python 3.8 too.
    return (digest[7:] if digest.startswith("sha256:") else digest)[:n]


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    raise AssertionError("unreachable")
