"""Best effort: the layer descriptors of an image a containerd store pulled from a registry.

A store that pulled a base holds its layers under the registry's compressed digests, which no
other source of ours can name. Its image's repo digest (`host/repo@sha256:...`) names the
manifest that lists them; fetched with the user's credentials for that registry (anonymously
without), it gives candidates a probe then confirms. Any failure (no network, no credentials,
another platform) only means no candidates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import httpx

from ..errors import D2DError
from ..formats.oci import Descriptor
from ..model import Platform
from .auth import registry_credentials
from .client import Registry
from .refs import RegistryRef, loopback, split_repo_digest

log = logging.getLogger(__name__)


def layer_descriptors(
    repo_digest: str, diff_ids: Sequence[str], platform: Platform, docker_config: Path | None, timeout: float = 3.0
) -> dict[str, Descriptor]:
    """diff id -> the registry manifest's descriptor, for an image whose layers are `diff_ids`. With
    the credentials the user's Docker config (`docker_config`) holds for that registry, as the
    destination's pull had them."""
    parts = split_repo_digest(repo_digest)
    if parts is None:
        return {}
    host, repo, digest = parts
    credentials = registry_credentials(host, docker_config, os.environ)
    try:
        with Registry(RegistryRef(host, repo, loopback(host)), credentials, timeout, read=timeout) as registry:
            doc = registry.manifest(digest)
            if isinstance(doc.get("manifests"), list):
                chosen = next((m for m in doc["manifests"] if platform.matches(m.get("platform") or {})), None)
                if chosen is None:
                    return {}
                doc = registry.manifest(str(chosen["digest"]))
    except (D2DError, httpx.HTTPError, ValueError, KeyError) as exc:
        log.info("no layer digests from %s: %s", repo_digest, exc)
        return {}
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) != len(diff_ids):
        return {}
    return {
        diff: {k: desc[k] for k in ("mediaType", "digest", "size")}
        for diff, desc in zip(diff_ids, layers)
        if isinstance(desc, dict) and {"mediaType", "digest", "size"} <= set(desc)
    }
