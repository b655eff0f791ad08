"""Registry-first bases: the lower layers come from the registry they were pulled from.

When the image's lowest layers are exactly an image the source holds with a RepoDigest (a base
pulled from a registry: `debian@sha256:...`) and the destination lacks some of them, the
destination pulls that reference itself (over its own, usually faster, link to the registry) and
only the layers above it come from the source. A pull that fails costs one warning; the layers
then travel from the source as usual. Credentials: only what the user's Docker config holds for
that registry, passed to the engine as a `docker pull` would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..engine.protocol import DestinationEngine
from ..errors import D2DError
from ..formats.digests import short
from ..model import ImageInfo
from ..registry.auth import registry_credentials
from ..registry.refs import registry_of
from .plan import Decision, TransferPlan

log = logging.getLogger("docker_d2d.transfer")


@dataclass(frozen=True)
class Base:
    """A pullable image the source holds whose layers are the bottom of an image to copy."""

    ref: str  # repository@sha256:...
    info: ImageInfo
    missing: int  # how many of its layers the destination lacks


def find_bases(plan: TransferPlan, held_at_source: Sequence[ImageInfo]) -> list[Base]:
    """For each image with layers to send, the longest pullable base whose layers are its lowest and
    of which the destination lacks at least one; each base once. Pure."""
    bases: dict[str, Base] = {}
    for image in plan.exported:
        sending = [lay.decision is Decision.SEND for lay in image.layers]
        best: Base | None = None
        for held in held_at_source:
            n = len(held.diff_ids)
            if not held.repo_digests or not 0 < n < len(image.source.diff_ids):
                continue
            if held.diff_ids != image.source.diff_ids[:n] or not any(sending[:n]):
                continue
            if best is None or n > len(best.info.diff_ids):
                best = Base(held.repo_digests[0], held, sum(sending[:n]))
        if best is not None:
            bases.setdefault(best.ref, best)
    return list(bases.values())


@dataclass(frozen=True)
class PulledBase:
    """A base the destination pulled. A containerd store holds its layers compressed, under the
    digests its registry lists: repair.py names them from the base's repo digest (registry/layers.py)."""

    base: Base

    @property
    def ref(self) -> str:
        return self.base.ref

    @property
    def missing(self) -> int:
        return self.base.missing


def pull_bases(
    dst: DestinationEngine,
    bases: Sequence[Base],
    docker_config: Path | None,
    env: Mapping[str, str],
    note: Callable[[str], None],
) -> dict[str, PulledBase]:
    """Have the destination pull each base; returns the pulled ones by the destination's id. A failed
    pull is one warning (through `note`) and the layers come from the source instead."""
    pulled: dict[str, PulledBase] = {}
    for base in bases:
        repository, _, digest = base.ref.partition("@")
        host = registry_of(base.ref)
        creds = registry_credentials(host, docker_config, env)
        try:
            dst.pull(repository, digest, creds.engine_header(host) if creds else None)
            pulled[dst.inspect(base.ref).id] = PulledBase(base)
        except D2DError as exc:
            # The engine's reason is a paragraph (the URL, the dial error): --debug shows it.
            log.debug("registry-first: pull of %s failed: %s", base.ref, exc.message)
            note(f"registry-first: could not pull the base from {host}; sending it from the source")
            continue
        note(
            f"registry-first: {base.missing} layer(s) came from {host} ({base.ref.split('@')[0]}@"
            f"{short(digest.split(':')[-1])}), not from the source"
        )
    return pulled
